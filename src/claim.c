/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  The executor's side of the queue: the statements it sends to jobq's
 *	  tables, prepared once per process and kept (SPI_keepplan), and the
 *	  cache of runnable SQL queues.
 *
 * Executors go through the same internal functions as external workers
 * (jobq._claim, _complete, _fail, _release), so the claim order, the
 * concurrency and rate limits, fencing and the retry engine have one
 * implementation, in SQL (sql/install/).
 *
 * All functions here expect a transaction with an active snapshot and an SPI
 * connection; results are copied into the caller's memory context.
 *
 * IDENTIFICATION
 *	  src/claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "claim.h"
#include "upkeep.h"
#include "run_sql.h"

#include <math.h>

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

/*
 * The queue cache: rebuilt, never patched.  Claimed jobs point at their
 * entry, and a claim (which may refresh the cache) can happen before the
 * jobs of the previous claim are done, so the previous generation stays
 * valid until the refresh after: two contexts, used in turn.
 */
static MemoryContext queue_cxts[2] = {NULL, NULL};
static int	queue_gen = 0;
static JobqQueue *queues = NULL;
static int	nqueues = 0;

static SPIPlanPtr plan_queues = NULL;
static SPIPlanPtr plan_claim = NULL;
static SPIPlanPtr plan_claim_sql = NULL;
static SPIPlanPtr plan_lock_queue = NULL;
static SPIPlanPtr plan_fail = NULL;
static SPIPlanPtr plan_fail_nowait = NULL;
static SPIPlanPtr plan_settle_ended = NULL;
static SPIPlanPtr plan_release_token = NULL;
static SPIPlanPtr plan_release = NULL;
static SPIPlanPtr plan_recover = NULL;
static SPIPlanPtr plan_recover_leases = NULL;
static SPIPlanPtr plan_next_due = NULL;

/*
 * Prepare sql once per process and keep the plan (SPI_keepplan) in *plan;
 * later calls return it.  Used by every module that runs SQL on jobq tables.
 *
 * The plan is always the generic one.  Left to itself the plan cache plans
 * a statement again on every call whenever the generic plan's estimate
 * looks worse than a custom plan's (a LIMIT $n claim did, and the
 * executor's time went to the planner).  Our statements are written so
 * that their generic plans are the right ones: equality on keys, arrays
 * through = ANY, no parameter-dependent choice of index.
 */
#define MAX_KEPT_PLANS 64
static SPIPlanPtr *kept_plans[MAX_KEPT_PLANS];
static int	n_kept_plans = 0;
static BlockNumber planned_at_blocks = InvalidBlockNumber;

SPIPlanPtr
JobqKeptPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		int			i;
		bool		known = false;
		SPIPlanPtr	p;

		for (i = 0; i < n_kept_plans; i++)
			known |= (kept_plans[i] == plan);
		if (!known && n_kept_plans < MAX_KEPT_PLANS)
			kept_plans[n_kept_plans++] = plan;
		p = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "jobq: SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "jobq: SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

/*
 * Generic plans are made once, with the table sizes of that moment, and
 * are replaced only when the relation's statistics change (VACUUM,
 * ANALYZE).  A plan made while jobs_active was empty may scan it
 * sequentially ("it has 3 pages") and keep doing so as it grows to
 * thousands -- for a minute or more, or for as long as a long transaction
 * keeps autovacuum from getting anywhere.  So whenever jobs_active has
 * doubled (or shrunk to a quarter) since this process planned, every kept
 * plan is dropped and made again on next use.  Call at a point where no
 * kept plan is executing (the start of a claim or an entry point).
 */
