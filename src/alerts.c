/*-------------------------------------------------------------------------
 *
 * alerts.c
 *	  The alerts duty: jobq.evaluate_alerts() every jobq.alert_interval, run
 *	  by the database's executors (duties.c); and the webhook URL check of
 *	  jobq.alert_config.
 *
 * What an alert is, when it fires and how it is delivered is SQL
 * (sql/install/78_alerts.sql): the rules read the monitoring views'
 * sources, and delivery uses NOTIFY, the server log and HTTP jobs, all of
 * which SQL reaches directly.  The duty only runs the evaluation in a
 * transaction of its own; its NOTIFYs go out and its webhook jobs become
 * visible when that transaction commits.
 *
 * IDENTIFICATION
 *	  src/alerts.c
 *
 *-------------------------------------------------------------------------
 */
#include "jobq.h"
#include "duties.h"
#include "http.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

static SPIPlanPtr plan_evaluate = NULL;

PG_FUNCTION_INFO_V1(jobq_check_webhook_url);

int
JobqAlertIntervalMs(void)
{
	return jobq_alert_interval_ms;
}

bool
JobqAlertsDuty(void)
{
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "jobq: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	JobqKeptPlan(&plan_evaluate, "SELECT pg_catalog.count(*) FROM jobq.evaluate_alerts()", 0, NULL);
	if (SPI_execute_plan(plan_evaluate, NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "jobq: evaluating alerts failed");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return false;
}

/*
 * jobq._check_webhook_url(url text): the URL is one jobq.http_allowed_hosts
 * allows, as jobq.submit_http checks it; 22023 otherwise.
 */
Datum
jobq_check_webhook_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		host_explicit;
	char	   *err = JobqHttpCheckUrl(url, &host_explicit);

	if (err != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook URL refused: %s", err),
				 errdetail("Webhooks are HTTP jobs: they reach only the hosts jobq.http_allowed_hosts allows, loopback, private and link-local addresses only when it names them explicitly."),
				 errhint("Ask an administrator to add the host to jobq.http_allowed_hosts.")));
	PG_RETURN_VOID();
}
