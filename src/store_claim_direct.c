/*-------------------------------------------------------------------------
 *
 * store_claim_direct.c
 *	  The claim of an unlimited queue done with the table AM directly: an
 *	  index scan in claim order and a non-waiting heap update per job.
 *
 * It is the statement
 *
 *	UPDATE jobq.jobs_active a
 *	   SET state = 'running', attempt = a.attempt + 1,
 *		   started_at = now(), last_heartbeat = now(),
 *		   lease_expires_at = now() + $lease, worker = $worker,
 *		   claimed_by = $token
 *	 WHERE a.id = ANY (ARRAY(
 *		   SELECT c.id FROM jobq.jobs_active c
 *			WHERE c.queue = $queue AND c.state = 'pending' AND c.run_at <= $due
 *			  AND NOT EXISTS (the queue is paused or limited)
 *			ORDER BY c.priority DESC, c.run_at, c.id
 *			LIMIT $max FOR UPDATE SKIP LOCKED))
 *	RETURNING ...
 *
 * without the executor: the statement was the larger part of an executor's
 * time for no-op jobs, much of it executor start-up and looking every
 * locked row up again by id.  Here each candidate, in claim-index order,
 * is updated without waiting: a row another transaction holds (a
 * concurrent claim, jobq.cancel's FOR UPDATE) or changed since our
 * snapshot is skipped, as SKIP LOCKED skips it.  READ COMMITTED
 * semantics, a fresh snapshot per claim, as the statement had.  With
 * jobq.direct_access off the caller runs the statement instead
 * (JobqDirectAccess).
 *
 * IDENTIFICATION
 *	  src/store_claim_direct.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/itup.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "storage/bufmgr.h"
#include "utils/timestamp.h"

/* Columns of jobq.jobs_active the claim reads or writes (0-based). */
typedef struct ClaimColumns
{
	Oid			relid;			/* of the table they were read from */
	int			natts;
	int			id,
				queue,
				state,
				priority,
				run_at,
				attempt,
				owner,
				handler,
				payload,
				timeout,
				started_at,
				last_heartbeat,
				lease_expires_at,
				worker,
				claimed_by;
} ClaimColumns;

static ClaimColumns cols = {InvalidOid};

/* 0-based, for tts_values */
#define ColumnIndex(desc, attname) (JobqAttnum((desc), (attname), false) - 1)

static void
ReadColumns(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (cols.relid == RelationGetRelid(rel) && cols.natts == desc->natts)
		return;
	cols.id = ColumnIndex(desc, "id");
	cols.queue = ColumnIndex(desc, "queue");
	cols.state = ColumnIndex(desc, "state");
	cols.priority = ColumnIndex(desc, "priority");
	cols.run_at = ColumnIndex(desc, "run_at");
	cols.attempt = ColumnIndex(desc, "attempt");
	cols.owner = ColumnIndex(desc, "owner");
	cols.handler = ColumnIndex(desc, "handler");
	cols.payload = ColumnIndex(desc, "payload");
	cols.timeout = ColumnIndex(desc, "timeout");
	cols.started_at = ColumnIndex(desc, "started_at");
	cols.last_heartbeat = ColumnIndex(desc, "last_heartbeat");
	cols.lease_expires_at = ColumnIndex(desc, "lease_expires_at");
	cols.worker = ColumnIndex(desc, "worker");
	cols.claimed_by = ColumnIndex(desc, "claimed_by");
	cols.natts = desc->natts;
	cols.relid = RelationGetRelid(rel);
}

/*
 * May the queue be claimed by this unlimited claim: it is not paused, and
 * has neither a concurrency nor a rate limit (those go through jobq._claim;
 * *limited is set).  A queue that does not exist has no jobs to give: true,
 * as the statement's NOT EXISTS had it.
 */
static bool
QueueOpenAndUnlimited(const char *queue, Snapshot snapshot, bool *limited)
{
	JobqQueueRow row;

	if (!JobqReadQueue(queue, snapshot, &row))
		return true;
	*limited = row.limited;
	return !row.paused && !row.limited;
}

