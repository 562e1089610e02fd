/*-------------------------------------------------------------------------
 *
 * submit_options.h
 *	  The arguments of submit, submit_batch and submit_http, read and
 *	  checked (submit_options.c).
 *
 * IDENTIFICATION
 *	  src/submit_options.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_SUBMIT_OPTIONS_H
#define JOBQ_SUBMIT_OPTIONS_H

#include "fmgr.h"

/* Options shared by submit, submit_batch and submit_http. */
typedef struct JobqSubmitOptions
{
	Datum		run_at;
	bool		run_at_null;
	int32		priority;
	Datum		max_attempts;
	bool		max_attempts_null;
	Datum		timeout;
	bool		timeout_null;
	int64		batch_id;		/* jobq.job_batches.id; 0: none */
	/* not options: from the queue's lookup */
	const char *handler;		/* pinned on the job; NULL: none */
	bool		unique_per_owner;	/* unique_key is the owner's own */
} JobqSubmitOptions;

extern void ReadSubmitOptions(FunctionCallInfo fcinfo, int first, bool has_unique_key,
							  JobqSubmitOptions *opt);
extern void CheckPayloadSize(Datum payload, int element);
extern char *QueueArg(FunctionCallInfo fcinfo, int argno);

/*
 * A unique_key is at most JOBQ_MAX_UNIQUE_KEY bytes: it is an index key,
 * and a longer one would fail in the index with a less helpful error.
 */
#define JOBQ_MAX_UNIQUE_KEY 1024
extern void CheckUniqueKey(Datum unique_key);

#endif							/* JOBQ_SUBMIT_OPTIONS_H */
