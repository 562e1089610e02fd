/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  jobq's shared memory: sizing, initialisation, the database registry and
 *	  the commit-time wake-up of executors.
 *
 * The layout is documented in jobq.h next to the structs.  Only
 * process-independent values live there (pids, PGPROC latches, OIDs, ids,
 * timestamps, atomics): never a pointer into one process's memory
 * (pg_net #276).
 *
 * Wake-up: jobq.submit() calls JobqWakeAtCommit(), which only sets a
 * backend-local flag.  At COMMIT the transaction callback sets the latch of
 * one idle executor of this database.  Waking before commit would make the
 * executor scan for a row it cannot see yet; NOTIFY would take the global
 * notify lock on every submitting commit (PEERS §3 item 5).
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "claim_floor.h"
#include "breaker.h"
#include "job_wait.h"
#include "metrics.h"
#include "queue_gauges.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(jobq_live_executor_tokens);

JobqShared *jobq_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Backend-local: what to do when the current transaction commits. */
static bool wake_pending = false;
static bool http_wake_pending = false;
static uint32 wake_queue_hash = 0;	/* of the last queue submitted to */
static bool queues_changed_pending = false;
static bool activate_pending = false;

/* Running jobs cancelled by this transaction, interrupted at its commit. */
#define MAX_PENDING_CANCELS 64
static int64 pending_cancels[MAX_PENDING_CANCELS];
static int	npending_cancels = 0;

/* Databases blocked by this transaction's DDL (ddl_guard.c), freed at its end. */
#define MAX_PENDING_UNBLOCKS 8
static Oid	pending_unblocks[MAX_PENDING_UNBLOCKS];
static int	npending_unblocks = 0;

static Size
JobqShmemSize(void)
{
	return add_size(offsetof(JobqShared, slots),
					mul_size(sizeof(JobqWorkerSlot), jobq_max_total_workers));
}

static Size
JobqShmemTotalSize(void)
{
	return add_size(add_size(add_size(JobqShmemSize(), ClaimFloorShmemSize()),
							 add_size(BreakerShmemSize(), JobWaitShmemSize())),
					add_size(JobqMetricsShmemSize(), JobqGaugesShmemSize()));
}

static void
JobqShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(JobqShmemTotalSize());
	RequestNamedLWLockTranche("jobq", 1);
	RequestNamedLWLockTranche("jobq breakers", 1);
	RequestNamedLWLockTranche("jobq counters", 1);
}

static void
JobqShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	jobq_shared = ShmemInitStruct("jobq", JobqShmemSize(), &found);
	if (!found)
	{
		int			i;

		memset(jobq_shared, 0, JobqShmemSize());
		jobq_shared->lock = &(GetNamedLWLockTranche("jobq"))->lock;
		jobq_shared->nslots = jobq_max_total_workers;

		pg_atomic_init_u32(&jobq_shared->launcher_wake_pending, 0);
		pg_atomic_init_u64(&jobq_shared->wake_seq, 0);
		pg_atomic_init_u64(&jobq_shared->queues_version, 0);
		for (i = 0; i < jobq_shared->nslots; i++)
		{
			pg_atomic_init_u64(&jobq_shared->slots[i].cancel_job_id, 0);
			pg_atomic_init_u32(&jobq_shared->slots[i].wake_queue_hash, 0);
		}
	}
	ClaimFloorShmemInit();
	BreakerShmemInit();
	JobWaitShmemInit();
	JobqMetricsShmemInit();
	JobqGaugesShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Find the registry entry of a database; with create, add it when missing.
 * Caller holds jobq_shared->lock exclusively when create is true (shared is
 * enough for a pure lookup).  Returns NULL when absent, or when the registry
 * is full (the launcher logs that).
 */
