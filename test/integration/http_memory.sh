#!/usr/bin/env bash
# The HTTP worker frees what each job used, on every path: after warm-up,
# thousands more jobs of every outcome (completed with a body, failed 4xx
# and 5xx, redirects followed, a capped huge body, dropped connections,
# refused at connect, timeouts, cancels) leave its private memory (RssAnon)
# where it was, within a bound far below what a per-job leak would add.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib/http.sh"

it_start_cluster "jobq.workers = 1" "jobq.http_allowed_hosts = '127.0.0.1, localhost'" \
    "jobq.http_max_inflight = 50" "jobq.http_max_response_size = 16kB"
trap 'rc=$?; http_servers_stop; (exit $rc); it_cleanup' EXIT
http_server_start S
U="http://127.0.0.1:$S_PORT"
q "CREATE EXTENSION jobq"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'http' AND pid IS NOT NULL" 1 30 || it_fail "no HTTP worker"
q "SELECT jobq.create_queue('h', kind => 'http', max_attempts => 1, timeout => '200 ms')" >/dev/null
# every outcome here is deliberate: no circuit breaker holds the jobs
q "SELECT jobq.configure_breaker(k, failure_threshold => 100, failure_window => '1 ms')
     FROM unnest(ARRAY['http:127.0.0.1', 'http:localhost']) k" >/dev/null
pid=$(q "SELECT pid FROM jobq.workers WHERE kind = 'http' AND pid IS NOT NULL")

# one round: n jobs of each kind, then wait until all are final
round() {
    local n=$1
    q "SELECT count(*) FROM (
         SELECT jobq.submit('h', jsonb_build_object('url', u, 'follow_redirects', r))
           FROM generate_series(1, $n) i,
                (VALUES ('$U/echo', false), ('$U/status/404', false), ('$U/status/503', false),
                        ('$U/redirect?to=$U/echo', true), ('$U/huge/100000', false),
                        ('$U/drop', false), ('$U/delay/1000', false),
                        ('http://localhost:1/', false)) v(u, r)) x" >/dev/null
    # and some cancelled while running
    q "SELECT count(jobq.submit_http('$U/slow', queue => 'h')) FROM generate_series(1, $n)" >/dev/null
    q "SELECT count(jobq.cancel(id)) FROM jobq.jobs WHERE queue = 'h' AND payload->>'url' LIKE '%/slow'
         AND state IN ('pending', 'running')" >/dev/null
    wait_for "SELECT count(*) FROM jobq.jobs_active WHERE queue = 'h'" 0 300 \
        || it_fail "jobs not final: $(q "SELECT string_agg(DISTINCT state || ' ' || (payload->>'url'), ', ') FROM jobq.jobs_active")"
}
rss() { awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status"; }

round 100
round 100
before=$(rss)
for _ in $(seq 1 8); do round 100; log "   RssAnon $(rss) kB"; done
after=$(rss)
total=$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'h'")
outcomes=$(q "SELECT string_agg(DISTINCT coalesce(error_type, state), ',' ORDER BY coalesce(error_type, state)) FROM jobq.jobs WHERE queue = 'h'")
it_ok "$total jobs; outcomes: $outcomes"
for o in completed permanent transient timeout cancelled; do
    case ",$outcomes," in *",$o,"*) ;; *) it_fail "no job ended $o: the rounds did not cover it";; esac
done
log "HTTP worker RssAnon: $before kB after warm-up, $after kB after 7,200 more jobs"
# a leak of 150 bytes per job would add more than 1 MB
[ $(( after - before )) -lt 1024 ] || it_fail "RssAnon grew by $(( after - before )) kB over 7,200 jobs"
it_ok "the HTTP worker's memory stays flat over thousands of jobs of every outcome"
