/*-------------------------------------------------------------------------
 *
 * executor.c
 *	  A jobq executor: one background worker connected to one database that
 *	  claims jobs, runs them and records the outcome.
 *
 * Life cycle: attach to the shared-memory slot the launcher reserved (slot
 * index in bgw_main_arg, generation in bgw_extra), connect to the database
 * as the bootstrap superuser, check that jobq is installed (a probe that
 * finds it missing marks the database absent and exits 0), then loop.
 *
 * Shutdown: SIGTERM while no job runs behaves like die(); while a job runs
 * it only sets a flag, and the job gets jobq.shutdown_grace to finish.
 *
 * IDENTIFICATION
 *	  src/executor.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"
#include "breaker.h"
#include "duties.h"
#include "batches.h"
#include "upkeep.h"
#include "run_sql.h"
#include "settle.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/*
 * holding_jobs is true from just before a claim until every claimed job is
 * recorded: a SIGTERM then only sets shutdown_requested, so claimed jobs are
 * finished or released (never left to be recovered as lost, which would
 * cost them an attempt).
 */
static volatile sig_atomic_t shutdown_requested = false;
static volatile TimestampTz shutdown_requested_at = 0;
static volatile sig_atomic_t holding_jobs = false;

/* Batches: claim several jobs per transaction when jobs are quick. */
#define MAX_BATCH JOBQ_MAX_BATCH
#define QUEUE_REFRESH_MS 1000
#define RECOVERY_INTERVAL_MS 2000

static double avg_job_ms = 50.0;	/* moving average of handler time */
static int	rr_next = 0;			/* round-robin start over queues */
static TimestampTz queues_refreshed_at = 0;
static uint64 queues_version_seen = 0;	/* jobq_shared->queues_version then */
static TimestampTz recovered_at = 0;
static TimestampTz next_due_at = 0;	/* earliest pending run_at seen */
static bool claim_busy = false;		/* a limited queue was being claimed */

/*
 * Whether an executor that has just run jobs must look for more before it
 * sleeps.  The last claim found nothing; it need not look again when no job
 * became runnable since that claim looked: no waking commit since
 * (jobq_shared->wake_seq unchanged from empty_claim_seq, read before the
 * claim took its snapshot), no job of the burst failed, was snoozed or was
 * released (a retry is due at a time only QueueCacheNextDue finds), and no queue
 * is rate or concurrency limited (their jobs become claimable with no
 * commit at all).  Without this rule every burst, however short, ended with
 * an extra claim round of one statement per queue (and a re-read of the
 * queue list): a lone job cost its executor a claim round more.
 */
static bool empty_claim_valid = false;
static uint64 empty_claim_seq = 0;
static bool burst_needs_recheck = false;

/* Nothing can be claimable that the last (empty) claim did not see. */
static bool
NothingNewSinceEmptyClaim(void)
{
	return !burst_needs_recheck && empty_claim_valid &&
		pg_atomic_read_u64(&jobq_shared->wake_seq) == empty_claim_seq;
}

/* A limited queue skipped as busy is looked at again this soon. */
#define BUSY_RETRY_MS 10

/*
 * Claim pacing.  A claim walks the claim index from the queue's start, over
 * the entries of every job claimed since VACUUM last ran; while a long
 * transaction holds back the xmin horizon none of them can be pruned and
 * each costs a heap visit, so one claim can take milliseconds.  Jobs then
 * arriving one by one would each pay a whole walk (executors spent most of
 * their time claiming, starving the submitters on a 2-core machine).  So
 * when a claim round was slow and came back short, the next one waits three
 * times as long as that one took (at most CLAIM_PAUSE_MAX_MS): claims then
 * take at most about a quarter of an executor's time (at half, two
 * executors still took a whole core from the submitters) and each picks up
 * what arrived meanwhile.  A fast claim (the normal case, well under a millisecond)
 * never pauses, so pickup latency is unchanged; every claim is still a
 * full scan, so no job is skipped or reordered.
 */
#define CLAIM_SLOW_US 1000
#define CLAIM_PAUSE_FACTOR 3
#define CLAIM_PAUSE_MAX_MS 50
static TimestampTz claim_pause_until = 0;

static bool
ClaimPaused(void)
{
	return claim_pause_until != 0 && GetCurrentTimestamp() < claim_pause_until;
}
static char worker_name[64];
static MemoryContext job_cxt = NULL;

