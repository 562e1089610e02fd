/*-------------------------------------------------------------------------
 *
 * worker_api.c
 *	  The external worker's hot path in C: jobq.claim, jobq.complete and
 *	  jobq.finish_and_claim (both in one transaction).
 *
 * Why C: an external worker calls these once per job, each in its own
 * transaction, so their overhead is the worker's throughput.  As PL/pgSQL
 * (a SECURITY DEFINER wrapper around jobq._claim, which looked the queue up,
 * validated, probed for expired leases through another function and ran
 * the claim) a claim cost several times a one-row UPDATE.  Here the common
 * case -- valid arguments, an unlimited queue -- is one queue lookup, one
 * index probe for expired leases and the claim statement the executors run
 * (StoreClaim), all kept plans.  Everything else (bad arguments, unknown
 * queue, concurrency or rate limits) still goes through jobq._claim, so
 * its errors and its serialisation of limited queues are unchanged.
 *
 * Both run as the extension owner, like the SECURITY DEFINER functions they
 * replace (see owner_switch.c for the role switch).
 *
 * IDENTIFICATION
 *	  src/worker_api.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"
#include "breaker.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(jobq_claim);
PG_FUNCTION_INFO_V1(jobq_complete);
PG_FUNCTION_INFO_V1(jobq_finish_and_claim);

static SPIPlanPtr plan_recover_expired = NULL;

/* Claim order of SPI_tuptable rows (columns of StoreClaim). */
static bool
FastClaimPossible(const char *queue, int max_jobs, Interval *lease, bool *paused)
{
	JobqQueueRow row;

	*paused = false;
	/* a claim of more jobs than this goes through SQL: no array that size */
	if (max_jobs < 1 || max_jobs > 10000 || lease->month < 0 || lease->day < 0 || lease->time < 0 ||
		(lease->month == 0 && lease->day == 0 && lease->time == 0) ||
		lease->month > 0 || lease->day > 24 || (lease->day == 24 && lease->time > 0) ||
		lease->time > (int64) 24 * USECS_PER_DAY)
		return false;			/* _claim says what is wrong */

	/* the snapshot a read-only statement would use */
	if (!JobqReadQueue(queue, GetActiveSnapshot(), &row))
		return false;
	*paused = row.paused;
	return !row.limited && strcmp(row.kind, "external") == 0;
}

/*
 * Has an external lease expired?  The first entry of jobs_active_lease_idx
 * (external running jobs by lease end) before now() whose row is visible
 * and running: what "SELECT ... WHERE texteq(state, 'running') AND
 * claimed_by IS NULL AND lease_expires_at < now() LIMIT 1" finds through
 * that index, without a statement's start-up (a sixth of a claim).
 */
