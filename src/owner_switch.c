/*-------------------------------------------------------------------------
 *
 * owner_switch.c
 *	  Who an entry point acts for, and the switch to the extension owner.
 *
 * Why: a job runs with the privileges of the role that submitted it, so
 * the submitter must be captured with GetUserId() before any change of user.
 * Inside a SECURITY DEFINER function current_user is the definer, and a
 * caller-supplied role would be a lie waiting to happen (pg_cron
 * job_metadata.c:ScheduleCronJob does the same).
 *
 * Each C entry point:
 *	 1. captures the caller (GetUserId()) and validates its arguments;
 *	 2. switches to the extension owner with SetUserIdAndSecContext(...,
 *		SECURITY_LOCAL_USERID_CHANGE): the caller has no privilege on jobq's
 *		tables, and RLS does not apply to their owner;
 *	 3. runs kept SPI plans (prepared once per backend, SPI_keepplan);
 *	 4. switches back.
 * On ERROR nothing has to be restored by hand: transaction and
 * subtransaction abort reset the user id and security context to the values
 * saved when the (sub)transaction started (xact.c AbortTransaction,
 * AbortSubTransaction), which is also how a plpgsql EXCEPTION block catching
 * our error gets its caller back.
 *
 * IDENTIFICATION
 *	  src/owner_switch.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/*
 * JobqExtensionOwner
 *		The owner of the jobq extension in this database: the role the
 *		entry points switch to.  Errors out when jobq is not installed.
 *
 * pg_extension has no syscache: reading it is an index scan, a
 * noticeable part of a submit.  So the answer is kept, together with what would change when it
 * does: REASSIGN OWNED changes the owner of the extension and of its tables
 * alike, and DROP/CREATE EXTENSION makes new tables.  jobs_active's OID and
 * owner come from the syscache, which is invalidated as it should be: while
 * both are unchanged, and the table still belongs to the extension's owner
 * (someone may have given it to another role: then pg_extension is read
 * every time), so is the extension's owner.
 */
static Oid	owner_cache_relid = InvalidOid;
static Oid	owner_cache_relowner = InvalidOid;
static Oid	owner_cache_extowner = InvalidOid;

static Oid
ReadExtensionOwner(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(JOBQ_EXTENSION_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

Oid
JobqExtensionOwner(void)
{
	Oid			nsp = get_namespace_oid(JOBQ_SCHEMA_NAME, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("jobs_active", nsp) : InvalidOid;
	Oid			relowner = InvalidOid;
	Oid			owner;

	if (OidIsValid(relid))
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));

		if (HeapTupleIsValid(tup))
		{
			relowner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
			ReleaseSysCache(tup);
		}
	}
	/* only while jobs_active belongs to the extension's owner, as made */
	if (OidIsValid(relowner) && relid == owner_cache_relid &&
		relowner == owner_cache_relowner && relowner == owner_cache_extowner)
		return owner_cache_extowner;

	owner = ReadExtensionOwner();
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database",
						JOBQ_EXTENSION_NAME),
				 errhint("Run CREATE EXTENSION %s.", JOBQ_EXTENSION_NAME)));
	owner_cache_relid = relid;
	owner_cache_relowner = relowner;
	owner_cache_extowner = owner;
	return owner;
}

/*
 * Capture the caller, then become the extension owner.  Nothing to undo on
 * ERROR (see the file header).
 */
void
BecomeOwner(JobqRoleSwitch *sw)
{
	Oid			owner;

	sw->caller = GetUserId();
	owner = JobqExtensionOwner();
	GetUserIdAndSecContext(&sw->save_userid, &sw->save_sec_context);
	SetUserIdAndSecContext(owner,
						   sw->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
RestoreCaller(JobqRoleSwitch *sw)
{
	SetUserIdAndSecContext(sw->save_userid, sw->save_sec_context);
}
