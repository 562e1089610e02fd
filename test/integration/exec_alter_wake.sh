#!/usr/bin/env bash
# Raising a full queue's concurrency lets a waiting job start at once: idle
# executors do not watch a queue at its limit, so alter_queue wakes one.
# The first job stays running (it waits at a gate the test holds) and the
# poll interval is 10 minutes, so the second job can only have been started
# by the wake-up: no timing is measured.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 10min"
q "CREATE EXTENSION jobq"
q "CREATE TABLE public.gate (x int);
   CREATE FUNCTION public.gated(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT count(*) FROM public.gate';
   SELECT jobq.create_queue('c', handler => 'public.gated(jsonb)', concurrency => 1)" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 2 20 || it_fail "executors"

# the gate: a session holding the table's lock until it is terminated
psql -X -q -d postgres -c "BEGIN; LOCK TABLE public.gate IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)" \
    >/dev/null 2>&1 &
wait_for "SELECT count(*) FROM pg_locks WHERE relation = 'public.gate'::regclass AND mode = 'AccessExclusiveLock' AND granted" 1 30 \
    || it_fail "gate not held"
gate_pid=$(q "SELECT pid FROM pg_locks WHERE relation = 'public.gate'::regclass AND mode = 'AccessExclusiveLock' AND granted")

a=$(q "SELECT jobq.submit('c')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $a" running 60 || it_fail "first job not running"
b=$(q "SELECT jobq.submit('c')")
# the submit's wake-up finds the queue full: the job waits for the slot
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND state = 'idle'" 1 60 || it_fail "second executor not idle"
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $b")" pending "the second job waits for the concurrency slot"
q "SELECT jobq.alter_queue('c', concurrency => 2)" >/dev/null
wait_for "SELECT state FROM jobq.jobs WHERE id = $b" running 60 || it_fail "second job did not start after alter_queue"
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $a")" running "the first job still holds its slot"
it_ok "the second job started once alter_queue raised the concurrency (woken, not polled)"

q "SELECT pg_terminate_backend($gate_pid)" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($a, $b) AND state = 'completed'" 2 60 || it_fail "jobs did not finish"
