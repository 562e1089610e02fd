/*-------------------------------------------------------------------------
 *
 * http_worker.c
 *	  The HTTP worker: one background worker per database with jobq (kind
 *	  "http" in jobq.workers), started by the launcher next to the
 *	  executors.  It runs the jobs of http queues, many at a time
 *	  (jobq.http_max_inflight), through libcurl's multi interface driven by
 *	  its own wait loop:
 *
 *	  1. claim (a short transaction, committed: the leases are recorded,
 *		 under this process's token, before any byte is sent);
 *	  2. transfers run with no transaction and no snapshot open; the wait
 *		 is a WaitEventSet of the latch, postmaster death and libcurl's
 *		 sockets, with libcurl's timer as its timeout, so SIGTERM, SIGHUP
 *		 and jobq.cancel are answered while requests are in flight;
 *	  3. the outcomes of finished transfers are recorded in a fresh short
 *		 transaction (http_store.c).
 *
 *	  Why a process of its own rather than the executors: an executor's
 *	  loop is built around SQL handlers inside transactions (batches,
 *	  subtransactions, statement_timeout), while HTTP jobs want the
 *	  opposite (nothing open while waiting, hundreds waiting at once); one
 *	  process multiplexes them, and the executors stay free for SQL jobs.
 *
 *	  Its token is in its slot like an executor's, so the jobs it holds are
 *	  recovered (worker_lost) when it is gone; at SIGTERM it lets transfers
 *	  run for jobq.shutdown_grace, then releases the rest (pending again,
 *	  no attempt used).
 *
 *	  libcurl's socket and timer callbacks only record (fd interest, next
 *	  deadline); nothing raises an error inside libcurl.  Every easy handle
 *	  and the multi handle are freed on every exit (HttpCleanup is a
 *	  before_shmem_exit callback too).
 *
 * IDENTIFICATION
 *	  src/http_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "http.h"
#include "jobq.h"

/* how often in-flight jobs are checked for a cancel nobody told us about */
#define CANCEL_SAFETY_CHECK_MS 5000

static volatile sig_atomic_t shutdown_requested = false;
static TimestampTz shutdown_requested_at = 0;
static bool clean_exit = false;
static JobqWorkerSlot *my_slot = NULL;
static char worker_name[64];

static CURLM *multi = NULL;
static JobqHttpJob *inflight = NULL;	/* transfers added to multi */
static int	ninflight = 0;
static JobqHttpJob *done = NULL;	/* outcomes to record */
static MemoryContext jobs_cxt = NULL;

/* libcurl's socket interest (SocketCallback) and timer (TimerCallback) */
typedef struct SockInterest
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN/OUT/INOUT */
} SockInterest;

static SockInterest *socks = NULL;
static int	nsocks = 0;
static int	maxsocks = 0;
static bool timer_set = false;
static TimestampTz timer_at = 0;

/* A finished job's outcome, kept until recorded. */
typedef struct DoneJob
{
	JobqHttpOutcome outcome;
	bool		release;
} DoneJob;

static void
HttpSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (!shutdown_requested)
		shutdown_requested_at = GetCurrentTimestamp();
	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static int
SocketCallback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsocks; i++)
		if (socks[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsocks)
			socks[i] = socks[--nsocks];
		return 0;
	}
	if (i == nsocks)
	{
		if (nsocks == maxsocks)
			return -1;			/* libcurl fails that transfer */
		nsocks++;
	}
	socks[i].fd = fd;
	socks[i].what = what;
	return 0;
}

static int
TimerCallback(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_set = false;
	else
	{
		timer_set = true;
		timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}
	return 0;
}

/* Free every libcurl object: before_shmem_exit, and on the error path. */
static void
HttpCleanup(int code, Datum arg)
{
	JobqHttpJob *j;

	for (j = inflight; j != NULL; j = j->next)
	{
		if (multi != NULL && j->easy != NULL)
			curl_multi_remove_handle(multi, j->easy);
		JobqHttpFreeTransfer(j);
	}
	for (j = done; j != NULL; j = j->next)
		JobqHttpFreeTransfer(j);
	inflight = done = NULL;
	ninflight = 0;
	if (multi != NULL)
		curl_multi_cleanup(multi);
	multi = NULL;
}

/* before_shmem_exit: give the slot back (JobqReleaseSlot). */
static void
HttpDetach(int code, Datum arg)
{
	JobqReleaseSlot(&jobq_shared->slots[DatumGetInt32(arg)],
					clean_exit || shutdown_requested);
}

