/*-------------------------------------------------------------------------
 *
 * schedules.c
 *	  jobq.schedule, jobq.unschedule and jobq.schedules: recurring
 *	  submissions through pg_cron, for the calling role.
 *
 * The role is captured here (owner_switch.c says why it must be C): the
 * pg_cron job runs as that role, and a role sees and removes only its own
 * schedules (jobq_admin sees all).  The work is done by the SQL functions
 * of sql/install/70_schedules.sql, as the extension owner, which may
 * schedule pg_cron jobs for other roles.
 *
 * IDENTIFICATION
 *	  src/schedules.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(jobq_schedule);
PG_FUNCTION_INFO_V1(jobq_unschedule);
PG_FUNCTION_INFO_V1(jobq_schedules);

static SPIPlanPtr plan_schedule = NULL;
static SPIPlanPtr plan_unschedule = NULL;
static SPIPlanPtr plan_rows = NULL;

/*
 * jobq.schedule(name text, schedule text, queue text, payload jsonb)
 *	 RETURNS bigint: the pg_cron job id.  NULL arguments reach
 * jobq._schedule, which says what is wrong with them.
 */
Datum
jobq_schedule(PG_FUNCTION_ARGS)
{
	JobqRoleSwitch sw;
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, REGROLEOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		jobid;
	int			i;

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqKeptPlan(&plan_schedule, "SELECT jobq._schedule($1, $2, $3, $4, $5)", 5, argtypes);
	for (i = 0; i < 4; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	values[4] = ObjectIdGetDatum(sw.caller);
	JobqExecPlan(plan_schedule, values, nulls, SPI_OK_SELECT, 1);
	jobid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	RestoreCaller(&sw);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(jobid);
}

/* jobq.unschedule(name text) RETURNS boolean */
Datum
jobq_unschedule(PG_FUNCTION_ARGS)
{
	JobqRoleSwitch sw;
	Oid			argtypes[2] = {TEXTOID, REGROLEOID};
	Datum		values[2];
	bool		isnull;
	bool		done;

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqKeptPlan(&plan_unschedule, "SELECT jobq._unschedule($1, $2)", 2, argtypes);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = ObjectIdGetDatum(sw.caller);
	JobqExecPlan(plan_unschedule, values, NULL, SPI_OK_SELECT, 1);
	done = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_BOOL(done);
}

/* jobq._schedules(): the rows of jobq.schedules the caller may see. */
Datum
jobq_schedules(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	JobqRoleSwitch sw;
	Oid			argtypes[1] = {REGROLEOID};
	Datum		values[1];
	uint64		i;

	InitMaterializedSRF(fcinfo, 0);
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqKeptPlan(&plan_rows, "SELECT * FROM jobq._schedule_rows($1)", 1, argtypes);
	values[0] = ObjectIdGetDatum(sw.caller);
	JobqExecPlan(plan_rows, values, NULL, SPI_OK_SELECT, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		Datum	   *v = palloc(sizeof(Datum) * rsinfo->setDesc->natts);
		bool	   *n = palloc(sizeof(bool) * rsinfo->setDesc->natts);

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, v, n);
		/* the tuplestore copies the values before SPI's memory goes */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	SPI_finish();
	RestoreCaller(&sw);
	return (Datum) 0;
}
