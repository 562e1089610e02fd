/*-------------------------------------------------------------------------
 *
 * upkeep.h
 *	  Executor-driven VACUUM of jobq.jobs_active (see upkeep.c for why).
 *
 * IDENTIFICATION
 *	  src/upkeep.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_UPKEEP_H
#define JOBQ_UPKEEP_H

extern int	jobq_vacuum_after;		/* jobq.vacuum_after: claimed jobs between vacuums */

/* Count claimed jobs of this database (any backend; JobEventsClaimed). */
extern void JobqNoteClaimed(uint64 njobs, bool by_executor);

/* Executor, between transactions: is a vacuum of jobs_active due? */
extern bool JobqVacuumDue(void);

/* Executor, outside any transaction: vacuum jobs_active if still due. */
extern void JobqVacuumJobsActive(void);

#endif							/* JOBQ_UPKEEP_H */
