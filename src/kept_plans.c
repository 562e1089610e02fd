/*-------------------------------------------------------------------------
 *
 * kept_plans.c
 *	  SPI plans prepared once per process and kept (SPI_keepplan), always
 *	  generic, planned again when jobs_active has grown or shrunk a lot.
 *
 * IDENTIFICATION
 *	  src/kept_plans.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "storage/bufmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "access/htup_details.h"




/*
 * Prepare sql once per process and keep the plan (SPI_keepplan) in *plan;
 * later calls return it.  Used by every module that runs SQL on jobq tables.
 *
 * The plan is always the generic one.  Left to itself the plan cache plans
 * a statement again on every call whenever the generic plan's estimate
 * looks worse than a custom plan's (a LIMIT $n claim did, and the
 * executor's time went to the planner).  Our statements are written so
 * that their generic plans are the right ones: equality on keys, arrays
 * through = ANY, no parameter-dependent choice of index.
 */
#define MAX_KEPT_PLANS 64
static SPIPlanPtr *kept_plans[MAX_KEPT_PLANS];
static int	n_kept_plans = 0;
static BlockNumber planned_at_blocks = InvalidBlockNumber;

SPIPlanPtr
JobqKeptPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		int			i;
		bool		known = false;
		SPIPlanPtr	p;

		for (i = 0; i < n_kept_plans; i++)
			known |= (kept_plans[i] == plan);
		if (!known && n_kept_plans < MAX_KEPT_PLANS)
			kept_plans[n_kept_plans++] = plan;
		p = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "jobq: SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "jobq: SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

/*
 * Generic plans are made once, with the table sizes of that moment, and
 * are replaced only when the relation's statistics change (VACUUM,
 * ANALYZE).  A plan made while jobs_active was empty may scan it
 * sequentially ("it has 3 pages") and keep doing so as it grows to
 * thousands -- for a minute or more, or for as long as a long transaction
 * keeps autovacuum from getting anywhere.  So whenever jobs_active has
 * doubled (or shrunk to a quarter) since this process planned, every kept
 * plan is dropped and made again on next use.  Call at a point where no
 * kept plan is executing (the start of a claim or an entry point).
 */
void
JobqReplanIfResized(void)
{
	Oid			nsp = get_namespace_oid(JOBQ_SCHEMA_NAME, false);
	Oid			relid = get_relname_relid("jobs_active", nsp);
	Relation	rel;
	BlockNumber nblocks;
	int			i;

	if (!OidIsValid(relid))
		return;
	rel = table_open(relid, AccessShareLock);
	nblocks = RelationGetNumberOfBlocks(rel);
	table_close(rel, NoLock);

	if (planned_at_blocks == InvalidBlockNumber)
	{
		planned_at_blocks = nblocks;
		return;
	}
	if (nblocks <= 2 * planned_at_blocks + 8 && 4 * nblocks + 8 >= planned_at_blocks)
		return;

	for (i = 0; i < n_kept_plans; i++)
	{
		if (*kept_plans[i] != NULL)
		{
			SPI_freeplan(*kept_plans[i]);
			*kept_plans[i] = NULL;
		}
	}
	planned_at_blocks = nblocks;
}

/* Run a kept plan; any result but expect is an internal error. */
void
JobqExecPlan(SPIPlanPtr plan, Datum *values, const char *nulls, int expect,
			long count)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, count);

	if (rc != expect)
		elog(ERROR, "jobq: SPI_execute_plan returned %s",
			 SPI_result_code_string(rc));
}
