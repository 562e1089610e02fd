/*-------------------------------------------------------------------------
 *
 * http_request.c
 *	  An HTTP job's request: the allowlist (jobq.http_allowed_hosts),
 *	  checked at submit on the URL and at execution on every hop's URL and
 *	  on the address actually connected to; the payload turned into a
 *	  libcurl easy handle; the response captured, capped.
 *
 *	  Rules for the libcurl callbacks here: they run inside libcurl frames,
 *	  so they never ereport, never palloc (which can ereport) and never
 *	  CHECK_FOR_INTERRUPTS; they use malloc and say what went wrong through
 *	  the job's fields.  Everything libcurl allocates is freed by
 *	  JobqHttpFreeTransfer, which the worker calls on every path.
 *
 * IDENTIFICATION
 *	  src/http_request.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "http.h"
#include "jobq.h"

/* ---------------------------------------------------------------------
 * The allowlist
 * ---------------------------------------------------------------------
 */
typedef enum AllowKind
{
	ALLOW_ANY,					/* "*": every host name (not private addresses) */
	ALLOW_SUFFIX,				/* "*.example.com": its subdomains */
	ALLOW_HOST,					/* "api.example.com": that host, named explicitly */
	ALLOW_NET					/* "10.1.2.3", "10.0.0.0/8", "::1", "fd00::/8" */
} AllowKind;

typedef struct AllowEntry
{
	AllowKind	kind;
	char	   *text;			/* lower case; SUFFIX: ".example.com" */
	int			family;			/* NET: AF_INET or AF_INET6 */
	unsigned char addr[16];
	int			bits;
} AllowEntry;

static MemoryContext allow_cxt = NULL;
static AllowEntry *allow = NULL;
static int	nallow = 0;
static char *allow_parsed = NULL;	/* the setting's value allow was parsed from */

/* Parse "a.b.c.d", "::1" or either with "/bits" into entry; false if neither. */
static bool
ParseNet(const char *s, AllowEntry *e)
{
	char		buf[128];
	char	   *slash;
	int			maxbits;

	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	if (buf[0] == '[')
	{
		char	   *close = strchr(buf, ']');

		if (close == NULL)
			return false;
		memmove(close, close + 1, strlen(close + 1) + 1);
		memmove(buf, buf + 1, strlen(buf));
	}
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, e->addr) == 1)
	{
		e->family = AF_INET;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, buf, e->addr) == 1)
	{
		e->family = AF_INET6;
		maxbits = 128;
	}
	else
		return false;
	e->bits = maxbits;
	if (slash != NULL)
	{
		char	   *end;
		long		b = strtol(slash + 1, &end, 10);

		if (*end != '\0' || end == slash + 1 || b < 0 || b > maxbits)
			return false;
		e->bits = (int) b;
	}
	return true;
}

/*
 * (Re)read jobq.http_allowed_hosts.  Called outside libcurl (at submit, and
 * by the worker before each hop); the connect check reads the result.  The
 * entries depend on the setting's text alone, so they are parsed again only
 * when that text differs from the one they were parsed from.
 */
