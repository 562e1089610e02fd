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
#include "bulk_insert.h"

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
static SPIPlanPtr plan_take_completed = NULL;
static SPIPlanPtr plan_lock_queue = NULL;
static SPIPlanPtr plan_complete = NULL;
static SPIPlanPtr plan_record_completed = NULL;
static Oid	jobs_active_array_type = InvalidOid;
static SPIPlanPtr plan_fail = NULL;
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
 * looks worse than a custom plan's (a LIMIT $n claim did: 10% of an
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

static int64
IntervalToMs(Datum d, bool isnull)
{
	Interval   *iv;

	if (isnull)
		return 0;
	iv = DatumGetIntervalP(d);
	return (iv->time / 1000) +
		((int64) iv->day * USECS_PER_DAY / 1000) +
		((int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY / 1000);
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
			"       q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL"
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
			/* each claimed job leaves a dead claim-index entry: see upkeep.c */
			JobqNoteClaimed(n, !token_null);
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
							"       c.priority, c.run_at, c.lease_expires_at"
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
							"           a.priority, a.run_at, a.lease_expires_at",
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
	JobqNoteClaimed(n, !token_null);
	return n;
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
	}
	return n;
}

/*
 * Fenced completion: the job of lease (id, attempt) becomes completed with
 * result, and its attempt row is written.  False, changing
 * nothing, when that lease is no longer the job's current running lease.
 * executor_lease false (jobq.complete, external workers): also false for a
 * lease an executor holds, whose handler's writes would otherwise be thrown
 * away by its own fenced completion.
 * This is the only implementation: jobq._complete (used by jobq.complete)
 * calls it too.
 */
