/*-------------------------------------------------------------------------
 *
 * jobq.c
 *	  Module entry point: refuses to load outside shared_preload_libraries,
 *	  defines the jobq.* settings, installs the hooks and registers the
 *	  launcher background worker.
 *
 * Every setting a worker loop re-reads is PGC_SIGHUP; only what sizes shared
 * memory is PGC_POSTMASTER.  None is USERSET: they describe the server's
 * workers, not a session (pg_net fixed exactly this in 4c044be).
 *
 * IDENTIFICATION
 *	  src/jobq.c
 *
 *-------------------------------------------------------------------------
 */
#include "http.h"
#include "jobq.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "breaker.h"
#include "batches.h"
#include "upkeep.h"

PG_MODULE_MAGIC;

char	   *jobq_database = NULL;
int			jobq_workers = 2;
int			jobq_max_total_workers = 16;
int			jobq_poll_interval_ms = 5000;
int			jobq_shutdown_grace_ms = 10000;
int			jobq_cleanup_interval_ms = 60000;
int			jobq_alert_interval_ms = 30000;
int			jobq_dead_letter_retention_s = 7 * 24 * 3600;
int			jobq_metrics_flush_interval_ms = 5000;
int			jobq_metrics_retention_s = 14 * 24 * 3600;
bool		jobq_log_events = false;
char	   *jobq_http_allowed_hosts = NULL;
int			jobq_http_max_inflight = 100;
int			jobq_http_max_response_kb = 1024;
bool		jobq_allow_superuser_jobs = false;
int			jobq_max_payload_size_kb = 20 * 1024;
bool		jobq_direct_access = true;

void		_PG_init(void);

