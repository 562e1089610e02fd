/*-------------------------------------------------------------------------
 *
 * run_sql.c
 *	  Run one SQL handler call: as the job's owner, with a safe search_path,
 *	  inside a subtransaction, under a timer armed for the attempt's timeout,
 *	  turning any error into data instead of killing the executor.
 *
 * The caller has a transaction open with an active snapshot.  On success the
 * job's completion is recorded through the job store inside the same
 * subtransaction (store_complete.c), so the handler's writes and the
 * completion commit together or not at all; on error the subtransaction is
 * rolled back, so a failed attempt leaves no writes behind (the caller then
 * records the failure in the same outer transaction).
 *
 * Why a timer and not just the statement_timeout setting: the timer is armed
 * by the client protocol path (start_xact_command), which SPI and direct
 * function calls never go through.  We arm STATEMENT_TIMEOUT ourselves, so
 * the error is the ordinary 57014 "canceling statement due to statement
 * timeout".
 *
 * Cancellation and the shutdown grace use a second, periodic timer (the
 * "tick", every 100 ms while a handler runs).  Its handler runs in signal
 * context: it only compares flags and raises a query cancel, which the
 * handler's next CHECK_FOR_INTERRUPTS() turns into an ERROR we catch.  A job
 * id posted by jobq.cancel() is compared with the running job's id, so a
 * request that arrives late never interrupts the next job.
 *
 * A limit a handler cannot escape: once interrupted (timeout, cancel or
 * shutdown grace), a handler that catches the query cancel (PL/pgSQL
 * EXCEPTION WHEN query_canceled) gets another at every tick; if it returns
 * normally all the same, its job is not completed but failed with the
 * interrupt's class (released, for the shutdown grace), its writes rolled
 * back.  One that is still running JOBQ_ESCALATE_MS after the first
 * interrupt ends its executor: the tick notes the job in the executor's
 * slot and raises a process termination, which no handler can catch (a
 * FATAL error).  The executor's transaction rolls back, with the other jobs
 * of its batch; lost-job recovery (store_outcome.c) records the noted job
 * with its interrupt's class and releases the others without using an attempt, and
 * the launcher starts a new executor.
 *
 * Role switch: SetUserIdAndSecContext inside the subtransaction, so an error
 * restores the executor's identity by itself (AbortSubTransaction restores
 * the user id saved at subtransaction start); the role is checked at run time
 * because it may have been dropped, lost EXECUTE, or become superuser since
 * the job was submitted.  The handler runs as a security-restricted
 * operation and its settings are undone when it returns: the executor is
 * one session running many owners' jobs and committing them as superuser,
 * so nothing a job leaves behind may run later with other rights (see
 * docs/workers.md, "What a handler cannot do").
 *
 * IDENTIFICATION
 *	  src/run_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "run_sql.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "libpq/be-fsstubs.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#define TICK_MS 100

/*
 * search_path for handlers: builtins cannot be shadowed; the owner's schema
 * and public follow; pg_temp last (named, so that it is not searched first).
 */
#define JOBQ_HANDLER_SEARCH_PATH "pg_catalog, \"$user\", public, pg_temp"

static TimeoutId tick_timeout = MAX_TIMEOUTS;

/* Read by the tick in signal context. */
static volatile int64 running_job_id = 0;
static volatile int32 running_attempt = 0;
static volatile TimestampTz running_deadline = 0;	/* 0: no timeout */
static volatile TimestampTz interrupted_at = 0;
static volatile sig_atomic_t interrupt_reason = JOBQ_INTERRUPT_NONE;
static volatile sig_atomic_t *shutdown_flag = NULL;
static volatile TimestampTz *shutdown_at = NULL;
static JobqWorkerSlot *tick_slot = NULL;

bool
RunSqlCurrentJob(int64 *job_id, int32 *attempt)
{
	*job_id = running_job_id;
	*attempt = running_attempt;
	return *job_id != 0 && tick_slot != NULL;
}

void
RunSqlNoteProgress(int64 job_id, double progress, const char *note)
{
	tick_slot->progress_seq++;	/* odd: changing */
	pg_write_barrier();
	tick_slot->progress_job_id = job_id;
	tick_slot->progress = progress;
	strlcpy(tick_slot->progress_note, note != NULL ? note : "",
			sizeof(tick_slot->progress_note));
	pg_write_barrier();
	tick_slot->progress_seq++;
}