void
JobqHttpParseAllowlist(void)
{
	const char *value = jobq_http_allowed_hosts ? jobq_http_allowed_hosts : "";
	char	   *raw;
	List	   *items;
	ListCell   *lc;
	MemoryContext old;

	if (allow_parsed != NULL && strcmp(allow_parsed, value) == 0)
		return;
	if (allow_cxt == NULL)
		allow_cxt = AllocSetContextCreate(TopMemoryContext, "jobq http allowlist",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(allow_cxt);
	allow = NULL;
	nallow = 0;
	allow_parsed = NULL;
	old = MemoryContextSwitchTo(allow_cxt);
	raw = pstrdup(value);
	if (!SplitIdentifierString(raw, ',', &items))
		items = NIL;			/* the check hook refuses such a value */
	allow = palloc0(sizeof(AllowEntry) * (list_length(items) + 1));
	foreach(lc, items)
	{
		char	   *s = asc_tolower((char *) lfirst(lc), strlen((char *) lfirst(lc)));
		AllowEntry *e = &allow[nallow];

		if (s[0] == '\0')
			continue;
		e->text = s;
		if (strcmp(s, "*") == 0)
			e->kind = ALLOW_ANY;
		else if (strncmp(s, "*.", 2) == 0)
		{
			e->kind = ALLOW_SUFFIX;
			e->text = s + 1;
		}
		else if (ParseNet(s, e))
			e->kind = ALLOW_NET;
		else
			e->kind = ALLOW_HOST;
		nallow++;
	}
	allow_parsed = pstrdup(value);
	MemoryContextSwitchTo(old);
}

/* check hook of jobq.http_allowed_hosts: a list of non-empty entries */
bool
JobqHttpCheckAllowedHosts(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval ? *newval : "");
	List	   *items;
	ListCell   *lc;

	if (!SplitIdentifierString(raw, ',', &items))
	{
		GUC_check_errdetail("jobq.http_allowed_hosts is a comma-separated list of host names, *.domain patterns, IP addresses or CIDR ranges, or *.");
		return false;
	}
	foreach(lc, items)
	{
		const char *s = lfirst(lc);

		if (s[0] == '*' && s[1] != '\0' && s[1] != '.')
		{
			GUC_check_errdetail("\"%s\": a pattern is * or *.domain.", s);
			return false;
		}
		if (strchr(s, '/') != NULL)
		{
			AllowEntry	e;

			if (!ParseNet(s, &e))
			{
				GUC_check_errdetail("\"%s\" is not an IP address range such as 10.0.0.0/8.", s);
				return false;
			}
		}
	}
	return true;
}

static bool
NetContains(const AllowEntry *e, int family, const unsigned char *a)
{
	int			full = e->bits / 8;
	int			rest = e->bits % 8;

	if (e->family != family)
		return false;
	if (memcmp(e->addr, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((e->addr[full] ^ a[full]) & (0xFF << (8 - rest))) == 0;
}

static bool
AddrNamedByAllowlist(int family, const unsigned char *a)
{
	int			i;

	for (i = 0; i < nallow; i++)
		if (allow[i].kind == ALLOW_NET && NetContains(&allow[i], family, a))
			return true;
	return false;
}

/*
 * Addresses that are not the public internet: loopback, private, link-local
 * (the cloud metadata service 169.254.169.254 among them), shared, multicast,
 * reserved.  IPv6 addresses embedding an IPv4 one are judged by it.
 */
static bool
AddrSpecialV4(const unsigned char *a)
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 ||
		(a[0] == 100 && (a[1] & 0xC0) == 64) ||
		(a[0] == 169 && a[1] == 254) ||
		(a[0] == 172 && (a[1] & 0xF0) == 16) ||
		(a[0] == 192 && a[1] == 0 && (a[2] == 0 || a[2] == 2)) ||
		(a[0] == 192 && a[1] == 168) ||
		(a[0] == 198 && (a[1] & 0xFE) == 18) ||
		(a[0] == 198 && a[1] == 51 && a[2] == 100) ||
		(a[0] == 203 && a[1] == 0 && a[2] == 113) ||
		a[0] >= 224;
}

static bool
AddrSpecial(int family, const unsigned char *a)
{
	static const unsigned char zero[10] = {0};

	if (family == AF_INET)
		return AddrSpecialV4(a);
	/* ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d */
	if (memcmp(a, zero, 10) == 0 &&
		((a[10] == 0xFF && a[11] == 0xFF) || (a[10] == 0 && a[11] == 0)))
		return AddrSpecialV4(a + 12);
	if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xFF && a[3] == 0x9B)
		return AddrSpecialV4(a + 12);
	return (a[0] & 0xFE) == 0xFC ||	/* fc00::/7 unique local */
		(a[0] == 0xFE && (a[1] & 0xC0) == 0x80) ||	/* fe80::/10 link-local */
		(a[0] == 0xFE && (a[1] & 0xC0) == 0xC0) ||	/* fec0::/10 site-local */
		a[0] == 0xFF ||			/* multicast */
		(a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8) ||
		(a[0] == 0x20 && a[1] == 0x02);	/* 6to4 embeds any IPv4 address */
}

/*
 * The circuit breaker key of a request to url: "http:" and its host in
 * lower case (any port); NULL when url has no usable host (the request
 * then fails on its own, behind its queue's breaker).
 */
char *
JobqHttpBreakerKey(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *host = NULL;
	char	   *key = NULL;

	if (u == NULL)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, CURLU_URLDECODE) == CURLUE_OK &&
		host[0] != '\0' && strlen(host) <= 195)
	{
		char	   *h = asc_tolower(host, strlen(host));

		key = psprintf("http:%s", h);
		pfree(h);
	}
	curl_free(host);
	curl_url_cleanup(u);
	return key;
}

