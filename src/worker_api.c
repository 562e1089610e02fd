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
	int			n;
	int			i;
	JobqClaimRow *rows;

	/* the direct-access claim bypasses the executor's own check */
	PreventCommandIfReadOnly("jobq.claim()");
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
		Datum		args[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', 'n'};
		Oid			argtypes[5] = {TEXTOID, INT4OID, INTERVALOID, TEXTOID, INT8OID};
		int			admitted = max_jobs;
		bool		probing = false;

		/*
		 * Behind the queue's circuit breaker, as StoreClaim (invalid
		 * arguments go to _claim as they are: it raises the error).
		 */
		if (queue != NULL && max_jobs >= 1)
			admitted = BreakerAdmit(queue, max_jobs, NULL, &probing);

		args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
		nulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';
		args[1] = PG_ARGISNULL(1) ? (Datum) 0 : Int32GetDatum(admitted);
		nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
		args[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
		nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
		args[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
		nulls[3] = PG_ARGISNULL(3) ? 'n' : ' ';
		args[4] = (Datum) 0;
		n = 0;
		if (admitted > 0 || queue == NULL || max_jobs < 1)
		{
			if (SPI_execute_with_args("SELECT c.id, c.attempt, c.owner::pg_catalog.oid, c.payload,"
									  "       c.timeout, c.priority, c.run_at, c.lease_expires_at"
									  "  FROM jobq._claim($1, $2, $3, $4, $5) c",
									  5, argtypes, args, nulls, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "jobq: claim failed");
			rows = repalloc(rows, sizeof(JobqClaimRow) * Max(SPI_processed, 1));
			n = StoreClaimRowsFromSPI(rows, CurrentMemoryContext);
			StoreReportClaimed(queue, rows, n, false);
		}
		if (probing)
			BreakerReturnProbes(queue, admitted - n);
	}

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
