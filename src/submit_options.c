/*-------------------------------------------------------------------------
 *
 * submit_options.c
 *	  The arguments of submit, submit_batch and submit_http, read and
 *	  checked before anything is written: ranges of times and limits, the
 *	  payload's size, the queue name.
 *
 * IDENTIFICATION
 *	  src/submit_options.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "submit_options.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* Read the options of submit/submit_batch/submit_http starting at argument first. */
void
ReadSubmitOptions(FunctionCallInfo fcinfo, int first, bool has_unique_key,
				  JobqSubmitOptions *opt)
{
	int			a = first;

	opt->handler = NULL;		/* set by the queue's lookup */
	opt->batch_id = 0;			/* set by the caller */
	opt->run_at_null = PG_ARGISNULL(a);
	opt->run_at = opt->run_at_null ? (Datum) 0 : PG_GETARG_DATUM(a);
	a++;
	/* NULL priority means the default, 0 */
	opt->priority = PG_ARGISNULL(a) ? 0 : PG_GETARG_INT32(a);
	a++;
	if (has_unique_key)
		a++;					/* read by the caller */
	opt->max_attempts_null = PG_ARGISNULL(a);
	opt->max_attempts = opt->max_attempts_null ? (Datum) 0 : PG_GETARG_DATUM(a);
	a++;
	opt->timeout_null = PG_ARGISNULL(a);
	opt->timeout = opt->timeout_null ? (Datum) 0 : PG_GETARG_DATUM(a);

	if (!opt->max_attempts_null && DatumGetInt32(opt->max_attempts) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be at least 1, not %d",
						DatumGetInt32(opt->max_attempts)),
				 errdetail("max_attempts counts every try of a job, the first included."),
				 errhint("Pass NULL to use the queue's max_attempts.")));
	if (!opt->timeout_null)
	{
		/* jobq._timeout_in_range: 1 ms .. 24 days */
		Interval	least = {.time = 1000};
		Interval	most = {.day = 24};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, opt->timeout,
											  IntervalPGetDatum(&least))) < 0 ||
			DatumGetInt32(DirectFunctionCall2(interval_cmp, opt->timeout,
											  IntervalPGetDatum(&most))) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must be between 1 millisecond and 24 days, not %s",
							DatumGetCString(DirectFunctionCall1(interval_out,
																opt->timeout))),
					 errdetail("timeout is the hard limit of one attempt, enforced to the millisecond."),
					 errhint("Pass NULL to use the queue's timeout.")));
	}
	if (!opt->run_at_null)
	{
		TimestampTz run_at = DatumGetTimestampTz(opt->run_at);
		TimestampTz now = GetCurrentTransactionStartTimestamp();

		/*
		 * A run_at long past would put the job ahead of every job waiting
		 * (the claim order is priority, run_at, id); one beyond a century
		 * (infinity included) would never run.
		 */
		if (TIMESTAMP_NOT_FINITE(run_at) ||
			run_at < now - USECS_PER_DAY ||
			run_at > now + INT64CONST(36525) * USECS_PER_DAY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("run_at must be between a day ago and 100 years ahead, not %s",
							DatumGetCString(DirectFunctionCall1(timestamptz_out,
																opt->run_at))),
					 errdetail("run_at is when the job may run first; a past run_at would put the job ahead of the jobs already waiting."),
					 errhint("Pass NULL to run the job as soon as possible.")));
	}
}

/*
 * Refuse a payload larger than jobq.max_payload_size (its uncompressed
 * size as stored).  element: its position in submit_batch's array (1-based),
 * or 0.
 */
void
CheckPayloadSize(Datum payload, int element)
{
	Size		size = toast_raw_datum_size(payload);
	Size		limit = (Size) jobq_max_payload_size_kb * 1024;

	if (size > limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 element > 0 ?
				 errmsg("payload %d of the batch is too large", element) :
				 errmsg("payload is too large"),
				 errdetail("The payload takes %zu bytes; jobq.max_payload_size is %zu bytes.",
						   size, limit),
				 errhint("Store large data in a table and pass its key in the payload, or raise jobq.max_payload_size.")));
}

char *
QueueArg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("queue must not be NULL"),
				 errdetail("Every job belongs to a queue."),
				 errhint("Pass the name of a queue from jobq.queues.")));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* Refuse a unique_key longer than JOBQ_MAX_UNIQUE_KEY bytes (54000). */
void
CheckUniqueKey(Datum unique_key)
{
	Size		len = VARSIZE_ANY_EXHDR(DatumGetPointer(unique_key));

	if (len > JOBQ_MAX_UNIQUE_KEY)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("unique_key is too long: %zu bytes, at most %d", len, JOBQ_MAX_UNIQUE_KEY),
				 errdetail("A unique_key names one not-final job of its queue; it is kept in an index."),
				 errhint("Use a shorter key, for example a hash of the long one (md5(...)).")));
}
