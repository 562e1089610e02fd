/*-------------------------------------------------------------------------
 *
 * queue_gauges.c
 *	  Active and running jobs per queue, from committed job events, behind
 *	  jobq._queue_counts() and the views jobq.queue_stats and jobq.health.
 *
 * Counting the pending jobs of a queue means reading every one of them: a
 * million pending jobs take hundreds of milliseconds, too slow for a view a
 * dashboard reads every few seconds.  So every commit adds what its job
 * events changed (submitted and final_*: active; claimed and attempt_*:
 * running) to a gauge per (database, queue) in shared memory, and a view
 * reads the gauge.
 *
 * A gauge starts from an exact count (its base), taken by the first reader
 * after the server starts, after any change to jobq.queues (a queue dropped
 * with its jobs, or created again), after a TRUNCATE of a jobq table
 * commits, and again every BASE_MAX_AGE_MS, so a change that reports no
 * event (a DELETE by hand) is corrected within that time.  The base is the count under a fresh snapshot plus what commits
 * added to the gauge since that snapshot was taken; a commit whose events
 * reach the gauge in the instant between becoming visible and the reading
 * may be counted twice or not at all until the next base.
 *
 * IDENTIFICATION
 *	  src/queue_gauges.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "queue_gauges.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define GAUGE_SLOTS 1024
#define BASE_MAX_AGE_MS (10 * 60 * 1000)

/* One queue of one database.  Entries are never removed. */
typedef struct Gauge
{
	Oid			dboid;			/* InvalidOid: free */
	char		queue[NAMEDATALEN];
	int64		active;			/* pending + running; meaningful once based */
	int64		running;
	bool		based;
	TimestampTz based_at;
	uint64		based_queues_version;	/* jobq_shared->queues_version then */
	uint64		based_generation;	/* GaugeTable.generation then */
	JobqMetricCounts totals;	/* committed since the server started */
} Gauge;

/* Failed attempts of one queue and error class since the server started. */
#define FAILURE_SLOTS 1024

typedef struct FailureCount
{
	Oid			dboid;			/* InvalidOid: free */
	char		queue[NAMEDATALEN];
	char		error_class[NAMEDATALEN];
	uint64		failed;
} FailureCount;

/*
 * Shared; every field under lock (JobqCountersLock, shared with metrics.c:
 * a commit publishes to both under one acquisition).  Open addressing,
 * linear probing; when a table is three quarters full, new keys are not
 * counted.
 */
typedef struct GaugeTable
{
	LWLock	   *lock;
	int			used;
	uint64		generation;		/* bumped by a committed TRUNCATE: every base is old */
	Gauge		slots[GAUGE_SLOTS];
	int			failures_used;
	FailureCount failures[FAILURE_SLOTS];
} GaugeTable;

static GaugeTable *gauges = NULL;
static bool forget_at_commit = false;
static bool callback_registered = false;

static void
GaugesXactCallback(XactEvent event, void *arg)
{
	if (!forget_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
	{
		LWLockAcquire(gauges->lock, LW_EXCLUSIVE);
		gauges->generation++;
		LWLockRelease(gauges->lock);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_ABORT)
		forget_at_commit = false;
}

void
JobqGaugesForgetAtCommit(void)
{
	if (gauges == NULL)
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(GaugesXactCallback, NULL);
		callback_registered = true;
	}
	forget_at_commit = true;
}

/* The gauge of the key; with create, a new one when missing (NULL: full). */
static Gauge *
FindGauge(Oid dboid, const char *queue, bool create)
{
	uint32		i = hash_combine(hash_bytes((const unsigned char *) queue, strlen(queue)),
								 hash_bytes_uint32(dboid)) % GAUGE_SLOTS;
	int			probes;

	for (probes = 0; probes < GAUGE_SLOTS; probes++, i = (i + 1) % GAUGE_SLOTS)
	{
		Gauge	   *g = &gauges->slots[i];

		if (g->dboid == dboid && strcmp(g->queue, queue) == 0)
			return g;
		if (g->dboid == InvalidOid)
		{
			if (!create || gauges->used >= GAUGE_SLOTS * 3 / 4)
				return NULL;
			memset(g, 0, sizeof(Gauge));
			g->dboid = dboid;
			strlcpy(g->queue, queue, NAMEDATALEN);
			gauges->used++;
			return g;
		}
	}
	return NULL;
}

