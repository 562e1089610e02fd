/*-------------------------------------------------------------------------
 *
 * jobq.h
 *	  Declarations shared by the jobq modules: settings, the shared-memory
 *	  layout and the functions one module offers another.
 *
 * IDENTIFICATION
 *	  src/jobq.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_H
#define JOBQ_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#include "job_events.h"

#define JOBQ_EXTENSION_NAME "jobq"
#define JOBQ_SCHEMA_NAME "jobq"

/* Hard caps that size shared memory; the settings are bounded by them. */
#define JOBQ_MAX_DATABASES 64
#define JOBQ_MAX_WORKERS_PER_DB 64

/* ---- settings (jobq.c) ---- */
extern char *jobq_database;			/* jobq.database: restrict to these DBs */
extern int	jobq_workers;			/* jobq.workers: executors per database */
extern int	jobq_max_total_workers; /* jobq.max_total_workers: slot count */
extern int	jobq_poll_interval_ms;	/* jobq.poll_interval */
extern int	jobq_shutdown_grace_ms; /* jobq.shutdown_grace */
extern int	jobq_cleanup_interval_ms;	/* jobq.cleanup_interval */
extern int	jobq_alert_interval_ms; /* jobq.alert_interval */
extern int	jobq_dead_letter_retention_s;	/* jobq.dead_letter_retention */
extern int	jobq_metrics_flush_interval_ms; /* jobq.metrics_flush_interval */
extern int	jobq_metrics_retention_s;	/* jobq.metrics_retention */
extern bool jobq_log_events;		/* jobq.log_events */
extern char *jobq_http_allowed_hosts;	/* jobq.http_allowed_hosts */
extern bool jobq_allow_superuser_jobs;	/* jobq.allow_superuser_jobs */
extern bool jobq_direct_access;	/* jobq.direct_access */
extern int	jobq_max_payload_size_kb;	/* jobq.max_payload_size */

/* ---- shared memory (shmem.c) ---- */

typedef enum JobqWorkerKind
{
	JOBQ_WORKER_UNUSED = 0,
	JOBQ_WORKER_EXECUTOR,
	JOBQ_WORKER_PROBE,			/* an executor started only to look for jobq */
	JOBQ_WORKER_HTTP			/* the database's HTTP worker (http_worker.c) */
} JobqWorkerKind;

typedef enum JobqWorkerState
{
	JOBQ_STATE_STARTING = 0,
	JOBQ_STATE_IDLE,			/* waiting on its latch; may be woken */
	JOBQ_STATE_CLAIMING,
	JOBQ_STATE_RUNNING,			/* running job_id */
	JOBQ_STATE_STOPPING
} JobqWorkerState;

/*
 * One executor.  The launcher reserves a slot (kind, dboid, generation) before
 * registering the background worker and passes the slot index in bgw_main_arg;
 * the executor fills in pid/proc and the live fields.  Fields written by the
 * executor alone (state, job_id, since, jobs_done, last_error) are read without
 * the lock by the monitoring view: a torn read there is harmless.
 *
 * token identifies this executor incarnation in jobq.jobs.claimed_by; it is
 * unique across server restarts, so a running job whose token is not held by a
 * live slot was lost by fact.
 *
 * cancel_job_id is set by jobq.cancel() in another backend; the executor's
 * periodic tick compares it with job_id and interrupts the handler.
 */
/* A progress note: 200 characters of up to 4 bytes, and the NUL. */
#define JOBQ_PROGRESS_NOTE_BYTES 801

typedef struct JobqWorkerSlot
{
	JobqWorkerKind kind;
	Oid			dboid;
	uint32		generation;		/* bumped on every reuse of the slot */
	TimestampTz reserved_at;	/* when the launcher took the slot */
	int			pid;			/* 0 until attached */
	Latch	   *latch;			/* &MyProc->procLatch once attached */
	int64		token;
	JobqWorkerState state;

	/*
	 * The job being run (0 when none) and its owner: jobq.workers shows a
	 * job's id (and its error: last_error_owner below) only to its owner and
	 * jobq_admin.  Written by the executor only; read without a lock: the
	 * owner is written before the id it guards (with a write barrier), and
	 * readers read the id again after the owner (monitor.c).
	 */
	Oid			job_owner;
	int64		job_id;			/* job being run, 0 when none */
	TimestampTz since;			/* when state last changed */
	TimestampTz job_started_at;
	int64		warn_after_ms;	/* slow threshold of the running job */
	bool		warned_slow;	/* launcher logged it already */
	uint64		jobs_done;
	uint64		claims;			/* claim statements run (one per queue looked at) */
	pg_atomic_uint64 cancel_job_id;

	/*
	 * Set with the latch by the commit that wakes this executor: a hash of
	 * the queue name submitted to (JobqQueueNameHash), so the claim looks
	 * there first; 0 when not known.  A hint only: read and cleared by the
	 * executor without a lock.
	 */
	pg_atomic_uint32 wake_queue_hash;

	/*
	 * Set (in signal context, by run_sql.c's tick) when a handler kept
	 * running past jobq's interrupts and the executor ends itself: the job,
	 * its attempt and why it was interrupted (a JobqInterrupt).  Copied
	 * into jobq_shared->ended when the executor detaches.
	 */
	volatile int64 ended_job_id;
	volatile int32 ended_attempt;
	volatile int ended_reason;
	/*
	 * The last error and whose job it was.  last_error_seq is odd while
	 * they change (the executor alone writes them); a reader keeps a copy
	 * only if it read the same even value before and after copying.
	 */
	volatile uint32 last_error_seq;
	Oid			last_error_owner;
	char		last_error[128];

	/*
	 * The running job's live progress (jobq.report_progress), for
	 * progress_job_id: written by the executor alone under progress_seq
	 * (odd while changing), read like last_error.
	 */
	volatile uint32 progress_seq;
	int64		progress_job_id;	/* 0: none reported for the running job */
	double		progress;
	char		progress_note[JOBQ_PROGRESS_NOTE_BYTES];
} JobqWorkerSlot;

