/*-------------------------------------------------------------------------
 *
 * store_complete.c
 *	  Fenced completion: a job leaves jobq.jobs_active for jobq.jobs_final
 *	  with its attempt row, only while (id, attempt) is still its running
 *	  lease.  For executors (a batch's jobs: the delete inside each job's
 *	  subtransaction, the rows written once per batch) and external workers
 *	  (jobq.complete), with the table access method directly, or with
 *	  the equivalent SQL statements when jobq.direct_access is off.
 *
 * IDENTIFICATION
 *	  src/store_complete.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"
#include "bulk_insert.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "storage/bufmgr.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

static SPIPlanPtr plan_take_completed = NULL;
static SPIPlanPtr plan_take_completed_nowait = NULL;
static SPIPlanPtr plan_lease_running = NULL;
static SPIPlanPtr plan_record_completed = NULL;
static Oid	jobs_active_array_type = InvalidOid;

/*
 * A condition for the fenced statements below: skip the row rather than
 * wait when another transaction holds it.
 */
#define SKIP_LOCKED_BY_ID \
	" AND a.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT l.id FROM jobq.jobs_active l" \
	"   WHERE l.id OPERATOR(pg_catalog.=) $1 FOR UPDATE SKIP LOCKED))"

/*
 * Fenced completion in one step: the job of lease (id, attempt) becomes
 * completed with result, and its attempt row is written.  False, changing
 * nothing, when that lease is no longer the job's current running lease.
 * executor_lease false (jobq.complete, external workers): also false for a
 * lease an executor holds, whose handler's writes would otherwise be thrown
 * away by its own fenced completion.
 *
 * busy not NULL (an executor's own completion): never wait for another
 * transaction's lock on the row; instead return false with *busy set when
 * the lease may still be running (see StoreLeaseRunning).  An executor that
 * waited there, holding the rows of its whole batch, could deadlock with a
 * user's statement cancelling several jobs, and lose the batch.
 *
 * No executor needs waking for the slot this frees in a concurrency-limited
 * queue: external workers hold jobs of external queues only (jobq.claim
 * refuses the others), and an executor claims the next job itself.
 */
bool
StoreComplete(int64 id, int32 attempt, Jsonb *result, bool executor_lease,
			  bool *busy)
{
	JobqCompletions acc;

	acc.n = 0;
	if (!StoreTakeCompleted(id, attempt, NULL, result, executor_lease, &acc,
							CurrentMemoryContext, busy))
		return false;
	StoreRecordCompleted(&acc);
	return true;
}

/*
 * jobs_active, for the direct-access completion below: its OID is kept
 * from call to call, and checked to still name jobq.jobs_active whenever
 * it is opened (backends other than executors outlive DROP and CREATE
 * EXTENSION).  The primary key comes from the relcache each time.
 */
static Oid	jobs_active_relid = InvalidOid;
static AttrNumber jobs_active_id_attno;
static AttrNumber jobs_active_attempt_attno;
static AttrNumber jobs_active_state_attno;
static AttrNumber jobs_active_claimed_by_attno;

static void
LookupJobsActive(void)
{
	Oid			relid = JobqRelid("jobs_active");

	jobs_active_id_attno = get_attnum(relid, "id");
	jobs_active_attempt_attno = get_attnum(relid, "attempt");
	jobs_active_state_attno = get_attnum(relid, "state");
	jobs_active_claimed_by_attno = get_attnum(relid, "claimed_by");
	if (jobs_active_id_attno == InvalidAttrNumber ||
		jobs_active_attempt_attno == InvalidAttrNumber ||
		jobs_active_state_attno == InvalidAttrNumber ||
		jobs_active_claimed_by_attno == InvalidAttrNumber)
		elog(ERROR, "jobq: jobq.jobs_active lacks column id, attempt, state or claimed_by");
	jobs_active_relid = relid;
}

