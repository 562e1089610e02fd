/*-------------------------------------------------------------------------
 *
 * batches.c
 *	  Batches of jobs: jobq.create_batch, jobq.close_batch, the batch
 *	  arguments of submit and submit_batch, and the judging of batches that
 *	  may have become final, with their callback job.
 *
 * Finishing a job of a batch writes nothing of the batch: a batch's counts
 * are read from its jobs (sql/install/73_batches.sql), so transactions
 * finishing jobs of one batch never wait for each other.  Whether a closed
 * batch became final is judged after the commits that finished its jobs:
 *
 * - the job-final hook point (job_events.c) notes the batch of each job
 *   that becomes final here (BatchesNoteFinal), and jobq.close_batch notes
 *   the batch it closed;
 * - when the transaction commits, its notes go to the database's list of
 *   batches to judge in shared memory (JobqDatabase.batch_checks) and an
 *   idle executor is woken; a notes list or shared list that overflows, and
 *   a COMMIT PREPARED (whose notes were in the preparing backend), ask for
 *   every closed batch not final yet to be judged instead;
 * - an executor of the database, between batches of jobs or when woken,
 *   judges them in one transaction (BatchChecksRun) under a transaction
 *   advisory lock, so one judge runs at a time per database: it empties the
 *   shared list after taking the lock, so its snapshots see every commit
 *   that noted an entry it took; an entry noted later stays for the next
 *   judge.  jobq._batch_finish_if_final marks a batch final when none of its
 *   jobs is pending or running, and the judge submits the callback in the
 *   same transaction.  finished_at, set once under the batch row's lock,
 *   makes the callback exactly once.
 *
 * A batch that jobq.close_batch holds (uncommitted) is skipped by the
 * judge: the closing transaction judges it itself, and its commit notes it
 * again.  A judging that fails (an error) asks for every batch to be
 * judged next time, so no note is lost; a server restart does the same
 * (the shared list is gone).
 *
 * The callback job is submitted through submit's own path (submit.c
 * SubmitCallbackJob), as the batch's owner, in a subtransaction: an error
 * there is recorded on the batch row (callback_error) instead of aborting
 * the judging.
 *
 * IDENTIFICATION
 *	  src/batches.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "batches.h"
#include "duties.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(jobq_create_batch);
PG_FUNCTION_INFO_V1(jobq_close_batch);
PG_FUNCTION_INFO_V1(jobq_finish_batches);
PG_FUNCTION_INFO_V1(jobq_batch_live);

static SPIPlanPtr plan_create = NULL;
static SPIPlanPtr plan_add = NULL;
static SPIPlanPtr plan_close = NULL;
static SPIPlanPtr plan_finish = NULL;
static SPIPlanPtr plan_unfinished = NULL;
static SPIPlanPtr plan_judge_lock = NULL;
static SPIPlanPtr plan_callback = NULL;
static SPIPlanPtr plan_callback_done = NULL;

/* a judge runs at most this often per database while jobs keep finishing */
#define BATCH_CHECK_GAP_MS 10
/* after a failed judging, the next one waits this long */
#define BATCH_CHECK_RETRY_MS 1000
/* closed batches not final yet judged by one look at every batch */
#define BATCH_CHECK_ALL_MAX 1000
/* the advisory lock of judging (key pair; its database is part of the lock) */
#define BATCH_LOCK_KEY1 1785688689	/* "jobq" in ASCII */
#define BATCH_LOCK_KEY2 2

/*
 * This transaction's notes: batches some of whose jobs became final, and
 * batches it closed.  Subtransactions are not told apart: a note of one
 * that rolled back costs only a judging that finds nothing.
 */
static int64 noted[JOBQ_BATCH_CHECKS];
static int	nnoted = 0;
static bool noted_all = false;

static void
NoteBatch(int64 batch_id)
{
	int			i;

	if (noted_all)
		return;
	for (i = 0; i < nnoted; i++)
		if (noted[i] == batch_id)
			return;
	if (nnoted == JOBQ_BATCH_CHECKS)
	{
		noted_all = true;
		return;
	}
	noted[nnoted++] = batch_id;
}

void
BatchesNoteFinal(const JobqJobEvent *ev)
{
	NoteBatch(ev->batch_id);
}