void
JobqReplanIfResized(void)
{
	Oid			nsp = get_namespace_oid(JOBQ_SCHEMA_NAME, false);
	Oid			relid = get_relname_relid("jobs_active", nsp);
	Relation	rel;
	BlockNumber nblocks;
	int			i;

	if (!OidIsValid(relid))
		return;
	rel = table_open(relid, AccessShareLock);
	nblocks = RelationGetNumberOfBlocks(rel);
	table_close(rel, NoLock);

	if (planned_at_blocks == InvalidBlockNumber)
	{
		planned_at_blocks = nblocks;
		return;
	}
	if (nblocks <= 2 * planned_at_blocks + 8 && 4 * nblocks + 8 >= planned_at_blocks)
		return;

	for (i = 0; i < n_kept_plans; i++)
	{
		if (*kept_plans[i] != NULL)
		{
			SPI_freeplan(*kept_plans[i]);
			*kept_plans[i] = NULL;
		}
	}
	planned_at_blocks = nblocks;
}

/*
 * A time limit in whole milliseconds, 0 meaning none (NULL).  Rounded up
 * and saturated, so that no positive limit becomes 0 or wraps around:
 * submit and the queue functions keep limits within 1 ms .. 24 days
 * (jobq._timeout_in_range), this holds whatever is in the tables.
 */
static int64
IntervalToMs(Datum d, bool isnull)
{
	Interval   *iv;
	double		us;

	if (isnull)
		return 0;
	iv = DatumGetIntervalP(d);
	us = (double) iv->time + (double) iv->day * USECS_PER_DAY +
		(double) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
	if (us <= 0)
		return 1;
	if (us >= (double) PG_INT32_MAX * 1000)
		return PG_INT32_MAX;
	return (int64) ceil(us / 1000);
}

/*
 * Re-read the SQL queues.  Paused queues are kept (the claim itself gives
 * nothing for them), so that pausing never races with a cached list.
 */
