/*-------------------------------------------------------------------------
 *
 * batches.c
 *	  Batches of jobs: jobq.create_batch, jobq.close_batch, the batch
 *	  arguments of submit and submit_batch, the final counts of a batch's
 *	  jobs and its callback job.
 *
 * The rule that makes the callback exactly once: a batch's final counts
 * live on its row of jobq.job_batches and change only under that row's
 * lock, in the transaction that made the jobs final.  The job-final hook
 * point (job_events.c) notes each final job of a batch here, per
 * subtransaction level (a job's subtransaction may roll back while its
 * transaction commits); just before the commit (XACT_EVENT_PRE_COMMIT) the
 * notes of the transaction are added with one UPDATE per batch, in batch
 * id order (BATCH_FINALS_SQL), so that transactions finishing jobs of
 * the same batches lock them in one order and cannot deadlock.  Closing
 * (jobq._batch_close) fixes the batch's total under the same row's lock,
 * after the transactions adding jobs to it (jobq._batch_add, a lock that
 * does not block the finishers) have ended.  Whichever of these updates
 * finds the batch closed with every job final, and finished_at still NULL,
 * sets finished_at: that transaction, and only it, submits the callback,
 * before it commits.  Were the callback decided by counting the batch's
 * live jobs at each final event instead, two transactions finishing its
 * last two jobs would each see the other's job still running and neither
 * would submit it.
 *
 * The notes are backend-local (no shared memory): they matter only to the
 * transaction that made them.
 *
 * Jobs outside batches cost nothing here: their events carry batch_id 0
 * and are not noted, and with no notes the commit callback returns at once.
 *
 * The callback job is submitted through submit's own path (submit.c
 * SubmitCallbackJob), as the batch's owner, in a subtransaction: an error
 * there is recorded on the batch row (callback_error) instead of aborting
 * the transaction that finished the jobs (an executor's batch, another
 * role's cancel).
 *
 * IDENTIFICATION
 *	  src/batches.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "batches.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(jobq_create_batch);
PG_FUNCTION_INFO_V1(jobq_close_batch);

static SPIPlanPtr plan_create = NULL;
static SPIPlanPtr plan_add = NULL;
static SPIPlanPtr plan_close = NULL;
static SPIPlanPtr plan_finals = NULL;
static SPIPlanPtr plan_callback = NULL;
static SPIPlanPtr plan_callback_done = NULL;

/*
 * Final jobs of batches not committed yet: one entry per (nest level,
 * batch).  A transaction finishes jobs of few batches, so the list is short
 * and searched linearly, the entry used last first.  In TopMemoryContext,
 * kept for the backend.
 */
typedef struct BatchFinals
{
	int			level;
	int64		batch_id;
	int64		completed;
	int64		failed;
	int64		cancelled;
} BatchFinals;

static BatchFinals *notes = NULL;
static int	nnotes = 0;
static int	maxnotes = 0;
static int	last_note = 0;

void
BatchesNoteFinal(const JobqJobEvent *ev)
{
	int			level = GetCurrentTransactionNestLevel();
	BatchFinals *n = NULL;
	int			i;

	if (last_note < nnotes && notes[last_note].level == level &&
		notes[last_note].batch_id == ev->batch_id)
		n = &notes[last_note];
	for (i = 0; n == NULL && i < nnotes; i++)
		if (notes[i].level == level && notes[i].batch_id == ev->batch_id)
		{
			n = &notes[i];
			last_note = i;
		}
	if (n == NULL)
	{
		if (nnotes == maxnotes)
		{
			int			want = Max(8, maxnotes * 2);

			notes = notes == NULL
				? MemoryContextAlloc(TopMemoryContext, sizeof(BatchFinals) * want)
				: repalloc(notes, sizeof(BatchFinals) * want);
			maxnotes = want;
		}
		n = &notes[nnotes];
		memset(n, 0, sizeof(BatchFinals));
		n->level = level;
		n->batch_id = ev->batch_id;
		last_note = nnotes++;
	}
	switch (ev->event)
	{
		case JOBQ_EVENT_FINAL_COMPLETED:
			n->completed++;
			break;
		case JOBQ_EVENT_FINAL_FAILED:
			n->failed++;
			break;
		case JOBQ_EVENT_FINAL_CANCELLED:
			n->cancelled++;
			break;
		default:
			break;
	}
}

