/*-------------------------------------------------------------------------
 *
 * breaker.c
 *	  Circuit breakers: retryable failures of jobs behind one key open its
 *	  breaker; while open, the claim hands out no job behind it (they stay
 *	  pending, no attempt used); after the cooldown it is half open and
 *	  admits half_open_probes jobs across all processes; a probe's success
 *	  closes it (executors woken), its failure opens it again.
 *
 * A queue's key is its breaker option, else its name; queues may share one.
 *
 * What counts (the one place that says so: CountsAgainst): a failed attempt
 * of class transient, timeout, worker_lost or unknown is the dependency's
 * fault and counts; validation, permanent, api_error and cancelled are the
 * job's and do not; rate_limited is a snooze (its Retry-After is honoured by
 * the retry engine) and does not count either, nor does breaker_open (the
 * failure a fail_fast queue's jobs get from the open breaker itself).
 *
 * The live state is in shared memory, one entry per key in use, so that the
 * claim asks it without I/O and every process sees one breaker: a claim
 * that finds no breaker of any database open reads one atomic counter.
 * Entries change under the "jobq breakers" LWLock, never held while doing
 * I/O.  Outcomes reported to the hook point (job_events.c) count when the
 * transaction that records them commits, as the attempt rows do: a failure
 * reported by a transaction that rolls back (an external worker's call, an
 * executor's batch that is then run again job by job) does not count.
 *
 * jobq.breakers keeps each key's settings and its last state, so that an
 * open breaker stays open across a server restart: transitions made here
 * are written there by an executor after its batch (BreakerPersist: an
 * executor never waits for a row lock inside a batch), and the state is
 * read back into shared memory the first time a database's breakers are
 * needed after a start.  configure_breaker, reset_breaker and
 * trip_breaker write the table in the caller's transaction and reach
 * shared memory when it commits (jobq._breaker_set).
 *
 * IDENTIFICATION
 *	  src/breaker.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "breaker.h"
#include "breaker_table.h"
#include "queue_cache.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#define BREAKER_SLOTS 256
#define BREAKER_KEY_BYTES 804	/* 200 characters of up to 4 bytes, NUL */
#define BREAKER_MAX_THRESHOLD 100
#define BREAKER_ERROR_BYTES 200

static const char *const state_names[] = {"closed", "open", "half_open"};

/*
 * One breaker key of one database.  Protected by BreakerTable.lock; a free
 * entry has dboid InvalidOid.
 */
typedef struct BreakerEntry
{
	Oid			dboid;
	uint32		hash;			/* of key */
	char		key[BREAKER_KEY_BYTES];
	BreakerState state;
	/* settings: jobq.breakers, or the defaults */
	int			threshold;
	int64		window_ms;
	int64		cooldown_ms;
	int			probes;
	/* the last threshold failures' times, a ring */
	TimestampTz failures[BREAKER_MAX_THRESHOLD];
	int			nfailures;
	int			ring_next;
	TimestampTz opened_at;
	TimestampTz next_probe_at;	/* open: when it becomes half open */
	TimestampTz last_failure_at;
	int			probes_out;		/* half open: admitted, no verdict yet */
	int64		times_opened;
	char		last_error[BREAKER_ERROR_BYTES];
	bool		dirty;			/* a transition not yet in jobq.breakers */
	uint64		generation;		/* bumped by every change */
} BreakerEntry;

/*
 * Shared: the entries, how many are not closed (over all databases: a
 * claim reads only this while every breaker is closed), and which
 * databases have had jobq.breakers read back since the server started.
 */
typedef struct BreakerTable
{
	LWLock	   *lock;
	pg_atomic_uint32 not_closed;
	pg_atomic_uint64 closes;	/* transitions to closed, ever (BreakerCloses) */
	pg_atomic_uint32 dirty;
	Oid			loaded[JOBQ_MAX_DATABASES];
	BreakerEntry entries[BREAKER_SLOTS];
} BreakerTable;

static BreakerTable *breakers = NULL;

static bool loaded_here = false;	/* this backend saw its database loaded */

