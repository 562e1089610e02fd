#!/usr/bin/env bash
# Nothing is lost on a crash: kill -9 of an executor and an immediate
# shutdown both leave the running job to be recovered as worker_lost by fact
# (its executor token is dead), promptly; a poison job that kills its
# executor every time ends in the dead letter queue instead of looping, and
# the executor restarts back off instead of flooding the log.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms" "restart_after_crash = on"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.hang (on_ boolean);
CREATE TABLE public.done (id bigint);
CREATE FUNCTION public.hang_once(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  -- hangs on the first attempt only: later ones find the attempt history
  -- (committed state survives the crash; anything the killed attempt did
  -- itself does not)
  IF NOT EXISTS (SELECT FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id
                  WHERE j.payload->>'id' = p->>'id') THEN
    PERFORM pg_sleep(600);
  END IF;
  INSERT INTO public.done VALUES ((p->>'id')::bigint);
END \$\$;
-- a poison job: kills its own backend (like the OOM killer would)
CREATE FUNCTION public.poison(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN COPY (SELECT 1) TO PROGRAM 'kill -9 \$PPID'; PERFORM pg_sleep(5); END \$\$;
SELECT jobq.create_queue('hang', handler => 'public.hang_once(jsonb)', max_attempts => 3, base_delay => '100ms', jitter => 0);
SELECT jobq.create_queue('poison', handler => 'public.poison(jsonb)', max_attempts => 3, base_delay => '100ms', jitter => 0);
"

# 1. kill -9 of the executor running a job: the postmaster resets the
#    cluster; after restart the job is recovered as worker_lost and retried.
id=$(q "SELECT jobq.submit('hang', '{\"id\": 1}')")
wait_for "SELECT count(*) FROM jobq.workers WHERE job_id = $id" 1 10 || it_fail "job not running"
pid=$(q "SELECT pid FROM jobq.workers WHERE job_id = $id")
t0=$(date +%s)
kill -9 "$pid"
sleep 1
wait_for "SELECT 1" 1 30 || it_fail "server not back"
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 30 || it_fail "job not recovered after kill -9"
it_ok "job of a kill -9'd executor recovered and completed in $(( $(date +%s) - t0 )) s"
assert_eq "$(q "SELECT string_agg(outcome || ':' || coalesce(error_class, ''), ',' ORDER BY attempt) FROM jobq.job_attempts WHERE job_id = $id")" \
    "failed:worker_lost,completed:" "attempt 1 worker_lost, attempt 2 completed"

# 2. immediate shutdown with a job running; restart; recovered.
id=$(q "SELECT jobq.submit('hang', '{\"id\": 2}')")
wait_for "SELECT count(*) FROM jobq.workers WHERE job_id = $id" 1 10 || it_fail "job 2 not running"
cluster_stop_immediate "$IT_DIR"
cluster_start "$IT_DIR"
t0=$(date +%s)
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 30 || it_fail "job not recovered after immediate shutdown"
it_ok "job recovered after immediate shutdown in $(( $(date +%s) - t0 )) s"
assert_eq "$(q "SELECT error_class FROM jobq.job_attempts WHERE job_id = $id AND attempt = 1")" worker_lost "recovered as worker_lost"
assert_eq "$(q "SELECT count(*) FROM public.done WHERE id = 2")" 1 "the job's effect happened exactly once"

# 3. A poison job (kills its executor every time) ends in the dead letter
#    queue after max_attempts crashes instead of looping.
id=$(q "SELECT jobq.submit('poison')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" failed 120 || it_fail "poison job not dead-lettered"
it_ok "poison job dead-lettered after its attempts"
assert_eq "$(q "SELECT attempts || '/' || error_class FROM jobq.dead_letter WHERE job_id = $id")" "3/worker_lost" "DLQ row: 3 attempts, worker_lost"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 2 60 || it_fail "executors not back"
it_ok "executors back after the poison job"

# 4. A deterministic error outside any job (here: every claim fails) makes
#    executors exit and restart with backoff, not in a loop.
q "CREATE FUNCTION public.noop(p jsonb) RETURNS void LANGUAGE sql AS ''; SELECT jobq.create_queue('quick', handler => 'public.noop(jsonb)')" >/dev/null
q "SELECT jobq.pause_queue('quick')" >/dev/null
id=$(q "SELECT jobq.submit('quick')")
q "ALTER TABLE jobq.jobs RENAME COLUMN worker TO worker_broken" >/dev/null
broken='lacks column "worker"\|column "worker" .*does not exist\|column a.worker does not exist'
before=$(grep -c "$broken" "$IT_DIR/server.log" || true)
q "SELECT jobq.resume_queue('quick')" >/dev/null
sleep 15
after=$(grep -c "$broken" "$IT_DIR/server.log" || true)
n=$((after - before))
[ "$n" -ge 1 ] || it_fail "the error was not logged: $(tail -5 "$IT_DIR/server.log")"
[ "$n" -le 10 ] || it_fail "$n errors in 15 s: no backoff"
it_ok "$n error exits in 15 s (backoff 1 s, 2 s, 4 s ...)"
q "ALTER TABLE jobq.jobs RENAME COLUMN worker_broken TO worker" >/dev/null
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 90 || it_fail "job not run after the error cleared"
it_ok "executors recover once the error is gone"
