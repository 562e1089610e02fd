#!/usr/bin/env bash
# The job store's hook points (src/job_events.c) see every claim, every
# finished attempt and every job that became final, whichever path made the
# change: executors' batches, failures with retries and dead letters,
# snoozes, cancels of pending and running jobs, releases at shutdown,
# external workers' completions and failures, expired leases recovered.
# Counted when the transaction commits: the counts equal the rows of
# jobq.job_attempts and jobq.jobs_final, and a rolled-back change counts
# nothing.  The same in a database where jobq.direct_access is off (every
# change through SQL).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms" "jobq.shutdown_grace = 500ms"

setup() {
    q "CREATE EXTENSION jobq" "$1"
    q "
CREATE TABLE public.gate (open boolean);
INSERT INTO public.gate VALUES (false);
CREATE FUNCTION public.h(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  CASE p->>'do'
    WHEN 'fail' THEN PERFORM jobq.retry_later('again', '10 ms');
    WHEN 'give_up' THEN PERFORM jobq.give_up('no');
    WHEN 'snooze' THEN
      IF NOT (SELECT open FROM public.gate) THEN PERFORM jobq.rate_limited('wait', '10 ms'); END IF;
    WHEN 'sleep' THEN PERFORM pg_sleep(600);
    WHEN 'slow' THEN PERFORM pg_sleep(5);
    ELSE NULL;
  END CASE;
  RETURN p;
END \$\$;
SELECT jobq.create_queue('s', handler => 'public.h(jsonb)', max_attempts => 3, base_delay => '10 ms', jitter => 0);
SELECT jobq.create_queue(q, kind => 'external', max_attempts => 2, base_delay => '10 ms', jitter => 0)
  FROM unnest(ARRAY['x1', 'x2', 'x3', 'x4']) q;
-- failures here are the test's own: no circuit breaker opens on them
SELECT jobq.configure_breaker(q, failure_threshold => 100)
  FROM unnest(ARRAY['s', 'x1', 'x2', 'x3', 'x4']) q;
" "$1" >/dev/null
}

# events(db): "event=count ..." of jobq._job_events()
events() { q "SELECT string_agg(event || '=' || count, ' ' ORDER BY event) FROM jobq._job_events()" "$1"; }
# rows(db): the same figures counted from the tables
rows() {
    q "SELECT string_agg(event || '=' || count, ' ' ORDER BY event) FROM (
         SELECT 'submitted' AS event, count(*) FROM jobq.jobs
         UNION ALL SELECT 'claimed', count(*) FROM jobq.job_attempts
         UNION ALL SELECT 'attempt_' || o, (SELECT count(*) FROM jobq.job_attempts WHERE outcome = o)
           FROM unnest(ARRAY['completed', 'failed', 'snoozed', 'released', 'cancelled']) o
         UNION ALL SELECT 'final_' || s, (SELECT count(*) FROM jobq.jobs_final WHERE state = s)
           FROM unnest(ARRAY['completed', 'failed', 'cancelled']) s) x" "$1"
}

# metric_sums(db) / metric_rows(db): jobq.metrics summed over every row
# (after a flush), and the same figures from the tables
metric_sums() {
    q "SELECT jobq.flush_metrics()" "$1" >/dev/null
    q "SELECT concat_ws(' ', sum(submitted), sum(started), sum(completed), sum(failed), sum(retried),
                        sum(timed_out), sum(cancelled), sum(dead_lettered),
                        round(sum(total_runtime_ms)::numeric, 1), round(max(max_runtime_ms)::numeric, 1))
         FROM jobq.metrics" "$1"
}
metric_rows() {
    q "SELECT concat_ws(' ', (SELECT count(*) FROM jobq.jobs), count(*),
                        count(*) FILTER (WHERE outcome = 'completed'),
                        count(*) FILTER (WHERE outcome = 'failed'),
                        count(*) FILTER (WHERE outcome = 'failed')
                          - (SELECT count(*) FROM jobq.jobs_final WHERE state = 'failed'),
                        count(*) FILTER (WHERE outcome = 'failed' AND error_class = 'timeout'),
                        (SELECT count(*) FROM jobq.jobs_final WHERE state = 'cancelled'),
                        (SELECT count(*) FROM jobq.jobs_final WHERE state = 'failed'),
                        round(sum(extract(epoch FROM finished_at - started_at) * 1000)
                                FILTER (WHERE started_at IS NOT NULL), 1),
                        round(max(extract(epoch FROM finished_at - started_at) * 1000), 1))
         FROM jobq.job_attempts" "$1"
}

