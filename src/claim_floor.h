/*-------------------------------------------------------------------------
 *
 * claim_floor.h
 *	  Where a queue's claim scan starts (claim_floor.c).
 *
 * IDENTIFICATION
 *	  src/claim_floor.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_CLAIM_FLOOR_H
#define JOBQ_CLAIM_FLOOR_H

#include "datatype/timestamp.h"

/* A position in a queue's claim order (jobs_active_claim_idx). */
typedef struct JobqClaimKey
{
	int32		priority;		/* DESC */
	TimestampTz run_at;
	int64		id;
} JobqClaimKey;

/* One claim scan's use of its queue's floor (claim_floor.c). */
typedef struct JobqClaimFloorScan
{
	bool		has_floor;		/* start at floor, not at the queue's front */
	JobqClaimKey floor;
	uint64		ticket;			/* non-zero: this scan raises the floor */
	bool		from_front;		/* the raise's periodic scan from the front */
	bool		stopped;		/* met an entry that is not gone: stop */
	JobqClaimKey stop;
	bool		saw_gone;		/* met gone entries before any stop */
	JobqClaimKey last_gone;
	bool		saw_not_due;	/* met jobs not due yet before any stop */
	JobqClaimKey not_due_low;	/* the lowest of their keys */
	TimestampTz not_due_at;		/* the earliest of their run_at */
} JobqClaimFloorScan;

extern Size ClaimFloorShmemSize(void);
extern void ClaimFloorShmemInit(void);
extern int	JobqClaimKeyCompare(const JobqClaimKey *a, const JobqClaimKey *b);
extern void ClaimFloorBegin(Oid indexoid, const char *queue, TimestampTz due,
							JobqClaimFloorScan *fs);
extern void ClaimFloorSawNotDue(JobqClaimFloorScan *fs, const JobqClaimKey *key);
extern void ClaimFloorSawLive(JobqClaimFloorScan *fs, const JobqClaimKey *key);
extern void ClaimFloorSawGone(JobqClaimFloorScan *fs, const JobqClaimKey *key);
extern void ClaimFloorEnd(const char *queue, JobqClaimFloorScan *fs);
extern void ClaimFloorNoteWritten(const char *queue, int32 priority,
								  TimestampTz run_at, int64 id);

#endif							/* JOBQ_CLAIM_FLOOR_H */
