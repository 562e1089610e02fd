#!/usr/bin/env bash
# HTTP jobs (issue 12): executed by the database's HTTP worker through
# libcurl against a scripted server on 127.0.0.1: outcomes and their classes,
# Retry-After in both forms, timeouts, capped bodies, redirects, dropped
# connections, TLS verification, the allowlist at submit and at connect,
# the jobq_http role, and the Idempotency-Key header.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib/http.sh"

it_start_cluster "jobq.workers = 1" "jobq.http_max_response_size = 64kB"
trap 'rc=$?; http_servers_stop; (exit $rc); it_cleanup' EXIT
http_server_start S
http_server_start T tls
U="http://127.0.0.1:$S_PORT"
q "CREATE EXTENSION jobq"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'http' AND pid IS NOT NULL" 1 30 \
    || it_fail "no HTTP worker"
it_ok "one HTTP worker for the database"

# ---- who may submit ----------------------------------------------------
q "CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA jobq TO app"
err=$(psql -X -q -A -t -d postgres -c "SET ROLE app; SELECT jobq.submit_http('https://example.com/')" 2>&1 || true)
case "$err" in *"permission denied to submit HTTP jobs"*) it_ok "submit_http refused without jobq_http";;
    *) it_fail "submit_http without jobq_http: $err";; esac
err=$(psql -X -q -A -t -d postgres -c "SET ROLE app; SELECT jobq.submit('http', '{\"url\": \"https://example.com/\"}')" 2>&1 || true)
case "$err" in *"permission denied to submit HTTP jobs"*) it_ok "submit to an http queue refused without jobq_http";;
    *) it_fail "submit to http queue without jobq_http: $err";; esac
q "GRANT jobq_http TO app"

# ---- the allowlist at submit (default '*': names, not private addresses) ----
refused() {   # refused URL PATTERN
    local out
    out=$(psql -X -q -A -t -d postgres -c "SET ROLE app; SELECT jobq.submit_http('$1')" 2>&1 || true)
    case "$out" in *$2*) it_ok "refused at submit: $1";; *) it_fail "not refused at submit: $1 -> $out";; esac
}
refused "$U/" "loopback, private"
refused "http://169.254.169.254/latest/meta-data/" "loopback, private"
refused "http://10.1.2.3/" "loopback, private"
refused "http://[::1]:$S_PORT/" "loopback, private"
refused "http://[::ffff:127.0.0.1]:$S_PORT/" "loopback, private"
refused "http://[fe80::1]/" "loopback, private"
refused "http://2130706433:$S_PORT/" "loopback, private"
refused "http://0x7f.0.0.1:$S_PORT/" "loopback, private"
refused "http://%31%32%37.0.0.1:$S_PORT/" "loopback, private"
refused "http://example.com@127.0.0.1:$S_PORT/" "user names"
refused "http://user:pw@example.com/" "user names"
refused "ftp://example.com/" "invalid URL"
refused "http:///nohost" "invalid URL"
# a name that resolves to loopback passes the submit check (names are
# checked at connect, against the address actually reached)
id=$(q "SET ROLE app; SELECT jobq.submit_http('http://localhost:$S_PORT/status/200')")
wait_for "SELECT state || ' ' || error_type FROM jobq.jobs WHERE id = $id" "failed permanent" 30 \
    || it_fail "localhost not refused at connect"
assert_eq "$(q "SELECT last_error LIKE 'http refused: address %' FROM jobq.jobs WHERE id = $id")" t \
    "a name resolving to loopback refused at connect"
assert_eq "$(http_stats "$S_PORT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"].get("/status", 0))')" 0 \
    "no request reached the server"

allow() { q "ALTER SYSTEM SET jobq.http_allowed_hosts = '$1'" && q "SELECT pg_reload_conf()" >/dev/null && sleep 0.5; }
allow 'example.com'
refused "https://other.example.org/" "not allowed by jobq.http_allowed_hosts"
allow '127.0.0.1, *.example.com'
sub_id=$(q "SET ROLE app; SELECT jobq.submit_http('https://api.example.com/')")
q "SELECT jobq.cancel($sub_id)" >/dev/null   # not meant to run: no network here
it_ok "*.example.com allows a subdomain"
refused "https://example.com.evil.org/" "not allowed"
refused "http://[::1]:$S_PORT/" "not allowed"

