/*-------------------------------------------------------------------------
 *
 * settle.c
 *	  Outcomes an executor could not record inside its batch because
 *	  another transaction held the job's row, recorded after the batch
 *	  commits.
 *
 * The holder is typically a user's jobq.cancel not committed yet.  An
 * executor never waits for such a lock inside a batch: it holds the rows of
 * the whole batch, and the holder may be waiting for one of them, a deadlock
 * that could cost the batch its finished work.  So StoreComplete and
 * StoreFail skip the row (their busy argument) and the job's subtransaction,
 * with the handler's writes, rolls back.  The executor keeps the outcome
 * here (SettleLater) and, once the batch has committed, records it in a
 * transaction holding nothing else (SettleInTransaction), waiting as long
 * as needed: the failure (fenced by (id, attempt): nothing if the holder
 * cancelled the job), or, for a job whose handler had succeeded, a release
 * to run again without using an attempt (its writes were rolled back).
 *
 * IDENTIFICATION
 *	  src/settle.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"
#include "settle.h"

#include "utils/memutils.h"

typedef struct ContendedJob
{
	int64		id;
	int32		attempt;
	bool		failed;
	char	   *message;
	const char *error_class;	/* a static string, or NULL */
	char		sqlstate[6];
	char	   *detail;
} ContendedJob;

/* at most one batch's jobs, kept until the batch's end */
static ContendedJob contended[JOBQ_MAX_BATCH];
static int	ncontended = 0;
static MemoryContext contended_cxt = NULL;

/* Keep the outcome of job (id, attempt): failed_run's failure, or NULL for a success. */
void
SettleLater(int64 id, int32 attempt, JobqSqlRun *failed_run)
{
	ContendedJob *c;

	if (contended_cxt == NULL)
		contended_cxt = AllocSetContextCreate(TopMemoryContext, "jobq contended jobs",
											  ALLOCSET_SMALL_SIZES);
	if (ncontended >= JOBQ_MAX_BATCH)
		elog(ERROR, "jobq: too many contended jobs in one batch");
	c = &contended[ncontended++];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->attempt = attempt;
	c->failed = (failed_run != NULL);
	if (failed_run != NULL)
	{
		c->message = failed_run->message ?
			MemoryContextStrdup(contended_cxt, failed_run->message) : NULL;
		c->error_class = failed_run->error_class;
		strlcpy(c->sqlstate, failed_run->sqlstate, sizeof(c->sqlstate));
		c->detail = failed_run->detail ?
			MemoryContextStrdup(contended_cxt, failed_run->detail) : NULL;
	}
}

bool
SettlePending(void)
{
	return ncontended > 0;
}

/* The batch rolled back (its jobs run again): nothing to settle. */
void
SettleForget(void)
{
	ncontended = 0;
	if (contended_cxt != NULL)
		MemoryContextReset(contended_cxt);
}

/* Record what was kept, in the caller's fresh transaction. */
void
SettleInTransaction(void)
{
	int			i;

	for (i = 0; i < ncontended; i++)
	{
		ContendedJob *c = &contended[i];

		if (c->failed)
			(void) StoreFail(c->id, c->attempt, c->message, c->error_class,
							 c->sqlstate, c->detail, NULL);
		else
			(void) StoreRelease(c->id, c->attempt);
	}
	SettleForget();
}