typedef enum JobqDatabaseState
{
	JOBQ_DB_UNKNOWN = 0,		/* not probed yet */
	JOBQ_DB_ACTIVE,				/* jobq installed: run executors */
	JOBQ_DB_ABSENT,				/* probed, no jobq: costs nothing */
	JOBQ_DB_BLOCKED				/* DROP/RENAME DATABASE in progress */
} JobqDatabaseState;

/*
 * One database the launcher knows about.  Entries are added by the launcher's
 * scan of pg_database and by jobq._activate_database() (CREATE EXTENSION).
 */
#define JOBQ_MAX_DUTIES 8
/* batches to judge one database keeps (JobqDatabase.batch_checks) */
#define JOBQ_BATCH_CHECKS 32

typedef struct JobqDatabase
{
	Oid			dboid;
	JobqDatabaseState state;
	uint32		activations;	/* bumped by each CREATE EXTENSION commit */
	TimestampTz blocked_until;	/* JOBQ_DB_BLOCKED expires (failed DROP) */
	bool		seen;			/* launcher's pg_database scan mark */
	int			consecutive_failures;	/* executor crashes, for backoff */
	TimestampTz next_start_at;	/* backoff: no executor start before this */

	/*
	 * Executor VACUUM of jobs_active (upkeep.c).  claimed_since_vacuum is
	 * added to by every claim in the database without the lock; the other
	 * two are read and written under the lock.
	 */
	pg_atomic_uint32 claimed_since_vacuum;
	TimestampTz vacuum_next_at; /* no executor vacuum before this */
	int			vacuum_backoff_ms;	/* current minimum interval between them */
	uint32		vacuum_backlog_jobs;	/* jobs_active's reltuples after the last */

	/* committed job events of the database, by JobqEvent (job_events.c) */
	pg_atomic_uint64 events[JOBQ_EVENT_COUNT];

	/* each periodic duty's next run, by JobqDuty (duties.c; under the lock) */
	TimestampTz duty_next_at[JOBQ_MAX_DUTIES];

	/*
	 * Batches that may have become final (batches.c), under batch_mutex:
	 * batch_checks[0..nbatch_checks-1], ids of batches some of whose jobs
	 * committed transactions made final, for an executor of the database to
	 * judge.  batch_check_all: judge every closed batch not final yet
	 * instead (the list overflowed, a COMMIT PREPARED, a failed judging, or
	 * a new entry: after a server restart), from the batch after
	 * batch_check_after (0: from the first).  batch_checked_at: when the
	 * last judging took the list.
	 */
	slock_t		batch_mutex;
	int			nbatch_checks;
	bool		batch_check_all;
	int64		batch_check_after;
	TimestampTz batch_checked_at;
	int64		batch_checks[JOBQ_BATCH_CHECKS];
} JobqDatabase;

/*
 * The one shared struct.  lock protects slots[] bookkeeping fields (kind,
 * dboid, generation, pid, latch, token) and databases[].
 */
/*
 * A job whose executor ended itself because the handler would not stop
 * (see JobqWorkerSlot.ended_job_id): lost-job recovery records it with the
 * class of its interrupt instead of worker_lost.  Kept until recovered;
 * lost on a server restart (the job is then recovered as worker_lost).
 */
typedef struct JobqEndedJob
{
	Oid			dboid;			/* InvalidOid: entry free */
	int64		token;			/* of the executor that ended */
	int64		job_id;
	int32		attempt;
	int			reason;			/* JobqInterrupt */
} JobqEndedJob;

#define JOBQ_MAX_ENDED_JOBS 64

