/*-------------------------------------------------------------------------
 *
 * upkeep.c
 *	  Executors vacuum jobs_active themselves once claims have left many dead
 *	  entries at the front of the claim index.
 *
 * Why.  A claim takes the first pending entries of a queue in the claim
 * index (queue, priority DESC, run_at, id) and makes them dead: the claimed
 * row version is no longer pending, and completion deletes the row.  So the
 * dead entries pile up exactly where the next claim starts reading, and
 * every later claim steps over them page by page until VACUUM removes them
 * (kill_prior_tuple marks them, but the pages stay in the way).  Autovacuum
 * visits a table at most once per autovacuum_naptime (a minute by default):
 * at thousands of jobs a second that is hundreds of thousands of dead
 * entries.  Measured: a claim of 32 jobs read 302 index pages and took
 * 1.4 ms, a third of an executor's time; after a VACUUM, 6 pages.
 *
 * A VACUUM of jobs_active costs in proportion to the backlog (58 ms for
 * 55,000 pending jobs and 90,000 dead ones), so one every jobq.vacuum_after
 * claimed jobs keeps the walk short for a few microseconds per job.  It runs
 * between batches, outside any transaction, the way autovacuum calls
 * vacuum(): SKIP_LOCKED (never waits for autovacuum or another executor),
 * no truncation (that would take an ACCESS EXCLUSIVE lock and stall every
 * claim), index cleanup forced (the claim index is the point).
 *
 * A VACUUM's index passes read whole indexes, so with a big backlog it costs
 * more: the threshold is at least a twentieth of the backlog (reltuples as
 * the last VACUUM left it), which keeps the VACUUMs' share per job about the
 * same while the dead walk stays a small fraction of the backlog.
 *
 * Held snapshots: VACUUM cannot remove what an old snapshot may still see.
 * When a vacuum leaves most dead tuples in place, the minimum interval
 * between vacuums doubles (up to a minute); it drops back to a second as
 * soon as one works.
 *
 * Claims by external workers count too (StoreClaim), and wake an executor
 * when they cross the threshold.  With jobq.workers = 0 nobody vacuums but
 * autovacuum.
 *
 * IDENTIFICATION
 *	  src/upkeep.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "upkeep.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/inval.h"
#include "utils/timestamp.h"

#define VACUUM_BACKOFF_MIN_MS 1000
#define VACUUM_BACKOFF_MAX_MS 60000

int			jobq_vacuum_after = 10000;

static uint32 Threshold(JobqDatabase *db);

void
JobqNoteClaimed(uint64 njobs, bool by_executor)
{
	JobqDatabase *db;
	uint32		before;

	if (njobs == 0 || jobq_vacuum_after <= 0 || (db = JobqMyDatabase()) == NULL)
		return;
	before = pg_atomic_fetch_add_u32(&db->claimed_since_vacuum,
									 (uint32) Min(njobs, PG_INT32_MAX));
	/*
	 * Busy executors look between batches; for external workers' claims,
	 * call an idle one in.
	 */
	if (!by_executor && before < Threshold(db) && before + njobs >= Threshold(db))
		(void) JobqWakeIdleExecutor(NULL, 0);
}

/* Claimed jobs that make a VACUUM due (see the header comment). */
static uint32
Threshold(JobqDatabase *db)
{
	return Max((uint32) jobq_vacuum_after, db->vacuum_backlog_jobs / 20);
}

bool
JobqVacuumDue(void)
{
	JobqDatabase *db;

	if (jobq_vacuum_after <= 0 || (db = JobqMyDatabase()) == NULL)
		return false;
	if (pg_atomic_read_u32(&db->claimed_since_vacuum) < Threshold(db))
		return false;
	/* unlocked read: JobqVacuumJobsActive decides under the lock */
	return GetCurrentTimestamp() >= db->vacuum_next_at;
}

/* pg_class.reltuples of relid, as the last VACUUM set it (0 if unknown). */
static uint32
BacklogJobs(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	float4		reltuples = 0;

	if (HeapTupleIsValid(tup))
	{
		reltuples = ((Form_pg_class) GETSTRUCT(tup))->reltuples;
		ReleaseSysCache(tup);
	}
	return reltuples > 0 ? (uint32) Min(reltuples, (float4) PG_INT32_MAX) : 0;
}

