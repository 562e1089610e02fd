#!/usr/bin/env bash
# Executors VACUUM jobq.jobs_active every jobq.vacuum_after claimed jobs
# (src/upkeep.c): claims leave dead entries at the front of the claim index
# that every later claim walks over, and autovacuum comes too rarely for a
# busy queue.  autovacuum is off here, so every vacuum counted is ours.
# Also: claims by external workers count and wake an executor; 0 turns it off.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "autovacuum = off" "jobq.vacuum_after = 1000"
q "CREATE EXTENSION jobq"
q "CREATE FUNCTION public.noop(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb';
   SELECT jobq.create_queue('v', handler => 'public.noop(jsonb)');
   SELECT jobq.create_queue('ext', kind => 'external')" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 1 20 || it_fail "executor"

vacuums() { q "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'jobq.jobs_active'::regclass"; }

# executor claims: 5,000 jobs, a vacuum every 1,000 claimed, at most one a second
v0=$(vacuums)
q "SELECT count(*) FROM jobq.submit_batch('v', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 5000)))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE state = 'completed'" 5000 120 || it_fail "jobs did not run"
# the last vacuum may wait for the one-second gate: poll
deadline=$(( $(date +%s) + 15 ))
while [ "$(vacuums)" -le "$v0" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
v1=$(vacuums)
[ "$v1" -gt "$v0" ] || it_fail "no vacuum of jobs_active after 5000 executed jobs (vacuum_count $v0 -> $v1)"
dead=$(q "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'jobq.jobs_active'::regclass")
it_ok "executed jobs: jobs_active vacuumed $((v1 - v0)) time(s) by the executor; n_dead_tup now $dead"

# external claims count too: the executor is idle and gets woken
q "SELECT count(*) FROM jobq.submit_batch('ext', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 1500)))" >/dev/null
sleep 1.1   # past the one-second gate of the vacuum above
v2=$(vacuums)
for _ in $(seq 1 30); do
    q "SELECT count(jobq.complete(c.id, c.attempt)) FROM jobq.claim('ext', 50) c" >/dev/null
done
deadline=$(( $(date +%s) + 15 ))
while [ "$(vacuums)" -le "$v2" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
v3=$(vacuums)
[ "$v3" -gt "$v2" ] || it_fail "1500 external claims did not lead to a vacuum (vacuum_count $v2 -> $v3)"
it_ok "external claims: the idle executor vacuumed jobs_active"

# jobq.vacuum_after = 0: left to autovacuum
q "ALTER SYSTEM SET jobq.vacuum_after = 0" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
sleep 1.5
v4=$(vacuums)
q "SELECT count(*) FROM jobq.submit_batch('v', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 3000)))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE state = 'completed' AND queue = 'v'" 8000 120 || it_fail "jobs did not run"
sleep 1.5
v5=$(vacuums)
assert_eq "$v5" "$v4" "no executor vacuum with jobq.vacuum_after = 0"
it_ok "jobq.vacuum_after = 0 turns it off"