/* Settings of a key without a row in jobq.breakers (API.md). */
#define DEFAULT_THRESHOLD 5
#define DEFAULT_WINDOW_MS (5 * 60 * 1000)
#define DEFAULT_COOLDOWN_MS (10 * 60 * 1000)
#define DEFAULT_PROBES 1

Size
BreakerShmemSize(void)
{
	return sizeof(BreakerTable);
}

void
BreakerShmemInit(void)
{
	bool		found;

	breakers = ShmemInitStruct("jobq breakers", sizeof(BreakerTable), &found);
	if (!found)
	{
		memset(breakers, 0, sizeof(BreakerTable));
		breakers->lock = &(GetNamedLWLockTranche("jobq breakers"))->lock;
		pg_atomic_init_u32(&breakers->not_closed, 0);
		pg_atomic_init_u64(&breakers->closes, 0);
		pg_atomic_init_u32(&breakers->dirty, 0);
	}
}

static uint32
KeyHash(const char *key)
{
	return hash_bytes((const unsigned char *) key, strlen(key));
}

/* The entry of key in this database, or NULL.  Caller holds the lock. */
static BreakerEntry *
Find(const char *key)
{
	uint32		h = KeyHash(key);
	int			i;

	for (i = 0; i < BREAKER_SLOTS; i++)
	{
		BreakerEntry *e = &breakers->entries[i];

		if (e->dboid == MyDatabaseId && e->hash == h && strcmp(e->key, key) == 0)
			return e;
	}
	return NULL;
}

/*
 * A new entry for key, closed, with the given settings, or NULL when every
 * entry is taken by a breaker that is not closed, has recent failures or a
 * transition to write (then the key is not tracked: it behaves as closed,
 * and a WARNING says so).  Caller holds the lock exclusively.
 */
static BreakerEntry *
Create(const char *key, int threshold, int64 window_ms, int64 cooldown_ms, int probes)
{
	BreakerEntry *victim = NULL;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < BREAKER_SLOTS && victim == NULL; i++)
	{
		BreakerEntry *e = &breakers->entries[i];

		if (!OidIsValid(e->dboid))
			victim = e;
	}
	for (i = 0; i < BREAKER_SLOTS && victim == NULL; i++)
	{
		BreakerEntry *e = &breakers->entries[i];

		if (e->state == BREAKER_CLOSED && !e->dirty &&
			(e->nfailures == 0 ||
			 TimestampDifferenceExceeds(e->last_failure_at, now, (int) Min(e->window_ms, PG_INT32_MAX))))
			victim = e;
	}
	if (victim == NULL)
	{
		ereport(WARNING,
				(errmsg("jobq: no room for circuit breaker \"%s\": it stays closed", key),
				 errdetail("%d circuit breakers are open, failing or being written.", BREAKER_SLOTS)));
		return NULL;
	}
	memset(victim, 0, sizeof(BreakerEntry));
	victim->dboid = MyDatabaseId;
	victim->hash = KeyHash(key);
	strlcpy(victim->key, key, sizeof(victim->key));
	victim->state = BREAKER_CLOSED;
	victim->threshold = Min(Max(threshold, 1), BREAKER_MAX_THRESHOLD);
	victim->window_ms = window_ms;
	victim->cooldown_ms = cooldown_ms;
	victim->probes = Max(probes, 1);
	return victim;
}

/* Move e to state, keeping not_closed right; logged once, written later. */
static void
SetState(BreakerEntry *e, BreakerState state, const char *reason)
{
	BreakerState from = e->state;

	if (from == state)
		return;
	if (from == BREAKER_CLOSED)
		pg_atomic_fetch_add_u32(&breakers->not_closed, 1);
	else if (state == BREAKER_CLOSED)
	{
		pg_atomic_fetch_sub_u32(&breakers->not_closed, 1);
		pg_atomic_fetch_add_u64(&breakers->closes, 1);
	}
	e->state = state;
	e->generation++;
	if (!e->dirty)
	{
		e->dirty = true;
		pg_atomic_fetch_add_u32(&breakers->dirty, 1);
	}
	ereport(LOG,
			(errmsg("jobq circuit breaker \"%s\": %s -> %s (%s)",
					e->key, state_names[from], state_names[state], reason),
			 errhidestmt(true), errhidecontext(true)));
}