static int
CompareBatchIds(const void *a, const void *b)
{
	int64		x = ((const BatchFinals *) a)->batch_id;
	int64		y = ((const BatchFinals *) b)->batch_id;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The notes of a committed subtransaction become its parent's; at level 1
 * (the commit) every entry of a batch is merged into one.  Sorted by batch
 * id when merging at level 1.
 */
static void
MergeNotes(int level)
{
	int			i,
				j,
				kept = 0;

	for (i = 0; i < nnotes; i++)
	{
		BatchFinals *n = &notes[i];

		if (n->level >= level)
		{
			for (j = 0; j < kept; j++)
				if (notes[j].level == level - 1 && notes[j].batch_id == n->batch_id)
					break;
			if (j < kept)
			{
				notes[j].completed += n->completed;
				notes[j].failed += n->failed;
				notes[j].cancelled += n->cancelled;
				continue;
			}
			n->level = level - 1;
		}
		if (kept != i)
			notes[kept] = *n;
		kept++;
	}
	nnotes = kept;
	last_note = 0;
}

/* Drop the notes of nest levels from_level and deeper. */
static void
ForgetNotes(int from_level)
{
	int			i,
				kept = 0;

	for (i = 0; i < nnotes; i++)
		if (notes[i].level < from_level)
			notes[kept++] = notes[i];
	nnotes = kept;
	last_note = 0;
}

/*
 * The statement that adds one transaction's final jobs of one batch to its
 * counts, under the row's lock; it marks the batch final when it is closed
 * and every job of it is final now, and returns whether that happened here
 * with a callback to submit.  Counts only grow and each job is counted once,
 * so the update that brings the final count to the total of a closed batch
 * happens once; jobq._batch_close covers a batch closed after that.
 * Only plain statements run this late in a transaction: a PL/pgSQL function
 * run here, after an executor's last statement, corrupted the executor's
 * memory (the cause is not found), so the statements are written here.
 */
#define BATCH_FINALS_SQL \
	"UPDATE jobq.job_batches x" \
	"   SET completed = x.completed OPERATOR(pg_catalog.+) $2," \
	"       failed = x.failed OPERATOR(pg_catalog.+) $3," \
	"       cancelled = x.cancelled OPERATOR(pg_catalog.+) $4," \
	"       finished_at = CASE WHEN x.finished_at IS NULL AND x.closed_at IS NOT NULL" \
	"            AND x.completed OPERATOR(pg_catalog.+) $2 OPERATOR(pg_catalog.+) x.failed" \
	"                OPERATOR(pg_catalog.+) $3 OPERATOR(pg_catalog.+) x.cancelled" \
	"                OPERATOR(pg_catalog.+) $4 OPERATOR(pg_catalog.>=) x.total" \
	"            THEN pg_catalog.clock_timestamp() ELSE x.finished_at END" \
	" WHERE x.id OPERATOR(pg_catalog.=) $1" \
	" RETURNING x.closed_at IS NOT NULL" \
	"   AND x.completed OPERATOR(pg_catalog.+) x.failed OPERATOR(pg_catalog.+) x.cancelled" \
	"       OPERATOR(pg_catalog.=) x.total" \
	"   AND x.on_complete_queue IS NOT NULL"

/*
 * Just before the commit: add the transaction's final jobs to their
 * batches' counts, one UPDATE per batch in id order, and submit the
 * callbacks that became due.
 */
static void
FlushNotes(void)
{
	Oid			nsp;
	int			n;
	BatchFinals *mine;
	Oid			argtypes[4] = {INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		values[4];
	JobqRoleSwitch sw;
	int			i;
	MemoryContext oldcxt;

	/* merged into one entry per batch; the notes are ours from here */
	MergeNotes(1);
	n = nnotes;
	nnotes = 0;
	if (n == 0)
		return;
	/* a transaction that dropped jobq has no batches left to count */
	nsp = get_namespace_oid(JOBQ_SCHEMA_NAME, true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("job_batches", nsp)))
		return;

	/*
	 * Past the statements of the transaction: the memory context current
	 * now may be one its last statement left behind (an executor's), and
	 * SPI needs a snapshot of its own.
	 */
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	mine = palloc(sizeof(BatchFinals) * n);
	memcpy(mine, notes, sizeof(BatchFinals) * n);
	qsort(mine, n, sizeof(BatchFinals), CompareBatchIds);
	PushActiveSnapshot(GetTransactionSnapshot());
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		bool		due;

		JobqKeptPlan(&plan_finals, BATCH_FINALS_SQL, 4, argtypes);
		values[0] = Int64GetDatum(mine[i].batch_id);
		values[1] = Int64GetDatum(mine[i].completed);
		values[2] = Int64GetDatum(mine[i].failed);
		values[3] = Int64GetDatum(mine[i].cancelled);
		JobqExecPlan(plan_finals, values, NULL, SPI_OK_UPDATE_RETURNING, 0);
		due = SPI_processed == 1 &&
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
		if (due)
			BatchSubmitCallback(mine[i].batch_id);
	}
	SPI_finish();
	RestoreCaller(&sw);
	PopActiveSnapshot();
	pfree(mine);
	MemoryContextSwitchTo(oldcxt);
}

