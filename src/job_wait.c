/*-------------------------------------------------------------------------
 *
 * job_wait.c
 *	  jobq.wait(id, timeout): block until a job is final, woken by the
 *	  commit that makes it final.
 *
 * Shared memory holds JOBQ_WAIT_CVS condition variables; a job uses the
 * one its id hashes to.  A transaction that makes jobs final (the
 * final_* events of JobEventsReport, from every path) notes their
 * variables and broadcasts them when it commits: not before, since until
 * then the waiter could not see the final row.  A waiter prepares to sleep
 * on its job's variable, then reads the job's state with a new snapshot,
 * then sleeps: a commit after the read wakes it, a commit before it is
 * seen by the read.  Jobs sharing a variable, and a subtransaction that
 * rolled back, only cause a spurious wake-up, after which the state is
 * read again.  The sleep is a latch wait, so a cancel of the waiting query
 * is served at once.  A prepared transaction's jobs become final at COMMIT
 * PREPARED, in a backend that knows nothing of them: that commit wakes
 * every waiter (ddl_guard.c sees the command), and each reads its job
 * again.
 *
 * IDENTIFICATION
 *	  src/job_wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_wait.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* a power of two (the id's low bits pick one) and at most 64 (a mask) */
#define JOBQ_WAIT_CVS 64

/* the longest wait a latch wait takes in one go (milliseconds in a long) */
#define JOBQ_WAIT_MAX_DAYS 24

typedef struct JobqWaitShared
{
	ConditionVariable cv[JOBQ_WAIT_CVS];
} JobqWaitShared;

static JobqWaitShared *wait_shared = NULL;

/* variables to broadcast when this transaction commits */
static uint64 final_mask = 0;
static bool callback_registered = false;

static SPIPlanPtr plan_state = NULL;

PG_FUNCTION_INFO_V1(jobq_wait);

static inline int
CvIndex(int64 id)
{
	return (int) ((uint64) id & (JOBQ_WAIT_CVS - 1));
}

Size
JobWaitShmemSize(void)
{
	return sizeof(JobqWaitShared);
}

/* From the shmem startup hook, holding AddinShmemInitLock. */
void
JobWaitShmemInit(void)
{
	bool		found;
	int			i;

	wait_shared = ShmemInitStruct("jobq job waits", sizeof(JobqWaitShared), &found);
	if (!found)
		for (i = 0; i < JOBQ_WAIT_CVS; i++)
			ConditionVariableInit(&wait_shared->cv[i]);
}

static void
WaitXactCallback(XactEvent event, void *arg)
{
	int			i;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			for (i = 0; final_mask != 0 && wait_shared != NULL && i < JOBQ_WAIT_CVS; i++)
				if (final_mask & (UINT64CONST(1) << i))
					ConditionVariableBroadcast(&wait_shared->cv[i]);
			final_mask = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* woken by COMMIT PREPARED (JobWaitWakeAllAtCommit) */
			final_mask = 0;
			break;
		default:
			break;
	}
}

/* A job became final in this transaction (JobEventsReport). */
void
JobWaitNoteFinal(int64 job_id)
{
	if (!callback_registered)
	{
		RegisterXactCallback(WaitXactCallback, NULL);
		callback_registered = true;
	}
	final_mask |= UINT64CONST(1) << CvIndex(job_id);
}

void
JobWaitWakeAllAtCommit(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(WaitXactCallback, NULL);
		callback_registered = true;
	}
	final_mask = ~UINT64CONST(0);
}

/*
 * The job's state now, as the caller may see it: jobq._wait_state raises
 * 42704 for a job that does not exist or that the caller may not manage.
 */
static char *
ReadState(int64 id, MemoryContext cxt)
{
	JobqRoleSwitch sw;
	Oid			argtypes[2] = {INT8OID, REGROLEOID};
	Datum		values[2];
	bool		isnull;
	Datum		d;
	char	   *state;

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqKeptPlan(&plan_state, "SELECT jobq._wait_state($1, $2)", 2, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = ObjectIdGetDatum(sw.caller);
	/* not read-only: each read takes a new snapshot (READ COMMITTED) */
	JobqExecPlan(plan_state, values, NULL, SPI_OK_SELECT, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	state = isnull ? NULL : MemoryContextStrdup(cxt, TextDatumGetCString(d));
	SPI_finish();
	RestoreCaller(&sw);
	return state;
}

static bool
IsFinal(const char *state)
{
	return state != NULL && (strcmp(state, "completed") == 0 ||
							 strcmp(state, "failed") == 0 ||
							 strcmp(state, "cancelled") == 0);
}

/*
 * jobq.wait(id bigint, timeout interval DEFAULT '30 seconds') RETURNS text:
 * the job's state once it is final, or when timeout has passed (then
 * pending or running).  Owner or jobq_admin (42704 otherwise, like
 * jobq.cancel).
 */
Datum
jobq_wait(PG_FUNCTION_ARGS)
{
	int64		id;
	Interval   *timeout;
	int64		timeout_ms;
	TimestampTz deadline;
	ConditionVariable *cv;
	char	   *state;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	id = PG_GETARG_INT64(0);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("jobq: timeout must not be NULL"),
				 errhint("Give a finite interval, e.g. '30 seconds'.")));
	timeout = PG_GETARG_INTERVAL_P(1);
	if (timeout->month != 0 || timeout->day < 0 || timeout->time < 0 ||
		timeout->day > JOBQ_WAIT_MAX_DAYS ||
		(int64) timeout->day * USECS_PER_DAY + timeout->time >
		(int64) JOBQ_WAIT_MAX_DAYS * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jobq: wait timeout %s is out of range",
						DatumGetCString(DirectFunctionCall1(interval_out,
															IntervalPGetDatum(timeout)))),
				 errdetail("The timeout must be at least 0 and at most 24 days, in days, hours, minutes or seconds."),
				 errhint("Call jobq.wait again to wait longer.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("jobq.wait cannot be used in a %s transaction",
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("The transaction's snapshot would never show the job's end."),
				 errhint("Call it in a READ COMMITTED transaction (the default).")));
	if (wait_shared == NULL)
		elog(ERROR, "jobq: shared memory not initialised (is jobq in shared_preload_libraries?)");

	timeout_ms = ((int64) timeout->day * USECS_PER_DAY + timeout->time) / 1000;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	cv = &wait_shared->cv[CvIndex(id)];

	for (;;)
	{
		long		left;

		ConditionVariablePrepareToSleep(cv);
		state = ReadState(id, CurrentMemoryContext);
		if (IsFinal(state))
			break;
		left = (long) TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
			break;
		(void) ConditionVariableTimedSleep(cv, left, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	if (state == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(state));
}
