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
 * transaction holding nothing else (SettleInTransaction): the failure
 * (fenced by (id, attempt): nothing if the holder cancelled the job), or,
 * for a job whose handler had succeeded, a release to run again without
 * using an attempt (its writes were rolled back).  It waits for the row at
 * most SETTLE_LOCK_TIMEOUT_MS: a holder left idle (a user's BEGIN; SELECT
 * jobq.cancel(...) never committed) keeps the outcome for the next try,
 * after the next batch or wake-up, instead of stopping the executor.
 *
 * IDENTIFICATION
 *	  src/settle.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_store.h"
#include "settle.h"

#include "access/xact.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#define SETTLE_LOCK_TIMEOUT_MS "1000"

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

/* one batch's jobs, and those of earlier batches still held by others */
#define MAX_CONTENDED (4 * JOBQ_MAX_BATCH)
static ContendedJob contended[MAX_CONTENDED];
static int	ncontended = 0;
static MemoryContext contended_cxt = NULL;
/* the first `carried` entries are from earlier batches, still held then */
static int	carried = 0;

/* Keep the outcome of job (id, attempt): failed_run's failure, or NULL for a success. */
void
SettleLater(int64 id, int32 attempt, JobqSqlRun *failed_run)
{
	ContendedJob *c;

	if (contended_cxt == NULL)
		contended_cxt = AllocSetContextCreate(TopMemoryContext, "jobq contended jobs",
											  ALLOCSET_SMALL_SIZES);
	if (ncontended >= MAX_CONTENDED)
		elog(ERROR, "jobq: too many jobs whose rows other transactions hold");
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

/*
 * The batch rolled back (its jobs run again): nothing of it to settle.
 * Outcomes carried from earlier batches stay.
 */
void
SettleForget(void)
{
	ncontended = carried;
	if (ncontended == 0 && contended_cxt != NULL)
		MemoryContextReset(contended_cxt);
}

/*
 * Record one kept outcome in a subtransaction: false when the row is still
 * held after the lock timeout (kept for the next try); other errors are
 * raised.
 */
static bool
SettleOne(ContendedJob *c)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool done = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		if (c->failed)
			(void) StoreFail(c->id, c->attempt, c->message, c->error_class,
							 NULL, c->sqlstate, c->detail, NULL);
		else
			(void) StoreRelease(c->id, c->attempt, 0, NULL);
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
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		FreeErrorData(edata);
		done = false;
	}
	PG_END_TRY();
	return done;
}

/* Record what was kept, in the caller's fresh transaction. */
void
SettleInTransaction(void)
{
	int			i;
	int			kept = 0;
	int			nestlevel;

	if (ncontended == 0)
		return;
	/* for these statements only (undone below, as a function's SET is) */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("lock_timeout", SETTLE_LOCK_TIMEOUT_MS,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	for (i = 0; i < ncontended; i++)
	{
		if (!SettleOne(&contended[i]))
			contended[kept++] = contended[i];	/* its strings stay in contended_cxt */
	}
	AtEOXact_GUC(true, nestlevel);
	ncontended = carried = kept;
	if (kept == 0 && contended_cxt != NULL)
		MemoryContextReset(contended_cxt);
}
