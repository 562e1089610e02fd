#!/usr/bin/env bash
# HTTP jobs behind the circuit breaker of their target host (issue 13): an
# http queue that names no breaker key puts each job behind "http:<host>";
# failures count against the host, not the queue; while a host's breaker is
# open its jobs are given back without using an attempt (pending until the
# next probe, error_type breaker_open) and jobs to other hosts run; a
# fail_fast queue dead-letters them at once; a queue naming a key is behind
# that key only; reset_breaker releases the held jobs at once; after the
# cooldown a probe's success closes the host's breaker and the rest run.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib/http.sh"

it_start_cluster "jobq.workers = 1" "jobq.http_allowed_hosts = '127.0.0.1, localhost'"
trap 'rc=$?; http_servers_stop; (exit $rc); it_cleanup' EXIT
http_server_start S
A="http://127.0.0.1:$S_PORT"
B="http://localhost:$S_PORT"
q "CREATE EXTENSION jobq"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'http' AND pid IS NOT NULL" 1 30 || it_fail "no HTTP worker"
q "
SELECT jobq.create_queue('hq', kind => 'http', max_attempts => 100, base_delay => '10 ms', jitter => 0);
SELECT jobq.create_queue('hff', kind => 'http', breaker_mode => 'fail_fast');
SELECT jobq.create_queue('hnamed', kind => 'http', breaker => 'named');
SELECT jobq.configure_breaker('http:127.0.0.1', failure_threshold => 3, cooldown => '1 hour');
" >/dev/null

# Three failures of requests to 127.0.0.1 open its breaker (the job then
# waits behind it: 503 for its first 3 requests, then 200).
flaky=$(q "SELECT jobq.submit('hq', jsonb_build_object('url', '$A/flaky/k1/3'))")
wait_for "SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = 'http:127.0.0.1'" open 60 \
    || it_fail "host breaker not open: $(q "SELECT string_agg(breaker_key || '=' || state || '/' || failure_count, ' ') FROM jobq.circuit_breaker_state")"
assert_eq "$(q "SELECT count(*) FROM jobq.circuit_breaker_state WHERE breaker_key = 'hq' AND failure_count > 0")" 0 \
    "the failures counted against the host, not the queue"
wait_for "SELECT error_type || ' ' || (attempt - snoozes) FROM jobq.jobs WHERE id = $flaky" "breaker_open 3" 60 \
    || it_fail "the failing job not held"

# Held: a job to the open host waits, attempt unused; another host runs.
held=$(q "SELECT jobq.submit('hq', jsonb_build_object('url', '$A/status/200'))")
other=$(q "SELECT jobq.submit('hq', jsonb_build_object('url', '$B/status/200'))")
wait_for "SELECT state FROM jobq.jobs WHERE id = $other" completed 60 || it_fail "a job to another host did not run"
wait_for "SELECT state || ' ' || error_type || ' ' || (attempt - snoozes) FROM jobq.jobs WHERE id = $held" "pending breaker_open 0" 60 \
    || it_fail "the job to the open host was not held"
assert_eq "$(q "SELECT run_at > now() + interval '30 minutes' FROM jobq.jobs WHERE id = $held")" t "held until the breaker's next probe"
assert_eq "$(q "SELECT outcome || ': ' || error FROM jobq.job_attempts WHERE job_id = $held ORDER BY attempt LIMIT 1")" \
    'released: held: the circuit breaker "http:127.0.0.1" is open' "its history says why"
it_ok "an open host breaker holds that host's jobs (no attempt used) and not other hosts'"

# fail_fast: dead-lettered at once with class breaker_open.
ff=$(q "SELECT jobq.submit('hff', jsonb_build_object('url', '$A/status/200'))")
wait_for "SELECT state || ' ' || error_type FROM jobq.jobs WHERE id = $ff" "failed breaker_open" 60 || it_fail "fail_fast job not dead-lettered"
assert_eq "$(q "SELECT error_class FROM jobq.dead_letter WHERE job_id = $ff")" breaker_open "fail_fast: in the dead letter queue"

# A queue naming a key is behind that key only.
named=$(q "SELECT jobq.submit('hnamed', jsonb_build_object('url', '$A/status/200'))")
wait_for "SELECT state FROM jobq.jobs WHERE id = $named" completed 60 || it_fail "a job of a queue naming its key was held by the host's breaker"
it_ok "fail_fast dead-letters; a named key replaces the host's"

# reset_breaker: the held jobs run at once (not at their run_at, an hour on).
q "SELECT jobq.reset_breaker('http:127.0.0.1')" >/dev/null
wait_for "SELECT string_agg(state, ',' ORDER BY id) FROM jobq.jobs WHERE id IN ($flaky, $held)" completed,completed 60 \
    || it_fail "reset did not release the held jobs"
it_ok "reset_breaker releases the jobs a host's breaker held"

# Cooldown over: one probe; its success closes the breaker; the rest run.
q "SELECT jobq.trip_breaker('http:127.0.0.1', cooldown => '2 seconds')" >/dev/null
wait_for "SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = 'http:127.0.0.1'" open 30 || it_fail "trip"
ids=$(q "SELECT string_agg(jobq.submit('hq', jsonb_build_object('url', '$A/delay/200', 'i', i))::text, ',') FROM generate_series(1, 5) i")
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($ids) AND state = 'completed'" 5 60 || it_fail "held jobs did not run after the probe"
assert_eq "$(q "SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = 'http:127.0.0.1'")" closed "the probe's success closed it"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE id IN ($ids) AND attempt - snoozes = 1")" 5 "each used one attempt"
it_ok "after the cooldown a probe closes the host's breaker and the held jobs run"
