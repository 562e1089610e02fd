/*-------------------------------------------------------------------------
 *
 * http_store.c
 *	  Every change the HTTP worker makes to a job row, one function per
 *	  transition, each through the job store: claim (StoreClaim, under the
 *	  worker's token: circuit breakers, limits and claimed events as for
 *	  executors), complete (StoreComplete), fail (jobq._fail:
 *	  classification, retry or dead letter), release (StoreRelease), and
 *	  the read that tells which in-flight jobs were cancelled.  Nothing else
 *	  in the HTTP code writes jobq's tables.
 *
 *	  Circuit breakers: a queue that names a breaker key is behind it as a
 *	  whole (StoreClaim asks it).  The jobs of a queue that names none are
 *	  each behind the breaker of their target host, "http:<host>": asked
 *	  after the claim (the host is in the payload), and counted with the
 *	  job's outcome (BreakerJobKey).  A job whose host's breaker is open is
 *	  given back without using its attempt, pending until the breaker's
 *	  next probe (StoreRelease with the reason), or, in breaker_mode
 *	  fail_fast, dead-lettered at once with class breaker_open.
 *
 *	  Each function runs inside the caller's transaction, SPI connected.
 *
 * IDENTIFICATION
 *	  src/http_store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "breaker.h"
#include "http.h"
#include "jobq.h"
#include "job_store.h"

/* a host's half-open breaker with no probe left: look again this soon */
#define HOST_PROBE_WAIT_MS 1000

static SPIPlanPtr plan_queues = NULL;
static SPIPlanPtr plan_due = NULL;
static SPIPlanPtr plan_fail = NULL;
static SPIPlanPtr plan_running = NULL;
static SPIPlanPtr plan_unhold = NULL;
/* BreakerCloses() at the last unhold (none yet: unhold at start) */
static uint64 closes_seen = PG_UINT64_MAX;

static int	rr_start = 0;			/* round robin over the http queues */

static char *
GetText(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static bool
PayloadBool(Jsonb *payload, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&payload->root, JB_FOBJECT, &k);
	return v != NULL && v->type == jbvBool && v->val.boolean;
}

static JsonbValue *
PayloadValue(Jsonb *payload, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&payload->root, JB_FOBJECT, &k);
}

