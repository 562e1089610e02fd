#!/usr/bin/env bash
# jobq.metrics (src/metrics.c): the executors' flush duty adds the counts
# kept in shared memory without anyone asking; a flush whose transaction
# or subtransaction rolls back gives its counts back; a crash loses at most
# what was not flushed yet and never counts anything twice.  And the
# lifecycle log (jobq.log_events): one key=value LOG line per committed
# job event, none for a change that rolled back.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms" \
    "jobq.metrics_flush_interval = 200ms" "jobq.log_events = on"

q "CREATE EXTENSION jobq"
q "
CREATE FUNCTION public.h(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  CASE p->>'do'
    WHEN 'fail' THEN PERFORM jobq.retry_later('again', '10 ms');
    WHEN 'give_up' THEN PERFORM jobq.give_up('no');
    ELSE NULL;
  END CASE;
  RETURN p;
END \$\$;
SELECT jobq.create_queue('m', handler => 'public.h(jsonb)', max_attempts => 2, base_delay => '10 ms', jitter => 0);
SELECT jobq.create_queue('x', kind => 'external', max_attempts => 1);
SELECT jobq.configure_breaker('m', failure_threshold => 100);
" >/dev/null

# sums of jobq.metrics, and the same figures counted in the tables
sums() {
    q "SELECT concat_ws(' ', coalesce(sum(submitted), 0), coalesce(sum(started), 0),
                        coalesce(sum(completed), 0), coalesce(sum(failed), 0),
                        coalesce(sum(retried), 0), coalesce(sum(cancelled), 0),
                        coalesce(sum(dead_lettered), 0))
         FROM jobq.metrics"
}
rows() {
    q "SELECT concat_ws(' ', (SELECT count(*) FROM jobq.jobs), count(*),
                        count(*) FILTER (WHERE outcome = 'completed'),
                        count(*) FILTER (WHERE outcome = 'failed'),
                        count(*) FILTER (WHERE outcome = 'failed')
                          - (SELECT count(*) FROM jobq.jobs_final WHERE state = 'failed'),
                        (SELECT count(*) FROM jobq.jobs_final WHERE state = 'cancelled'),
                        (SELECT count(*) FROM jobq.jobs_final WHERE state = 'failed'))
         FROM jobq.job_attempts"
}

# 1. The duty flushes on its own.
q "SELECT count(*) FROM jobq.submit_batch('m', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 100) i))" >/dev/null
q "SELECT jobq.submit('m', '{\"do\": \"fail\"}') FROM generate_series(1, 3)" >/dev/null
q "SELECT jobq.submit('m', '{\"do\": \"give_up\"}')" >/dev/null
cancel_id=$(q "SELECT jobq.submit('m', run_at => now() + interval '1 day')")
q "SELECT jobq.cancel($cancel_id)" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs_active" 0 120 || it_fail "jobs not finished"
want=$(rows)
assert_eq "$want" "105 107 100 7 3 1 4" "the workload's rows"
wait_for "SELECT concat_ws(' ', coalesce(sum(submitted), 0), coalesce(sum(started), 0), coalesce(sum(completed), 0), coalesce(sum(failed), 0), coalesce(sum(retried), 0), coalesce(sum(cancelled), 0), coalesce(sum(dead_lettered), 0)) FROM jobq.metrics" \
    "$want" 60 || it_fail "the executors' duty did not flush the counts"
it_ok "the executors flush the counters into jobq.metrics by themselves"
assert_eq "$(q "SELECT count(*) FROM jobq.metrics WHERE bucket <> date_trunc('minute', bucket)")" 0 "buckets are whole minutes"

# 2. Flushes that roll back give their counts back.  The duty is slowed to
# once an hour first; whoever flushes, a count lost would show.
q "ALTER SYSTEM SET jobq.metrics_flush_interval = '1h'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT setting FROM pg_settings WHERE name = 'jobq.metrics_flush_interval'" 3600000 30 || it_fail "reload"
q "SELECT jobq.submit('x') FROM generate_series(1, 10)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<'SQL'
BEGIN;
SELECT jobq.flush_metrics();
ROLLBACK;
BEGIN;
SAVEPOINT a;
SELECT jobq.flush_metrics();
ROLLBACK TO a;
COMMIT;
SQL
q "SELECT jobq.flush_metrics()" >/dev/null
assert_eq "$(sums)" "$(rows)" "a flush rolled back (whole, or its savepoint) lost nothing"
q "SELECT jobq.submit('x') FROM generate_series(1, 4)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<'SQL'
BEGIN;
SAVEPOINT a;
SELECT jobq.flush_metrics();
RELEASE a;
COMMIT;
SQL
assert_eq "$(sums)" "$(rows)" "a flush in a released savepoint is kept"
got=$(psql -X -q -A -t -d postgres -c "BEGIN; SELECT jobq.flush_metrics(); SELECT jobq.flush_metrics();" 2>&1 || true)
case "$got" in *"already flushed in this transaction"*) it_ok "a second flush in one transaction is refused" ;;
    *) it_fail "second flush: $got" ;; esac
