/*-------------------------------------------------------------------------
 *
 * queue_gauges.h
 *	  How many jobs of each queue are active (pending or running) and
 *	  running, kept in shared memory from committed job events so that the
 *	  monitoring views need not count a big queue, and each queue's event
 *	  totals since the server started, for Prometheus (queue_gauges.c).
 *
 * IDENTIFICATION
 *	  src/queue_gauges.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_QUEUE_GAUGES_H
#define JOBQ_QUEUE_GAUGES_H

#include "metrics.h"

/*
 * A commit's counts of the queue's events (job_events.c): they move the
 * gauges and add to the queue's totals since the server started.  The
 * caller holds JobqCountersLock (metrics.h) exclusively.  From a commit
 * callback: never raises an error.
 */
extern void JobqGaugesAddLocked(Oid dboid, const char *queue, const JobqMetricCounts *c);

/*
 * n attempts of the queue failed with this error class (job_events.c, at
 * commit, holding JobqCountersLock exclusively).
 */
extern void JobqGaugesAddFailuresLocked(Oid dboid, const char *queue,
										const char *error_class, uint64 n);

/* A TRUNCATE of a jobq table: every gauge counts again after the commit. */
extern void JobqGaugesForgetAtCommit(void);

extern Size JobqGaugesShmemSize(void);
extern void JobqGaugesShmemInit(void);

#endif							/* JOBQ_QUEUE_GAUGES_H */