static void
Open(BreakerEntry *e, TimestampTz now, int64 cooldown_ms, const char *reason)
{
	e->opened_at = now;
	e->next_probe_at = TimestampTzPlusMilliseconds(now, Min(cooldown_ms, PG_INT32_MAX));
	e->probes_out = 0;
	e->times_opened++;
	SetState(e, BREAKER_OPEN, reason);
}

static void
Close(BreakerEntry *e, const char *reason)
{
	e->nfailures = 0;
	e->ring_next = 0;
	e->probes_out = 0;
	e->opened_at = 0;
	e->next_probe_at = 0;
	SetState(e, BREAKER_CLOSED, reason);
	/* the jobs held behind it are claimable now: executors look at commit */
	JobqWakeAtCommit();
	JobqWakeHttpAtCommit();
}

uint64
BreakerCloses(void)
{
	return breakers != NULL ? pg_atomic_read_u64(&breakers->closes) : 0;
}

/* Failures of e within its window, as of now. */
static int
FailuresInWindow(BreakerEntry *e, TimestampTz now)
{
	TimestampTz since = now - e->window_ms * 1000;
	int			n = 0;
	int			i;

	for (i = 0; i < e->nfailures; i++)
		if (e->failures[i] >= since)
			n++;
	return n;
}

/* Rows of jobq.breakers whose breaker was not closed, read at load. */
static void
CollectNotClosed(Datum *v, bool *n, void *arg)
{
	List	  **rows = (List **) arg;
	BreakerRow *row = palloc(sizeof(BreakerRow));

	RowFrom(v, n, row);
	if (row->state != BREAKER_CLOSED)
		*rows = lappend(*rows, row);
}

/* A row's state into a (new) entry, as written before the restart. */
static void
LoadRow(BreakerRow *row)
{
	BreakerEntry *e;

	if (Find(row->key) != NULL)
		return;
	e = Create(row->key, row->threshold, row->window_ms, row->cooldown_ms, row->probes);
	if (e == NULL)
		return;
	/* half open before the restart: its probes are gone, open again */
	e->state = BREAKER_OPEN;
	pg_atomic_fetch_add_u32(&breakers->not_closed, 1);
	e->opened_at = row->opened_at;
	e->next_probe_at = row->state == BREAKER_OPEN ? row->next_probe_at : GetCurrentTimestamp();
	e->last_failure_at = row->last_failure_at;
	e->times_opened = row->times_opened;
	if (row->last_error)
		strlcpy(e->last_error, row->last_error, sizeof(e->last_error));
}

/*
 * Read this database's open breakers back from jobq.breakers, once per
 * server start (an open breaker survives a restart).  Inside a transaction.
 */
static void
EnsureLoaded(void)
{
	List	   *rows = NIL;
	ListCell   *lc;
	int			i;
	int			free_slot = -1;
	bool		loaded = false;

	if (loaded_here || breakers == NULL || !OidIsValid(MyDatabaseId))
		return;
	LWLockAcquire(breakers->lock, LW_SHARED);
	for (i = 0; i < JOBQ_MAX_DATABASES; i++)
		loaded |= (breakers->loaded[i] == MyDatabaseId);
	LWLockRelease(breakers->lock);
	if (!loaded)
	{
		/* read first: no I/O under the lock */
		(void) ScanBreakersTable(NULL, CollectNotClosed, &rows);
		LWLockAcquire(breakers->lock, LW_EXCLUSIVE);
		for (i = 0; i < JOBQ_MAX_DATABASES && !loaded; i++)
		{
			loaded |= (breakers->loaded[i] == MyDatabaseId);
			if (!OidIsValid(breakers->loaded[i]) && free_slot < 0)
				free_slot = i;
		}
		if (!loaded)
		{
			foreach(lc, rows)
				LoadRow((BreakerRow *) lfirst(lc));
			if (free_slot >= 0)
				breakers->loaded[free_slot] = MyDatabaseId;
		}
		LWLockRelease(breakers->lock);
	}
	loaded_here = true;
}

/* BreakerJobKey's job and key (none: job_key NULL) */
static int64 job_key_id = 0;
static char *job_key = NULL;