JobqDatabase *
JobqFindDatabase(Oid dboid, bool create)
{
	JobqDatabase *free_entry = NULL;
	int			i;

	for (i = 0; i < JOBQ_MAX_DATABASES; i++)
	{
		JobqDatabase *db = &jobq_shared->databases[i];

		if (db->dboid == dboid)
			return db;
		if (db->dboid == InvalidOid && free_entry == NULL)
			free_entry = db;
	}
	if (create && free_entry != NULL)
	{
		memset(free_entry, 0, sizeof(JobqDatabase));
		free_entry->dboid = dboid;
		free_entry->state = JOBQ_DB_UNKNOWN;
		pg_atomic_init_u32(&free_entry->claimed_since_vacuum, 0);
		for (i = 0; i < JOBQ_EVENT_COUNT; i++)
			pg_atomic_init_u64(&free_entry->events[i], 0);
		SpinLockInit(&free_entry->batch_mutex);
		/* batches noted before a restart were lost with shared memory */
		free_entry->batch_check_all = true;
		return free_entry;
	}
	return NULL;
}

/* This backend's database entry, looked up once. */
static JobqDatabase *my_db = NULL;

/*
 * The entry of this backend's database, or NULL (no shared memory, no
 * database, or the table full).  Entries are never moved; one is reused
 * only for another database, which the dboid check catches.
 */
JobqDatabase *
JobqMyDatabase(void)
{
	if (jobq_shared == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	if (my_db == NULL || my_db->dboid != MyDatabaseId)
	{
		LWLockAcquire(jobq_shared->lock, LW_SHARED);
		my_db = JobqFindDatabase(MyDatabaseId, false);
		LWLockRelease(jobq_shared->lock);
	}
	return my_db;
}

/*
 * A worker process's before_shmem_exit: give its slot back and wake the
 * launcher.  An exit the process did not choose (an ERROR or FATAL outside
 * a job, not a stop request) counts as a failure of its database, so that
 * the launcher backs off before starting the next one there; an executor
 * that ended itself over a handler that would not stop (ended_job_id) is
 * no crash: its job is noted for lost-job recovery instead.
 */
void
JobqReleaseSlot(JobqWorkerSlot *slot, bool chosen_exit)
{
	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		if (!chosen_exit && slot->ended_job_id == 0)
		{
			JobqDatabase *db = JobqFindDatabase(slot->dboid, false);

			if (db != NULL)
				JobqNoteExecutorFailure(db);
		}
		if (slot->ended_job_id != 0)
			JobqNoteEndedJob(slot);
		slot->kind = JOBQ_WORKER_UNUSED;
		slot->pid = 0;
		slot->latch = NULL;
		slot->state = JOBQ_STATE_STARTING;
		slot->job_id = 0;
		slot->generation++;
	}
	LWLockRelease(jobq_shared->lock);
	JobqWakeLauncher();
}

/*
 * The executor slot of dboid currently running job_id, or NULL.  Read without
 * the lock: the caller only uses it to post a cancel request that the
 * executor itself validates against its own job id.
 */
JobqWorkerSlot *
JobqFindSlotRunningJob(Oid dboid, int64 job_id)
{
	int			i;

	if (jobq_shared == NULL)
		return NULL;
	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];

		if (slot->kind != JOBQ_WORKER_UNUSED && slot->dboid == dboid &&
			slot->job_id == job_id)
			return slot;
	}
	return NULL;
}

/*
 * An executor of db died by error: delay the next start there by 1 s, 2 s,
 * 4 s ... 60 s.  Caller holds jobq_shared->lock exclusively.
 */
void
JobqNoteExecutorFailure(JobqDatabase *db)
{
	int			shift = Min(db->consecutive_failures, 6);

	db->consecutive_failures++;
	db->next_start_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													Min(1000L << shift, 60000L));
}

void
JobqWakeLauncher(void)
{
	Latch	   *latch;

	if (jobq_shared == NULL)
		return;
	pg_atomic_write_u32(&jobq_shared->launcher_wake_pending, 1);
	pg_write_barrier();
	latch = jobq_shared->launcher_latch;
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Ask that an idle executor of this database be woken when the current
 * transaction commits.  Cheap enough to call once per submitted job.
 */
void
JobqWakeAtCommit(void)
{
	wake_pending = true;
}

/* The same, for a job of queue: the woken executor claims there first. */
void
JobqWakeAtCommitForQueue(const char *queue)
{
	wake_pending = true;
	wake_queue_hash = JobqQueueNameHash(queue);
}

/*
 * A job of an http queue: wake the database's HTTP worker at commit
 * (http_worker.c).  A hint: it also polls.
 */
void
JobqWakeHttpAtCommit(void)
{
	http_wake_pending = true;
}

static void
WakeHttpWorker(void)
{
	int			i;

	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];
		Latch	   *latch;

		if (slot->kind != JOBQ_WORKER_HTTP || slot->dboid != MyDatabaseId)
			continue;
		latch = slot->latch;
		if (latch != NULL)
			SetLatch(latch);
	}
}