/* One range of claim order, as index scan keys on jobs_active_claim_idx. */
#define MAX_RANGE_KEYS 4
typedef struct ClaimRange
{
	int			nkeys;
	ScanKeyData keys[MAX_RANGE_KEYS];
} ClaimRange;

/* Index columns: (queue, priority DESC, run_at, id). */
#define CLAIM_IDX_QUEUE 1
#define CLAIM_IDX_PRIORITY 2
#define CLAIM_IDX_RUN_AT 3
#define CLAIM_IDX_ID 4

static void
RangeKey(ClaimRange *r, AttrNumber attno, StrategyNumber strategy,
		 Oid collation, RegProcedure proc, Datum arg)
{
	Assert(r->nkeys < MAX_RANGE_KEYS);
	ScanKeyEntryInitialize(&r->keys[r->nkeys++], 0, attno, strategy, InvalidOid,
						   collation, proc, arg);
}

/*
 * The ranges a claim scans, in claim order: the queue from its front, or,
 * from a floor (p, r, i) on, the rest of priority p at run_at r (id >= i),
 * the rest of priority p (run_at > r), then the lower priorities.  Simple
 * keys only: each range is one descent to its first entry.
 */
static int
ClaimRanges(Relation claim_idx, const char *queue, const JobqClaimFloorScan *fs,
			ClaimRange *ranges)
{
	Datum		q = CStringGetTextDatum(queue);
	Oid			coll = claim_idx->rd_indcollation[CLAIM_IDX_QUEUE - 1];
	int			i;

	memset(ranges, 0, sizeof(ClaimRange) * 3);
	for (i = 0; i < 3; i++)
		RangeKey(&ranges[i], CLAIM_IDX_QUEUE, BTEqualStrategyNumber, coll, F_TEXTEQ, q);
	if (!fs->has_floor)
		return 1;

	RangeKey(&ranges[0], CLAIM_IDX_PRIORITY, BTEqualStrategyNumber, InvalidOid,
			 F_INT4EQ, Int32GetDatum(fs->floor.priority));
	RangeKey(&ranges[0], CLAIM_IDX_RUN_AT, BTEqualStrategyNumber, InvalidOid,
			 F_TIMESTAMPTZ_EQ, TimestampTzGetDatum(fs->floor.run_at));
	RangeKey(&ranges[0], CLAIM_IDX_ID, BTGreaterEqualStrategyNumber, InvalidOid,
			 F_INT8GE, Int64GetDatum(fs->floor.id));

	RangeKey(&ranges[1], CLAIM_IDX_PRIORITY, BTEqualStrategyNumber, InvalidOid,
			 F_INT4EQ, Int32GetDatum(fs->floor.priority));
	RangeKey(&ranges[1], CLAIM_IDX_RUN_AT, BTGreaterStrategyNumber, InvalidOid,
			 F_TIMESTAMPTZ_GT, TimestampTzGetDatum(fs->floor.run_at));

	/* priority is DESC in the index: lower priorities come after */
	RangeKey(&ranges[2], CLAIM_IDX_PRIORITY, BTLessStrategyNumber, InvalidOid,
			 F_INT4LT, Int32GetDatum(fs->floor.priority));
	return 3;
}

/* The claim-order key of the index entry the scan is on. */
static void
EntryKey(IndexScanDesc scan, JobqClaimKey *key)
{
	bool		isnull;

	key->priority = DatumGetInt32(index_getattr(scan->xs_itup, CLAIM_IDX_PRIORITY,
												scan->xs_itupdesc, &isnull));
	key->run_at = DatumGetTimestampTz(index_getattr(scan->xs_itup, CLAIM_IDX_RUN_AT,
													scan->xs_itupdesc, &isnull));
	key->id = DatumGetInt64(index_getattr(scan->xs_itup, CLAIM_IDX_ID,
										  scan->xs_itupdesc, &isnull));
}