static char *
PayloadString(Jsonb *payload, const char *key)
{
	JsonbValue *v = PayloadValue(payload, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * May the job just claimed (of a queue with host breakers) run now, behind
 * the breaker of its host?  If not, it is given back or dead-lettered here.
 */
static bool
HostAdmits(JobqClaimRow *row, const char *key, bool fail_fast_mode)
{
	TimestampTz held_until;
	bool		probing;
	bool		fail_fast;
	char	   *reason;

	if (BreakerAdmitKey(key, fail_fast_mode, 1, &held_until, &probing, &fail_fast) > 0)
		return true;
	reason = psprintf("the circuit breaker \"%s\" is open", key);
	if (fail_fast)
		(void) StoreFail(row->id, row->attempt, reason, "breaker_open", NULL,
						 NULL, "breaker_mode fail_fast", NULL);
	else
	{
		/* half open with its probes out: their verdict comes soon */
		if (probing || held_until == 0)
			held_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 HOST_PROBE_WAIT_MS);
		(void) StoreRelease(row->id, row->attempt, held_until, key);
	}
	pfree(reason);
	return false;
}

/*
 * Claim up to want jobs over the http queues, held under token.  Each job
 * gets its own memory context (a child of outer) so that it can be freed
 * alone; what the claim itself returns lives in the caller's transaction
 * and goes with it (outer lives as long as the worker).  *next_due: when the earliest pending job not
 * yet due becomes due (0: none).
 */
JobqHttpJob *
JobqHttpStoreClaim(MemoryContext outer, int want, int64 token,
				   const char *worker, int *nclaimed, TimestampTz *next_due)
{
	JobqHttpJob *head = NULL;
	char	  **queues;
	bool	   *limited;
	int64	   *queue_timeout_ms;
	bool	   *host_breakers;
	bool	   *fails_fast;
	int			nqueues;
	int			i;
	int			ret;
	Interval	lease;
	JobqClaimRow *rows;
	Oid			http_role;
	Oid			admin_role;
	Oid			due_types[1] = {TEXTARRAYOID};

	*nclaimed = 0;
	*next_due = 0;

	/* a breaker closed since we last looked: the jobs it held are due */
	if (BreakerCloses() != closes_seen)
	{
		closes_seen = BreakerCloses();
		JobqKeptPlan(&plan_unhold, "SELECT jobq._breaker_unhold()", 0, NULL);
		if (SPI_execute_plan(plan_unhold, NULL, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "jobq: releasing held http jobs failed");
	}

	JobqKeptPlan(&plan_queues,
				 "SELECT q.name, q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL,"
				 "       (pg_catalog.date_part('epoch', q.timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8,"
				 "       q.breaker IS NULL, q.breaker_mode OPERATOR(pg_catalog.=) 'fail_fast'"
				 "  FROM jobq.queues q"
				 " WHERE q.kind OPERATOR(pg_catalog.=) 'http' AND NOT q.paused"
				 " ORDER BY q.name", 0, NULL);
	ret = SPI_execute_plan(plan_queues, NULL, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "jobq: reading http queues failed: %s", SPI_result_code_string(ret));
	nqueues = (int) SPI_processed;
	if (nqueues == 0)
		return NULL;
	queues = palloc(sizeof(char *) * nqueues);
	limited = palloc(sizeof(bool) * nqueues);
	queue_timeout_ms = palloc(sizeof(int64) * nqueues);
	host_breakers = palloc(sizeof(bool) * nqueues);
	fails_fast = palloc(sizeof(bool) * nqueues);
	for (i = 0; i < nqueues; i++)
	{
		bool		isnull;

		queues[i] = GetText(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		limited[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		queue_timeout_ms[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		host_breakers[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull));
		fails_fast[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 5, &isnull));
	}

	memset(&lease, 0, sizeof(lease));
	lease.time = (int64) 3600 * USECS_PER_SEC;	/* a backstop: liveness is the token */
	rows = palloc(sizeof(JobqClaimRow) * want);
	http_role = get_role_oid("jobq_http", true);
	admin_role = get_role_oid("jobq_admin", true);
	rr_start = (rr_start + 1) % nqueues;
	for (i = 0; i < nqueues && *nclaimed < want; i++)
	{
		int			qi = (rr_start + i) % nqueues;
		const char *queue = queues[qi];
		bool		busy = false;
		int			n;
		int			r;

		/* the job store's claim: breakers, limits, floors, claimed events */
		n = StoreClaim(queue, limited[qi], want - *nclaimed, &lease, worker, token, false,
					   rows, CurrentMemoryContext, &busy, NULL);
		for (r = 0; r < n; r++)
		{
			MemoryContext cxt = AllocSetContextCreate(outer, "jobq http job",
													  ALLOCSET_SMALL_SIZES);
			MemoryContext old = MemoryContextSwitchTo(cxt);
			JobqHttpJob *job = palloc0(sizeof(JobqHttpJob));
			Jsonb	   *payload;
			JsonbValue *v;
			int64		job_timeout;

			job->id = rows[r].id;
			job->attempt = rows[r].attempt;
			job->queue = pstrdup(queue);
			payload = DatumGetJsonbPCopy(rows[r].payload);
			job_timeout = rows[r].timeout_null ? queue_timeout_ms[qi] :
				JobqIntervalToMs(IntervalPGetDatum(&rows[r].timeout), false);
			/* submitted by a role that may still send HTTP requests? */
			job->owner_may =
				(OidIsValid(http_role) && has_privs_of_role(rows[r].owner, http_role)) ||
				(OidIsValid(admin_role) && has_privs_of_role(rows[r].owner, admin_role));
			job->url = PayloadString(payload, "url");
			if (job->url == NULL)
				job->url = "";
			if (host_breakers[qi])
				job->breaker_key = JobqHttpBreakerKey(job->url);
			if (job->breaker_key != NULL &&
				!HostAdmits(&rows[r], job->breaker_key, fails_fast[qi]))
			{
				MemoryContextSwitchTo(old);
				MemoryContextDelete(cxt);
				continue;
			}
			job->method = PayloadString(payload, "method");
			if (job->method == NULL)
				job->method = "GET";
			job->body = PayloadString(payload, "body");
			v = PayloadValue(payload, "headers");
			if (v != NULL && v->type == jbvBinary)
				job->headers = JsonbValueToJsonb(v);
			job->follow_redirects = PayloadBool(payload, "follow_redirects");
			v = PayloadValue(payload, "timeout_ms");
			job->timeout_ms = job_timeout;
			if (v != NULL && v->type == jbvNumeric)
				job->timeout_ms = DatumGetInt64(DirectFunctionCall1(numeric_int8,
																	NumericGetDatum(v->val.numeric)));
			job->timeout_ms = Max(job->timeout_ms, 1);
			job->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														job->timeout_ms);
			MemoryContextSwitchTo(old);
			job->next = head;
			head = job;
			(*nclaimed)++;
		}
	}

	if (*nclaimed < want)
	{
		ArrayType  *arr;
		Datum	   *elems = palloc(sizeof(Datum) * nqueues);
		Datum		values[1];
		bool		isnull;
		Datum		d;

		for (i = 0; i < nqueues; i++)
			elems[i] = CStringGetTextDatum(queues[i]);
		arr = construct_array(elems, nqueues, TEXTOID, -1, false, TYPALIGN_INT);
		values[0] = PointerGetDatum(arr);
		JobqKeptPlan(&plan_due,
					 "SELECT pg_catalog.min(a.run_at) FROM jobq.jobs_active a"
					 " WHERE a.queue OPERATOR(pg_catalog.=) ANY ($1)"
					 "   AND a.state OPERATOR(pg_catalog.=) 'pending'",
					 1, due_types);
		ret = SPI_execute_plan(plan_due, values, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "jobq: http next due failed: %s", SPI_result_code_string(ret));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			*next_due = DatumGetTimestampTz(d);
	}
	return head;
}

/* 2xx: completed with the response as result (fenced on the lease). */
void
JobqHttpStoreComplete(JobqHttpJob *job, Jsonb *result)
{
	/* fenced by (id, attempt); this worker's own lease */
	BreakerJobKey(job->id, job->breaker_key);
	(void) StoreComplete(job->id, job->attempt, result, true, NULL);
	BreakerJobKey(0, NULL);
}

/*
 * A failed attempt: jobq._fail classifies it by the error rules (the HTTP
 * status, else the message's prefix), honours Retry-After as a minimum
 * delay, and schedules the retry or dead-letters the job.
 */
void
JobqHttpStoreFail(JobqHttpJob *job, const char *error, int http_status,
				  bool has_retry_after, int64 retry_after_ms)
{
	Oid			types[5] = {INT8OID, INT4OID, TEXTOID, FLOAT8OID, INT4OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	JobqKeptPlan(&plan_fail,
				 "SELECT jobq._fail($1, $2, $3, NULL,"
				 " pg_catalog.make_interval(secs => $4), NULL, $5, NULL)",
				 5, types);
	values[0] = Int64GetDatum(job->id);
	values[1] = Int32GetDatum(job->attempt);
	values[2] = CStringGetTextDatum(error);
	values[3] = Float8GetDatum(retry_after_ms / 1000.0);
	if (!has_retry_after)
		nulls[3] = 'n';
	values[4] = Int32GetDatum(http_status);
	if (http_status == 0)
		nulls[4] = 'n';
	BreakerJobKey(job->id, job->breaker_key);
	if (SPI_execute_plan(plan_fail, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: http fail failed");
	BreakerJobKey(0, NULL);
}

/* Shutdown with the job in flight: pending again, no attempt used. */
void
JobqHttpStoreRelease(JobqHttpJob *job)
{
	/* a probe given back frees its place for another */
	BreakerJobKey(job->id, job->breaker_key);
	(void) StoreRelease(job->id, job->attempt, 0, NULL);
	BreakerJobKey(0, NULL);
}

/* Is the job still running under this lease (not cancelled)? Read only. */
bool
JobqHttpStoreStillRunning(JobqHttpJob *job)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];

	JobqKeptPlan(&plan_running,
				 "SELECT 1 FROM jobq.jobs_active a"
				 " WHERE a.id OPERATOR(pg_catalog.=) $1"
				 "   AND a.attempt OPERATOR(pg_catalog.=) $2"
				 "   AND a.state OPERATOR(pg_catalog.=) 'running'",
				 2, types);
	values[0] = Int64GetDatum(job->id);
	values[1] = Int32GetDatum(job->attempt);
	if (SPI_execute_plan(plan_running, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: http running check failed");
	return SPI_processed > 0;
}
