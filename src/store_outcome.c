/*-------------------------------------------------------------------------
 *
 * store_outcome.c
 *	  The job store's other outcomes, for executors: fail (the retry engine,
 *	  jobq._fail), release (jobq._release), the jobs of an executor that
 *	  ended itself, and recovery of jobs whose holder is gone.
 *
 * IDENTIFICATION
 *	  src/store_outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"
#include "run_sql.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "storage/bufmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "access/htup_details.h"




static SPIPlanPtr plan_fail = NULL;
static SPIPlanPtr plan_fail_nowait = NULL;
static SPIPlanPtr plan_settle_ended = NULL;
static SPIPlanPtr plan_release_token = NULL;
static SPIPlanPtr plan_release = NULL;
static SPIPlanPtr plan_recover = NULL;
static SPIPlanPtr plan_recover_leases = NULL;

/*
 * Record a failed attempt through the retry engine.  error_class NULL lets
 * jobq.error_rules classify by SQLSTATE and message; retry_after, when not
 * NULL, is the caller's wait before the retry (jobq.fail's).  Returns the job's new
 * state, or NULL when the lease was no longer current.
 */
char *
StoreFail(int64 id, int32 attempt, const char *message, const char *error_class,
		  Interval *retry_after, const char *sqlstate, const char *detail, bool *busy)
{
	Oid			argtypes[7] = {INT8OID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INTERVALOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;
	bool		isnull;

	/*
	 * With busy: take the row's lock first, skipping it when another
	 * transaction holds it, so that _fail's own FOR UPDATE never waits
	 * (see StoreComplete for why an executor must not).
	 */
	if (busy != NULL)
		JobqKeptPlan(&plan_fail_nowait,
				"SELECT CASE WHEN EXISTS (SELECT FROM jobq.jobs_active l"
				"                          WHERE l.id OPERATOR(pg_catalog.=) $1"
				"                          FOR UPDATE SKIP LOCKED)"
				"            THEN jobq._fail($1, $2, $3, $4, $7, $5, NULL, $6) END",
				7, argtypes);
	else
		JobqKeptPlan(&plan_fail,
				"SELECT jobq._fail($1, $2, $3, $4, $7, $5, NULL, $6)",
				7, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	values[2] = CStringGetTextDatum(message ? message : "");
	if (error_class)
		values[3] = CStringGetTextDatum(error_class);
	else
		nulls[3] = 'n';
	if (sqlstate && sqlstate[0])
		values[4] = CStringGetTextDatum(sqlstate);
	else
		nulls[4] = 'n';
	if (detail)
		values[5] = CStringGetTextDatum(detail);
	else
		nulls[5] = 'n';
	if (retry_after)
		values[6] = IntervalPGetDatum(retry_after);
	else
		nulls[6] = 'n';
	ret = SPI_execute_plan(busy != NULL ? plan_fail_nowait : plan_fail,
						   values, nulls, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: fail failed: %s", SPI_result_code_string(ret));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
	{
		/* fenced, or (busy) maybe held by another transaction */
		if (busy != NULL)
			*busy = StoreLeaseRunning(id, attempt);
		return NULL;
	}
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Back to pending without using the attempt: at shutdown when the grace
 * ran out (held_until 0, held_by NULL: run_at unchanged), or held until
 * held_until by the open circuit breaker held_by (an HTTP job's host).
 */
bool
StoreRelease(int64 id, int32 attempt, TimestampTz held_until, const char *held_by)
{
	Oid			argtypes[4] = {INT8OID, INT4OID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		d;
	int			ret;

	JobqKeptPlan(&plan_release, "SELECT jobq._release($1, $2, $3, $4)", 4, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	values[2] = TimestampTzGetDatum(held_until);
	if (held_until == 0)
		nulls[2] = 'n';
	if (held_by != NULL)
		values[3] = CStringGetTextDatum(held_by);
	else
		nulls[3] = 'n';
	ret = SPI_execute_plan(plan_release, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: release failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * Recover jobs lost by fact: running jobs held by an executor token that no
 * live executor holds.  Tokens at or above horizon were handed out after the
 * caller looked at the slots, so they count as alive.  Then expired leases
 * of external workers.  Returns the number of jobs recovered.
 */
/*
 * The other jobs an ended executor held (its batch, rolled back when it
 * ended): given back without using an attempt, as at a shutdown; they were
 * not at fault.  One another transaction holds is left to the recovery of
 * lost jobs.
 */
static int
ReleaseJobsOfToken(int64 token)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	int			ret;

	JobqKeptPlan(&plan_release_token,
			"SELECT pg_catalog.count(NULLIF(jobq._release(l.id, l.attempt), false))::pg_catalog.int4"
			"  FROM (SELECT a.id, a.attempt FROM jobq.jobs_active a"
			"         WHERE a.claimed_by OPERATOR(pg_catalog.=) $1"
			"           AND a.state OPERATOR(pg_catalog.=) 'running'"
			"           FOR UPDATE SKIP LOCKED) l",
			1, argtypes);
	values[0] = Int64GetDatum(token);
	ret = SPI_execute_plan(plan_release_token, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: releasing an ended executor's jobs failed: %s",
			 SPI_result_code_string(ret));
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/*
 * Jobs whose handler would not stop, so that their executor ended itself
 * (run_sql.c): recorded with their interrupt's class rather than
 * worker_lost: timeout (a failed attempt, retried per its policy),
 * cancelled (jobq.cancel has usually made the job final already: nothing
 * left to do), or released (the shutdown grace: no attempt used).  A row
 * another transaction holds is left for the next round.  Returns how many
 * jobs changed.
 */
static int
SettleEndedJobs(void)
{
	JobqEndedJob ended[JOBQ_MAX_ENDED_JOBS];
	Oid			argtypes[5] = {INT8OID, INT4OID, BOOLOID, TEXTOID, TEXTOID};
	int			n = JobqTakeEndedJobs(ended);
	int			settled = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		JobqEndedJob *e = &ended[i];
		Datum		values[5];
		bool		isnull;
		int			ret;

		JobqKeptPlan(&plan_settle_ended,
				"SELECT CASE WHEN NOT EXISTS (SELECT FROM jobq.jobs_active l"
				"                              WHERE l.id OPERATOR(pg_catalog.=) $1"
				"                                AND l.attempt OPERATOR(pg_catalog.=) $2"
				"                                AND pg_catalog.texteq(l.state, 'running')"
				"                              FOR UPDATE SKIP LOCKED) THEN NULL"
				"            WHEN $3 THEN jobq._release($1, $2)::pg_catalog.text"
				"            ELSE jobq._fail($1, $2, $4, $5, NULL, '57014') END",
				5, argtypes);
		values[0] = Int64GetDatum(e->job_id);
		values[1] = Int32GetDatum(e->attempt);
		values[2] = BoolGetDatum(e->reason == JOBQ_INTERRUPT_SHUTDOWN);
		values[3] = CStringGetTextDatum(e->reason == JOBQ_INTERRUPT_CANCEL ?
										"the handler did not stop when the job was cancelled: its executor was ended" :
										e->reason == JOBQ_INTERRUPT_SHUTDOWN ?
										"the handler did not stop at the end of the shutdown grace: its executor was ended" :
										"the handler did not stop at its timeout: its executor was ended");
		values[4] = CStringGetTextDatum(e->reason == JOBQ_INTERRUPT_CANCEL ? "cancelled" : "timeout");
		ret = SPI_execute_plan(plan_settle_ended, values, NULL, false, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "jobq: settling job %lld failed: %s", (long long) e->job_id,
				 SPI_result_code_string(ret));
		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull && StoreLeaseRunning(e->job_id, e->attempt))
		{
			JobqPutBackEndedJob(e);		/* held by another transaction */
			continue;
		}
		if (!isnull)
			settled++;
		settled += ReleaseJobsOfToken(e->token);
	}
	return settled;
}

int
StoreRecoverLost(void)
{
	int			ret;
	int			recovered = 0;
	bool		isnull;

	/*
	 * A running job is lost when no live executor of this database holds
	 * its token (random: JobqNewToken), whatever the clocks, the start order
	 * of servers, or where the row came from (a restore, a promoted
	 * standby).  The tokens are read after the statement's snapshot is taken
	 * (an InitPlan runs when first needed): an executor publishes its token
	 * before it claims, so every claim this snapshot sees has its token in
	 * the list while its executor lives.  Each row is then locked, skipping
	 * it when another transaction holds it (an executor must never wait:
	 * see StoreComplete), by the (id, attempt) this snapshot saw, so that a
	 * job recovered by another executor meanwhile, and perhaps claimed
	 * again, is left alone; _fail is fenced by the same pair.
	 */
	JobqKeptPlan(&plan_recover,
			"SELECT pg_catalog.count(jobq._fail(j.id, j.attempt,"
			"         'the jobq executor running this job stopped (crash, kill or server restart)',"
			"         'worker_lost', NULL))::pg_catalog.int4"
			"  FROM (SELECT l.id, l.attempt FROM jobq.jobs_active l"
			"         WHERE l.state OPERATOR(pg_catalog.=) 'running'"
			"           AND l.claimed_by IS NOT NULL"
			"           AND l.claimed_by OPERATOR(pg_catalog.<>)"
			"               ALL (pg_catalog.array_cat((SELECT jobq._live_executor_tokens()),"
			"                                         '{}'::pg_catalog.int8[]))) j"
			/* another transaction holds it (recovering it too): leave it */
			"  WHERE EXISTS (SELECT FROM jobq.jobs_active k"
			"                 WHERE k.id OPERATOR(pg_catalog.=) j.id"
			"                   AND k.attempt OPERATOR(pg_catalog.=) j.attempt"
			"                   AND k.state OPERATOR(pg_catalog.=) 'running'"
			"                   FOR UPDATE SKIP LOCKED)",
			0, NULL);
	ret = SPI_execute_plan(plan_recover, NULL, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "jobq: recovery failed: %s", SPI_result_code_string(ret));
	recovered += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));

	recovered += SettleEndedJobs();

	JobqKeptPlan(&plan_recover_leases,
			"SELECT jobq._recover_lost(NULL)", 0, NULL);
	ret = SPI_execute_plan(plan_recover_leases, NULL, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "jobq: lease recovery failed: %s", SPI_result_code_string(ret));
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			recovered += DatumGetInt32(d);
	}
	if (recovered > 0)
		ereport(LOG,
				(errmsg("jobq recovered %d job(s) whose worker was lost", recovered)));
	return recovered;
}
