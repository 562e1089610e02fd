/*-------------------------------------------------------------------------
 *
 * bulk_insert.c
 *	  Many rows into one of jobq's own tables at once: the table AM's
 *	  multi-insert (one WAL record per heap page, not per row) and then the
 *	  index entries, as COPY FROM does.
 *
 * Why: an INSERT statement costs executor start-up, a projection and a
 * constraint check per row, and a WAL record per row.  The executor records
 * the outcome of every batch of jobs (the final rows and the attempt rows)
 * and submit_batch writes up to hundreds of thousands of jobs per call; for
 * both the statement was a fifth or more of the time.
 *
 * What the executor's INSERT would do and this does not, and why that is
 * safe here:
 *	- triggers and rules: jobq's tables have none (a user's are refused,
 *	  see JobqDirectAccess);
 *	- the partition constraint and CHECK constraints: jobq's tables have no
 *	  CHECK constraints (see sql/install/20_tables.sql) and the callers write
 *	  the partition key themselves; NOT NULL is checked here;
 *	- row-level security: these are jobq's own writes, made by jobq as the
 *	  table owner, to whom no policy applies anyway;
 *	- column defaults: callers give every column a value (a column added
 *	  later with a default must be written by them too; NOT NULL ones are
 *	  caught here).
 *
 * IDENTIFICATION
 *	  src/bulk_insert.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "bulk_insert.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* Rows per multi-insert: COPY's figure; bounds the memory held. */
#define BULK_GROUP 1000

struct JobqBulkInsert
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	CommandId	cid;
	MemoryContext cxt;			/* where JobqBulkBegin was called: the slots */
	MemoryContext rows_cxt;		/* the tuples of the group being gathered */
	int			n;				/* rows gathered */
	int			nslots;			/* slots made so far */
	TupleTableSlot *slots[BULK_GROUP];
};

JobqBulkInsert *
JobqBulkBegin(const char *relname)
{
	Relation	rel = table_open(JobqRelid(relname), RowExclusiveLock);
	JobqBulkInsert *bulk;

	if (!JobqDirectAccess(rel))
	{
		table_close(rel, NoLock);
		return NULL;
	}

	bulk = palloc0(sizeof(JobqBulkInsert));
	bulk->rel = rel;
	bulk->estate = CreateExecutorState();
	bulk->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(bulk->rri, rel, 0, NULL, 0);
	ExecOpenIndices(bulk->rri, false);
	bulk->cid = GetCurrentCommandId(true);
	bulk->cxt = CurrentMemoryContext;
	bulk->rows_cxt = AllocSetContextCreate(CurrentMemoryContext, "jobq bulk insert",
										   ALLOCSET_DEFAULT_SIZES);
	return bulk;
}

Relation
JobqBulkRelation(JobqBulkInsert *bulk)
{
	return bulk->rel;
}

AttrNumber
JobqBulkAttnum(JobqBulkInsert *bulk, const char *attname)
{
	return JobqAttnum(RelationGetDescr(bulk->rel), attname, false);
}

static void
BulkFlush(JobqBulkInsert *bulk)
{
	MemoryContext oldcxt;
	int			i;

	if (bulk->n == 0)
		return;
	/* the AM's multi-insert leaks into the current context: ours, reset below */
	oldcxt = MemoryContextSwitchTo(bulk->rows_cxt);
	table_multi_insert(bulk->rel, bulk->slots, bulk->n, bulk->cid, 0, NULL);
	for (i = 0; i < bulk->n; i++)
	{
		List	   *recheck;

		if (bulk->rri->ri_NumIndices > 0)
		{
			recheck = ExecInsertIndexTuples(bulk->rri, bulk->slots[i], bulk->estate,
											false, false, NULL, NIL);
			/* only deferrable constraints ask for a recheck: jobq has none */
			list_free(recheck);
			ResetPerTupleExprContext(bulk->estate);
		}
		ExecClearTuple(bulk->slots[i]);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(bulk->rows_cxt);
	bulk->n = 0;
}

void
JobqBulkAdd(JobqBulkInsert *bulk, Datum *values, bool *isnull)
{
	TupleDesc	desc = RelationGetDescr(bulk->rel);
	MemoryContext oldcxt;
	HeapTuple	tuple;
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attnotnull && isnull[i])
			elog(ERROR, "jobq: NULL for column \"%s\" of jobq.%s",
				 NameStr(att->attname), RelationGetRelationName(bulk->rel));
	}

	if (bulk->n == bulk->nslots)
	{
		oldcxt = MemoryContextSwitchTo(bulk->cxt);
		bulk->slots[bulk->nslots++] = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		MemoryContextSwitchTo(oldcxt);
	}
	oldcxt = MemoryContextSwitchTo(bulk->rows_cxt);
	tuple = heap_form_tuple(desc, values, isnull);
	MemoryContextSwitchTo(oldcxt);
	/* the slot owns it: the multi-insert then takes it as it is, uncopied */
	ExecStoreHeapTuple(tuple, bulk->slots[bulk->n], true);
	bulk->n++;
	if (bulk->n == BULK_GROUP)
		BulkFlush(bulk);
}

void
JobqBulkEnd(JobqBulkInsert *bulk)
{
	int			i;

	BulkFlush(bulk);
	for (i = 0; i < bulk->nslots; i++)
		ExecDropSingleTupleTableSlot(bulk->slots[i]);
	ExecCloseIndices(bulk->rri);
	FreeExecutorState(bulk->estate);
	MemoryContextDelete(bulk->rows_cxt);
	/* the lock stays until the end of the transaction, as a statement's does */
	table_close(bulk->rel, NoLock);
	pfree(bulk);
}