/*
 * The breaker key of queue: its breaker option, else its name; and, when
 * fail_fast is not NULL, whether the queue's breaker_mode is fail_fast.
 * Kept per backend until jobq.queues changes.
 */
static char *
KeyOfQueue(const char *queue, bool *fail_fast)
{
	static MemoryContext cxt = NULL;
	static HTAB *keys = NULL;
	static uint64 version_seen = 0;
	uint64		version = pg_atomic_read_u64(&jobq_shared->queues_version);
	typedef struct
	{
		char		queue[NAMEDATALEN * 4];
		char	   *key;
		bool		fail_fast;
	}			KeyEntry;
	KeyEntry   *ke;
	bool		found;
	JobqQueueRow row;

	if (fail_fast)
		*fail_fast = false;
	if (strlen(queue) >= NAMEDATALEN * 4)
		return pstrdup(queue);
	if (keys == NULL || version != version_seen)
	{
		HASHCTL		ctl;

		if (cxt == NULL)
			cxt = AllocSetContextCreate(TopMemoryContext, "jobq breaker keys",
										ALLOCSET_SMALL_SIZES);
		MemoryContextReset(cxt);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN * 4;
		ctl.entrysize = sizeof(KeyEntry);
		ctl.hcxt = cxt;
		keys = hash_create("jobq breaker keys", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		version_seen = version;
	}
	ke = hash_search(keys, queue, HASH_FIND, NULL);
	if (ke == NULL)
	{
		PushActiveSnapshot(GetLatestSnapshot());
		found = JobqReadQueue(queue, GetActiveSnapshot(), &row);
		PopActiveSnapshot();
		ke = hash_search(keys, queue, HASH_ENTER, NULL);
		ke->key = MemoryContextStrdup(cxt, found && row.breaker != NULL ? row.breaker : queue);
		ke->fail_fast = found && row.breaker_fail_fast;
	}
	if (fail_fast)
		*fail_fast = ke->fail_fast;
	return ke->key;
}

/* Is every breaker of every database closed?  (the claim's fast path) */
static bool
AllClosed(void)
{
	if (breakers == NULL)
		return true;
	EnsureLoaded();
	return pg_atomic_read_u32(&breakers->not_closed) == 0;
}

int
BreakerAdmit(const char *queue, int want, TimestampTz *held_until, bool *probing,
			 bool *fail_fast)
{
	char	   *key = NULL;
	bool		queue_fails_fast = false;

	/* the queue's key is looked up only while some breaker is not closed */
	if (want > 0 && !AllClosed())
		key = KeyOfQueue(queue, &queue_fails_fast);
	return BreakerAdmitKey(key, queue_fails_fast, want, held_until, probing,
						   fail_fast);
}

int
BreakerAdmitKey(const char *key, bool queue_fails_fast, int want,
				TimestampTz *held_until, bool *probing, bool *fail_fast)
{
	BreakerEntry *e;
	TimestampTz now;
	int			n = want;

	if (held_until)
		*held_until = 0;
	*probing = false;
	*fail_fast = false;
	if (key == NULL || want <= 0 || AllClosed())
		return want;
	now = GetCurrentTimestamp();
	LWLockAcquire(breakers->lock, LW_EXCLUSIVE);
	e = Find(key);
	if (e != NULL && e->state == BREAKER_OPEN)
	{
		if (now < e->next_probe_at)
		{
			n = 0;
			if (queue_fails_fast)
				*fail_fast = true;
			else if (held_until)
				*held_until = e->next_probe_at;
		}
		else
		{
			e->probes_out = 0;
			SetState(e, BREAKER_HALF_OPEN, "cooldown over");
		}
	}
	if (e != NULL && e->state == BREAKER_HALF_OPEN)
	{
		n = Min(want, Max(e->probes - e->probes_out, 0));
		e->probes_out += n;
		*probing = true;
		/* the probes' outcomes close or open it, and wake the executors */
		if (n == 0 && held_until)
			*held_until = TimestampTzPlusMilliseconds(now, Min(e->cooldown_ms, PG_INT32_MAX));
	}
	LWLockRelease(breakers->lock);
	return n;
}

void
BreakerReturnProbes(const char *queue, int n)
{
	BreakerEntry *e;

	if (breakers == NULL || n <= 0 || pg_atomic_read_u32(&breakers->not_closed) == 0)
		return;
	LWLockAcquire(breakers->lock, LW_EXCLUSIVE);
	e = Find(KeyOfQueue(queue, NULL));
	if (e != NULL && e->state == BREAKER_HALF_OPEN)
		e->probes_out = Max(e->probes_out - n, 0);
	LWLockRelease(breakers->lock);
}

/*
 * Does a failure of this class count against the dependency?  The one
 * place that says which classes do (see the file header).
 */
static bool
CountsAgainst(const char *error_class)
{
	return error_class == NULL ||
		strcmp(error_class, "transient") == 0 ||
		strcmp(error_class, "timeout") == 0 ||
		strcmp(error_class, "worker_lost") == 0 ||
		strcmp(error_class, "unknown") == 0;
}

/*
 * An outcome waiting for its transaction to commit: a failed attempt
 * reported by a transaction that rolls back (an external worker's call, a
 * batch that could not commit and is run again) is not counted.  The
 * settings of a failure's key are read when it is reported: nothing is
 * read at commit.
 */
typedef enum OutcomeKind
{
	OUTCOME_FAILURE,			/* counts against the dependency */
	OUTCOME_SUCCESS,
	OUTCOME_NO_VERDICT			/* a probe back without a verdict */
} OutcomeKind;

typedef struct PendingOutcome
{
	int			level;			/* transaction nest level that reported it */
	OutcomeKind kind;
	char	   *key;
	TimestampTz at;
	char	   *message;
	bool		configured;		/* row: jobq.breakers' settings of key */
	BreakerRow	row;
} PendingOutcome;

static PendingOutcome *outcomes = NULL;	/* in TopTransactionContext */
static int	noutcomes = 0;
static int	outcomes_size = 0;

static void
ApplyFailure(PendingOutcome *o)
{
	BreakerEntry *e = Find(o->key);

	if (e == NULL)
		e = o->configured ?
			Create(o->key, o->row.threshold, o->row.window_ms, o->row.cooldown_ms, o->row.probes) :
			Create(o->key, DEFAULT_THRESHOLD, DEFAULT_WINDOW_MS, DEFAULT_COOLDOWN_MS, DEFAULT_PROBES);
	if (e == NULL)
		return;
	e->failures[e->ring_next] = o->at;
	e->ring_next = (e->ring_next + 1) % e->threshold;
	e->nfailures = Min(e->nfailures + 1, e->threshold);
	e->last_failure_at = o->at;
	if (o->message != NULL)
		strlcpy(e->last_error, o->message, sizeof(e->last_error));
	e->generation++;
	if (e->state == BREAKER_CLOSED && FailuresInWindow(e, o->at) >= e->threshold)
		Open(e, o->at, e->cooldown_ms, "failure threshold reached within the window");
	else if (e->state == BREAKER_HALF_OPEN)
		Open(e, o->at, e->cooldown_ms, "a probe failed");
}

/* The outcomes of a committed transaction, in the order reported. */
static void
ApplyOutcomes(void)
{
	int			i;

	LWLockAcquire(breakers->lock, LW_EXCLUSIVE);
	for (i = 0; i < noutcomes; i++)
	{
		PendingOutcome *o = &outcomes[i];
		BreakerEntry *e;

		if (o->kind == OUTCOME_FAILURE)
		{
			ApplyFailure(o);
			continue;
		}
		e = Find(o->key);
		if (e == NULL || e->state != BREAKER_HALF_OPEN)
			continue;
		if (o->kind == OUTCOME_SUCCESS)
			Close(e, "a probe succeeded");
		else
			e->probes_out = Max(e->probes_out - 1, 0);
	}
	LWLockRelease(breakers->lock);
}

static void
AddOutcome(OutcomeKind kind, const char *key, const JobqJobEvent *ev)
{
	PendingOutcome *o;
	MemoryContext oldcxt = MemoryContextSwitchTo(TopTransactionContext);

	if (noutcomes == outcomes_size)
	{
		outcomes_size = Max(outcomes_size * 2, 8);
		outcomes = outcomes == NULL ?
			palloc(sizeof(PendingOutcome) * outcomes_size) :
			repalloc(outcomes, sizeof(PendingOutcome) * outcomes_size);
	}
	o = &outcomes[noutcomes++];
	memset(o, 0, sizeof(*o));
	o->level = GetCurrentTransactionNestLevel();
	o->kind = kind;
	o->key = pstrdup(key);
	o->at = ev->finished_at != 0 ? ev->finished_at : GetCurrentTimestamp();
	o->message = ev->message != NULL ? pnstrdup(ev->message, BREAKER_ERROR_BYTES - 1) : NULL;
	if (kind == OUTCOME_FAILURE)
		o->configured = ScanBreakersTable(key, CopyRow, &o->row);
	MemoryContextSwitchTo(oldcxt);
}

void
BreakerNoteEvent(const JobqJobEvent *ev)
{
	OutcomeKind kind;

	if (breakers == NULL || ev->queue == NULL)
		return;
	switch (ev->event)
	{
		case JOBQ_EVENT_ATTEMPT_FAILED:
			kind = CountsAgainst(ev->error_class) ? OUTCOME_FAILURE : OUTCOME_NO_VERDICT;
			break;
		case JOBQ_EVENT_ATTEMPT_COMPLETED:
			kind = OUTCOME_SUCCESS;
			break;
		case JOBQ_EVENT_ATTEMPT_SNOOZED:
		case JOBQ_EVENT_ATTEMPT_RELEASED:
		case JOBQ_EVENT_ATTEMPT_CANCELLED:
			kind = OUTCOME_NO_VERDICT;
			break;
		default:
			return;
	}
	EnsureLoaded();
	/* while every breaker is closed only failures matter */
	if (kind != OUTCOME_FAILURE && pg_atomic_read_u32(&breakers->not_closed) == 0)
		return;
	AddOutcome(kind, job_key_id == ev->job_id && job_key != NULL ? job_key :
			   KeyOfQueue(ev->queue, NULL), ev);
}

/*
 * The key of one job that is not its queue's (an HTTP job's target host):
 * outcomes of job_id reported until BreakerJobKey(0, NULL) count against
 * key.  One job at a time: its caller records that job's outcome between
 * the two calls.
 */
void
BreakerJobKey(int64 job_id, const char *key)
{
	static MemoryContext cxt = NULL;

	if (cxt == NULL)
		cxt = AllocSetContextCreate(TopMemoryContext, "jobq breaker job key",
									ALLOCSET_SMALL_SIZES);
	MemoryContextReset(cxt);
	job_key = key != NULL ? MemoryContextStrdup(cxt, key) : NULL;
	job_key_id = key != NULL ? job_id : 0;
}

/* A subtransaction's outcomes go to its parent, or away with it. */
static void
BreakerSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i,
				kept = 0;

	if (noutcomes == 0)
		return;
	for (i = 0; i < noutcomes; i++)
	{
		if (outcomes[i].level >= level)
		{
			if (event == SUBXACT_EVENT_ABORT_SUB)
				continue;
			if (event == SUBXACT_EVENT_COMMIT_SUB)
				outcomes[i].level = level - 1;
		}
		outcomes[kept++] = outcomes[i];
	}
	noutcomes = kept;
}