# ---- outcomes ------------------------------------------------------------
q "SELECT jobq.create_queue('h', kind => 'http', max_attempts => 2, base_delay => '100 ms', jitter => 0)"
# the failures below are the test's own: the breakers of the hosts they
# call (the queue names no key) must not hold its jobs
q "SELECT jobq.configure_breaker(k, failure_threshold => 100) FROM unnest(ARRAY['http:127.0.0.1', 'http:localhost']) k" >/dev/null
sub() { q "SET ROLE app; SELECT jobq.submit_http('$1', queue => 'h' ${2:+, $2})"; }
ok=$(sub "$U/echo" "method => 'POST', body => '{\"a\":1}', headers => '{\"X-Test\": \"yes\"}'")
s404=$(sub "$U/status/404")
s401=$(sub "$U/status/401")
s408=$(sub "$U/status/408")
s500=$(sub "$U/status/500")
slow=$(sub "$U/delay/5000" "timeout_ms => 300")
huge=$(sub "$U/huge/200000")
drop=$(sub "$U/drop")
tls=$(q "SET ROLE app; SELECT jobq.submit_http('https://127.0.0.1:$T_PORT/', queue => 'h')")
red_ok=$(q "SET ROLE app; SELECT jobq.submit('h', jsonb_build_object('url', '$U/redirect?to=/echo', 'follow_redirects', true))")
red_no=$(sub "$U/redirect?to=/echo")
red_bad=$(q "SET ROLE app; SELECT jobq.submit('h', jsonb_build_object('url', '$U/redirect?to=http://169.254.169.254/latest/meta-data/', 'follow_redirects', true))")
red_lo=$(q "SET ROLE app; SELECT jobq.submit('h', jsonb_build_object('url', '$U/redirect?to=http://localhost:$S_PORT/echo', 'follow_redirects', true))")
all="$ok,$s404,$s401,$s408,$s500,$slow,$huge,$drop,$tls,$red_ok,$red_no,$red_bad,$red_lo"
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($all) AND state IN ('completed', 'failed')" 13 60 \
    || { q "SELECT id, state, attempt, error_type, last_error FROM jobq.jobs WHERE id IN ($all)"; it_fail "jobs not final"; }

st() { q "SELECT state || ' ' || coalesce(error_type, '-') || ' ' || (attempt - snoozes) FROM jobq.jobs WHERE id = $1"; }
assert_eq "$(st $ok)" "completed - 1" "2xx completes"
assert_eq "$(q "SELECT result->>'status', result->'headers'->>'content-type', (result->>'body')::jsonb->>'method', (result->>'body')::jsonb->>'body', (result->>'body')::jsonb->'headers'->>'x-test' FROM jobq.jobs WHERE id = $ok")" \
    "200|application/json|POST|{\"a\":1}|yes" "result: status, headers, body; method, body and headers sent"
key=$(q "SELECT (result->>'body')::jsonb->'headers'->>'idempotency-key' FROM jobq.jobs WHERE id = $ok")
case "$key" in jobq-*-$ok) it_ok "Idempotency-Key derived from the job id ($key)";; *) it_fail "Idempotency-Key: $key";; esac
assert_eq "$(st $s404)" "failed permanent 1" "404 permanent, not retried"
assert_eq "$(st $s401)" "failed api_error 1" "401 api_error"
assert_eq "$(st $s408)" "failed timeout 2" "408 timeout, retried"
assert_eq "$(st $s500)" "failed transient 2" "500 transient, retried"
assert_eq "$(q "SELECT string_agg(http_status::text || ':' || error_class, ',' ORDER BY attempt) FROM jobq.job_attempts WHERE job_id = $s500")" \
    "500:transient,500:transient" "attempt rows carry the HTTP status"
assert_eq "$(st $slow)" "failed timeout 2" "timeout_ms: a curl timeout is timeout"
assert_eq "$(q "SELECT state, result->>'truncated', length(result->>'body') FROM jobq.jobs WHERE id = $huge")" \
    "completed|true|65536" "a large body is truncated at jobq.http_max_response_size, flagged"
assert_eq "$(st $drop)" "failed transient 2" "a connection dropped mid-response is transient"
assert_eq "$(st $tls)" "failed permanent 1" "a self-signed certificate is refused"
assert_eq "$(q "SELECT last_error LIKE 'http tls error:%' FROM jobq.jobs WHERE id = $tls")" t "... as a TLS error"
assert_eq "$(q "SELECT state, result->>'redirects', (result->>'body')::jsonb->>'path' FROM jobq.jobs WHERE id = $red_ok")" \
    "completed|1|/echo" "follow_redirects: the redirect is followed"
assert_eq "$(st $red_no)" "failed permanent 1" "a redirect is not followed unless asked"
assert_eq "$(st $red_bad)" "failed permanent 1" "a redirect to a disallowed host is refused"
assert_eq "$(q "SELECT last_error LIKE 'http refused:%' FROM jobq.jobs WHERE id = $red_bad")" t "... by the allowlist"
assert_eq "$(st $red_lo)" "failed permanent 1" "a redirect to a name resolving to loopback is refused at connect"

# ---- Retry-After: seconds and HTTP-date; 429 uses no attempt --------------
r429=$(sub "$U/status/429?retry_after=3")
date=$(python3 -c 'import email.utils,time; print(email.utils.formatdate(time.time()+4, usegmt=True))' | sed 's/ /%20/g')
r429d=$(sub "$U/status/429?retry_after=$date")
r503=$(sub "$U/status/503?retry_after=3")
wait_for "SELECT count(*) FROM jobq.job_attempts WHERE job_id IN ($r429, $r429d, $r503)" 3 30 || it_fail "no attempts"
assert_eq "$(q "SELECT state || ' ' || error_type || ' ' || attempt || ' ' || snoozes FROM jobq.jobs WHERE id = $r429")" \
    "pending rate_limited 1 1" "429: rate_limited, a snooze (no attempt used)"
