/*-------------------------------------------------------------------------
 *
 * submit.c
 *	  jobq.submit, jobq.submit_batch and jobq.submit_http: the job store's
 *	  insert of new jobs, directly through the table AM or through SQL.
 *
 * The submitter is captured before anything else (owner_switch.c): the
 * job runs with its privileges.  Jobs without a unique_key are written
 * through the table AM (bulk_insert.c) unless jobq.direct_access is off;
 * with one, or with it off, through INSERT statements that write the same
 * columns.  Every writer of a pending job notes its claim-order key
 * (claim_floor.c).
 *
 * Every SQL text below schema-qualifies tables, functions and operators:
 * it is parsed with the caller's search_path on first use and then runs as
 * the extension owner.
 *
 * IDENTIFICATION
 *	  src/submit.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_events.h"
#include "batches.h"
#include "bulk_insert.h"
#include "claim_floor.h"
#include "submit_options.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "utils/fmgrprotos.h"
#include "executor/tuptable.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "access/tableam.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "commands/sequence.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "http.h"

PG_FUNCTION_INFO_V1(jobq_submit);
PG_FUNCTION_INFO_V1(jobq_submit_batch);
PG_FUNCTION_INFO_V1(jobq_submit_http);

/* What submit needs to know about a queue. */
typedef struct JobqQueueInfo
{
	char	   *kind;
	Oid			handler;
	char	   *handler_text;
	bool		unique_per_owner;
} JobqQueueInfo;


/* Kept SPI plans, prepared on first use in each backend. */
static SPIPlanPtr plan_insert = NULL;
static SPIPlanPtr plan_insert_unique = NULL;
static SPIPlanPtr plan_find_unique = NULL;
static SPIPlanPtr plan_insert_batch = NULL;
static SPIPlanPtr plan_http_payload = NULL;
static SPIPlanPtr plan_check_http = NULL;

/* How often submit retries when a conflicting unique_key vanished meanwhile. */
#define JOBQ_UNIQUE_RETRIES 10

/*
 * Take the lock a job insert takes anyway, before the queue is looked up:
 * jobq.drop_queue() holds SHARE ROW EXCLUSIVE on jobs_active, so a submit
 * either finishes before the drop looks for jobs, or looks the queue up
 * (with a snapshot taken after this lock) once the drop has committed.
 */
static void
LockJobsActive(void)
{
	LockRelationOid(JobqRelid("jobs_active"), RowExclusiveLock);
}

/*
 * Look a queue up and check that the caller may submit to it: it exists,
 * and the caller may EXECUTE its handler (the job will run the handler as
 * the caller).  Runs as the extension owner, inside SPI.  The result lives
 * in the caller's memory context (SPI_palloc'd values are copied out).
 */
static void
LookupQueueForSubmit(const char *queue, Oid caller, JobqQueueInfo *info)
{
	Snapshot	snapshot;
	JobqQueueRow row;
	bool		found;

	/*
	 * As a new statement would see it: our own earlier writes (create_queue
	 * in the same transaction) and every commit so far, jobq.drop_queue's
	 * included (see LockJobsActive).
	 */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	found = JobqReadQueue(queue, snapshot, &row);
	UnregisterSnapshot(snapshot);
	if (found)
	{
		info->kind = row.kind;
		info->handler_text = row.handler;
		info->unique_per_owner = row.unique_per_owner;
	}

	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", queue),
				 errdetail("jobq.queues lists the queues; names are case-sensitive."),
				 errhint("Create it with jobq.create_queue().")));

	/* to_regprocedure(handler): NULL, not an error, when it is gone */
	info->handler = InvalidOid;
	if (info->handler_text != NULL)
	{
		LOCAL_FCINFO(fcinfo, 1);
		Datum		oid;

		InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = CStringGetTextDatum(info->handler_text);
		fcinfo->args[0].isnull = false;
		oid = to_regprocedure(fcinfo);
		if (!fcinfo->isnull)
			info->handler = DatumGetObjectId(oid);
	}

	if (strcmp(info->kind, "sql") == 0 && !jobq_allow_superuser_jobs &&
		superuser_arg(caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("superuser \"%s\" may not submit to sql queue \"%s\"",
						GetUserNameFromId(caller, false), queue),
				 errdetail("Jobs run as the role that submits them, and jobq.allow_superuser_jobs is off."),
				 errhint("Submit as a role without superuser (SET ROLE, or a SECURITY DEFINER function owned by one), or set jobq.allow_superuser_jobs = on if superuser jobs are intended.")));

	if (info->handler_text != NULL && !OidIsValid(info->handler))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler %s of queue \"%s\" does not exist",
						info->handler_text, queue),
				 errdetail("The function was dropped or renamed after the queue was created."),
				 errhint("Recreate the function, or set the queue's handler with jobq.alter_queue().")));

	if (OidIsValid(info->handler) &&
		pg_proc_aclcheck(info->handler, caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to submit to queue \"%s\"", queue),
				 errdetail("Role \"%s\" may not execute the queue's handler %s, and jobs run as the role that submits them.",
						   GetUserNameFromId(caller, false), info->handler_text),
				 errhint("GRANT EXECUTE ON FUNCTION %s to the role.",
						 info->handler_text)));
}

