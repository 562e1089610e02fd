/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Per-queue, per-minute counters: committed job events are added to a
 *	  table in shared memory (JobqMetricsAddLocked, from job_events.c's commit
 *	  callback) and flushed into jobq.metrics every
 *	  jobq.metrics_flush_interval by a duty of the database's executors, or
 *	  by jobq.flush_metrics().
 *
 * No job ever updates a jobq.metrics row: thousands of jobs a second would
 * make the row of the current minute the hottest row of the database.  A
 * flush adds each (queue, minute)'s counts with one INSERT ... ON CONFLICT
 * DO UPDATE.
 *
 * The counts taken out of shared memory by a flush are given back when the
 * flushing transaction aborts, so a failed flush loses nothing; a count is
 * in shared memory or in a committed row, never in both.  A server crash
 * or restart loses what was not flushed yet (at most one interval of
 * counts); nothing is ever counted twice.
 *
 * IDENTIFICATION
 *	  src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "metrics.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/*
 * The shared table: open addressing on (database, queue, minute), linear
 * probing.  A flush takes out every entry of its database and re-inserts
 * the others (no tombstones).  Live entries are (queue, minute) pairs
 * counted since the last flush, a few per active queue; when the table is
 * three quarters full, counts that need a new entry are dropped and
 * counted in `dropped` (the next flush logs how many).
 */
#define METRIC_SLOTS 2048
#define METRIC_SLOTS_MAX_USED (METRIC_SLOTS / 4 * 3)

typedef struct MetricSlot
{
	Oid			dboid;			/* InvalidOid: free */
	TimestampTz bucket;
	char		queue[NAMEDATALEN];
	JobqMetricCounts c;
} MetricSlot;

/* Shared; every field under lock (JobqCountersLock, shared with queue_gauges.c). */
typedef struct MetricTable
{
	LWLock	   *lock;
	int			used;
	uint64		dropped;		/* events not counted: the table was full */
	MetricSlot	slots[METRIC_SLOTS];
} MetricTable;

static MetricTable *metrics = NULL;

/*
 * Counts this backend's transaction took out of shared memory to write
 * them: given back if it aborts (MetricsXactCallback).
 */
static MetricSlot *taken = NULL;
static int	ntaken = 0;
static int	taken_level = 0;	/* nest level of the transaction that took them */
static bool callback_registered = false;

static SPIPlanPtr plan_add = NULL;

const double jobq_runtime_bucket_le[JOBQ_RUNTIME_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300
};

TimestampTz
JobqMetricBucket(TimestampTz t)
{
	TimestampTz r = t % USECS_PER_MINUTE;

	return r < 0 ? t - r - USECS_PER_MINUTE : t - r;
}

void
JobqMetricCountEvent(JobqMetricCounts *c, const JobqJobEvent *ev)
{
	c->events[ev->event]++;
	if (ev->event == JOBQ_EVENT_ATTEMPT_FAILED)
	{
		if (ev->retry_at != 0)
			c->retried++;
		if (ev->error_class != NULL && strcmp(ev->error_class, "timeout") == 0)
			c->timed_out++;
	}
	if (ev->event >= JOBQ_EVENT_ATTEMPT_COMPLETED &&
		ev->event <= JOBQ_EVENT_ATTEMPT_CANCELLED &&
		ev->started_at != 0 && ev->finished_at > ev->started_at)
	{
		uint64		us = (uint64) (ev->finished_at - ev->started_at);
		int			b;

		c->runtime_us += us;
		c->max_runtime_us = Max(c->max_runtime_us, us);
		c->runtimes++;
		for (b = 0; b < JOBQ_RUNTIME_BUCKETS; b++)
			if (us <= jobq_runtime_bucket_le[b] * USECS_PER_SEC)
			{
				c->runtime_hist[b]++;
				break;
			}
	}
}

void
JobqMetricCountsAdd(JobqMetricCounts *into, const JobqMetricCounts *c)
{
	int			e;

	for (e = 0; e < JOBQ_EVENT_COUNT; e++)
		into->events[e] += c->events[e];
	into->retried += c->retried;
	into->timed_out += c->timed_out;
	into->runtime_us += c->runtime_us;
	into->max_runtime_us = Max(into->max_runtime_us, c->max_runtime_us);
	into->runtimes += c->runtimes;
	for (e = 0; e < JOBQ_RUNTIME_BUCKETS; e++)
		into->runtime_hist[e] += c->runtime_hist[e];
}

static uint32
SlotHash(Oid dboid, const char *queue, TimestampTz bucket)
{
	uint32		h = hash_bytes((const unsigned char *) queue, strlen(queue));

	h = hash_combine(h, hash_bytes_uint32(dboid));
	return hash_combine(h, hash_bytes_uint32((uint32) (bucket / USECS_PER_MINUTE)));
}