/* ---- writing transitions to jobq.breakers ---- */

bool
BreakerPersistPending(void)
{
	return breakers != NULL && pg_atomic_read_u32(&breakers->dirty) > 0;
}

/*
 * Write this database's changed breakers to jobq.breakers.  Executor, in a
 * transaction of its own with SPI connected.  A breaker changed again while
 * it was being written stays marked, and is written again next time.
 */
void
BreakerPersist(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[7] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, TEXTOID, INT8OID};
	int			i;

	JobqKeptPlan(&plan,
				 "INSERT INTO jobq.breakers AS b (breaker_key, state, opened_at, next_probe_at,"
				 "                                last_failure_at, last_error, times_opened)"
				 " VALUES ($1, $2, $3, $4, $5, $6, $7)"
				 " ON CONFLICT (breaker_key) DO UPDATE"
				 "   SET state = EXCLUDED.state, opened_at = EXCLUDED.opened_at,"
				 "       next_probe_at = EXCLUDED.next_probe_at,"
				 "       last_failure_at = EXCLUDED.last_failure_at,"
				 "       last_error = EXCLUDED.last_error, times_opened = EXCLUDED.times_opened",
				 7, argtypes);
	for (i = 0; i < BREAKER_SLOTS; i++)
	{
		BreakerEntry copy;
		BreakerEntry *e = &breakers->entries[i];
		Datum		values[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

		LWLockAcquire(breakers->lock, LW_SHARED);
		if (e->dboid != MyDatabaseId || !e->dirty)
		{
			LWLockRelease(breakers->lock);
			continue;
		}
		memcpy(&copy, e, sizeof(copy));
		LWLockRelease(breakers->lock);

		values[0] = CStringGetTextDatum(copy.key);
		values[1] = CStringGetTextDatum(state_names[copy.state]);
		values[2] = TimestampTzGetDatum(copy.opened_at);
		nulls[2] = copy.opened_at == 0 ? 'n' : ' ';
		values[3] = TimestampTzGetDatum(copy.next_probe_at);
		nulls[3] = copy.next_probe_at == 0 ? 'n' : ' ';
		values[4] = TimestampTzGetDatum(copy.last_failure_at);
		nulls[4] = copy.last_failure_at == 0 ? 'n' : ' ';
		values[5] = CStringGetTextDatum(copy.last_error);
		nulls[5] = copy.last_error[0] == '\0' ? 'n' : ' ';
		values[6] = Int64GetDatum(copy.times_opened);
		JobqExecPlan(plan, values, nulls, SPI_OK_INSERT, 0);

		LWLockAcquire(breakers->lock, LW_EXCLUSIVE);
		if (e->dboid == MyDatabaseId && e->dirty && e->generation == copy.generation &&
			strcmp(e->key, copy.key) == 0)
		{
			e->dirty = false;
			pg_atomic_fetch_sub_u32(&breakers->dirty, 1);
		}
		LWLockRelease(breakers->lock);
	}
}