/*
 * For a queue of kind http, the payload is an HTTP request: validate and
 * normalise it with jobq._check_http_payload().  Returns the payload to
 * store.  Inside SPI, as the extension owner; the result is copied into the
 * upper executor context.
 */
static Datum
CheckHttpPayload(Datum payload)
{
	Oid			argtypes[1] = {JSONBOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;
	SPIPlanPtr	plan;

	plan = JobqKeptPlan(&plan_check_http,
					"SELECT jobq._check_http_payload($1)", 1, argtypes);
	values[0] = payload;
	JobqExecPlan(plan, values, NULL, SPI_OK_SELECT, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "jobq: _check_http_payload returned NULL");
	return SPI_datumTransfer(d, false, -1);
}

/*
 * The columns of a new job that the SQL path's INSERT writes, with the same
 * values, but id and payload (left NULL for the caller): values/nulls in
 * jobs_active's attribute order.
 */
static void
SetNewJobColumns(JobqBulkInsert *bulk, Datum *values, bool *nulls,
				 const char *queue, JobqSubmitOptions *opt, Oid owner)
{
	TupleDesc	desc = RelationGetDescr(JobqBulkRelation(bulk));
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	memset(nulls, true, sizeof(bool) * desc->natts);
#define SET_COL(name, val, isnull) \
	do { \
		AttrNumber	k_ = JobqBulkAttnum(bulk, (name)) - 1; \
		values[k_] = (val); \
		nulls[k_] = (isnull); \
	} while (0)
	SET_COL("queue", CStringGetTextDatum(queue), false);
	SET_COL("state", CStringGetTextDatum("pending"), false);
	SET_COL("priority", Int32GetDatum(opt->priority), false);
	/* COALESCE(run_at, now()) */
	SET_COL("run_at", opt->run_at_null ? TimestampTzGetDatum(now) : opt->run_at, false);
	SET_COL("attempt", Int32GetDatum(0), false);
	SET_COL("max_attempts", opt->max_attempts, opt->max_attempts_null);
	SET_COL("timeout", opt->timeout, opt->timeout_null);
	SET_COL("owner", ObjectIdGetDatum(owner), false);
	SET_COL("handler", opt->handler ? CStringGetTextDatum(opt->handler) : (Datum) 0,
			opt->handler == NULL);
	SET_COL("created_at", TimestampTzGetDatum(now), false);
	SET_COL("snoozes", Int32GetDatum(0), false);
	if (opt->batch_id != 0)
		SET_COL("batch_id", Int64GetDatum(opt->batch_id), false);
#undef SET_COL
}

/*
 * A new job's run_at: the one given, or now() (the transaction's start), as
 * SetNewJobColumns and the INSERT statements have it.
 */
static TimestampTz
SubmitRunAt(JobqSubmitOptions *opt)
{
	return opt->run_at_null ? GetCurrentTransactionStartTimestamp()
		: DatumGetTimestampTz(opt->run_at);
}

static Oid
JobsIdSequence(void)
{
	return JobqRelid("jobs_id_seq");
}

/*
 * One job without a unique_key through the table AM (bulk_insert.c): its
 * id, or -1, having written nothing, when jobq.direct_access is off (the
 * caller inserts through SQL).  Through SQL
 * the INSERT's executor start-up and the partition constraint check (a
 * re-planned expression per statement) were a fifth of a submit.
 */
static int64
InsertJobDirect(const char *queue, Datum payload, JobqSubmitOptions *opt, Oid owner)
{
	JobqBulkInsert *bulk = JobqBulkBegin("jobs_active");
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	int64		id;

	if (bulk == NULL)
		return -1;
	desc = RelationGetDescr(JobqBulkRelation(bulk));
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	SetNewJobColumns(bulk, values, nulls, queue, opt, owner);
	id = nextval_internal(JobsIdSequence(), false);
	values[JobqBulkAttnum(bulk, "id") - 1] = Int64GetDatum(id);
	nulls[JobqBulkAttnum(bulk, "id") - 1] = false;
	values[JobqBulkAttnum(bulk, "payload") - 1] = payload;
	nulls[JobqBulkAttnum(bulk, "payload") - 1] = false;
	JobqBulkAdd(bulk, values, nulls);
	JobqBulkEnd(bulk);
	return id;
}

/*
 * Insert one job; returns its id, or the id of the job of the same queue
 * and unique_key that is not final yet (*created: which of the two).
 * Inside SPI, as the extension owner.
 *
 * unique_key: INSERT ... ON CONFLICT DO NOTHING waits for a concurrent
 * insert of the same key to commit or abort; after a conflict, the job
 * holding the key is read with a new snapshot.  If that job became final in
 * between, the key is free again: try the insert once more.
 */
static int64
InsertJob(const char *queue, Datum payload, Datum unique_key,
		  bool unique_key_null, JobqSubmitOptions *opt, Oid owner,
		  bool *created)
{
	Oid			argtypes[11] = {TEXTOID, JSONBOID, INT4OID, TIMESTAMPTZOID,
	INT4OID, INTERVALOID, REGROLEOID, TEXTOID, TEXTOID, OIDOID, INT8OID};
	Datum		values[11];
	char		nulls[11] = "           ";
	bool		isnull;
	int			tries;
	SPIPlanPtr	plan;

	values[0] = CStringGetTextDatum(queue);
	values[1] = payload;
	values[2] = Int32GetDatum(opt->priority);
	values[3] = opt->run_at;
	nulls[3] = opt->run_at_null ? 'n' : ' ';
	values[4] = opt->max_attempts;
	nulls[4] = opt->max_attempts_null ? 'n' : ' ';
	values[5] = opt->timeout;
	nulls[5] = opt->timeout_null ? 'n' : ' ';
	values[6] = ObjectIdGetDatum(owner);
	values[7] = opt->handler ? CStringGetTextDatum(opt->handler) : (Datum) 0;
	nulls[7] = opt->handler ? ' ' : 'n';
	values[8] = unique_key;
	nulls[8] = unique_key_null ? 'n' : ' ';
	/* whose keys: the owner's own, or the queue's shared ones (0) */
	values[9] = ObjectIdGetDatum(opt->unique_per_owner ? owner : InvalidOid);
	/* only without unique_key: submit refuses the two together */
	values[10] = Int64GetDatum(opt->batch_id);
	nulls[10] = opt->batch_id != 0 ? ' ' : 'n';

	*created = true;
	if (unique_key_null)
	{
		int64		id = InsertJobDirect(queue, payload, opt, owner);

		if (id >= 0)
			return id;
		plan = JobqKeptPlan(&plan_insert,
						"INSERT INTO jobq.jobs_active "
						"(queue, payload, state, priority, run_at, max_attempts, timeout, owner, handler, batch_id) "
						"VALUES ($1, $2, 'pending', $3, "
						"COALESCE($4, pg_catalog.now()), $5, $6, $7, $8, $11) "
						"RETURNING id",
						11, argtypes);
		JobqExecPlan(plan, values, nulls, SPI_OK_INSERT_RETURNING, 0);
		return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	}

	for (tries = 0; tries < JOBQ_UNIQUE_RETRIES; tries++)
	{
		Oid			find_types[3] = {TEXTOID, TEXTOID, OIDOID};
		Datum		find_values[3];

		plan = JobqKeptPlan(&plan_insert_unique,
						"INSERT INTO jobq.jobs_active "
						"(queue, payload, state, priority, run_at, max_attempts, timeout, owner, handler, unique_key, unique_owner) "
						"VALUES ($1, $2, 'pending', $3, "
						"COALESCE($4, pg_catalog.now()), $5, $6, $7, $8, $9, $10) "
						"ON CONFLICT (queue, unique_key, unique_owner) WHERE unique_key IS NOT NULL "
						"DO NOTHING RETURNING id",
						10, argtypes);
		JobqExecPlan(plan, values, nulls, SPI_OK_INSERT_RETURNING, 0);
		*created = SPI_processed == 1;
		if (*created)
			return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1,
											   &isnull));

		plan = JobqKeptPlan(&plan_find_unique,
						"SELECT j.id FROM jobq.jobs_active j "
						"WHERE j.queue OPERATOR(pg_catalog.=) $1 "
						"AND j.unique_key OPERATOR(pg_catalog.=) $2 "
						"AND j.unique_owner OPERATOR(pg_catalog.=) $3",
						3, find_types);
		find_values[0] = values[0];
		find_values[1] = unique_key;
		find_values[2] = values[9];
		JobqExecPlan(plan, find_values, NULL, SPI_OK_SELECT, 1);
		if (SPI_processed == 1)
			return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1,
											   &isnull));
		CHECK_FOR_INTERRUPTS();
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not submit to queue \"%s\" with unique_key \"%s\"",
					queue, TextDatumGetCString(unique_key)),
			 errdetail("The job holding the key kept finishing while this job was submitted."),
			 errhint("Retry the transaction.")));
	return 0;					/* keep compiler quiet */
}

