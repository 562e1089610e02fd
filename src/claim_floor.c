/*-------------------------------------------------------------------------
 *
 * claim_floor.c
 *	  Where a queue's claim scan starts: past the claim-index entries that
 *	  an earlier scan proved gone for good.
 *
 * Why.  A claim walks jobs_active_claim_idx in claim order from the front
 * of its queue.  Every claimed job leaves the entry of its pending version
 * behind until VACUUM removes it, and VACUUM cannot while a transaction
 * older than the claim is open (a long report, pg_dump, a session idle in
 * transaction).  The entries pile up at the front of the queue and every
 * claim fetches each one's heap tuple only to find it invisible: with a
 * REPEATABLE READ snapshot held for 60 s under load, 100,000 of them, and
 * three quarters of both cores went into claim scans.  The index's own
 * remedy (kill_prior_tuple) cannot act: the old snapshot may still read
 * those versions.
 *
 * What.  An entry whose versions were all deleted by committed transactions
 * (or inserted by aborted ones) is invisible to every snapshot taken from
 * now on: no later claim can take it, whatever older snapshots still see.
 * So a claim scan that finds a run of such entries where it starts records
 * where the run ends (the floor, a claim-order key) and later scans of the
 * queue start there.  One scan at a time raises a queue's floor: it holds
 * the entry's raise ticket.
 *
 * What keeps it right.  A new entry can appear below the floor: a submit
 * with a higher priority or an earlier run_at, a retry, a release,
 * retry_now, requeue_dead.  Each of them calls ClaimFloorNote (SQL:
 * jobq._claim_floor_note) after its index entry is in.  The note lowers the
 * floor to the entry's key and, while a raise is under way, makes the raise
 * stop there.  Noting after the insertion closes the race with a scan in
 * progress: a scan either reads the new entry (it is not gone, the raise
 * stops at it) or passed its place before it was inserted, and then the
 * note comes after the raise began: it lowers what the raise would set.
 * A job not due yet may be passed: the entry keeps the lowest key and the
 * earliest run_at of the jobs passed, and the first claim whose time
 * reaches that run_at lowers the floor back to that key, as a note would.
 *
 * Nothing but jobq writes jobs_active (user triggers and rules are refused:
 * ddl_guard.c), so the key noted is the key written.  (Known limit: a floor
 * brought back to a job passed while not due rewinds to the lowest such
 * job, which may be far back.)
 * A writer of pending entries that forgot to note would make its job wait,
 * not vanish: every 10 s the raising scan starts from the front again (or,
 * when that scan is long because an old snapshot keeps many gone entries,
 * 100 times as seldom as it lasts, at least every 10 minutes: 1% of a core).
 *
 * The table lives in shared memory, one entry per (database, queue) in use,
 * at most CLAIM_FLOORS; a queue without an entry (table full, name longer
 * than NAMEDATALEN - 1, jobq not preloaded) is scanned from the front as
 * before.  Lowering a floor is always safe, so an entry is evicted, reset
 * or missed without harm.
 *
 * IDENTIFICATION
 *	  src/claim_floor.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "claim_floor.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define CLAIM_FLOORS 256		/* entries: (database, queue) pairs in use */
#define CLAIM_FLOOR_PROBES 8	/* open addressing: slots looked at per key */
#define CLAIM_FLOOR_RESCAN_MS 10000 /* a raise starts from the front this often, */
#define CLAIM_FLOOR_RESCAN_COST 100 /* or 100x as seldom as such a scan lasts */
#define CLAIM_FLOOR_RESCAN_MAX_MS 600000
/*
 * A raise is taken over only when this old: its scan ended in an error in a
 * backend that has not claimed since (a backend abandons its own orphaned
 * raise at its next claim), or its backend is gone.  Never sooner: a long
 * scan taken over would be started again, and again.
 */
#define CLAIM_RAISE_STALE_MS 60000

/*
 * One queue's floor.  Protected by ClaimFloorTable.mutex, like every field
 * of the table: each critical section is a few comparisons and copies.
 */
