#!/usr/bin/env bash
# An executor whose finished job's row is held by a user's transaction left
# idle (BEGIN; SELECT jobq.cancel(id); ... never committed) does not stop
# working: it waits for the row at most a second (settle.c), keeps that
# outcome for later, and runs other jobs meanwhile.  Once the holder rolls
# back, the kept outcome is recorded (the job runs again: its first run's
# writes were rolled back with it) and nothing is lost.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 500ms"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.gate (open boolean); INSERT INTO public.gate VALUES (false);
CREATE TABLE public.ran (n int);
CREATE FUNCTION public.h(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  IF p ? 'wait' THEN
    WHILE NOT (SELECT open FROM public.gate) LOOP PERFORM pg_sleep(0.05); END LOOP;
  END IF;
  INSERT INTO public.ran VALUES ((p->>'n')::int);
END \$\$;
SELECT jobq.create_queue('q', handler => 'public.h(jsonb)');
" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 1 60 || it_fail "executor"

a=$(q "SELECT jobq.submit('q', '{\"n\": 1, \"wait\": true}')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $a" running 60 || it_fail "job A not running"
# a user's cancel, left uncommitted: it holds A's row
psql -X -q -d postgres -c "BEGIN" -c "SELECT jobq.cancel($a)" -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
holder=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'" 1 60 || it_fail "holder not waiting"
# A's handler returns: its completion finds the row held
q "UPDATE public.gate SET open = true" >/dev/null

# the executor is not stuck behind the holder: job B runs
b=$(q "SELECT jobq.submit('q', '{\"n\": 2}')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $b" completed 120 \
    || it_fail "job B did not run while a user's transaction held job A's row"
assert_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'")" 1 "the holder is still open"
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $a")" running "A waits for its holder"
it_ok "a held row does not stop the executor: another job ran meanwhile"

# the holder gives up: A's kept outcome (a release) is recorded, A runs again
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'" >/dev/null
wait "$holder" 2>/dev/null || true
wait_for "SELECT state FROM jobq.jobs WHERE id = $a" completed 120 || it_fail "A not completed after the holder left"
assert_eq "$(q "SELECT string_agg(n::text, ',' ORDER BY n) FROM public.ran")" "1,2" "each job's writes once"
assert_eq "$(q "SELECT string_agg(outcome, ',' ORDER BY attempt) FROM jobq.job_attempts WHERE job_id = $a")" "released,completed" \
    "A: released (its first run's writes rolled back), then completed"
it_ok "once the holder left, the kept outcome was recorded and nothing was lost or run twice"