void
BatchesCheckAllAtCommit(void)
{
	noted_all = true;
}

/* After the commit: hand the notes to the database's judges. */
static void
PublishNotes(void)
{
	JobqDatabase *db = JobqMyDatabase();
	bool		was_empty;
	int			i,
				j;

	if (db == NULL)
		return;
	SpinLockAcquire(&db->batch_mutex);
	was_empty = db->nbatch_checks == 0 && !db->batch_check_all;
	if (noted_all)
		db->batch_check_all = true;
	for (i = 0; i < nnoted && !db->batch_check_all; i++)
	{
		for (j = 0; j < db->nbatch_checks; j++)
			if (db->batch_checks[j] == noted[i])
				break;
		if (j < db->nbatch_checks)
			continue;
		if (db->nbatch_checks == JOBQ_BATCH_CHECKS)
			db->batch_check_all = true;
		else
			db->batch_checks[db->nbatch_checks++] = noted[i];
	}
	SpinLockRelease(&db->batch_mutex);
	if (was_empty)
		(void) JobqWakeIdleExecutor(NULL, 0);
}

static void
BatchesXactCallback(XactEvent event, void *arg)
{
	if (nnoted == 0 && !noted_all)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			PublishNotes();
			nnoted = 0;
			noted_all = false;
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* a prepared transaction's COMMIT PREPARED asks for all */
			nnoted = 0;
			noted_all = false;
			break;
		default:
			break;
	}
}

void
BatchesRegisterCallbacks(void)
{
	RegisterXactCallback(BatchesXactCallback, NULL);
}

int
BatchChecksDueInMs(void)
{
	JobqDatabase *db = JobqMyDatabase();
	TimestampTz due;
	TimestampTz now;

	/* unlocked reads: a stale answer only moves a judging by one look */
	if (db == NULL || (db->nbatch_checks == 0 && !db->batch_check_all))
		return -1;
	due = TimestampTzPlusMilliseconds(db->batch_checked_at, BATCH_CHECK_GAP_MS);
	now = GetCurrentTimestamp();
	if (now >= due)
		return 0;
	return (int) ((due - now) / 1000) + 1;
}

/*
 * Judge batches (inside SPI, in a transaction, as a role that may run the
 * internal functions): ids[0..n-1], and with all the closed batches not
 * final yet with ids above *after, up to BATCH_CHECK_ALL_MAX of them
 * (*after is then the last one looked at, or 0 when none is left).  Final
 * ones are marked so and their callbacks submitted.
 */
static void
JudgeBatches(const int64 *ids, int n, bool all, int64 *after)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	int64	   *todo = NULL;
	int			ntodo = n;
	int			i;

	if (all)
	{
		JobqKeptPlan(&plan_unfinished,
					 "SELECT b.id FROM jobq.job_batches b"
					 " WHERE b.closed_at IS NOT NULL AND b.finished_at IS NULL"
					 "   AND b.id OPERATOR(pg_catalog.>) $1"
					 " ORDER BY b.id LIMIT " CppAsString2(BATCH_CHECK_ALL_MAX),
					 1, argtypes);
		values[0] = Int64GetDatum(*after);
		JobqExecPlan(plan_unfinished, values, NULL, SPI_OK_SELECT, 0);
		ntodo = (int) SPI_processed;
		todo = palloc(sizeof(int64) * Max(ntodo, 1));
		for (i = 0; i < ntodo; i++)
		{
			bool		isnull;

			todo[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1, &isnull));
		}
		*after = ntodo == BATCH_CHECK_ALL_MAX ? todo[ntodo - 1] : 0;
		ids = todo;
	}
	for (i = 0; i < ntodo; i++)
	{
		bool		isnull;

		JobqKeptPlan(&plan_finish, "SELECT jobq._batch_finish_if_final($1)", 1, argtypes);
		values[0] = Int64GetDatum(ids[i]);
		JobqExecPlan(plan_finish, values, NULL, SPI_OK_SELECT, 1);
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull)))
			BatchSubmitCallback(ids[i]);
	}
	if (todo != NULL)
		pfree(todo);
}

