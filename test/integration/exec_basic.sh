#!/usr/bin/env bash
# Executors run SQL handlers: woken at commit (not by polling), as the job's
# owner with a safe search_path, atomically with the job's completion, under
# the attempt's timeout; a paused queue is left alone; slow jobs are logged
# once; jobq.workers and pg_stat_activity show the executors.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# A poll interval far longer than the test: every pickup below is a wake-up.
it_start_cluster "jobq.poll_interval = 10min" "jobq.workers = 2"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE alice LOGIN;
GRANT USAGE ON SCHEMA jobq TO alice;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO alice;
CREATE TABLE app.log (job text, at timestamptz DEFAULT clock_timestamp(), who text, path text);
GRANT INSERT ON app.log TO alice;
CREATE TABLE app.submitted (n int, at timestamptz);
CREATE FUNCTION app.record(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO app.log(job, who, path) VALUES (p->>'n', current_user, current_setting('search_path'));
  RETURN jsonb_build_object('n', p->'n', 'super', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
END \$\$;
CREATE FUNCTION app.fails(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO app.log(job) VALUES ('must-not-survive');
  RAISE EXCEPTION 'handler failed on purpose' USING ERRCODE = 'P0001', DETAIL = 'some detail';
END \$\$;
CREATE FUNCTION app.sleeps(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN PERFORM pg_sleep((p->>'s')::float8); END \$\$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app TO alice;
SELECT jobq.create_queue('rec', handler => 'app.record(jsonb)');
SELECT jobq.create_queue('fails', handler => 'app.fails(jsonb)', max_attempts => 1);
SELECT jobq.create_queue('slow', handler => 'app.sleeps(jsonb)', timeout => '300ms', max_attempts => 1);
SELECT jobq.create_queue('warn', handler => 'app.sleeps(jsonb)', warn_after => '200ms');
"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND state = 'idle'" 2 20 || it_fail "executors not idle"

# Wake-up at commit: 20 jobs, each picked up well under the 10 min poll.
for n in $(seq 1 20); do
    psql -X -q -U alice -d postgres -c "SELECT jobq.submit('rec', jsonb_build_object('n', $n))" >/dev/null
    q "INSERT INTO app.submitted VALUES ($n, clock_timestamp())"
    sleep 0.05
done
# (the deadline proves the wake-up only against the 10 min poll: pickup
# latency is a benchmark figure, bench/run, not a test)
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'rec' AND state = 'completed'" 20 120 \
    || it_fail "jobs not run without polling"
it_ok "20 jobs run, woken at commit (poll interval 10 min)"

# As the owner, not superuser, safe search_path; the result is stored.
assert_eq "$(q "SELECT DISTINCT who FROM app.log WHERE job ~ '^[0-9]+$'")" "alice" "handler runs as the submitting role"
assert_eq "$(q "SELECT DISTINCT path FROM app.log WHERE job ~ '^[0-9]+$'")" 'pg_catalog, "$user", public, pg_temp' "handler search_path"
assert_eq "$(q "SELECT result FROM jobq.jobs WHERE queue = 'rec' ORDER BY id LIMIT 1")" '{"n": 1, "super": false}' "jsonb result stored"
assert_eq "$(q "SELECT owner::text FROM jobq.jobs WHERE queue = 'rec' LIMIT 1")" "alice" "owner recorded"

# A failing handler leaves none of its writes; the attempt row has the error.
id=$(q "SELECT jobq.submit('fails')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" failed 60 || it_fail "failing job not failed"
assert_eq "$(q "SELECT count(*) FROM app.log WHERE job = 'must-not-survive'")" 0 "failed attempt rolled back"
assert_eq "$(q "SELECT sqlstate || '|' || error || '|' || coalesce(detail, '') FROM jobq.job_attempts WHERE job_id = $id")" \
    "P0001|handler failed on purpose|some detail" "attempt records SQLSTATE, message, detail"
assert_eq "$(q "SELECT count(*) FROM jobq.dead_letter WHERE job_id = $id")" 1 "dead-lettered after its only attempt"

# Timeout: the attempt's timeout interrupts the handler, class timeout.
id=$(q "SELECT jobq.submit('slow', '{\"s\": 30}')")
wait_for "SELECT state || '/' || error_type FROM jobq.jobs WHERE id = $id" "failed/timeout" 60 || it_fail "no timeout"
dur=$(q "SELECT round(extract(epoch FROM finished_at - started_at) * 1000) FROM jobq.job_attempts WHERE job_id = $id")
# not before the limit; well before the handler's 30 s sleep would end
[ "$dur" -ge 290 ] && [ "$dur" -lt 29000 ] || it_fail "timeout attempt lasted $dur ms (limit 300 ms; finished_at must be the real end)"
it_ok "timeout after ${dur} ms (limit 300 ms), class timeout"
# a per-job timeout overrides the queue's
id=$(q "SELECT jobq.submit('slow', '{\"s\": 0.6}', timeout => '5s')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 60 || it_fail "per-job timeout not honoured"
it_ok "per-job timeout overrides the queue's"

# A paused queue is untouched; resumed, it runs.
q "SELECT jobq.pause_queue('rec')"
id=$(q "SELECT jobq.submit('rec', '{\"n\": 99}')")
sleep 1.5
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $id")" pending "paused queue untouched"
q "SELECT jobq.resume_queue('rec')"
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 120 || it_fail "resumed queue not run at once"
it_ok "resumed queue runs at once (resume wakes an executor)"

# Slow job: logged once, while it runs; visible in jobq.workers and pg_stat_activity.
id=$(q "SELECT jobq.submit('warn', '{\"s\": 3}')")
wait_for "SELECT count(*) FROM jobq.workers WHERE job_id = $id AND state = 'running'" 1 60 || it_fail "running job not in jobq.workers"
it_ok "jobq.workers shows the running job"
assert_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND query LIKE 'jobq: job $id of queue warn%'")" 1 \
    "pg_stat_activity shows the job"
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 60 || it_fail "warn job did not finish"
n=$(grep -c "jobq job $id is slow" "$IT_DIR/server.log" || true)
assert_eq "$n" 1 "slow job logged exactly once"
assert_eq "$(q "SELECT sum(jobs_done) >= 25 FROM jobq.workers WHERE kind = 'executor'")" t "jobs_done counted"

# Executors flush their statistics: the jobs table shows their writes.
wait_for "SELECT n_tup_del > 0 FROM pg_stat_user_tables WHERE relname = 'jobs_active'" t 60 || it_fail "pgstat not flushed"
it_ok "executor statistics reach pg_stat_user_tables"

# Scheduled jobs and retries start on time without polling (poll is 10 min).
id=$(q "SELECT jobq.submit('rec', '{\"n\": 500}', run_at => now() + interval '2 seconds')")
t_sub=$(q "SELECT created_at FROM jobq.jobs WHERE id = $id")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 120 || it_fail "scheduled job did not run"
delay=$(q "SELECT round(extract(epoch FROM started_at - '$t_sub'::timestamptz) * 1000) FROM jobq.jobs WHERE id = $id")
# not early; and not by the 10 min poll
[ "$delay" -ge 1990 ] && [ "$delay" -lt 120000 ] || it_fail "scheduled job started after ${delay} ms (want at least 2000, well before the poll)"
it_ok "job scheduled 2 s ahead started after ${delay} ms"

q "CREATE SEQUENCE app.tries;
   CREATE FUNCTION app.flaky(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
   BEGIN
     IF nextval('app.tries') = 1 THEN
       RAISE EXCEPTION 'first try fails' USING ERRCODE = '40001';
     END IF;
   END \$\$;
   SELECT jobq.create_queue('flaky', handler => 'app.flaky(jsonb)', backoff => 'fixed', base_delay => '1 second', jitter => 0);"
id=$(q "SELECT jobq.submit('flaky')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 120 || it_fail "transient failure not retried"
gap=$(q "SELECT round(extract(epoch FROM max(started_at) - min(finished_at)) * 1000) FROM jobq.job_attempts WHERE job_id = $id")
# not before the backoff; and not by the 10 min poll
[ "$gap" -ge 990 ] && [ "$gap" -lt 120000 ] || it_fail "retry after ${gap} ms (backoff 1 s)"
assert_eq "$(q "SELECT string_agg(outcome || ':' || coalesce(error_class, ''), ',' ORDER BY attempt) FROM jobq.job_attempts WHERE job_id = $id")" \
    "failed:transient,completed:" "serialization failure retried as transient"
it_ok "retry ran ${gap} ms after the failure (fixed 1 s backoff)"
