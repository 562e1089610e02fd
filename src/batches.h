/*-------------------------------------------------------------------------
 *
 * batches.h
 *	  Batches of jobs: the final counts noted at the job-final hook point and
 *	  added to the batch rows when the transaction commits, the callback job
 *	  (batches.c); the batch arguments of submit and submit_batch.
 *
 * IDENTIFICATION
 *	  src/batches.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_BATCHES_H
#define JOBQ_BATCHES_H

#include "job_events.h"

/* A job of a batch became final in this (sub)transaction (JobEventsReport). */
extern void BatchesNoteFinal(const JobqJobEvent *ev);

/* Transaction callbacks (_PG_init). */
extern void BatchesRegisterCallbacks(void);

/*
 * For submit and submit_batch, inside SPI as the extension owner, before
 * the jobs are inserted: jobs of caller may join its open batch batch_id
 * (errors for an unknown, another role's or a closed batch); the batch
 * stays open until the caller's transaction ends.
 */
extern void BatchAddJobs(int64 batch_id, Oid caller);

/*
 * For submit_batch without batch_id: a new closed batch of n jobs of
 * caller, with its callback (queue NULL: none).  *due: the batch is final
 * already (n = 0) and its callback must be submitted (BatchSubmitCallback)
 * once the jobs are written.
 */
extern int64 BatchCreate(Oid caller, const char *on_complete_queue,
						 Datum on_complete_payload, bool payload_null,
						 int64 n, bool *due);

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
