/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  jobq.report_progress: a running handler says how far its job is.
 *
 * Two places, for two readers.  Live: the executor's shared-memory slot
 * (run_sql.c), read by jobq.workers and jobq.job_progress at once, before
 * the job's transaction commits.  Kept: the job row (jobq._job_progress),
 * written in the handler's own transaction, so that the value goes to
 * jobq.jobs_final with the job and is rolled back with a failed attempt's
 * other writes.  The row is written as the extension owner (the handler
 * runs as the job's owner, who may not write jobq's tables).
 *
 * IDENTIFICATION
 *	  src/progress.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "run_sql.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(jobq_report_progress);

static SPIPlanPtr plan_progress = NULL;

/* jobq.report_progress(progress float8, note text DEFAULT NULL) RETURNS void */
Datum
jobq_report_progress(PG_FUNCTION_ARGS)
{
	Oid			argtypes[4] = {INT8OID, INT4OID, FLOAT8OID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		job_id;
	int32		attempt;
	double		progress;
	char	   *note = NULL;
	JobqRoleSwitch sw;

	if (!RunSqlCurrentJob(&job_id, &attempt))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("jobq.report_progress() is called from a running job's handler only"),
				 errdetail("Progress belongs to the job a jobq executor is running in this process."),
				 errhint("External workers report progress with jobq.heartbeat(id, attempt, progress => ..., note => ...).")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("progress must not be NULL"),
				 errhint("Report a fraction from 0 to 1: 0.5 for half done.")));
	progress = PG_GETARG_FLOAT8(0);
	if (!PG_ARGISNULL(1))
		note = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/* validated and kept on the job, in the handler's transaction */
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqKeptPlan(&plan_progress, "SELECT jobq._job_progress($1, $2, $3, $4)", 4, argtypes);
	values[0] = Int64GetDatum(job_id);
	values[1] = Int32GetDatum(attempt);
	values[2] = Float8GetDatum(progress);
	if (note != NULL)
		values[3] = CStringGetTextDatum(note);
	else
		nulls[3] = 'n';
	if (SPI_execute_plan(plan_progress, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "jobq: recording progress failed");
	SPI_finish();
	RestoreCaller(&sw);

	/* and shown at once */
	RunSqlNoteProgress(job_id, progress, note);
	PG_RETURN_VOID();
}