bool
ClaimComplete(int64 id, int32 attempt, Jsonb *result, bool executor_lease)
{
	Oid			argtypes[4] = {INT8OID, INT4OID, JSONBOID, BOOLOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			ret;

	/*
	 * An external worker's completion (jobq.complete): the executor's own
	 * direct-access steps.  Its job is of an external queue (jobq.claim
	 * refuses the others), so no executor waits for the slot it frees.
	 */
	if (!executor_lease)
	{
		JobqCompletions acc;

		acc.n = 0;
		if (!ClaimTakeCompleted(id, attempt, result, false, &acc,
								CurrentMemoryContext))
			return false;
		ClaimRecordCompleted(&acc);
		return true;
	}

	JobqKeptPlan(&plan_complete,
			"WITH d AS ("
			"  DELETE FROM jobq.jobs_active a"
			"   WHERE a.id OPERATOR(pg_catalog.=) $1"
			"     AND a.attempt OPERATOR(pg_catalog.=) $2"
			"     AND pg_catalog.texteq(a.state, 'running')"
			"     AND (a.claimed_by IS NULL OR $4)"
			"  RETURNING a.*),"
			" f AS ("
			"  INSERT INTO jobq.jobs_final (id, queue, payload, state, priority, run_at,"
			"         attempt, max_attempts, unique_key, timeout, owner, created_at,"
			"         started_at, completed_at, last_heartbeat, lease_expires_at,"
			"         worker, claimed_by, snoozes, error_type, last_error, result)"
			"  SELECT d.id, d.queue, d.payload, 'completed', d.priority, d.run_at,"
			"         d.attempt, d.max_attempts, d.unique_key, d.timeout, d.owner, d.created_at,"
			"         d.started_at, pg_catalog.clock_timestamp(), d.last_heartbeat, NULL,"
			"         d.worker, d.claimed_by, d.snoozes, d.error_type, d.last_error, $3"
			"    FROM d)"
			" INSERT INTO jobq.job_attempts (job_id, attempt, queue, owner, started_at,"
			"        finished_at, outcome, worker)"
			" SELECT d.id, d.attempt, d.queue, d.owner, d.started_at,"
			"        pg_catalog.clock_timestamp(), 'completed', d.worker"
			"   FROM d"
			" RETURNING (SELECT q.kind OPERATOR(pg_catalog.=) 'sql' AND q.concurrency IS NOT NULL"
			"              FROM jobq.queues q"
			"             WHERE q.name OPERATOR(pg_catalog.=) job_attempts.queue)",
			4, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	values[3] = BoolGetDatum(executor_lease);
	if (result != NULL)
		values[2] = JsonbPGetDatum(result);
	else
		nulls[2] = 'n';
	ret = SPI_execute_plan(plan_complete, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "jobq: complete failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		return false;

	/*
	 * A slot of a concurrency-limited SQL queue came free.  Idle executors
	 * do not watch full queues (ClaimNextDue skips them: the executor that
	 * finishes a job claims the next itself), so when the finisher is not
	 * that executor (jobq._complete from another session), wake one at
	 * commit.  External workers cannot hold SQL jobs (jobq.claim refuses).
	 */
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull && DatumGetBool(d))
			JobqWakeAtCommit();
	}
	return true;
}

/*
 * jobs_active, for the direct-access completion below: its OID is kept
 * from call to call, and checked to still name jobq.jobs_active whenever
 * it is opened (backends other than executors outlive DROP and CREATE
 * EXTENSION).  The primary key comes from the relcache each time.
 */
static Oid	jobs_active_relid = InvalidOid;
static AttrNumber jobs_active_attempt_attno;
static AttrNumber jobs_active_state_attno;
static AttrNumber jobs_active_claimed_by_attno;

static void
LookupJobsActive(void)
{
	Oid			nsp = get_namespace_oid(JOBQ_SCHEMA_NAME, false);
	Oid			relid = get_relname_relid("jobs_active", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "jobq: relation jobq.jobs_active is missing");
	jobs_active_attempt_attno = get_attnum(relid, "attempt");
	jobs_active_state_attno = get_attnum(relid, "state");
	jobs_active_claimed_by_attno = get_attnum(relid, "claimed_by");
	if (jobs_active_attempt_attno == InvalidAttrNumber ||
		jobs_active_state_attno == InvalidAttrNumber ||
		jobs_active_claimed_by_attno == InvalidAttrNumber)
		elog(ERROR, "jobq: jobq.jobs_active lacks column attempt, state or claimed_by");
	jobs_active_relid = relid;
}

static Relation
OpenJobsActive(LOCKMODE lockmode)
{
	Relation	rel = NULL;

	if (OidIsValid(jobs_active_relid))
	{
		rel = try_table_open(jobs_active_relid, lockmode);
		if (rel != NULL &&
			(strcmp(RelationGetRelationName(rel), "jobs_active") != 0 ||
			 RelationGetNamespace(rel) != get_namespace_oid(JOBQ_SCHEMA_NAME, true)))
		{
			table_close(rel, lockmode);
			rel = NULL;
		}
	}
	if (rel == NULL)
	{
		LookupJobsActive();
		rel = table_open(jobs_active_relid, lockmode);
	}
	return rel;
}

/*
 * Is the row in slot the running lease (attempt) of its job?  For an
 * external caller (executor_lease false), only if no executor holds it.
 */
static bool
SlotIsLease(TupleTableSlot *slot, int32 attempt, bool executor_lease)
{
	bool		isnull;
	Datum		d;

	if (!executor_lease)
	{
		(void) slot_getattr(slot, jobs_active_claimed_by_attno, &isnull);
		if (!isnull)
			return false;
	}

	d = slot_getattr(slot, jobs_active_attempt_attno, &isnull);
	if (isnull || DatumGetInt32(d) != attempt)
		return false;
	d = slot_getattr(slot, jobs_active_state_attno, &isnull);
	if (isnull)
		return false;
	{
		text	   *state = DatumGetTextPP(d);

		return VARSIZE_ANY_EXHDR(state) == strlen("running") &&
			memcmp(VARDATA_ANY(state), "running", strlen("running")) == 0;
	}
}

/*
 * ClaimTakeCompleted's delete as a statement, for a jobs_active with a
 * trigger or a rule: the deleted row (a flat composite datum in SPI's
 * memory), or 0 when the lease is no longer current.
 */
static Datum
TakeCompletedSQL(int64 id, int32 attempt, bool executor_lease)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, BOOLOID};
	Datum		values[3];
	bool		isnull;
	int			ret;

	JobqKeptPlan(&plan_take_completed,
				 "DELETE FROM jobq.jobs_active a"
				 " WHERE a.id OPERATOR(pg_catalog.=) $1"
				 "   AND a.attempt OPERATOR(pg_catalog.=) $2"
				 "   AND pg_catalog.texteq(a.state, 'running')"
				 "   AND (a.claimed_by IS NULL OR $3)"
				 " RETURNING a",
				 3, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	values[2] = BoolGetDatum(executor_lease);
	ret = SPI_execute_plan(plan_take_completed, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "jobq: completing job %lld failed: %s", (long long) id,
			 SPI_result_code_string(ret));
	if (SPI_processed != 1)
		return (Datum) 0;
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/*
 * The first half of a batched completion, inside the job's subtransaction
 * (so it commits or rolls back with the handler's writes): the fenced
 * removal from jobs_active.  The row is kept in acc (copied into cxt) for
 * ClaimRecordCompleted.  False when the lease is no longer current.
 *
 * This is the statement
 *     DELETE FROM jobq.jobs_active WHERE id = $1 AND attempt = $2
 *        AND state = 'running' RETURNING jobs_active
 * done with the table AM directly: one primary-key probe and heap_delete.
 * Through SPI, executor start-up and shutdown of that statement were a
 * quarter of an executor's time for a no-op job.  Semantics are READ
 * COMMITTED's, as the statement had them: a row locked by another
 * transaction (jobq.cancel holds it FOR UPDATE) is waited for; a row
 * deleted meanwhile is not ours any more (fenced); a row updated meanwhile
 * is looked up again and its new version judged by the same test.
 */
bool
ClaimTakeCompleted(int64 id, int32 attempt, Jsonb *result, bool executor_lease,
				   JobqCompletions *acc, MemoryContext cxt)
{
	Relation	rel;
	Relation	pkey;
	TupleTableSlot *slot;
	Datum		row = (Datum) 0;
	bool		taken = false;
	int			tries;
	MemoryContext oldcxt;

	Assert(acc->n < JOBQ_MAX_BATCH);
	rel = OpenJobsActive(RowExclusiveLock);
	if (rel->trigdesc != NULL || rel->rd_rules != NULL)
	{
		/* a user's trigger must fire: the statement itself */
		table_close(rel, NoLock);
		row = TakeCompletedSQL(id, attempt, executor_lease);
		if (row == (Datum) 0)
			return false;
		oldcxt = MemoryContextSwitchTo(cxt);
		row = datumCopy(row, false, -1);
		MemoryContextSwitchTo(oldcxt);
		goto taken;
	}
	pkey = index_open(RelationGetPrimaryKeyIndex(rel), RowExclusiveLock);
	slot = table_slot_create(rel, NULL);

	/* each try follows one concurrent update; a job is rarely updated twice */
	for (tries = 0; tries < 100 && !taken; tries++)
	{
		Snapshot	snapshot;
		IndexScanDesc scan;
		ScanKeyData key;
		bool		found;
		TM_Result	res;
		TM_FailureData tmfd;
		ItemPointerData tid;

		/* see the handler's own writes, and every commit up to now */
		CommandCounterIncrement();
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
		scan = index_beginscan(rel, pkey, snapshot, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
		index_endscan(scan);
		if (!found || !SlotIsLease(slot, attempt, executor_lease))
		{
			UnregisterSnapshot(snapshot);
			break;
		}

		/* a flat copy first: the row's TOASTed values go with it */
		oldcxt = MemoryContextSwitchTo(cxt);
		row = ExecFetchSlotHeapTupleDatum(slot);
		MemoryContextSwitchTo(oldcxt);
		tid = slot->tts_tid;

		res = table_tuple_delete(rel, &tid, GetCurrentCommandId(true), snapshot,
								 InvalidSnapshot, true, &tmfd, false);
		UnregisterSnapshot(snapshot);
		switch (res)
		{
			case TM_Ok:
				taken = true;
				break;
			case TM_Updated:
				/* changed since we read it: judge its new version */
				pfree(DatumGetPointer(row));
				row = (Datum) 0;
				continue;
			case TM_Deleted:
				/* cancelled or recovered meanwhile: not ours any more */
				break;
			default:
				elog(ERROR, "jobq: unexpected result %d deleting job %lld",
					 (int) res, (long long) id);
		}
		break;
	}
	if (!taken && tries >= 100)
		elog(ERROR, "jobq: job %lld kept changing while being completed", (long long) id);

	ExecDropSingleTupleTableSlot(slot);
	/* the locks stay until the end of the transaction, as a statement's do */
	index_close(pkey, NoLock);
	table_close(rel, NoLock);
	if (!taken)
		return false;

taken:
	oldcxt = MemoryContextSwitchTo(cxt);
	acc->rows[acc->n] = row;
	acc->result_nulls[acc->n] = (result == NULL);
	acc->results[acc->n] = result ? datumCopy(JsonbPGetDatum(result), false, -1) : (Datum) 0;
	acc->finished[acc->n] = TimestampTzGetDatum(GetCurrentTimestamp());
	acc->n++;
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/* The attribute of desc named attname (0-based), or -1. */
static int
AttIndex(TupleDesc desc, const char *attname)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), attname) == 0)
			return i;
	}
	return -1;
}

