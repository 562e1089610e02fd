/*-------------------------------------------------------------------------
 *
 * queue_gauges.h
 *	  How many jobs of each queue are active (pending or running) and
 *	  running, kept in shared memory from committed job events so that the
 *	  monitoring views need not count a big queue (queue_gauges.c).
 *
 * IDENTIFICATION
 *	  src/queue_gauges.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_QUEUE_GAUGES_H
#define JOBQ_QUEUE_GAUGES_H

/*
 * A commit changed the queue's active and running jobs by these amounts
 * (job_events.c).  From a commit callback: never raises an error.
 */
extern void JobqGaugesAdd(Oid dboid, const char *queue, int64 active, int64 running);

/* A TRUNCATE of a jobq table: every gauge counts again after the commit. */
extern void JobqGaugesForgetAtCommit(void);

extern Size JobqGaugesShmemSize(void);
extern void JobqGaugesShmemInit(void);

#endif							/* JOBQ_QUEUE_GAUGES_H */