/* jobq.queues changed: executors re-read it once this commits. */
void
JobqQueuesChangedAtCommit(void)
{
	queues_changed_pending = true;
}

/* Never 0, which means "no queue" in wake_queue_hash. */
uint32
JobqQueueNameHash(const char *queue)
{
	uint32		h = hash_bytes((const unsigned char *) queue, (int) strlen(queue));

	return h == 0 ? 1 : h;
}

/*
 * Called from jobq._activate_database() (CREATE EXTENSION): at commit, tell
 * the launcher this database has jobq now.
 */
void
JobqActivateAtCommit(void)
{
	activate_pending = true;
}

/*
 * Block (DROP/RENAME DATABASE, DROP EXTENSION in progress: the launcher
 * starts nothing there) or unblock a database.  Unblocking does not make it
 * active: it is probed again a second later, and a dropped database leaves
 * the registry at the launcher's next scan.
 */
void
JobqSetDatabaseBlocked(Oid dboid, bool blocked)
{
	JobqDatabase *db;

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	db = JobqFindDatabase(dboid, blocked);
	if (db != NULL)
	{
		if (blocked)
		{
			db->state = JOBQ_DB_BLOCKED;
			db->blocked_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															3600 * 1000);
		}
		else if (db->state == JOBQ_DB_BLOCKED)
			db->blocked_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															1000);
	}
	LWLockRelease(jobq_shared->lock);
	JobqWakeLauncher();
}

/*
 * Unblock dboid when the current transaction ends, committed or not: until
 * then the DDL's effect is invisible to a probe, which would find jobq
 * still installed and start working in a database about to lose it.
 */
void
JobqUnblockAtXactEnd(Oid dboid)
{
	if (npending_unblocks < MAX_PENDING_UNBLOCKS)
		pending_unblocks[npending_unblocks++] = dboid;
	else
		JobqSetDatabaseBlocked(dboid, false);
}

static void
UnblockPending(void)
{
	while (npending_unblocks > 0)
		JobqSetDatabaseBlocked(pending_unblocks[--npending_unblocks], false);
}

/*
 * Post a cancel request to the executor running job_id, if any.  The
 * executor's tick compares it with its current job, so a request that
 * arrives after the job ended interrupts nothing.
 */
static void
PostCancel(int64 job_id)
{
	JobqWorkerSlot *slot = JobqFindSlotRunningJob(MyDatabaseId, job_id);
	int			i;

	if (slot != NULL)
	{
		Latch	   *latch = slot->latch;

		pg_atomic_write_u64(&slot->cancel_job_id, (uint64) job_id);
		if (latch != NULL)
			SetLatch(latch);
		return;
	}

	/*
	 * Not an executor's: perhaps one of the HTTP worker's many jobs.  It
	 * checks all its jobs when told (http_worker.c), so an overwritten id
	 * loses nothing.
	 */
	for (i = 0; i < jobq_shared->nslots; i++)
	{
		Latch	   *latch;

		slot = &jobq_shared->slots[i];
		if (slot->kind != JOBQ_WORKER_HTTP || slot->dboid != MyDatabaseId)
			continue;
		latch = slot->latch;
		pg_atomic_write_u64(&slot->cancel_job_id, (uint64) job_id);
		if (latch != NULL)
			SetLatch(latch);
	}
}

/*
 * jobq.cancel() of a running job: interrupt its handler when the cancelling
 * transaction commits.  Before the commit the job is still running as far as
 * everyone else can see, and a rolled-back cancel must interrupt nothing.
 */
void
JobqCancelAtCommit(int64 job_id)
{
	if (npending_cancels < MAX_PENDING_CANCELS)
		pending_cancels[npending_cancels++] = job_id;
	else
		PostCancel(job_id);		/* rare: many in one transaction */
}

