/*-------------------------------------------------------------------------
 *
 * job_control.c
 *	  jobq.cancel and jobq.retry_now: a role acting on its own jobs (or
 *	  jobq_admin on any), through the job store's SQL transitions
 *	  (jobq._cancel, jobq._retry_now) with the caller captured first
 *	  (owner_switch.c); and jobq._wake_at_commit for SQL-only paths.
 *
 * IDENTIFICATION
 *	  src/job_control.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"

PG_FUNCTION_INFO_V1(jobq_cancel);
PG_FUNCTION_INFO_V1(jobq_retry_now);

static SPIPlanPtr plan_cancel = NULL;
static SPIPlanPtr plan_retry_now = NULL;

/*
 * jobq.cancel(id bigint) RETURNS boolean: true when the job was pending or
 * running and is now cancelled, false when it was already final.  Only the
 * job's owner or a member of jobq_admin (checked by jobq._cancel against
 * the captured caller).
 */
Datum
jobq_cancel(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	JobqRoleSwitch sw;
	Oid			argtypes[2] = {INT8OID, REGROLEOID};
	Datum		values[2];
	bool		isnull;
	bool		cancelled;
	bool		on_executor;
	SPIPlanPtr	plan;

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	plan = JobqKeptPlan(&plan_cancel,
					"SELECT c.cancelled, c.claimed_by IS NOT NULL "
					"FROM jobq._cancel($1, $2) c",
					2, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = ObjectIdGetDatum(sw.caller);
	JobqExecPlan(plan, values, NULL, SPI_OK_SELECT, 1);
	cancelled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	on_executor = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();
	RestoreCaller(&sw);

	if (cancelled && on_executor)
		JobqCancelAtCommit(id);	/* interrupts the handler at our commit */
	PG_RETURN_BOOL(cancelled);
}

/*
 * jobq.retry_now(id bigint) RETURNS boolean: a pending job whose run_at is
 * in the future (backoff, or scheduled) becomes due now.  False when the
 * job is running or final.  Owner or jobq_admin.
 */
Datum
jobq_retry_now(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	JobqRoleSwitch sw;
	Oid			argtypes[2] = {INT8OID, REGROLEOID};
	Datum		values[2];
	bool		isnull;
	bool		done;
	SPIPlanPtr	plan;

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	plan = JobqKeptPlan(&plan_retry_now, "SELECT jobq._retry_now($1, $2)",
					2, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = ObjectIdGetDatum(sw.caller);
	JobqExecPlan(plan, values, NULL, SPI_OK_SELECT, 1);
	done = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	RestoreCaller(&sw);

	if (done)
		JobqWakeAtCommit();
	PG_RETURN_BOOL(done);
}

PG_FUNCTION_INFO_V1(jobq_wake_at_commit);

/*
 * jobq._wake_at_commit() RETURNS void: for SQL-only paths that make a job
 * due (jobq.requeue_dead).
 */
Datum
jobq_wake_at_commit(PG_FUNCTION_ARGS)
{
	JobqWakeAtCommit();
	PG_RETURN_VOID();
}