assert_eq "$(q "SELECT run_at - a.finished_at >= interval '2.9 s' FROM jobq.jobs j JOIN jobq.job_attempts a ON a.job_id = j.id WHERE j.id = $r429")" t \
    "429: Retry-After in seconds honoured"
assert_eq "$(q "SELECT state || ' ' || error_type || ' ' || snoozes FROM jobq.jobs WHERE id = $r429d")" \
    "pending rate_limited 1" "429 with an HTTP-date: rate_limited"
assert_eq "$(q "SELECT run_at - a.finished_at >= interval '2 s' FROM jobq.jobs j JOIN jobq.job_attempts a ON a.job_id = j.id WHERE j.id = $r429d")" t \
    "429: Retry-After as an HTTP-date honoured"
assert_eq "$(q "SELECT state || ' ' || error_type || ' ' || snoozes FROM jobq.jobs WHERE id = $r503")" \
    "pending transient 0" "503: transient, an attempt used"
assert_eq "$(q "SELECT run_at - a.finished_at >= interval '2.9 s' FROM jobq.jobs j JOIN jobq.job_attempts a ON a.job_id = j.id WHERE j.id = $r503")" t \
    "503: Retry-After honoured as a minimum"
q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE id IN ($r429, $r429d, $r503)" >/dev/null

# ---- the rules decide: an administrator's rule changes a class ------------
q "INSERT INTO jobq.error_rules (priority, http_status_min, http_status_max, error_class) VALUES (1, 404, 404, 'transient')"
s404b=$(sub "$U/status/404")
wait_for "SELECT state FROM jobq.jobs WHERE id = $s404b" failed 30 || it_fail "404 not final"
assert_eq "$(st $s404b)" "failed transient 2" "jobq.error_rules decides the class of an HTTP status"

# ---- the allowlist is checked again at execution -----------------------------
later=$(q "SET ROLE app; SELECT jobq.submit_http('$U/status/200', queue => 'h', run_at => now() + interval '2 s')")
allow '*.example.com'
wait_for "SELECT state || ' ' || error_type FROM jobq.jobs WHERE id = $later" "failed permanent" 30 \
    || it_fail "a host removed from the allowlist after submit was reached"
assert_eq "$(q "SELECT last_error LIKE 'http refused: host \"127.0.0.1\" is not allowed%' FROM jobq.jobs WHERE id = $later")" t \
    "a host removed from jobq.http_allowed_hosts after submit is refused at execution"

# ---- a changed allowlist takes effect in the sessions and the worker -------
# each keeps the list parsed from the setting's text, and parses it again
# when the text changes, back to an earlier value too
allow '127.0.0.1'
back=$(q "SET ROLE app; SELECT jobq.submit_http('$U/status/200', queue => 'h')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $back" completed 30 \
    || it_fail "the worker refused a host allowed again: $(q "SELECT last_error FROM jobq.jobs WHERE id = $back")"
it_ok "a host allowed again is reached by the worker"
out=$(psql -X -q -A -t -d postgres -v ON_ERROR_STOP=0 2>&1 <<SQL
SET ROLE app;
SELECT 'first ' || (jobq.submit_http('$U/status/200', queue => 'h', run_at => now() + interval '1 h') > 0);
RESET ROLE;
ALTER SYSTEM SET jobq.http_allowed_hosts = '*.example.com';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SET ROLE app;
SELECT 'second ' || (jobq.submit_http('$U/status/200', queue => 'h', run_at => now() + interval '1 h') > 0);
RESET ROLE;
ALTER SYSTEM SET jobq.http_allowed_hosts = '127.0.0.1';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SET ROLE app;
SELECT 'third ' || (jobq.submit_http('$U/status/200', queue => 'h', run_at => now() + interval '1 h') > 0);
SQL
)
echo "$out" | grep -qx "first true" || it_fail "one session: the first submit was refused: $out"
echo "$out" | grep -q "ERROR:  host \"127.0.0.1\" is not allowed by jobq.http_allowed_hosts" \
    || it_fail "one session: a submit after the host left the allowlist was accepted: $out"
echo "$out" | grep -qx "second true" && it_fail "one session: the second submit was accepted: $out"
echo "$out" | grep -qx "third true" || it_fail "one session: a submit after the host came back was refused: $out"
it_ok "one session's submit check follows each reload of jobq.http_allowed_hosts"
q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE queue = 'h' AND state = 'pending'" >/dev/null

# ---- the owner's right to send HTTP requests is checked at execution ----------
later=$(q "SET ROLE app; SELECT jobq.submit_http('$U/status/200', queue => 'h', run_at => now() + interval '2 s')")
q "REVOKE jobq_http FROM app"
wait_for "SELECT state || ' ' || error_type FROM jobq.jobs WHERE id = $later" "failed permanent" 30 \
    || it_fail "a job whose owner left jobq_http was sent"
assert_eq "$(q "SELECT last_error LIKE 'http refused: the job''s owner is no longer%' FROM jobq.jobs WHERE id = $later")" t \
    "a job whose owner left jobq_http after submit is not sent"
