/*-------------------------------------------------------------------------
 *
 * store_claim.c
 *	  The job store's claim: pending jobs of a queue become running, for
 *	  executors (token set) and external workers (token NULL); unlimited
 *	  queues directly (store_claim_direct.c) or through the kept UPDATE,
 *	  limited ones through jobq._claim; and the claimed events.
 *
 * IDENTIFICATION
 *	  src/store_claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"
#include "upkeep.h"
#include "breaker.h"

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




static SPIPlanPtr plan_claim = NULL;
static SPIPlanPtr plan_claim_sql = NULL;
static SPIPlanPtr plan_lock_queue = NULL;
static SPIPlanPtr plan_lock_queue_wait = NULL;

/*
 * Take the claim lock of a queue (its row): waiting for it (external
 * workers, as jobq._claim does), or not (executors).  False when the queue
 * is gone, or, without waiting, when another transaction holds it.
 *
 * Executors never wait for a queue row: one claim round visits several
 * queues, round robin, each executor from a different start, so waiting
 * would let two executors each hold the row the other waits for (a
 * deadlock that rolls back a whole batch of finished jobs).  Skipping is
 * safe: the holder is claiming that queue right now, and the skipper looks
 * again moments later (StoreClaimJobs reports it busy).
 */
static bool
LockQueue(const char *queue, bool wait)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	SPIPlanPtr	plan;
	int			ret;

	if (wait)
		plan = JobqKeptPlan(&plan_lock_queue_wait,
							"SELECT FROM jobq.queues q WHERE q.name OPERATOR(pg_catalog.=) $1"
							"   FOR NO KEY UPDATE",
							1, argtypes);
	else
		plan = JobqKeptPlan(&plan_lock_queue,
							"SELECT FROM jobq.queues q WHERE q.name OPERATOR(pg_catalog.=) $1"
							"   FOR NO KEY UPDATE SKIP LOCKED",
							1, argtypes);
	values[0] = CStringGetTextDatum(queue);
	ret = SPI_execute_plan(plan, values, NULL, false, 1);
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
StoreClaimRowsFromSPI(JobqClaimRow *rows, MemoryContext cxt)
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
StoreClaimQueueBecameLimited(void)
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
 * through StoreClaimDirect (store_claim_direct.c), the same claim as _claim's last step,
 * which also refuses a queue paused or limited since the caller looked.
 * *busy is set when the claim may have left claimable jobs behind (rows
 * another transaction held, a queue limited since the caller looked): look
 * again soon.
 */
static int
ClaimAdmitted(const char *queue, bool limited, int max_jobs, Interval *lease,
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
		n = StoreClaimDirect(queue, max_jobs, lease, worker, token, token_null,
					  GetCurrentTimestamp(), rows, cxt, busy);
		if (n >= 0)
		{
			StoreReportClaimed(queue, rows, n, !token_null);
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
	 * The claim statement below, in READ COMMITTED, locks the newest version
	 * of a row changed since its snapshot and only then rechecks it: a row
	 * another claim made running meanwhile is skipped but stays locked until
	 * this transaction ends, and that claim's executor, completing the job
	 * meanwhile, would find its own row held (and give the job back).  The
	 * direct claim skips such a row unlocked.  Claims of one queue are
	 * therefore serialised on its row here, as jobq._claim does for limited
	 * queues: each claim's snapshot is taken after the previous claim of the
	 * queue committed, so no pending row it sees is claimed meanwhile.
	 */
	if (!limited)
	{
		if (!LockQueue(queue, token_null) && !token_null)
		{
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
	n = StoreClaimRowsFromSPI(rows, cxt);
	StoreReportClaimed(queue, rows, n, !token_null);
	return n;
}

/* The claimed events of rows (n jobs of queue), for the job store's hook. */
void
StoreReportClaimed(const char *queue, JobqClaimRow *rows, int n, bool by_executor)
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
 * Jobs of queue just claimed while its circuit breaker is open and its
 * breaker_mode is fail_fast: each attempt fails at once with class
 * breaker_open, which is never retried (the job is dead-lettered) and does
 * not count against the breaker.
 */
void
StoreFailOpenBreaker(const char *queue, JobqClaimRow *rows, int n)
{
	char	   *message = psprintf("the circuit breaker of queue \"%s\" is open", queue);
	int			i;

	for (i = 0; i < n; i++)
		(void) StoreFail(rows[i].id, rows[i].attempt, message, "breaker_open",
						 NULL, NULL, "breaker_mode fail_fast", NULL);
	pfree(message);
}

/*
 * The claim, behind the queue's circuit breaker (breaker.c): as many jobs
 * as it admits (none while open: they stay pending, no attempt used; the
 * probes while half open).  *held_until, when not NULL, is set to when a
 * queue its breaker held back may be asked again (0: not held).  A queue
 * in breaker_mode fail_fast is claimed while open, and what the claim took
 * is dead-lettered (StoreFailOpenBreaker): none is returned.
 */
int
StoreClaim(const char *queue, bool limited, int max_jobs, Interval *lease,
		   const char *worker, int64 token, bool token_null,
		   JobqClaimRow *rows, MemoryContext cxt, bool *busy,
		   TimestampTz *held_until)
{
	bool		probing;
	bool		fail_fast;
	int			admitted = BreakerAdmit(queue, max_jobs, held_until, &probing,
										&fail_fast);
	int			n;

	if (fail_fast)
	{
		n = ClaimAdmitted(queue, limited, max_jobs, lease, worker, token,
						  token_null, rows, cxt, busy);
		StoreFailOpenBreaker(queue, rows, n);
		/* a full claim may have left more to fail: look again soon */
		if (n == max_jobs && busy != NULL)
			*busy = true;
		return 0;
	}
	if (admitted == 0)
		return 0;
	n = ClaimAdmitted(queue, limited, admitted, lease, worker, token, token_null,
					  rows, cxt, busy);
	if (probing)
		BreakerReturnProbes(queue, admitted - n);
	return n;
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
StoreClaimJobs(JobqQueue *q, int max_jobs, int64 token, const char *worker,
		  JobqClaimedJob *jobs, bool *busy)
{
	Interval	lease;
	int			i;
	int			n;
	JobqClaimRow rows[JOBQ_MAX_BATCH];
	MemoryContext callercxt = CurrentMemoryContext;

	Assert(max_jobs <= JOBQ_MAX_BATCH);
	if (q->limited && !LockQueue(q->name, false))
	{
		*busy = true;
		return 0;
	}

	/*
	 * The lease of an executor's job is only a backstop: liveness is the
	 * token (see StoreRecoverLost).  Make it long enough never to fire first.
	 */
	memset(&lease, 0, sizeof(lease));
	lease.time = (q->timeout_ms * max_jobs + 60000) * 1000;

	n = StoreClaim(q->name, q->limited, max_jobs, &lease, worker, token, false,
				   rows, callercxt, busy, &q->held_until);
	/* the cached list is at most a second old: patch this one entry now */
	if (StoreClaimQueueBecameLimited())
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
			JobqIntervalToMs(IntervalPGetDatum(&rows[i].timeout), false);
		job->priority = rows[i].priority;
		job->run_at = rows[i].run_at;
		job->tid = rows[i].tid;
		job->handler_text = rows[i].handler;
		SetJobHandler(job, q, callercxt);
	}
	return n;
}
