/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The jobq launcher: a supervisor that keeps jobq.workers executors
 *	  running in every database where jobq is installed.
 *
 * The launcher connects to shared catalogs only, like core's logical
 * replication launcher, so it can never block DROP DATABASE and never fails
 * because a database it wants is missing.  It learns which databases have
 * jobq in two ways: CREATE EXTENSION calls jobq._activate_database(), which
 * marks the database active at commit and wakes the launcher; and at launcher
 * start every connectable database is probed once by starting one executor
 * there, which exits at once (marking the database absent) when jobq is not
 * installed.  A database without jobq therefore costs one short-lived process
 * per server start and nothing after.
 *
 * Executors are dynamic workers with BGW_NEVER_RESTART: the launcher owns
 * their lifecycle.  A slot is reserved in shared memory before the worker is
 * registered; the slot index travels in bgw_main_arg and the slot's
 * generation in bgw_extra, so an executor whose reservation was reclaimed
 * (launcher restart) notices and leaves.  An executor that dies by error
 * counts a failure for its database, and the next start there waits
 * 1 s, 2 s, 4 s ... up to 60 s: a deterministic start-up error logs once a
 * minute, not in a loop (pg_cron #399, pg_net #264).
 *
 * The launcher never touches jobq tables and runs no user code.
 *
 * IDENTIFICATION
 *	  src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

/* How often the launcher re-reads pg_database without being woken. */
#define DATABASE_SCAN_INTERVAL_MS 10000
/* At most this many probes (executors in not-yet-known databases) at once. */
#define MAX_CONCURRENT_PROBES 2
/* A failed DROP DATABASE unblocks its database after this. */
#define BLOCKED_TIMEOUT_MS 60000

/* Process-local worker handles, indexed like jobq_shared->slots. */
static BackgroundWorkerHandle **handles = NULL;
static TimestampTz last_no_slot_warning = 0;

PG_FUNCTION_INFO_V1(jobq_activate_database);

void
JobqRegisterLauncher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* jobs must not run on a standby */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* never 1 s: an error that repeats must not flood the log */
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "jobq");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "jobq_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "jobq launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "jobq launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Is this database one jobq serves?  jobq.database empty means all of them.
 */
static bool
DatabaseWanted(const char *dbname)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		wanted = false;

	if (jobq_database == NULL || jobq_database[0] == '\0')
		return true;
	if (dbname == NULL)
		return false;

	raw = pstrdup(jobq_database);
	if (!SplitIdentifierString(raw, ',', &names))
	{
		/* the setting is unparsable: serve nothing rather than guess */
		return false;
	}
	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), dbname) == 0)
			wanted = true;
	}
	list_free(names);
	pfree(raw);
	return wanted;
}

/*
 * jobq._activate_database(): called by the install script.  The database
 * becomes active when the CREATE EXTENSION commits, not before, or an
 * executor could start, find no extension and mark it absent.
 */
Datum
jobq_activate_database(PG_FUNCTION_ARGS)
{
	char	   *dbname = get_database_name(MyDatabaseId);

	if (!DatabaseWanted(dbname))
		ereport(WARNING,
				(errmsg("jobq will not run jobs in database \"%s\"", dbname),
				 errdetail("jobq.database is set to \"%s\".", jobq_database),
				 errhint("Add the database to jobq.database and reload the configuration.")));
	JobqActivateAtCommit();
	PG_RETURN_VOID();
}

static void
LauncherDetach(int code, Datum arg)
{
	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	if (jobq_shared->launcher_pid == MyProcPid)
	{
		jobq_shared->launcher_pid = 0;
		jobq_shared->launcher_latch = NULL;
	}
	LWLockRelease(jobq_shared->lock);
}

/*
 * Read pg_database and bring the registry in line: new databases are added
 * as unknown (to be probed), dropped or no longer wanted ones are removed.
 */
