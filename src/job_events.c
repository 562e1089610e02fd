/*-------------------------------------------------------------------------
 *
 * job_events.c
 *	  The hook points of the job store: jobs claimed, attempts finished,
 *	  jobs final (see job_events.h for the rule).
 *
 * What is attached today: the claim count that paces the executors'
 * VACUUM (upkeep.c), circuit breakers (breaker.c: outcomes),
 * per-database counts of each event in shared memory
 * (JobqDatabase.events), shown by jobq._job_events(), and the wake-up of
 * jobq.wait's waiters by the commit that makes their job final
 * (job_wait.c).  The counts
 * are transactional: an event is counted when the transaction that made
 * the change commits (or is prepared), not at all when it or the
 * subtransaction that made it aborts, so they agree with the rows of
 * jobq.jobs_final and jobq.job_attempts.  Until then they are kept per
 * subtransaction level in this backend (a job's subtransaction in an
 * executor batch may roll back while the batch commits).
 *
 * IDENTIFICATION
 *	  src/job_events.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_events.h"
#include "breaker.h"
#include "upkeep.h"
#include "job_wait.h"

#include "access/xact.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/memutils.h"

static const char *const event_names[JOBQ_EVENT_COUNT] = {
	"claimed",
	"attempt_completed",
	"attempt_failed",
	"attempt_snoozed",
	"attempt_released",
	"attempt_cancelled",
	"final_completed",
	"final_failed",
	"final_cancelled",
};

/*
 * Counts not committed yet: pending[(level - 1) * JOBQ_EVENT_COUNT + e] for
 * transaction nest levels 1 .. pending_top (0: nothing pending).
 */
static uint64 *pending = NULL;
static int	pending_levels = 0;	/* levels allocated */
static int	pending_top = 0;

#define PENDING_ROW(level) (pending + ((level) - 1) * JOBQ_EVENT_COUNT)

static void
Count(JobqEvent e, int n)
{
	int			level = GetCurrentTransactionNestLevel();

	if (n <= 0)
		return;
	if (level > pending_levels)
	{
		int			want = Max(level, Max(pending_levels * 2, 8));
		uint64	   *grown = MemoryContextAllocZero(TopMemoryContext,
												   sizeof(uint64) * want * JOBQ_EVENT_COUNT);

		if (pending != NULL)
		{
			memcpy(grown, pending, sizeof(uint64) * pending_levels * JOBQ_EVENT_COUNT);
			pfree(pending);
		}
		pending = grown;
		pending_levels = want;
	}
	PENDING_ROW(level)[e] += n;
	pending_top = Max(pending_top, level);
}

/* This database's entry of the registry, looked up once per backend. */
static JobqDatabase *
MyDatabaseEntry(void)
{
	static JobqDatabase *db = NULL;

	if (jobq_shared == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	if (db == NULL || db->dboid != MyDatabaseId)
	{
		LWLockAcquire(jobq_shared->lock, LW_SHARED);
		db = JobqFindDatabase(MyDatabaseId, false);
		LWLockRelease(jobq_shared->lock);
	}
	return db;
}

static void
Forget(int from_level)
{
	int			level;

	for (level = from_level; level <= pending_top; level++)
		memset(PENDING_ROW(level), 0, sizeof(uint64) * JOBQ_EVENT_COUNT);
	pending_top = Min(pending_top, from_level - 1);
}

static void
EventsXactCallback(XactEvent event, void *arg)
{
	JobqDatabase *db;
	int			level;
	int			e;

	if (pending_top == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			db = MyDatabaseEntry();
			for (level = 1; db != NULL && level <= pending_top; level++)
				for (e = 0; e < JOBQ_EVENT_COUNT; e++)
					if (PENDING_ROW(level)[e] != 0)
						pg_atomic_fetch_add_u64(&db->events[e], PENDING_ROW(level)[e]);
			Forget(1);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			Forget(1);
			break;
		default:
			break;
	}
}

/* A subtransaction's counts go to its parent, or away with it. */
static void
EventsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
				SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			e;

	if (level > pending_top || level < 2)
		return;
	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			for (e = 0; e < JOBQ_EVENT_COUNT; e++)
				PENDING_ROW(level - 1)[e] += PENDING_ROW(level)[e];
			Forget(level);
			pending_top = Max(pending_top, level - 1);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			Forget(level);
			break;
		default:
			break;
	}
}

void
JobEventsRegisterCallbacks(void)
{
	RegisterXactCallback(EventsXactCallback, NULL);
	RegisterSubXactCallback(EventsSubXactCallback, NULL);
}

void
JobEventsClaimedCount(int n, bool by_executor)
{
	if (n > 0)
		JobqNoteClaimed(n, by_executor);
}

void
JobEventsReport(const JobqJobEvent *ev)
{
	Assert(ev->event >= 0 && ev->event < JOBQ_EVENT_COUNT);
	Count(ev->event, 1);
	BreakerNoteEvent(ev);
	if (ev->event >= JOBQ_EVENT_FINAL_COMPLETED)
		JobWaitNoteFinal(ev->job_id);	/* jobq.wait (job_wait.c) */
}

PG_FUNCTION_INFO_V1(jobq_job_event);

/*
 * jobq._job_event(event text, queue text, job_id bigint, attempt integer,
 *				   owner oid, error_class text, started_at timestamptz,
 *				   finished_at timestamptz, retry_at timestamptz, error text):
 * the SQL half of the job store reports an event of one job
 * (attempt_<outcome>, final_<state>); NULLs for fields the event has not.
 */
Datum
jobq_job_event(PG_FUNCTION_ARGS)
{
	JobqJobEvent ev;
	char	   *name;
	int			e;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("jobq: a job event needs its name, queue, job id and attempt")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	for (e = JOBQ_EVENT_ATTEMPT_COMPLETED; e < JOBQ_EVENT_COUNT; e++)
		if (strcmp(name, event_names[e]) == 0)
			break;
	if (e == JOBQ_EVENT_COUNT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jobq: unknown job event \"%s\"", name)));
	memset(&ev, 0, sizeof(ev));
	ev.event = (JobqEvent) e;
	ev.queue = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ev.job_id = PG_GETARG_INT64(2);
	ev.attempt = PG_GETARG_INT32(3);
	ev.owner = PG_ARGISNULL(4) ? InvalidOid : PG_GETARG_OID(4);
	ev.error_class = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	ev.started_at = PG_ARGISNULL(6) ? 0 : PG_GETARG_TIMESTAMPTZ(6);
	ev.finished_at = PG_ARGISNULL(7) ? 0 : PG_GETARG_TIMESTAMPTZ(7);
	ev.retry_at = PG_ARGISNULL(8) ? 0 : PG_GETARG_TIMESTAMPTZ(8);
	ev.message = PG_ARGISNULL(9) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(9));
	JobEventsReport(&ev);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(jobq_job_events);

/*
 * jobq._job_events() RETURNS TABLE (event text, count bigint): this
 * database's committed events since the server started (or the database
 * entered jobq's registry).
 */
Datum
jobq_job_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	JobqDatabase *db;
	int			e;

	InitMaterializedSRF(fcinfo, 0);
	db = MyDatabaseEntry();
	for (e = 0; e < JOBQ_EVENT_COUNT; e++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(event_names[e]);
		values[1] = Int64GetDatum(db != NULL ? (int64) pg_atomic_read_u64(&db->events[e]) : 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
