/*-------------------------------------------------------------------------
 *
 * breaker.h
 *	  Circuit breakers (breaker.c): the claim asks before it takes jobs of a
 *	  queue, the job store's hook point tells them every outcome.
 *
 * IDENTIFICATION
 *	  src/breaker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_BREAKER_H
#define JOBQ_BREAKER_H

#include "datatype/timestamp.h"

#include "job_events.h"

/*
 * How many of want jobs of queue may be claimed now: want while its
 * breaker is closed, 0 while it is open, the probes left while half open
 * (those returned are taken, and *probing set: give back what the claim
 * did not use with BreakerReturnProbes).  *held_until: when a queue given
 * 0 may be asked again (0 when it is not held).  *fail_fast: the breaker is
 * open and the queue's breaker_mode is fail_fast: the caller claims up to
 * want jobs and dead-letters them at once (StoreFailOpenBreaker).
 */
extern int	BreakerAdmit(const char *queue, int want, TimestampTz *held_until,
						 bool *probing, bool *fail_fast);
extern void BreakerReturnProbes(const char *queue, int n);

/*
 * BreakerAdmit for a key that is not a queue's (an HTTP job's host):
 * queue_fails_fast is the job's queue's breaker_mode; key NULL admits all.
 */
extern int	BreakerAdmitKey(const char *key, bool queue_fails_fast, int want,
							TimestampTz *held_until, bool *probing, bool *fail_fast);

/*
 * How many times a breaker (any) closed since the server started: a change
 * tells the HTTP worker that jobs held by a host's breaker may run.
 */
extern uint64 BreakerCloses(void);

/* Outcomes of job_id count against key, until BreakerJobKey(0, NULL). */
extern void BreakerJobKey(int64 job_id, const char *key);

/* An event of the job store (job_events.c calls this for every one). */
extern void BreakerNoteEvent(const JobqJobEvent *ev);

/* Executor, between transactions: write transitions to jobq.breakers. */
extern bool BreakerPersistPending(void);
extern void BreakerPersist(void);

extern Size BreakerShmemSize(void);
extern void BreakerShmemInit(void);
extern void BreakerRegisterCallbacks(void);

#endif							/* JOBQ_BREAKER_H */
