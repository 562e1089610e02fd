# test/demo part 80: what an operator reads (docs/monitoring.md): the
# health row, the queues, the per-minute metrics, the lifecycle log and the
# Prometheus text.  Sourced by test/demo with run() and q() available.

q "SELECT jobq.flush_metrics()" >/dev/null
run "SELECT status, stuck_jobs, running_jobs, open_breakers, dlq_unresolved, failure_rate, workers_alive, issues FROM jobq.health"
run "SELECT * FROM jobq.queue_stats"
run "SELECT queue, error_class, failed_attempts, jobs, retried, dead_lettered, last_error FROM jobq.retry_stats"
run "SELECT queue, sum(submitted) AS submitted, sum(started) AS started, sum(completed) AS completed, sum(failed) AS failed, sum(retried) AS retried, sum(dead_lettered) AS dead_lettered, round(max(max_runtime_ms)::numeric, 1) AS max_ms FROM jobq.metrics GROUP BY queue ORDER BY queue"
# the lifecycle log of one job, turned on for this session
printf '\n\033[1m%s\033[0m\n' "jobq.log_events = on: one job's events in the server log"
q "SELECT jobq.create_queue('demo_ext', kind => 'external'); SELECT jobq.submit('demo_ext');" >/dev/null
psql -X -q -d postgres -c "SET jobq.log_events = on; SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('demo_ext', 1) c" >/dev/null 2>&1 || true
grep "jobq: event=" "$DEMO_DIR/server.log" | tail -2 || true
printf '\n\033[1m%s\033[0m\n' "SELECT jobq.prometheus_metrics()  -- (some lines)"
q "SELECT jobq.prometheus_metrics()" | grep -E '^jobq_(attempts_completed_total|queue_pending|health_status)' | head -8
