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

#endif							/* JOBQ_JOB_WAIT_H */