/* The owner of the previous job this executor ran (see ForgetSessionState). */
static Oid	previous_owner = InvalidOid;

/*
 * Signal context: decide whether the running handler must stop.
 */
static void
TickHandler(void)
{
	int64		job_id = running_job_id;
	TimestampTz now;

	if (job_id == 0)
		return;
	now = GetCurrentTimestamp();

	if (interrupt_reason == JOBQ_INTERRUPT_NONE)
	{
		if (tick_slot != NULL &&
			(int64) pg_atomic_read_u64(&tick_slot->cancel_job_id) == job_id)
			interrupt_reason = JOBQ_INTERRUPT_CANCEL;
		else if (shutdown_flag != NULL && *shutdown_flag &&
				 now >= TimestampTzPlusMilliseconds(*shutdown_at, jobq_shutdown_grace_ms))
			interrupt_reason = JOBQ_INTERRUPT_SHUTDOWN;
		else if (running_deadline != 0 && now >= running_deadline)
			interrupt_reason = JOBQ_INTERRUPT_TIMEOUT;
		else
			return;
		interrupted_at = now;
	}
	else if (now >= TimestampTzPlusMilliseconds(interrupted_at, JOBQ_ESCALATE_MS))
	{
		/* it will not stop: end the process (see the file header) */
		if (tick_slot != NULL && tick_slot->ended_job_id == 0)
		{
			tick_slot->ended_attempt = running_attempt;
			tick_slot->ended_reason = interrupt_reason;
			tick_slot->ended_job_id = job_id;
		}
		ProcDiePending = true;
		InterruptPending = true;
		SetLatch(MyLatch);
		return;
	}

	/* again at every tick: a handler may catch one cancel, not all */
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

void
RunSqlInit(JobqWorkerSlot *slot, volatile sig_atomic_t *shutdown_requested,
		   volatile TimestampTz *shutdown_requested_at)
{
	tick_slot = slot;
	shutdown_flag = shutdown_requested;
	shutdown_at = shutdown_requested_at;
	tick_timeout = RegisterTimeout(USER_TIMEOUT, TickHandler);
}

/*
 * Check, before switching, that the owner may run this handler now.  Returns
 * NULL when fine, else a message (and *error_class).
 */
static char *
CheckOwner(Oid owner, Oid handler, const char **error_class)
{
	HeapTuple	tup;
	bool		superuser;

	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	if (!HeapTupleIsValid(tup))
	{
		*error_class = "permanent";
		return psprintf("the job's owner role (oid %u) no longer exists", owner);
	}
	superuser = ((Form_pg_authid) GETSTRUCT(tup))->rolsuper;
	ReleaseSysCache(tup);

	if (superuser && !jobq_allow_superuser_jobs)
	{
		*error_class = "permanent";
		return psprintf("jobs owned by superuser \"%s\" may not run: jobq.allow_superuser_jobs is off",
						GetUserNameFromId(owner, false));
	}
	/* dropped since the queue list was read: the ACL check would raise */
	if (!OidIsValid(handler) ||
		!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(handler)))
	{
		*error_class = "permanent";
		return pstrdup("the job's handler function no longer exists");
	}
	if (pg_proc_aclcheck(handler, owner, ACL_EXECUTE) != ACLCHECK_OK)
	{
		*error_class = "permanent";
		return psprintf("role \"%s\" may not execute the handler %s",
						GetUserNameFromId(owner, false),
						format_procedure(handler));
	}
	return NULL;
}

/*
 * Handler calls of the current batch, one FmgrInfo per (queue, owner).
 *
 * Why: a SQL-language function keeps its parsed and planned body in its
 * FmgrInfo only while the subtransaction that made it is alive, so with
 * one subtransaction per job, PostgreSQL 15 parsed and planned the
 * handler again for every job (a quarter of an executor's time for a
 * no-op job).  The jobs of a batch run in a chain of nested
 * subtransactions instead (executor.c, RunBatch), so a body planned for
 * the batch's first job of a queue serves the next ones.
 *
 * Per owner, not per queue: the handler's body is parsed with the job
 * owner's search_path, whose "$user" differs between owners.  An entry
 * whose call failed is dropped: the body's execution state may have been
 * cut off half way.  Entries live in the batch's memory (reset by
 * executor.c's RunBatch); PL/pgSQL and other handlers simply find their
 * own cache again.
 */