/* ---- configure_breaker, reset_breaker, trip_breaker: at commit ---- */

typedef struct PendingSet
{
	BreakerRow	row;
	struct PendingSet *next;
} PendingSet;

static PendingSet *pending_sets = NULL;

static void
ApplySet(BreakerRow *row)
{
	BreakerEntry *e;

	LWLockAcquire(breakers->lock, LW_EXCLUSIVE);
	e = Find(row->key);
	if (e == NULL && row->state == BREAKER_OPEN)
	{
		e = Create(row->key, row->threshold, row->window_ms, row->cooldown_ms, row->probes);
		if (e != NULL)
			e->times_opened = row->times_opened;
	}
	if (e != NULL)
	{
		e->threshold = Min(Max(row->threshold, 1), BREAKER_MAX_THRESHOLD);
		e->window_ms = row->window_ms;
		e->cooldown_ms = row->cooldown_ms;
		e->probes = Max(row->probes, 1);
		e->nfailures = Min(e->nfailures, e->threshold);
		e->ring_next = e->ring_next % e->threshold;
		e->generation++;
		if (row->state == BREAKER_OPEN && e->state != BREAKER_OPEN)
			Open(e, GetCurrentTimestamp(),
				 (row->next_probe_at - GetCurrentTimestamp()) / 1000, "trip_breaker");
		else if (row->state == BREAKER_OPEN)
			e->next_probe_at = row->next_probe_at;
		else if (row->state == BREAKER_CLOSED && e->state != BREAKER_CLOSED)
			Close(e, "reset_breaker");
		else if (row->state == BREAKER_CLOSED)
		{
			e->nfailures = 0;
			e->ring_next = 0;
		}
	}
	LWLockRelease(breakers->lock);
}