static JobqWorkerSlot *my_slot = NULL;
static int	my_slot_index = -1;
static bool clean_exit = false;

static void
ExecutorSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (!shutdown_requested)
		shutdown_requested_at = GetCurrentTimestamp();
	shutdown_requested = true;
	if (!holding_jobs)
		die(postgres_signal_arg);
	SetLatch(MyLatch);
	errno = save_errno;
}

/* before_shmem_exit: give the slot back (JobqReleaseSlot). */
static void
ExecutorDetach(int code, Datum arg)
{
	JobqReleaseSlot(&jobq_shared->slots[DatumGetInt32(arg)],
					clean_exit || shutdown_requested);
}

static void
SetSlotState(JobqWorkerState state)
{
	my_slot->state = state;
	my_slot->since = GetCurrentTimestamp();
}

/* Exit 0: the postmaster will not restart us, the launcher decides. */
static void
ExitCleanly(void)
{
	clean_exit = true;
	proc_exit(0);
}

/*
 * Is the extension installed (and committed) in this database?
 */
static bool
ExtensionInstalled(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid(JOBQ_EXTENSION_NAME, true));
	CommitTransactionCommand();
	return installed;
}

/* The extension is not (or no longer) here: leave (JobqMarkDatabaseAbsent). */
static void
LeaveDatabase(uint32 activations_seen)
{
	JobqMarkDatabaseAbsent(MyDatabaseId, activations_seen);
	ExitCleanly();
}

/*
 * How many jobs to claim at once: many when jobs are quick (one claim commit
 * for many jobs), one when they are slow (a claimed job would otherwise wait
 * behind a slow one while another executor idles).
 */
static int
BatchSize(void)
{
	if (avg_job_ms < 2.0)
		return MAX_BATCH;
	if (avg_job_ms < 20.0)
		return 4;
	return 1;
}

/* jobq's pg_extension OID here and the activation count, both at start. */
static Oid	extension_oid = InvalidOid;
static uint32 loop_activations = 0;