static Relation
OpenJobsActive(LOCKMODE lockmode)
{
	Relation	rel = NULL;

	if (OidIsValid(jobs_active_relid))
	{
		rel = try_table_open(jobs_active_relid, lockmode);
		if (rel != NULL &&
			(strcmp(RelationGetRelationName(rel), "jobs_active") != 0 ||
			 RelationGetNamespace(rel) != get_namespace_oid(JOBQ_SCHEMA_NAME, true)))
		{
			table_close(rel, lockmode);
			rel = NULL;
		}
	}
	if (rel == NULL)
	{
		LookupJobsActive();
		rel = table_open(jobs_active_relid, lockmode);
	}
	return rel;
}

/* Is the row in slot job id's? */
static bool
SlotIsJob(TupleTableSlot *slot, int64 id)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, jobs_active_id_attno, &isnull);

	return !isnull && DatumGetInt64(d) == id;
}

/*
 * Is the row in slot the running lease (attempt) of its job?  For an
 * external caller (executor_lease false), only if no executor holds it.
 */
static bool
SlotIsLease(TupleTableSlot *slot, int32 attempt, bool executor_lease)
{
	bool		isnull;
	Datum		d;

	if (!executor_lease)
	{
		(void) slot_getattr(slot, jobs_active_claimed_by_attno, &isnull);
		if (!isnull)
			return false;
	}

	d = slot_getattr(slot, jobs_active_attempt_attno, &isnull);
	if (isnull || DatumGetInt32(d) != attempt)
		return false;
	d = slot_getattr(slot, jobs_active_state_attno, &isnull);
	return !isnull && JobqTextEquals(d, "running");
}

/*
 * StoreTakeCompleted's delete as a statement (jobq.direct_access off):
 * the deleted row (a flat composite datum in SPI's
 * memory), or 0 when the lease is no longer current.
 */
#define TAKE_COMPLETED_SQL(LOCK) \
	"DELETE FROM jobq.jobs_active a" \
	" WHERE a.id OPERATOR(pg_catalog.=) $1" \
	"   AND a.attempt OPERATOR(pg_catalog.=) $2" \
	"   AND pg_catalog.texteq(a.state, 'running')" \
	"   AND (a.claimed_by IS NULL OR $3)" \
	LOCK \
	" RETURNING a"

