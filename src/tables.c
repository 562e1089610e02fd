/*-------------------------------------------------------------------------
 *
 * tables.c
 *	  Finding jobq's own tables and columns, and reading one queue's row,
 *	  for the paths that use the table access method directly (submit,
 *	  store_claim_direct.c, the direct completion, bulk_insert.c).
 *
 * Nothing here is cached across calls: a client backend outlives DROP and
 * CREATE EXTENSION, and these lookups are syscache hits.
 *
 * IDENTIFICATION
 *	  src/tables.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

/* jobq.<relname>'s OID; an error when it is missing. */
Oid
JobqRelid(const char *relname)
{
	Oid			relid = get_relname_relid(relname,
										  get_namespace_oid(JOBQ_SCHEMA_NAME, false));

	if (!OidIsValid(relid))
		elog(ERROR, "jobq: relation jobq.%s is missing", relname);
	return relid;
}

/*
 * The attribute number of column attname in desc; InvalidAttrNumber when
 * there is none and missing_ok, else an error.
 */
AttrNumber
JobqAttnum(TupleDesc desc, const char *attname, bool missing_ok)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), attname) == 0)
			return att->attnum;
	}
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("jobq: a jobq table lacks column \"%s\"", attname),
				 errhint("The jobq library is newer than the extension's objects in this database: run ALTER EXTENSION jobq UPDATE.")));
	return InvalidAttrNumber;
}

/* Is d, a text datum (state, kind ...), the string s?  No copy made. */
bool
JobqTextEquals(Datum d, const char *s)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/*
 * May rel, one of jobq's tables, be written through the table access method
 * (the job store's fast paths)?  Yes unless jobq.direct_access is off, in
 * which case the caller runs the SQL statement that does the same.  The
 * two give the same rows because nothing else acts on a write to these
 * tables: user triggers and rules are refused when created (ddl_guard.c);
 * one made while jobq was not loaded is an error here, not a reason to
 * take another path.
 */
bool
JobqDirectAccess(Relation rel)
{
	if (rel->trigdesc != NULL || rel->rd_rules != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("jobq.%s has a trigger or rule, which jobq does not support",
						RelationGetRelationName(rel)),
				 errdetail("jobq writes its tables below SQL, where a trigger or rule would not fire; such triggers and rules are refused when created while jobq is loaded."),
				 errhint("Drop the trigger or rule (\\d jobq.%s lists them).",
						 RelationGetRelationName(rel))));
	return jobq_direct_access;
}

/*
 * Read the row of queue in jobq.queues with snapshot (a probe of its
 * primary key): false when there is none.  kind and handler are palloc'd
 * in the current context (handler NULL when the column is).
 */
bool
JobqReadQueue(const char *queue, Snapshot snapshot, JobqQueueRow *row)
{
	Relation	rel = table_open(JobqRelid("queues"), AccessShareLock);
	Relation	pkey = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	ScanKeyData key;
	bool		found;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   pkey->rd_indcollation[0], F_TEXTEQ,
						   CStringGetTextDatum(queue));
	scan = index_beginscan(rel, pkey, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		bool		isnull;
		Datum		d;
		AttrNumber	attnum;

		d = slot_getattr(slot, JobqAttnum(desc, "kind", false), &isnull);
		row->kind = isnull ? pstrdup("") : TextDatumGetCString(d);
		d = slot_getattr(slot, JobqAttnum(desc, "handler", false), &isnull);
		row->handler = isnull ? NULL : TextDatumGetCString(d);
		d = slot_getattr(slot, JobqAttnum(desc, "paused", false), &isnull);
		row->paused = !isnull && DatumGetBool(d);
		(void) slot_getattr(slot, JobqAttnum(desc, "concurrency", false), &isnull);
		row->limited = !isnull;
		(void) slot_getattr(slot, JobqAttnum(desc, "rate_limit", false), &isnull);
		row->limited |= !isnull;
		d = slot_getattr(slot, JobqAttnum(desc, "breaker", false), &isnull);
		row->breaker = isnull ? NULL : TextDatumGetCString(d);
		attnum = JobqAttnum(desc, "breaker_mode", true);
		/* absent until ALTER EXTENSION jobq UPDATE: hold, as before */
		row->breaker_fail_fast = attnum != InvalidAttrNumber &&
			JobqTextEquals(slot_getattr(slot, attnum, &isnull), "fail_fast");
		d = slot_getattr(slot, JobqAttnum(desc, "unique_scope", false), &isnull);
		row->unique_per_owner = isnull || !JobqTextEquals(d, "queue");
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}