/*
 * ClaimRecordCompleted through the table AM (bulk_insert.c): false, having
 * written nothing, when jobs_final or job_attempts has a trigger.
 */
static bool
RecordCompletedDirect(JobqCompletions *acc)
{
	JobqBulkInsert *finals;
	JobqBulkInsert *attempts;
	TupleDesc	adesc;
	TupleDesc	fdesc;
	TupleDesc	tdesc;
	HeapTupleHeader first = DatumGetHeapTupleHeader(acc->rows[0]);
	int		   *fmap;
	int			a_id,
				a_attempt,
				a_queue,
				a_owner,
				a_started,
				a_worker;
	int			f_state,
				f_completed,
				f_lease,
				f_result;
	Datum		completed = CStringGetTextDatum("completed");
	Datum	   *avals,
			   *fvals,
			   *tvals;
	bool	   *anulls,
			   *fnulls,
			   *tnulls;
	int			i,
				j;

	finals = JobqBulkBegin("jobs_final");
	if (finals == NULL)
		return false;
	attempts = JobqBulkBegin("job_attempts");
	if (attempts == NULL)
	{
		JobqBulkEnd(finals);
		return false;
	}
	fdesc = RelationGetDescr(JobqBulkRelation(finals));
	tdesc = RelationGetDescr(JobqBulkRelation(attempts));
	adesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(first),
								   HeapTupleHeaderGetTypMod(first));

	/* a final row is its active row, column by column (by name) ... */
	fmap = palloc(sizeof(int) * fdesc->natts);
	for (j = 0; j < fdesc->natts; j++)
		fmap[j] = TupleDescAttr(fdesc, j)->attisdropped ? -1 :
			AttIndex(adesc, NameStr(TupleDescAttr(fdesc, j)->attname));
	/* ... but for these */
	f_state = JobqBulkAttnum(finals, "state") - 1;
	f_completed = JobqBulkAttnum(finals, "completed_at") - 1;
	f_lease = JobqBulkAttnum(finals, "lease_expires_at") - 1;
	f_result = JobqBulkAttnum(finals, "result") - 1;
	a_id = AttIndex(adesc, "id");
	a_attempt = AttIndex(adesc, "attempt");
	a_queue = AttIndex(adesc, "queue");
	a_owner = AttIndex(adesc, "owner");
	a_started = AttIndex(adesc, "started_at");
	a_worker = AttIndex(adesc, "worker");
	if (a_id < 0 || a_attempt < 0 || a_queue < 0 || a_owner < 0 ||
		a_started < 0 || a_worker < 0)
		elog(ERROR, "jobq: jobq.jobs_active lacks a column of job_attempts");

	avals = palloc(sizeof(Datum) * adesc->natts);
	anulls = palloc(sizeof(bool) * adesc->natts);
	fvals = palloc(sizeof(Datum) * fdesc->natts);
	fnulls = palloc(sizeof(bool) * fdesc->natts);
	tvals = palloc(sizeof(Datum) * tdesc->natts);
	tnulls = palloc(sizeof(bool) * tdesc->natts);

	for (i = 0; i < acc->n; i++)
	{
		HeapTupleHeader th = DatumGetHeapTupleHeader(acc->rows[i]);
		HeapTupleData tup;

		tup.t_len = HeapTupleHeaderGetDatumLength(th);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = th;
		heap_deform_tuple(&tup, adesc, avals, anulls);

		for (j = 0; j < fdesc->natts; j++)
		{
			fnulls[j] = fmap[j] < 0 || anulls[fmap[j]];
			fvals[j] = fnulls[j] ? (Datum) 0 : avals[fmap[j]];
		}
		fvals[f_state] = completed;
		fnulls[f_state] = false;
		fvals[f_completed] = acc->finished[i];
		fnulls[f_completed] = false;
		fnulls[f_lease] = true;
		fvals[f_result] = acc->results[i];
		fnulls[f_result] = acc->result_nulls[i];
		JobqBulkAdd(finals, fvals, fnulls);

		memset(tnulls, true, sizeof(bool) * tdesc->natts);
#define SET_ATTEMPT_COL(name, val, isnull) \
		do { \
			int			k_ = JobqBulkAttnum(attempts, (name)) - 1; \
			tvals[k_] = (val); \
			tnulls[k_] = (isnull); \
		} while (0)
		SET_ATTEMPT_COL("job_id", avals[a_id], anulls[a_id]);
		SET_ATTEMPT_COL("attempt", avals[a_attempt], anulls[a_attempt]);
		SET_ATTEMPT_COL("queue", avals[a_queue], anulls[a_queue]);
		SET_ATTEMPT_COL("owner", avals[a_owner], anulls[a_owner]);
		SET_ATTEMPT_COL("started_at", avals[a_started], anulls[a_started]);
		SET_ATTEMPT_COL("finished_at", acc->finished[i], false);
		SET_ATTEMPT_COL("outcome", completed, false);
		SET_ATTEMPT_COL("worker", avals[a_worker], anulls[a_worker]);
#undef SET_ATTEMPT_COL
		JobqBulkAdd(attempts, tvals, tnulls);
	}
	ReleaseTupleDesc(adesc);
	JobqBulkEnd(finals);
	JobqBulkEnd(attempts);
	return true;
}