typedef struct ClaimFloorEntry
{
	Oid			dboid;			/* InvalidOid: free */
	uint32		queue_hash;
	char		queue[NAMEDATALEN];
	Oid			indexoid;		/* claim index the keys belong to */
	bool		has_floor;		/* false: scan from the front */
	JobqClaimKey floor;			/* entries before this are gone */
	TimestampTz rescanned_at;	/* last raise that started from the front */
	int64		rescan_ms;		/* interval between such raises */
	uint64		raise_ticket;	/* 0: no raise under way */
	TimestampTz raise_started_at;
	bool		noted_in_raise; /* a note arrived during the raise ... */
	JobqClaimKey noted_low;		/* ... and this is the lowest key noted */
	bool		has_passed;		/* the floor passed jobs not due yet ... */
	JobqClaimKey passed_low;	/* ... the lowest of their keys ... */
	TimestampTz passed_due_at;	/* ... and the earliest of their run_at */
	TimestampTz used_at;		/* eviction: least recently used goes */
} ClaimFloorEntry;

typedef struct ClaimFloorTable
{
	slock_t		mutex;
	uint64		next_ticket;
	ClaimFloorEntry entries[CLAIM_FLOORS];
} ClaimFloorTable;

static ClaimFloorTable *floors = NULL;

/* This backend's raise under way (its scan may have ended in an error). */
static uint64 my_raise_ticket = 0;
static char my_raise_queue[NAMEDATALEN];

Size
ClaimFloorShmemSize(void)
{
	return sizeof(ClaimFloorTable);
}

/* From the shmem startup hook, holding AddinShmemInitLock. */
void
ClaimFloorShmemInit(void)
{
	bool		found;

	floors = ShmemInitStruct("jobq claim floors", sizeof(ClaimFloorTable), &found);
	if (!found)
	{
		memset(floors, 0, sizeof(ClaimFloorTable));
		SpinLockInit(&floors->mutex);
	}
}

/* Claim order: priority DESC, run_at, id. */
int
JobqClaimKeyCompare(const JobqClaimKey *a, const JobqClaimKey *b)
{
	if (a->priority != b->priority)
		return a->priority > b->priority ? -1 : 1;
	if (a->run_at != b->run_at)
		return a->run_at < b->run_at ? -1 : 1;
	if (a->id != b->id)
		return a->id < b->id ? -1 : 1;
	return 0;
}

static uint32
QueueHash(const char *queue)
{
	return hash_combine(hash_bytes((const unsigned char *) queue, strlen(queue)),
						(uint32) MyDatabaseId);
}

/*
 * The entry of (MyDatabaseId, queue), or NULL; with create, a free or the
 * least recently used one of its probe window, taken over.  Caller holds
 * the mutex.
 */
static ClaimFloorEntry *
FindEntry(uint32 hash, const char *queue, bool create)
{
	ClaimFloorEntry *victim = NULL;
	int			i;

	for (i = 0; i < CLAIM_FLOOR_PROBES; i++)
	{
		ClaimFloorEntry *e = &floors->entries[(hash + i) % CLAIM_FLOORS];

		if (e->dboid == MyDatabaseId && e->queue_hash == hash &&
			strcmp(e->queue, queue) == 0)
			return e;
		if (!create)
			continue;
		if (victim == NULL ||
			(victim->dboid != InvalidOid &&
			 (e->dboid == InvalidOid || e->used_at < victim->used_at)))
			victim = e;
	}
	if (!create)
		return NULL;
	memset(victim, 0, sizeof(ClaimFloorEntry));
	victim->dboid = MyDatabaseId;
	victim->queue_hash = hash;
	strlcpy(victim->queue, queue, NAMEDATALEN);
	return victim;
}

static bool
Usable(const char *queue)
{
	return floors != NULL && OidIsValid(MyDatabaseId) && strlen(queue) < NAMEDATALEN;
}

/*
 * No claim may start past key: lower the floor to it, and make a raise under
 * way stop there too.  Caller holds the mutex.
 */
static void
NoteLocked(ClaimFloorEntry *e, const JobqClaimKey *key)
{
	if (e->has_floor && JobqClaimKeyCompare(key, &e->floor) < 0)
		e->floor = *key;
	if (e->raise_ticket != 0 &&
		(!e->noted_in_raise || JobqClaimKeyCompare(key, &e->noted_low) < 0))
	{
		e->noted_low = *key;
		e->noted_in_raise = true;
	}
}