static void
BeginJobTransaction(bool check_extension)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	/*
	 * DROP EXTENSION locks the extension before any of its tables; taking
	 * the extension first too means the two never lock in opposite orders
	 * (a deadlock that would fail the user's DROP).
	 */
	if (OidIsValid(extension_oid) &&
		!ConditionalLockDatabaseObject(ExtensionRelationId, extension_oid, 0,
									   AccessShareLock))
	{
		/* a DROP EXTENSION holds it: wait, then see whether it committed */
		LockDatabaseObject(ExtensionRelationId, extension_oid, 0, AccessShareLock);
		check_extension = true;
	}

	/*
	 * DROP EXTENSION: looked at in the first transaction of a burst (its own
	 * transaction would cost a pickup some 50 us), and after waiting above.
	 */
	if (check_extension && OidIsValid(extension_oid) &&
		get_extension_oid(JOBQ_EXTENSION_NAME, true) != extension_oid)
	{
		AbortCurrentTransaction();
		LeaveDatabase(loop_activations);
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
EndJobTransaction(bool commit)
{
	SPI_finish();
	PopActiveSnapshot();
	if (commit)
		CommitTransactionCommand();
	else
		AbortCurrentTransaction();
	pgstat_report_stat(false);
}

/* Completions taken in the current batch (NULL: complete at once). */
static JobqCompletions *batch_completions = NULL;
static MemoryContext completions_cxt = NULL;


/*
 * Now that the batch has committed: record the outcomes settle.c kept, and
 * write circuit breaker transitions to jobq.breakers (breaker.c).  Neither
 * may wait for a row lock inside a batch.
 */
static void
SettleNow(void)
{
	if (!SettlePending() && !BreakerPersistPending())
		return;
	BeginJobTransaction(false);
	SettleInTransaction();
	if (BreakerPersistPending())
		BreakerPersist();
	EndJobTransaction(true);
}

/*
 * Run one claimed job inside the current transaction: the handler and its
 * completion in one subtransaction (both or neither), or, when it failed,
 * the failure recorded through the retry engine.  chained: leave a
 * successful job's subtransaction open (see RunSqlBatchHandler).
 */
static void
RunJobInTransaction(JobqClaimedJob *job, bool chained)
{
	JobqSqlRun	run;
	MemoryContext oldcxt = MemoryContextSwitchTo(job_cxt);
	char		activity[NAMEDATALEN * 2 + 64];
	TimestampTz started = GetCurrentTimestamp();

	snprintf(activity, sizeof(activity), "jobq: job %lld of queue %s, attempt %d",
			 (long long) job->id, job->queue->name, job->attempt);
	pgstat_report_activity(STATE_RUNNING, activity);

	my_slot->job_started_at = started;
	my_slot->warn_after_ms = job->queue->warn_after_ms;
	my_slot->warned_slow = false;
	my_slot->job_owner = job->owner;
	pg_write_barrier();
	my_slot->job_id = job->id;
	SetSlotState(JOBQ_STATE_RUNNING);

	memset(&run, 0, sizeof(run));
	run.job_id = job->id;
	run.attempt = job->attempt;
	run.owner = job->owner;
	run.handler = job->handler;
	run.flinfo = (chained && job->flinfo != NULL) ?
		RunSqlBatchHandler(job->flinfo, job->owner) : job->flinfo;
	run.keep_subxact = chained;
	run.rettype = job->rettype;
	run.payload = job->payload;
	run.timeout_ms = job->timeout_ms;
	run.tid = job->tid;
	run.completions = batch_completions;
	run.completions_cxt = completions_cxt;
	if (OidIsValid(job->handler))
		RunSqlHandler(&run);
	else
	{
		/* nothing to run: the job's own handler is gone, or it has none */
		run.error_class = "permanent";
		run.message = job->handler_text != NULL ?
			psprintf("the job's handler %s no longer exists", job->handler_text) :
			psprintf("the job has no handler: it was submitted while queue \"%s\" was not of kind sql",
					 job->queue->name);
	}

	if (!run.ok)
	{
		burst_needs_recheck = true;
		if (chained)
			RunSqlForgetBatchHandler(run.flinfo);
	}
	if (run.ok)
		;						/* recorded */
	else if (run.fenced)
	{
		/* not ours any more, or another transaction held the row */
		if (run.completion_busy)
			SettleLater(job->id, job->attempt, NULL);
	}
	else if (run.interrupt == JOBQ_INTERRUPT_SHUTDOWN)
		(void) StoreRelease(job->id, job->attempt, 0, NULL);
	else
	{
		bool		busy = false;

		(void) StoreFail(job->id, job->attempt, run.message, run.error_class,
						 NULL, run.sqlstate, run.detail, &busy);
		if (busy)
			SettleLater(job->id, job->attempt, &run);
	}

	avg_job_ms = avg_job_ms * 0.8 +
		0.2 * ((double) (GetCurrentTimestamp() - started) / 1000.0);
	my_slot->job_id = 0;
	my_slot->jobs_done++;
	if (!run.ok && run.message != NULL)
	{
		my_slot->last_error_seq++;	/* odd: changing */
		pg_write_barrier();
		strlcpy(my_slot->last_error, run.message, sizeof(my_slot->last_error));
		my_slot->last_error_owner = job->owner;
		pg_write_barrier();
		my_slot->last_error_seq++;
	}
	SetSlotState(JOBQ_STATE_IDLE);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(job_cxt);
}

/*
 * Claim up to want jobs over the SQL queues, round robin, in the current
 * transaction, into jobs[] (allocated in cxt).
 *
 * first: the claim that starts a burst (after a wake-up, a timeout or the
 * previous burst).  Latency matters more than a full batch there: it looks
 * first at the queue the waking submit named, and stops at the first queue
 * that gives jobs (the claims made between batches fill up from the
 * others).
 *
 * The queue list is read again when jobq.queues changed (a statement
 * trigger bumps jobq_shared->queues_version at commit) and at least once a
 * second (a backstop).
 */
static int
ClaimRound(JobqClaimedJob *jobs, int want, MemoryContext cxt, bool first)
{
	int			nclaimed = 0;
	int			nqueues;
	int			k;
	long		claim_us = 0;	/* in the claim statements only */
	uint32		hint = 0;
	uint64		seq;

	/* before any claim's snapshot: see empty_claim_seq */
	seq = pg_atomic_fetch_add_u64(&jobq_shared->wake_seq, 0);
	if (first)
		hint = pg_atomic_exchange_u32(&my_slot->wake_queue_hash, 0);
	claim_busy = false;
	JobqReplanIfResized();
	for (;;)
	{
		bool		refreshed = false;
		TimestampTz now = GetCurrentTimestamp();
		int			hinted = -1;

		/* barrier: read before the refresh's snapshot */
		uint64		version = pg_atomic_fetch_add_u64(&jobq_shared->queues_version, 0);

		if (version != queues_version_seen ||
			TimestampDifferenceExceeds(queues_refreshed_at, now, QUEUE_REFRESH_MS))
		{
			QueueCacheRefresh();
			queues_refreshed_at = now;
			queues_version_seen = version;
			refreshed = true;
		}
		nqueues = QueueCacheCount();
		for (k = 0; hint != 0 && k < nqueues; k++)
		{
			if (QueueCacheGet(k)->name_hash == hint)
				hinted = k;
		}
		/* the hinted queue, then the others round robin (skipping it) */
		for (k = (hinted >= 0 ? -1 : 0); k < nqueues && nclaimed < want; k++)
		{
			int			qi = (k < 0) ? hinted : (rr_next + k) % nqueues;
			JobqQueue  *q;
			MemoryContext spicxt;
			TimestampTz t0;

			if (k >= 0 && qi == hinted)
				continue;
			q = QueueCacheGet(qi);
			spicxt = MemoryContextSwitchTo(cxt);
			t0 = GetCurrentTimestamp();
			nclaimed += StoreClaimJobs(q, want - nclaimed, my_slot->token,
								  worker_name, &jobs[nclaimed], &claim_busy);
			claim_us += (long) (GetCurrentTimestamp() - t0);
			my_slot->claims++;
			MemoryContextSwitchTo(spicxt);
			if (first && nclaimed > 0)
				break;
		}

		/*
		 * Nothing, and jobq.queues changed while we claimed (a queue
		 * created and submitted to meanwhile): once more with a fresh list.
		 */
		if (nclaimed > 0 || refreshed ||
			pg_atomic_fetch_add_u64(&jobq_shared->queues_version, 0) == queues_version_seen)
			break;
	}
	if (nqueues > 0)
		rr_next = (rr_next + 1) % nqueues;

	/* a held queue's jobs become claimable without a commit (its breaker) */
	empty_claim_valid = (nclaimed == 0 && !claim_busy && !QueueCacheAnyHeld());
	empty_claim_seq = seq;
	for (k = 0; k < nqueues && empty_claim_valid; k++)
	{
		if (QueueCacheGet(k)->limited)
			empty_claim_valid = false;
	}

	/* after the claim: a woken executor's first job should not wait for it */
	if (TimestampDifferenceExceeds(recovered_at, GetCurrentTimestamp(),
								   RECOVERY_INTERVAL_MS))
	{
		(void) StoreRecoverLost();
		recovered_at = GetCurrentTimestamp();
	}

	/*
	 * Nothing to claim: when is the next job due (a scheduled job, a retry,
	 * a job just recovered)?  An executor that sleeps after this claim
	 * sleeps until then at most.  Its snapshot is taken after wake_seq was
	 * read, as the claims' were.  It walks the claim index as a claim does,
	 * so it counts as claim time below.
	 */
	if (nclaimed == 0)
	{
		TimestampTz t0 = GetCurrentTimestamp();

		next_due_at = QueueCacheNextDue();
		claim_us += (long) (GetCurrentTimestamp() - t0);
		if (claim_busy)
		{
			TimestampTz soon = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   BUSY_RETRY_MS);

			if (next_due_at == 0 || next_due_at > soon)
				next_due_at = soon;
		}
	}

	/* only the claim statements count: not a queue-list refresh or re-plan */
	if (claim_us > CLAIM_SLOW_US && nclaimed < want)
		claim_pause_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														Min(CLAIM_PAUSE_FACTOR * claim_us / 1000,
															CLAIM_PAUSE_MAX_MS));
	else
		claim_pause_until = 0;
	return nclaimed;
}

