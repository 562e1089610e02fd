/*-------------------------------------------------------------------------
 *
 * job_events.h
 *	  The moments of a job's life that features attach to: jobs claimed,
 *	  an attempt finished, a job became final (job_events.c).
 *
 * Every path that claims a job, records an attempt's outcome or moves a job
 * to jobq.jobs_final reports it here, in the transaction that makes the
 * change, and nowhere else: a feature that must see every claim, outcome
 * or final job (counters, breakers, batches) is called from these
 * functions only.
 *
 * IDENTIFICATION
 *	  src/job_events.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_JOB_EVENTS_H
#define JOBQ_JOB_EVENTS_H

/* What happened; the names are those jobq._job_events() shows. */
typedef enum JobqEvent
{
	JOBQ_EVENT_CLAIMED,			/* a job became running */
	JOBQ_EVENT_ATTEMPT_COMPLETED,	/* attempt outcomes (job_attempts.outcome) */
	JOBQ_EVENT_ATTEMPT_FAILED,
	JOBQ_EVENT_ATTEMPT_SNOOZED,
	JOBQ_EVENT_ATTEMPT_RELEASED,
	JOBQ_EVENT_ATTEMPT_CANCELLED,
	JOBQ_EVENT_FINAL_COMPLETED, /* final states (jobs_final.state) */
	JOBQ_EVENT_FINAL_FAILED,
	JOBQ_EVENT_FINAL_CANCELLED,
	JOBQ_EVENT_COUNT
} JobqEvent;

/* n jobs of queue claimed in this transaction (by an executor or not). */
extern void JobEventsClaimed(const char *queue, int n, bool by_executor);

/* n attempts of queue ended with outcome, n jobs became final. */
extern void JobEventsAttemptsFinished(const char *queue, JobqEvent outcome, int n);
extern void JobEventsFinal(const char *queue, JobqEvent state, int n);

/* Transaction callbacks (_PG_init). */
extern void JobEventsRegisterCallbacks(void);

#endif							/* JOBQ_JOB_EVENTS_H */