typedef struct BatchHandler
{
	FmgrInfo   *queue_flinfo;	/* the queue cache's, copied */
	Oid			owner;
	FmgrInfo   *flinfo;			/* the copy this batch calls */
} BatchHandler;

#define MAX_BATCH_HANDLERS 32
static BatchHandler batch_handlers[MAX_BATCH_HANDLERS];
static int	nbatch_handlers = 0;
static MemoryContext batch_handler_cxt = NULL;	/* NULL: no batch running */

/* Start (cxt: the batch's memory, reset by the caller) and end a batch. */
void
RunSqlBatchBegin(MemoryContext cxt)
{
	batch_handler_cxt = cxt;
	nbatch_handlers = 0;
}

void
RunSqlBatchEnd(void)
{
	batch_handler_cxt = NULL;
	nbatch_handlers = 0;
}

/* The FmgrInfo to call queue_flinfo's handler with for a job of owner. */
FmgrInfo *
RunSqlBatchHandler(FmgrInfo *queue_flinfo, Oid owner)
{
	int			i;
	BatchHandler *h;
	FmgrInfo   *copy;

	if (batch_handler_cxt == NULL)
		return queue_flinfo;
	for (i = 0; i < nbatch_handlers; i++)
	{
		if (batch_handlers[i].queue_flinfo == queue_flinfo &&
			batch_handlers[i].owner == owner)
			return batch_handlers[i].flinfo;
	}
	copy = MemoryContextAlloc(batch_handler_cxt, sizeof(FmgrInfo));
	fmgr_info_copy(copy, queue_flinfo, batch_handler_cxt);
	/* a full table cannot happen (a batch has at most 32 jobs): never shared */
	if (nbatch_handlers == MAX_BATCH_HANDLERS)
		return copy;
	h = &batch_handlers[nbatch_handlers++];
	h->queue_flinfo = queue_flinfo;
	h->owner = owner;
	h->flinfo = copy;
	return copy;
}

/* Its call failed: the next job of that queue and owner gets a fresh copy. */
void
RunSqlForgetBatchHandler(FmgrInfo *flinfo)
{
	int			i;

	for (i = 0; i < nbatch_handlers; i++)
	{
		if (batch_handlers[i].flinfo == flinfo)
		{
			batch_handlers[i] = batch_handlers[--nbatch_handlers];
			return;
		}
	}
}

/*
 * Turn the handler's return value into the job's result, in the caller's
 * memory context.  jsonb as is, json parsed, void nothing, anything else its
 * text form as a JSON string.
 */
static Jsonb *
ResultToJsonb(Datum value, bool isnull, Oid rettype)
{
	char	   *str;

	if (isnull || rettype == VOIDOID)
		return NULL;
	if (rettype == JSONBOID)
		return DatumGetJsonbPCopy(value);
	if (rettype == JSONOID)
		str = TextDatumGetCString(value);
	else
	{
		Oid			outfunc;
		bool		isvarlena;
		StringInfoData buf;

		getTypeOutputInfo(rettype, &outfunc, &isvarlena);
		initStringInfo(&buf);
		escape_json(&buf, OidOutputFunctionCall(outfunc, value));
		str = buf.data;
	}
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(str)));
}

/*
 * Nothing a job opens may outlive it: the executor is one session, and the
 * next job, perhaps of another owner, runs in the same transaction (a
 * batch).  At the end of a job that succeeded (a failed one's
 * subtransaction abort closes them already): every cursor (portal) of the
 * session, and the large-object descriptors opened in the job's
 * subtransaction, are closed.  Before a job of another owner than the
 * previous one: the session's sequence state (currval, lastval) is
 * forgotten.  What the restricted operation refuses (temporary objects,
 * PREPARE, WITH HOLD cursors, LISTEN, SET ROLE) and what run_sql.c undoes
 * (settings, session advisory locks) need nothing here.
 */
static void
CloseJobsOpenObjects(void)
{
	PortalHashTableDeleteAll();
	AtEOSubXact_LargeObject(false, GetCurrentSubTransactionId(),
							InvalidSubTransactionId);
}

