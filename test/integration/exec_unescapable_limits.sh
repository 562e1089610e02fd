#!/usr/bin/env bash
# A handler cannot escape its limits by catching query_canceled (PL/pgSQL
# EXCEPTION WHEN query_canceled): after its timeout, a jobq.cancel, a
# pg_terminate_backend of its executor or a fast shutdown, the job ends,
# never as completed: a handler that swallows the cancel and returns is
# failed; one that keeps running ends its executor, and the job is recorded
# with the interrupt's class (timeout, cancelled, released); a fast
# shutdown does not wait for it.  Deadlines are generous: what is checked is
# that it ends at all, and how.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms" "jobq.shutdown_grace = 1s"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.ctl (stubborn boolean);
INSERT INTO public.ctl VALUES (true);

-- loops catching every query cancel, for as long as ctl.stubborn holds
CREATE FUNCTION public.stubborn(p jsonb) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
    WHILE NOT p ? 'quick' AND (SELECT stubborn FROM public.ctl) LOOP
        BEGIN
            PERFORM pg_sleep(0.05);
        EXCEPTION WHEN query_canceled THEN
            NULL;  -- and carries on
        END;
    END LOOP;
    RETURN 'done';
END \$\$;
-- catches the cancel once and returns as if it had succeeded
CREATE FUNCTION public.swallow(p jsonb) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM pg_sleep(600);
    RETURN 'slept';
EXCEPTION WHEN query_canceled THEN
    RETURN 'swallowed';
END \$\$;
SELECT jobq.create_queue('stubborn', handler => 'public.stubborn(jsonb)', timeout => '1s', max_attempts => 1);
SELECT jobq.create_queue('swallow', handler => 'public.swallow(jsonb)', timeout => '500ms', max_attempts => 1);
SELECT jobq.create_queue('long', handler => 'public.stubborn(jsonb)', timeout => '10min', max_attempts => 3);
"
executor_pid() { q "SELECT pid FROM jobq.workers WHERE kind = 'executor'"; }
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND state = 'idle'" 1 60 || it_fail "executor not up"

# 1. returns normally after catching its timeout: failed as timeout, not completed
id=$(q "SELECT jobq.submit('swallow')")
wait_for "SELECT state || ' ' || coalesce(error_type, '-') || ' ' || coalesce(result::text, 'no result') FROM jobq.jobs WHERE id = $id" \
    "failed timeout no result" 60 || it_fail "a handler that swallowed its timeout was not failed as timeout"
it_ok "a handler returning after its timeout's cancel fails as timeout"

# 2. keeps running past its timeout: its executor ends, the job fails as timeout
pid=$(executor_pid)
id=$(q "SELECT jobq.submit('stubborn')")
wait_for "SELECT state || ' ' || coalesce(error_type, '-') FROM jobq.jobs WHERE id = $id" "failed timeout" 60 \
    || it_fail "a handler ignoring its timeout was not stopped"
assert_eq "$(q "SELECT error_class || ': ' || error FROM jobq.job_attempts WHERE job_id = $id")" \
    "timeout: the handler did not stop at its timeout: its executor was ended" "the attempt says why"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid" 0 60 || it_fail "the executor did not end"
it_ok "a handler ignoring its timeout is stopped; the job fails as timeout, never completed"

# 2b. the other jobs of the ended executor's batch are released, not failed:
#     quick jobs first (the executor then claims many jobs at once), then a
#     quick job and a stubborn one in one claim
q "SELECT count(jobq.submit('long', '{\"quick\": true}')) FROM generate_series(1, 40)" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'long' AND state <> 'completed'" 0 60 || it_fail "warm-up"
read -r mate stub < <(q "SELECT jobq.submit('stubborn', '{\"quick\": true}'), jobq.submit('stubborn')" | tr '|' ' ')
wait_for "SELECT state || ' ' || coalesce(error_type, '-') FROM jobq.jobs WHERE id = $stub" "failed timeout" 60 \
    || it_fail "the stubborn job was not stopped"
wait_for "SELECT state FROM jobq.jobs WHERE id = $mate" completed 60 || it_fail "its batch mate did not run again"
assert_eq "$(q "SELECT string_agg(outcome, ',' ORDER BY attempt) FROM jobq.job_attempts WHERE job_id = $mate")" \
    "released,completed" "its batch mate was released (no attempt used), then completed"

# 3. jobq.cancel of a handler that ignores cancels
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND state = 'idle'" 1 60 || it_fail "executor not restarted"
id=$(q "SELECT jobq.submit('long')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 60 || it_fail "job not running"
pid=$(executor_pid)
assert_eq "$(q "SELECT jobq.cancel($id)")" t "cancel returns true"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid" 0 60 || it_fail "the executor running the cancelled job did not end"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND state = 'idle'" 1 60 || it_fail "executor not restarted"
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $id")" cancelled "the job stays cancelled"

# 4. pg_terminate_backend of its executor: ends within the grace and a
#    moment; the job is given back without using an attempt, and runs again
id=$(q "SELECT jobq.submit('long')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 60 || it_fail "job not running"
pid=$(executor_pid)
q "SELECT pg_terminate_backend($pid)" >/dev/null
wait_for "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid" 0 60 || it_fail "pg_terminate_backend did not end the executor"
wait_for "SELECT string_agg(outcome, ',' ORDER BY attempt) FROM jobq.job_attempts WHERE job_id = $id" released 60 \
    || it_fail "the job was not released"
q "UPDATE public.ctl SET stubborn = false" >/dev/null
wait_for "SELECT state || ' ' || result::text FROM jobq.jobs WHERE id = $id" 'completed "done"' 60 || it_fail "the released job did not run again"
it_ok "pg_terminate_backend ends a stubborn handler's executor; the job is released, not lost"

# 5. a fast shutdown does not wait for a stubborn handler
q "UPDATE public.ctl SET stubborn = true" >/dev/null
id=$(q "SELECT jobq.submit('long')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 60 || it_fail "job not running"
as_pg "$PG_BIN/pg_ctl" -D "$IT_DIR/data" -m fast -t 60 -w stop >/dev/null \
    || it_fail "fast shutdown did not finish"
it_ok "fast shutdown finished with a stubborn handler running"
cluster_start "$IT_DIR"
q "UPDATE public.ctl SET stubborn = false" >/dev/null
wait_for "SELECT state || ' ' || result::text FROM jobq.jobs WHERE id = $id" 'completed "done"' 60 \
    || it_fail "the job interrupted by the shutdown did not run again"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE state = 'completed' AND queue IN ('stubborn', 'swallow') AND NOT payload ? 'quick'")" 0 \
    "no interrupted job ever completed"