void
ClaimRefreshQueues(void)
{
	MemoryContext oldcxt;
	int			ret;
	uint64		i;

	JobqKeptPlan(&plan_queues,
			"SELECT q.name, pg_catalog.to_regprocedure(q.handler)::pg_catalog.oid,"
			"       q.timeout, q.warn_after,"
			"       q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL, q.handler"
			"  FROM jobq.queues q"
			" WHERE q.kind OPERATOR(pg_catalog.=) 'sql'"
			" ORDER BY q.name",
			0, NULL);
	/* not read-only: a fresh snapshot, not the batch transaction's first one */
	ret = SPI_execute_plan(plan_queues, NULL, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "jobq: reading queues failed: %s", SPI_result_code_string(ret));

	if (queue_cxts[0] == NULL)
	{
		queue_cxts[0] = AllocSetContextCreate(TopMemoryContext, "jobq queue cache",
											  ALLOCSET_SMALL_SIZES);
		queue_cxts[1] = AllocSetContextCreate(TopMemoryContext, "jobq queue cache",
											  ALLOCSET_SMALL_SIZES);
	}
	queue_gen = 1 - queue_gen;
	MemoryContextReset(queue_cxts[queue_gen]);
	oldcxt = MemoryContextSwitchTo(queue_cxts[queue_gen]);
	nqueues = (int) SPI_processed;
	queues = palloc0(sizeof(JobqQueue) * Max(nqueues, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		JobqQueue  *q = &queues[i];
		bool		isnull;
		Datum		d;

		q->name = SPI_getvalue(tup, desc, 1);
		q->name_hash = JobqQueueNameHash(q->name);
		d = SPI_getbinval(tup, desc, 2, &isnull);
		q->handler = isnull ? InvalidOid : DatumGetObjectId(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		q->timeout_ms = IntervalToMs(d, isnull);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		q->warn_after_ms = IntervalToMs(d, isnull);
		q->limited = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		q->handler_text = SPI_getvalue(tup, desc, 6);
		if (OidIsValid(q->handler))
		{
			/* it may be dropped since the query saw it: no error, no handler */
			HeapTuple	proctup = SearchSysCache1(PROCOID, ObjectIdGetDatum(q->handler));

			if (HeapTupleIsValid(proctup))
			{
				q->rettype = ((Form_pg_proc) GETSTRUCT(proctup))->prorettype;
				ReleaseSysCache(proctup);
				fmgr_info_cxt(q->handler, &q->flinfo, queue_cxts[queue_gen]);
			}
			else
				q->handler = InvalidOid;
		}
	}
	MemoryContextSwitchTo(oldcxt);
}

int
ClaimQueueCount(void)
{
	return nqueues;
}

JobqQueue *
ClaimQueue(int i)
{
	return &queues[i];
}

/*
 * Take the claim lock of a limited queue (its row) without waiting.  False
 * when another transaction holds it (or the queue is gone).
 *
 * Executors never wait for a queue row: one claim round visits several
 * queues, round robin, each executor from a different start, so waiting
 * would let two executors each hold the row the other waits for (a
 * deadlock that rolls back a whole batch of finished jobs).  Skipping is
 * safe: the holder is claiming that queue right now, and the skipper looks
 * again moments later (ClaimJobs reports it busy).
 */
static bool
LockLimitedQueue(JobqQueue *q)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	JobqKeptPlan(&plan_lock_queue,
				 "SELECT FROM jobq.queues q WHERE q.name OPERATOR(pg_catalog.=) $1"
				 "   FOR NO KEY UPDATE SKIP LOCKED",
				 1, argtypes);
	values[0] = CStringGetTextDatum(q->name);
	ret = SPI_execute_plan(plan_lock_queue, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "jobq: queue lock failed: %s", SPI_result_code_string(ret));
	return SPI_processed == 1;
}

/* Claim order: priority DESC, run_at, id. */
static int
CompareClaimRows(const void *a, const void *b)
{
	const JobqClaimRow *x = (const JobqClaimRow *) a;
	const JobqClaimRow *y = (const JobqClaimRow *) b;

	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	if (x->run_at != y->run_at)
		return x->run_at < y->run_at ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return 0;
}

/*
 * The rows of a claim made in SQL (jobq._claim), columns id, attempt,
 * owner, payload, timeout, priority, run_at, lease_expires_at, from
 * SPI_tuptable into rows (payloads copied into cxt), in claim order.
 */
int
ClaimRowsFromSPI(JobqClaimRow *rows, MemoryContext cxt)
{
	uint64		i;

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		JobqClaimRow *row = &rows[i];
		bool		isnull;
		Datum		d;
		MemoryContext oldcxt;

		row->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		row->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		row->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		oldcxt = MemoryContextSwitchTo(cxt);
		row->payload = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		MemoryContextSwitchTo(oldcxt);
		d = SPI_getbinval(tup, desc, 5, &row->timeout_null);
		if (!row->timeout_null)
			row->timeout = *DatumGetIntervalP(d);
		row->priority = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		row->run_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
		row->lease_expires_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
		/* the executors' claims return the job's handler too */
		row->handler = NULL;
		if (desc->natts >= 9)
		{
			d = SPI_getbinval(tup, desc, 9, &isnull);
			if (!isnull)
				row->handler = MemoryContextStrdup(cxt, TextDatumGetCString(d));
		}
		ItemPointerSetInvalid(&row->tid);
	}
	/* UPDATE ... RETURNING gives the rows in heap order */
	if (SPI_processed > 1)
		qsort(rows, SPI_processed, sizeof(JobqClaimRow), CompareClaimRows);
	return (int) SPI_processed;
}

/* A claim found its queue limited since the queue list was read. */
static bool queue_became_limited = false;

bool
ClaimQueueBecameLimited(void)
{
	bool		was = queue_became_limited;

	queue_became_limited = false;
	return was;
}

/*
 * The claim itself, for executors (token set) and external workers (token
 * NULL): up to max_jobs due jobs of queue become running, leased until
 * now() + lease, returned in rows (room for max_jobs; payloads in cxt) in
 * claim order.  Limited queues go through jobq._claim, which serialises
 * their claims on the queue row (the caller holds or waits for it); others
 * through ClaimHeap (claim_heap.c), the same claim as _claim's last step,
 * which also refuses a queue paused or limited since the caller looked.
 * *busy is set when the claim may have left claimable jobs behind (rows
 * another transaction held, a queue limited since the caller looked): look
 * again soon.
 */