/*
 * The common body of submit and submit_http: look the queue up, check the
 * caller may use it, insert, wake an executor at commit.
 */
static int64
SubmitOne(const char *queue, Datum payload,
		  Datum unique_key, bool unique_key_null, JobqSubmitOptions *opt,
		  bool http_payload)
{
	JobqRoleSwitch sw;
	JobqQueueInfo info;
	int64		id;
	bool		created;

	/* the direct-access insert bypasses the executor's own check */
	PreventCommandIfReadOnly("jobq.submit()");
	if (!unique_key_null)
		CheckUniqueKey(unique_key);
	BecomeOwner(&sw);
	LockJobsActive();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");

	LookupQueueForSubmit(queue, sw.caller, &info);
	if (opt->batch_id != 0)
		BatchAddJobs(opt->batch_id, sw.caller);
	if (http_payload && strcmp(info.kind, "http") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("queue \"%s\" is not an http queue", queue),
				 errdetail("It is of kind %s.", info.kind),
				 errhint("Pass queue => the name of a queue of kind http, such as http.")));
	if (!http_payload && strcmp(info.kind, "http") == 0)
		payload = CheckHttpPayload(payload);
	if (strcmp(info.kind, "http") == 0)
		JobqHttpCheckSubmit(sw.caller, payload);	/* role, allowlist */
	CheckPayloadSize(payload, 0);
	opt->handler = info.handler_text;
	opt->unique_per_owner = info.unique_per_owner;

	id = InsertJob(queue, payload, unique_key, unique_key_null, opt, sw.caller,
				   &created);
	if (!created)
	{
		/* the job already holding the key: nothing was written */
		SPI_finish();
		RestoreCaller(&sw);
		return id;
	}
	ClaimFloorNoteWritten(queue, opt->priority, SubmitRunAt(opt), id);
	JobEventsSubmitted(queue, sw.caller, 1);

	/* nothing in the server runs external queues: no wake-up to pay for */
	if (strcmp(info.kind, "http") == 0)
		JobqWakeHttpAtCommit();
	else if (strcmp(info.kind, "external") != 0)
		JobqWakeAtCommitForQueue(queue);
	SPI_finish();
	RestoreCaller(&sw);
	return id;
}