typedef struct JobqShared
{
	LWLock	   *lock;
	int			launcher_pid;
	Latch	   *launcher_latch;
	pg_atomic_uint32 launcher_wake_pending;

	/*
	 * Bumped by every commit that makes a job runnable (JobqWakeAtCommit),
	 * in any database, after the commit is visible.  An executor that read
	 * it before a claim that found nothing knows, when it is unchanged,
	 * that no job has become runnable since: it need not look again.
	 */
	pg_atomic_uint64 wake_seq;

	/*
	 * Bumped by every commit that changed jobq.queues (a statement trigger,
	 * jobq._queues_changed), in any database: an executor whose cached
	 * queue list was read before the latest bump reads it again.
	 */
	pg_atomic_uint64 queues_version;
	int			nslots;
	JobqDatabase databases[JOBQ_MAX_DATABASES];
	JobqEndedJob ended[JOBQ_MAX_ENDED_JOBS];	/* under lock */
	JobqWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} JobqShared;

extern JobqShared *jobq_shared;

extern void JobqShmemInstallHooks(void);
extern void JobqWakeAtCommit(void);
extern void JobqWakeAtCommitForQueue(const char *queue);
extern void JobqWakeHttpAtCommit(void);
extern void JobqQueuesChangedAtCommit(void);
extern bool JobqWakeIdleExecutor(JobqWorkerSlot *except, uint32 queue_hash);
extern uint32 JobqQueueNameHash(const char *queue);
extern void JobqActivateAtCommit(void);
extern void JobqCancelAtCommit(int64 job_id);
extern void JobqSetDatabaseBlocked(Oid dboid, bool blocked);
extern void JobqUnblockAtXactEnd(Oid dboid);
extern void JobqWakeLauncher(void);
extern void JobqRegisterXactCallback(void);
extern JobqDatabase *JobqFindDatabase(Oid dboid, bool create);
extern JobqDatabase *JobqMyDatabase(void);
extern JobqWorkerSlot *JobqFindSlotRunningJob(Oid dboid, int64 job_id);
extern int64 JobqNewToken(void);
extern void JobqNoteEndedJob(JobqWorkerSlot *slot);
extern void JobqMarkDatabaseAbsent(Oid dboid, uint32 activations_seen);
extern uint32 JobqDatabaseActivations(Oid dboid);
extern int	JobqTakeEndedJobs(JobqEndedJob *out);
extern void JobqPutBackEndedJob(const JobqEndedJob *e);
extern void JobqNoteExecutorFailure(JobqDatabase *db);
extern void JobqReleaseSlot(JobqWorkerSlot *slot, bool chosen_exit);

/* ---- launcher.c / executor.c ---- */
extern PGDLLEXPORT void jobq_launcher_main(Datum arg) pg_attribute_noreturn();
extern PGDLLEXPORT void jobq_executor_main(Datum arg) pg_attribute_noreturn();
extern void JobqRegisterLauncher(void);

/* ---- tables.c ---- */
struct SnapshotData;

/* One row of jobq.queues, as the direct-access paths need it. */
typedef struct JobqQueueRow
{
	char	   *kind;
	char	   *handler;		/* text form; NULL unless kind = sql */
	bool		paused;
	bool		limited;		/* concurrency or rate_limit set */
	bool		unique_per_owner;	/* unique_scope = 'owner' */
	char	   *breaker;		/* the breaker option; NULL: the queue's name */
	bool		breaker_fail_fast;	/* breaker_mode = 'fail_fast' */
} JobqQueueRow;

extern Oid	JobqRelid(const char *relname);
extern AttrNumber JobqAttnum(TupleDesc desc, const char *attname, bool missing_ok);
struct RelationData;
extern bool JobqDirectAccess(struct RelationData *rel);
extern bool JobqTextEquals(Datum d, const char *s);
extern bool JobqReadQueue(const char *queue, struct SnapshotData *snapshot,
						  JobqQueueRow *row);

/* ---- ddl_guard.c ---- */
extern void JobqInstallUtilityHook(void);

/* ---- kept_plans.c ---- */
struct _SPI_plan;
extern struct _SPI_plan *JobqKeptPlan(struct _SPI_plan **plan, const char *sql,
									  int nargs, Oid *argtypes);
extern void JobqExecPlan(struct _SPI_plan *plan, Datum *values, const char *nulls,
						 int expect, long count);
extern void JobqReplanIfResized(void);

/* ---- owner_switch.c ---- */

/* Saved user id while an entry point runs as the extension owner. */
typedef struct JobqRoleSwitch
{
	Oid			caller;
	Oid			save_userid;
	int			save_sec_context;
} JobqRoleSwitch;

extern Oid	JobqExtensionOwner(void);
extern void BecomeOwner(JobqRoleSwitch *sw);
extern void RestoreCaller(JobqRoleSwitch *sw);

#endif							/* JOBQ_H */