/* row (configure, reset or trip) reaches the live state at commit. */
void
BreakerSetAtCommit(const BreakerRow *row)
{
	PendingSet *p = MemoryContextAllocZero(TopTransactionContext, sizeof(PendingSet));

	p->row = *row;
	p->next = pending_sets;
	pending_sets = p;
}

static void
BreakerXactCallback(XactEvent event, void *arg)
{
	PendingSet *p;

	if (pending_sets == NULL && noutcomes == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			if (noutcomes > 0)
				ApplyOutcomes();
			for (p = pending_sets; p != NULL; p = p->next)
				ApplySet(&p->row);
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* freed with TopTransactionContext */
			pending_sets = NULL;
			outcomes = NULL;
			noutcomes = 0;
			outcomes_size = 0;
			break;
		default:
			break;
	}
}

void
BreakerRegisterCallbacks(void)
{
	RegisterXactCallback(BreakerXactCallback, NULL);
	RegisterSubXactCallback(BreakerSubXactCallback, NULL);
}

PG_FUNCTION_INFO_V1(jobq_breaker_states);

/* One output row of jobq._breaker_states(). */
static void
PutState(ReturnSetInfo *rsinfo, const char *key, BreakerEntry *e, BreakerRow *row)
{
	Datum		v[12];
	bool		n[12];
	TimestampTz now = GetCurrentTimestamp();

	memset(n, 0, sizeof(n));
	v[0] = CStringGetTextDatum(key);
	v[1] = CStringGetTextDatum(state_names[e ? e->state : row->state]);
	v[2] = Int32GetDatum(e ? FailuresInWindow(e, now) : 0);
	v[3] = Int32GetDatum(e ? e->threshold : row->threshold);
	v[4] = JobqMsInterval(e ? e->window_ms : row->window_ms);
	v[5] = JobqMsInterval(e ? e->cooldown_ms : row->cooldown_ms);
	v[6] = Int32GetDatum(e ? e->probes : row->probes);
#define TS(i, val) do { TimestampTz t_ = (val); n[i] = (t_ == 0); v[i] = TimestampTzGetDatum(t_); } while (0)
	TS(7, e ? e->opened_at : row->opened_at);
	TS(8, e ? e->next_probe_at : row->next_probe_at);
	TS(9, e ? e->last_failure_at : row->last_failure_at);
#undef TS
	if (e ? e->last_error[0] == '\0' : row->last_error == NULL)
		n[10] = true;
	else
		v[10] = CStringGetTextDatum(e ? e->last_error : row->last_error);
	v[11] = Int64GetDatum(e ? e->times_opened : row->times_opened);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
}