/*
 * Wake one idle executor of MyDatabaseId other than except (may be NULL);
 * false when none is idle.  No lock: a slot read while it is being reused
 * at worst sets the latch of another process, a spurious wake that costs
 * one empty claim.  Called from commit callbacks, so it must not throw.
 */
bool
JobqWakeIdleExecutor(JobqWorkerSlot *except, uint32 queue_hash)
{
	int			i;

	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];
		Latch	   *latch;

		if (slot == except || slot->kind != JOBQ_WORKER_EXECUTOR ||
			slot->dboid != MyDatabaseId || slot->state != JOBQ_STATE_IDLE)
			continue;
		latch = slot->latch;
		if (latch != NULL)
		{
			pg_atomic_write_u32(&slot->wake_queue_hash, queue_hash);
			SetLatch(latch);
			return true;
		}
	}
	return false;
}

static void
ActivateDatabase(void)
{
	JobqDatabase *db;

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	db = JobqFindDatabase(MyDatabaseId, true);
	if (db != NULL)
	{
		db->state = JOBQ_DB_ACTIVE;
		db->activations++;
		db->consecutive_failures = 0;
		db->next_start_at = 0;
	}
	LWLockRelease(jobq_shared->lock);
	JobqWakeLauncher();
}

static void
JobqXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (jobq_shared != NULL)
			{
				if (activate_pending)
					ActivateDatabase();
				/* before the wake-up: a woken executor sees the new list */
				if (queues_changed_pending)
					pg_atomic_fetch_add_u64(&jobq_shared->queues_version, 1);
				if (wake_pending)
				{
					/* a full barrier: ordered after the commit became visible */
					pg_atomic_fetch_add_u64(&jobq_shared->wake_seq, 1);
					(void) JobqWakeIdleExecutor(NULL, wake_queue_hash);
				}
				if (http_wake_pending)
					WakeHttpWorker();
				while (npending_cancels > 0)
					PostCancel(pending_cancels[--npending_cancels]);
				UnblockPending();
			}
			wake_pending = false;
			http_wake_pending = false;
			wake_queue_hash = 0;
			queues_changed_pending = false;
			activate_pending = false;
			npending_cancels = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared submit is found by polling once committed */
			if (jobq_shared != NULL)
				UnblockPending();
			wake_pending = false;
			http_wake_pending = false;
			wake_queue_hash = 0;
			queues_changed_pending = false;
			activate_pending = false;
			npending_cancels = 0;
			break;
		default:
			break;
	}
}

/* Once, in _PG_init: forked backends inherit the registration. */
void
JobqRegisterXactCallback(void)
{
	RegisterXactCallback(JobqXactCallback, NULL);
}

void
JobqShmemInstallHooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = JobqShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = JobqShmemStartup;
}

/*
 * A new executor token: random, positive, and held by no other slot.  The
 * caller holds jobq_shared->lock exclusively.  Random rather than counted
 * from any clock, so that a token in jobq.jobs.claimed_by written by
 * another server (a restore, a promoted standby) or before a crash never
 * names a live executor of this one.
 */
int64
JobqNewToken(void)
{
	for (;;)
	{
		uint64		r;
		int64		token;
		bool		taken = false;
		int			i;

		if (!pg_strong_random(&r, sizeof(r)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("jobq: could not generate a random executor token")));
		token = (int64) (r & PG_INT64_MAX);
		if (token == 0)
			continue;
		for (i = 0; i < jobq_shared->nslots && !taken; i++)
			taken = jobq_shared->slots[i].kind != JOBQ_WORKER_UNUSED &&
				jobq_shared->slots[i].token == token;
		if (!taken)
			return token;
	}
}

/*
 * jobq._live_executor_tokens() RETURNS bigint[]: the tokens of this
 * database's attached executors, read now (see StoreRecoverLost for why
 * the moment matters).
 */
