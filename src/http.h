/*-------------------------------------------------------------------------
 *
 * http.h
 *	  HTTP jobs: the request (http_request.c), the process that performs
 *	  them (http_worker.c), the response's outcome (http_outcome.c) and the
 *	  job-store calls of that process (http_store.c).
 *
 *	  Modules call down: the worker uses the request, outcome and store
 *	  modules; none of those calls the worker.
 *
 * IDENTIFICATION
 *	  src/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef JOBQ_HTTP_H
#define JOBQ_HTTP_H

#include "postgres.h"

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

/* Debian 12's libcurl: CURLOPT_PROTOCOLS_STR is 7.85 */
StaticAssertDecl(LIBCURL_VERSION_NUM >= 0x075500, "jobq needs libcurl 7.85 or later");

/* ---- settings (jobq.c) ---- */
extern int	jobq_http_max_inflight;	/* jobq.http_max_inflight */
extern int	jobq_http_max_response_kb;	/* jobq.http_max_response_size */

#define JOBQ_HTTP_MAX_INFLIGHT_LIMIT 1000
#define JOBQ_HTTP_MAX_REDIRECTS 5
#define JOBQ_HTTP_MAX_HEADER_BYTES (16 * 1024)

/* Kept from the response headers in the result (lower case). */
#define JOBQ_HTTP_RESULT_HEADERS \
	{"content-type", "content-length", "content-encoding", "location", \
	 "retry-after", "etag", "last-modified", "date", "x-request-id", NULL}

/* ---- http_request.c ---- */

/* One claimed HTTP job, from the claim until its outcome is recorded. */
typedef struct JobqHttpJob
{
	int64		id;
	int32		attempt;
	char	   *queue;
	char	   *url;			/* the current hop */
	char	   *method;
	char	   *body;			/* NULL: none */
	Jsonb	   *headers;		/* the payload's headers object */
	bool		follow_redirects;
	int			redirects;		/* hops followed so far */
	int64		timeout_ms;		/* payload, else job, else queue */
	TimestampTz deadline;		/* the attempt's end */
	bool		host_explicit;	/* the hop's host is named by the allowlist */
	bool		aborted;		/* cancelled or released: record nothing */
	bool		owner_may;		/* the owner may still submit HTTP jobs */
	char	   *breaker_key;	/* "http:<host>"; NULL: its queue's breaker */

	/* libcurl state: malloc'd, freed by JobqHttpFreeTransfer */
	CURL	   *easy;
	struct curl_slist *header_list;
	char		errbuf[CURL_ERROR_SIZE];
	char	   *resp_body;
	size_t		resp_len;
	size_t		resp_cap;
	bool		truncated;
	char	   *resp_headers;	/* raw header lines of the last response */
	size_t		resp_headers_len;
	char		refused_addr[64];	/* set by the connect check */
	struct JobqHttpJob *next;
} JobqHttpJob;

extern void JobqHttpParseAllowlist(void);
extern bool JobqHttpCheckAllowedHosts(char **newval, void **extra, GucSource source);
extern char *JobqHttpCheckUrl(const char *url, bool *host_explicit);
extern char *JobqHttpBreakerKey(const char *url);
extern void JobqHttpCheckSubmit(Oid caller, Datum payload);
extern bool JobqHttpStartTransfer(JobqHttpJob *job, char **error);
extern void JobqHttpFreeTransfer(JobqHttpJob *job);

/* ---- http_outcome.c ---- */

typedef enum JobqHttpVerdict
{
	JOBQ_HTTP_COMPLETE,
	JOBQ_HTTP_FAIL,
	JOBQ_HTTP_REDIRECT			/* follow job->url (already set) */
} JobqHttpVerdict;

typedef struct JobqHttpOutcome
{
	JobqHttpVerdict verdict;
	Jsonb	   *result;			/* status, headers, body (also on failure) */
	char	   *error;			/* FAIL: message; its prefix selects an error rule */
	int			http_status;	/* 0: none */
	bool		has_retry_after;
	int64		retry_after_ms;
} JobqHttpOutcome;

extern void JobqHttpOutcomeOf(JobqHttpJob *job, CURLcode rc,
							  JobqHttpOutcome *out);
extern int64 JobqHttpParseRetryAfter(const char *value, TimestampTz now,
									 bool *ok);

/* ---- http_store.c: every change of a job row the HTTP worker makes ---- */

extern JobqHttpJob *JobqHttpStoreClaim(MemoryContext outer, int want,
									   int64 token, const char *worker,
									   int *nclaimed, TimestampTz *next_due);
extern void JobqHttpStoreComplete(JobqHttpJob *job, Jsonb *result);
extern void JobqHttpStoreFail(JobqHttpJob *job, const char *error,
							  int http_status, bool has_retry_after,
							  int64 retry_after_ms);
extern void JobqHttpStoreRelease(JobqHttpJob *job);
extern bool JobqHttpStoreStillRunning(JobqHttpJob *job);

/* ---- http_worker.c ---- */
extern PGDLLEXPORT void jobq_http_main(Datum arg) pg_attribute_noreturn();

#endif							/* JOBQ_HTTP_H */