/*
 * The callback job of a batch (batches.c): a job of queue with payload and
 * the default options, submitted by the current user (the batch's owner).
 */
int64
SubmitCallbackJob(const char *queue, Datum payload)
{
	JobqSubmitOptions opt;

	memset(&opt, 0, sizeof(opt));
	opt.run_at_null = true;
	opt.max_attempts_null = true;
	opt.timeout_null = true;
	return SubmitOne(queue, payload, (Datum) 0, true, &opt, false);
}

/*
 * jobq.submit(queue text, payload jsonb, run_at timestamptz, priority int,
 *			   unique_key text, max_attempts int, timeout interval,
 *			   batch_id bigint) RETURNS bigint
 */
Datum
jobq_submit(PG_FUNCTION_ARGS)
{
	char	   *queue = QueueArg(fcinfo, 0);
	Datum		payload;
	JobqSubmitOptions opt;

	/* a NULL payload is the default, '{}' */
	if (PG_ARGISNULL(1))
		payload = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	else
		payload = PG_GETARG_DATUM(1);
	ReadSubmitOptions(fcinfo, 2, true, &opt);
	/* the declaration of an install not yet updated has no batch_id */
	if (PG_NARGS() > 7 && !PG_ARGISNULL(7))
	{
		opt.batch_id = PG_GETARG_INT64(7);
		if (!PG_ARGISNULL(4))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a job of a batch cannot have a unique_key"),
					 errdetail("A unique_key may return an existing job instead of adding one to the batch."),
					 errhint("Pass either batch_id or unique_key.")));
	}

	PG_RETURN_INT64(SubmitOne(queue, payload,
							  PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4),
							  PG_ARGISNULL(4), &opt, false));
}