void
BatchChecksRun(void)
{
	JobqDatabase *db = JobqMyDatabase();
	int64		ids[JOBQ_BATCH_CHECKS];
	int			n = 0;
	bool		all = false;
	int64		after = 0;
	volatile bool drained = false;
	MemoryContext oldcxt = CurrentMemoryContext;

	Assert(!IsTransactionState());
	if (db == NULL)
		return;
	PG_TRY();
	{
		bool		isnull;
		bool		locked;

		StartTransactionCommand();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "jobq: SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "jobq: batches that may be final");
		JobqKeptPlan(&plan_judge_lock,
					 "SELECT pg_catalog.pg_try_advisory_xact_lock("
					 CppAsString2(BATCH_LOCK_KEY1) ", " CppAsString2(BATCH_LOCK_KEY2) ")",
					 0, NULL);
		JobqExecPlan(plan_judge_lock, NULL, NULL, SPI_OK_SELECT, 1);
		locked = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											1, &isnull));
		PopActiveSnapshot();
		if (locked)
		{
			/* after the lock: the statements below see every commit that noted these */
			SpinLockAcquire(&db->batch_mutex);
			n = db->nbatch_checks;
			memcpy(ids, db->batch_checks, sizeof(int64) * n);
			all = db->batch_check_all;
			db->nbatch_checks = 0;
			db->batch_check_all = false;
			db->batch_checked_at = GetCurrentTimestamp();
			SpinLockRelease(&db->batch_mutex);
			after = db->batch_check_after;
			SpinLockRelease(&db->batch_mutex);
			drained = true;
			/* each statement takes a newer one: this one only outlives them */
			PushActiveSnapshot(GetTransactionSnapshot());
			JudgeBatches(ids, n, all, &after);
			PopActiveSnapshot();
			if (all)
			{
				/* more left: the next judging goes on from there */
				SpinLockAcquire(&db->batch_mutex);
				db->batch_check_after = after;
				if (after != 0)
					db->batch_check_all = true;
				SpinLockRelease(&db->batch_mutex);
			}
		}
		SPI_finish();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		/* what was taken is judged again, later, with every other batch */
		SpinLockAcquire(&db->batch_mutex);
		if (drained)
		{
			db->batch_check_all = true;
			db->batch_check_after = 0;
		}
		db->batch_checked_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   BATCH_CHECK_RETRY_MS);
		SpinLockRelease(&db->batch_mutex);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * jobq.finish_batches() RETURNS void: judge every closed batch not final
 * yet now, in the caller's transaction (jobq_admin): for a database
 * without executors (jobq.workers = 0), from pg_cron or by hand.
 */
Datum
jobq_finish_batches(PG_FUNCTION_ARGS)
{
	int64		after = 0;
	JobqRoleSwitch sw;

	PreventCommandIfReadOnly("jobq.finish_batches()");
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	/* waits for a judge at work: then every commit before this is seen */
	if (SPI_execute("SELECT pg_catalog.pg_advisory_xact_lock("
					CppAsString2(BATCH_LOCK_KEY1) ", " CppAsString2(BATCH_LOCK_KEY2) ")",
					false, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: the lock of batch judging failed");
	do
		JudgeBatches(NULL, 0, true, &after);
	while (after != 0);
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_VOID();
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

	/* its jobs are found by id (above its first_id) and batch_id: nothing to count here */
	JobqKeptPlan(&plan_add, "SELECT jobq._batch_add($1, $2)", 2, argtypes);
	values[0] = Int64GetDatum(batch_id);
	values[1] = ObjectIdGetDatum(caller);
	JobqExecPlan(plan_add, values, NULL, SPI_OK_SELECT, 1);
}

int64
BatchNewId(void)
{
	Oid			seq = get_relname_relid("job_batches_id_seq",
										get_namespace_oid(JOBQ_SCHEMA_NAME, false));

	if (!OidIsValid(seq))
		elog(ERROR, "jobq: sequence jobq.job_batches_id_seq is missing");
	return nextval_internal(seq, false);
}

int64
BatchCreate(Oid caller, const char *on_complete_queue, Datum on_complete_payload,
			bool payload_null, int64 n, int64 id, int64 first_id, int64 last_id,
			bool *due)
{
	Oid			argtypes[7] = {REGROLEOID, TEXTOID, JSONBOID, INT8OID, INT8OID,
	INT8OID, INT8OID};
	Datum		values[7];
	char		nulls[7] = "       ";
	bool		isnull;
	int64		got;

	JobqKeptPlan(&plan_create, "SELECT jobq._batch_create($1, $2, $3, $4, $5, $6, $7)",
				 7, argtypes);
	values[0] = ObjectIdGetDatum(caller);
	values[1] = on_complete_queue ? CStringGetTextDatum(on_complete_queue) : (Datum) 0;
	nulls[1] = on_complete_queue ? ' ' : 'n';
	values[2] = on_complete_payload;
	nulls[2] = payload_null ? 'n' : ' ';
	values[3] = Int64GetDatum(n);
	nulls[3] = n < 0 ? 'n' : ' ';
	values[4] = Int64GetDatum(id);
	nulls[4] = n < 0 ? 'n' : ' ';
	values[5] = Int64GetDatum(first_id);
	nulls[5] = n > 0 ? ' ' : 'n';
	values[6] = Int64GetDatum(last_id);
	nulls[6] = n > 0 ? ' ' : 'n';
	JobqExecPlan(plan_create, values, nulls, SPI_OK_SELECT, 1);
	got = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull));
	*due = got < 0;
	return got < 0 ? -got : got;
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
					 PG_ARGISNULL(1), -1, 0, 0, 0, &due);
	Assert(!due);
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_INT64(id);
}

