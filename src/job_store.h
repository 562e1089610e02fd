/*-------------------------------------------------------------------------
 *
 * job_store.h
 *	  The job store's interface: every change to a job row that C code
 *	  makes goes through these functions (src/README.md, "The job store",
 *	  names the one implementation of each transition).
 *
 * IDENTIFICATION
 *	  src/job_store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_JOB_STORE_H
#define JOBQ_JOB_STORE_H

#include "fmgr.h"
#include "storage/itemptr.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "claim_floor.h"
#include "queue_cache.h"

/* A job this executor holds the lease of. */
typedef struct JobqClaimedJob
{
	int64		id;
	int32		attempt;
	Oid			owner;
	Jsonb	   *payload;
	int64		timeout_ms;
	JobqQueue  *queue;

	/*
	 * The job's own handler (jobq.jobs.handler), which it runs whatever the
	 * queue's handler is now: the queue's cache entry when they are the same
	 * function, else looked up for this job.  InvalidOid: it no longer
	 * exists, or the job has none (handler_text NULL).
	 */
	char	   *handler_text;
	Oid			handler;
	FmgrInfo   *flinfo;
	Oid			rettype;
	int32		priority;		/* claim order: priority DESC, run_at, id */
	TimestampTz run_at;
	ItemPointerData tid;		/* the claimed version; invalid: unknown */
} JobqClaimedJob;

/* One claimed job as a claim returns it (StoreClaim, StoreClaimDirect). */
typedef struct JobqClaimRow
{
	int64		id;
	int32		attempt;		/* of the new lease */
	Oid			owner;
	char	   *handler;		/* NULL when none; in the caller's context */
	Datum		payload;		/* jsonb, detoasted, in the caller's context */
	bool		timeout_null;
	Interval	timeout;
	int32		priority;
	TimestampTz run_at;
	TimestampTz lease_expires_at;
	ItemPointerData tid;		/* the claimed version (StoreClaimDirect only) */
} JobqClaimRow;

/* Most jobs one claim (and one batch) takes. */
#define JOBQ_MAX_BATCH 32

/*
 * Jobs of the current batch whose completion was taken inside their own
 * subtransaction (StoreTakeCompleted), to be recorded together before the
 * batch commits (StoreRecordCompleted).
 */
typedef struct JobqCompletions
{
	int			n;
	Datum		rows[JOBQ_MAX_BATCH];	/* the deleted jobs_active rows */
	Datum		results[JOBQ_MAX_BATCH];
	bool		result_nulls[JOBQ_MAX_BATCH];
	Datum		finished[JOBQ_MAX_BATCH];	/* when each handler returned */
} JobqCompletions;

/* claim (store_claim.c, store_claim_direct.c) */
extern int	StoreClaim(const char *queue, bool limited, int max_jobs,
					   Interval *lease, const char *worker, int64 token,
					   bool token_null, JobqClaimRow *rows, MemoryContext cxt,
					   bool *busy, TimestampTz *held_until);
extern int	StoreClaimJobs(JobqQueue *q, int max_jobs, int64 token, const char *worker,
						   JobqClaimedJob *jobs, bool *busy);
extern int	StoreClaimRowsFromSPI(JobqClaimRow *rows, MemoryContext cxt);
extern void StoreReportClaimed(const char *queue, JobqClaimRow *rows, int n,
							   bool by_executor);
extern bool StoreClaimQueueBecameLimited(void);
extern void StoreFailOpenBreaker(const char *queue, JobqClaimRow *rows, int n);
/*
 * -1: jobq.direct_access is off, claim through SQL; -2: the queue has a
 * concurrency or rate limit now (claim through jobq._claim).
 */
extern int	StoreClaimDirect(const char *queue, int max_jobs, Interval *lease,
							 const char *worker, int64 token, bool token_null,
							 TimestampTz due, JobqClaimRow *rows, MemoryContext cxt,
							 bool *busy);

/* complete (store_complete.c) */
extern bool StoreComplete(int64 id, int32 attempt, Jsonb *result, bool executor_lease,
						  bool *busy);
extern void StoreCompletionsBegin(void);
extern bool StoreTakeCompleted(int64 id, int32 attempt, ItemPointer tid_hint,
							   Jsonb *result, bool executor_lease,
							   JobqCompletions *acc, MemoryContext cxt, bool *busy);
extern void StoreRecordCompleted(JobqCompletions *acc);
extern bool StoreLeaseRunning(int64 id, int32 attempt);

/* fail, release, recovery (store_outcome.c) */
extern char *StoreFail(int64 id, int32 attempt, const char *message,
					   const char *error_class, Interval *retry_after,
					   const char *sqlstate, const char *detail, bool *busy);
extern bool StoreRelease(int64 id, int32 attempt, TimestampTz held_until,
						 const char *held_by);
extern int	StoreRecoverLost(void);

#endif							/* JOBQ_JOB_STORE_H */