static void
ScanDatabases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *wanted = NIL;
	ListCell   *lc;
	int			i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database pgdb = (Form_pg_database) GETSTRUCT(tup);

		if (!pgdb->datallowconn || pgdb->datistemplate ||
			database_is_invalid_form(pgdb))
			continue;
		if (!DatabaseWanted(NameStr(pgdb->datname)))
			continue;
		wanted = lappend_oid(wanted, pgdb->oid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < JOBQ_MAX_DATABASES; i++)
		jobq_shared->databases[i].seen = false;
	foreach(lc, wanted)
	{
		JobqDatabase *db = JobqFindDatabase(lfirst_oid(lc), true);

		if (db != NULL)
			db->seen = true;
	}
	for (i = 0; i < JOBQ_MAX_DATABASES; i++)
	{
		JobqDatabase *db = &jobq_shared->databases[i];

		if (db->dboid != InvalidOid && !db->seen)
			memset(db, 0, sizeof(JobqDatabase));
	}
	LWLockRelease(jobq_shared->lock);

	if (list_length(wanted) > JOBQ_MAX_DATABASES)
		ereport(WARNING,
				(errmsg("jobq serves at most %d databases; %d are eligible",
						JOBQ_MAX_DATABASES, list_length(wanted)),
				 errhint("Restrict jobq.database to the databases that use jobq.")));
}

/*
 * Forget handles of workers that have stopped.  A slot whose worker stopped
 * before attaching (e.g. FATAL at connection) is freed here and counts as a
 * failure of its database; an attached worker frees its own slot on exit.
 */
static void
ReapWorkers(void)
{
	int			i;

	for (i = 0; i < jobq_shared->nslots; i++)
	{
		pid_t		pid;

		if (handles[i] == NULL)
			continue;
		if (GetBackgroundWorkerPid(handles[i], &pid) != BGWH_STOPPED)
			continue;
		pfree(handles[i]);
		handles[i] = NULL;

		LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
		{
			JobqWorkerSlot *slot = &jobq_shared->slots[i];

			if (slot->kind != JOBQ_WORKER_UNUSED && slot->pid == 0)
			{
				JobqDatabase *db = JobqFindDatabase(slot->dboid, false);

				if (db != NULL)
					JobqNoteExecutorFailure(db);
				slot->kind = JOBQ_WORKER_UNUSED;
				slot->generation++;
			}
		}
		LWLockRelease(jobq_shared->lock);
	}
}

/*
 * Reserve a slot and register an executor for db.  Returns false when no
 * slot (ours or the postmaster's) is free; the caller retries next tick.
 */
static bool
StartExecutor(Oid dboid, JobqWorkerKind kind)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext oldcxt;
	int			idx = -1;
	uint32		generation = 0;
	int			i;

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];

		if (slot->kind != JOBQ_WORKER_UNUSED || handles[i] != NULL)
			continue;
		slot->kind = kind;
		slot->dboid = dboid;
		slot->generation++;
		slot->reserved_at = GetCurrentTimestamp();
		slot->pid = 0;
		slot->latch = NULL;
		slot->token = 0;
		slot->state = JOBQ_STATE_STARTING;
		slot->job_id = 0;
		slot->since = slot->reserved_at;
		slot->jobs_done = 0;
		slot->claims = 0;
		slot->last_error[0] = '\0';
		pg_atomic_write_u64(&slot->cancel_job_id, 0);
		idx = i;
		generation = slot->generation;
		break;
	}
	LWLockRelease(jobq_shared->lock);

	if (idx < 0)
	{
		if (TimestampDifferenceExceeds(last_no_slot_warning,
									   GetCurrentTimestamp(), 60000))
		{
			ereport(WARNING,
					(errmsg("jobq cannot start more executors: all %d slots are in use",
							jobq_shared->nslots),
					 errhint("Raise jobq.max_total_workers (and max_worker_processes), or lower jobq.workers.")));
			last_no_slot_warning = GetCurrentTimestamp();
		}
		return false;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "jobq");
	if (kind == JOBQ_WORKER_HTTP)
	{
		/* the database's HTTP worker (http_worker.c) */
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "jobq_http_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "jobq http %d (database %u)",
				 idx, dboid);
		snprintf(worker.bgw_type, BGW_MAXLEN, "jobq http");
	}
	else
	{
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "jobq_executor_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "jobq executor %d (database %u)",
				 idx, dboid);
		snprintf(worker.bgw_type, BGW_MAXLEN, "jobq executor");
	}
	worker.bgw_main_arg = Int32GetDatum(idx);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	worker.bgw_notify_pid = MyProcPid;

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		MemoryContextSwitchTo(oldcxt);
		LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
		jobq_shared->slots[idx].kind = JOBQ_WORKER_UNUSED;
		jobq_shared->slots[idx].generation++;
		LWLockRelease(jobq_shared->lock);
		if (TimestampDifferenceExceeds(last_no_slot_warning,
									   GetCurrentTimestamp(), 60000))
		{
			ereport(WARNING,
					(errmsg("jobq cannot start an executor: no free background worker slot"),
					 errhint("You might need to increase max_worker_processes.")));
			last_no_slot_warning = GetCurrentTimestamp();
		}
		return false;
	}
	MemoryContextSwitchTo(oldcxt);
	handles[idx] = handle;
	return true;
}

