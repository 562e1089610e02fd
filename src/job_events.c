/*-------------------------------------------------------------------------
 *
 * job_events.c
 *	  The hook points of the job store: jobs claimed, attempts finished,
 *	  jobs final (see job_events.h for the rule).
 *
 * What is attached today: the claim count that paces the executors'
 * VACUUM (upkeep.c), circuit breakers (breaker.c: outcomes), counts of
 * each event per database (JobqDatabase.events, shown by
 * jobq._job_events()) and per queue and minute (metrics.c, flushed into
 * jobq.metrics), active and running jobs per queue (queue_gauges.c), the lifecycle log (jobq.log_events), and the wake-up of
 * jobq.wait's waiters by the commit that makes their job final
 * (job_wait.c), the final counts of batches (batches.c).
 *
 * Counts and log lines are transactional: an event is counted when the
 * transaction that made the change commits (or is prepared), not at all
 * when it or the subtransaction that made it aborts, so they agree with
 * the rows of jobq.jobs_final and jobq.job_attempts.  Until then they are
 * kept per subtransaction level in this backend (a job's subtransaction in
 * an executor batch may roll back while the batch commits).  Log lines are
 * written just before the commit (an error writing one must still be able
 * to abort the transaction), counts just after it.
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
#include "batches.h"
#include "metrics.h"
#include "queue_gauges.h"

#include "access/xact.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/memutils.h"

static const char *const event_names[JOBQ_EVENT_COUNT] = {
	"submitted",
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
 * Counts not committed yet, one entry per (transaction nest level, queue,
 * minute), and one per (level, queue, error class) of failed attempts (for
 * the per-class totals; bucket 0).  A transaction touches few queues and
 * minutes, so the list is short and searched linearly, the entry used last
 * first.
 */
typedef struct PendingCounts
{
	int			level;
	TimestampTz bucket;
	char		queue[NAMEDATALEN];
	char		error_class[NAMEDATALEN];	/* "" but in class entries */
	JobqMetricCounts c;
} PendingCounts;

#define SAME_KEY(p, lvl, q, b, cls) \
	((p)->level == (lvl) && (p)->bucket == (b) && strcmp((p)->queue, (q)) == 0 && \
	 strcmp((p)->error_class, (cls)) == 0)

static PendingCounts *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;
static int	last_used = 0;

/*
 * Lifecycle log lines (jobq.log_events) not committed yet, with the nest
 * level that made them; written to the server log just before the commit.
 */
typedef struct PendingLine
{
	int			level;
	char	   *line;
} PendingLine;

static MemoryContext log_cxt = NULL;
static PendingLine *lines = NULL;
static int	nlines = 0;
static int	maxlines = 0;

static PendingCounts *
PendingEntry(int level, const char *queue, TimestampTz bucket, const char *error_class)
{
	PendingCounts *p;
	int			i;

	if (last_used < npending)
	{
		p = &pending[last_used];
		if (SAME_KEY(p, level, queue, bucket, error_class))
			return p;
	}
	for (i = 0; i < npending; i++)
	{
		p = &pending[i];
		if (SAME_KEY(p, level, queue, bucket, error_class))
		{
			last_used = i;
			return p;
		}
	}
	if (npending == maxpending)
	{
		int			want = Max(8, maxpending * 2);

		pending = pending == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(PendingCounts) * want)
			: repalloc(pending, sizeof(PendingCounts) * want);
		maxpending = want;
	}
	p = &pending[npending];
	memset(p, 0, sizeof(PendingCounts));
	p->level = level;
	p->bucket = bucket;
	strlcpy(p->queue, queue, NAMEDATALEN);
	strlcpy(p->error_class, error_class, NAMEDATALEN);
	last_used = npending++;
	return p;
}

/* The instant an event is counted at: its own time, else now. */
static TimestampTz
EventTime(const JobqJobEvent *ev)
{
	TimestampTz t = ev->event == JOBQ_EVENT_CLAIMED ? ev->started_at : ev->finished_at;

	if (ev->event == JOBQ_EVENT_SUBMITTED || t == 0)
		t = GetCurrentTransactionStartTimestamp();
	return t;
}