/*
 * Check url against the allowlist (re-read first).  NULL when allowed, with
 * *host_explicit telling whether the allowlist names the host itself (then
 * it may connect to a private address); else the reason, palloc'd.
 */
char *
JobqHttpCheckUrl(const char *url, bool *host_explicit)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *user = NULL;
	char	   *host = NULL;
	char	   *result = NULL;
	char	   *h = NULL;
	CURLUcode	rc;
	unsigned char addr[16];
	int			family = 0;
	int			i;

	*host_explicit = false;
	JobqHttpParseAllowlist();
	if (u == NULL)
		return pstrdup("out of memory");
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
	{
		result = psprintf("invalid URL \"%s\": %s", url, curl_url_strerror(rc));
		goto done;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		(pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
	{
		result = psprintf("invalid URL \"%s\": the scheme must be http or https", url);
		goto done;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
	{
		result = psprintf("invalid URL \"%s\": user names and passwords are not accepted in URLs", url);
		goto done;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, CURLU_URLDECODE) != CURLUE_OK ||
		host[0] == '\0')
	{
		result = psprintf("invalid URL \"%s\": no host", url);
		goto done;
	}
	if (strpbrk(host, "%@/\\ ") != NULL)
	{
		result = psprintf("invalid URL \"%s\": the host \"%s\" contains a character hosts do not", url, host);
		goto done;
	}
	h = asc_tolower(host, strlen(host));
	if (h[0] == '[')
	{
		char		v6[64];
		size_t		len = strlen(h);

		if (len < 3 || len - 2 >= sizeof(v6) || h[len - 1] != ']')
		{
			result = psprintf("invalid URL \"%s\": bad IPv6 address", url);
			goto done;
		}
		memcpy(v6, h + 1, len - 2);
		v6[len - 2] = '\0';
		if (inet_pton(AF_INET6, v6, addr) != 1)
		{
			result = psprintf("invalid URL \"%s\": bad IPv6 address (zone ids are not accepted)", url);
			goto done;
		}
		family = AF_INET6;
	}
	else if (inet_pton(AF_INET, h, addr) == 1)
		family = AF_INET;
	else
	{
		/* a trailing dot names the same host */
		size_t		len = strlen(h);

		if (len > 1 && h[len - 1] == '.')
			h[len - 1] = '\0';
	}

	if (family != 0)
	{
		/* an IP literal: allowed by a matching address entry, or by * */
		bool		named = AddrNamedByAllowlist(family, addr);
		bool		any = false;

		for (i = 0; i < nallow; i++)
			if (allow[i].kind == ALLOW_ANY)
				any = true;
		if (named)
			*host_explicit = true;
		else if (!any)
			result = psprintf("host \"%s\" is not allowed by jobq.http_allowed_hosts", h);
		else if (AddrSpecial(family, addr))
			result = psprintf("address %s is loopback, private, link-local or reserved, and jobq.http_allowed_hosts does not name it", h);
		goto done;
	}
	for (i = 0; i < nallow; i++)
	{
		if (allow[i].kind == ALLOW_HOST && strcmp(allow[i].text, h) == 0)
		{
			*host_explicit = true;
			goto done;
		}
	}
	for (i = 0; i < nallow; i++)
	{
		size_t		hl = strlen(h);
		size_t		sl = allow[i].kind == ALLOW_SUFFIX ? strlen(allow[i].text) : 0;

		if (allow[i].kind == ALLOW_ANY ||
			(allow[i].kind == ALLOW_SUFFIX && hl > sl &&
			 strcmp(h + hl - sl, allow[i].text) == 0))
			goto done;
	}
	result = psprintf("host \"%s\" is not allowed by jobq.http_allowed_hosts", h);

done:
	curl_free(scheme);
	curl_free(user);
	curl_free(host);
	curl_url_cleanup(u);
	return result;
}

/*
 * At submit, for a job of an http queue (caller.c): the caller may submit
 * HTTP jobs, and the URL is one the allowlist accepts.
 */
void
JobqHttpCheckSubmit(Oid caller, Datum payload)
{
	Oid			admin = get_role_oid("jobq_admin", true);
	Oid			http = get_role_oid("jobq_http", true);
	JsonbValue	key;
	JsonbValue *v;
	char	   *url;
	char	   *err;
	bool		expl;

	if (!((OidIsValid(admin) && has_privs_of_role(caller, admin)) ||
		  (OidIsValid(http) && has_privs_of_role(caller, http))))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to submit HTTP jobs"),
				 errdetail("HTTP jobs are submitted by members of jobq_http or jobq_admin."),
				 errhint("GRANT jobq_http TO %s;", GetUserNameFromId(caller, false))));

	key.type = jbvString;
	key.val.string.val = "url";
	key.val.string.len = 3;
	v = findJsonbValueFromContainer(&DatumGetJsonbP(payload)->root, JB_FOBJECT, &key);
	if (v == NULL || v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload of an http job must have a \"url\" string")));
	url = pnstrdup(v->val.string.val, v->val.string.len);
	err = JobqHttpCheckUrl(url, &expl);
	if (err != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err),
				 errdetail("HTTP jobs may reach the hosts jobq.http_allowed_hosts names; loopback, private and link-local addresses only when it names them explicitly."),
				 errhint("Ask an administrator to add the host to jobq.http_allowed_hosts.")));
}