psql -X -q -d postgres -c "SET ROLE jobq_admin; SELECT jobq.flush_metrics();" >/dev/null \
    || it_fail "jobq_admin may flush"
q "CREATE ROLE nobody"
got=$(psql -X -q -A -t -d postgres -c "SET ROLE nobody; SELECT jobq.flush_metrics();" 2>&1 || true)
case "$got" in *"permission denied"*) it_ok "other roles may not flush" ;;
    *) it_fail "flush by nobody: $got" ;; esac

# 3. A crash: what was flushed stays, once; what was not may be lost.
q "SELECT jobq.flush_metrics()" >/dev/null
before=$(q "SELECT sum(submitted) FROM jobq.metrics")
q "SELECT jobq.submit('x') FROM generate_series(1, 5)" >/dev/null
psql -X -q -d postgres -c "DO \$\$ BEGIN COPY (SELECT 1) TO PROGRAM 'kill -9 \$PPID'; PERFORM pg_sleep(5); END \$\$" >/dev/null 2>&1 || true
wait_for "SELECT 1" 1 60 || it_fail "server not back after the crash"
q "SELECT jobq.flush_metrics()" >/dev/null
after=$(q "SELECT sum(submitted) FROM jobq.metrics")
[ "$after" -ge "$before" ] && [ "$after" -le $((before + 5)) ] \
    || it_fail "after the crash: $after submitted counted, wanted $before to $((before + 5))"
it_ok "a crash keeps the flushed counts once and loses at most the unflushed ones"
q "SELECT jobq.submit('x') FROM generate_series(1, 7)" >/dev/null
q "SELECT jobq.flush_metrics()" >/dev/null
assert_eq "$(q "SELECT sum(submitted) FROM jobq.metrics")" "$((after + 7))" "counting goes on after the crash"

# 4. The lifecycle log.
log_has() {
    grep -qE "$1" "$IT_DIR/server.log" || it_fail "no log line matching: $1"
    it_ok "log: $2"
}
done_id=$(q "SELECT id FROM jobq.jobs WHERE queue = 'm' AND state = 'completed' ORDER BY id LIMIT 1")
log_has "LOG:  jobq: event=claimed job_id=$done_id queue=m attempt=1 owner=postgres\$" "claimed"
log_has "LOG:  jobq: event=completed job_id=$done_id queue=m attempt=1 owner=postgres\$" "completed"
log_has "LOG:  jobq: event=retried job_id=[0-9]+ queue=m attempt=1 owner=postgres class=transient delay_ms=[0-9]+\$" "retried, with class and delay"
log_has "LOG:  jobq: event=failed job_id=[0-9]+ queue=m attempt=2 owner=postgres class=transient next=dead_letter\$" "failed for good"
log_has "LOG:  jobq: event=dead_lettered job_id=[0-9]+ queue=m attempt=1 owner=postgres class=permanent\$" "dead_lettered"
log_has "LOG:  jobq: event=cancelled job_id=$cancel_id queue=m attempt=0 owner=postgres\$" "cancelled"
# a lease left to expire: the job is lost
lost_id=$(q "SELECT id FROM jobq.claim('x', 1, lease => '10 ms')")
wait_for "SELECT count(*) FROM jobq.claim('x', 1)" 1 60 >/dev/null || true
wait_for "SELECT count(*) FROM jobq.job_attempts WHERE job_id = $lost_id AND error_class = 'worker_lost'" 1 60 \
    || it_fail "lease not recovered"
log_has "LOG:  jobq: event=lost job_id=$lost_id queue=x attempt=1 owner=postgres class=worker_lost next=dead_letter\$" "lost"
# a claim rolled back writes nothing
rolled=$(psql -X -q -A -t -d postgres -c "BEGIN; SELECT id FROM jobq.claim('x', 1); ROLLBACK;")
[ -n "$rolled" ] || it_fail "nothing to claim"
claims=$(grep -cE "event=claimed job_id=$rolled " "$IT_DIR/server.log" || true)
[ "$claims" = 0 ] || it_fail "a rolled-back claim was logged"
it_ok "a rolled-back claim is not logged"
# off in a session: its own events are not written
off_id=$(psql -X -q -A -t -d postgres -c "SET jobq.log_events = off; SELECT c.id FROM jobq.claim('x', 1) c WHERE jobq.complete(c.id, c.attempt);")
[ -n "$off_id" ] || it_fail "nothing claimed with the log off"
assert_eq "$(grep -cE "job_id=$off_id " "$IT_DIR/server.log" || true)" 0 "jobq.log_events off: no lines"

# 5. Retention: rows older than jobq.metrics_retention (14 days by default)
# go with the cleanup.
q "INSERT INTO jobq.metrics (queue, bucket, submitted) VALUES
     ('old', date_trunc('minute', now() - interval '15 days'), 1),
     ('old', date_trunc('minute', now() - interval '13 days'), 1)"
q "SELECT jobq.cleanup()" >/dev/null
assert_eq "$(q "SELECT string_agg(extract(day FROM now() - bucket)::int::text, ',') FROM jobq.metrics WHERE queue = 'old'")" 13 \
    "jobq.cleanup removes metrics rows past jobq.metrics_retention"