void
JobqGaugesAddLocked(Oid dboid, const char *queue, const JobqMetricCounts *c)
{
	const uint64 *e = c->events;
	int64		active = (int64) e[JOBQ_EVENT_SUBMITTED]
		- (int64) (e[JOBQ_EVENT_FINAL_COMPLETED] + e[JOBQ_EVENT_FINAL_FAILED] +
				   e[JOBQ_EVENT_FINAL_CANCELLED]);
	int64		running = (int64) e[JOBQ_EVENT_CLAIMED]
		- (int64) (e[JOBQ_EVENT_ATTEMPT_COMPLETED] + e[JOBQ_EVENT_ATTEMPT_FAILED] +
				   e[JOBQ_EVENT_ATTEMPT_SNOOZED] + e[JOBQ_EVENT_ATTEMPT_RELEASED] +
				   e[JOBQ_EVENT_ATTEMPT_CANCELLED]);
	Gauge	   *g;

	if (gauges == NULL || !OidIsValid(dboid))
		return;
	Assert(LWLockHeldByMeInMode(gauges->lock, LW_EXCLUSIVE));
	g = FindGauge(dboid, queue, true);
	if (g != NULL)
	{
		g->active += active;
		g->running += running;
		JobqMetricCountsAdd(&g->totals, c);
	}
}

void
JobqGaugesAddFailuresLocked(Oid dboid, const char *queue, const char *error_class,
							uint64 n)
{
	uint32		i;
	int			probes;

	if (gauges == NULL || !OidIsValid(dboid) || n == 0)
		return;
	i = hash_combine(hash_combine(hash_bytes((const unsigned char *) queue, strlen(queue)),
								  hash_bytes((const unsigned char *) error_class, strlen(error_class))),
					 hash_bytes_uint32(dboid)) % FAILURE_SLOTS;
	Assert(LWLockHeldByMeInMode(gauges->lock, LW_EXCLUSIVE));
	for (probes = 0; probes < FAILURE_SLOTS; probes++, i = (i + 1) % FAILURE_SLOTS)
	{
		FailureCount *f = &gauges->failures[i];

		if (f->dboid == dboid && strcmp(f->queue, queue) == 0 &&
			strcmp(f->error_class, error_class) == 0)
		{
			f->failed += n;
			break;
		}
		if (f->dboid == InvalidOid)
		{
			if (gauges->failures_used >= FAILURE_SLOTS * 3 / 4)
				break;
			f->dboid = dboid;
			strlcpy(f->queue, queue, NAMEDATALEN);
			strlcpy(f->error_class, error_class, NAMEDATALEN);
			f->failed = n;
			gauges->failures_used++;
			break;
		}
	}
}

/* What one queue has (a row of the exact count). */
typedef struct QueueCount
{
	char		queue[NAMEDATALEN];
	int64		active;
	int64		running;
	int64		active_then;	/* the gauge when the snapshot was taken */
	int64		running_then;
} QueueCount;

static SPIPlanPtr plan_queues = NULL;
static SPIPlanPtr plan_count = NULL;

/* Does any gauge of these queues need a (new) base? */
static bool
NeedBase(QueueCount *qs, int n, TimestampTz now, uint64 version)
{
	bool		need = false;
	int			i;

	LWLockAcquire(gauges->lock, LW_SHARED);
	for (i = 0; i < n && !need; i++)
	{
		Gauge	   *g = FindGauge(MyDatabaseId, qs[i].queue, false);

		need = g == NULL || !g->based || g->based_queues_version != version ||
			g->based_generation != gauges->generation ||
			TimestampDifferenceExceeds(g->based_at, now, BASE_MAX_AGE_MS);
	}
	LWLockRelease(gauges->lock);
	return need;
}

/*
 * Count every queue's active and running jobs under a fresh snapshot and
 * make the result the gauges' base.  Inside SPI.
 */