/* The database is no longer active: stop its HTTP worker. */
static void
StopHttpWorkers(Oid dboid)
{
	int			i;

	LWLockAcquire(jobq_shared->lock, LW_SHARED);
	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];

		if (slot->kind == JOBQ_WORKER_HTTP && slot->dboid == dboid &&
			slot->pid != 0)
			kill(slot->pid, SIGTERM);
	}
	LWLockRelease(jobq_shared->lock);
}

/*
 * Start what is missing and stop what is too much, per database.
 */
static void
BalanceExecutors(TimestampTz now)
{
	int			counts[JOBQ_MAX_DATABASES];
	int			http_counts[JOBQ_MAX_DATABASES];
	int			probes = 0;
	int			d,
				i;

	memset(counts, 0, sizeof(counts));
	memset(http_counts, 0, sizeof(http_counts));

	LWLockAcquire(jobq_shared->lock, LW_SHARED);
	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];
		bool		known = false;

		if (slot->kind == JOBQ_WORKER_UNUSED)
			continue;
		if (slot->kind == JOBQ_WORKER_PROBE)
			probes++;
		for (d = 0; d < JOBQ_MAX_DATABASES; d++)
			if (jobq_shared->databases[d].dboid == slot->dboid)
			{
				if (slot->kind == JOBQ_WORKER_HTTP)
					http_counts[d]++;
				else
					counts[d]++;
				known = true;
			}

		/*
		 * Its database left the registry (no longer in jobq.database, or
		 * dropped): stop it.  It stops as at shutdown: its running job gets
		 * the grace, then is released without using an attempt.
		 */
		if (!known && slot->pid != 0)
			kill(slot->pid, SIGTERM);
	}
	LWLockRelease(jobq_shared->lock);

	for (d = 0; d < JOBQ_MAX_DATABASES; d++)
	{
		JobqDatabase *db = &jobq_shared->databases[d];
		Oid			dboid = db->dboid;
		int			want = 0;

		if (dboid == InvalidOid)
			continue;

		if (db->state == JOBQ_DB_BLOCKED && now >= db->blocked_until)
			db->state = JOBQ_DB_UNKNOWN;

		switch (db->state)
		{
			case JOBQ_DB_ACTIVE:
				want = jobq_workers;
				break;
			case JOBQ_DB_UNKNOWN:
				want = 1;
				break;
			default:
				want = 0;
				break;
		}

		/* one HTTP worker per active database (http_worker.c) */
		if (db->state != JOBQ_DB_ACTIVE && http_counts[d] > 0)
			StopHttpWorkers(dboid);
		else if (db->state == JOBQ_DB_ACTIVE && http_counts[d] == 0 &&
				 now >= db->next_start_at)
		{
			if (!StartExecutor(dboid, JOBQ_WORKER_HTTP))
				return;
			http_counts[d]++;
		}

		if (counts[d] > want && db->state != JOBQ_DB_UNKNOWN)
		{
			/* too many (jobq.workers lowered, or inactive): stop extras */
			int			excess = counts[d] - want;

			for (i = jobq_shared->nslots - 1; i >= 0 && excess > 0; i--)
			{
				JobqWorkerSlot *slot = &jobq_shared->slots[i];

				if (slot->kind == JOBQ_WORKER_UNUSED || slot->dboid != dboid ||
					slot->kind == JOBQ_WORKER_HTTP)
					continue;
				if (slot->pid != 0)
					kill(slot->pid, SIGTERM);
				excess--;
			}
			continue;
		}

		if (now < db->next_start_at)
			continue;

		while (counts[d] < want)
		{
			JobqWorkerKind kind = JOBQ_WORKER_EXECUTOR;

			if (db->state == JOBQ_DB_UNKNOWN)
			{
				if (probes >= MAX_CONCURRENT_PROBES)
					break;
				kind = JOBQ_WORKER_PROBE;
				probes++;
			}
			if (!StartExecutor(dboid, kind))
				return;
			counts[d]++;
		}
	}
}

