/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  SQL-callable views of jobq's shared memory: jobq._workers(), behind the
 *	  jobq.workers view.
 *
 * Reads the slots without the lock, field by field: a monitoring row may
 * mix two instants of a busy executor, never anything worse, and a query on
 * the view never waits behind the launcher.
 *
 * IDENTIFICATION
 *	  src/monitor.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"

#include "access/htup_details.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(jobq_worker_slots);

static const char *
StateName(JobqWorkerState state)
{
	switch (state)
	{
		case JOBQ_STATE_STARTING:
			return "starting";
		case JOBQ_STATE_IDLE:
			return "idle";
		case JOBQ_STATE_CLAIMING:
			return "claiming";
		case JOBQ_STATE_RUNNING:
			return "running";
		case JOBQ_STATE_STOPPING:
			return "stopping";
	}
	return "unknown";
}

/*
 * jobq._workers(): one row for the launcher and one per executor slot in
 * use, all databases (pid, database, kind, state, job_id, since, jobs_done,
 * last_error, claims).  A running job's id and the last error are shown to
 * the job's owner, to jobq_admin and to superusers only (NULL otherwise):
 * other roles learn that an executor is busy, not with whose job.
 */
Datum
jobq_worker_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	Oid			admin = get_role_oid("jobq_admin", true);
	Oid			me = GetUserId();
	bool		sees_all = superuser_arg(me) ||
		(OidIsValid(admin) && has_privs_of_role(me, admin));

	InitMaterializedSRF(fcinfo, 0);
	if (jobq_shared == NULL)
		return (Datum) 0;

	if (jobq_shared->launcher_pid != 0)
	{
		Datum		values[11];
		bool		nulls[11];

		memset(nulls, true, sizeof(nulls));
		values[0] = Int32GetDatum(jobq_shared->launcher_pid);
		nulls[0] = false;
		values[2] = CStringGetTextDatum("launcher");
		nulls[2] = false;
		values[3] = CStringGetTextDatum("supervising");
		nulls[3] = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	for (i = 0; i < jobq_shared->nslots; i++)
	{
		JobqWorkerSlot *slot = &jobq_shared->slots[i];
		Datum		values[11];
		bool		nulls[11];
		int			pid = slot->pid;
		JobqWorkerKind kind = slot->kind;
		Oid			dboid = slot->dboid;
		int64		job_id = slot->job_id;
		Oid			owner;
		Oid			error_owner;
		char	   *dbname;
		uint32		error_seq;
		char		last_error[sizeof(slot->last_error)];
		uint32		progress_seq;
		int64		progress_job_id;
		double		progress;
		char		progress_note[JOBQ_PROGRESS_NOTE_BYTES];

		if (kind == JOBQ_WORKER_UNUSED)
			continue;
		/* the owner is read after the id, the id again after: see jobq.h */
		pg_read_barrier();
		owner = slot->job_owner;
		pg_read_barrier();
		if (slot->job_id != job_id || !(sees_all || owner == me))
			job_id = 0;
		error_seq = slot->last_error_seq;
		pg_read_barrier();
		error_owner = slot->last_error_owner;
		memcpy(last_error, slot->last_error, sizeof(last_error));
		last_error[sizeof(last_error) - 1] = '\0';
		pg_read_barrier();
		if ((error_seq & 1) != 0 || slot->last_error_seq != error_seq ||
			error_owner == InvalidOid || !(sees_all || error_owner == me))
			last_error[0] = '\0';
		/* progress: of the job shown only, copied like last_error */
		progress_seq = slot->progress_seq;
		pg_read_barrier();
		progress_job_id = slot->progress_job_id;
		progress = slot->progress;
		memcpy(progress_note, slot->progress_note, sizeof(progress_note));
		progress_note[sizeof(progress_note) - 1] = '\0';
		pg_read_barrier();
		if ((progress_seq & 1) != 0 || slot->progress_seq != progress_seq ||
			job_id == 0 || progress_job_id != job_id)
			progress_job_id = 0;
		memset(nulls, false, sizeof(nulls));
		values[0] = Int32GetDatum(pid);
		nulls[0] = (pid == 0);
		dbname = get_database_name(dboid);
		if (dbname != NULL)
			values[1] = CStringGetTextDatum(dbname);
		else
			nulls[1] = true;
		values[2] = CStringGetTextDatum(kind == JOBQ_WORKER_PROBE ? "probe" :
											kind == JOBQ_WORKER_HTTP ? "http" : "executor");
		values[3] = CStringGetTextDatum(StateName(slot->state));
		values[4] = Int64GetDatum(job_id);
		nulls[4] = (job_id == 0);
		values[5] = TimestampTzGetDatum(slot->since);
		nulls[5] = (slot->since == 0);
		values[6] = Int64GetDatum((int64) slot->jobs_done);
		values[7] = CStringGetTextDatum(last_error);
		nulls[7] = (last_error[0] == '\0');
		values[8] = Int64GetDatum((int64) slot->claims);
		values[9] = Float8GetDatum(progress);
		nulls[9] = (progress_job_id == 0);
		values[10] = CStringGetTextDatum(progress_note);
		nulls[10] = (progress_job_id == 0 || progress_note[0] == '\0');
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