static void
DefineSettings(void)
{
	DefineCustomStringVariable("jobq.database",
							   "Databases jobq runs jobs in.",
							   "Comma-separated database names.  Empty (the default) means every database where the extension is created.",
							   &jobq_database,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.workers",
							"Executor processes per database with jobq.",
							"Each executor is a background worker: keep max_worker_processes above the total.",
							&jobq_workers,
							2, 0, JOBQ_MAX_WORKERS_PER_DB,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.max_total_workers",
							"Maximum executor processes over all databases.",
							"Sizes shared memory; each executor also needs a max_worker_processes slot.",
							&jobq_max_total_workers,
							16, 1, JOBQ_MAX_DATABASES * 4,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.poll_interval",
							"How often an idle executor looks for work without being woken.",
							"Submits wake executors at commit; polling only covers lost wake-ups and prepared transactions.",
							&jobq_poll_interval_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.shutdown_grace",
							"Time a running job gets to finish when its executor is asked to stop.",
							"After it the job is interrupted and returned to pending without using an attempt.",
							&jobq_shutdown_grace_ms,
							10000, 0, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.cleanup_interval",
							"How often the executors remove final jobs past retention.",
							"Each database's executors run jobq.cleanup's batches this often, one transaction per batch; 0 turns it off (call jobq.cleanup yourself, from pg_cron for instance).",
							&jobq_cleanup_interval_ms,
							60000, 0, 7 * 24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.dead_letter_retention",
							"How long a resolved dead letter is kept, with its failed job.",
							"Counted from resolve_dead or requeue_dead; a dead letter that is not resolved is never removed.",
							&jobq_dead_letter_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.metrics_flush_interval",
							"How often the per-queue counters are added to jobq.metrics.",
							"Each database's executors flush the counters kept in shared memory this often; a crash of the server loses at most the counts of this last interval.",
							&jobq_metrics_flush_interval_ms,
							5000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.metrics_retention",
							"How long rows of jobq.metrics are kept.",
							"Rows whose minute is older are removed by the cleanup (jobq.cleanup_interval, jobq.cleanup); -1 keeps them for ever.",
							&jobq_metrics_retention_s,
							14 * 24 * 3600, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("jobq.log_events",
							 "Whether every job event is written to the server log.",
							 "One LOG line per event (claimed, completed, retried, failed, lost, snoozed, released, dead_lettered, cancelled) with job_id, queue, attempt and owner as key=value pairs, written when the transaction that made the change commits.",
							 &jobq_log_events,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.alert_interval",
							"How often the executors evaluate the alert rules.",
							"jobq.evaluate_alerts() every this often, in each database with jobq; 0 turns it off.",
							&jobq_alert_interval_ms,
							30000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("jobq.http_allowed_hosts",
							   "Hosts HTTP jobs and webhooks are to be allowed to reach.",
							   "Comma-separated host names, *.domain patterns, IP addresses or CIDR ranges; '*' allows every host name.  Checked at submit and at every connection: loopback, private and link-local addresses are reached only when the entry names the host or the address itself.",
							   &jobq_http_allowed_hosts,
							   "*",
							   PGC_SIGHUP,
							   0,
							   JobqHttpCheckAllowedHosts, NULL, NULL);

	DefineCustomIntVariable("jobq.http_max_inflight",
							"Most HTTP requests the HTTP worker of a database has in flight at once.",
							"One process per database runs the jobs of http queues through libcurl's multi interface; this caps its concurrent transfers (and its sockets).",
							&jobq_http_max_inflight,
							100, 1, JOBQ_HTTP_MAX_INFLIGHT_LIMIT,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.http_max_response_size",
							"Largest response body kept in an HTTP job's result.",
							"A longer body is cut at this size, the transfer ends there, and the result says \"truncated\": true.",
							&jobq_http_max_response_kb,
							1024, 1, 64 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("jobq.allow_superuser_jobs",
							 "Whether SQL jobs owned by a superuser may be submitted and run.",
							 "When off (the default), a superuser's submit to an sql queue is refused, and a job whose owner is a superuser at run time fails with class permanent: a SECURITY DEFINER function owned by a superuser that calls submit would otherwise run its callers' payloads as superuser.",
							 &jobq_allow_superuser_jobs,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.vacuum_after",
							"Claimed jobs between two VACUUMs of jobq.jobs_active by an executor.",
							"Claims leave dead entries at the front of the claim index that every later claim steps over until VACUUM removes them; autovacuum comes too rarely for a busy queue.  0 leaves it to autovacuum.",
							&jobq_vacuum_after,
							10000, 0, 1000000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("jobq.max_payload_size",
							"Largest job payload submit accepts.",
							"A larger payload is refused at submit (SQLSTATE 54000), for submit, submit_batch (each element) and submit_http alike.  The size is that of the payload as stored, uncompressed.",
							&jobq_max_payload_size_kb,
							20 * 1024, 1, 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("jobq.direct_access",
							 "Whether jobq writes its tables through the table access method.",
							 "A developer setting.  On (the default), submits, claims and completions write jobq's tables directly; off, every change to a job row goes through SQL statements, which must give the same rows (the differential test compares the two).",
							 &jobq_direct_access,
							 true,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("jobq");
}

/*
 * _PG_init runs once in the postmaster (shared_preload_libraries).  Loading
 * jobq any other way would give SQL functions with no workers behind them and
 * no shared memory, so it is an error rather than a silent half-install.
 */
void
_PG_init(void)
{
	/* pg_upgrade starts the server with our library; run nothing there. */
	if (IsBinaryUpgrade)
		return;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("jobq must be loaded via shared_preload_libraries"),
				 errdetail("jobq runs jobs in background workers and needs shared memory, both set up at server start."),
				 errhint("Add jobq to shared_preload_libraries in postgresql.conf and restart the server.")));

	DefineSettings();
	JobqShmemInstallHooks();
	JobqRegisterXactCallback();
	JobEventsRegisterCallbacks();
	BatchesRegisterCallbacks();
	/* registered last, so called first: its wake-ups reach the commit above */
	BreakerRegisterCallbacks();
	JobqInstallUtilityHook();
	JobqRegisterLauncher();
}