static void
BatchesXactCallback(XactEvent event, void *arg)
{
	if (nnotes == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			FlushNotes();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			ForgetNotes(1);
			break;
		default:
			break;
	}
}

static void
BatchesSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (nnotes == 0 || level < 2)
		return;
	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			MergeNotes(level);
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			ForgetNotes(level);
			break;
		default:
			break;
	}
}

void
BatchesRegisterCallbacks(void)
{
	RegisterXactCallback(BatchesXactCallback, NULL);
	RegisterSubXactCallback(BatchesSubXactCallback, NULL);
}

/*
 * The callback of a batch: its owner, queue and payload (the summary, with
 * the submitter's on_complete_payload under "payload"; the success rate as
 * jobq.batches has it).
 */
#define BATCH_CALLBACK_SQL \
	"SELECT b.owner, b.on_complete_queue," \
	"       pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(" \
	"           'batch_id', b.id, 'total', b.total, 'completed', b.completed," \
	"           'failed', b.failed, 'cancelled', b.cancelled," \
	"           'success_rate', pg_catalog.round(b.completed::pg_catalog.numeric" \
	"               OPERATOR(pg_catalog./) NULLIF(b.completed OPERATOR(pg_catalog.+)" \
	"                   b.failed OPERATOR(pg_catalog.+) b.cancelled, 0), 4)))" \
	"       OPERATOR(pg_catalog.||) CASE WHEN b.on_complete_payload IS NULL THEN '{}'::pg_catalog.jsonb" \
	"            ELSE pg_catalog.jsonb_build_object('payload', b.on_complete_payload) END" \
	"  FROM jobq.job_batches b WHERE b.id OPERATOR(pg_catalog.=) $1"

void
BatchSubmitCallback(int64 batch_id)
{
	Oid			argtypes[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	bool		isnull;
	Oid			owner;
	char	   *queue;
	Datum		payload;
	volatile int64 job_id = 0;
	char	   *volatile error = NULL;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	JobqKeptPlan(&plan_callback, BATCH_CALLBACK_SQL, 1, argtypes);
	values[0] = Int64GetDatum(batch_id);
	JobqExecPlan(plan_callback, values, NULL, SPI_OK_SELECT, 1);
	if (SPI_processed != 1)
		elog(ERROR, "jobq: batch " INT64_FORMAT " vanished", batch_id);
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   1, &isnull));
	queue = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	payload = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	if (queue == NULL || isnull)
		elog(ERROR, "jobq: batch " INT64_FORMAT " has no callback", batch_id);
	payload = SPI_datumTransfer(payload, false, -1);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		Oid			save_userid;
		int			save_sec;

		/* submit's own path captures the batch's owner as the submitter */
		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		job_id = SubmitCallbackJob(queue, payload);
		SetUserIdAndSecContext(save_userid, save_sec);
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
		error = edata->message;
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("jobq: the callback job of batch " INT64_FORMAT " could not be submitted: %s",
						batch_id, edata->message),
				 errdetail("The batch is final; jobq.batches shows the error in callback_error."),
				 errhint("Check that queue \"%s\" exists and that the batch's owner may submit to it.",
						 queue)));
	}
	PG_END_TRY();

	JobqKeptPlan(&plan_callback_done,
				 "UPDATE jobq.job_batches SET callback_job_id = $2, callback_error = $3"
				 " WHERE id OPERATOR(pg_catalog.=) $1", 3, argtypes);
	values[0] = Int64GetDatum(batch_id);
	values[1] = Int64GetDatum(job_id);
	nulls[1] = error == NULL ? ' ' : 'n';
	values[2] = error != NULL ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[2] = error != NULL ? ' ' : 'n';
	JobqExecPlan(plan_callback_done, values, nulls, SPI_OK_UPDATE, 0);
}