int
ClaimExecute(const char *queue, bool limited, int max_jobs, Interval *lease,
			 const char *worker, int64 token, bool token_null,
			 JobqClaimRow *rows, MemoryContext cxt, bool *busy)
{
	Oid			argtypes[6] = {TEXTOID, INT4OID, INTERVALOID, TEXTOID, INT8OID,
	TIMESTAMPTZOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;
	int			ret;
	int			n;

	/*
	 * "Due" is judged at the moment of the claim (a retry's run_at comes from
	 * the clock), not at the transaction's start.
	 */
	if (!limited)
	{
		n = ClaimHeap(queue, max_jobs, lease, worker, token, token_null,
					  GetCurrentTimestamp(), rows, cxt, busy);
		if (n >= 0)
		{
			ClaimReportClaimed(queue, rows, n, !token_null);
			return n;
		}
		if (n == -2)
		{
			/* limited since the caller looked: it looks again, as such */
			queue_became_limited = true;
			*busy = true;
			return 0;
		}
	}

	/*
	 * As a parameter, not clock_timestamp(): a volatile call cannot be an
	 * index condition, so every not-yet-due entry the scan passed would
	 * cost a heap fetch.
	 */
	if (limited)
		plan = JobqKeptPlan(&plan_claim,
							"SELECT c.id, c.attempt, c.owner::pg_catalog.oid, c.payload, c.timeout,"
							"       c.priority, c.run_at, c.lease_expires_at, c.handler"
							"  FROM jobq._claim($1, $2, $3, $4, $5) c",
							5, argtypes);
	else
		plan = JobqKeptPlan(&plan_claim_sql,
							"UPDATE jobq.jobs_active a"
							"   SET state = 'running', attempt = a.attempt OPERATOR(pg_catalog.+) 1,"
							"       started_at = pg_catalog.now(), last_heartbeat = pg_catalog.now(),"
							"       lease_expires_at = pg_catalog.now() OPERATOR(pg_catalog.+) $3,"
							"       worker = $4, claimed_by = $5"
							" WHERE a.id OPERATOR(pg_catalog.=) ANY (ARRAY("
							"  SELECT c.id FROM jobq.jobs_active c"
							"   WHERE c.queue OPERATOR(pg_catalog.=) $1"
							"     AND c.state OPERATOR(pg_catalog.=) 'pending'"
							"     AND c.run_at OPERATOR(pg_catalog.<=) $6"
							"     AND NOT EXISTS (SELECT FROM jobq.queues q"
							"                      WHERE q.name OPERATOR(pg_catalog.=) $1"
							"                        AND (q.paused OR q.concurrency IS NOT NULL"
							"                             OR q.rate_limit IS NOT NULL))"
							"   ORDER BY c.priority DESC, c.run_at, c.id"
							"   LIMIT $2 FOR UPDATE SKIP LOCKED))"
							" RETURNING a.id, a.attempt, a.owner::pg_catalog.oid, a.payload, a.timeout,"
							"           a.priority, a.run_at, a.lease_expires_at, a.handler",
							6, argtypes);
	values[0] = CStringGetTextDatum(queue);
	values[1] = Int32GetDatum(max_jobs);
	values[2] = IntervalPGetDatum(lease);
	if (worker != NULL)
		values[3] = CStringGetTextDatum(worker);
	else
		nulls[3] = 'n';
	values[4] = Int64GetDatum(token);
	if (token_null)
		nulls[4] = 'n';
	values[5] = TimestampTzGetDatum(GetCurrentTimestamp());

	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT && ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "jobq: claim failed: %s", SPI_result_code_string(ret));
	n = ClaimRowsFromSPI(rows, cxt);
	ClaimReportClaimed(queue, rows, n, !token_null);
	return n;
}

/* The claimed events of rows (n jobs of queue), for the job store's hook. */
void
ClaimReportClaimed(const char *queue, JobqClaimRow *rows, int n, bool by_executor)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	JobqJobEvent ev;
	int			i;

	memset(&ev, 0, sizeof(ev));
	ev.event = JOBQ_EVENT_CLAIMED;
	ev.queue = queue;
	ev.started_at = now;
	for (i = 0; i < n; i++)
	{
		ev.job_id = rows[i].id;
		ev.attempt = rows[i].attempt;
		ev.owner = rows[i].owner;
		JobEventsReport(&ev);
	}
	JobEventsClaimedCount(n, by_executor);
}

