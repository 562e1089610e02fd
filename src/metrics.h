/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Per-queue, per-minute counters of job events, kept in shared memory
 *	  and flushed into jobq.metrics by a duty (metrics.c).
 *
 * IDENTIFICATION
 *	  src/metrics.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_METRICS_H
#define JOBQ_METRICS_H

#include "job_events.h"

/*
 * What one (queue, minute) has counted: committed events by JobqEvent, and
 * what jobq.metrics shows besides them.
 */
#define JOBQ_RUNTIME_BUCKETS 11

/* upper bounds of the runtime histogram's buckets, in seconds (metrics.c) */
extern const double jobq_runtime_bucket_le[JOBQ_RUNTIME_BUCKETS];

typedef struct JobqMetricCounts
{
	uint64		events[JOBQ_EVENT_COUNT];
	uint64		retried;		/* attempt_failed whose job is pending again */
	uint64		timed_out;		/* attempt_failed of class timeout */
	uint64		runtime_us;		/* attempts' finished_at - started_at, summed */
	uint64		max_runtime_us;
	uint64		runtimes;		/* attempts counted in runtime_us */
	uint64		runtime_hist[JOBQ_RUNTIME_BUCKETS]; /* by bucket, not cumulative */
} JobqMetricCounts;

/* The minute an instant falls in (its bucket in jobq.metrics). */
extern TimestampTz JobqMetricBucket(TimestampTz t);

/* Add what ev counts to c (job_events.c, per event). */
extern void JobqMetricCountEvent(JobqMetricCounts *c, const JobqJobEvent *ev);
extern void JobqMetricCountsAdd(JobqMetricCounts *into, const JobqMetricCounts *c);

/*
 * The one lock of jobq's commit-time counters: this table and the queue
 * gauges (queue_gauges.c).  A committing transaction publishes all its
 * counts under a single exclusive acquisition (job_events.c); NULL when
 * jobq is not preloaded.
 */
extern LWLock *JobqCountersLock(void);

/*
 * Committed counts of a database's (queue, bucket) into shared memory.
 * The caller holds JobqCountersLock exclusively.  Called from a commit
 * callback: never raises an error (counts that find no room are dropped
 * and counted, see metrics.c).
 */
extern void JobqMetricsAddLocked(Oid dboid, const char *queue, TimestampTz bucket,
								 const JobqMetricCounts *c);

extern Size JobqMetricsShmemSize(void);
extern void JobqMetricsShmemInit(void);

/* The flush duty (duties.c). */
extern int	JobqMetricsFlushIntervalMs(void);
extern bool JobqMetricsFlushDuty(void);

#endif							/* JOBQ_METRICS_H */
