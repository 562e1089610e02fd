/*-------------------------------------------------------------------------
 *
 * http_worker.c
 *	  The HTTP worker: one background worker per database with jobq (kind
 *	  "http" in jobq.workers), started by the launcher next to the
 *	  executors.  It runs the jobs of http queues, many at a time
 *	  (jobq.http_max_inflight), through libcurl's multi interface driven by
 *	  its own wait loop:
 *
 *	  1. one short transaction per turn of the loop: the outcomes of the
 *		 transfers that finished since the last turn (http_store.c), then a
 *		 claim for the places free, committed before any byte of the
 *		 claimed jobs is sent (the leases are recorded, under this
 *		 process's token, first);
 *	  2. transfers run with no transaction and no snapshot open; the wait
 *		 is a WaitEventSet of the latch, postmaster death and libcurl's
 *		 sockets, with libcurl's timer as its timeout, so SIGTERM, SIGHUP
 *		 and jobq.cancel are answered while requests are in flight.
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
 *	  libcurl's socket and timer callbacks only record (fd interest in
 *	  the sockets' epoll set or table, next deadline); nothing raises an
 *	  error inside libcurl.  Every easy handle
 *	  and the multi handle are freed on every exit (HttpCleanup is a
 *	  before_shmem_exit callback too).
 *
 * IDENTIFICATION
 *	  src/http_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef HAVE_SYS_EPOLL_H
#include <sys/epoll.h>
#endif

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

/*
 * libcurl's sockets, as SocketCallback is told of them.  With epoll they
 * are kept in an epoll set of their own (curl_epfd), whose descriptor is
 * one event of the loop's WaitEventSet (wait_set, built once): a wait then
 * costs the same whatever the number of connections, and a connection
 * handed from one transfer to the next costs two epoll_ctl calls.  Without
 * epoll, the interest is recorded in socks and the WaitEventSet is built
 * for each wait.
 */
#ifdef HAVE_SYS_EPOLL_H
#define CURL_EPOLL_BATCH 64
static int	curl_epfd = -1;
static WaitEventSet *wait_set = NULL;
#else
typedef struct SockInterest
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN/OUT/INOUT */
} SockInterest;

static SockInterest *socks = NULL;
static int	nsocks = 0;
static int	maxsocks = 0;
#endif

/* libcurl's timer (TimerCallback) */
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

#ifdef HAVE_SYS_EPOLL_H
static int
SocketCallback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		/* a socket closed before this left the set by itself */
		(void) epoll_ctl(curl_epfd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	ev.data.fd = fd;
	/* new to the set, or a descriptor number reused after a close */
	if (epoll_ctl(curl_epfd, EPOLL_CTL_MOD, fd, &ev) != 0 &&
		(errno != ENOENT || epoll_ctl(curl_epfd, EPOLL_CTL_ADD, fd, &ev) != 0))
		return -1;				/* libcurl fails that transfer */
	return 0;
}
#else
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
#endif

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
#ifdef HAVE_SYS_EPOLL_H
	if (curl_epfd >= 0)
		close(curl_epfd);
	curl_epfd = -1;
#endif
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
 * Record a finished job's outcome in a subtransaction: an error recording
 * it is logged and leaves the other jobs' outcomes recorded; that job
 * stays running under our token until recovery.
 */