workload() {
    local db=$1 id ext
    q "SELECT count(*) FROM jobq.submit_batch('s', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 200) i))" "$db" >/dev/null
    q "SELECT count(*) FROM jobq.submit_batch('s', '[{\"do\": \"fail\"}, {\"do\": \"fail\"}, {\"do\": \"give_up\"}, {\"do\": \"snooze\"}, {\"do\": \"snooze\"}]')" "$db" >/dev/null
    # a pending job cancelled, a running one cancelled
    id=$(q "SELECT jobq.submit('s', run_at => now() + interval '1 day')" "$db")
    q "SELECT jobq.cancel($id)" "$db" >/dev/null
    id=$(q "SELECT jobq.submit('s', '{\"do\": \"sleep\"}')" "$db")
    wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 60 "$db" || it_fail "$db: sleeper not running"
    q "SELECT jobq.cancel($id)" "$db" >/dev/null
    # external workers (one queue per case): a completion, a completion
    # rolled back (then done again), failed twice (dead letter), a lease left
    # to expire and recovered by the next claim
    q "SELECT jobq.submit(q) FROM unnest(ARRAY['x1', 'x2', 'x3', 'x4']) q" "$db" >/dev/null
    q "SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('x1', 1) c" "$db" >/dev/null
    q "BEGIN; SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('x2', 1) c; ROLLBACK;" "$db" >/dev/null
    q "SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('x2', 1) c" "$db" >/dev/null
    wait_for "SELECT count(*) FROM jobq.claim('x3', 1) c WHERE jobq.fail(c.id, c.attempt, 'boom', 'transient') = 'failed'" 1 60 "$db" \
        || it_fail "$db: external job not failed twice"
    # its dead letter requeued (a job submitted by SQL), then done
    q "SELECT jobq.requeue_dead(id) FROM jobq.dead_letter WHERE queue = 'x3'" "$db" >/dev/null
    q "SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('x3', 1) c" "$db" >/dev/null
    # a job timed out twice, then dead-lettered; a unique key submitted twice
    q "SELECT jobq.submit('s', '{\"do\": \"slow\"}', timeout => '100 ms', max_attempts => 2)" "$db" >/dev/null
    q "SELECT jobq.submit('s', unique_key => 'k'), jobq.submit('s', unique_key => 'k')" "$db" >/dev/null
    q "SELECT count(*) FROM jobq.claim('x4', 1, lease => '10 ms')" "$db" >/dev/null
    wait_for "SELECT count(*) FROM jobq.claim('x4', 1) c WHERE jobq.complete(c.id, c.attempt)" 1 60 "$db" \
        || it_fail "$db: expired lease not recovered"
    # the gate opens: snoozed jobs complete
    q "UPDATE public.gate SET open = true" "$db"
    wait_for "SELECT count(*) FROM jobq.jobs_active a JOIN jobq.queues q ON q.name = a.queue WHERE q.kind = 'sql'" 0 120 "$db" \
        || it_fail "$db: SQL jobs not finished: $(q "SELECT string_agg(state || ' ' || payload, ', ') FROM jobq.jobs_active" "$db")"
}

q "CREATE DATABASE fast"
q "CREATE DATABASE slow"
q "ALTER DATABASE slow SET jobq.direct_access = off"
setup fast
setup slow
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 4 60 fast || it_fail "executors"
for db in fast slow; do
    workload "$db"
    assert_eq "$(events "$db")" "$(rows "$db")" "$db: events counted = rows written"
    assert_eq "$(metric_sums "$db")" "$(metric_rows "$db")" "$db: jobq.metrics sums = rows written"
done
it_ok "events and jobq.metrics equal rows after a mixed workload, with direct access on and off"
assert_eq "$(q "SELECT count FROM jobq._job_events() WHERE event = 'attempt_completed'" slow)" \
          "$(q "SELECT count FROM jobq._job_events() WHERE event = 'attempt_completed'" fast)" "same completions on both paths"

# Released at shutdown: jobs running when the server stops.
declare -A sleeper
for db in fast slow; do
    sleeper[$db]=$(q "SELECT jobq.submit('s', '{\"do\": \"sleep\"}')" "$db")
    wait_for "SELECT count(*) FROM jobq.jobs WHERE state = 'running'" 1 60 "$db" || it_fail "$db: sleeper not running"
done
cluster_stop "$IT_DIR"
cluster_start "$IT_DIR"
for db in fast slow; do
    # (the snoozes of a loaded machine may also have opened the breaker,
    # whose held jobs are released too: only the sleeper's attempts count)
    [ "$(q "SELECT count(*) FROM jobq.job_attempts WHERE outcome = 'released' AND job_id = ${sleeper[$db]}" "$db")" = 1 ] ||
        it_fail "$db: the sleeper ${sleeper[$db]} was not released once; released attempts: $(q "SELECT string_agg(concat_ws(':', job_id, attempt, error_class, error), ' | ') FROM jobq.job_attempts WHERE outcome = 'released'" "$db")"
    assert_eq "$(q "SELECT concat_ws(':', error_class, error) FROM jobq.job_attempts WHERE outcome = 'released' AND job_id = ${sleeper[$db]}")|$(q "SELECT coalesce(last_error, '') FROM jobq.jobs WHERE id = ${sleeper[$db]}")" "|" \
        "$db: a release at shutdown names no circuit breaker (no class, no error, the job's last error unchanged)"
    it_ok "$db: the running job was released"
    # counts restart with the server: compare what happened since
    q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE state = 'pending' OR state = 'running'" "$db" >/dev/null
    assert_eq "$(q "SELECT count FROM jobq._job_events() WHERE event = 'final_cancelled'" "$db")" 1 "$db: the cancel after the restart counted"
done
it_ok "release at shutdown written; counts after a restart start from zero"