Datum
jobq_live_executor_tokens(PG_FUNCTION_ARGS)
{
	Datum	   *elems = palloc(sizeof(Datum) *
								(JOBQ_MAX_ENDED_JOBS + (jobq_shared ? jobq_shared->nslots : 0)));
	int			n = 0;
	int			i;

	if (jobq_shared != NULL)
	{
		LWLockAcquire(jobq_shared->lock, LW_SHARED);
		for (i = 0; i < jobq_shared->nslots; i++)
		{
			JobqWorkerSlot *slot = &jobq_shared->slots[i];

			if (slot->kind != JOBQ_WORKER_UNUSED && slot->dboid == MyDatabaseId &&
				slot->pid != 0)
				elems[n++] = Int64GetDatum(slot->token);
		}
		/* an ended executor's noted job is settled apart (StoreRecoverLost) */
		for (i = 0; i < JOBQ_MAX_ENDED_JOBS; i++)
			if (jobq_shared->ended[i].dboid == MyDatabaseId)
				elems[n++] = Int64GetDatum(jobq_shared->ended[i].token);
		LWLockRelease(jobq_shared->lock);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, INT8OID, sizeof(int64),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Take this database's noted ended jobs (JobqEndedJob) out of shared
 * memory into out (room for JOBQ_MAX_ENDED_JOBS); returns how many.
 */
int
JobqTakeEndedJobs(JobqEndedJob *out)
{
	int			n = 0;
	int			i;

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < JOBQ_MAX_ENDED_JOBS; i++)
	{
		if (jobq_shared->ended[i].dboid == MyDatabaseId)
		{
			out[n++] = jobq_shared->ended[i];
			jobq_shared->ended[i].dboid = InvalidOid;
		}
	}
	LWLockRelease(jobq_shared->lock);
	return n;
}

/* Give back a noted ended job that could not be settled yet. */
void
JobqPutBackEndedJob(const JobqEndedJob *e)
{
	int			i;

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < JOBQ_MAX_ENDED_JOBS; i++)
	{
		if (jobq_shared->ended[i].dboid == InvalidOid)
		{
			jobq_shared->ended[i] = *e;
			break;
		}
	}
	LWLockRelease(jobq_shared->lock);
}

/*
 * The handler of job slot->ended_job_id would not stop and its executor is
 * ending (run_sql.c): keep the job for lost-job recovery, which records it
 * with its interrupt's class.  Under jobq_shared->lock, in the same hold
 * that frees the slot, so that recovery sees the executor either alive or
 * noted here, never just gone.  The oldest entry makes room when full.
 */
void
JobqNoteEndedJob(JobqWorkerSlot *slot)
{
	JobqEndedJob *e = NULL;
	int			i;

	for (i = 0; i < JOBQ_MAX_ENDED_JOBS && e == NULL; i++)
		if (jobq_shared->ended[i].dboid == InvalidOid)
			e = &jobq_shared->ended[i];
	if (e == NULL)
	{
		memmove(&jobq_shared->ended[0], &jobq_shared->ended[1],
				sizeof(JobqEndedJob) * (JOBQ_MAX_ENDED_JOBS - 1));
		e = &jobq_shared->ended[JOBQ_MAX_ENDED_JOBS - 1];
	}
	e->dboid = slot->dboid;
	e->token = slot->token;
	e->job_id = slot->ended_job_id;
	e->attempt = slot->ended_attempt;
	e->reason = slot->ended_reason;
	slot->ended_job_id = 0;
}

/*
 * The extension is not (or no longer) in database dboid: mark it absent,
 * unless a CREATE EXTENSION committed since activations_seen was read.
 */
void
JobqMarkDatabaseAbsent(Oid dboid, uint32 activations_seen)
{
	JobqDatabase *db;

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	db = JobqFindDatabase(dboid, false);
	if (db != NULL && db->activations == activations_seen &&
		db->state != JOBQ_DB_BLOCKED)
		db->state = JOBQ_DB_ABSENT;
	LWLockRelease(jobq_shared->lock);
}

/* How many CREATE EXTENSION commits database dboid has seen (0: unknown). */
uint32
JobqDatabaseActivations(Oid dboid)
{
	JobqDatabase *db;
	uint32		activations = 0;

	LWLockAcquire(jobq_shared->lock, LW_SHARED);
	db = JobqFindDatabase(dboid, false);
	if (db != NULL)
		activations = db->activations;
	LWLockRelease(jobq_shared->lock);
	return activations;
}
