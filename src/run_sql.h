/*-------------------------------------------------------------------------
 *
 * run_sql.h
 *	  Running one SQL handler call (run_sql.c), as used by the executor.
 *
 * IDENTIFICATION
 *	  src/run_sql.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_RUN_SQL_H
#define JOBQ_RUN_SQL_H

#include <signal.h>

#include "fmgr.h"
#include "utils/jsonb.h"

#include "job_store.h"

/* Why a handler was interrupted by jobq itself. */
typedef enum JobqInterrupt
{
	JOBQ_INTERRUPT_NONE = 0,
	JOBQ_INTERRUPT_CANCEL,		/* jobq.cancel() of the running job */
	JOBQ_INTERRUPT_SHUTDOWN,	/* shutdown grace ran out */
	JOBQ_INTERRUPT_TIMEOUT		/* the attempt's timeout passed */
} JobqInterrupt;

/*
 * A handler still running this long after jobq first interrupted it (it
 * caught the query cancel, and each one after) ends its executor: see
 * run_sql.c.
 */
#define JOBQ_ESCALATE_MS 1000

/*
 * One call.  The executor fills the inputs; RunSqlHandler fills the outputs,
 * allocated in the memory context current at the call.
 */
typedef struct JobqSqlRun
{
	/* inputs */
	int64		job_id;
	int32		attempt;
	Oid			owner;
	Oid			handler;
	FmgrInfo   *flinfo;
	Oid			rettype;
	Jsonb	   *payload;
	int64		timeout_ms;

	/*
	 * The completion, recorded after the handler returned, still inside its
	 * subtransaction, as the executor's own role (both commit or neither):
	 * into completions (the batch's, StoreTakeCompleted) when set, else at
	 * once (StoreComplete).  tid: where the claim put the row.  When the
	 * job may not complete (cancelled, lease lost), the subtransaction,
	 * with the handler's writes, is rolled back and fenced is set.
	 */
	ItemPointerData tid;
	JobqCompletions *completions;
	MemoryContext completions_cxt;

	/*
	 * On success, leave the job's subtransaction open (the caller releases
	 * it, with those of the batch's other jobs: see RunBatch), so that the
	 * next job's subtransaction is its child.
	 */
	bool		keep_subxact;

	/* outputs */
	bool		ok;				/* handler succeeded and completion recorded */
	bool		fenced;			/* handler succeeded, completion refused */
	bool		completion_busy;	/* fenced because another transaction
									 * held the row: settle it later */
	Jsonb	   *result;			/* NULL: no result */
	const char *error_class;	/* NULL: let the error rules decide */
	char		sqlstate[6];
	char	   *message;
	char	   *detail;
	JobqInterrupt interrupt;
} JobqSqlRun;

extern void RunSqlInit(JobqWorkerSlot *slot,
					   volatile sig_atomic_t *shutdown_requested,
					   volatile TimestampTz *shutdown_requested_at);
extern void RunSqlHandler(JobqSqlRun *run);

/*
 * The job whose handler this process is running now (false when none):
 * for functions called from a handler (jobq.report_progress).
 */
extern bool RunSqlCurrentJob(int64 *job_id, int32 *attempt);

/* Publish the running job's progress in this executor's slot. */
extern void RunSqlNoteProgress(int64 job_id, double progress, const char *note);

/* A batch's handler calls: one FmgrInfo per (queue handler, owner). */
extern void RunSqlBatchBegin(MemoryContext cxt);
extern void RunSqlBatchEnd(void);
extern FmgrInfo *RunSqlBatchHandler(FmgrInfo *queue_flinfo, Oid owner);
extern void RunSqlForgetBatchHandler(FmgrInfo *flinfo);

#endif							/* JOBQ_RUN_SQL_H */