/*
 * Is the index entry at tid gone for good: every version of its HOT chain
 * deleted by a committed transaction or inserted by an aborted one?  Then
 * no snapshot taken from now on sees any of them (the floor may pass it).
 * Anything else (in progress, live, locked) is not gone.  The heap fetch
 * that just found nothing visible left tid's block pinned in the scan.
 */
static bool
EntryGone(Relation rel, IndexScanDesc scan, ItemPointer tid)
{
	IndexFetchHeapData *hf = (IndexFetchHeapData *) scan->xs_heapfetch;
	Buffer		buf = hf->xs_cbuf;
	BlockNumber blkno = ItemPointerGetBlockNumber(tid);
	OffsetNumber offnum = ItemPointerGetOffsetNumber(tid);
	TransactionId prev_xmax = InvalidTransactionId;
	bool		at_root = true;
	bool		gone = true;
	Page		page;

	if (!BufferIsValid(buf) || BufferGetBlockNumber(buf) != blkno)
		return false;
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	for (;;)
	{
		ItemId		lp;
		HeapTupleData tuple;
		TransactionId dead_after;
		HTSV_Result htsv;

		if (offnum < FirstOffsetNumber || offnum > PageGetMaxOffsetNumber(page))
			break;				/* truncated away */
		lp = PageGetItemId(page, offnum);
		if (ItemIdIsRedirected(lp) && at_root)
		{
			offnum = ItemIdGetRedirect(lp);
			at_root = false;
			continue;
		}
		if (!ItemIdIsNormal(lp))
			break;				/* pruned: nothing left of the chain */
		tuple.t_data = (HeapTupleHeader) PageGetItem(page, lp);
		tuple.t_len = ItemIdGetLength(lp);
		tuple.t_tableOid = RelationGetRelid(rel);
		ItemPointerSet(&tuple.t_self, blkno, offnum);
		if (at_root && HeapTupleIsHeapOnly(&tuple))
			break;				/* the slot went to another chain */
		if (TransactionIdIsValid(prev_xmax) &&
			!TransactionIdEquals(prev_xmax, HeapTupleHeaderGetXmin(tuple.t_data)))
			break;				/* the chain ends before this tuple */
		htsv = HeapTupleSatisfiesVacuumHorizon(&tuple, buf, &dead_after);
		if (htsv != HEAPTUPLE_DEAD && htsv != HEAPTUPLE_RECENTLY_DEAD)
		{
			gone = false;
			break;
		}
		if (!HeapTupleIsHotUpdated(&tuple))
			break;
		offnum = ItemPointerGetOffsetNumber(&tuple.t_data->t_ctid);
		prev_xmax = HeapTupleHeaderGetUpdateXid(tuple.t_data);
		at_root = false;
	}
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	return gone;
}

/*
 * What a claim writes into each job it takes, and the executor state the
 * new versions' index entries need.
 */
typedef struct ClaimWrite
{
	Relation	rel;
	Snapshot	snapshot;
	CommandId	cid;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *newslot;
	TimestampTz now;			/* started_at, last_heartbeat */
	Datum		running;
	Datum		lease_end;
	Datum		worker;
	bool		worker_null;
	int64		token;
	bool		token_null;
} ClaimWrite;

/*
 * The new versions' index entries are inserted without the "unchanged by
 * the update" hint, though the primary key's is: with it a full leaf page
 * tries a bottom-up deletion pass first, which costs more than it finds
 * here (the completion's lookup by id marks the old entries dead, and the
 * executors' VACUUM removes the rest; BENCHMARKS.md has the measurement).
 * No range table: none is needed.
 */
