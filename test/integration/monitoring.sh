#!/usr/bin/env bash
# The monitoring views (sql/install/77_monitoring.sql): jobq.queue_stats
# counts what the tables hold (its gauges follow commits, a restart and a
# queue dropped and created again), jobq.stuck_jobs names each kind of
# stuck job to its owner only, jobq.retry_stats, and each rule of
# jobq.health: stuck jobs, breakers, failure rate, dead letter growth, no
# executor, a transaction holding back VACUUM.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms" "jobq.metrics_flush_interval = 200ms"

q "CREATE EXTENSION jobq"
q "
CREATE FUNCTION public.h(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  CASE p->>'do'
    WHEN 'fail' THEN PERFORM jobq.give_up('broken');
    WHEN 'sleep' THEN PERFORM pg_sleep((p->>'s')::float8);
    ELSE NULL;
  END CASE;
  RETURN p;
END \$\$;
SELECT jobq.create_queue('e', kind => 'external', max_attempts => 1);
SELECT jobq.create_queue('ea', kind => 'external', max_attempts => 1);
SELECT jobq.create_queue('s', handler => 'public.h(jsonb)', max_attempts => 1, warn_after => '200 ms');
SELECT jobq.configure_breaker('s', failure_threshold => 100);
CREATE ROLE alice;
GRANT jobq_worker TO alice;
" >/dev/null

stats() { q "SELECT concat_ws(' ', pending, scheduled, running, completed, failed, cancelled, stuck) FROM jobq.queue_stats WHERE queue = '$1'"; }
issues() { q "SELECT array_to_string(issues, ' | ') FROM jobq.health"; }

# 1. queue_stats against the tables, several priorities
q "SELECT jobq.submit('e', priority => p) FROM unnest(ARRAY[0, 5, 5, 9, 0]) p" >/dev/null
q "SELECT jobq.submit('e', run_at => now() + interval '1 hour', priority => p) FROM unnest(ARRAY[0, 5, 7]) p" >/dev/null
assert_eq "$(stats e)" "5 3 0 0 0 0 0" "pending and scheduled, over priorities"
ids=$(q "SELECT string_agg(id || ':' || attempt, ' ') FROM jobq.claim('e', 3)")
assert_eq "$(stats e)" "2 3 3 0 0 0 0" "claimed jobs are running"
set -- $ids
q "SELECT jobq.complete(${1%:*}, ${1#*:})" >/dev/null
q "SELECT jobq.fail(${2%:*}, ${2#*:}, 'no', 'permanent')" >/dev/null
q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE queue = 'e' AND state = 'pending' AND run_at > now() AND priority = 7" >/dev/null
q "SELECT jobq.flush_metrics()" >/dev/null
assert_eq "$(stats e)" "2 2 1 1 1 1 0" "completed, dead-lettered, cancelled"
age=$(q "SELECT oldest_pending_age > interval '0' AND oldest_pending_age < interval '1 hour' FROM jobq.queue_stats WHERE queue = 'e'")
assert_eq "$age" t "oldest_pending_age is the wait of the oldest runnable job"
assert_eq "$(q "SELECT concat_ws(' ', count(*) FILTER (WHERE state = 'pending' AND run_at <= now()),
                                  count(*) FILTER (WHERE state = 'pending' AND run_at > now()),
                                  count(*) FILTER (WHERE state = 'running'))
                FROM jobq.jobs_active WHERE queue = 'e'")" "2 2 1" "the tables say the same"

# the gauges after a restart, and after a queue dropped with its jobs
cluster_stop "$IT_DIR"; cluster_start "$IT_DIR"
assert_eq "$(stats e | cut -d' ' -f1-3)" "2 2 1" "after a restart (counted again)"
q "SELECT jobq.drop_queue('e', force => true)" >/dev/null
q "SELECT jobq.create_queue('e', kind => 'external', max_attempts => 1)" >/dev/null
assert_eq "$(stats e | cut -d' ' -f1-3)" "0 0 0" "a queue dropped with its jobs and created again starts from zero"
q "SELECT jobq.submit('e') FROM generate_series(1, 4)" >/dev/null
assert_eq "$(stats e | cut -d' ' -f1-3)" "4 0 0" "and follows new submits"
q "TRUNCATE jobq.jobs, jobq.job_attempts CASCADE"
assert_eq "$(stats e | cut -d' ' -f1-3)" "0 0 0" "a TRUNCATE is seen at once"
q "SELECT jobq.submit('e') FROM generate_series(1, 4)" >/dev/null

assert_eq "$(issues)" "" "healthy at rest"
assert_eq "$(q "SELECT status FROM jobq.health")" healthy "status healthy"

# 2. stuck jobs: alice's job running past warn_after (its lease-expired
# kind is tested in 6, where no executor recovers it first)
q "GRANT USAGE ON SCHEMA jobq TO alice"
alice_id=$(psql -X -q -A -t -d postgres -c "SET ROLE alice; SELECT jobq.submit('s', '{\"do\": \"sleep\", \"s\": 120}')")
wait_for "SELECT reason FROM jobq.stuck_jobs WHERE id = $alice_id" "past warn_after" 60 || it_fail "slow job not stuck"
it_ok "a job running past warn_after is stuck"
assert_eq "$(psql -X -q -A -t -d postgres -c "SET ROLE alice; SELECT count(*) FROM jobq.stuck_jobs")" 1 "alice sees her stuck job"
q "CREATE ROLE bob; GRANT USAGE ON SCHEMA jobq TO bob"
assert_eq "$(psql -X -q -A -t -d postgres -c "SET ROLE bob; SELECT count(*) FROM jobq.stuck_jobs")" 0 "bob does not see it"
assert_eq "$(psql -X -q -A -t -d postgres -c "SET ROLE bob; SELECT stuck FROM jobq.queue_stats WHERE queue = 's'")" 1 "queue_stats counts it for everyone"
case "$(issues)" in "degraded: 1 stuck job(s)"*) it_ok "health: stuck job, degraded" ;; *) it_fail "health: $(issues)" ;; esac
q "SELECT jobq.cancel($alice_id)" >/dev/null
wait_for "SELECT count(*) FROM jobq.stuck_jobs" 0 60 || it_fail "stuck job not gone"
q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE queue = 'e' AND state IN ('pending', 'running')" >/dev/null