/* The slot of the key, or the free slot where it goes (NULL: none).  Under lock. */
static MetricSlot *
FindSlot(Oid dboid, const char *queue, TimestampTz bucket)
{
	uint32		i = SlotHash(dboid, queue, bucket) % METRIC_SLOTS;
	int			probes;

	for (probes = 0; probes < METRIC_SLOTS; probes++, i = (i + 1) % METRIC_SLOTS)
	{
		MetricSlot *s = &metrics->slots[i];

		if (s->dboid == InvalidOid)
			return s;
		if (s->dboid == dboid && s->bucket == bucket && strcmp(s->queue, queue) == 0)
			return s;
	}
	return NULL;
}

/* Add counts under lock; false if there was no room. */
static bool
AddLocked(Oid dboid, const char *queue, TimestampTz bucket, const JobqMetricCounts *c)
{
	MetricSlot *s = FindSlot(dboid, queue, bucket);

	if (s == NULL)
		return false;
	if (s->dboid == InvalidOid)
	{
		if (metrics->used >= METRIC_SLOTS_MAX_USED)
			return false;
		memset(s, 0, sizeof(MetricSlot));
		s->dboid = dboid;
		s->bucket = bucket;
		strlcpy(s->queue, queue, NAMEDATALEN);
		metrics->used++;
	}
	JobqMetricCountsAdd(&s->c, c);
	return true;
}

LWLock *
JobqCountersLock(void)
{
	return metrics != NULL ? metrics->lock : NULL;
}

void
JobqMetricsAddLocked(Oid dboid, const char *queue, TimestampTz bucket,
					 const JobqMetricCounts *c)
{
	Assert(metrics != NULL && LWLockHeldByMeInMode(metrics->lock, LW_EXCLUSIVE));
	if (!OidIsValid(dboid))
		return;
	if (!AddLocked(dboid, queue, bucket, c))
	{
		int			e;

		for (e = 0; e < JOBQ_EVENT_COUNT; e++)
			metrics->dropped += c->events[e];
	}
}

/*
 * Take every entry of the database out of the table (into `taken`, in
 * TopTransactionContext) and re-insert the others.  Returns how many
 * events were dropped since the last take.
 */
static uint64
TakeDatabase(Oid dboid)
{
	MetricSlot *others;
	int			nothers = 0;
	int			i;
	uint64		dropped;

	LWLockAcquire(metrics->lock, LW_EXCLUSIVE);
	/* an error here releases the lock with the transaction's abort */
	taken = MemoryContextAlloc(TopTransactionContext,
							   sizeof(MetricSlot) * Max(metrics->used, 1));
	others = palloc(sizeof(MetricSlot) * Max(metrics->used, 1));
	ntaken = 0;
	taken_level = GetCurrentTransactionNestLevel();
	for (i = 0; i < METRIC_SLOTS; i++)
	{
		MetricSlot *s = &metrics->slots[i];

		if (s->dboid == InvalidOid)
			continue;
		if (s->dboid == dboid)
			taken[ntaken++] = *s;
		else
			others[nothers++] = *s;
	}
	if (ntaken > 0)
	{
		memset(metrics->slots, 0, sizeof(metrics->slots));
		metrics->used = 0;
		for (i = 0; i < nothers; i++)
			AddLocked(others[i].dboid, others[i].queue, others[i].bucket, &others[i].c);
	}
	dropped = metrics->dropped;
	metrics->dropped = 0;
	LWLockRelease(metrics->lock);
	pfree(others);
	return dropped;
}

/* The taken counts go back to shared memory (the flush aborted). */
static void
GiveBack(void)
{
	int			i;

	if (ntaken == 0 || metrics == NULL)
		return;
	LWLockAcquire(metrics->lock, LW_EXCLUSIVE);
	for (i = 0; i < ntaken; i++)
		if (!AddLocked(taken[i].dboid, taken[i].queue, taken[i].bucket, &taken[i].c))
		{
			int			e;

			for (e = 0; e < JOBQ_EVENT_COUNT; e++)
				metrics->dropped += taken[i].c.events[e];
		}
	LWLockRelease(metrics->lock);
}

static void
MetricsXactCallback(XactEvent event, void *arg)
{
	if (taken == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			GiveBack();
			/* FALLTHROUGH */
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			/* TopTransactionContext, with `taken`, goes away */
			taken = NULL;
			ntaken = 0;
			break;
		default:
			break;
	}
}

/* The rows written by a subtransaction that aborts are not written. */
static void
MetricsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (taken == NULL || GetCurrentTransactionNestLevel() != taken_level)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		taken_level--;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		GiveBack();
		taken = NULL;			/* freed with TopTransactionContext */
		ntaken = 0;
	}
}