/* ---------------------------------------------------------------------
 * libcurl callbacks: no ereport, no palloc (see the header comment)
 * ---------------------------------------------------------------------
 */
static size_t
WriteBody(char *ptr, size_t size, size_t nmemb, void *arg)
{
	JobqHttpJob *job = (JobqHttpJob *) arg;
	size_t		n = size * nmemb;
	size_t		cap = (size_t) jobq_http_max_response_kb * 1024;
	size_t		take = n;

	if (job->resp_len + n > cap)
	{
		take = cap - job->resp_len;
		job->truncated = true;
	}
	if (job->resp_len + take > job->resp_cap)
	{
		size_t		want = Max(job->resp_cap * 2, job->resp_len + take);
		char	   *p;

		want = Min(Max(want, 8192), cap);
		p = realloc(job->resp_body, want);
		if (p == NULL)
		{
			job->truncated = true;
			return 0;
		}
		job->resp_body = p;
		job->resp_cap = want;
	}
	memcpy(job->resp_body + job->resp_len, ptr, take);
	job->resp_len += take;
	/* past the cap: 0 ends the transfer (CURLE_WRITE_ERROR) */
	return job->truncated ? 0 : n;
}

static size_t
WriteHeader(char *ptr, size_t size, size_t nmemb, void *arg)
{
	JobqHttpJob *job = (JobqHttpJob *) arg;
	size_t		n = size * nmemb;

	/* a new status line: a 1xx or another response; keep the last one */
	if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0)
		job->resp_headers_len = 0;
	if (job->resp_headers == NULL)
	{
		job->resp_headers = malloc(JOBQ_HTTP_MAX_HEADER_BYTES + 1);
		if (job->resp_headers == NULL)
			return 0;
	}
	if (job->resp_headers_len + n <= JOBQ_HTTP_MAX_HEADER_BYTES)
	{
		memcpy(job->resp_headers + job->resp_headers_len, ptr, n);
		job->resp_headers_len += n;
	}
	job->resp_headers[job->resp_headers_len] = '\0';
	return n;
}

/*
 * The connect check: the address libcurl is about to connect to, after
 * name resolution, for every connection of every hop.  Private addresses
 * only when the hop's host or the address is named by the allowlist.
 */
