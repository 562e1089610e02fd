/*-------------------------------------------------------------------------
 *
 * claim.h
 *	  The executor's statements on jobq tables (claim.c).
 *
 * IDENTIFICATION
 *	  src/claim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_CLAIM_H
#define JOBQ_CLAIM_H

#include "fmgr.h"
#include "storage/itemptr.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* A SQL queue as the executor needs it (cache entry, see claim.c). */
typedef struct JobqQueue
{
	char	   *name;
	uint32		name_hash;		/* JobqQueueNameHash(name): wake-up hints */
	char	   *handler_text;	/* jobq.queues.handler */
	Oid			handler;		/* InvalidOid: handler dropped */
	FmgrInfo	flinfo;
	Oid			rettype;
	int64		timeout_ms;
	int64		warn_after_ms;
	bool		limited;		/* concurrency or rate_limit set */
	TimestampTz idle_until;		/* nothing due here: skip until then */
} JobqQueue;

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

/* One claimed job as a claim returns it (ClaimExecute, ClaimHeap). */
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
	ItemPointerData tid;		/* the claimed version (ClaimHeap only) */
} JobqClaimRow;

/* Most jobs one claim (and one batch) takes. */
#define JOBQ_MAX_BATCH 32

/*
 * Jobs of the current batch whose completion was taken inside their own
 * subtransaction (ClaimTakeCompleted), to be recorded together before the
 * batch commits (ClaimRecordCompleted).
 */
typedef struct JobqCompletions
{
	int			n;
	Datum		rows[JOBQ_MAX_BATCH];	/* the deleted jobs_active rows */
	Datum		results[JOBQ_MAX_BATCH];
	bool		result_nulls[JOBQ_MAX_BATCH];
	Datum		finished[JOBQ_MAX_BATCH];	/* when each handler returned */
} JobqCompletions;

/* A position in a queue's claim order (jobs_active_claim_idx). */
typedef struct JobqClaimKey
{
	int32		priority;		/* DESC */
	TimestampTz run_at;
	int64		id;
} JobqClaimKey;

/* One claim scan's use of its queue's floor (claim_floor.c). */
typedef struct JobqClaimFloorScan
{
	bool		has_floor;		/* start at floor, not at the queue's front */
	JobqClaimKey floor;
	uint64		ticket;			/* non-zero: this scan raises the floor */
	bool		from_front;		/* the raise's periodic scan from the front */
	bool		stopped;		/* met an entry that is not gone: stop */
	JobqClaimKey stop;
	bool		saw_gone;		/* met gone entries before any stop */
	JobqClaimKey last_gone;
	bool		saw_not_due;	/* met jobs not due yet before any stop */
	JobqClaimKey not_due_low;	/* the lowest of their keys */
	TimestampTz not_due_at;		/* the earliest of their run_at */
} JobqClaimFloorScan;

extern Size ClaimFloorShmemSize(void);
extern void ClaimFloorShmemInit(void);
extern int	JobqClaimKeyCompare(const JobqClaimKey *a, const JobqClaimKey *b);
extern void ClaimFloorBegin(Oid indexoid, const char *queue, TimestampTz due,
							JobqClaimFloorScan *fs);
extern void ClaimFloorSawNotDue(JobqClaimFloorScan *fs, const JobqClaimKey *key);
extern void ClaimFloorSawLive(JobqClaimFloorScan *fs, const JobqClaimKey *key);
extern void ClaimFloorSawGone(JobqClaimFloorScan *fs, const JobqClaimKey *key);
extern void ClaimFloorEnd(const char *queue, JobqClaimFloorScan *fs);
extern void ClaimFloorNoteWritten(const char *queue, int32 priority,
								  TimestampTz run_at, int64 id);

extern void ClaimRefreshQueues(void);
extern int	ClaimQueueCount(void);
extern JobqQueue *ClaimQueue(int i);
extern int	ClaimExecute(const char *queue, bool limited, int max_jobs,
						 Interval *lease, const char *worker, int64 token,
						 bool token_null, JobqClaimRow *rows, MemoryContext cxt,
						 bool *busy);
extern int	ClaimRowsFromSPI(JobqClaimRow *rows, MemoryContext cxt);
extern void ClaimReportClaimed(const char *queue, JobqClaimRow *rows, int n,
							   bool by_executor);
extern bool ClaimQueueBecameLimited(void);
/*
 * -1: jobq.direct_access is off, claim through SQL; -2: the queue
 * has a concurrency or rate limit now (claim through jobq._claim).
 */
extern int	ClaimHeap(const char *queue, int max_jobs, Interval *lease,
					  const char *worker, int64 token, bool token_null,
					  TimestampTz due, JobqClaimRow *rows, MemoryContext cxt,
					  bool *busy);
extern int	ClaimJobs(JobqQueue *q, int max_jobs, int64 token, const char *worker,
					  JobqClaimedJob *jobs, bool *busy);
extern bool ClaimComplete(int64 id, int32 attempt, Jsonb *result, bool executor_lease,
						  bool *busy);
extern bool ClaimLeaseRunning(int64 id, int32 attempt);
extern bool ClaimTakeCompleted(int64 id, int32 attempt, ItemPointer tid_hint,
							   Jsonb *result, bool executor_lease,
							   JobqCompletions *acc, MemoryContext cxt, bool *busy);
extern void ClaimRecordCompleted(JobqCompletions *acc);
extern char *ClaimFail(int64 id, int32 attempt, const char *message,
					   const char *error_class, const char *sqlstate,
					   const char *detail, bool *busy);
extern bool ClaimRelease(int64 id, int32 attempt);
extern TimestampTz ClaimNextDue(void);
extern int	ClaimRecoverLost(void);

#endif							/* JOBQ_CLAIM_H */