/*
 * Add this database's counts to jobq.metrics, in the current transaction;
 * returns how many (queue, minute) rows were written.  Inside SPI.
 */
static int
Flush(void)
{
	Oid			argtypes[12] = {TEXTOID, TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, FLOAT8OID, FLOAT8OID};
	uint64		dropped;
	int			i;

	if (metrics == NULL)
		return 0;
	if (taken != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("jobq: the metrics were already flushed in this transaction")));
	if (!callback_registered)
	{
		RegisterXactCallback(MetricsXactCallback, NULL);
		RegisterSubXactCallback(MetricsSubXactCallback, NULL);
		callback_registered = true;
	}
	dropped = TakeDatabase(MyDatabaseId);
	if (dropped > 0)
		ereport(WARNING,
				(errmsg("jobq: " UINT64_FORMAT " job events were not counted in jobq.metrics", dropped),
				 errdetail("The shared counter table was full: more queues and minutes were counted than it holds between two flushes."),
				 errhint("Lower jobq.metrics_flush_interval.")));
	JobqKeptPlan(&plan_add,
				 "INSERT INTO jobq.metrics AS m (queue, bucket, submitted, started, "
				 "completed, failed, retried, timed_out, cancelled, dead_lettered, "
				 "total_runtime_ms, max_runtime_ms) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
				 "ON CONFLICT (queue, bucket) DO UPDATE SET "
				 "submitted = m.submitted + excluded.submitted, "
				 "started = m.started + excluded.started, "
				 "completed = m.completed + excluded.completed, "
				 "failed = m.failed + excluded.failed, "
				 "retried = m.retried + excluded.retried, "
				 "timed_out = m.timed_out + excluded.timed_out, "
				 "cancelled = m.cancelled + excluded.cancelled, "
				 "dead_lettered = m.dead_lettered + excluded.dead_lettered, "
				 "total_runtime_ms = m.total_runtime_ms + excluded.total_runtime_ms, "
				 "max_runtime_ms = GREATEST(m.max_runtime_ms, excluded.max_runtime_ms)",
				 12, argtypes);
	for (i = 0; i < ntaken; i++)
	{
		MetricSlot *s = &taken[i];
		Datum		values[12];

		values[0] = CStringGetTextDatum(s->queue);
		values[1] = TimestampTzGetDatum(s->bucket);
		values[2] = Int64GetDatum((int64) s->c.events[JOBQ_EVENT_SUBMITTED]);
		values[3] = Int64GetDatum((int64) s->c.events[JOBQ_EVENT_CLAIMED]);
		values[4] = Int64GetDatum((int64) s->c.events[JOBQ_EVENT_ATTEMPT_COMPLETED]);
		values[5] = Int64GetDatum((int64) s->c.events[JOBQ_EVENT_ATTEMPT_FAILED]);
		values[6] = Int64GetDatum((int64) s->c.retried);
		values[7] = Int64GetDatum((int64) s->c.timed_out);
		values[8] = Int64GetDatum((int64) s->c.events[JOBQ_EVENT_FINAL_CANCELLED]);
		values[9] = Int64GetDatum((int64) s->c.events[JOBQ_EVENT_FINAL_FAILED]);
		values[10] = Float8GetDatum(s->c.runtime_us / 1000.0);
		values[11] = Float8GetDatum(s->c.max_runtime_us / 1000.0);
		JobqExecPlan(plan_add, values, NULL, SPI_OK_INSERT, 0);
	}
	return ntaken;
}

int
JobqMetricsFlushIntervalMs(void)
{
	return jobq_metrics_flush_interval_ms;
}

bool
JobqMetricsFlushDuty(void)
{
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	Flush();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return false;
}

PG_FUNCTION_INFO_V1(jobq_flush_metrics);

/*
 * jobq._flush_metrics() RETURNS integer: the flush, in the caller's
 * transaction (behind jobq.flush_metrics(), for databases without
 * executors and for tests).
 */
Datum
jobq_flush_metrics(PG_FUNCTION_ARGS)
{
	int			n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	n = Flush();
	SPI_finish();
	PG_RETURN_INT32(n);
}

Size
JobqMetricsShmemSize(void)
{
	return sizeof(MetricTable);
}

/* Under AddinShmemInitLock (shmem.c). */
void
JobqMetricsShmemInit(void)
{
	bool		found;

	metrics = ShmemInitStruct("jobq metrics", sizeof(MetricTable), &found);
	if (!found)
	{
		memset(metrics, 0, sizeof(MetricTable));
		metrics->lock = &(GetNamedLWLockTranche("jobq counters"))->lock;
	}
}
