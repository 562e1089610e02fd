#!/usr/bin/env bash
# Chaos: SQL jobs whose handlers write one row keyed by the payload run
# while executors are killed with SIGKILL (each a crash and reset of the
# server), terminated with pg_terminate_backend, and the server is stopped
# with an immediate shutdown and started again.  Afterwards every job is
# completed with its row written exactly once, or dead-lettered with none;
# and amcheck finds every jobq table and index sound (jobq writes heap
# tuples and index entries itself: this checks it does so correctly).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

JOBS=3000
it_start_cluster "jobq.workers = 3" "jobq.poll_interval = 200ms" "jobq.shutdown_grace = 1s" \
    "restart_after_crash = on"
q "CREATE EXTENSION jobq"
q "CREATE EXTENSION amcheck"
q "
CREATE TABLE public.effects (k int NOT NULL);
CREATE FUNCTION public.effect(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    INSERT INTO public.effects VALUES ((p->>'k')::int);
    PERFORM pg_sleep(0.002 + random() * 0.01);
END \$\$;
SELECT jobq.create_queue('chaos', handler => 'public.effect(jsonb)', max_attempts => 20,
                         backoff => 'fixed', base_delay => '50ms', jitter => 0);
-- the kills below lose jobs on purpose: no circuit breaker holds them
SELECT jobq.configure_breaker('chaos', failure_threshold => 100);
"
ready() {   # wait until the server answers again (after a crash reset)
    local deadline=$(( $(date +%s) + 120 ))
    until q "SELECT 1" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || it_fail "the server did not come back"
        sleep 0.2
    done
}
executor_pids() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobq executor' ORDER BY random()" 2>/dev/null || true; }
remaining() { q "SELECT count(*) FROM jobq.jobs WHERE state IN ('pending', 'running')" 2>/dev/null || echo unknown; }

q "SELECT count(*) FROM jobq.submit_batch('chaos', (SELECT jsonb_agg(jsonb_build_object('k', g)) FROM generate_series(1, $JOBS) g))" >/dev/null

kills=0 terms=0 immediate=0
for round in $(seq 1 9); do
    sleep 1
    [ "$(remaining)" != 0 ] || break
    case $round in
        5)  # an immediate shutdown and a start
            cluster_stop_immediate "$IT_DIR"
            cluster_start "$IT_DIR"
            immediate=$((immediate + 1)) ;;
        2|7)
            pid=$(executor_pids | head -1)
            if [ -n "$pid" ]; then
                q "SELECT pg_terminate_backend($pid)" >/dev/null 2>&1 || true
                terms=$((terms + 1))
            fi ;;
        *)
            pid=$(executor_pids | head -1)
            if [ -n "$pid" ]; then
                kill -9 "$pid" 2>/dev/null || true
                kills=$((kills + 1))
            fi ;;
    esac
    ready
done
it_ok "chaos: $kills kill -9, $terms pg_terminate_backend, $immediate immediate shutdown"

wait_for "SELECT count(*) FROM jobq.jobs WHERE state IN ('pending', 'running')" 0 300 || it_fail "jobs left unfinished"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs")" "$JOBS" "no job lost or duplicated"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE state NOT IN ('completed', 'failed')")" 0 "every job completed or failed"
assert_eq "$(q "SELECT count(*) FROM (SELECT k FROM public.effects GROUP BY k HAVING count(*) > 1) d")" 0 \
    "no job's effect was written twice"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs j WHERE j.state = 'completed'
                  AND NOT EXISTS (SELECT FROM public.effects e WHERE e.k = (j.payload->>'k')::int)")" 0 \
    "every completed job's effect was written"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs j WHERE j.state = 'failed'
                  AND EXISTS (SELECT FROM public.effects e WHERE e.k = (j.payload->>'k')::int)")" 0 \
    "no failed job left an effect"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs j WHERE j.state = 'failed'
                  AND NOT EXISTS (SELECT FROM jobq.dead_letter d WHERE d.job_id = j.id)")" 0 \
    "every failed job has its dead letter"
it_ok "$(q "SELECT count(*) FILTER (WHERE state = 'completed') || ' completed exactly once, ' ||
                  count(*) FILTER (WHERE state = 'failed') || ' dead-lettered; ' ||
                  (SELECT count(*) FROM jobq.job_attempts WHERE error_class = 'worker_lost') || ' attempts lost to the chaos'
             FROM jobq.jobs")"

# amcheck: every index (with heapallindexed) and every table of schema jobq
bad=$(q "
SELECT string_agg(x, E'\n') FROM (
    SELECT c.oid::regclass::text || ': ' || coalesce(
               (SELECT string_agg(v.msg, '; ') FROM verify_heapam(c.oid) v), 'ok') AS x
      FROM pg_class c
     WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind = 'r'
       AND EXISTS (SELECT FROM verify_heapam(c.oid))
) t")
[ -z "$bad" ] || it_fail "verify_heapam: $bad"
q "SELECT bt_index_check(c.oid, true)
     FROM pg_class c JOIN pg_am am ON am.oid = c.relam
    WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind = 'i' AND am.amname = 'btree'" >/dev/null \
    || it_fail "bt_index_check failed"
it_ok "amcheck: $(q "SELECT count(*) FROM pg_class WHERE relnamespace = 'jobq'::regnamespace AND relkind = 'r'") tables and $(q "SELECT count(*) FROM pg_class WHERE relnamespace = 'jobq'::regnamespace AND relkind = 'i'") indexes sound"