static void
ExitCleanly(void)
{
	clean_exit = true;
	proc_exit(0);
}

static void
SetState(JobqWorkerState state)
{
	if (my_slot->state != state)
	{
		my_slot->state = state;
		my_slot->since = GetCurrentTimestamp();
	}
}

static void
BeginTx(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
CommitTx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

static void
DropJob(JobqHttpJob *job)
{
	MemoryContext cxt = GetMemoryChunkContext(job);

	JobqHttpFreeTransfer(job);
	MemoryContextDelete(cxt);
}

/* Unlink job from the in-flight list and from the multi handle. */
static void
RemoveInflight(JobqHttpJob *job)
{
	JobqHttpJob **p;

	for (p = &inflight; *p != NULL; p = &(*p)->next)
		if (*p == job)
		{
			*p = job->next;
			ninflight--;
			break;
		}
	job->next = NULL;
	if (job->easy != NULL)
		curl_multi_remove_handle(multi, job->easy);
}

static void
PushDone(JobqHttpJob *job, DoneJob *d)
{
	/* the outcome lives in the job's context, the struct after it */
	job->next = done;
	done = job;
	(void) d;
}

static DoneJob *
NewDone(JobqHttpJob *job)
{
	return MemoryContextAllocZero(GetMemoryChunkContext(job), sizeof(DoneJob));
}

/* DoneJob of a job on the done list: kept in a side table by job pointer. */
typedef struct DoneEntry
{
	JobqHttpJob *job;
	DoneJob    *d;
} DoneEntry;
static DoneEntry *done_tab = NULL;
static int	ndone = 0;
static int	maxdone = 0;

static void
AddDone(JobqHttpJob *job, DoneJob *d)
{
	if (ndone == maxdone)
	{
		maxdone = Max(maxdone * 2, 64);
		done_tab = done_tab == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(DoneEntry) * maxdone)
			: repalloc(done_tab, sizeof(DoneEntry) * maxdone);
	}
	done_tab[ndone].job = job;
	done_tab[ndone].d = d;
	ndone++;
	PushDone(job, d);
}

/* Fail job before sending anything (refused URL, out of memory). */
static void
FailUnsent(JobqHttpJob *job, char *error)
{
	DoneJob    *d = NewDone(job);

	d->outcome.verdict = JOBQ_HTTP_FAIL;
	d->outcome.error = error;
	AddDone(job, d);
}

/* Start (or restart, for a redirect) job's transfer. */
static void
StartJob(JobqHttpJob *job)
{
	MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(job));
	char	   *error = NULL;

	/* a job runs with its owner's rights: lost since submit, not sent */
	if (!job->owner_may)
		FailUnsent(job, psprintf("http refused: the job's owner is no longer a member of jobq_http or jobq_admin"));
	else if (!JobqHttpStartTransfer(job, &error))
		FailUnsent(job, error);
	else if (curl_multi_add_handle(multi, job->easy) != CURLM_OK)
	{
		JobqHttpFreeTransfer(job);
		FailUnsent(job, pstrdup("http connection error: could not add the transfer"));
	}
	else
	{
		job->next = inflight;
		inflight = job;
		ninflight++;
	}
	MemoryContextSwitchTo(old);
}

/* Take finished transfers from libcurl. */
static bool
DrainFinished(void)
{
	CURLMsg    *msg;
	int			left;
	bool		any = false;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		JobqHttpJob *job = NULL;
		DoneJob    *d;
		MemoryContext old;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &job);
		if (job == NULL)
			continue;
		any = true;
		{
			CURLcode	rc = msg->data.result;

			RemoveInflight(job);
			old = MemoryContextSwitchTo(GetMemoryChunkContext(job));
			d = NewDone(job);
			JobqHttpOutcomeOf(job, rc, &d->outcome);
			MemoryContextSwitchTo(old);
		}
		if (d->outcome.verdict == JOBQ_HTTP_REDIRECT)
		{
			StartJob(job);		/* the next hop, checked like the first */
			continue;
		}
		JobqHttpFreeTransfer(job);
		AddDone(job, d);
	}
	return any;
}

/*
 * Record the outcomes of finished jobs, each in a subtransaction of one
 * transaction (an error recording one job is logged and leaves the others
 * recorded; that job stays running under our token until recovery).
 */