static void
Rebase(QueueCount *qs, int n, uint64 version)
{
	Snapshot	snap;
	TimestampTz now = GetCurrentTimestamp();
	uint64		generation;
	uint64		r;
	int			i;

	LWLockAcquire(gauges->lock, LW_SHARED);
	generation = gauges->generation;
	LWLockRelease(gauges->lock);
	snap = RegisterSnapshot(GetLatestSnapshot());

	/* right after the snapshot: what the gauges held then */
	LWLockAcquire(gauges->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		Gauge	   *g = FindGauge(MyDatabaseId, qs[i].queue, true);

		qs[i].active_then = g != NULL ? g->active : 0;
		qs[i].running_then = g != NULL ? g->running : 0;
	}
	LWLockRelease(gauges->lock);

	JobqKeptPlan(&plan_count,
				 "SELECT a.queue, pg_catalog.count(*), "
				 "pg_catalog.count(*) FILTER (WHERE a.state OPERATOR(pg_catalog.=) 'running') "
				 "FROM jobq.jobs_active a GROUP BY a.queue", 0, NULL);
	if (SPI_execute_snapshot(plan_count, NULL, NULL, snap, InvalidSnapshot,
							 true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "jobq: counting active jobs failed");
	for (i = 0; i < n; i++)
		qs[i].active = qs[i].running = 0;
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *queue = SPI_getvalue(tup, desc, 1);
		bool		isnull;

		for (i = 0; i < n; i++)
			if (strcmp(qs[i].queue, queue) == 0)
			{
				qs[i].active = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
				qs[i].running = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
			}
	}
	UnregisterSnapshot(snap);

	LWLockAcquire(gauges->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		Gauge	   *g = FindGauge(MyDatabaseId, qs[i].queue, true);

		if (g == NULL)
			continue;			/* no room: this reader's count stands */
		g->active = qs[i].active + (g->active - qs[i].active_then);
		g->running = qs[i].running + (g->running - qs[i].running_then);
		g->based = true;
		g->based_at = now;
		g->based_queues_version = version;
		g->based_generation = generation;
	}
	LWLockRelease(gauges->lock);
}

PG_FUNCTION_INFO_V1(jobq_queue_counts);

/*
 * jobq._queue_counts() RETURNS TABLE (queue text, pending bigint,
 * running bigint): every queue of this database, from the gauges (see the
 * head comment); pending includes jobs scheduled for later.
 */