static bool
ExpiredLeaseExists(void)
{
	Relation	rel = table_open(JobqRelid("jobs_active"), AccessShareLock);
	Relation	idx = index_open(JobqRelid("jobs_active_lease_idx"), AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	state = JobqAttnum(desc, "state", false);
	AttrNumber	claimed_by = JobqAttnum(desc, "claimed_by", false);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData key;
	IndexScanDesc scan;
	bool		found = false;

	ScanKeyInit(&key, 1, BTLessStrategyNumber, F_TIMESTAMPTZ_LT,
				TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (!found && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		st = slot_getattr(slot, state, &isnull);

		found = !isnull && JobqTextEquals(st, "running") &&
			(slot_getattr(slot, claimed_by, &isnull), isnull);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/* jobq._claim recovers expired external leases on every claim; so do we. */
static void
RecoverExpiredLeases(void)
{
	if (!ExpiredLeaseExists())
		return;
	JobqKeptPlan(&plan_recover_expired, "SELECT jobq._recover_expired(100)", 0, NULL);
	if (SPI_execute_plan(plan_recover_expired, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "jobq: lease recovery failed");
}

/*
 * The external claim of jobq.claim and jobq.finish_and_claim: up to
 * max_jobs jobs of queue into *rows (palloc'd here); the arguments as SQL
 * gave them (isnull[i] for argument i: queue, max_jobs, lease, worker).
 * Called connected to SPI, as the extension owner.
 */
static int
ClaimForWorker(Datum *args, bool *isnull, JobqClaimRow **rows_out)
{
	char	   *queue;
	int			max_jobs;
	Interval	null_lease;
	Interval   *lease;
	char	   *worker;
	bool		paused = false;
	bool		fast;
	int			n;
	JobqClaimRow *rows;

	queue = isnull[0] ? NULL : TextDatumGetCString(args[0]);
	max_jobs = isnull[1] ? 0 : DatumGetInt32(args[1]);
	memset(&null_lease, 0, sizeof(null_lease));
	lease = isnull[2] ? &null_lease : DatumGetIntervalP(args[2]);
	worker = isnull[3] ? NULL : TextDatumGetCString(args[3]);

	fast = queue != NULL && !isnull[1] && !isnull[2] &&
		FastClaimPossible(queue, max_jobs, lease, &paused);
	rows = palloc(sizeof(JobqClaimRow) * Max(fast ? max_jobs : 1, 1));
	if (fast && paused)
		n = 0;
	else if (fast)
	{
		bool		busy = false;	/* a worker that got nothing asks again */

		RecoverExpiredLeases();
		n = StoreClaim(queue, false, max_jobs, lease, worker, 0, true,
					   rows, CurrentMemoryContext, &busy, NULL);
	}
	else
	{
		/* _claim validates (NULLs included) and raises the user's errors */
		Datum		sargs[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', 'n'};
		Oid			argtypes[5] = {TEXTOID, INT4OID, INTERVALOID, TEXTOID, INT8OID};
		int			admitted = max_jobs;
		bool		probing = false;
		bool		fail_fast = false;
		int			i;

		/*
		 * Behind the queue's circuit breaker, as StoreClaim (invalid
		 * arguments go to _claim as they are: it raises the error).
		 */
		if (queue != NULL && max_jobs >= 1)
			admitted = BreakerAdmit(queue, max_jobs, NULL, &probing, &fail_fast);
		if (fail_fast)
			admitted = max_jobs;	/* claimed to be dead-lettered */

		for (i = 0; i < 4; i++)
		{
			sargs[i] = isnull[i] ? (Datum) 0 : args[i];
			nulls[i] = isnull[i] ? 'n' : ' ';
		}
		if (!isnull[1])
			sargs[1] = Int32GetDatum(admitted);
		sargs[4] = (Datum) 0;
		n = 0;
		if (admitted > 0 || queue == NULL || max_jobs < 1)
		{
			if (SPI_execute_with_args("SELECT c.id, c.attempt, c.owner::pg_catalog.oid, c.payload,"
									  "       c.timeout, c.priority, c.run_at, c.lease_expires_at"
									  "  FROM jobq._claim($1, $2, $3, $4, $5) c",
									  5, argtypes, sargs, nulls, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "jobq: claim failed");
			rows = repalloc(rows, sizeof(JobqClaimRow) * Max(SPI_processed, 1));
			n = StoreClaimRowsFromSPI(rows, CurrentMemoryContext);
			StoreReportClaimed(queue, rows, n, false);
			if (fail_fast)
			{
				StoreFailOpenBreaker(queue, rows, n);
				n = 0;
			}
		}
		if (probing)
			BreakerReturnProbes(queue, admitted - n);
	}
	*rows_out = rows;
	return n;
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
	Datum		args[4];
	bool		isnull[4];
	int			n;
	int			i;
	JobqClaimRow *rows;

	/* the direct-access claim bypasses the executor's own check */
	PreventCommandIfReadOnly("jobq.claim()");
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < 4; i++)
	{
		isnull[i] = PG_ARGISNULL(i);
		args[i] = isnull[i] ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	/* detoasted in the caller's context */
	if (!isnull[0])
		args[0] = PointerGetDatum(PG_GETARG_TEXT_PP(0));
	if (!isnull[3])
		args[3] = PointerGetDatum(PG_GETARG_TEXT_PP(3));

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqReplanIfResized();

	n = ClaimForWorker(args, isnull, &rows);

	/* already in claim order */
	for (i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int64GetDatum(rows[i].id);
		values[1] = rows[i].payload;	/* detoasted by the claim */
		values[2] = Int32GetDatum(rows[i].attempt);
		values[3] = TimestampTzGetDatum(rows[i].lease_expires_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	RestoreCaller(&sw);
	return (Datum) 0;
}

/*
 * jobq.complete(id bigint, attempt int, result jsonb) RETURNS boolean:
 * the fenced completion the executors use (StoreComplete).
 */
Datum
jobq_complete(PG_FUNCTION_ARGS)
{
	JobqRoleSwitch sw;
	bool		done;

	PreventCommandIfReadOnly("jobq.complete()");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqReplanIfResized();
	/* an external caller may end external leases only (see StoreComplete) */
	done = StoreComplete(PG_GETARG_INT64(0), PG_GETARG_INT32(1),
						 PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), false, NULL);
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_BOOL(done);
}

/*
 * Is (id, attempt) an executor's lease?  Not an external worker's to end:
 * the handler's writes would be thrown away with its completion (jobq.fail
 * makes the same check).
 */
static bool
ExecutorLease(int64 id, int32 attempt)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2];

	JobqKeptPlan(&plan,
				 "SELECT FROM jobq.jobs_active a"
				 " WHERE a.id OPERATOR(pg_catalog.=) $1"
				 "   AND a.attempt OPERATOR(pg_catalog.=) $2"
				 "   AND a.claimed_by IS NOT NULL",
				 2, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: lease lookup failed");
	return SPI_processed > 0;
}

/*
 * jobq.finish_and_claim(queue text, done_id bigint, done_attempt int,
 *						 result jsonb, error text, error_class text,
 *						 lease interval, worker text, retry_after interval)
 *	 RETURNS TABLE (finished text, id bigint, payload jsonb, attempt int,
 *					lease_expires_at timestamptz)
 *
 * One transaction per job for a one-at-a-time external worker: ends the
 * lease (done_id, done_attempt) -- completed with result when error is
 * NULL, else failed with error, error_class and retry_after through the
 * retry engine --
 * and claims the next job of queue, so the worker pays one commit (one WAL
 * flush) per job instead of two.  The end is fenced exactly like
 * jobq.complete and jobq.fail: a lease that is no longer current changes
 * nothing (finished NULL), and the claim still happens.  Always one row:
 * finished is the ended job's new state (completed, pending: retry
 * scheduled, failed: dead letter) or NULL; id and the rest are NULL when
 * nothing was claimed (no due job, or queue NULL: end only).
 */
Datum
jobq_finish_and_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	JobqRoleSwitch sw;
	Datum		args[4];
	bool		isnull[4];
	char	   *finished = NULL;
	JobqClaimRow *rows = NULL;
	int			n = 0;
	Datum		values[5];
	bool		nulls[5] = {true, true, true, true, true};

	PreventCommandIfReadOnly("jobq.finish_and_claim()");
	InitMaterializedSRF(fcinfo, 0);

	/* claim arguments: queue, max_jobs 1, lease, worker */
	isnull[0] = PG_ARGISNULL(0);
	args[0] = isnull[0] ? (Datum) 0 : PointerGetDatum(PG_GETARG_TEXT_PP(0));
	isnull[1] = false;
	args[1] = Int32GetDatum(1);
	isnull[2] = PG_ARGISNULL(6);
	args[2] = isnull[2] ? (Datum) 0 : PG_GETARG_DATUM(6);
	isnull[3] = PG_ARGISNULL(7);
	args[3] = isnull[3] ? (Datum) 0 : PointerGetDatum(PG_GETARG_TEXT_PP(7));

	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqReplanIfResized();

	if (!PG_ARGISNULL(1) && !PG_ARGISNULL(2))
	{
		int64		id = PG_GETARG_INT64(1);
		int32		attempt = PG_GETARG_INT32(2);

		if (PG_ARGISNULL(4))
		{
			/* an external caller may end external leases only (StoreComplete) */
			if (StoreComplete(id, attempt, PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
							  false, NULL))
				finished = "completed";
		}
		else if (!ExecutorLease(id, attempt))
			finished = StoreFail(id, attempt,
								 text_to_cstring(PG_GETARG_TEXT_PP(4)),
								 PG_ARGISNULL(5) ? "unknown" :
								 text_to_cstring(PG_GETARG_TEXT_PP(5)),
								 PG_ARGISNULL(8) ? NULL : PG_GETARG_INTERVAL_P(8),
								 NULL, NULL, NULL);
	}

	if (!isnull[0])
		n = ClaimForWorker(args, isnull, &rows);

	if (finished != NULL)
	{
		values[0] = CStringGetTextDatum(finished);
		nulls[0] = false;
	}
	if (n > 0)
	{
		values[1] = Int64GetDatum(rows[0].id);
		values[2] = rows[0].payload;	/* detoasted by the claim */
		values[3] = Int32GetDatum(rows[0].attempt);
		values[4] = TimestampTzGetDatum(rows[0].lease_expires_at);
		nulls[1] = nulls[2] = nulls[3] = nulls[4] = false;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	SPI_finish();
	RestoreCaller(&sw);
	return (Datum) 0;
}
