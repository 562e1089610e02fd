/*-------------------------------------------------------------------------
 *
 * batches.h
 *	  Batches of jobs (batches.c): the batches noted at the job-final hook
 *	  point and judged after the commit by the database's executors, the
 *	  callback job, and the batch arguments of submit and submit_batch.
 *
 * IDENTIFICATION
 *	  src/batches.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_BATCHES_H
#define JOBQ_BATCHES_H

#include "job_events.h"

/* A job of a batch became final in this transaction (JobEventsReport). */
extern void BatchesNoteFinal(const JobqJobEvent *ev);

/*
 * This transaction commits a prepared one (ddl_guard.c): its notes were the
 * preparing backend's, so every batch not final yet is judged after it.
 */
extern void BatchesCheckAllAtCommit(void);

/* Transaction callbacks (_PG_init). */
extern void BatchesRegisterCallbacks(void);

/*
 * Executor, outside a transaction: -1 when no batch of this database waits
 * to be judged, else in how many milliseconds the next judging is due (0:
 * now).  BatchChecksRun judges them, in its own transaction.
 */
extern int	BatchChecksDueInMs(void);
extern void BatchChecksRun(void);

/*
 * For submit and submit_batch, inside SPI as the extension owner, before
 * the jobs are inserted: jobs of caller may join its open batch batch_id
 * (errors for an unknown, another role's or a closed batch); the batch
 * stays open until the caller's transaction ends.
 */
extern void BatchAddJobs(int64 batch_id, Oid caller);

/* The id of a new batch, taken before its jobs are inserted. */
extern int64 BatchNewId(void);

/*
 * A new batch of caller, with its callback (queue NULL: none): n < 0, an
 * open one (id, first_id, last_id unused; the id is returned); else the
 * closed batch id of the n jobs just inserted, whose ids are first_id to
 * last_id.  *due: the batch is final already (n = 0) and its callback must
 * be submitted (BatchSubmitCallback).  Inside SPI.
 */
extern int64 BatchCreate(Oid caller, const char *on_complete_queue,
						 Datum on_complete_payload, bool payload_null,
						 int64 n, int64 id, int64 first_id, int64 last_id,
						 bool *due);

/*
 * Submit the callback job of batch_id, which just became final, as the
 * batch's owner, in a subtransaction: an error (its queue dropped, the
 * owner's privileges revoked) is recorded on the batch row, never raised.
 * Inside SPI.
 */
extern void BatchSubmitCallback(int64 batch_id);

/* submit.c: the callback job, a job of queue as the current user. */
extern int64 SubmitCallbackJob(const char *queue, Datum payload);

#endif							/* JOBQ_BATCHES_H */