Datum
jobq_queue_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		version = jobq_shared != NULL ? pg_atomic_read_u64(&jobq_shared->queues_version) : 0;
	QueueCount *qs;
	int			n,
				i;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqKeptPlan(&plan_queues, "SELECT q.name FROM jobq.queues q ORDER BY q.name", 0, NULL);
	if (SPI_execute_plan(plan_queues, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "jobq: reading jobq.queues failed");
	n = (int) SPI_processed;
	qs = palloc0(sizeof(QueueCount) * Max(n, 1));
	for (i = 0; i < n; i++)
		strlcpy(qs[i].queue, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
				NAMEDATALEN);

	if (gauges == NULL)
		elog(ERROR, "jobq: shared memory is not set up");
	if (NeedBase(qs, n, GetCurrentTimestamp(), version))
		Rebase(qs, n, version);
	LWLockAcquire(gauges->lock, LW_SHARED);
	for (i = 0; i < n; i++)
	{
		Gauge	   *g = FindGauge(MyDatabaseId, qs[i].queue, false);

		if (g != NULL && g->based)
		{
			qs[i].active = g->active;
			qs[i].running = g->running;
		}
	}
	LWLockRelease(gauges->lock);
	SPI_finish();

	for (i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int64		running = Max(qs[i].running, 0);

		values[0] = CStringGetTextDatum(qs[i].queue);
		values[1] = Int64GetDatum(Max(qs[i].active - running, 0));
		values[2] = Int64GetDatum(running);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

typedef struct CounterDef
{
	const char *name;
	const char *help;
	int			event;			/* JobqEvent, or -1: retried, -2: timed_out */
} CounterDef;

static const CounterDef counter_defs[] = {
	{"jobq_jobs_submitted_total", "Jobs submitted.", JOBQ_EVENT_SUBMITTED},
	{"jobq_attempts_started_total", "Attempts started (jobs claimed).", JOBQ_EVENT_CLAIMED},
	{"jobq_attempts_completed_total", "Attempts that completed their job.", JOBQ_EVENT_ATTEMPT_COMPLETED},
	{"jobq_attempts_failed_total", "Attempts that failed.", JOBQ_EVENT_ATTEMPT_FAILED},
	{"jobq_attempts_retried_total", "Failed attempts whose job was retried.", -1},
	{"jobq_attempts_timed_out_total", "Failed attempts of class timeout.", -2},
	{"jobq_attempts_snoozed_total", "Attempts snoozed (rate limited).", JOBQ_EVENT_ATTEMPT_SNOOZED},
	{"jobq_attempts_released_total", "Attempts given back without being used.", JOBQ_EVENT_ATTEMPT_RELEASED},
	{"jobq_jobs_cancelled_total", "Jobs cancelled.", JOBQ_EVENT_FINAL_CANCELLED},
	{"jobq_jobs_dead_lettered_total", "Jobs that failed for good (dead letters).", JOBQ_EVENT_FINAL_FAILED},
};

PG_FUNCTION_INFO_V1(jobq_prometheus_totals);

/*
 * jobq._prometheus_totals() RETURNS text: this database's counters per
 * queue since the server started, and the histogram of attempt runtimes,
 * in the Prometheus text exposition format (a restart resets them, which
 * Prometheus' rate() expects of a counter).
 */
Datum
jobq_prometheus_totals(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	Gauge	   *mine;
	int			n = 0,
				i,
				d,
				b;

	if (gauges == NULL)
		elog(ERROR, "jobq: shared memory is not set up");
	mine = palloc(sizeof(Gauge) * GAUGE_SLOTS);
	LWLockAcquire(gauges->lock, LW_SHARED);
	for (i = 0; i < GAUGE_SLOTS; i++)
		if (gauges->slots[i].dboid == MyDatabaseId)
			mine[n++] = gauges->slots[i];
	LWLockRelease(gauges->lock);

	initStringInfo(&buf);
	for (d = 0; d < lengthof(counter_defs); d++)
	{
		appendStringInfo(&buf, "# HELP %s %s\n# TYPE %s counter\n",
						 counter_defs[d].name, counter_defs[d].help, counter_defs[d].name);
		for (i = 0; i < n; i++)
		{
			JobqMetricCounts *t = &mine[i].totals;
			uint64		v = counter_defs[d].event == -1 ? t->retried :
				counter_defs[d].event == -2 ? t->timed_out : t->events[counter_defs[d].event];

			appendStringInfo(&buf, "%s{queue=\"%s\"} " UINT64_FORMAT "\n",
							 counter_defs[d].name, mine[i].queue, v);
		}
	}
	appendStringInfoString(&buf,
						   "# HELP jobq_attempts_failed_by_class_total Failed attempts by error class.\n"
						   "# TYPE jobq_attempts_failed_by_class_total counter\n");
	LWLockAcquire(gauges->lock, LW_SHARED);
	for (i = 0; i < FAILURE_SLOTS; i++)
	{
		FailureCount *f = &gauges->failures[i];
		const char *c;

		if (f->dboid != MyDatabaseId)
			continue;
		appendStringInfo(&buf, "jobq_attempts_failed_by_class_total{queue=\"%s\",class=\"", f->queue);
		for (c = f->error_class; *c; c++)
		{
			if (*c == '"' || *c == '\\')
				appendStringInfoChar(&buf, '\\');
			if (*c == '\n')
				appendStringInfoString(&buf, "\\n");
			else
				appendStringInfoChar(&buf, *c);
		}
		appendStringInfo(&buf, "\"} " UINT64_FORMAT "\n", f->failed);
	}
	LWLockRelease(gauges->lock);
	appendStringInfoString(&buf,
						   "# HELP jobq_attempt_runtime_seconds Runtime of finished attempts.\n"
						   "# TYPE jobq_attempt_runtime_seconds histogram\n");
	for (i = 0; i < n; i++)
	{
		JobqMetricCounts *t = &mine[i].totals;
		uint64		cumulative = 0;

		for (b = 0; b < JOBQ_RUNTIME_BUCKETS; b++)
		{
			cumulative += t->runtime_hist[b];
			appendStringInfo(&buf, "jobq_attempt_runtime_seconds_bucket{queue=\"%s\",le=\"%g\"} " UINT64_FORMAT "\n",
							 mine[i].queue, jobq_runtime_bucket_le[b], cumulative);
		}
		appendStringInfo(&buf, "jobq_attempt_runtime_seconds_bucket{queue=\"%s\",le=\"+Inf\"} " UINT64_FORMAT "\n"
						 "jobq_attempt_runtime_seconds_sum{queue=\"%s\"} %.6f\n"
						 "jobq_attempt_runtime_seconds_count{queue=\"%s\"} " UINT64_FORMAT "\n",
						 mine[i].queue, t->runtimes,
						 mine[i].queue, t->runtime_us / 1e6,
						 mine[i].queue, t->runtimes);
	}
	pfree(mine);
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}

Size
JobqGaugesShmemSize(void)
{
	return sizeof(GaugeTable);
}

/* Under AddinShmemInitLock (shmem.c), after JobqMetricsShmemInit. */
void
JobqGaugesShmemInit(void)
{
	bool		found;

	gauges = ShmemInitStruct("jobq queue gauges", sizeof(GaugeTable), &found);
	if (!found)
	{
		memset(gauges, 0, sizeof(GaugeTable));
		gauges->lock = JobqCountersLock();
	}
}