static void
Count(const JobqJobEvent *ev, int64 n)
{
	PendingCounts *p;

	p = PendingEntry(GetCurrentTransactionNestLevel(), ev->queue,
					 JobqMetricBucket(EventTime(ev)), "");
	if (n == 1)
		JobqMetricCountEvent(&p->c, ev);
	else
		p->c.events[ev->event] += n;
	if (ev->event == JOBQ_EVENT_ATTEMPT_FAILED)
	{
		p = PendingEntry(GetCurrentTransactionNestLevel(), ev->queue, 0,
						 ev->error_class != NULL ? ev->error_class : "unknown");
		p->c.events[ev->event] += n;
	}
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

/* Drop what nest levels from_level and deeper noted. */
static void
Forget(int from_level)
{
	int			i,
				kept = 0;

	for (i = 0; i < npending; i++)
		if (pending[i].level < from_level)
			pending[kept++] = pending[i];
	npending = kept;
	for (i = 0, kept = 0; i < nlines; i++)
		if (lines[i].level < from_level)
			lines[kept++] = lines[i];
		else
			pfree(lines[i].line);
	nlines = kept;
	if (nlines == 0 && log_cxt != NULL)
	{
		MemoryContextReset(log_cxt);
		lines = NULL;
		maxlines = 0;
	}
	last_used = 0;
}

/* A committed subtransaction's notes become its parent's. */
static void
GiveToParent(int level)
{
	int			i,
				kept = 0;

	for (i = 0; i < npending; i++)
	{
		PendingCounts *p = &pending[i];
		int			j;

		if (p->level == level)
		{
			for (j = 0; j < kept; j++)
				if (SAME_KEY(&pending[j], level - 1, p->queue, p->bucket, p->error_class))
					break;
			if (j < kept)
			{
				JobqMetricCountsAdd(&pending[j].c, &p->c);
				continue;
			}
			p->level = level - 1;
		}
		if (kept != i)
			pending[kept] = *p;
		kept++;
	}
	npending = kept;
	for (i = 0; i < nlines; i++)
		if (lines[i].level == level)
			lines[i].level = level - 1;
	last_used = 0;
}

/*
 * Commit: the counts go to shared memory, all under one acquisition of the
 * counters' lock.  After the commit record, so nothing here may fail: the
 * *Locked adders and atomics only.
 */
static void
Publish(void)
{
	JobqDatabase *db = MyDatabaseEntry();
	LWLock	   *lock = JobqCountersLock();
	int			i,
				e;

	if (lock == NULL)
		return;
	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (i = 0; i < npending; i++)
	{
		PendingCounts *p = &pending[i];

		if (p->error_class[0] != '\0')
		{
			JobqGaugesAddFailuresLocked(MyDatabaseId, p->queue, p->error_class,
										p->c.events[JOBQ_EVENT_ATTEMPT_FAILED]);
			continue;
		}
		if (db != NULL)
			for (e = 0; e < JOBQ_EVENT_COUNT; e++)
				if (p->c.events[e] != 0)
					pg_atomic_fetch_add_u64(&db->events[e], p->c.events[e]);
		JobqMetricsAddLocked(MyDatabaseId, p->queue, p->bucket, &p->c);
		JobqGaugesAddLocked(MyDatabaseId, p->queue, &p->c);
	}
	LWLockRelease(lock);
}

/* Just before the commit: the lifecycle log lines. */
static void
WriteLines(void)
{
	int			i;

	for (i = 0; i < nlines; i++)
		ereport(LOG,
				(errmsg_internal("%s", lines[i].line),
				 errhidestmt(true), errhidecontext(true)));
	for (i = 0; i < nlines; i++)
		pfree(lines[i].line);
	nlines = 0;
}

static void
EventsXactCallback(XactEvent event, void *arg)
{
	if (npending == 0 && nlines == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			WriteLines();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			Publish();
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

/* A subtransaction's notes go to its parent, or away with it. */
static void
EventsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
				SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if ((npending == 0 && nlines == 0) || level < 2)
		return;
	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			GiveToParent(level);
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

/* Append " key=value" to buf, the value in double quotes when it needs them. */
static void
AppendField(StringInfo buf, const char *key, const char *value)
{
	const char *c;
	bool		plain = value[0] != '\0';

	for (c = value; *c && plain; c++)
		plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			(*c >= '0' && *c <= '9') || strchr("_.:-@/", *c) != NULL;
	appendStringInfo(buf, " %s=", key);
	if (plain)
	{
		appendStringInfoString(buf, value);
		return;
	}
	appendStringInfoChar(buf, '"');
	for (c = value; *c; c++)
	{
		if (*c == '"' || *c == '\\')
			appendStringInfoChar(buf, '\\');
		if (*c == '\n')
			appendStringInfoString(buf, "\\n");
		else
			appendStringInfoChar(buf, *c);
	}
	appendStringInfoChar(buf, '"');
}

/*
 * The lifecycle log line of ev, or NULL for an event that has none (the
 * attempt_cancelled and final_completed halves of events logged once).
 */
static char *
LogLine(const JobqJobEvent *ev)
{
	StringInfoData buf;
	const char *name;
	char	   *owner;
	bool		with_class = false;
	bool		with_delay = false;

	switch (ev->event)
	{
		case JOBQ_EVENT_CLAIMED:
			name = "claimed";
			break;
		case JOBQ_EVENT_ATTEMPT_COMPLETED:
			name = "completed";
			break;
		case JOBQ_EVENT_ATTEMPT_FAILED:
			with_class = true;
			with_delay = ev->retry_at != 0;
			if (ev->error_class != NULL && strcmp(ev->error_class, "worker_lost") == 0)
				name = "lost";
			else
				name = ev->retry_at != 0 ? "retried" : "failed";
			break;
		case JOBQ_EVENT_ATTEMPT_SNOOZED:
			name = "snoozed";
			with_delay = ev->retry_at != 0;
			break;
		case JOBQ_EVENT_ATTEMPT_RELEASED:
			name = "released";
			with_class = true;
			break;
		case JOBQ_EVENT_FINAL_FAILED:
			name = "dead_lettered";
			with_class = true;
			break;
		case JOBQ_EVENT_FINAL_CANCELLED:
			name = "cancelled";
			break;
		default:
			return NULL;
	}
	if (log_cxt == NULL)
		log_cxt = AllocSetContextCreate(TopMemoryContext, "jobq event log",
										ALLOCSET_SMALL_SIZES);
	owner = OidIsValid(ev->owner) ? GetUserNameFromId(ev->owner, true) : NULL;
	initStringInfo(&buf);
	appendStringInfo(&buf, "jobq: event=%s job_id=" INT64_FORMAT, name, ev->job_id);
	AppendField(&buf, "queue", ev->queue);
	appendStringInfo(&buf, " attempt=%d", ev->attempt);
	AppendField(&buf, "owner", owner != NULL ? owner : "-");
	if (with_class)
		AppendField(&buf, "class", ev->error_class != NULL ? ev->error_class : "-");
	if (with_delay)
		appendStringInfo(&buf, " delay_ms=" INT64_FORMAT,
						 Max((int64) 0, (ev->retry_at - EventTime(ev)) / 1000));
	if (ev->event == JOBQ_EVENT_ATTEMPT_FAILED && ev->retry_at == 0)
		appendStringInfoString(&buf, " next=dead_letter");
	return MemoryContextStrdup(log_cxt, buf.data);
}

static void
NoteLine(const JobqJobEvent *ev)
{
	char	   *line = LogLine(ev);

	if (line == NULL)
		return;
	if (nlines == maxlines)
	{
		int			want = Max(16, maxlines * 2);

		lines = lines == NULL
			? MemoryContextAlloc(log_cxt, sizeof(PendingLine) * want)
			: repalloc(lines, sizeof(PendingLine) * want);
		maxlines = want;
	}
	lines[nlines].level = GetCurrentTransactionNestLevel();
	lines[nlines].line = line;
	nlines++;
}

void
JobEventsReport(const JobqJobEvent *ev)
{
	Assert(ev->event >= 0 && ev->event < JOBQ_EVENT_COUNT);
	Count(ev, 1);
	if (jobq_log_events)
		NoteLine(ev);
	BreakerNoteEvent(ev);
	if (ev->event >= JOBQ_EVENT_FINAL_COMPLETED)
		JobWaitNoteFinal(ev->job_id);	/* jobq.wait (job_wait.c) */
	if (ev->batch_id != 0 && ev->event >= JOBQ_EVENT_FINAL_COMPLETED)
		BatchesNoteFinal(ev);	/* batch counts and callback (batches.c) */
}

void
JobEventsSubmitted(const char *queue, Oid owner, int64 n)
{
	JobqJobEvent ev;

	if (n <= 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.event = JOBQ_EVENT_SUBMITTED;
	ev.queue = queue;
	ev.owner = owner;
	Count(&ev, n);
}

PG_FUNCTION_INFO_V1(jobq_job_event);

/*
 * jobq._job_event(event text, queue text, job_id bigint, attempt integer,
 *				   owner oid, error_class text, started_at timestamptz,
 *				   finished_at timestamptz, retry_at timestamptz, error text,
 *				   batch_id bigint):
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
	for (e = 0; e < JOBQ_EVENT_COUNT; e++)
		if (e != JOBQ_EVENT_CLAIMED && strcmp(name, event_names[e]) == 0)
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
	/* the declaration of an install not yet updated has no batch_id */
	ev.batch_id = PG_NARGS() > 10 && !PG_ARGISNULL(10) ? PG_GETARG_INT64(10) : 0;
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