static void
ClaimWriteBegin(ClaimWrite *w, Relation rel, Snapshot snapshot, Interval *lease,
				const char *worker, int64 token, bool token_null)
{
	w->rel = rel;
	w->snapshot = snapshot;
	w->cid = GetCurrentCommandId(true);
	w->estate = CreateExecutorState();
	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, rel, 0, NULL, 0);
	ExecOpenIndices(w->rri, false);
	w->newslot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	w->now = GetCurrentTransactionStartTimestamp();
	w->running = CStringGetTextDatum("running");
	w->lease_end = DirectFunctionCall2(timestamptz_pl_interval,
									   TimestampTzGetDatum(w->now),
									   IntervalPGetDatum(lease));
	w->worker_null = (worker == NULL);
	w->worker = worker != NULL ? CStringGetTextDatum(worker) : (Datum) 0;
	w->token = token;
	w->token_null = token_null;
}

static void
ClaimWriteEnd(ClaimWrite *w)
{
	ExecDropSingleTupleTableSlot(w->newslot);
	ExecCloseIndices(w->rri);
	FreeExecutorState(w->estate);
}

/* The claimed job as the caller gets it; payload and handler copied into cxt. */
static void
FillClaimRow(ClaimWrite *w, JobqClaimRow *row, MemoryContext cxt)
{
	TupleTableSlot *s = w->newslot;
	MemoryContext oldcxt;

	row->id = DatumGetInt64(s->tts_values[cols.id]);
	row->attempt = DatumGetInt32(s->tts_values[cols.attempt]);
	row->owner = DatumGetObjectId(s->tts_values[cols.owner]);
	row->priority = DatumGetInt32(s->tts_values[cols.priority]);
	row->run_at = DatumGetTimestampTz(s->tts_values[cols.run_at]);
	row->lease_expires_at = DatumGetTimestampTz(w->lease_end);
	row->tid = s->tts_tid;		/* set by the update */
	row->timeout_null = s->tts_isnull[cols.timeout];
	if (!row->timeout_null)
		row->timeout = *DatumGetIntervalP(s->tts_values[cols.timeout]);
	/* detoasted while our snapshot is registered: the caller keeps it */
	oldcxt = MemoryContextSwitchTo(cxt);
	row->payload = PointerGetDatum(PG_DETOAST_DATUM_COPY(s->tts_values[cols.payload]));
	row->handler = s->tts_isnull[cols.handler] ? NULL :
		TextDatumGetCString(s->tts_values[cols.handler]);
	MemoryContextSwitchTo(oldcxt);
}

/* newslot := the running version of the pending job in slot */
static void
SetRunningVersion(ClaimWrite *w, TupleTableSlot *slot)
{
	TupleTableSlot *newslot = w->newslot;

	slot_getallattrs(slot);
	ExecClearTuple(newslot);
	memcpy(newslot->tts_values, slot->tts_values, sizeof(Datum) * cols.natts);
	memcpy(newslot->tts_isnull, slot->tts_isnull, sizeof(bool) * cols.natts);
	newslot->tts_values[cols.state] = w->running;
	newslot->tts_values[cols.attempt] =
		Int32GetDatum(DatumGetInt32(slot->tts_values[cols.attempt]) + 1);
	newslot->tts_values[cols.started_at] = TimestampTzGetDatum(w->now);
	newslot->tts_isnull[cols.started_at] = false;
	newslot->tts_values[cols.last_heartbeat] = TimestampTzGetDatum(w->now);
	newslot->tts_isnull[cols.last_heartbeat] = false;
	newslot->tts_values[cols.lease_expires_at] = w->lease_end;
	newslot->tts_isnull[cols.lease_expires_at] = false;
	newslot->tts_values[cols.worker] = w->worker;
	newslot->tts_isnull[cols.worker] = w->worker_null;
	newslot->tts_values[cols.claimed_by] = Int64GetDatum(w->token);
	newslot->tts_isnull[cols.claimed_by] = w->token_null;
	ExecStoreVirtualTuple(newslot);
}

