/*-------------------------------------------------------------------------
 *
 * worker_api.c
 *	  The external worker's hot path in C: jobq.claim and jobq.complete.
 *
 * Why C: an external worker calls these once per job, each in its own
 * transaction, so their overhead is the worker's throughput.  As PL/pgSQL
 * (a SECURITY DEFINER wrapper around jobq._claim, which looked the queue up,
 * validated, probed for expired leases through another function and ran
 * the claim) a claim cost several times a one-row UPDATE.  Here the common
 * case -- valid arguments, an unlimited queue -- is one queue lookup, one
 * index probe for expired leases and the claim statement the executors run
 * (ClaimExecute), all kept plans.  Everything else (bad arguments, unknown
 * queue, concurrency or rate limits) still goes through jobq._claim, so
 * its errors and its serialisation of limited queues are unchanged.
 *
 * Both run as the extension owner, like the SECURITY DEFINER functions they
 * replace (see caller.c for the role switch).
 *
 * IDENTIFICATION
 *	  src/worker_api.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "claim.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(jobq_claim);
PG_FUNCTION_INFO_V1(jobq_complete);

static SPIPlanPtr plan_claim_queue = NULL;
static SPIPlanPtr plan_expired_probe = NULL;
static SPIPlanPtr plan_recover_expired = NULL;

/* Claim order of SPI_tuptable rows (columns of ClaimExecute). */
typedef struct ClaimedRow
{
	HeapTuple	tup;
	int32		priority;
	TimestampTz run_at;
	int64		id;
} ClaimedRow;

static int
CompareClaimedRows(const void *a, const void *b)
{
	const ClaimedRow *x = (const ClaimedRow *) a;
	const ClaimedRow *y = (const ClaimedRow *) b;

	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	if (x->run_at != y->run_at)
		return x->run_at < y->run_at ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return 0;
}

/*
 * May this claim take the one-statement path?  Only with valid arguments
 * and an existing, unlimited, external queue; *paused tells the caller to
 * return nothing.  Anything else is for jobq._claim to handle (or reject:
 * queues of other kinds are the executors').
 */
static bool
FastClaimPossible(const char *queue, int max_jobs, Interval *lease, bool *paused)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	bool		limited;

	*paused = false;
	if (max_jobs < 1 || lease->month < 0 || lease->day < 0 || lease->time < 0 ||
		(lease->month == 0 && lease->day == 0 && lease->time == 0))
		return false;

	JobqKeptPlan(&plan_claim_queue,
				 "SELECT q.paused, q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL"
				 "       OR q.kind OPERATOR(pg_catalog.<>) 'external'"
				 "  FROM jobq.queues q WHERE q.name OPERATOR(pg_catalog.=) $1",
				 1, argtypes);
	values[0] = CStringGetTextDatum(queue);
	if (SPI_execute_plan(plan_claim_queue, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: queue lookup failed");
	if (SPI_processed != 1)
		return false;
	*paused = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	limited = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 2, &isnull));
	return !limited;
}

/*
 * jobq._claim recovers expired external leases on every claim; so do we,
 * but pay for the PL/pgSQL call only when the lease index has one.
 */
static void
RecoverExpiredLeases(void)
{
	JobqKeptPlan(&plan_expired_probe,
				 "SELECT FROM jobq.jobs_active a"
				 " WHERE pg_catalog.texteq(a.state, 'running')"
				 "   AND a.claimed_by IS NULL"
				 "   AND a.lease_expires_at OPERATOR(pg_catalog.<) pg_catalog.now()"
				 " LIMIT 1",
				 0, NULL);
	if (SPI_execute_plan(plan_expired_probe, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: lease probe failed");
	if (SPI_processed == 0)
		return;
	JobqKeptPlan(&plan_recover_expired, "SELECT jobq._recover_expired(100)", 0, NULL);
	if (SPI_execute_plan(plan_recover_expired, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "jobq: lease recovery failed");
}

/*
 * jobq.claim(queue text, max_jobs int, lease interval, worker text)
 *	 RETURNS TABLE (id bigint, payload jsonb, attempt int, lease_expires_at timestamptz)
 */
Datum
jobq_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	JobqRoleSwitch sw;
	char	   *queue;
	int			max_jobs;
	Interval	null_lease;
	Interval   *lease;
	char	   *worker;
	bool		paused = false;
	bool		fast;
	uint64		n;
	uint64		i;
	ClaimedRow *rows;

	InitMaterializedSRF(fcinfo, 0);

	queue = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	max_jobs = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	memset(&null_lease, 0, sizeof(null_lease));
	lease = PG_ARGISNULL(2) ? &null_lease : PG_GETARG_INTERVAL_P(2);
	worker = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqReplanIfResized();

	fast = queue != NULL && !PG_ARGISNULL(1) && !PG_ARGISNULL(2) &&
		FastClaimPossible(queue, max_jobs, lease, &paused);
	if (fast && paused)
		n = 0;
	else if (fast)
	{
		RecoverExpiredLeases();
		n = ClaimExecute(queue, false, max_jobs, lease, worker, 0, true);
	}
	else
	{
		/* _claim validates (NULLs included) and raises the user's errors */
		Datum		args[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', 'n'};
		Oid			argtypes[5] = {TEXTOID, INT4OID, INTERVALOID, TEXTOID, INT8OID};

		args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
		nulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';
		args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
		nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
		args[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
		nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
		args[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
		nulls[3] = PG_ARGISNULL(3) ? 'n' : ' ';
		args[4] = (Datum) 0;
		if (SPI_execute_with_args("SELECT c.id, c.attempt, c.owner::pg_catalog.oid, c.payload,"
								  "       c.timeout, c.priority, c.run_at, c.lease_expires_at"
								  "  FROM jobq._claim($1, $2, $3, $4, $5) c",
								  5, argtypes, args, nulls, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "jobq: claim failed");
		n = SPI_processed;
	}

	/* the claim order (the UPDATE returns heap order) */
	rows = palloc(sizeof(ClaimedRow) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		rows[i].tup = tup;
		rows[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		rows[i].priority = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		rows[i].run_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
	}
	if (n > 1)
		qsort(rows, n, sizeof(ClaimedRow), CompareClaimedRows);

	for (i = 0; i < n; i++)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[4];
		bool		nulls[4];

		values[0] = SPI_getbinval(rows[i].tup, desc, 1, &nulls[0]);	/* id */
		values[1] = SPI_getbinval(rows[i].tup, desc, 4, &nulls[1]);	/* payload */
		if (!nulls[1])			/* the tuplestore must not keep a TOAST pointer */
			values[1] = PointerGetDatum(pg_detoast_datum_packed((struct varlena *) DatumGetPointer(values[1])));
		values[2] = SPI_getbinval(rows[i].tup, desc, 2, &nulls[2]);	/* attempt */
		values[3] = SPI_getbinval(rows[i].tup, desc, 8, &nulls[3]);	/* lease end */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	RestoreCaller(&sw);
	return (Datum) 0;
}

/*
 * jobq.complete(id bigint, attempt int, result jsonb) RETURNS boolean:
 * the fenced completion the executors use (ClaimComplete).
 */
Datum
jobq_complete(PG_FUNCTION_ARGS)
{
	JobqRoleSwitch sw;
	bool		done;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqReplanIfResized();
	/* an external caller may end external leases only (see ClaimComplete) */
	done = ClaimComplete(PG_GETARG_INT64(0), PG_GETARG_INT32(1),
						 PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), false);
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_BOOL(done);
}