# 3. a breaker not closed
q "SELECT jobq.trip_breaker('s', cooldown => '1 hour')" >/dev/null
case "$(issues)" in "degraded: 1 circuit breaker(s) not closed: s") it_ok "health: open breaker" ;; *) it_fail "health: $(issues)" ;; esac
assert_eq "$(q "SELECT open_breakers FROM jobq.health")" 1 "open_breakers"
q "SELECT jobq.reset_breaker('s')" >/dev/null
assert_eq "$(issues)" "" "healthy again"

# 4 and 5. failure rate and dead letters: 6 of 12 jobs fail (the counts
# so far flushed and forgotten first)
q "SELECT jobq.flush_metrics()" >/dev/null
q "DELETE FROM jobq.metrics" >/dev/null
q "SELECT jobq.submit('s', jsonb_build_object('do', CASE WHEN i % 2 = 0 THEN 'fail' ELSE 'ok' END)) FROM generate_series(1, 12) i" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs_active WHERE queue = 's'" 0 60 || it_fail "jobs not done"
q "SELECT jobq.flush_metrics()" >/dev/null
got=$(issues)
case "$got" in *"unhealthy: 50.0% of the attempts of the last 15 minutes failed (6 of 12)"*) it_ok "health: failure rate" ;; *) it_fail "health: $got" ;; esac
case "$got" in *"degraded: 6 job(s) dead-lettered in the last hour"*) it_ok "health: dead letter growth" ;; *) it_fail "health: $got" ;; esac
assert_eq "$(q "SELECT concat_ws(' ', status, failure_rate, dlq_unresolved) FROM jobq.health")" "unhealthy 50.00 6" \
    "status is the worst rule; failure_rate and dlq_unresolved"
assert_eq "$(q "SELECT concat_ws(' ', queue, error_class, failed_attempts, jobs, retried, dead_lettered, last_error) FROM jobq.retry_stats WHERE queue = 's'")" \
    "s permanent 6 6 0 6 broken" "retry_stats"
q "DELETE FROM jobq.metrics" >/dev/null
q "SELECT jobq.resolve_dead(id, 'test') FROM jobq.dead_letter WHERE resolved_at IS NULL" >/dev/null
q "UPDATE jobq.dead_letter SET failed_at = now() - interval '2 hours'" >/dev/null
assert_eq "$(issues)" "" "healthy once the window has passed"