/*
 * The batch's transaction could not commit (e.g. a deferred constraint of
 * a handler): everything in it rolled back, the jobs are still ours and
 * running.  Run them again one per transaction; a job whose own commit
 * fails gets that error recorded as its failure.
 */
/*
 * Commit the current transaction; on failure roll it back and return the
 * error, else NULL.  The copy lives in TopMemoryContext (the caller frees
 * it): the context current before the commit was SPI's, gone by then.
 */
static ErrorData *
TryCommit(void)
{
	MemoryContext cxt = TopMemoryContext;
	ErrorData  *volatile edata = NULL;

	PG_TRY();
	{
		EndJobTransaction(true);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	return edata;
}

static void
RunJobsAlone(JobqClaimedJob *jobs, int njobs)
{
	int			i;

	for (i = 0; i < njobs; i++)
	{
		ErrorData  *edata;

		if (shutdown_requested)
		{
			BeginJobTransaction(false);
			for (; i < njobs; i++)
				(void) StoreRelease(jobs[i].id, jobs[i].attempt, 0, NULL);
			EndJobTransaction(true);
			return;
		}
		BeginJobTransaction(false);
		RunJobInTransaction(&jobs[i], false);
		edata = TryCommit();
		if (edata != NULL)
		{
			SettleForget();
			BeginJobTransaction(false);
			(void) StoreFail(jobs[i].id, jobs[i].attempt, edata->message, NULL,
							 NULL, unpack_sql_state(edata->sqlerrcode), edata->detail, NULL);
			EndJobTransaction(true);
			FreeErrorData(edata);
		}
		else
			SettleNow();
	}
}

/*
 * The next claim, made in the batch's transaction after its outcomes, in a
 * subtransaction: should it fail (a lock timeout, a deadlock with a user's
 * transaction holding a queue row), the outcomes still commit and the
 * executor just claims again in a fresh transaction.
 */
static int
ClaimNextInBatch(JobqClaimedJob *next, MemoryContext next_cxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile int nnext = 0;

	MemoryContextReset(next_cxt);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		nnext = ClaimRound(next, BatchSize(), next_cxt, false);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		nnext = 0;
		empty_claim_valid = false;
		MemoryContextReset(next_cxt);
		/* the cached queue list may be what failed: rebuild it */
		queues_refreshed_at = 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return nnext;
}

/*
 * Run a batch of claimed jobs in one transaction (several jobs share one
 * commit: each in its own subtransaction, so a failure touches only its
 * job), stopping early when the batch has taken BATCH_MAX_MS.  Unless
 * stopping, the next batch is claimed in the same transaction, so one
 * commit records this batch's outcomes and makes the next claims durable.
 * Returns how many jobs it ran; *nnext gets the count of next[].
 */
#define BATCH_MAX_MS 20

static int
RunBatch(JobqClaimedJob *jobs, int njobs, JobqClaimedJob *next, int *nnext,
		 MemoryContext next_cxt)
{
	TimestampTz batch_start = GetCurrentTimestamp();
	JobqCompletions completions;
	ErrorData  *edata;
	int			ran = 0;
	int			chain_level;

	*nnext = 0;
	if (completions_cxt == NULL)
		completions_cxt = AllocSetContextCreate(TopMemoryContext, "jobq completions",
												ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(completions_cxt);
	completions.n = 0;
	batch_completions = &completions;
	RunSqlBatchBegin(completions_cxt);

	BeginJobTransaction(false);
	StoreCompletionsBegin();
	chain_level = GetCurrentTransactionNestLevel();
	while (ran < njobs)
	{
		if (shutdown_requested)
		{
			for (; ran < njobs; ran++)
				(void) StoreRelease(jobs[ran].id, jobs[ran].attempt, 0, NULL);
			break;
		}
		if (ran > 0 && TimestampDifferenceExceeds(batch_start, GetCurrentTimestamp(),
												  BATCH_MAX_MS))
			break;
		RunJobInTransaction(&jobs[ran++], true);
	}
	/* commit the chain of the jobs' subtransactions into the batch's */
	{
		MemoryContext cxt = CurrentMemoryContext;

		while (GetCurrentTransactionNestLevel() > chain_level)
			ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
	}
	RunSqlBatchEnd();
	batch_completions = NULL;
	StoreRecordCompleted(&completions);
	empty_claim_valid = false;
	if (ran == njobs && !shutdown_requested && !ClaimPaused())
		*nnext = ClaimNextInBatch(next, next_cxt);

	edata = TryCommit();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (edata != NULL)
	{
		ereport(LOG,
				(errmsg("jobq: a batch of %d job(s) could not commit, running them one by one: %s",
						ran, edata->message)));
		FreeErrorData(edata);
		*nnext = 0;				/* the next claims rolled back too */
		empty_claim_valid = false;
		SettleForget();		/* the jobs run again, alone */
		RunJobsAlone(jobs, ran);
	}
	else
		SettleNow();
	return ran;
}

/*
 * Claim and run until nothing is due.  Returns the number of jobs run.
 * (A DROP EXTENSION meanwhile makes a claim fail; the main loop's error
 * handling then finds the extension gone and leaves cleanly.)
 */
static int
ProcessJobs(bool check_extension)
{
	static JobqClaimedJob buffers[2][MAX_BATCH];
	static MemoryContext cxts[2] = {NULL, NULL};
	int			cur = 0;
	int			njobs;
	int			total = 0;

	if (cxts[0] == NULL)
	{
		cxts[0] = AllocSetContextCreate(TopMemoryContext, "jobq batch A",
										ALLOCSET_DEFAULT_SIZES);
		cxts[1] = AllocSetContextCreate(TopMemoryContext, "jobq batch B",
										ALLOCSET_DEFAULT_SIZES);
	}

	/* stopping: claiming now would only release the jobs again */
	if (shutdown_requested)
		return 0;
	/* breaker transitions made by other processes meanwhile */
	SettleNow();
	burst_needs_recheck = false;
	holding_jobs = true;
	BeginJobTransaction(check_extension);
	MemoryContextReset(cxts[cur]);
	njobs = ClaimRound(buffers[cur], BatchSize(), cxts[cur], true);
	EndJobTransaction(true);

	while (njobs > 0)
	{
		int			nnext;
		int			ran;

		if (njobs == MAX_BATCH)
			(void) JobqWakeIdleExecutor(my_slot, 0);	/* more work */
		MemoryContextSwitchTo(cxts[cur]);
		ran = RunBatch(buffers[cur], njobs, buffers[1 - cur], &nnext, cxts[1 - cur]);
		total += ran;
		if (ran < njobs)
		{
			/* stopped early: the rest stay in this buffer */
			memmove(buffers[cur], buffers[cur] + ran,
					sizeof(JobqClaimedJob) * (njobs - ran));
			njobs -= ran;
			continue;
		}
		cur = 1 - cur;
		njobs = nnext;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* between transactions: the claimed next batch waits for them */
		if (JobqVacuumDue())
			JobqVacuumJobsActive();
		if (JobqDutiesDue())
			JobqRunDuties();
	}
	holding_jobs = false;
	return total;
}

/* Sleep until the next scheduled job is due, at most a poll interval. */
static long
IdleTimeoutMs(void)
{
	long		timeout = jobq_poll_interval_ms;

	if (next_due_at != 0)
	{
		long		until = (long) ((next_due_at - GetCurrentTimestamp()) / 1000) + 1;

		timeout = Max(Min(timeout, until), 1);
	}
	/* batches that may be final, to judge (duties.c) */
	{
		int			batches_in = BatchChecksDueInMs();

		if (batches_in >= 0)
			timeout = Max(Min(timeout, batches_in), 1);
	}
	return timeout;
}

static void
ExecutorLoop(uint32 activations) pg_attribute_noreturn();

static void
ExecutorLoop(uint32 activations)
{
	MemoryContext loop_cxt = AllocSetContextCreate(TopMemoryContext,
												   "jobq executor loop",
												   ALLOCSET_DEFAULT_SIZES);
	bool		busy = false;
	bool		must_look = true;	/* at start, and after a timeout */
	TimestampTz looked_at = 0;		/* the last claim round's start */

	loop_activations = activations;

	for (;;)
	{
		int			handled = 0;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);

		CHECK_FOR_INTERRUPTS();
		if (shutdown_requested)
			ExitCleanly();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * Go idle before looking for work: a submit committing after this
		 * point finds us idle and sets our latch, one committing before it is
		 * seen by the claim.  Either way no wake-up is lost.
		 */
		SetSlotState(JOBQ_STATE_IDLE);

		/* external workers' claims count too, and wake us for this */
		if (JobqVacuumDue())
			JobqVacuumJobsActive();
		if (JobqDutiesDue())
			JobqRunDuties();

		/* claims are slow just now (see claim_pause_until): let jobs gather */
		if (ClaimPaused())
		{
			long		ms = (long) ((claim_pause_until - GetCurrentTimestamp()) / 1000) + 1;

			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Max(ms, 1), PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
			if (shutdown_requested)
				ExitCleanly();
		}

		/*
		 * A wake-up that cannot have brought anything goes back to sleep,
		 * unless the poll interval has passed since we last looked (other
		 * latch sets must not postpone the poll indefinitely).
		 */
		if (!must_look && !busy && NothingNewSinceEmptyClaim() &&
			!TimestampDifferenceExceeds(looked_at, GetCurrentTimestamp(),
										jobq_poll_interval_ms))
			goto sleep;
		looked_at = GetCurrentTimestamp();

		PG_TRY();
		{
			/* DROP EXTENSION: checked between bursts, not per round */
			handled = ProcessJobs(!busy);
		}
		PG_CATCH();
		{
			/*
			 * Not a job's error (those never leave run_sql.c): a DROP
			 * EXTENSION under our feet is a clean exit; anything else exits
			 * 1, the launcher backs off, and the jobs we held are recovered
			 * by the token check.
			 */
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			if (!ExtensionInstalled())
				LeaveDatabase(activations);
			proc_exit(1);
		}
		PG_END_TRY();
		busy = handled > 0;
		if (busy && !NothingNewSinceEmptyClaim())
			continue;
		busy = false;

sleep:
		{
			long		timeout = IdleTimeoutMs();
			long		poll_left = jobq_poll_interval_ms -
				(long) ((GetCurrentTimestamp() - looked_at) / 1000);
			int			rc;

			/* the poll interval counts from the last look, not this wait */
			timeout = Max(Min(timeout, poll_left), 1);
			rc = WaitLatch(MyLatch,
						   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   timeout, PG_WAIT_EXTENSION);

			ResetLatch(MyLatch);
			must_look = (rc & WL_TIMEOUT) != 0;
		}
	}
}

void
jobq_executor_main(Datum main_arg)
{
	int			idx = DatumGetInt32(main_arg);
	uint32		generation;
	Oid			dboid;
	uint32		activations;

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, ExecutorSigterm);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	my_slot = &jobq_shared->slots[idx];
	if (my_slot->kind == JOBQ_WORKER_UNUSED ||
		my_slot->generation != generation || my_slot->pid != 0)
	{
		/* our reservation was reclaimed by a restarted launcher */
		LWLockRelease(jobq_shared->lock);
		proc_exit(0);
	}
	{
		JobqDatabase *db = JobqFindDatabase(my_slot->dboid, false);

		/* DROP/RENAME DATABASE in progress (ddl_guard.c): stay away */
		if (db != NULL && db->state == JOBQ_DB_BLOCKED)
		{
			my_slot->kind = JOBQ_WORKER_UNUSED;
			my_slot->generation++;
			LWLockRelease(jobq_shared->lock);
			proc_exit(0);
		}
	}
	my_slot->pid = MyProcPid;
	my_slot->latch = &MyProc->procLatch;
	my_slot->ended_job_id = 0;
	my_slot->token = JobqNewToken();
	dboid = my_slot->dboid;
	LWLockRelease(jobq_shared->lock);
	my_slot_index = idx;
	before_shmem_exit(ExecutorDetach, Int32GetDatum(idx));

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("jobq executor");

	activations = JobqDatabaseActivations(MyDatabaseId);
	if (!ExtensionInstalled())
		LeaveDatabase(activations);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	extension_oid = get_extension_oid(JOBQ_EXTENSION_NAME, true);
	CommitTransactionCommand();

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	{
		JobqDatabase *db = JobqFindDatabase(MyDatabaseId, false);

		if (db != NULL && db->state != JOBQ_DB_BLOCKED)
			db->state = JOBQ_DB_ACTIVE;
	}
	my_slot->kind = JOBQ_WORKER_EXECUTOR;
	LWLockRelease(jobq_shared->lock);
	JobqWakeLauncher();

	snprintf(worker_name, sizeof(worker_name), "jobq executor %d", MyProcPid);
	job_cxt = AllocSetContextCreate(TopMemoryContext, "jobq job",
									ALLOCSET_DEFAULT_SIZES);
	RunSqlInit(my_slot, &shutdown_requested, &shutdown_requested_at);

	/*
	 * Settings a DBA may have set globally that would break the executor
	 * (autovacuum does the same): jobq arms its own per-job timeout.
	 */
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_SESSION);

	activations = JobqDatabaseActivations(MyDatabaseId);
	ExecutorLoop(activations);
}
