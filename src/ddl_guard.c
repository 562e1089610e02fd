/*-------------------------------------------------------------------------
 *
 * ddl_guard.c
 *	  Keeps jobq's executors out of the way of commands that need a database
 *	  with nobody connected: DROP DATABASE, ALTER DATABASE ... RENAME and
 *	  CREATE DATABASE ... TEMPLATE; and of DROP EXTENSION jobq.  Refuses
 *	  user triggers and rules on jobq's tables.  Tells the queue gauges
 *	  (queue_gauges.c) of a TRUNCATE of jobq's tables, and jobq.wait's
 *	  waiters and the executors of a COMMIT PREPARED.
 *
 * Executors stay connected to their database, so without this hook those
 * commands would wait five seconds and fail with "database is being accessed
 * by other users".  Before the command runs, the database is marked blocked
 * (the launcher starts nothing there), its executors get SIGTERM (a running
 * job gets jobq.shutdown_grace and goes back to pending), and we wait for
 * them to leave.  The block is lifted when the transaction ends (commit or
 * abort), not when the statement does: a dropped database then drops out of
 * the registry at the launcher's next scan, anything else is probed again.
 *
 * jobq's tables are written by jobq alone, mostly through the table access
 * method (the job store's fast paths), where no trigger or rule would fire.
 * Rather than keep a second, SQL-only way of writing every row for tables
 * that have one, CREATE TRIGGER and CREATE RULE on any relation of schema
 * jobq are refused (the extension's own script excepted); the job store
 * checks again when it opens a table (JobStoreTableUsable), for one made
 * while jobq was not loaded.
 *
 * IDENTIFICATION
 *	  src/ddl_guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "job_wait.h"
#include "batches.h"
#include "queue_gauges.h"

#include <signal.h>

#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Is this DROP EXTENSION naming jobq? */
static bool
DropsJobq(Node *parsetree)
{
	DropStmt   *stmt;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt))
		return false;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		Node	   *obj = (Node *) lfirst(lc);

		if (IsA(obj, String) && strcmp(strVal(obj), JOBQ_EXTENSION_NAME) == 0)
			return true;
	}
	return false;
}

/*
 * The database a utility statement needs exclusive use of, if any.  DROP
 * EXTENSION jobq counts too: the executors of this database would otherwise
 * hold the job they run (and the tables it touches) against the drop.
 */
static Oid
DatabaseNeedingExclusiveUse(Node *parsetree)
{
	if (DropsJobq(parsetree))
		return MyDatabaseId;

	if (IsA(parsetree, DropdbStmt))
		return get_database_oid(((DropdbStmt *) parsetree)->dbname, true);

	if (IsA(parsetree, RenameStmt) &&
		((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		return get_database_oid(((RenameStmt *) parsetree)->subname, true);

	if (IsA(parsetree, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *opt = (DefElem *) lfirst(lc);

			if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
				return get_database_oid(defGetString(opt), true);
		}
	}
	return InvalidOid;
}

/*
 * CREATE TRIGGER and CREATE RULE on a relation of schema jobq, outside
 * the extension's own scripts, are refused (see the file header).
 */
static void
RefuseUserCodeOnJobqTables(Node *parsetree)
{
	RangeVar   *rv;
	const char *what;
	Oid			relid;

	if (IsA(parsetree, CreateTrigStmt))
	{
		rv = ((CreateTrigStmt *) parsetree)->relation;
		what = "trigger";
	}
	else if (IsA(parsetree, RuleStmt))
	{
		rv = ((RuleStmt *) parsetree)->relation;
		what = "rule";
	}
	else
		return;
	if (creating_extension || rv == NULL)
		return;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid) ||
		get_rel_namespace(relid) != get_namespace_oid(JOBQ_SCHEMA_NAME, true))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("jobq's tables do not take a user's %s: \"%s\" is jobq.%s",
					what, rv->relname, get_rel_name(relid)),
			 errdetail("jobq writes its tables itself, mostly below SQL (the table access method), where a trigger or rule would not fire."),
			 errhint("To act when jobs finish, read jobq.jobs or jobq.job_attempts, or do the work in the job's handler.")));
}

static bool
ExecutorsRemain(Oid dboid)
{
	int			i;
	bool		remain = false;

	LWLockAcquire(jobq_shared->lock, LW_SHARED);
	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];

		if (slot->kind != JOBQ_WORKER_UNUSED && slot->dboid == dboid)
		{
			remain = true;
			if (slot->pid != 0)
				kill(slot->pid, SIGTERM);
		}
	}
	LWLockRelease(jobq_shared->lock);
	return remain;
}

/*
 * Block the database and wait for its executors to leave: at most the
 * shutdown grace plus a margin, after which the command runs anyway and
 * reports the usual error if someone is still connected.
 */
static void
StopExecutorsOf(Oid dboid)
{
	TimestampTz deadline;

	JobqSetDatabaseBlocked(dboid, true);
	JobqUnblockAtXactEnd(dboid);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   jobq_shutdown_grace_ms + 5000);
	while (ExecutorsRemain(dboid) &&
		   GetCurrentTimestamp() < deadline)
	{
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* A TRUNCATE naming a relation of schema jobq (queue_gauges.c). */
static bool
TruncatesJobqTable(Node *stmt)
{
	ListCell   *lc;
	Oid			nsp;

	if (!IsA(stmt, TruncateStmt))
		return false;
	nsp = get_namespace_oid(JOBQ_SCHEMA_NAME, true);
	if (!OidIsValid(nsp))
		return false;
	foreach(lc, ((TruncateStmt *) stmt)->relations)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		if (OidIsValid(relid) && get_rel_namespace(relid) == nsp)
			return true;
	}
	return false;
}

static bool
CommitsPrepared(Node *parsetree)
{
	return IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED;
}

static void
JobqProcessUtility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = InvalidOid;

	RefuseUserCodeOnJobqTables(pstmt->utilityStmt);
	if (CommitsPrepared(pstmt->utilityStmt))
	{
		/* what it makes final or runnable is not known here: wake all */
		JobWaitWakeAllAtCommit();
		BatchesCheckAllAtCommit();
		JobqWakeAtCommit();
		JobqWakeHttpAtCommit();
	}
	if (TruncatesJobqTable(pstmt->utilityStmt))
		JobqGaugesForgetAtCommit();
	if (jobq_shared != NULL)
		dboid = DatabaseNeedingExclusiveUse(pstmt->utilityStmt);

	/* blocked until our transaction ends, whatever happens to it */
	if (OidIsValid(dboid))
		StopExecutorsOf(dboid);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

void
JobqInstallUtilityHook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = JobqProcessUtility;
}