void
BatchAddJobs(int64 batch_id, Oid caller)
{
	Oid			argtypes[2] = {INT8OID, REGROLEOID};
	Datum		values[2];

	/* the batch's row counts no jobs while it is open: close_batch does */
	JobqKeptPlan(&plan_add, "SELECT jobq._batch_add($1, $2)", 2, argtypes);
	values[0] = Int64GetDatum(batch_id);
	values[1] = ObjectIdGetDatum(caller);
	JobqExecPlan(plan_add, values, NULL, SPI_OK_SELECT, 1);
}

int64
BatchCreate(Oid caller, const char *on_complete_queue, Datum on_complete_payload,
			bool payload_null, int64 n, bool *due)
{
	Oid			argtypes[4] = {REGROLEOID, TEXTOID, JSONBOID, INT8OID};
	Datum		values[4];
	char		nulls[4] = "    ";
	bool		isnull;
	int64		id;

	JobqKeptPlan(&plan_create, "SELECT jobq._batch_create($1, $2, $3, $4)", 4, argtypes);
	values[0] = ObjectIdGetDatum(caller);
	values[1] = on_complete_queue ? CStringGetTextDatum(on_complete_queue) : (Datum) 0;
	nulls[1] = on_complete_queue ? ' ' : 'n';
	values[2] = on_complete_payload;
	nulls[2] = payload_null ? 'n' : ' ';
	values[3] = Int64GetDatum(n);
	nulls[3] = n < 0 ? 'n' : ' ';
	JobqExecPlan(plan_create, values, nulls, SPI_OK_SELECT, 1);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 1, &isnull));
	*due = id < 0;
	return id < 0 ? -id : id;
}

/*
 * jobq.create_batch(on_complete_queue text, on_complete_payload jsonb)
 * RETURNS bigint: an open batch of the calling role.
 */
Datum
jobq_create_batch(PG_FUNCTION_ARGS)
{
	JobqRoleSwitch sw;
	char	   *queue = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		due;
	int64		id;

	PreventCommandIfReadOnly("jobq.create_batch()");
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	id = BatchCreate(sw.caller, queue, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
					 PG_ARGISNULL(1), -1, &due);
	Assert(!due);
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_INT64(id);
}

/*
 * jobq.close_batch(id bigint) RETURNS boolean: the batch takes no more
 * jobs; when every job of it is final already, it is final now and its
 * callback is submitted by this transaction.
 */
Datum
jobq_close_batch(PG_FUNCTION_ARGS)
{
	JobqRoleSwitch sw;
	Oid			argtypes[3] = {INT8OID, REGROLEOID, INT8OID};
	Datum		values[3];
	bool		isnull;
	bool		closed;
	bool		due;
	int64		id = PG_GETARG_INT64(0);
	int64		uncounted = 0;
	int			i;

	PreventCommandIfReadOnly("jobq.close_batch()");
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	/* its jobs this transaction made final: counted only at the commit */
	for (i = 0; i < nnotes; i++)
		if (notes[i].batch_id == id)
			uncounted += notes[i].completed + notes[i].failed + notes[i].cancelled;
	JobqKeptPlan(&plan_close, "SELECT c.closed, c.due FROM jobq._batch_close($1, $2, $3) c",
				 3, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = ObjectIdGetDatum(sw.caller);
	values[2] = Int64GetDatum(uncounted);
	JobqExecPlan(plan_close, values, NULL, SPI_OK_SELECT, 1);
	closed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull));
	due = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 2, &isnull));
	if (due)
		BatchSubmitCallback(id);
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_BOOL(closed);
}