static void
ForgetSessionState(Oid owner)
{
	if (owner != previous_owner)
		ResetSequenceCaches();
	previous_owner = owner;
}

/*
 * Set up the handler call inside the job's subtransaction: the job's role
 * in a security-restricted operation, its search_path and timeout, and
 * jobq's interrupt tick.  Returns the GUC nest level to undo at the end.
 */
static int
EnterJob(JobqSqlRun *run, int save_sec_context, TimestampTz started)
{
	int			save_nestlevel;

	/*
	 * Deferred constraints are checked at the end of each statement
	 * (SET CONSTRAINTS ALL IMMEDIATE): a deferred trigger would fire at
	 * the batch's commit, long after the role switch below is undone,
	 * and the restricted operation refuses to queue one.  Per job, so a
	 * job's own SET CONSTRAINTS does not reach the next.
	 */
	{
		ConstraintsSetStmt immediate;

		memset(&immediate, 0, sizeof(immediate));
		immediate.type = T_ConstraintsSetStmt;
		immediate.constraints = NIL;
		immediate.deferred = false;
		AfterTriggerSetState(&immediate);
	}

	/*
	 * A security-restricted operation, as PostgreSQL runs maintenance
	 * commands on behalf of a table owner: the handler's code may not
	 * leave anything that runs later as the executor's superuser (a
	 * deferred trigger firing at the batch's commit, a temp table's
	 * trigger, a WITH HOLD cursor) or that a later job of another owner
	 * would meet (temp objects, LISTEN).
	 */
	SetUserIdAndSecContext(run->owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", JOBQ_HANDLER_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (run->timeout_ms > 0)
	{
		char		buf[32];

		/* visible to the handler as SHOW statement_timeout */
		snprintf(buf, sizeof(buf), "%lld", (long long) run->timeout_ms);
		(void) set_config_option("statement_timeout", buf,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}

	running_attempt = run->attempt;
	running_deadline = run->timeout_ms > 0 ?
		TimestampTzPlusMilliseconds(started, Min(run->timeout_ms, PG_INT32_MAX)) : 0;
	interrupted_at = 0;
	interrupt_reason = JOBQ_INTERRUPT_NONE;
	running_job_id = run->job_id;
	if (run->timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT,
							 (int) Min(run->timeout_ms, PG_INT32_MAX));
	enable_timeout_every(tick_timeout,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TICK_MS),
						 TICK_MS);
	/* a cancel may have been posted before we started */
	TickHandler();
	CHECK_FOR_INTERRUPTS();
	return save_nestlevel;
}

/*
 * The class of a caught error: jobq's own interrupt names it (a shutdown
 * releases the job: NULL), else the error rules decide (NULL), unless it
 * is a query cancel at the job's time limit.
 */
static const char *
InterruptClass(JobqSqlRun *run, ErrorData *edata, TimestampTz started)
{
	if (run->interrupt == JOBQ_INTERRUPT_CANCEL)
		return "cancelled";
	else if (run->interrupt == JOBQ_INTERRUPT_SHUTDOWN)
		return NULL;	/* released, not failed */
	else if (run->interrupt == JOBQ_INTERRUPT_TIMEOUT)
		return "timeout";
	else if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			 run->timeout_ms > 0 &&
			 TimestampDifferenceExceeds(started, GetCurrentTimestamp(),
										(int) Min(run->timeout_ms - 1, PG_INT32_MAX)))
	{
		/* our timer fired (the message may be translated: use time) */
		return "timeout";
	}
	return NULL;
}

/*
 * The handler returned: stop the timers.  A handler that returns after
 * jobq interrupted it (it caught the query cancel), or at its time limit,
 * has not succeeded: that is an error, in its subtransaction.
 */
static void
LeaveJobCall(void)
{
	if (interrupt_reason == JOBQ_INTERRUPT_NONE &&
		get_timeout_indicator(STATEMENT_TIMEOUT, false))
		interrupt_reason = JOBQ_INTERRUPT_TIMEOUT;
	disable_timeout(STATEMENT_TIMEOUT, false);
	disable_timeout(tick_timeout, false);
	running_job_id = 0;
	if (interrupt_reason != JOBQ_INTERRUPT_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("the handler returned after jobq interrupted it (%s): its result is discarded",
						interrupt_reason == JOBQ_INTERRUPT_CANCEL ? "cancelled" :
						interrupt_reason == JOBQ_INTERRUPT_SHUTDOWN ? "shutdown grace over" :
						"timeout"),
				 errhint("A handler must not catch query_canceled: jobq uses it to stop a job at its timeout, cancel or shutdown.")));
}