/*
 * jobq.submit_http(url text, method text, headers jsonb, body text,
 *					queue text, run_at, priority, unique_key, max_attempts,
 *					timeout, timeout_ms int) RETURNS bigint
 *
 * The request is validated and turned into the payload by
 * jobq._http_payload() (SQL: the checks are string and JSON work), then
 * submitted like any job of an http queue.
 */
Datum
jobq_submit_http(PG_FUNCTION_ARGS)
{
	char	   *queue = QueueArg(fcinfo, 4);
	JobqSubmitOptions opt;
	Oid			argtypes[6] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, INT4OID, INTERVALOID};
	Datum		values[6];
	char		nulls[6];
	bool		isnull;
	int			i;
	Datum		payload;
	JobqRoleSwitch sw;
	SPIPlanPtr	plan;

	ReadSubmitOptions(fcinfo, 5, true, &opt);

	for (i = 0; i < 4; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	values[4] = PG_ARGISNULL(10) ? (Datum) 0 : PG_GETARG_DATUM(10);
	nulls[4] = PG_ARGISNULL(10) ? 'n' : ' ';
	values[5] = opt.timeout;
	nulls[5] = opt.timeout_null ? 'n' : ' ';

	/* Build the payload in its own SPI session, as the extension owner. */
	BecomeOwner(&sw);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	plan = JobqKeptPlan(&plan_http_payload,
					"SELECT jobq._http_payload($1, $2, $3, $4, $5, $6)",
					6, argtypes);
	JobqExecPlan(plan, values, nulls, SPI_OK_SELECT, 1);
	payload = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
							&isnull);
	if (isnull)
		elog(ERROR, "jobq: _http_payload returned NULL");
	payload = SPI_datumTransfer(payload, false, -1);
	SPI_finish();
	RestoreCaller(&sw);

	PG_RETURN_INT64(SubmitOne(queue, payload,
							  PG_ARGISNULL(7) ? (Datum) 0 : PG_GETARG_DATUM(7),
							  PG_ARGISNULL(7), &opt, true));
}

/* Widen [*first_id, *last_id] (0: empty) to include id. */
static void
NoteIdRange(int64 id, int64 *first_id, int64 *last_id)
{
	if (*first_id == 0 || id < *first_id)
		*first_id = id;
	if (id > *last_id)
		*last_id = id;
}

/*
 * submit_batch's insert through the table AM (bulk_insert.c), writing the
 * columns the INSERT of the SQL path writes, with the same values: false,
 * having written nothing, when jobq.direct_access is off.  The ids go to
 * rsinfo's tuplestore in array order.
 */
static bool
SubmitBatchDirect(const char *queue, Jsonb *payloads, JobqSubmitOptions *opt,
				  Oid owner, ReturnSetInfo *rsinfo, int64 *first_id, int64 *last_id)
{
	JobqBulkInsert *bulk = JobqBulkBegin("jobs_active");
	Oid			seq;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	AttrNumber	a_id;
	AttrNumber	a_payload;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	MemoryContext row_cxt;
	MemoryContext oldcxt;

	if (bulk == NULL)
		return false;
	seq = JobsIdSequence();

	desc = RelationGetDescr(JobqBulkRelation(bulk));
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	SetNewJobColumns(bulk, values, nulls, queue, opt, owner);
	a_id = JobqBulkAttnum(bulk, "id") - 1;
	a_payload = JobqBulkAttnum(bulk, "payload") - 1;
	nulls[a_id] = false;
	nulls[a_payload] = false;

	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "jobq submit_batch row",
									ALLOCSET_DEFAULT_SIZES);
	it = JsonbIteratorInit(&payloads->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		isnull = false;

		if (tok != WJB_ELEM)
			continue;
		oldcxt = MemoryContextSwitchTo(row_cxt);
		values[a_id] = Int64GetDatum(nextval_internal(seq, false));
		NoteIdRange(DatumGetInt64(values[a_id]), first_id, last_id);
		values[a_payload] = JsonbPGetDatum(JsonbValueToJsonb(&v));
		JobqBulkAdd(bulk, values, nulls);
		MemoryContextSwitchTo(oldcxt);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &values[a_id], &isnull);
		MemoryContextReset(row_cxt);
	}
	MemoryContextDelete(row_cxt);
	JobqBulkEnd(bulk);
	return true;
}

