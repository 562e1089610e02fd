/*-------------------------------------------------------------------------
 *
 * queue_cache.c
 *	  The executor's cache of runnable SQL queues (rebuilt when jobq.queues
 *	  changes: the statement trigger jobq._queues_changed), and when the
 *	  next job of one of them becomes due.
 *
 * IDENTIFICATION
 *	  src/queue_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "queue_cache.h"

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

#include <math.h>



#include "commands/trigger.h"

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
static SPIPlanPtr plan_next_due = NULL;

/*
 * A time limit in whole milliseconds, 0 meaning none (NULL).  Rounded up
 * and saturated, so that no positive limit becomes 0 or wraps around:
 * submit and the queue functions keep limits within 1 ms .. 24 days
 * (jobq._timeout_in_range), this holds whatever is in the tables.
 */
int64
JobqIntervalToMs(Datum d, bool isnull)
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
QueueCacheRefresh(void)
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
		q->timeout_ms = JobqIntervalToMs(d, isnull);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		q->warn_after_ms = JobqIntervalToMs(d, isnull);
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
QueueCacheCount(void)
{
	return nqueues;
}

JobqQueue *
QueueCacheGet(int i)
{
	return &queues[i];
}

/*
 * When the next pending job of a SQL queue becomes claimable (0 when none
 * is waiting): an idle executor sleeps until then rather than a whole poll
 * interval, so scheduled jobs and retries start on time.
 *
 * A queue out of rate-limit tokens is due when its next token is; a queue
 * at its concurrency limit is not due at all (the executor finishing one of
 * its jobs claims the next in the same transaction).  A queue its circuit
 * breaker holds (held_until, set by the claim) is due when the breaker may
 * be asked again.  Without this an idle executor would find a due job it
 * may not take and poll for it every millisecond.
 */
TimestampTz
QueueCacheNextDue(void)
{
	bool		isnull;
	Datum		d;
	int			ret;
	Datum	   *held = palloc(sizeof(Datum) * Max(nqueues, 1));
	int			nheld = 0;
	TimestampTz held_until = 0;
	TimestampTz now = GetCurrentTimestamp();
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		values[1];
	int			i;

	/* queues their circuit breaker holds are due when it may be asked again */
	for (i = 0; i < nqueues; i++)
	{
		if (queues[i].held_until > now)
		{
			held[nheld++] = CStringGetTextDatum(queues[i].name);
			if (held_until == 0 || queues[i].held_until < held_until)
				held_until = queues[i].held_until;
		}
	}
	values[0] = PointerGetDatum(construct_array(held, nheld, TEXTOID, -1, false, TYPALIGN_INT));

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
			"   AND NOT (q.name OPERATOR(pg_catalog.=) ANY ($1))"
			"   AND j.run_at IS NOT NULL"
			"   AND (q.concurrency IS NULL OR q.concurrency OPERATOR(pg_catalog.>)"
			"        (SELECT pg_catalog.count(*) FROM jobq.jobs_active r"
			"          WHERE r.queue OPERATOR(pg_catalog.=) q.name"
			"            AND r.state OPERATOR(pg_catalog.=) 'running'))",
			1, argtypes);
	/* not read-only: a fresh snapshot that sees this transaction's writes */
	ret = SPI_execute_plan(plan_next_due, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: next-due query failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return held_until;
	if (held_until != 0 && held_until < DatumGetTimestampTz(d))
		return held_until;
	return DatumGetTimestampTz(d);
}

PG_FUNCTION_INFO_V1(jobq_queues_changed);

/*
 * jobq._queues_changed() RETURNS trigger: statement trigger on jobq.queues.
 * At commit, executors learn that their cached queue list is stale
 * (jobq_shared->queues_version), whoever changed the table and however.
 */
Datum
jobq_queues_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("jobq._queues_changed() must be called as a trigger")));
	JobqQueuesChangedAtCommit();
	return PointerGetDatum(NULL);
}

/* Does a circuit breaker hold one of the queues now? */
bool
QueueCacheAnyHeld(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < nqueues; i++)
		if (queues[i].held_until > now)
			return true;
	return false;
}