static Datum
TakeCompletedSQL(int64 id, int32 attempt, bool executor_lease, bool *busy)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, BOOLOID};
	Datum		values[3];
	bool		isnull;
	int			ret;

	if (busy != NULL)
		JobqKeptPlan(&plan_take_completed_nowait, TAKE_COMPLETED_SQL(SKIP_LOCKED_BY_ID),
					 3, argtypes);
	else
		JobqKeptPlan(&plan_take_completed, TAKE_COMPLETED_SQL(""), 3, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	values[2] = BoolGetDatum(executor_lease);
	ret = SPI_execute_plan(busy != NULL ? plan_take_completed_nowait : plan_take_completed,
						   values, NULL, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "jobq: completing job %lld failed: %s", (long long) id,
			 SPI_result_code_string(ret));
	if (SPI_processed != 1)
	{
		if (busy != NULL)
			*busy = StoreLeaseRunning(id, attempt);
		return (Datum) 0;
	}
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/*
 * The size of jobs_active in blocks, read by StoreCompletionsBegin for the
 * transaction whose local id is blocks_lxid: a tid hint is used only on a
 * block below it.  Reading the size is a system call, and a batch's
 * completions each needed it.
 */
static LocalTransactionId blocks_lxid = InvalidLocalTransactionId;
static BlockNumber blocks_seen = 0;

/*
 * At the start of a batch's transaction, outside the jobs' subtransactions:
 * lock jobs_active for the whole transaction and read its size once.
 * Holding the lock, the table can grow but not shrink (VACUUM truncates
 * only under an AccessExclusiveLock), so every block below the size read
 * exists until the transaction ends; a block added since is beyond it, and
 * a hint there is not used (the probe by id finds the row).  The lock must
 * be the top transaction's: one a job's subtransaction took would go with
 * that subtransaction's rollback.
 */
void
StoreCompletionsBegin(void)
{
	Relation	rel = OpenJobsActive(RowExclusiveLock);

	blocks_seen = RelationGetNumberOfBlocks(rel);
	blocks_lxid = MyProc->lxid;
	table_close(rel, NoLock);
}

/*
 * The first half of a batched completion, inside the job's subtransaction
 * (so it commits or rolls back with the handler's writes): the fenced
 * removal from jobs_active.  The row is kept in acc (copied into cxt) for
 * StoreRecordCompleted.  False when the lease is no longer current.
 *
 * This is the statement
 *     DELETE FROM jobq.jobs_active WHERE id = $1 AND attempt = $2
 *        AND state = 'running' RETURNING jobs_active
 * done with the table AM directly: one primary-key probe and heap_delete.
 * An executor knows where its claim put the row (tid_hint): when the row
 * version there is still the job's and visible, that is the row the probe
 * would find, and the probe is skipped (it was a third of this function);
 * otherwise (changed, moved, vacuumed away) the probe finds it.
 * Through SPI, executor start-up and shutdown of that statement were a
 * quarter of an executor's time for a no-op job.  Semantics are READ
 * COMMITTED's, as the statement had them: a row locked by another
 * transaction (jobq.cancel holds it FOR UPDATE) is waited for, or with busy
 * not NULL skipped (*busy set, as in StoreComplete); a row deleted
 * meanwhile is not ours any more (fenced); a row updated meanwhile is
 * looked up again and its new version judged by the same test.
 */
bool
StoreTakeCompleted(int64 id, int32 attempt, ItemPointer tid_hint, Jsonb *result,
				   bool executor_lease, JobqCompletions *acc, MemoryContext cxt,
				   bool *busy)
{
	Relation	rel;
	Relation	pkey;
	TupleTableSlot *slot;
	Datum		row = (Datum) 0;
	bool		taken = false;
	int			tries;
	MemoryContext oldcxt;

	Assert(acc->n < JOBQ_MAX_BATCH);
	rel = OpenJobsActive(RowExclusiveLock);
	if (!JobqDirectAccess(rel))
	{
		/* jobq.direct_access is off: the statement itself */
		table_close(rel, NoLock);
		row = TakeCompletedSQL(id, attempt, executor_lease, busy);
		if (row == (Datum) 0)
			return false;
		oldcxt = MemoryContextSwitchTo(cxt);
		row = datumCopy(row, false, -1);
		MemoryContextSwitchTo(oldcxt);
		goto taken;
	}
	pkey = index_open(RelationGetPrimaryKeyIndex(rel), RowExclusiveLock);
	slot = table_slot_create(rel, NULL);

	/* each try follows one concurrent update; a job is rarely updated twice */
	for (tries = 0; tries < 100 && !taken; tries++)
	{
		Snapshot	snapshot;
		IndexScanDesc scan;
		ScanKeyData key;
		bool		found;
		TM_Result	res;
		TM_FailureData tmfd;
		ItemPointerData tid;

		/* see the handler's own writes, and every commit up to now */
		CommandCounterIncrement();
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		found = false;
		if (tries == 0 && tid_hint != NULL && ItemPointerIsValid(tid_hint) &&
			ItemPointerGetBlockNumber(tid_hint) <
			(blocks_lxid == MyProc->lxid ? blocks_seen : RelationGetNumberOfBlocks(rel)))
		{
			tid = *tid_hint;
			found = table_tuple_fetch_row_version(rel, &tid, snapshot, slot) &&
				SlotIsJob(slot, id);
		}
		if (!found)
		{
			ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
			scan = index_beginscan(rel, pkey, snapshot, 1, 0);
			index_rescan(scan, &key, 1, NULL, 0);
			found = index_getnext_slot(scan, ForwardScanDirection, slot);
			index_endscan(scan);
		}
		if (!found || !SlotIsLease(slot, attempt, executor_lease))
		{
			UnregisterSnapshot(snapshot);
			break;
		}

		/* a flat copy first: the row's TOASTed values go with it */
		oldcxt = MemoryContextSwitchTo(cxt);
		row = ExecFetchSlotHeapTupleDatum(slot);
		MemoryContextSwitchTo(oldcxt);
		tid = slot->tts_tid;

		res = table_tuple_delete(rel, &tid, GetCurrentCommandId(true), snapshot,
								 InvalidSnapshot, busy == NULL, &tmfd, false);
		UnregisterSnapshot(snapshot);
		switch (res)
		{
			case TM_Ok:
				taken = true;
				break;
			case TM_Updated:
				/* changed since we read it: judge its new version */
				pfree(DatumGetPointer(row));
				row = (Datum) 0;
				continue;
			case TM_Deleted:
				/* cancelled or recovered meanwhile: not ours any more */
				break;
			case TM_BeingModified:
				/* locked by another transaction, and busy says not to wait */
				Assert(busy != NULL);
				*busy = true;
				break;
			default:
				elog(ERROR, "jobq: unexpected result %d deleting job %lld",
					 (int) res, (long long) id);
		}
		break;
	}
	if (!taken && tries >= 100)
		elog(ERROR, "jobq: job %lld kept changing while being completed", (long long) id);

	ExecDropSingleTupleTableSlot(slot);
	/* the locks stay until the end of the transaction, as a statement's do */
	index_close(pkey, NoLock);
	table_close(rel, NoLock);
	if (!taken)
		return false;

taken:
	oldcxt = MemoryContextSwitchTo(cxt);
	acc->rows[acc->n] = row;
	acc->result_nulls[acc->n] = (result == NULL);
	acc->results[acc->n] = result ? datumCopy(JsonbPGetDatum(result), false, -1) : (Datum) 0;
	acc->finished[acc->n] = TimestampTzGetDatum(GetCurrentTimestamp());
	acc->n++;
	MemoryContextSwitchTo(oldcxt);
	return true;
}

/* The attribute of desc named attname (0-based), or -1. */
#define AttIndex(desc, attname) (JobqAttnum((desc), (attname), true) - 1)

/* The events of a job completed through the table AM (its active row). */
static void
ReportCompleted(Datum *avals, bool *anulls, int a_queue, int a_id, int a_attempt,
				int a_owner, int a_started, int a_batch, Datum finished)
{
	JobqJobEvent ev;
	char	   *queue = TextDatumGetCString(avals[a_queue]);

	memset(&ev, 0, sizeof(ev));
	ev.queue = queue;
	ev.job_id = DatumGetInt64(avals[a_id]);
	ev.attempt = DatumGetInt32(avals[a_attempt]);
	ev.owner = DatumGetObjectId(avals[a_owner]);
	ev.started_at = anulls[a_started] ? 0 : DatumGetTimestampTz(avals[a_started]);
	ev.finished_at = DatumGetTimestampTz(finished);
	ev.batch_id = a_batch < 0 || anulls[a_batch] ? 0 : DatumGetInt64(avals[a_batch]);
	ev.event = JOBQ_EVENT_ATTEMPT_COMPLETED;
	JobEventsReport(&ev);
	ev.event = JOBQ_EVENT_FINAL_COMPLETED;
	JobEventsReport(&ev);
	pfree(queue);
}

/*
 * StoreRecordCompleted through the table AM (bulk_insert.c): false, having
 * written nothing, when jobq.direct_access is off.
 */
static bool
RecordCompletedDirect(JobqCompletions *acc)
{
	JobqBulkInsert *finals;
	JobqBulkInsert *attempts;
	TupleDesc	adesc;
	TupleDesc	fdesc;
	TupleDesc	tdesc;
	HeapTupleHeader first = DatumGetHeapTupleHeader(acc->rows[0]);
	int		   *fmap;
	int			a_id,
				a_attempt,
				a_queue,
				a_owner,
				a_started,
				a_worker,
				a_batch;
	int			f_state,
				f_completed,
				f_lease,
				f_result;
	Datum		completed = CStringGetTextDatum("completed");
	Datum	   *avals,
			   *fvals,
			   *tvals;
	bool	   *anulls,
			   *fnulls,
			   *tnulls;
	int			i,
				j;

	finals = JobqBulkBegin("jobs_final");
	if (finals == NULL)
		return false;
	attempts = JobqBulkBegin("job_attempts");
	if (attempts == NULL)
	{
		JobqBulkEnd(finals);
		return false;
	}
	fdesc = RelationGetDescr(JobqBulkRelation(finals));
	tdesc = RelationGetDescr(JobqBulkRelation(attempts));
	adesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(first),
								   HeapTupleHeaderGetTypMod(first));

	/* a final row is its active row, column by column (by name) ... */
	fmap = palloc(sizeof(int) * fdesc->natts);
	for (j = 0; j < fdesc->natts; j++)
		fmap[j] = TupleDescAttr(fdesc, j)->attisdropped ? -1 :
			AttIndex(adesc, NameStr(TupleDescAttr(fdesc, j)->attname));
	/* ... but for these */
	f_state = JobqBulkAttnum(finals, "state") - 1;
	f_completed = JobqBulkAttnum(finals, "completed_at") - 1;
	f_lease = JobqBulkAttnum(finals, "lease_expires_at") - 1;
	f_result = JobqBulkAttnum(finals, "result") - 1;
	a_id = AttIndex(adesc, "id");
	a_attempt = AttIndex(adesc, "attempt");
	a_queue = AttIndex(adesc, "queue");
	a_owner = AttIndex(adesc, "owner");
	a_started = AttIndex(adesc, "started_at");
	a_worker = AttIndex(adesc, "worker");
	a_batch = AttIndex(adesc, "batch_id");	/* -1 before the update to 0.2.0 */
	if (a_id < 0 || a_attempt < 0 || a_queue < 0 || a_owner < 0 ||
		a_started < 0 || a_worker < 0)
		elog(ERROR, "jobq: jobq.jobs_active lacks a column of job_attempts");

	avals = palloc(sizeof(Datum) * adesc->natts);
	anulls = palloc(sizeof(bool) * adesc->natts);
	fvals = palloc(sizeof(Datum) * fdesc->natts);
	fnulls = palloc(sizeof(bool) * fdesc->natts);
	tvals = palloc(sizeof(Datum) * tdesc->natts);
	tnulls = palloc(sizeof(bool) * tdesc->natts);

	for (i = 0; i < acc->n; i++)
	{
		HeapTupleHeader th = DatumGetHeapTupleHeader(acc->rows[i]);
		HeapTupleData tup;

		tup.t_len = HeapTupleHeaderGetDatumLength(th);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = th;
		heap_deform_tuple(&tup, adesc, avals, anulls);

		for (j = 0; j < fdesc->natts; j++)
		{
			fnulls[j] = fmap[j] < 0 || anulls[fmap[j]];
			fvals[j] = fnulls[j] ? (Datum) 0 : avals[fmap[j]];
		}
		fvals[f_state] = completed;
		fnulls[f_state] = false;
		fvals[f_completed] = acc->finished[i];
		fnulls[f_completed] = false;
		fnulls[f_lease] = true;
		fvals[f_result] = acc->results[i];
		fnulls[f_result] = acc->result_nulls[i];
		JobqBulkAdd(finals, fvals, fnulls);

		memset(tnulls, true, sizeof(bool) * tdesc->natts);
#define SET_ATTEMPT_COL(name, val, isnull) \
		do { \
			int			k_ = JobqBulkAttnum(attempts, (name)) - 1; \
			tvals[k_] = (val); \
			tnulls[k_] = (isnull); \
		} while (0)
		SET_ATTEMPT_COL("job_id", avals[a_id], anulls[a_id]);
		SET_ATTEMPT_COL("attempt", avals[a_attempt], anulls[a_attempt]);
		SET_ATTEMPT_COL("queue", avals[a_queue], anulls[a_queue]);
		SET_ATTEMPT_COL("owner", avals[a_owner], anulls[a_owner]);
		SET_ATTEMPT_COL("started_at", avals[a_started], anulls[a_started]);
		SET_ATTEMPT_COL("finished_at", acc->finished[i], false);
		SET_ATTEMPT_COL("outcome", completed, false);
		SET_ATTEMPT_COL("worker", avals[a_worker], anulls[a_worker]);
#undef SET_ATTEMPT_COL
		JobqBulkAdd(attempts, tvals, tnulls);
		ReportCompleted(avals, anulls, a_queue, a_id, a_attempt, a_owner, a_started,
						a_batch, acc->finished[i]);
	}
	ReleaseTupleDesc(adesc);
	JobqBulkEnd(finals);
	JobqBulkEnd(attempts);
	return true;
}