typedef struct StatesScan
{
	ReturnSetInfo *rsinfo;
	List	   *seen;			/* keys of rows written */
} StatesScan;

static void
PutTableRow(Datum *values, bool *nulls, void *arg)
{
	StatesScan *ss = (StatesScan *) arg;
	BreakerRow	row;
	BreakerEntry copy;
	BreakerEntry *e;

	RowFrom(values, nulls, &row);
	LWLockAcquire(breakers->lock, LW_SHARED);
	e = Find(row.key);
	if (e != NULL)
		memcpy(&copy, e, sizeof(copy));
	LWLockRelease(breakers->lock);
	PutState(ss->rsinfo, row.key, e ? &copy : NULL, &row);
	ss->seen = lappend(ss->seen, row.key);
}

/*
 * jobq._breaker_states(): every breaker of this database, live: the keys of
 * jobq.breakers and those in use without a row there.
 */
Datum
jobq_breaker_states(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StatesScan	ss;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (breakers == NULL)
		return (Datum) 0;
	EnsureLoaded();
	ss.rsinfo = rsinfo;
	ss.seen = NIL;
	(void) ScanBreakersTable(NULL, PutTableRow, &ss);
	for (i = 0; i < BREAKER_SLOTS; i++)
	{
		BreakerEntry copy;
		ListCell   *lc;
		bool		listed = false;

		LWLockAcquire(breakers->lock, LW_SHARED);
		memcpy(&copy, &breakers->entries[i], sizeof(copy));
		LWLockRelease(breakers->lock);
		if (copy.dboid != MyDatabaseId)
			continue;
		foreach(lc, ss.seen)
			listed |= strcmp((char *) lfirst(lc), copy.key) == 0;
		if (!listed)
			PutState(rsinfo, copy.key, &copy, NULL);
	}
	return (Datum) 0;
}
