/*-------------------------------------------------------------------------
 *
 * duties.c
 *	  Periodic work of a database, run by its executors between batches.
 *
 * jobq's launcher is connected to no database, so the work that must run
 * every so often inside each database (removing old final jobs, flushing
 * counters, evaluating alerts) is done by that database's executors: each
 * looks between batches and while idle, and the first to find a duty due
 * moves the duty's gate (under the lock) and runs it; the others skip it.
 * So each duty runs once per interval per database whatever the number of
 * executors, and not at all while the database has none (jobq.workers = 0:
 * the SQL functions behind the duties can then be called by hand or from
 * pg_cron).
 *
 * A duty runs outside any transaction and starts its own, as many as it
 * needs: work that could be long (a cleanup of millions of rows) commits in
 * bounded pieces so that it holds no lock and no snapshot for long.  An
 * error in a duty is logged and aborts only that duty's current
 * transaction; the executor goes on with jobs, and the duty is tried again
 * after its interval.
 *
 * IDENTIFICATION
 *	  src/duties.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "duties.h"
#include "batches.h"
#include "metrics.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lwlock.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

typedef struct DutyDef
{
	const char *name;			/* shown in pg_stat_activity and errors */
	int			(*interval_ms) (void);	/* <= 0: the duty is off */
	JobqDutyRun run;
} DutyDef;

/* a duty that stopped with work left runs again this soon */
#define DUTY_AGAIN_MS 1000

static int
CleanupIntervalMs(void)
{
	return jobq_cleanup_interval_ms;
}

/* By JobqDuty. */
static const DutyDef duties[] = {
	{"jobq: cleanup (retention)", CleanupIntervalMs, JobqCleanupDuty},
	{"jobq: metrics flush", JobqMetricsFlushIntervalMs, JobqMetricsFlushDuty},
	{"jobq: alerts", JobqAlertIntervalMs, JobqAlertsDuty},
	{NULL, NULL, NULL}			/* keeps the array non-empty */
};

StaticAssertDecl(JOBQ_DUTY_COUNT <= JOBQ_MAX_DUTIES,
				 "JobqDatabase.duty_next_at is too small");
StaticAssertDecl(lengthof(duties) >= JOBQ_DUTY_COUNT,
				 "a JobqDuty without its row in duties[]");

bool
JobqDutiesDue(void)
{
	JobqDatabase *db = JobqMyDatabase();
	TimestampTz now;
	int			i;

	if (db == NULL)
		return false;
	if (BatchChecksDueInMs() == 0)
		return true;
	now = GetCurrentTimestamp();
	/* unlocked read: JobqRunDuties decides under the lock */
	for (i = 0; i < JOBQ_DUTY_COUNT; i++)
		if (duties[i].interval_ms() > 0 && now >= db->duty_next_at[i])
			return true;
	return false;
}

/* Take duty i's turn if it is due: true if this backend is to run it. */
static bool
TakeTurn(JobqDatabase *db, int i)
{
	int			interval = duties[i].interval_ms();
	TimestampTz now = GetCurrentTimestamp();
	bool		mine = false;

	if (interval <= 0)
		return false;
	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	if (now >= db->duty_next_at[i])
	{
		db->duty_next_at[i] = TimestampTzPlusMilliseconds(now, interval);
		mine = true;
	}
	LWLockRelease(jobq_shared->lock);
	return mine;
}

void
JobqRunDuties(void)
{
	JobqDatabase *db = JobqMyDatabase();
	MemoryContext oldcxt = CurrentMemoryContext;
	MemoryContext duty_cxt;
	int			i;

	Assert(!IsTransactionState());
	if (db == NULL)
		return;
	/* batches that may be final: their callbacks wait for this */
	if (BatchChecksDueInMs() == 0)
		BatchChecksRun();
	duty_cxt = AllocSetContextCreate(TopMemoryContext, "jobq duty",
									 ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < JOBQ_DUTY_COUNT; i++)
	{
		if (!TakeTurn(db, i))
			continue;
		MemoryContextSwitchTo(duty_cxt);
		PG_TRY();
		{
			pgstat_report_activity(STATE_RUNNING, duties[i].name);
			if (duties[i].run())
			{
				/* work left: soon again, not after a whole interval */
				LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
				db->duty_next_at[i] = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																  DUTY_AGAIN_MS);
				LWLockRelease(jobq_shared->lock);
			}
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(duty_cxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(duty_cxt);
	}
	MemoryContextDelete(duty_cxt);
}
