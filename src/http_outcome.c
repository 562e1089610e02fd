/*-------------------------------------------------------------------------
 *
 * http_outcome.c
 *	  What a finished transfer means for its job: the result (status, the
 *	  response headers that matter, the body as captured, capped), and
 *	  either completion (2xx), a redirect to follow, or a failure whose
 *	  class the error rules decide (jobq.error_rules: HTTP statuses, and
 *	  the message prefixes of transfer errors, "http timeout:", "http
 *	  connection error:", "http tls error:", "http refused:").
 *
 *	  Runs outside libcurl callbacks and outside any transaction: palloc
 *	  and ereport are allowed, SPI is not used.
 *
 * IDENTIFICATION
 *	  src/http_outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "http.h"
#include "jobq.h"

/*
 * Retry-After: delay-seconds or an HTTP-date, as milliseconds from now
 * (0 for a date in the past).  *ok false when it is neither.
 */
int64
JobqHttpParseRetryAfter(const char *value, TimestampTz now, bool *ok)
{
	const char *p = value;
	int64		secs = 0;

	*ok = false;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p >= '0' && *p <= '9')
	{
		while (*p >= '0' && *p <= '9')
		{
			if (secs < INT64CONST(100000000000))
				secs = secs * 10 + (*p - '0');
			p++;
		}
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '\0')
			return 0;
		*ok = true;
		/* at most ~3 years: the range jobq's delays accept */
		return Min(secs, INT64CONST(100000000)) * 1000;
	}
	else
	{
		time_t		t = curl_getdate(value, NULL);
		int64		now_ms = (int64) (timestamptz_to_time_t(now)) * 1000;

		if (t == (time_t) -1)
			return 0;
		*ok = true;
		return Min(Max((int64) t * 1000 - now_ms, 0), INT64CONST(100000000000));
	}
}

static bool
KeptHeader(const char *name)
{
	static const char *const kept[] = JOBQ_HTTP_RESULT_HEADERS;
	int			i;

	for (i = 0; kept[i] != NULL; i++)
		if (strcmp(kept[i], name) == 0)
			return true;
	return false;
}

/*
 * The headers of the last response, as a JSON object text (lower-case
 * names, the last of repeated headers), and its Retry-After.
 */
static void
ParseHeaders(JobqHttpJob *job, StringInfo json, JobqHttpOutcome *out)
{
	char	   *raw = job->resp_headers ? pnstrdup(job->resp_headers, job->resp_headers_len) : pstrdup("");
	char	   *line;
	char	   *save = NULL;
	bool		first = true;
	char	   *names[32];
	char	   *values[32];
	int			n = 0;
	int			i;

	for (line = strtok_r(raw, "\r\n", &save); line != NULL;
		 line = strtok_r(NULL, "\r\n", &save))
	{
		char	   *colon = strchr(line, ':');
		char	   *name;
		char	   *value;

		if (colon == NULL)
			continue;			/* the status line */
		*colon = '\0';
		name = asc_tolower(line, strlen(line));
		value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		if (!KeptHeader(name))
			continue;
		for (i = 0; i < n; i++)
			if (strcmp(names[i], name) == 0)
				break;
		if (i == n && n < lengthof(names))
			n++;
		if (i < n)
		{
			names[i] = name;
			values[i] = value;
		}
	}

	appendStringInfoChar(json, '{');
	for (i = 0; i < n; i++)
	{
		if (!first)
			appendStringInfoChar(json, ',');
		first = false;
		if (pg_verifymbstr(values[i], strlen(values[i]), true))
		{
			escape_json(json, names[i]);
			appendStringInfoChar(json, ':');
			escape_json(json, values[i]);
		}
		else
		{
			escape_json(json, names[i]);
			appendStringInfoString(json, ":null");
		}
		if (strcmp(names[i], "retry-after") == 0)
		{
			bool		ok;
			int64		ms = JobqHttpParseRetryAfter(values[i], GetCurrentTimestamp(), &ok);

			if (ok)
			{
				out->has_retry_after = true;
				out->retry_after_ms = ms;
			}
		}
	}
	appendStringInfoChar(json, '}');
}