/*
 * The row of the closed batch batch_id of submit_batch's n jobs (ids
 * first_id to last_id), with the callback of its arguments 8 and 9; a
 * batch of no jobs is final at once, and its callback submitted.  Inside
 * SPI as the extension owner.
 */
static void
NewBatchOfJobs(Oid caller, const char *on_complete_queue, FunctionCallInfo fcinfo,
			   int64 n, int64 batch_id, int64 first_id, int64 last_id)
{
	bool		due;

	(void) BatchCreate(caller, on_complete_queue,
					   PG_ARGISNULL(9) ? (Datum) 0 : PG_GETARG_DATUM(9),
					   PG_ARGISNULL(9), n, batch_id, first_id, last_id, &due);
	if (due)
		BatchSubmitCallback(batch_id);
}

/*
 * jobq.submit_batch(queue text, payloads jsonb, run_at, priority,
 *					 unique_key, max_attempts, timeout, batch_id bigint,
 *					 on_complete_queue text, on_complete_payload jsonb)
 *					 RETURNS SETOF bigint
 *
 * One INSERT ... SELECT over jsonb_array_elements: thousands of jobs cost
 * one plan execution.  The ids come back in the order of the array.  The
 * jobs share a batch: the caller's open batch batch_id, or a new one,
 * closed, of exactly these jobs, with the callback given.
 */