/*
 * Set job's handler from its pinned text: the queue's cached one when they
 * name the same function (the common case: no lookup), else resolved now,
 * in cxt.  A job runs the handler it was submitted with, never one an
 * administrator set on the queue later (docs/api.md "Privileges").
 */
static void
SetJobHandler(JobqClaimedJob *job, JobqQueue *q, MemoryContext cxt)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		oid;
	HeapTuple	proctup;

	job->handler = InvalidOid;
	job->flinfo = NULL;
	job->rettype = InvalidOid;
	if (job->handler_text == NULL)
		return;
	if (q->handler_text != NULL && strcmp(job->handler_text, q->handler_text) == 0)
	{
		if (OidIsValid(q->handler))
		{
			job->handler = q->handler;
			job->flinfo = &q->flinfo;
			job->rettype = q->rettype;
		}
		return;
	}

	/* to_regprocedure: NULL, not an error, when it is gone */
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetTextDatum(job->handler_text);
	fcinfo->args[0].isnull = false;
	oid = to_regprocedure(fcinfo);
	if (fcinfo->isnull)
		return;
	proctup = SearchSysCache1(PROCOID, oid);
	if (!HeapTupleIsValid(proctup))
		return;
	job->rettype = ((Form_pg_proc) GETSTRUCT(proctup))->prorettype;
	ReleaseSysCache(proctup);
	job->handler = DatumGetObjectId(oid);
	job->flinfo = MemoryContextAlloc(cxt, sizeof(FmgrInfo));
	fmgr_info_cxt(job->handler, job->flinfo, cxt);
}

/*
 * Claim up to max_jobs due jobs of queue q for this executor (token).
 * Returns how many were claimed; jobs[] is filled in the caller's context,
 * in claim order.  *busy is set when the queue was skipped because another
 * transaction is claiming it (look again soon).
 */
int
ClaimJobs(JobqQueue *q, int max_jobs, int64 token, const char *worker,
		  JobqClaimedJob *jobs, bool *busy)
{
	Interval	lease;
	int			i;
	int			n;
	JobqClaimRow rows[JOBQ_MAX_BATCH];
	MemoryContext callercxt = CurrentMemoryContext;

	Assert(max_jobs <= JOBQ_MAX_BATCH);
	if (q->limited && !LockLimitedQueue(q))
	{
		*busy = true;
		return 0;
	}

	/*
	 * The lease of an executor's job is only a backstop: liveness is the
	 * token (see ClaimRecoverLost).  Make it long enough never to fire first.
	 */
	memset(&lease, 0, sizeof(lease));
	lease.time = (q->timeout_ms * max_jobs + 60000) * 1000;

	n = ClaimExecute(q->name, q->limited, max_jobs, &lease, worker, token, false,
					 rows, callercxt, busy);
	/* the cached list is at most a second old: patch this one entry now */
	if (ClaimQueueBecameLimited())
		q->limited = true;
	for (i = 0; i < n; i++)
	{
		JobqClaimedJob *job = &jobs[i];

		job->queue = q;
		job->id = rows[i].id;
		job->attempt = rows[i].attempt;
		job->owner = rows[i].owner;
		job->payload = DatumGetJsonbP(rows[i].payload);
		job->timeout_ms = rows[i].timeout_null ? q->timeout_ms :
			IntervalToMs(IntervalPGetDatum(&rows[i].timeout), false);
		job->priority = rows[i].priority;
		job->run_at = rows[i].run_at;
		job->tid = rows[i].tid;
		job->handler_text = rows[i].handler;
		SetJobHandler(job, q, callercxt);
	}
	return n;
}

/*
 * Record a failed attempt through the retry engine.  error_class NULL lets
 * jobq.error_rules classify by SQLSTATE and message.  Returns the job's new
 * state, or NULL when the lease was no longer current.
 */