/* n_dead_tup of relid as the statistics system has it now. */
static int64
DeadTuples(Oid relid)
{
	PgStat_StatTabEntry *tab;
	int64		dead;

	pgstat_clear_snapshot();
	tab = pgstat_fetch_stat_tabentry(relid);
	dead = tab != NULL ? (int64) tab->n_dead_tuples : 0;
	pgstat_clear_snapshot();
	return dead;
}

void
JobqVacuumJobsActive(void)
{
	JobqDatabase *db = JobqMyDatabase();
	TimestampTz now = GetCurrentTimestamp();
	uint32		counted;
	int			backoff_ms;
	MemoryContext oldcxt = CurrentMemoryContext;
	MemoryContext save_portal = PortalContext;
	MemoryContext vac_cxt;

	Assert(!IsTransactionState());
	if (db == NULL)
		return;

	/* one executor per database: the first to get here moves the gate */
	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	if (now < db->vacuum_next_at)
	{
		LWLockRelease(jobq_shared->lock);
		return;
	}
	backoff_ms = Max(db->vacuum_backoff_ms, VACUUM_BACKOFF_MIN_MS);
	db->vacuum_next_at = TimestampTzPlusMilliseconds(now, backoff_ms);
	LWLockRelease(jobq_shared->lock);

	counted = pg_atomic_read_u32(&db->claimed_since_vacuum);

	/* vacuum() keeps its cross-transaction memory under PortalContext */
	vac_cxt = AllocSetContextCreate(TopMemoryContext, "jobq vacuum",
									ALLOCSET_DEFAULT_SIZES);
	PG_TRY();
	{
		Oid			relid;

		PortalContext = vac_cxt;
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "jobq: VACUUM jobq.jobs_active");
		relid = get_relname_relid("jobs_active",
								  get_namespace_oid(JOBQ_SCHEMA_NAME, true));
		if (OidIsValid(relid))
		{
			VacuumParams params;
			int64		dead_after;
			uint32		backlog;

			memset(&params, 0, sizeof(params));
			params.options = VACOPT_VACUUM | VACOPT_SKIP_LOCKED | VACOPT_PROCESS_TOAST;
			params.freeze_min_age = -1;
			params.freeze_table_age = -1;
			params.multixact_freeze_min_age = -1;
			params.multixact_freeze_table_age = -1;
			params.is_wraparound = false;
			params.log_min_duration = -1;
			params.index_cleanup = VACOPTVALUE_ENABLED;
			params.truncate = VACOPTVALUE_DISABLED;
			params.nworkers = -1;

			/* commits our transaction, runs its own, starts one for us */
			vacuum(list_make1(makeVacuumRelation(NULL, relid, NIL)), &params,
				   NULL, true);

			/*
			 * Dead tuples VACUUM had to leave (an old snapshot can still see
			 * them): it did not pay, so wait longer before the next one.
			 */
			dead_after = DeadTuples(relid);
			AcceptInvalidationMessages();	/* vacuum updated pg_class in place */
			backlog = BacklogJobs(relid);
			LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
			db->vacuum_backlog_jobs = backlog;
			if (dead_after > Threshold(db) / 2)
				db->vacuum_backoff_ms = Min(backoff_ms * 2, VACUUM_BACKOFF_MAX_MS);
			else
				db->vacuum_backoff_ms = VACUUM_BACKOFF_MIN_MS;
			db->vacuum_next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 db->vacuum_backoff_ms);
			LWLockRelease(jobq_shared->lock);
			elog(DEBUG1, "jobq: vacuumed jobq.jobs_active after %u claimed jobs; %lld dead tuples left",
				 counted, (long long) dead_after);
		}
		CommitTransactionCommand();
		/* claims made while it ran count towards the next one */
		pg_atomic_sub_fetch_u32(&db->claimed_since_vacuum, counted);
	}
	PG_CATCH();
	{
		/* not worth the executor's life: log, and leave it to autovacuum */
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	PortalContext = save_portal;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(vac_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}
