#!/usr/bin/env bash
# Circuit breakers (src/breaker.c): retryable failures of 4 executors and 2
# external workers at once open a breaker exactly once; while open no job
# behind it starts (attempts unused), for SQL and external queues sharing
# its key; half open admits exactly half_open_probes jobs across all
# processes; a probe's success closes it and the held jobs run at once
# (executors woken: the poll interval is 10 minutes); trip_breaker holds,
# reset_breaker releases; an open breaker stays open across a restart;
# failures of the job's own fault (permanent) do not count; a queue in
# breaker_mode fail_fast has its jobs dead-lettered at once while open.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 4" "jobq.poll_interval = 600s"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.dep (up boolean, slow boolean);
INSERT INTO public.dep VALUES (false, false);
CREATE FUNCTION public.call_dep(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  IF p->>'do' = 'give_up' THEN PERFORM jobq.give_up('bad input'); END IF;
  IF NOT (SELECT up FROM public.dep) THEN PERFORM jobq.retry_later('dependency down', '10 ms'); END IF;
  WHILE (SELECT slow FROM public.dep) LOOP PERFORM pg_sleep(0.05); END LOOP;
END \$\$;
SELECT jobq.create_queue('dep', handler => 'public.call_dep(jsonb)', max_attempts => 1000, base_delay => '10 ms', jitter => 0);
SELECT jobq.create_queue('dep_ext', kind => 'external', breaker => 'dep', max_attempts => 1000, base_delay => '10 ms', jitter => 0);
SELECT jobq.create_queue('perm', handler => 'public.call_dep(jsonb)', max_attempts => 1);
SELECT jobq.configure_breaker('dep', failure_threshold => 5, failure_window => '10 minutes',
                              cooldown => '1 hour', half_open_probes => 2);
" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 4 60 || it_fail "executors"
state() { q "SELECT coalesce((SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = '$1'), 'none')"; }

# Failures of the job's own fault do not count.
q "SELECT count(*) FROM jobq.submit_batch('perm', (SELECT jsonb_agg('{\"do\": \"give_up\"}'::jsonb) FROM generate_series(1, 10)))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'perm' AND state = 'failed'" 10 60 || it_fail "permanent jobs not failed"
assert_eq "$(state perm)" none "10 permanent failures: no breaker"
it_ok "permanent failures do not count against a breaker"

# 4 executors and 2 external workers fail at once: opened exactly once.
q "SELECT count(*) FROM jobq.submit_batch('dep', (SELECT jsonb_agg(i) FROM generate_series(1, 40) i))" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('dep_ext', (SELECT jsonb_agg(i) FROM generate_series(1, 40) i))" >/dev/null
ext_worker() {
    for _ in $(seq 1 40); do
        q "SELECT count(jobq.fail(c.id, c.attempt, 'dependency down', 'transient')) FROM jobq.claim('dep_ext', 2) c" >/dev/null || true
    done
}
ext_worker & w1=$!
ext_worker & w2=$!
wait_for "SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = 'dep'" open 60 || it_fail "breaker not open"
wait $w1 $w2
assert_eq "$(q "SELECT times_opened FROM jobq.circuit_breaker_state WHERE breaker_key = 'dep'")" 1 "opened exactly once"
assert_eq "$(grep -c 'jobq circuit breaker "dep": closed -> open' "$IT_DIR/server.log")" 1 "one LOG line for the transition"
it_ok "concurrent failures of executors and external workers opened the breaker once"

# While open: nothing behind the key starts, no attempt is used.
attempts=$(q "SELECT sum(attempt) FROM jobq.jobs WHERE queue IN ('dep', 'dep_ext')")
sleep 2
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue IN ('dep', 'dep_ext') AND state = 'running'")" 0 "nothing running while open"
assert_eq "$(q "SELECT count(*) FROM jobq.claim('dep_ext', 10)")" 0 "an external claim gets nothing behind the open breaker"
assert_eq "$(q "SELECT sum(attempt) FROM jobq.jobs WHERE queue IN ('dep', 'dep_ext')")" "$attempts" "no attempt used while open"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue IN ('dep', 'dep_ext') AND state = 'pending'")" 80 "every job still pending"
it_ok "open: jobs of both queues sharing the key held, attempts unused"

# The transition is written to jobq.breakers; it survives a restart.
wait_for "SELECT state FROM jobq.breakers WHERE breaker_key = 'dep'" open 60 || it_fail "open state not persisted"
cluster_stop "$IT_DIR"
cluster_start "$IT_DIR"
assert_eq "$(state dep)" open "still open after a restart"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 4 60 || it_fail "executors after restart"
sleep 1
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue IN ('dep', 'dep_ext') AND state = 'pending'")" 80 "jobs still held after the restart"
it_ok "an open breaker stays open across a restart"

# Half open admits exactly 2 probes across all processes.  The dependency
# is back but slow: the probes stay running while everyone tries to claim.
q "UPDATE public.dep SET up = true, slow = true" >/dev/null
q "SELECT jobq.trip_breaker('dep', cooldown => '1 second')" >/dev/null
probe_claims() { for _ in $(seq 1 20); do q "SELECT count(*) FROM jobq.claim('dep_ext', 5)" >/dev/null || true; sleep 0.1; done; }
probe_claims & c1=$!
probe_claims & c2=$!
wait_for "SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = 'dep'" half_open 60 || it_fail "not half open"
wait $c1 $c2
running=$(q "SELECT count(*) FROM jobq.jobs WHERE queue IN ('dep', 'dep_ext') AND state = 'running'")
assert_eq "$running" 2 "exactly half_open_probes jobs running across 4 executors and 2 external workers"
it_ok "half open: exactly 2 probes admitted"

# External probes are completed, executors' finish: the breaker closes and
# every held job runs (the executors are woken, not polled).
q "UPDATE public.dep SET slow = false" >/dev/null
q "SELECT jobq.complete(id, attempt) FROM jobq.jobs WHERE queue = 'dep_ext' AND state = 'running'" >/dev/null
wait_for "SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = 'dep'" closed 60 || it_fail "not closed after the probes succeeded"
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'dep' AND state = 'completed'" 40 60 || it_fail "held jobs did not run after the close"
assert_eq "$(q "SELECT count(*) FROM jobq.claim('dep_ext', 100)")" "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'dep_ext' AND state = 'running'")" "external jobs claimable again"
it_ok "a probe's success closes the breaker; held jobs run at once"

