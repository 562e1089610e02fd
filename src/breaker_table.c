/*-------------------------------------------------------------------------
 *
 * breaker_table.c
 *	  jobq.breakers: reading its rows directly (it is jobq's own table, and
 *	  takes no triggers), and jobq._breaker_set, by which configure_breaker,
 *	  reset_breaker and trip_breaker hand the row they wrote to breaker.c.
 *
 * IDENTIFICATION
 *	  src/breaker_table.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "breaker_table.h"
#include "queue_cache.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

int64
JobqIntervalMs(Datum d)
{
	return JobqIntervalToMs(d, false);
}

Datum
JobqMsInterval(int64 ms)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = ms * 1000;
	return IntervalPGetDatum(iv);
}

/*
 * jobq.breakers, read directly (it is jobq's own table, without triggers):
 * fn is called for every row with its values.
 */

bool
ScanBreakersTable(const char *key, BreakerRowFn fn, void *arg)
{
	Oid			relid = JobqRelid("breakers");
	Relation	rel;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	bool		found = false;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	if (key != NULL)
	{
		Relation	pkey = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
		IndexScanDesc scan;
		ScanKeyData skey;

		ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(key));
		scan = index_beginscan(rel, pkey, snapshot, 1, 0);
		index_rescan(scan, &skey, 1, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			slot_getallattrs(slot);
			fn(slot->tts_values, slot->tts_isnull, arg);
			found = true;
		}
		index_endscan(scan);
		index_close(pkey, AccessShareLock);
	}
	else
	{
		TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);

		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			slot_getallattrs(slot);
			fn(slot->tts_values, slot->tts_isnull, arg);
			found = true;
		}
		table_endscan(scan);
	}
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return found;
}

/* jobq.breakers' columns, in order (sql/install/65_breakers.sql). */
enum
{
	COL_KEY, COL_THRESHOLD, COL_WINDOW, COL_COOLDOWN, COL_PROBES, COL_STATE,
	COL_OPENED_AT, COL_NEXT_PROBE_AT, COL_LAST_FAILURE_AT, COL_LAST_ERROR,
	COL_TIMES_OPENED
};



static BreakerState
StateOf(const char *name)
{
	if (strcmp(name, "open") == 0)
		return BREAKER_OPEN;
	if (strcmp(name, "half_open") == 0)
		return BREAKER_HALF_OPEN;
	return BREAKER_CLOSED;
}

void
RowFrom(Datum *v, bool *n, BreakerRow *row)
{
	row->key = TextDatumGetCString(v[COL_KEY]);
	row->threshold = DatumGetInt32(v[COL_THRESHOLD]);
	row->window_ms = JobqIntervalMs(v[COL_WINDOW]);
	row->cooldown_ms = JobqIntervalMs(v[COL_COOLDOWN]);
	row->probes = DatumGetInt32(v[COL_PROBES]);
	row->state = n[COL_STATE] ? BREAKER_KEEP : StateOf(TextDatumGetCString(v[COL_STATE]));
	row->opened_at = n[COL_OPENED_AT] ? 0 : DatumGetTimestampTz(v[COL_OPENED_AT]);
	row->next_probe_at = n[COL_NEXT_PROBE_AT] ? 0 : DatumGetTimestampTz(v[COL_NEXT_PROBE_AT]);
	row->last_failure_at = n[COL_LAST_FAILURE_AT] ? 0 : DatumGetTimestampTz(v[COL_LAST_FAILURE_AT]);
	row->last_error = n[COL_LAST_ERROR] ? NULL : TextDatumGetCString(v[COL_LAST_ERROR]);
	row->times_opened = DatumGetInt64(v[COL_TIMES_OPENED]);
}

void
CopyRow(Datum *v, bool *n, void *arg)
{
	RowFrom(v, n, (BreakerRow *) arg);
}

PG_FUNCTION_INFO_V1(jobq_breaker_set);

/*
 * jobq._breaker_set(row jobq.breakers, reset boolean): the row just written
 * by configure_breaker, reset_breaker or trip_breaker reaches shared memory
 * when the transaction commits (reset: failures forgotten).
 */
Datum
jobq_breaker_set(PG_FUNCTION_ARGS)
{
	HeapTupleHeader th;
	TupleDesc	desc;
	HeapTupleData tup;
	Datum	   *values;
	bool	   *nulls;
	BreakerRow *row;
	MemoryContext oldcxt;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	th = PG_GETARG_HEAPTUPLEHEADER(0);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th), HeapTupleHeaderGetTypMod(th));
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	tup.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	tup.t_data = th;
	heap_deform_tuple(&tup, desc, values, nulls);
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	row = palloc(sizeof(BreakerRow));
	RowFrom(values, nulls, row);
	MemoryContextSwitchTo(oldcxt);
	ReleaseTupleDesc(desc);
	BreakerSetAtCommit(row);
	PG_RETURN_VOID();
}