/* The completion of a handler that succeeded (see JobqSqlRun). */
static bool
RecordCompletion(JobqSqlRun *run)
{
	if (run->completions != NULL)
		return StoreTakeCompleted(run->job_id, run->attempt, &run->tid, run->result,
								  true, run->completions, run->completions_cxt,
								  &run->completion_busy);
	return StoreComplete(run->job_id, run->attempt, run->result, true,
						 &run->completion_busy);
}

void
RunSqlHandler(JobqSqlRun *run)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	TimestampTz started = GetCurrentTimestamp();
	const char *owner_class = NULL;
	char	   *owner_problem;

	run->ok = false;
	run->fenced = false;
	run->completion_busy = false;
	run->result = NULL;
	run->error_class = NULL;
	run->sqlstate[0] = '\0';
	run->message = NULL;
	run->detail = NULL;
	run->interrupt = JOBQ_INTERRUPT_NONE;

	owner_problem = CheckOwner(run->owner, run->handler, &owner_class);
	if (owner_problem != NULL)
	{
		run->message = owner_problem;
		run->error_class = owner_class;
		strlcpy(run->sqlstate, "42501", sizeof(run->sqlstate));
		return;
	}

	ForgetSessionState(run->owner);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);

	PG_TRY();
	{
		Oid			save_userid;
		int			save_sec_context;
		int			save_nestlevel;
		LOCAL_FCINFO(fcinfo, 1);
		Datum		value;

		GetUserIdAndSecContext(&save_userid, &save_sec_context);

		save_nestlevel = EnterJob(run, save_sec_context, started);

		InitFunctionCallInfoData(*fcinfo, run->flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = JsonbPGetDatum(run->payload);
		fcinfo->args[0].isnull = false;
		value = FunctionCallInvoke(fcinfo);

		LeaveJobCall();

		run->result = ResultToJsonb(value, fcinfo->isnull, run->rettype);
		CloseJobsOpenObjects();

		/*
		 * false: undo every setting the handler changed, plain SET included
		 * (true would keep those for the executor's life: the next job, of
		 * another owner, and our own statements would run with them).
		 */
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec_context);

		/* the completion commits with the handler's writes, or neither does */
		if (!RecordCompletion(run))
		{
			run->fenced = true;
			RollbackAndReleaseCurrentSubTransaction();
		}
		else if (run->keep_subxact)
		{
			/* still inside it: its resource owner stays current */
			run->ok = true;
		}
		else
		{
			ReleaseCurrentSubTransaction();
			CurrentResourceOwner = oldowner;
			run->ok = true;
		}
		if (!run->ok)
			CurrentResourceOwner = oldowner;
		MemoryContextSwitchTo(oldcxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		disable_timeout(tick_timeout, false);
		running_job_id = 0;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();

		/*
		 * Our cancel or shutdown tick is the cause only if the error is the
		 * query cancel it raised: a handler that failed on its own just as
		 * the tick fired keeps its own error (and is failed, not released).
		 */
		run->interrupt = edata->sqlerrcode == ERRCODE_QUERY_CANCELED ?
			interrupt_reason : JOBQ_INTERRUPT_NONE;
		interrupt_reason = JOBQ_INTERRUPT_NONE;

		/* restores user id, security context and GUC nest level */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		strlcpy(run->sqlstate, unpack_sql_state(edata->sqlerrcode),
				sizeof(run->sqlstate));
		run->message = edata->message ? pstrdup(edata->message) : pstrdup("");
		run->detail = edata->detail ? pstrdup(edata->detail) : NULL;

		run->error_class = InterruptClass(run, edata, started);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	/*
	 * What neither the subtransaction nor the restricted operation undoes or
	 * refuses: session-level advisory locks would outlive the job and block
	 * whoever waits for them, whatever job runs next.
	 */
	LockReleaseSession(USER_LOCKMETHOD);

	/* A cancel or shutdown that raced with success must not linger. */
	QueryCancelPending = false;
}