# trip_breaker holds, reset_breaker releases.
q "SELECT jobq.trip_breaker('dep')" >/dev/null
id=$(q "SELECT jobq.submit('dep')")
sleep 1
assert_eq "$(q "SELECT state || '/' || attempt FROM jobq.jobs WHERE id = $id")" pending/0 "tripped: the job waits, no attempt"
q "SELECT jobq.reset_breaker('dep')" >/dev/null
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 60 || it_fail "reset did not release the job"
assert_eq "$(q "SELECT attempt FROM jobq.jobs WHERE id = $id")" 1 "it ran once"
it_ok "trip_breaker holds jobs, reset_breaker releases them"

# breaker_mode fail_fast: while the breaker is open, jobs of such a queue
# (SQL and external, sharing the key) are dead-lettered at once with class
# breaker_open, more than one claim's worth; a hold queue's jobs wait.
q "SELECT jobq.create_queue('ff', handler => 'public.call_dep(jsonb)', breaker => 'dep', breaker_mode => 'fail_fast');
   SELECT jobq.create_queue('ff_ext', kind => 'external', breaker => 'dep');
   SELECT jobq.alter_queue('ff_ext', breaker_mode => 'fail_fast')" >/dev/null
q "SELECT jobq.trip_breaker('dep')" >/dev/null
held=$(q "SELECT jobq.submit('dep')")
q "SELECT jobq.submit('ff', jsonb_build_object('i', i)) FROM generate_series(1, 40) i" >/dev/null
wait_for "SELECT count(*) FROM jobq.dead_letter WHERE queue = 'ff' AND error_class = 'breaker_open' AND attempts = 1" 40 60 \
    || it_fail "fail_fast jobs not dead-lettered: $(q "SELECT string_agg(state || '/' || attempt, ' ') FROM jobq.jobs WHERE queue = 'ff'")"
ext=$(q "SELECT jobq.submit('ff_ext')")
assert_eq "$(q "SELECT count(*) FROM jobq.claim('ff_ext', 5)")" 0 "an external claim of a fail_fast queue returns nothing"
assert_eq "$(q "SELECT state || '/' || error_type FROM jobq.jobs WHERE id = $ext")" failed/breaker_open "... and dead-letters the job"
assert_eq "$(q "SELECT state || '/' || attempt FROM jobq.jobs WHERE id = $held")" pending/0 "a hold queue's job behind the same breaker waits"
assert_eq "$(q "SELECT failure_count FROM jobq.circuit_breaker_state WHERE breaker_key = 'dep'")" 0 "breaker_open failures do not count against the breaker"
err=$(q "SELECT jobq.alter_queue('ff', breaker_mode => 'sometimes')" 2>&1) && it_fail "a bad breaker_mode was taken"
echo "$err" | grep -q 'unknown breaker_mode "sometimes"' || it_fail "unexpected: $err"
q "SELECT jobq.alter_queue('ff', reset => '{breaker_mode}')" >/dev/null
assert_eq "$(q "SELECT breaker_mode FROM jobq.queues WHERE name = 'ff'")" hold "reset breaker_mode: hold"
q "SELECT jobq.reset_breaker('dep')" >/dev/null
wait_for "SELECT state FROM jobq.jobs WHERE id = $held" completed 60 || it_fail "reset did not release the held job"
it_ok "fail_fast dead-letters at once while open; hold waits"

# Only jobq_admin configures.
q "CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA jobq TO app" >/dev/null
err=$(psql -X -At -U app -d postgres -c "SELECT jobq.trip_breaker('dep')" 2>&1) && it_fail "a plain role tripped a breaker"
echo "$err" | grep -q "permission denied" || it_fail "unexpected: $err"
it_ok "breakers are changed by jobq_admin only"