/*
 * The second half, once per batch in the outer transaction: the final rows
 * and the attempt rows of every job taken, and their events.  Directly
 * through the table AM (RecordCompletedDirect reports the events), or, when jobq.direct_access is off, through the SQL
 * functions every other outcome uses (jobq._final_row and
 * jobq._attempt_finished, which report the events themselves).
 */
void
StoreRecordCompleted(JobqCompletions *acc)
{
	Oid			argtypes[3];
	Datum		values[3];
	int			dims[1];
	int			lbs[1] = {1};
	int			ret;

	if (acc->n == 0)
		return;
	if (RecordCompletedDirect(acc))
	{
		acc->n = 0;
		return;
	}
	{
		/* looked up each time: a session outlives DROP/CREATE EXTENSION */
		Oid			relid = JobqRelid("jobs_active");
		Oid			array_type = get_array_type(get_rel_type_id(relid));

		if (array_type != jobs_active_array_type && plan_record_completed != NULL)
		{
			SPI_freeplan(plan_record_completed);
			plan_record_completed = NULL;
		}
		jobs_active_array_type = array_type;
	}
	argtypes[0] = jobs_active_array_type;
	argtypes[1] = JSONBARRAYOID;
	argtypes[2] = TIMESTAMPTZARRAYOID;
	JobqKeptPlan(&plan_record_completed,
				 "SELECT jobq._final_row(($1)[i], 'completed', ($3)[i], ($2)[i], NULL, NULL),"
				 "       jobq._attempt_finished(($1)[i], 'completed', ($3)[i])"
				 "  FROM pg_catalog.generate_series(1, pg_catalog.cardinality($1)) AS i",
				 3, argtypes);

	dims[0] = acc->n;
	values[0] = PointerGetDatum(construct_array(acc->rows, acc->n,
												get_element_type(jobs_active_array_type),
												-1, false, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_md_array(acc->results, acc->result_nulls,
												   1, dims, lbs, JSONBOID, -1, false,
												   TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(acc->finished, acc->n, TIMESTAMPTZOID,
												8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ret = SPI_execute_plan(plan_record_completed, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != (uint64) acc->n)
		elog(ERROR, "jobq: recording %d completions failed: %s", acc->n,
			 SPI_result_code_string(ret));
	acc->n = 0;
}

/*
 * Is (id, attempt) still the job's running lease, as the latest commits
 * have it?  Read without a lock: for an executor that skipped a row
 * another transaction holds (StoreComplete, StoreFail with busy), to tell
 * "maybe still mine, settle it later" from "no longer mine".
 */
bool
StoreLeaseRunning(int64 id, int32 attempt)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2];
	bool		isnull;
	int			ret;

	JobqKeptPlan(&plan_lease_running,
				 "SELECT EXISTS (SELECT FROM jobq.jobs_active a"
				 "                WHERE a.id OPERATOR(pg_catalog.=) $1"
				 "                  AND a.attempt OPERATOR(pg_catalog.=) $2"
				 "                  AND pg_catalog.texteq(a.state, 'running'))",
				 2, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int32GetDatum(attempt);
	ret = SPI_execute_plan(plan_lease_running, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "jobq: reading job %lld failed: %s", (long long) id,
			 SPI_result_code_string(ret));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull));
}

PG_FUNCTION_INFO_V1(jobq_complete_lease);

/*
 * The C symbol of jobq._complete(id, attempt, result) in jobq 0.1.0, which
 * 0.2.0 drops.  The library keeps every symbol a released install script
 * names, so that CREATE EXTENSION jobq VERSION '0.1.0' followed by an
 * update works: it is StoreComplete for an executor's lease, as it was.
 */
Datum
jobq_complete_lease(PG_FUNCTION_ARGS)
{
	bool		done;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	done = StoreComplete(PG_GETARG_INT64(0), PG_GETARG_INT32(1),
						 PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), true, NULL);
	SPI_finish();
	PG_RETURN_BOOL(done);
}