/*
 * Log, once per attempt, jobs running longer than their queue's warn_after.
 * The executor cannot: it is inside the handler.
 */
static void
WarnSlowJobs(TimestampTz now)
{
	int			i;

	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];
		TimestampTz started = slot->job_started_at;
		int64		job_id = slot->job_id;

		if (slot->state != JOBQ_STATE_RUNNING || slot->warned_slow ||
			slot->warn_after_ms <= 0 || job_id == 0)
			continue;
		if (!TimestampDifferenceExceeds(started, now, (int) Min(slot->warn_after_ms, PG_INT32_MAX)))
			continue;
		slot->warned_slow = true;
		ereport(LOG,
				(errmsg("jobq job %lld is slow: running for %ld ms (warn_after is %lld ms)",
						(long long) job_id,
						(long) ((now - started) / 1000),
						(long long) slot->warn_after_ms),
				 errdetail("Executor pid %d, database %u.", slot->pid, slot->dboid)));
	}
}

void
jobq_launcher_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	TimestampTz last_scan = 0;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* shared catalogs only: see the file header */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("jobq launcher");

	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(BackgroundWorkerHandle *) * jobq_shared->nslots);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "jobq launcher loop",
									 ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	jobq_shared->launcher_pid = MyProcPid;
	jobq_shared->launcher_latch = &MyProc->procLatch;
	/*
	 * Reservations made by an earlier launcher incarnation that never
	 * attached have no handle any more: reclaim them.  Bumping the generation
	 * makes such an executor exit if it attaches late.  Attached executors
	 * keep running and are simply counted.
	 */
	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];

		if (slot->kind != JOBQ_WORKER_UNUSED && slot->pid == 0)
		{
			slot->kind = JOBQ_WORKER_UNUSED;
			slot->generation++;
		}
	}
	LWLockRelease(jobq_shared->lock);
	before_shmem_exit(LauncherDetach, 0);

	ereport(LOG, (errmsg("jobq launcher started")));

	for (;;)
	{
		TimestampTz now;
		bool		woken;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			last_scan = 0;		/* jobq.database may have changed */
		}

		now = GetCurrentTimestamp();
		woken = pg_atomic_exchange_u32(&jobq_shared->launcher_wake_pending, 0) != 0;
		if (woken || TimestampDifferenceExceeds(last_scan, now,
												DATABASE_SCAN_INTERVAL_MS))
		{
			ScanDatabases();
			last_scan = now;
		}
		ReapWorkers();
		BalanceExecutors(now);
		WarnSlowJobs(now);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