# 6. runnable jobs and no executor
q "ALTER SYSTEM SET jobq.workers = 0" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 0 60 || it_fail "executors did not stop"
q "SELECT jobq.submit('s')" >/dev/null
assert_eq "$(q "SELECT concat_ws(' ', status, array_to_string(issues, ' | ')) FROM jobq.health")" \
    "critical critical: no jobq executor runs in this database, and 1 job(s) wait" "health: no executor, critical"
# with no executor to recover it, a lease left to expire stays stuck until
# the next claim of its queue
lease_id=$(q "SELECT jobq.submit('ea'); SELECT id FROM jobq.claim('ea', 1, lease => '10 ms')" | tail -1)
wait_for "SELECT reason FROM jobq.stuck_jobs WHERE id = $lease_id" "lease expired" 30 || it_fail "expired lease not stuck"
it_ok "an expired lease is stuck"
q "SELECT count(*) FROM jobq.claim('ea', 1)" >/dev/null
assert_eq "$(q "SELECT count(*) FROM jobq.stuck_jobs")" 0 "the next claim recovered it"
q "ALTER SYSTEM RESET jobq.workers" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs_active" 0 60 || it_fail "executors did not come back"

# 8. jobq.prometheus_metrics(), read by Prometheus' own parser
q "SELECT jobq.prometheus_metrics()" > "$IT_DIR/metrics.txt"
want=$(q "SELECT concat_ws(' ', count(*) FILTER (WHERE outcome = 'completed'), count(*) FILTER (WHERE outcome = 'failed'), count(*),
                        count(*) FILTER (WHERE outcome = 'failed' AND error_class = 'permanent'))
          FROM jobq.job_attempts WHERE queue = 's'")
got=$(/usr/bin/python3 - "$IT_DIR/metrics.txt" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
def val(fam, suffix="", **labels):
    for smp in fams[fam].samples:
        if smp.name == fam + suffix and all(smp.labels.get(k) == v for k, v in labels.items()):
            return int(smp.value)
    raise SystemExit("no sample %s%s %s" % (fam, suffix, labels))
assert fams["jobq_attempts_completed"].type == "counter", fams["jobq_attempts_completed"].type
assert fams["jobq_attempt_runtime_seconds"].type == "histogram"
assert fams["jobq_queue_pending"].type == "gauge"
for name in ["jobq_jobs_submitted", "jobq_attempts_started", "jobq_attempts_retried", "jobq_attempts_timed_out",
             "jobq_jobs_cancelled", "jobq_jobs_dead_lettered", "jobq_queue_scheduled", "jobq_queue_running",
             "jobq_queue_stuck", "jobq_queue_oldest_pending_seconds", "jobq_queue_paused",
             "jobq_dead_letter_unresolved", "jobq_breaker_open", "jobq_workers_alive", "jobq_health_status"]:
    assert name in fams, name
print(val("jobq_attempts_completed", "_total", queue="s"), val("jobq_attempts_failed", "_total", queue="s"),
      val("jobq_attempt_runtime_seconds", "_count", queue="s"),
      val("jobq_attempts_failed_by_class", "_total", queue="s", **{"class": "permanent"}))
PY
) || it_fail "prometheus_metrics() did not parse: $got"
assert_eq "$got" "$want" "prometheus_metrics() parses; its counters and histogram count what job_attempts holds"
assert_eq "$(psql -X -q -A -t -d postgres -c "SET ROLE bob; SELECT length(jobq.prometheus_metrics()) > 0")" t "any role may scrape"

# 7. a transaction holding back VACUUM (the rule's threshold lowered for the test)
psql -X -q -d postgres -c "BEGIN; SELECT txid_current(); SELECT pg_sleep(30); COMMIT;" >/dev/null 2>&1 &
holder=$!
wait_for "SELECT count(*) > 0 FROM jobq._health_issues(vacuum_warn => '1 second') WHERE issue LIKE 'pid %has held back VACUUM for %'" t 30 \
    || it_fail "old transaction not reported"
it_ok "health: a transaction holding back VACUUM"
assert_eq "$(q "SELECT severity FROM jobq._health_issues(vacuum_warn => '1 second') WHERE issue LIKE '%VACUUM%'")" degraded "degraded under an hour"
kill "$holder" 2>/dev/null || true
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()" >/dev/null