static void
RecordOne(JobqHttpJob *job, DoneJob *d)
{
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

/*
 * Record the outcomes of finished jobs inside the caller's transaction.
 * The jobs are dropped by DropRecorded once that transaction has committed.
 */
static void
RecordOutcomes(void)
{
	int			i;

	for (i = 0; i < ndone; i++)
		RecordOne(done_tab[i].job, done_tab[i].d);
}

/* After the commit of RecordOutcomes' transaction: free the recorded jobs. */
static void
DropRecorded(void)
{
	int			i;

	for (i = 0; i < ndone; i++)
		DropJob(done_tab[i].job);
	ndone = 0;
	done = NULL;
}

/* Record the outcomes of finished jobs in a transaction of their own. */
static void
RecordDone(void)
{
	if (ndone == 0)
		return;
	BeginTx();
	RecordOutcomes();
	CommitTx();
	DropRecorded();
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

/*
 * The claim of RecordAndClaim, in a subtransaction: an error rolls back the
 * claim only, and is returned (copied into TopMemoryContext) instead of
 * raised, so that the outcomes recorded before it still commit.
 */
static JobqHttpJob *
ClaimKeepingOutcomes(int want, int *n, TimestampTz *next_due, ErrorData **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	JobqHttpJob *volatile jobs = NULL;

	*n = 0;
	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		jobs = JobqHttpStoreClaim(jobs_cxt, want, my_slot->token, worker_name,
								  n, next_due);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(TopMemoryContext);
		*error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		/* what the claim had built is not ours: its rows rolled back */
		jobs = NULL;
		*n = 0;
	}
	PG_END_TRY();
	return jobs;
}

/*
 * One transaction for the loop's writes: the outcomes of finished jobs,
 * then, when claim is set, a claim of as many jobs as there is room for
 * (*next_due set as JobqHttpStoreClaim sets it).  The claimed jobs'
 * transfers start only after the commit, so no byte is sent for a lease
 * that is not recorded.  Outcomes go first so that a concurrency-limited
 * queue's claim counts the places they freed.  A claim that fails rolls
 * back alone: the outcomes commit, then its error ends the worker, as a
 * claim error always did (the worker's running jobs are recovered).
 */
static void
RecordAndClaim(bool claim, TimestampTz *next_due)
{
	int			want = claim ? jobq_http_max_inflight - ninflight : 0;
	int			n = 0;
	JobqHttpJob *jobs = NULL;
	JobqHttpJob *next;
	ErrorData  *claim_error = NULL;

	if (claim)
		*next_due = 0;
	if (ndone == 0 && want <= 0)
		return;
	if (want > 0)
		SetState(JOBQ_STATE_CLAIMING);
	BeginTx();
	RecordOutcomes();
	if (want > 0)
		jobs = ClaimKeepingOutcomes(want, &n, next_due, &claim_error);
	CommitTx();
	DropRecorded();
	if (claim_error != NULL)
		ReThrowError(claim_error);
	if (want > 0)
		my_slot->claims++;
	for (; jobs != NULL; jobs = next)
	{
		next = jobs->next;
		jobs->next = NULL;
		StartJob(jobs);
	}
}

/* Wait for the latch, a socket or libcurl's timer; then drive libcurl. */
#ifdef HAVE_SYS_EPOLL_H
static bool
WaitAndDrive(long timeout_ms)
{
	WaitEvent	events[3];
	int			n;
	int			i;
	int			running;
	bool		latch = false;
	bool		sockets = false;

	n = WaitEventSetWait(wait_set, timeout_ms, events, lengthof(events),
						 PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch = true;
		}
		else if (events[i].events & WL_SOCKET_READABLE)
			sockets = true;
	}
	if (sockets)
	{
		struct epoll_event ready[CURL_EPOLL_BATCH];
		int			nready;

		/* level-triggered: what is left of a larger batch is seen next wait */
		nready = epoll_wait(curl_epfd, ready, lengthof(ready), 0);
		for (i = 0; i < nready; i++)
		{
			int			flags = 0;

			if (ready[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				flags |= CURL_CSELECT_IN;
			if (ready[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (ready[i].events & EPOLLERR)
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, ready[i].data.fd, flags, &running);
		}
	}
	if (timer_set && GetCurrentTimestamp() >= timer_at)
	{
		timer_set = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	return latch;
}
#else
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
#endif

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
			RecordAndClaim(true, &next_due);
			look = false;
			look_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  jobq_poll_interval_ms);
		}
		else
			RecordAndClaim(false, &next_due);
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
#ifdef HAVE_SYS_EPOLL_H
	curl_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (curl_epfd < 0)
		elog(ERROR, "jobq: epoll_create1 failed: %m");
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, curl_epfd, NULL, NULL);
#else
	/* the setting's maximum: it may be raised by a reload */
	maxsocks = JOBQ_HTTP_MAX_INFLIGHT_LIMIT * 2 + 16;
	socks = MemoryContextAlloc(TopMemoryContext, sizeof(SockInterest) * maxsocks);
#endif
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