/*
 * jobq.close_batch(id bigint) RETURNS boolean: the batch takes no more
 * jobs; when every job of it is final already, it is final now and its
 * callback is submitted by this transaction.  Otherwise it is judged again
 * once this transaction has committed (jobs finished meanwhile by others
 * were live to this one).
 */
Datum
jobq_close_batch(PG_FUNCTION_ARGS)
{
	JobqRoleSwitch sw;
	Oid			argtypes[2] = {INT8OID, REGROLEOID};
	Datum		values[2];
	bool		isnull;
	bool		closed;
	bool		due;
	int64		id = PG_GETARG_INT64(0);

	PreventCommandIfReadOnly("jobq.close_batch()");
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	JobqKeptPlan(&plan_close, "SELECT c.closed, c.due FROM jobq._batch_close($1, $2) c",
				 2, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = ObjectIdGetDatum(sw.caller);
	JobqExecPlan(plan_close, values, NULL, SPI_OK_SELECT, 1);
	closed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull));
	due = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 2, &isnull));
	if (due)
		BatchSubmitCallback(id);
	else if (closed)
		NoteBatch(id);
	SPI_finish();
	RestoreCaller(&sw);
	PG_RETURN_BOOL(closed);
}

/*
 * jobq._batch_live(first_id, last_id, batch_id) RETURNS boolean: whether
 * batch batch_id, of job ids first_id to last_id, has a pending or running
 * job, as the caller's snapshot sees jobs_active.
 *
 * It runs after every commit that finished jobs of a batch, so it must
 * cost the same however large the batch: a scan of the primary key
 * backwards from last_id, stopping at the first job of the batch.  Claims
 * take a batch's jobs in id order, so its live jobs are at the back of the
 * range; the entries of finished jobs it passes are marked dead by the
 * scan and skipped cheaply after.  (A statement would leave the choice of
 * plan to the planner: a generic plan sorted the whole range at each call.)
 */
Datum
jobq_batch_live(PG_FUNCTION_ARGS)
{
	int64		first_id = PG_GETARG_INT64(0);
	int64		last_id = PG_GETARG_INT64(1);
	int64		batch_id = PG_GETARG_INT64(2);
	Relation	rel;
	Relation	pkey;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	AttrNumber	batch_att;
	bool		live = false;

	rel = table_open(JobqRelid("jobs_active"), AccessShareLock);
	pkey = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	batch_att = JobqAttnum(RelationGetDescr(rel), "batch_id", false);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum(first_id));
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE,
				Int64GetDatum(last_id));
	scan = index_beginscan(rel, pkey, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		Datum		b = slot_getattr(slot, batch_att, &isnull);

		if (!isnull && DatumGetInt64(b) == batch_id)
		{
			live = true;
			break;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(rel, AccessShareLock);
	PG_RETURN_BOOL(live);
}
