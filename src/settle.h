/*-------------------------------------------------------------------------
 *
 * settle.h
 *	  Outcomes an executor records after its batch commits (settle.c).
 *
 * IDENTIFICATION
 *	  src/settle.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_SETTLE_H
#define JOBQ_SETTLE_H

#include "run_sql.h"

extern void SettleLater(int64 id, int32 attempt, JobqSqlRun *failed_run);
extern bool SettlePending(void);
extern void SettleInTransaction(void);
extern void SettleForget(void);

#endif							/* JOBQ_SETTLE_H */
