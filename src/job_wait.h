/*-------------------------------------------------------------------------
 *
 * job_wait.h
 *	  jobq.wait: waiters woken by the commit that makes their job final
 *	  (job_wait.c).
 *
 * IDENTIFICATION
 *	  src/job_wait.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_JOB_WAIT_H
#define JOBQ_JOB_WAIT_H

extern Size JobWaitShmemSize(void);
extern void JobWaitShmemInit(void);
extern void JobWaitNoteFinal(int64 job_id);

/*
 * COMMIT PREPARED: the prepared transaction's final jobs are not known
 * here, so every waiter is woken when this transaction commits.
 */
extern void JobWaitWakeAllAtCommit(void);

#endif							/* JOBQ_JOB_WAIT_H */