/* The body: text when it is valid in the database encoding, else base64. */
static void
AppendBody(JobqHttpJob *job, StringInfo json)
{
	const char *b = job->resp_body ? job->resp_body : "";
	size_t		len = job->resp_len;

	if (memchr(b, '\0', len) == NULL && pg_verifymbstr(b, (int) len, true))
	{
		appendStringInfoString(json, ",\"body\":");
		escape_json(json, pnstrdup(b, len));
	}
	else
	{
		int			enclen = pg_b64_enc_len((int) len);
		char	   *enc = palloc(enclen + 1);
		int			got = pg_b64_encode(b, (int) len, enc, enclen);

		enc[Max(got, 0)] = '\0';
		appendStringInfoString(json, ",\"body\":null,\"body_base64\":");
		escape_json(json, enc);
	}
}

static bool
IsTlsError(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
		rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CIPHER ||
		rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_ISSUER_ERROR ||
		rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH || rc == CURLE_SSL_INVALIDCERTSTATUS;
}

/*
 * The outcome of the transfer job->easy ended with rc.  For a redirect to
 * follow, job->url (and method/body) are set for the next hop.
 */
void
JobqHttpOutcomeOf(JobqHttpJob *job, CURLcode rc, JobqHttpOutcome *out)
{
	long		status = 0;
	StringInfoData json;
	const char *detail = job->errbuf[0] ? job->errbuf : curl_easy_strerror(rc);

	memset(out, 0, sizeof(*out));
	out->verdict = JOBQ_HTTP_FAIL;

	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && job->truncated))
	{
		if (job->refused_addr[0] != '\0')
			out->error = psprintf("http refused: address %s of %s is loopback, private, link-local or reserved, and jobq.http_allowed_hosts does not name it",
								  job->refused_addr, job->url);
		else if (rc == CURLE_OPERATION_TIMEDOUT)
			out->error = psprintf("http timeout: %s (%s)", detail, job->url);
		else if (IsTlsError(rc))
			out->error = psprintf("http tls error: %s (%s)", detail, job->url);
		else
			out->error = psprintf("http connection error: %s (%s)", detail, job->url);
		return;
	}

	curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &status);
	out->http_status = (int) status;

	initStringInfo(&json);
	appendStringInfo(&json, "{\"status\":%ld,\"headers\":", status);
	ParseHeaders(job, &json, out);
	AppendBody(job, &json);
	appendStringInfo(&json, ",\"truncated\":%s", job->truncated ? "true" : "false");
	if (job->redirects > 0)
	{
		appendStringInfo(&json, ",\"redirects\":%d,\"url\":", job->redirects);
		escape_json(&json, job->url);
	}
	appendStringInfoChar(&json, '}');
	out->result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));

	if (status >= 200 && status < 300)
	{
		out->verdict = JOBQ_HTTP_COMPLETE;
		return;
	}
	if (status >= 300 && status < 400 && job->follow_redirects)
	{
		char	   *next = NULL;

		if (job->redirects >= JOBQ_HTTP_MAX_REDIRECTS)
		{
			out->error = psprintf("HTTP %ld: more than %d redirects", status,
								  JOBQ_HTTP_MAX_REDIRECTS);
			return;
		}
		if (curl_easy_getinfo(job->easy, CURLINFO_REDIRECT_URL, &next) == CURLE_OK &&
			next != NULL)
		{
			job->url = pstrdup(next);
			job->redirects++;
			/* 303, and 301/302 after a POST: the next hop is a GET */
			if (status == 303 || ((status == 301 || status == 302) &&
								  strcmp(job->method, "POST") == 0))
			{
				job->method = "GET";
				job->body = NULL;
			}
			out->verdict = JOBQ_HTTP_REDIRECT;
			return;
		}
	}
	out->error = psprintf("HTTP %ld from %s", status, job->url);
}
