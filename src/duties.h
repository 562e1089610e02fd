/*-------------------------------------------------------------------------
 *
 * duties.h
 *	  Periodic work of a database (cleanup, metrics flush, alerts) run by
 *	  its executors between batches (duties.c).
 *
 * IDENTIFICATION
 *	  src/duties.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_DUTIES_H
#define JOBQ_DUTIES_H

/*
 * The duties, in the order they run when several are due.  A new duty adds
 * its name here and its row to duties[] in duties.c.
 */
typedef enum JobqDuty
{
	JOBQ_DUTY_CLEANUP,			/* retention.c */
	JOBQ_DUTY_METRICS,			/* metrics.c: the flush into jobq.metrics */
	JOBQ_DUTY_ALERTS,			/* alerts.c: after the flush, so it reads fresh counts */
	JOBQ_DUTY_COUNT
} JobqDuty;

/*
 * A duty's run: called outside a transaction; starts and commits its own.
 * Returns true when it stopped with work left (its time budget ran out):
 * it is called again soon instead of after its interval.
 */
typedef bool (*JobqDutyRun) (void);

/* retention.c */
extern bool JobqCleanupDuty(void);

/* alerts.c */
extern int	JobqAlertIntervalMs(void);
extern bool JobqAlertsDuty(void);

/* Executor, between transactions: is any duty of this database due? */
extern bool JobqDutiesDue(void);

/*
 * Executor, outside any transaction: run every due duty of this database
 * once (each in its own transactions; an error is logged, not raised).
 */
extern void JobqRunDuties(void);

#endif							/* JOBQ_DUTIES_H */