/* Give up a raise if it is still the entry's: its floor stays as it was. */
static void
Abandon(const char *queue, uint64 ticket)
{
	uint32		hash = QueueHash(queue);
	ClaimFloorEntry *e;

	SpinLockAcquire(&floors->mutex);
	e = FindEntry(hash, queue, false);
	if (e != NULL && e->raise_ticket == ticket)
		e->raise_ticket = 0;
	SpinLockRelease(&floors->mutex);
}

/*
 * Before a claim scan of queue in claim index indexoid: where to start
 * (fs->has_floor, fs->floor) and whether this scan raises the floor
 * (fs->ticket != 0; it then reports what it saw with ClaimFloorSaw* and
 * calls ClaimFloorEnd).
 */
void
ClaimFloorBegin(Oid indexoid, const char *queue, TimestampTz due,
				JobqClaimFloorScan *fs)
{
	TimestampTz now;
	uint32		hash;
	ClaimFloorEntry *e;

	memset(fs, 0, sizeof(JobqClaimFloorScan));
	if (!Usable(queue))
		return;
	if (my_raise_ticket != 0)
	{
		/* our previous claim scan ended in an error before its end */
		Abandon(my_raise_queue, my_raise_ticket);
		my_raise_ticket = 0;
	}
	now = GetCurrentTimestamp();
	hash = QueueHash(queue);

	SpinLockAcquire(&floors->mutex);
	e = FindEntry(hash, queue, true);
	if (e->indexoid != indexoid)
	{
		/* new entry, or the extension was created again: keys mean nothing */
		e->indexoid = indexoid;
		e->has_floor = false;
		e->has_passed = false;
		e->raise_ticket = 0;
	}
	e->used_at = now;
	if (e->has_passed && due >= e->passed_due_at)
	{
		/* a job the floor passed is due: back to it, as a note would */
		NoteLocked(e, &e->passed_low);
		e->has_passed = false;
	}
	if (e->raise_ticket == 0 ||
		TimestampDifferenceExceeds(e->raise_started_at, now, CLAIM_RAISE_STALE_MS))
	{
		fs->ticket = ++floors->next_ticket;
		e->raise_ticket = fs->ticket;
		e->raise_started_at = now;
		e->noted_in_raise = false;
		fs->from_front = !e->has_floor ||
			TimestampDifferenceExceeds(e->rescanned_at, now,
									   (int) Max(e->rescan_ms, CLAIM_FLOOR_RESCAN_MS));
	}
	if (e->has_floor && !fs->from_front)
	{
		fs->has_floor = true;
		fs->floor = e->floor;
	}
	SpinLockRelease(&floors->mutex);
	if (fs->ticket != 0)
	{
		my_raise_ticket = fs->ticket;
		strlcpy(my_raise_queue, queue, NAMEDATALEN);
	}
}

/* The raising scan met an entry that is not gone: the floor stops there. */
void
ClaimFloorSawLive(JobqClaimFloorScan *fs, const JobqClaimKey *key)
{
	if (!fs->stopped)
	{
		fs->stopped = true;
		fs->stop = *key;
	}
}

/*
 * The raising scan met a job not due yet (run_at after the claim's due):
 * the floor may pass it, remembering when it must come back to it.
 */
void
ClaimFloorSawNotDue(JobqClaimFloorScan *fs, const JobqClaimKey *key)
{
	if (fs->stopped)
		return;
	if (!fs->saw_not_due || JobqClaimKeyCompare(key, &fs->not_due_low) < 0)
		fs->not_due_low = *key;
	if (!fs->saw_not_due || key->run_at < fs->not_due_at)
		fs->not_due_at = key->run_at;
	fs->saw_not_due = true;
}

/* The raising scan met an entry that is gone for good. */
void
ClaimFloorSawGone(JobqClaimFloorScan *fs, const JobqClaimKey *key)
{
	Assert(!fs->stopped);
	fs->saw_gone = true;
	fs->last_gone = *key;
}

/*
 * After the raising scan: the floor becomes the first entry it saw that is
 * not gone (or its last gone entry, when all were), unless a note lowered
 * it meanwhile.  A scan whose raise was taken over, or whose entry was
 * evicted, changes nothing.
 */