char *
ClaimFail(int64 id, int32 attempt, const char *message, const char *error_class,
		  const char *sqlstate, const char *detail, bool *busy)
{
	Oid			argtypes[6] = {INT8OID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;
	bool		isnull;

	/*
	 * With busy: take the row's lock first, skipping it when another
	 * transaction holds it, so that _fail's own FOR UPDATE never waits
	 * (see ClaimComplete for why an executor must not).
	 */
	if (busy != NULL)
		JobqKeptPlan(&plan_fail_nowait,
				"SELECT CASE WHEN EXISTS (SELECT FROM jobq.jobs_active l"
				"                          WHERE l.id OPERATOR(pg_catalog.=) $1"
				"                          FOR UPDATE SKIP LOCKED)"
				"            THEN jobq._fail($1, $2, $3, $4, NULL, $5, NULL, $6) END",
				6, argtypes);
	else
		JobqKeptPlan(&plan_fail,
				"SELECT jobq._fail($1, $2, $3, $4, NULL, $5, NULL, $6)",
				6, argtypes);
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
	ret = SPI_execute_plan(busy != NULL ? plan_fail_nowait : plan_fail,
						   values, nulls, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: fail failed: %s", SPI_result_code_string(ret));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
	{
		/* fenced, or (busy) maybe held by another transaction */
		if (busy != NULL)
			*busy = ClaimLeaseRunning(id, attempt);
		return NULL;
	}
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Back to pending without using the attempt (shutdown grace ran out). */
bool
ClaimRelease(int64 id, int32 attempt)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2];
	bool		isnull;
	Datum		d;
	int			ret;

	JobqKeptPlan(&plan_release, "SELECT jobq._release($1, $2)", 2, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	ret = SPI_execute_plan(plan_release, values, NULL, false, 0);
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
		if (isnull && ClaimLeaseRunning(e->job_id, e->attempt))
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
ClaimRecoverLost(void)
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
	 * see ClaimComplete), by the (id, attempt) this snapshot saw, so that a
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

/*
 * When the next pending job of a SQL queue becomes claimable (0 when none
 * is waiting): an idle executor sleeps until then rather than a whole poll
 * interval, so scheduled jobs and retries start on time.
 *
 * A queue out of rate-limit tokens is due when its next token is; a queue
 * at its concurrency limit is not due at all (the executor finishing one of
 * its jobs claims the next in the same transaction).  Without this an idle
 * executor would find a due job it may not take and poll for it every
 * millisecond.
 */
TimestampTz
ClaimNextDue(void)
{
	bool		isnull;
	Datum		d;
	int			ret;

	JobqKeptPlan(&plan_next_due,
			"SELECT pg_catalog.min(CASE WHEN q.rate_limit IS NULL OR q.rate_tokens IS NULL"
			"                             OR q.rate_tokens OPERATOR(pg_catalog.>=) 1 THEN j.run_at"
			"                       ELSE GREATEST(j.run_at, q.rate_refilled_at"
			"                              OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs =>"
			"                                 (1 OPERATOR(pg_catalog.-) q.rate_tokens)"
			"                                 OPERATOR(pg_catalog./) q.rate_limit)) END)"
			"  FROM jobq.queues q"
			"  CROSS JOIN LATERAL (SELECT pg_catalog.min(a.run_at) AS run_at FROM jobq.jobs_active a"
			"                       WHERE a.queue OPERATOR(pg_catalog.=) q.name"
			"                         AND a.state OPERATOR(pg_catalog.=) 'pending') j"
			" WHERE q.kind OPERATOR(pg_catalog.=) 'sql' AND NOT q.paused"
			"   AND j.run_at IS NOT NULL"
			"   AND (q.concurrency IS NULL OR q.concurrency OPERATOR(pg_catalog.>)"
			"        (SELECT pg_catalog.count(*) FROM jobq.jobs_active r"
			"          WHERE r.queue OPERATOR(pg_catalog.=) q.name"
			"            AND r.state OPERATOR(pg_catalog.=) 'running'))",
			0, NULL);
	/* not read-only: a fresh snapshot that sees this transaction's writes */
	ret = SPI_execute_plan(plan_next_due, NULL, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: next-due query failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}
