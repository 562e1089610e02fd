#!/usr/bin/env bash
# The HTTP worker's process life: many requests in flight at once (1,000
# jobs against an endpoint answering after 50 ms finish well under the
# serial 50 s), a configuration reload leaves the requests in flight alone,
# jobq.cancel aborts a running transfer, SIGTERM releases the
# jobs in flight after jobq.shutdown_grace (pending again, no attempt used),
# and kill -9 of the worker loses nothing (its leases are recovered).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib/http.sh"

it_start_cluster "jobq.workers = 1" "jobq.http_allowed_hosts = '127.0.0.1'" \
    "jobq.shutdown_grace = '1s'" "jobq.http_max_inflight = 100"
trap 'rc=$?; http_servers_stop; (exit $rc); it_cleanup' EXIT
http_server_start S
U="http://127.0.0.1:$S_PORT"
q "CREATE EXTENSION jobq"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'http' AND pid IS NOT NULL" 1 30 \
    || it_fail "no HTTP worker"
q "SELECT jobq.create_queue('h', kind => 'http', max_attempts => 3, base_delay => '100 ms')"
# kills and cancels below fail jobs on purpose: no circuit breaker holds them
q "SELECT jobq.configure_breaker(k, failure_threshold => 100) FROM unnest(ARRAY['http:127.0.0.1', 'http:localhost']) k" >/dev/null
http_pid() { q "SELECT pid FROM jobq.workers WHERE kind = 'http' AND pid IS NOT NULL"; }
stat() { http_stats "$S_PORT" | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# ---- concurrency -----------------------------------------------------------
start=$(date +%s%N)
q "SELECT count(jobq.submit_http('$U/delay/50', queue => 'h')) FROM generate_series(1, 1000)" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'h' AND state = 'completed'" 1000 300 \
    || it_fail "1000 jobs not completed"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
peak=$(stat '["max_inflight"]')
log "1000 jobs x 50 ms: ${ms} ms (serial: 50000 ms), at most $peak requests in flight at the server"
[ "$ms" -lt 25000 ] || it_fail "1000 jobs x 50 ms took ${ms} ms: not concurrent"
[ "$peak" -gt 1 ] || it_fail "never more than one request in flight"
it_ok "1000 jobs x 50 ms in ${ms} ms, up to $peak in flight"
q "DELETE FROM jobq.jobs_final WHERE queue = 'h'" >/dev/null

# ---- a queue with a concurrency limit ---------------------------------------
# the outcomes of finished jobs are recorded in the claim's transaction,
# before the claim: the places they free are taken again at once, and never
# more than the limit are in flight
http_server_start L
q "SELECT jobq.create_queue('hl', kind => 'http', concurrency => 3)"
start=$(date +%s%N)
q "SELECT count(jobq.submit_http('http://127.0.0.1:$L_PORT/delay/100', queue => 'hl')) FROM generate_series(1, 30)" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'hl' AND state = 'completed'" 30 120 \
    || it_fail "limited queue: jobs not completed: $(q "SELECT string_agg(state || '/' || attempt, ' ') FROM jobq.jobs WHERE queue = 'hl' AND state <> 'completed'")"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
peak=$(http_stats "$L_PORT" | python3 -c "import json,sys; print(json.load(sys.stdin)['max_inflight'])")
log "30 jobs x 100 ms, concurrency 3: ${ms} ms, at most $peak requests in flight at the server"
[ "$peak" -le 3 ] || it_fail "limited queue: $peak requests in flight, the queue's concurrency is 3"
[ "$peak" -ge 2 ] || it_fail "limited queue: never more than one request in flight"
[ "$ms" -lt 15000 ] || it_fail "limited queue: 30 jobs x 100 ms at 3 at once took ${ms} ms: freed places not taken again"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id
                 WHERE j.queue = 'hl' AND a.outcome <> 'completed'")" 0 "limited queue: every job completed on its first attempt"
q "DELETE FROM jobq.jobs_final WHERE queue = 'hl'" >/dev/null
it_ok "a queue with concurrency 3: 30 jobs in ${ms} ms, at most $peak in flight"

# ---- a configuration reload with requests in flight ------------------------
# SIGHUP (and a changed jobq.http_max_inflight) while 40 requests wait for
# their answer: every one completes, on its first attempt
q "SELECT count(jobq.submit_http('$U/delay/1500', queue => 'h')) FROM generate_series(1, 40)" >/dev/null
wait_for "SELECT count(*) >= 10 FROM jobq.jobs WHERE queue = 'h' AND state = 'running'" t 30 \
    || it_fail "reload: requests not in flight"
q "ALTER SYSTEM SET jobq.http_max_inflight = 20" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
kill -HUP "$(http_pid)"
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'h' AND state = 'completed'" 40 120 \
    || it_fail "reload: jobs not completed: $(q "SELECT string_agg(state || '/' || attempt, ' ') FROM jobq.jobs WHERE queue = 'h' AND state <> 'completed'")"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id
                 WHERE j.queue = 'h' AND a.outcome <> 'completed'")" 0 "reload: no attempt failed or was released"
assert_eq "$(q "SHOW jobq.http_max_inflight")" 20 "reload: the new setting is in force"
q "ALTER SYSTEM RESET jobq.http_max_inflight" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
q "DELETE FROM jobq.jobs_final WHERE queue = 'h'" >/dev/null
it_ok "a reload with 40 requests in flight: all completed on their first attempt"

# ---- cancel aborts the transfer --------------------------------------------
id=$(q "SELECT jobq.submit_http('$U/slow', queue => 'h', timeout_ms => 120000)")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 30 || it_fail "slow job not running"
sleep 0.5
aborted0=$(stat '["aborted"]')
t0=$(python3 -c 'import time; print(time.time())')
assert_eq "$(q "SELECT jobq.cancel($id)")" t "cancel of a running HTTP job"
deadline=$(( $(date +%s) + 30 ))
while [ "$(stat '["aborted"]')" = "$aborted0" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || it_fail "transfer not aborted after cancel"
    sleep 0.05
done
took=$(http_stats "$S_PORT" | python3 -c "import json,sys; print(int((json.load(sys.stdin)['aborted_at'][-1] - $t0) * 1000))")
log "transfer aborted ${took} ms after jobq.cancel returned (the server notices at its next write, every 100 ms)"
assert_eq "$(q "SELECT state || ' ' || attempt FROM jobq.jobs WHERE id = $id")" "cancelled 1" "job cancelled, not retried"
assert_eq "$(q "SELECT count(*) FROM jobq.dead_letter WHERE job_id = $id")" 0 "no dead letter"

# ---- SIGTERM with requests in flight: released within the grace -------------
ids=$(q "SELECT string_agg(jobq.submit_http('$U/delay/60000', queue => 'h')::text, ',') FROM generate_series(1, 3)")
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($ids) AND state = 'running'" 3 30 || it_fail "not running"
pid=$(http_pid)
start=$(date +%s%N)
kill -TERM "$pid"
deadline=$(( $(date +%s) + 30 ))
while kill -0 "$pid" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || it_fail "HTTP worker did not exit after SIGTERM"
    sleep 0.05
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
it_ok "HTTP worker exited ${ms} ms after SIGTERM (shutdown_grace 1 s, requests of 60 s in flight)"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE job_id IN ($ids) AND outcome = 'released'")" 3 \
    "the jobs in flight were released"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE id IN ($ids) AND snoozes = 1 AND attempt - snoozes <= 1")" 3 \
    "no attempt used by the release"
# the launcher starts a new HTTP worker, which takes them again
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'http' AND pid IS NOT NULL AND pid <> $pid" 1 60 \
    || it_fail "HTTP worker not restarted"
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($ids) AND state = 'running' AND attempt = 2" 3 30 \
    || it_fail "released jobs not taken again"
it_ok "a new HTTP worker takes the released jobs"
q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE id IN ($ids)" >/dev/null

# ---- kill -9: the leases are recovered, the jobs run again ------------------
ids=$(q "SELECT string_agg(jobq.submit_http('$U/delay/3000', queue => 'h')::text, ',') FROM generate_series(1, 3)")
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($ids) AND state = 'running'" 3 30 || it_fail "not running"
pid=$(http_pid)
kill -9 "$pid"
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($ids) AND state = 'completed'" 3 120 \
    || { q "SELECT id, state, attempt, error_type, last_error FROM jobq.jobs WHERE id IN ($ids)"; it_fail "jobs lost after kill -9"; }
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE job_id IN ($ids) AND error_class = 'worker_lost'")" 3 \
    "kill -9: the leases were recovered as worker_lost"
it_ok "kill -9 of the HTTP worker: every job completed on a later attempt"