static void
RecordDone(void)
{
	int			i;

	if (ndone == 0)
		return;
	BeginTx();
	for (i = 0; i < ndone; i++)
	{
		JobqHttpJob *job = done_tab[i].job;
		DoneJob    *d = done_tab[i].d;
		MemoryContext oldcxt = CurrentMemoryContext;
		ResourceOwner oldowner = CurrentResourceOwner;

		BeginInternalSubTransaction(NULL);
		PG_TRY();
		{
			if (d->release)
				JobqHttpStoreRelease(job);
			else if (d->outcome.verdict == JOBQ_HTTP_COMPLETE)
				JobqHttpStoreComplete(job, d->outcome.result);
			else
				JobqHttpStoreFail(job, d->outcome.error, d->outcome.http_status,
								  d->outcome.has_retry_after,
								  d->outcome.retry_after_ms);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(oldcxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;
			ereport(WARNING,
					(errmsg("jobq: could not record the outcome of HTTP job " INT64_FORMAT ": %s",
							job->id, edata->message)));
			FreeErrorData(edata);
		}
		PG_END_TRY();
		my_slot->jobs_done++;
	}
	CommitTx();
	for (i = 0; i < ndone; i++)
		DropJob(done_tab[i].job);
	ndone = 0;
	done = NULL;
}

/* Abort the transfers of in-flight jobs cancelled since they started. */
static void
AbortCancelled(void)
{
	JobqHttpJob *j;
	JobqHttpJob *next;
	JobqHttpJob *gone = NULL;

	if (ninflight == 0)
		return;
	BeginTx();
	for (j = inflight; j != NULL; j = j->next)
		j->aborted = !JobqHttpStoreStillRunning(j);
	CommitTx();
	for (j = inflight; j != NULL; j = next)
	{
		next = j->next;
		if (j->aborted)
		{
			RemoveInflight(j);
			j->next = gone;
			gone = j;
		}
	}
	for (j = gone; j != NULL; j = next)
	{
		next = j->next;
		elog(DEBUG1, "jobq: HTTP job " INT64_FORMAT " cancelled: transfer aborted", j->id);
		DropJob(j);
	}
}

/* Shutdown grace over: release every job still in flight. */
static void
ReleaseInflight(void)
{
	while (inflight != NULL)
	{
		JobqHttpJob *j = inflight;
		DoneJob    *d;

		RemoveInflight(j);
		JobqHttpFreeTransfer(j);
		d = NewDone(j);
		d->release = true;
		AddDone(j, d);
	}
	RecordDone();
}

static void
Claim(TimestampTz *next_due)
{
	int			want = jobq_http_max_inflight - ninflight;
	int			n;
	JobqHttpJob *jobs;
	JobqHttpJob *next;

	*next_due = 0;
	if (want <= 0)
		return;
	SetState(JOBQ_STATE_CLAIMING);
	BeginTx();
	jobs = JobqHttpStoreClaim(jobs_cxt, want, my_slot->token, worker_name, &n,
							  next_due);
	CommitTx();
	my_slot->claims++;
	for (; jobs != NULL; jobs = next)
	{
		next = jobs->next;
		jobs->next = NULL;
		StartJob(jobs);
	}
}

/* Wait for the latch, a socket or libcurl's timer; then drive libcurl. */
static bool
WaitAndDrive(long timeout_ms)
{
	WaitEventSet *set;
	WaitEvent  *events;
	int			n;
	int			i;
	int			running;
	bool		latch = false;

	set = CreateWaitEventSet(CurrentMemoryContext, nsocks + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nsocks; i++)
	{
		uint32		ev = 0;

		if (socks[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (socks[i].what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(set, ev, socks[i].fd, NULL, NULL);
	}
	events = palloc(sizeof(WaitEvent) * (nsocks + 2));
	n = WaitEventSetWait(set, timeout_ms, events, nsocks + 2, PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch = true;
		}
		else if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			flags = 0;

			if (events[i].events & WL_SOCKET_READABLE)
				flags |= CURL_CSELECT_IN;
			if (events[i].events & WL_SOCKET_WRITEABLE)
				flags |= CURL_CSELECT_OUT;
			curl_multi_socket_action(multi, events[i].fd, flags, &running);
		}
	}
	FreeWaitEventSet(set);
	pfree(events);
	if (timer_set && GetCurrentTimestamp() >= timer_at)
	{
		timer_set = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	return latch;
}

static long
MsUntil(TimestampTz t, TimestampTz now)
{
	if (t <= now)
		return 0;
	return (long) Min((t - now + 999) / 1000, (int64) INT_MAX);
}

static void
HttpLoop(void) pg_attribute_noreturn();

static void
HttpLoop(void)
{
	MemoryContext loop_cxt = AllocSetContextCreate(TopMemoryContext, "jobq http loop",
												   ALLOCSET_DEFAULT_SIZES);
	bool		look = true;	/* at start: whatever is pending */
	TimestampTz look_at = 0;	/* the next poll */
	TimestampTz next_due = 0;
	TimestampTz cancel_check_at = 0;

	for (;;)
	{
		TimestampTz now;
		long		timeout;
		bool		latch;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		now = GetCurrentTimestamp();

		if (shutdown_requested)
		{
			if (ninflight == 0)
			{
				RecordDone();
				ExitCleanly();
			}
			if (TimestampDifferenceExceeds(shutdown_requested_at, now,
										   jobq_shutdown_grace_ms))
			{
				RecordDone();
				ReleaseInflight();
				ExitCleanly();
			}
		}

		/* jobq.cancel() posted to us, or the slow safety check */
		if (pg_atomic_exchange_u64(&my_slot->cancel_job_id, 0) != 0 ||
			(ninflight > 0 && now >= cancel_check_at))
		{
			AbortCancelled();
			cancel_check_at = TimestampTzPlusMilliseconds(now, CANCEL_SAFETY_CHECK_MS);
		}

		if (!shutdown_requested &&
			(look || now >= look_at || (next_due != 0 && now >= next_due)) &&
			ninflight < jobq_http_max_inflight)
		{
			Claim(&next_due);
			look = false;
			look_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  jobq_poll_interval_ms);
		}
		RecordDone();
		SetState(ninflight > 0 ? JOBQ_STATE_RUNNING : JOBQ_STATE_IDLE);

		now = GetCurrentTimestamp();
		timeout = MsUntil(look_at, now);
		if (next_due != 0)
			timeout = Min(timeout, MsUntil(next_due, now));
		if (timer_set)
			timeout = Min(timeout, MsUntil(timer_at, now));
		if (ninflight > 0)
			timeout = Min(timeout, MsUntil(cancel_check_at, now));
		if (shutdown_requested)
			timeout = Min(timeout, MsUntil(TimestampTzPlusMilliseconds(shutdown_requested_at,
																	  jobq_shutdown_grace_ms), now));
		latch = WaitAndDrive(timeout);

		/* capacity came free, or a submit woke us: look again */
		if (DrainFinished() || latch)
			look = true;
	}
}

void
jobq_http_main(Datum main_arg)
{
	int			idx = DatumGetInt32(main_arg);
	uint32		generation;
	Oid			dboid;
	bool		installed;

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, HttpSigterm);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(jobq_shared->lock, LW_EXCLUSIVE);
	my_slot = &jobq_shared->slots[idx];
	if (my_slot->kind != JOBQ_WORKER_HTTP ||
		my_slot->generation != generation || my_slot->pid != 0)
	{
		LWLockRelease(jobq_shared->lock);
		proc_exit(0);
	}
	my_slot->pid = MyProcPid;
	my_slot->latch = &MyProc->procLatch;
	my_slot->ended_job_id = 0;
	my_slot->token = JobqNewToken();
	dboid = my_slot->dboid;
	LWLockRelease(jobq_shared->lock);
	before_shmem_exit(HttpDetach, Int32GetDatum(idx));
	before_shmem_exit(HttpCleanup, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("jobq http");
	snprintf(worker_name, sizeof(worker_name), "jobq http %d", MyProcPid);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid(JOBQ_EXTENSION_NAME, true));
	CommitTransactionCommand();
	if (!installed)
		ExitCleanly();			/* the executors tell the launcher */

	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_SESSION);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "jobq: curl_global_init failed");
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "jobq: curl_multi_init failed");
	/* the setting's maximum: it may be raised by a reload */
	maxsocks = JOBQ_HTTP_MAX_INFLIGHT_LIMIT * 2 + 16;
	socks = MemoryContextAlloc(TopMemoryContext, sizeof(SockInterest) * maxsocks);
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, SocketCallback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, TimerCallback);
	jobs_cxt = AllocSetContextCreate(TopMemoryContext, "jobq http jobs",
									 ALLOCSET_DEFAULT_SIZES);
	SetState(JOBQ_STATE_IDLE);
	JobqWakeLauncher();

	/*
	 * An error outside a job's outcome (the database, not the request):
	 * free libcurl's objects (HttpCleanup, at exit) and exit 1; the launcher
	 * backs off and the jobs we held are recovered by the token check.
	 */
	HttpLoop();
}
