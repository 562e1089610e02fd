#!/usr/bin/env bash
# SIGTERM: an executor stops claiming; a running job gets jobq.shutdown_grace
# to finish (and completes), else it is interrupted and returned to pending
# without using an attempt, and runs again later.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.shutdown_grace = 2s" "jobq.poll_interval = 200ms"
q "CREATE EXTENSION jobq"
q "
CREATE SEQUENCE public.calls;
CREATE TABLE public.done (n int);
CREATE FUNCTION public.nap(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  -- the first call sleeps for (p->>'s'), later calls are quick
  IF nextval('public.calls') = 1 THEN PERFORM pg_sleep((p->>'s')::float8); END IF;
  INSERT INTO public.done VALUES (1);
END \$\$;
SELECT jobq.create_queue('nap', handler => 'public.nap(jsonb)', max_attempts => 1);
"
EXEC="SELECT pid FROM jobq.workers WHERE kind = 'executor'"

# 1. finishes within the grace: completed, not interrupted.
id=$(q "SELECT jobq.submit('nap', '{\"s\": 1}')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 10 || it_fail "not running"
pid=$(q "$EXEC")
kill -TERM "$pid"
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 10 || it_fail "job in grace not completed"
it_ok "job finishing within the grace completes"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND pid <> $pid" 1 30 || it_fail "executor not replaced"
it_ok "stopped executor replaced by the launcher"

# 2. outlives the grace: interrupted, back to pending, attempt not used, runs again.
q "SELECT setval('public.calls', 1, false)"
id=$(q "SELECT jobq.submit('nap', '{\"s\": 60}')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 10 || it_fail "not running (2)"
pid=$(q "$EXEC")
start=$(date +%s)
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && it_fail "executor still alive 10 s after SIGTERM (grace 2 s)"
it_ok "executor left $(( $(date +%s) - start )) s after SIGTERM (grace 2 s)"
assert_eq "$(q "SELECT outcome FROM jobq.job_attempts WHERE job_id = $id ORDER BY attempt LIMIT 1")" released \
    "interrupted attempt recorded as released"
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 30 || it_fail "released job did not run again"
it_ok "released job ran again and completed (max_attempts 1: the release used no attempt)"