/*
 * Has a transaction updated the version in slot, which our snapshot sees:
 * one in progress when the snapshot was taken (another claim, most often,
 * not committed yet), or one that committed or aborted since?  Read from
 * the tuple's header, which the visibility test just brought up to date,
 * without locking its page: the update that would find out takes the page
 * exclusively, and every claim walking past the rows others have just
 * claimed would queue on those pages' locks.  A row that is only locked (as
 * jobq.cancel and retry_now lock it) or has a multixact is left to the
 * update.  Skipping is what the update would do, bar the rare updater that
 * aborted since the snapshot: that job is claimable again at the next
 * claim, which *busy (set unless the updater is known to have committed)
 * makes soon.
 */
static bool
UpdatedSinceSeen(TupleTableSlot *slot, bool *busy)
{
	HeapTupleHeader tup;
	uint16		infomask;

	Assert(TTS_IS_BUFFERTUPLE(slot));
	tup = ((BufferHeapTupleTableSlot *) slot)->base.tuple->t_data;
	infomask = tup->t_infomask;
	if ((infomask & (HEAP_XMAX_INVALID | HEAP_XMAX_IS_MULTI)) ||
		HEAP_XMAX_IS_LOCKED_ONLY(infomask))
		return false;
	/* an updater known to have committed left nothing to come back for */
	if (!(infomask & HEAP_XMAX_COMMITTED))
		*busy = true;
	return true;
}

/*
 * Claim the pending job whose visible version is in slot (at tid): update
 * it to running as the claim statement does, with the new version's index
 * entries, and fill row.  The update does not wait: it fails on a row
 * another transaction holds or is changing (false, *busy set: its holder
 * may yet give it up) and on one changed since our snapshot (false), the
 * rows FOR UPDATE SKIP LOCKED skips.  No row lock is taken first (it would
 * cost a WAL record and a visit of the page per job); only an external
 * worker's claim that finds the row held tries one, see below.
 */
static bool
ClaimOneJob(ClaimWrite *w, TupleTableSlot *slot, ItemPointer tid,
			JobqClaimRow *row, MemoryContext cxt, bool *busy)
{
	TM_Result	res;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	bool		update_indexes;

	SetRunningVersion(w, slot);
	res = table_tuple_update(w->rel, tid, w->newslot, w->cid, w->snapshot,
							 InvalidSnapshot, false, &tmfd, &lockmode,
							 &update_indexes);
	if (res == TM_BeingModified && !w->token_null)
	{
		/*
		 * An executor's claim: held by another transaction (a row its own
		 * transaction holds, which a handler could have locked, is claimed
		 * next time, unseen), which may yet give it up: a row only locked,
		 * or one another claim took after our fetch (UpdatedSinceSeen skips
		 * those taken before).  One attempt is all it costs.
		 */
		*busy = true;
		return false;
	}
	if (res == TM_BeingModified)
	{
		/*
		 * Held: by another transaction, or only by a lock of our own (a
		 * row this transaction locked, as retry_now does, keeps the lock in
		 * its new version).  Locking without waiting tells them apart, as
		 * FOR UPDATE SKIP LOCKED would; the row locked (and read again into
		 * slot), the update cannot meet a conflict.
		 */
		res = table_tuple_lock(w->rel, tid, w->snapshot, slot, w->cid,
							   LockTupleExclusive, LockWaitSkip, 0, &tmfd);
		if (res == TM_WouldBlock)
			*busy = true;
		if (res != TM_Ok)
			return false;
		SetRunningVersion(w, slot);
		res = table_tuple_update(w->rel, tid, w->newslot, w->cid, w->snapshot,
								 InvalidSnapshot, true, &tmfd, &lockmode,
								 &update_indexes);
		if (res != TM_Ok)
			elog(ERROR, "jobq: unexpected result %d claiming a locked job", (int) res);
	}
	else if (res != TM_Ok)
		return false;
	if (update_indexes && w->rri->ri_NumIndices > 0)
	{
		list_free(ExecInsertIndexTuples(w->rri, w->newslot, w->estate, false, false,
										NULL, NIL));
		ResetPerTupleExprContext(w->estate);
	}
	FillClaimRow(w, row, cxt);
	return true;
}