Datum
jobq_submit_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *queue = QueueArg(fcinfo, 0);
	Jsonb	   *payloads;
	JobqSubmitOptions opt;
	JobqRoleSwitch sw;
	JobqQueueInfo info;
	Oid			argtypes[9] = {TEXTOID, JSONBOID, INT4OID, TIMESTAMPTZOID,
	INT4OID, INTERVALOID, REGROLEOID, TEXTOID, INT8OID};
	Datum		values[9];
	char		nulls[9] = "         ";
	SPIPlanPtr	plan;
	uint64		i;
	int64		batch_arg = 0;
	char	   *on_complete_queue = NULL;
	bool		new_batch = false;
	int64		first_id = 0;
	int64		last_id = 0;
	int64		njobs;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payloads must not be NULL"),
				 errdetail("submit_batch submits one job per element of the array."),
				 errhint("Pass a JSON array with one payload per job.")));
	payloads = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(payloads) || JB_ROOT_IS_SCALAR(payloads))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payloads must be a JSON array"),
				 errdetail("It is a JSON %s.",
						   JB_ROOT_IS_OBJECT(payloads) ? "object" : "scalar"),
				 errhint("Pass a JSON array with one payload per job, such as '[{\"n\": 1}, {\"n\": 2}]'.")));
	if (!PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("submit_batch does not take a unique_key"),
				 errdetail("One key cannot name several jobs."),
				 errhint("Use jobq.submit for jobs with a unique key.")));
	ReadSubmitOptions(fcinfo, 2, true, &opt);
	/* the declaration of an install not yet updated has no batch arguments */
	if (PG_NARGS() > 9)
	{
		batch_arg = PG_ARGISNULL(7) ? 0 : PG_GETARG_INT64(7);
		on_complete_queue = PG_ARGISNULL(8) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(8));
		if (batch_arg != 0 && (!PG_ARGISNULL(8) || !PG_ARGISNULL(9)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("on_complete_queue and on_complete_payload belong to the batch, not to a submit_batch that adds to it"),
					 errdetail("Batch " INT64_FORMAT " got its callback when it was created.", batch_arg),
					 errhint("Pass them to jobq.create_batch(), or leave batch_id NULL for a new batch.")));
	}
	njobs = JsonContainerSize(&payloads->root);
	/* each element within the limit: only worth looking when the whole is not */
	if (toast_raw_datum_size(PG_GETARG_DATUM(1)) > (Size) jobq_max_payload_size_kb * 1024)
	{
		JsonbIterator *it = JsonbIteratorInit(&payloads->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			n = 0;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			CheckPayloadSize(JsonbPGetDatum(JsonbValueToJsonb(&v)), ++n);
		}
	}

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	PreventCommandIfReadOnly("jobq.submit_batch()");
	BecomeOwner(&sw);
	LockJobsActive();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	LookupQueueForSubmit(queue, sw.caller, &info);
	if (strcmp(info.kind, "http") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("submit_batch cannot submit to queue \"%s\" of kind http", queue),
				 errdetail("Jobs of an http queue are HTTP requests, validated one by one."),
				 errhint("Use jobq.submit_http for each request.")));
	opt.handler = info.handler_text;
	if (batch_arg != 0)
	{
		BatchAddJobs(batch_arg, sw.caller);
		opt.batch_id = batch_arg;
	}
	else if (PG_NARGS() > 9)
	{
		/* its row is written after the jobs, with their id range */
		new_batch = true;
		opt.batch_id = BatchNewId();
	}

	if (SubmitBatchDirect(queue, payloads, &opt, sw.caller, rsinfo, &first_id, &last_id))
	{
		/* ids are positive: 0 is below every job of the batch */
		ClaimFloorNoteWritten(queue, opt.priority, SubmitRunAt(&opt), 0);
		JobEventsSubmitted(queue, sw.caller, JsonContainerSize(&payloads->root));
		if (strcmp(info.kind, "external") != 0 &&
			JsonContainerSize(&payloads->root) > 0)
			JobqWakeAtCommitForQueue(queue);
		if (new_batch)
			NewBatchOfJobs(sw.caller, on_complete_queue, fcinfo, njobs, opt.batch_id,
						   first_id, last_id);
		SPI_finish();
		RestoreCaller(&sw);
		return (Datum) 0;
	}

	plan = JobqKeptPlan(&plan_insert_batch,
					"INSERT INTO jobq.jobs_active "
					"(queue, payload, state, priority, run_at, max_attempts, timeout, owner, handler, batch_id) "
					"SELECT $1, e.value, 'pending', $3, "
					"COALESCE($4, pg_catalog.now()), $5, $6, $7, $8, $9 "
					"FROM pg_catalog.jsonb_array_elements($2) e "
					"RETURNING id",
					9, argtypes);
	values[0] = CStringGetTextDatum(queue);
	values[1] = JsonbPGetDatum(payloads);
	values[2] = Int32GetDatum(opt.priority);
	values[3] = opt.run_at;
	nulls[3] = opt.run_at_null ? 'n' : ' ';
	values[4] = opt.max_attempts;
	nulls[4] = opt.max_attempts_null ? 'n' : ' ';
	values[5] = opt.timeout;
	nulls[5] = opt.timeout_null ? 'n' : ' ';
	values[6] = ObjectIdGetDatum(sw.caller);
	values[7] = opt.handler ? CStringGetTextDatum(opt.handler) : (Datum) 0;
	nulls[7] = opt.handler ? ' ' : 'n';
	values[8] = Int64GetDatum(opt.batch_id);
	nulls[8] = opt.batch_id != 0 ? ' ' : 'n';
	JobqExecPlan(plan, values, nulls, SPI_OK_INSERT_RETURNING, 0);
	ClaimFloorNoteWritten(queue, opt.priority, SubmitRunAt(&opt), 0);
	JobEventsSubmitted(queue, sw.caller, (int64) SPI_processed);

	for (i = 0; i < SPI_processed; i++)
	{
		Datum		id;
		bool		isnull;

		id = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1,
						   &isnull);
		NoteIdRange(DatumGetInt64(id), &first_id, &last_id);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &id, &isnull);
	}

	if (SPI_processed > 0 && strcmp(info.kind, "external") != 0)
		JobqWakeAtCommitForQueue(queue);
	if (new_batch)
		NewBatchOfJobs(sw.caller, on_complete_queue, fcinfo, (int64) SPI_processed,
					   opt.batch_id, first_id, last_id);
	SPI_finish();
	RestoreCaller(&sw);
	return (Datum) 0;
}