static curl_socket_t
OpenSocket(void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
	JobqHttpJob *job = (JobqHttpJob *) arg;
	const unsigned char *a = NULL;

	if (address->family == AF_INET)
		a = (const unsigned char *) &((struct sockaddr_in *) &address->addr)->sin_addr;
	else if (address->family == AF_INET6)
		a = (const unsigned char *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr;
	else
	{
		strlcpy(job->refused_addr, "(not an IP address)", sizeof(job->refused_addr));
		return CURL_SOCKET_BAD;
	}
	if (!job->host_explicit && AddrSpecial(address->family, a) &&
		!AddrNamedByAllowlist(address->family, a))
	{
		if (inet_ntop(address->family, a, job->refused_addr,
					  sizeof(job->refused_addr)) == NULL)
			strlcpy(job->refused_addr, "?", sizeof(job->refused_addr));
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/* ---------------------------------------------------------------------
 * The transfer
 * ---------------------------------------------------------------------
 */
static bool
AppendHeader(JobqHttpJob *job, const char *line)
{
	struct curl_slist *l = curl_slist_append(job->header_list, line);

	if (l == NULL)
		return false;
	job->header_list = l;
	return true;
}

#define SETOPT(opt, val) \
	do { if (curl_easy_setopt(job->easy, (opt), (val)) != CURLE_OK) goto fail; } while (0)

/*
 * Check the current hop's URL and build its easy handle (not yet added to
 * a multi handle).  false with *error set when the job cannot be sent: the
 * URL is refused, or libcurl is out of memory.  On false nothing is left
 * allocated by libcurl.
 */
bool
JobqHttpStartTransfer(JobqHttpJob *job, char **error)
{
	char	   *err;
	long		remaining;
	bool		has_key = false;

	err = JobqHttpCheckUrl(job->url, &job->host_explicit);
	if (err != NULL)
	{
		*error = psprintf("http refused: %s", err);
		return false;
	}

	JobqHttpFreeTransfer(job);
	job->truncated = false;
	job->refused_addr[0] = '\0';
	job->errbuf[0] = '\0';
	job->easy = curl_easy_init();
	if (job->easy == NULL)
		goto fail;

	/* the payload's headers, then the ones jobq adds */
	if (job->headers != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&job->headers->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && name != NULL && v.type == jbvString)
			{
				if (pg_strcasecmp(name, "Idempotency-Key") == 0)
					has_key = true;
				if (!AppendHeader(job, psprintf("%s: %.*s", name,
												v.val.string.len, v.val.string.val)))
					goto fail;
			}
		}
	}
	if (!has_key &&
		!AppendHeader(job, psprintf("Idempotency-Key: jobq-" UINT64_FORMAT "-%u-" INT64_FORMAT,
									GetSystemIdentifier(), MyDatabaseId, job->id)))
		goto fail;
	/* no 100-continue round trip before a body */
	if (!AppendHeader(job, "Expect:"))
		goto fail;

	remaining = (long) ((job->deadline - GetCurrentTimestamp()) / 1000);
	remaining = Max(remaining, 1);

	SETOPT(CURLOPT_PRIVATE, job);
	SETOPT(CURLOPT_URL, job->url);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	/* redirects are followed by the worker, each hop checked like the first */
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	/* a proxy from the environment would connect for us, unchecked */
	SETOPT(CURLOPT_PROXY, "");
	SETOPT(CURLOPT_TIMEOUT_MS, remaining);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, remaining);
	SETOPT(CURLOPT_USERAGENT, "jobq/" "0.2.0");
	SETOPT(CURLOPT_HTTPHEADER, job->header_list);
	SETOPT(CURLOPT_ERRORBUFFER, job->errbuf);
	SETOPT(CURLOPT_WRITEFUNCTION, WriteBody);
	SETOPT(CURLOPT_WRITEDATA, job);
	SETOPT(CURLOPT_HEADERFUNCTION, WriteHeader);
	SETOPT(CURLOPT_HEADERDATA, job);
	SETOPT(CURLOPT_OPENSOCKETFUNCTION, OpenSocket);
	SETOPT(CURLOPT_OPENSOCKETDATA, job);

	if (strcmp(job->method, "GET") == 0)
		SETOPT(CURLOPT_HTTPGET, 1L);
	else if (strcmp(job->method, "HEAD") == 0)
		SETOPT(CURLOPT_NOBODY, 1L);
	else
	{
		const char *body = job->body ? job->body : "";

		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
		SETOPT(CURLOPT_COPYPOSTFIELDS, body);
		SETOPT(CURLOPT_CUSTOMREQUEST, job->method);
	}
	return true;

fail:
	JobqHttpFreeTransfer(job);
	*error = pstrdup("http connection error: could not set up the request (out of memory)");
	return false;
}

/* Free what libcurl allocated for the job; the caller removed it from the multi handle. */
void
JobqHttpFreeTransfer(JobqHttpJob *job)
{
	if (job->easy != NULL)
		curl_easy_cleanup(job->easy);
	job->easy = NULL;
	if (job->header_list != NULL)
		curl_slist_free_all(job->header_list);
	job->header_list = NULL;
	free(job->resp_body);
	job->resp_body = NULL;
	job->resp_len = job->resp_cap = 0;
	free(job->resp_headers);
	job->resp_headers = NULL;
	job->resp_headers_len = 0;
}