int
StoreClaimDirect(const char *queue, int max_jobs, Interval *lease, const char *worker,
		  int64 token, bool token_null, TimestampTz due,
		  JobqClaimRow *rows, MemoryContext cxt, bool *busy)
{
	Snapshot	snapshot;
	Relation	rel;
	Relation	claim_idx;
	ClaimWrite	w;
	JobqClaimFloorScan fs;
	ClaimRange	ranges[3];
	int			nranges;
	int			range;
	TupleTableSlot *slot;
	int			n = 0;
	bool		limited = false;

	if (max_jobs < 1)
		return 0;

	/* a new statement would see our own earlier writes and every commit */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());

	if (!QueueOpenAndUnlimited(queue, snapshot, &limited))
	{
		UnregisterSnapshot(snapshot);
		return limited ? -2 : 0;
	}

	rel = table_open(JobqRelid("jobs_active"), RowExclusiveLock);
	if (!JobqDirectAccess(rel))
	{
		/* jobq.direct_access is off: the caller claims through SQL */
		table_close(rel, NoLock);
		UnregisterSnapshot(snapshot);
		return -1;
	}
	claim_idx = index_open(JobqRelid("jobs_active_claim_idx"), RowExclusiveLock);
	ReadColumns(rel);
	ClaimWriteBegin(&w, rel, snapshot, lease, worker, token, token_null);

	/*
	 * The scan starts at the queue's floor (claim_floor.c), in up to three
	 * ranges of claim order; without a floor, at the front of the queue.
	 * run_at <= $due is tested here, on the index tuple, so that the floor
	 * is told about every entry.
	 */
	ClaimFloorBegin(RelationGetRelid(claim_idx), queue, due, &fs);
	nranges = ClaimRanges(claim_idx, queue, &fs, ranges);
	slot = table_slot_create(rel, NULL);

	for (range = 0; range < nranges && n < max_jobs; range++)
	{
		/* a scan's number of keys is fixed when it begins */
		IndexScanDesc scan = index_beginscan(rel, claim_idx, snapshot,
											 ranges[range].nkeys, 0);

		scan->xs_want_itup = true;
		index_rescan(scan, ranges[range].keys, ranges[range].nkeys, NULL, 0);
		while (n < max_jobs)
		{
			ItemPointer next = index_getnext_tid(scan, ForwardScanDirection);
			ItemPointerData tid;
			JobqClaimKey key;

			if (next == NULL)
				break;
			tid = *next;
			EntryKey(scan, &key);
			if (key.run_at > due)
			{
				ClaimFloorSawNotDue(&fs, &key);
				continue;
			}
			if (!index_fetch_heap(scan, slot))
			{
				if (fs.ticket != 0 && !fs.stopped)
				{
					if (EntryGone(rel, scan, &tid))
						ClaimFloorSawGone(&fs, &key);
					else
						ClaimFloorSawLive(&fs, &key);
				}
				continue;
			}
			/* visible: a job we take, or one we skip that is not gone */
			ClaimFloorSawLive(&fs, &key);
			/* the visible version: the entry's TID is its HOT chain's root */
			tid = slot->tts_tid;

			slot_getallattrs(slot);
			if (slot->tts_isnull[cols.state] ||
				!JobqTextEquals(slot->tts_values[cols.state], "pending"))
				continue;
			if (UpdatedSinceSeen(slot, busy))
				continue;
			if (ClaimOneJob(&w, slot, &tid, &rows[n], cxt, busy))
				n++;
		}
		index_endscan(scan);
	}
	ClaimFloorEnd(queue, &fs);

	ExecDropSingleTupleTableSlot(slot);
	ClaimWriteEnd(&w);
	/* the locks stay until the end of the transaction, as a statement's do */
	index_close(claim_idx, NoLock);
	table_close(rel, NoLock);
	UnregisterSnapshot(snapshot);
	return n;
}