/*
 * The second half, once per batch in the outer transaction: the final rows
 * and the attempt rows of every job taken.  The columns written are those
 * of ClaimComplete.  Directly through the table AM, or, when a user put a
 * trigger on one of the tables, in one statement.
 */
void
ClaimRecordCompleted(JobqCompletions *acc)
{
	Oid			argtypes[3];
	Datum		values[3];
	int			dims[1];
	int			lbs[1] = {1};
	int			ret;

	if (acc->n == 0)
		return;
	if (RecordCompletedDirect(acc))
	{
		acc->n = 0;
		return;
	}
	{
		/* looked up each time: a session outlives DROP/CREATE EXTENSION */
		Oid			relid = get_relname_relid("jobs_active",
											  get_namespace_oid(JOBQ_SCHEMA_NAME, false));
		Oid			array_type = get_array_type(get_rel_type_id(relid));

		if (array_type != jobs_active_array_type && plan_record_completed != NULL)
		{
			SPI_freeplan(plan_record_completed);
			plan_record_completed = NULL;
		}
		jobs_active_array_type = array_type;
	}
	argtypes[0] = jobs_active_array_type;
	argtypes[1] = JSONBARRAYOID;
	argtypes[2] = TIMESTAMPTZARRAYOID;
	JobqKeptPlan(&plan_record_completed,
				 "WITH r AS ("
				 "  SELECT j.*, x.res, x.fin"
				 "    FROM pg_catalog.unnest($1) WITH ORDINALITY AS j"
				 "    JOIN ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3))"
				 "         WITH ORDINALITY AS x(res, fin, n)"
				 "      ON x.n OPERATOR(pg_catalog.=) j.ordinality),"
				 " f AS ("
				 "  INSERT INTO jobq.jobs_final (id, queue, payload, state, priority, run_at,"
				 "         attempt, max_attempts, unique_key, timeout, owner, created_at,"
				 "         started_at, completed_at, last_heartbeat, lease_expires_at,"
				 "         worker, claimed_by, snoozes, error_type, last_error, result)"
				 "  SELECT r.id, r.queue, r.payload, 'completed', r.priority, r.run_at,"
				 "         r.attempt, r.max_attempts, r.unique_key, r.timeout, r.owner, r.created_at,"
				 "         r.started_at, r.fin, r.last_heartbeat, NULL,"
				 "         r.worker, r.claimed_by, r.snoozes, r.error_type, r.last_error, r.res"
				 "    FROM r)"
				 " INSERT INTO jobq.job_attempts (job_id, attempt, queue, owner, started_at,"
				 "        finished_at, outcome, worker)"
				 " SELECT r.id, r.attempt, r.queue, r.owner, r.started_at, r.fin, 'completed', r.worker"
				 "   FROM r",
				 3, argtypes);

	dims[0] = acc->n;
	values[0] = PointerGetDatum(construct_array(acc->rows, acc->n,
												get_element_type(jobs_active_array_type),
												-1, false, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_md_array(acc->results, acc->result_nulls,
												   1, dims, lbs, JSONBOID, -1, false,
												   TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(acc->finished, acc->n, TIMESTAMPTZOID,
												8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ret = SPI_execute_plan(plan_record_completed, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT || SPI_processed != (uint64) acc->n)
		elog(ERROR, "jobq: recording %d completions failed: %s", acc->n,
			 SPI_result_code_string(ret));
	acc->n = 0;
}

PG_FUNCTION_INFO_V1(jobq_complete_lease);

/*
 * jobq._complete(id, attempt, result): ClaimComplete for SQL callers
 * (jobq.complete of external workers).
 */
Datum
jobq_complete_lease(PG_FUNCTION_ARGS)
{
	bool		done;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	done = ClaimComplete(PG_GETARG_INT64(0), PG_GETARG_INT32(1),
						 PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), true);
	SPI_finish();
	PG_RETURN_BOOL(done);
}

/*
 * Record a failed attempt through the retry engine.  error_class NULL lets
 * jobq.error_rules classify by SQLSTATE and message.  Returns the job's new
 * state, or NULL when the lease was no longer current.
 */
char *
ClaimFail(int64 id, int32 attempt, const char *message, const char *error_class,
		  const char *sqlstate, const char *detail)
{
	Oid			argtypes[6] = {INT8OID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;

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
	ret = SPI_execute_plan(plan_fail, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: fail failed: %s", SPI_result_code_string(ret));
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
int
ClaimRecoverLost(int64 *live_tokens, int ntokens, int64 horizon)
{
	Oid			argtypes[2] = {INT8ARRAYOID, INT8OID};
	Datum		values[2];
	Datum	   *elems;
	ArrayType  *arr;
	int			ret;
	int			i;
	int			recovered = 0;
	bool		isnull;

	JobqKeptPlan(&plan_recover,
			"SELECT pg_catalog.count(jobq._fail(j.id, j.attempt,"
			"         'the jobq executor running this job stopped (crash, kill or server restart)',"
			"         'worker_lost', NULL))::pg_catalog.int4"
			"  FROM (SELECT l.id, l.attempt FROM jobq.jobs_active l"
			"         WHERE l.state OPERATOR(pg_catalog.=) 'running'"
			"           AND l.claimed_by IS NOT NULL"
			"           AND l.claimed_by OPERATOR(pg_catalog.<>) ALL ($1)"
			"           AND l.claimed_by OPERATOR(pg_catalog.<) $2"
			/* another executor recovering the same job: leave it to it */
			"           FOR UPDATE SKIP LOCKED) j",
			2, argtypes);

	elems = palloc(sizeof(Datum) * Max(ntokens, 1));
	for (i = 0; i < ntokens; i++)
		elems[i] = Int64GetDatum(live_tokens[i]);
	arr = construct_array(elems, ntokens, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	values[0] = PointerGetDatum(arr);
	values[1] = Int64GetDatum(horizon);
	ret = SPI_execute_plan(plan_recover, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "jobq: recovery failed: %s", SPI_result_code_string(ret));
	recovered += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));

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