void
ClaimFloorEnd(const char *queue, JobqClaimFloorScan *fs)
{
	JobqClaimKey floor = {0};
	ClaimFloorEntry *e;
	TimestampTz now;
	uint32		hash;

	if (fs->ticket == 0)
		return;
	now = GetCurrentTimestamp();
	hash = QueueHash(queue);
	if (fs->stopped)
		floor = fs->stop;
	else if (fs->saw_gone)
		floor = fs->last_gone;

	SpinLockAcquire(&floors->mutex);
	e = FindEntry(hash, queue, false);
	if (e != NULL && e->raise_ticket == fs->ticket)
	{
		if (fs->stopped || fs->saw_gone)
		{
			if (e->noted_in_raise && JobqClaimKeyCompare(&e->noted_low, &floor) < 0)
				floor = e->noted_low;
			e->floor = floor;
			e->has_floor = true;
			if (fs->saw_not_due && JobqClaimKeyCompare(&fs->not_due_low, &floor) < 0)
			{
				/* passed jobs not due yet: back to them when the first is */
				if (!e->has_passed ||
					JobqClaimKeyCompare(&fs->not_due_low, &e->passed_low) < 0)
					e->passed_low = fs->not_due_low;
				if (!e->has_passed || fs->not_due_at < e->passed_due_at)
					e->passed_due_at = fs->not_due_at;
				e->has_passed = true;
			}
			if (fs->from_front)
			{
				/* a long scan from the front (an old snapshot): seldom */
				e->rescanned_at = now;
				e->rescan_ms = Min(CLAIM_FLOOR_RESCAN_COST *
								   ((now - e->raise_started_at) / 1000),
								   CLAIM_FLOOR_RESCAN_MAX_MS);
			}
		}
		e->raise_ticket = 0;
	}
	SpinLockRelease(&floors->mutex);
	fs->ticket = 0;
	my_raise_ticket = 0;
}

/*
 * A pending entry with this key was just added to queue's claim index
 * (its transaction may still abort: lowering a floor is always safe).
 */
static void
ClaimFloorNote(const char *queue, int32 priority, TimestampTz run_at, int64 id)
{
	JobqClaimKey key;
	ClaimFloorEntry *e;
	uint32		hash;

	if (!Usable(queue))
		return;
	key.priority = priority;
	key.run_at = run_at;
	key.id = id;
	hash = QueueHash(queue);

	SpinLockAcquire(&floors->mutex);
	e = FindEntry(hash, queue, false);
	if (e != NULL)
		NoteLocked(e, &key);
	SpinLockRelease(&floors->mutex);
}

/*
 * A job with this key was written to jobs_active as pending (after the
 * write), by any path: claims through the table AM start at the floor
 * whoever wrote the job.
 */
void
ClaimFloorNoteWritten(const char *queue, int32 priority, TimestampTz run_at, int64 id)
{
	if (floors == NULL)
		return;
	ClaimFloorNote(queue, priority, run_at, id);
}

PG_FUNCTION_INFO_V1(jobq_claim_floor_note);

/*
 * jobq._claim_floor_note(queue text, priority int, run_at timestamptz,
 *						  id bigint): for the SQL functions that make a
 * job pending (retry, release, retry_now, requeue_dead), after their write.
 */
Datum
jobq_claim_floor_note(PG_FUNCTION_ARGS)
{
	ClaimFloorNoteWritten(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_INT32(1),
						  PG_GETARG_TIMESTAMPTZ(2), PG_GETARG_INT64(3));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(jobq_claim_floor);

/*
 * jobq._claim_floor(queue text, OUT priority int, OUT run_at timestamptz,
 *					 OUT id bigint): where the next claim of queue in this
 * database starts; NULLs when at the front.  For tests and diagnosis.
 */
Datum
jobq_claim_floor(PG_FUNCTION_ARGS)
{
	char	   *queue = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TupleDesc	desc;
	Datum		values[3] = {0};
	bool		nulls[3] = {true, true, true};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "jobq: return type must be a row type");
	if (Usable(queue))
	{
		uint32		hash = QueueHash(queue);
		ClaimFloorEntry *e;

		SpinLockAcquire(&floors->mutex);
		e = FindEntry(hash, queue, false);
		if (e != NULL && e->has_floor)
		{
			values[0] = Int32GetDatum(e->floor.priority);
			values[1] = TimestampTzGetDatum(e->floor.run_at);
			values[2] = Int64GetDatum(e->floor.id);
			nulls[0] = nulls[1] = nulls[2] = false;
		}
		SpinLockRelease(&floors->mutex);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
