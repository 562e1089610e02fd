#!/usr/bin/env bash
# Raising a full queue's concurrency lets a waiting job start at once: idle
# executors do not watch a queue at its limit, so alter_queue wakes one.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 30s"
q "CREATE EXTENSION jobq"
q "CREATE FUNCTION public.slow(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(4)';
   SELECT jobq.create_queue('c', handler => 'public.slow(jsonb)', concurrency => 1)" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 2 20 || it_fail "executors"
a=$(q "SELECT jobq.submit('c')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $a" running 10 || it_fail "first job not running"
b=$(q "SELECT jobq.submit('c')")
sleep 0.5
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $b")" pending "the second job waits for the concurrency slot"
t0=$(q "SELECT extract(epoch FROM clock_timestamp())")
q "SELECT jobq.alter_queue('c', concurrency => 2)" >/dev/null
wait_for "SELECT state FROM jobq.jobs WHERE id = $b" running 10 || it_fail "second job did not start"
lag=$(q "SELECT round((extract(epoch FROM started_at) - $t0)::numeric, 2) FROM jobq.jobs WHERE id = $b")
q "SELECT ($lag < 1.5)::text" | grep -q true || it_fail "the second job started ${lag}s after alter_queue (the first job's end, not the wake-up)"
it_ok "second job started ${lag}s after alter_queue raised the concurrency"
