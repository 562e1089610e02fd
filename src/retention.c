/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  The cleanup duty: final jobs past retention removed by the executors,
 *	  in batches of one transaction each (jobq._cleanup_batch, in
 *	  sql/install/76_retention.sql, says what goes).
 *
 * Short transactions so that the cleanup holds no lock and no snapshot for
 * long (a long one would hold back VACUUM on every table, jobs_active
 * first); a time budget per run so that the executor doing it is back to
 * its jobs soon: a run that stops with work left is run again a second
 * later (duties.c), so a large backlog of old jobs is removed steadily
 * rather than in one long pause.
 *
 * IDENTIFICATION
 *	  src/retention.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "duties.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* jobs per transaction */
#define CLEANUP_BATCH 1000
/* one run's time budget */
#define CLEANUP_BUDGET_MS 2000

static SPIPlanPtr plan_cleanup = NULL;
static SPIPlanPtr plan_cleanup_other = NULL;

/*
 * The other rows that retention bounds (old metrics, finished batches, old
 * alert history), in their own transaction.
 */
static void
CleanupOtherRows(void)
{
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	JobqKeptPlan(&plan_cleanup_other, "SELECT jobq._cleanup_metrics(), jobq._cleanup_batches(NULL)", 0, NULL);
	if (SPI_execute_plan(plan_cleanup_other, NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: cleanup of metrics, alert history and batches failed");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* One batch in its own transaction: how many jobs it removed. */
static int
CleanupBatch(void)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	bool		isnull;
	int			got;

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	JobqKeptPlan(&plan_cleanup, "SELECT jobq._cleanup_batch($1)", 1, argtypes);
	values[0] = Int32GetDatum(CLEANUP_BATCH);
	if (SPI_execute_plan(plan_cleanup, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "jobq: cleanup batch failed");
	got = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return got;
}

bool
JobqCleanupDuty(void)
{
	TimestampTz start = GetCurrentTimestamp();

	CleanupOtherRows();
	for (;;)
	{
		if (CleanupBatch() < CLEANUP_BATCH)
			return false;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), CLEANUP_BUDGET_MS))
			return true;
	}
}
