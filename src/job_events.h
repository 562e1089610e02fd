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

#include "datatype/timestamp.h"

/* What happened; the names are those jobq._job_events() shows. */
typedef enum JobqEvent
{
	JOBQ_EVENT_SUBMITTED,		/* a job was created (JobEventsSubmitted) */
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

/*
 * One event of one job.  Which fields are set depends on the event:
 * job_id, attempt (the lease's; 0 for submitted), owner and queue always; started_at for
 * claimed and attempt_*; finished_at for attempt_* and final_*;
 * error_class (and message) for attempt_failed, attempt_snoozed and
 * attempt_cancelled, error_class for final_failed (when the SQL store reports it);
 * retry_at for an attempt_failed or attempt_snoozed whose job is pending
 * again (0 otherwise: the job became final); batch_id for final_* (0: the
 * job is in no batch).  Strings are only borrowed.
 */
typedef struct JobqJobEvent
{
	JobqEvent	event;
	const char *queue;
	int64		job_id;
	int32		attempt;
	Oid			owner;
	const char *error_class;
	const char *message;		/* attempt_failed: the error */
	TimestampTz started_at;
	TimestampTz finished_at;
	TimestampTz retry_at;
	int64		batch_id;
} JobqJobEvent;

/* Report ev, in the transaction that made the change. */
extern void JobEventsReport(const JobqJobEvent *ev);

/*
 * n jobs created in queue by this transaction, by a path that reports no
 * job one by one (a batch insert).
 */
extern void JobEventsSubmitted(const char *queue, Oid owner, int64 n);

/*
 * n jobs claimed in this transaction (JobEventsReport for each, and the
 * claim count that paces the executors' VACUUM).
 */
extern void JobEventsClaimedCount(int n, bool by_executor);

/* Transaction callbacks (_PG_init). */
extern void JobEventsRegisterCallbacks(void);

#endif							/* JOBQ_JOB_EVENTS_H */
