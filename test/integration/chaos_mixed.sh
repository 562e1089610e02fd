#!/usr/bin/env bash
# Chaos: thousands of SQL jobs, each of whose handler writes one row keyed
# by its payload, while executors are killed with kill -9 (the postmaster
# then resets every backend: crash recovery), terminated with
# pg_terminate_backend, and the whole cluster is stopped once with an
# immediate shutdown and started again.  Afterwards every job is final and
#   * completed exactly once: exactly one row for its key (a handler's
#     writes and its completion commit together), or
#   * failed, with its dead letter row and no row for its key (a failed or
#     lost attempt leaves no writes behind);
# and amcheck finds every jobq table (verify_heapam, with TOAST) and every
# B-tree index (bt_index_check with heapallindexed: every heap tuple that
# should be in the index is) consistent: jobq writes heap tuples and index
# entries itself (bulk inserts, claims, completions through the table AM),
# and this is the check that it does so correctly, crashes included.  BRIN
# indexes, which amcheck cannot check, are checked by comparing a scan
# through them with a sequential scan.
#
# No timing assertions: every wait is a poll with a deadline.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

N=${CHAOS_JOBS:-3000}
it_start_cluster "jobq.workers = 4" "jobq.poll_interval = 100ms" "restart_after_crash = on"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.chaos_done (k bigint NOT NULL, xid xid8 DEFAULT pg_current_xact_id());
-- One row per run, no unique key: a job run twice would leave two rows.
-- Keys divisible by 97 fail after their write (validation: not retried,
-- dead-lettered at once); every 10th runs long enough to be killed mid-run.
CREATE FUNCTION public.chaos_handler(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE k bigint := (p->>'k')::bigint;
BEGIN
  INSERT INTO public.chaos_done (k) VALUES (k);
  PERFORM pg_sleep(CASE WHEN k % 10 = 0 THEN 0.2 ELSE 0.005 END);
  IF k % 97 = 0 THEN
    RAISE EXCEPTION 'chaos: key % fails', k USING ERRCODE = '22023';
  END IF;
END \$\$;
SELECT jobq.create_queue('chaos', handler => 'public.chaos_handler(jsonb)',
       max_attempts => 6, base_delay => '100ms', max_delay => '1s', jitter => 0);
"
# submitted in a few batches (several transactions, several claim ranges)
for start in $(seq 1 1000 "$N"); do
    end=$(( start + 999 < N ? start + 999 : N ))
    q "SELECT count(*) FROM jobq.submit_batch('chaos',
         (SELECT jsonb_agg(jsonb_build_object('k', g)) FROM generate_series($start, $end) g))" >/dev/null
done
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'chaos'")" "$N" "$N jobs submitted"

left() { q "SELECT count(*) FROM jobq.jobs_active WHERE queue = 'chaos'" 2>/dev/null || echo "?"; }
up() { wait_for "SELECT 1" 1 60 || it_fail "server not accepting connections again"; }

# A running executor's pid (one with a job in hand when there is one), after
# waiting for executors to be back at work.
executor_pid() {
    wait_for "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'jobq executor'" t 60 \
        || it_fail "no executor came back"
    q "SELECT pid FROM jobq.workers WHERE kind = 'executor'
       ORDER BY job_id IS NULL, random() LIMIT 1" 2>/dev/null || true
}

# The chaos: 8 kill -9, 4 pg_terminate_backend, 1 immediate shutdown, each
# once jobs are running again; it stops early when the queue is drained.
actions="kill term kill kill immediate kill term kill term kill kill term kill"
kills=0 terms=0 immediates=0
for a in $actions; do
    [ "$(left)" = 0 ] && break
    wait_for "SELECT count(*) > 0 FROM jobq.jobs_active WHERE queue = 'chaos' AND state = 'running'" t 60 \
        || { [ "$(left)" = 0 ] && break; it_fail "no job running while jobs are left"; }
    sleep 0.$(( RANDOM % 5 + 1 ))
    case $a in
        kill)
            pid=$(executor_pid)
            if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
            sleep 0.5; up ;;
        term)
            pid=$(executor_pid)
            if [ -n "$pid" ] && [ "$(q "SELECT pg_terminate_backend($pid)" 2>/dev/null)" = t ]; then
                terms=$((terms + 1))
            fi ;;
        immediate)
            cluster_stop_immediate "$IT_DIR"
            cluster_start "$IT_DIR"
            immediates=$((immediates + 1)) ;;
    esac
    log "  $a: $(left) jobs left"
done
it_ok "chaos: $kills kill -9, $terms pg_terminate_backend, $immediates immediate shutdown"
[ "$kills" -ge 1 ] || it_fail "no executor was killed: the queue drained before the chaos (raise CHAOS_JOBS)"
[ "$immediates" = 1 ] || it_fail "the immediate shutdown did not happen: the queue drained too early (raise CHAOS_JOBS)"

# Every job final (retries of lost attempts wait up to max_delay).
up
wait_for "SELECT count(*) FROM jobq.jobs_active WHERE queue = 'chaos'" 0 120 \
    || it_fail "jobs still pending or running: $(q "SELECT string_agg(state || ':' || n, ' ') FROM (SELECT state, count(*) n FROM jobq.jobs_active WHERE queue = 'chaos' GROUP BY 1) s")"
it_ok "every job final: $(q "SELECT string_agg(state || ' ' || n, ', ' ORDER BY state) FROM (SELECT state, count(*) n FROM jobq.jobs WHERE queue = 'chaos' GROUP BY 1) s")"

# Exactly once, or dead-lettered with no effect.
bad=$(q "
WITH jobs AS (SELECT id, (payload->>'k')::bigint AS k, state FROM jobq.jobs WHERE queue = 'chaos'),
     runs AS (SELECT k, count(*) AS n FROM public.chaos_done GROUP BY k)
SELECT string_agg(format('job %s key %s %s rows %s dead letters %s', j.id, j.k, j.state, coalesce(r.n, 0),
                         (SELECT count(*) FROM jobq.dead_letter d WHERE d.job_id = j.id)), E'\n')
FROM jobs j LEFT JOIN runs r USING (k)
WHERE NOT ((j.state = 'completed' AND r.n = 1
            AND NOT EXISTS (SELECT FROM jobq.dead_letter d WHERE d.job_id = j.id))
        OR (j.state = 'failed' AND r.n IS NULL
            AND (SELECT count(*) FROM jobq.dead_letter d WHERE d.job_id = j.id) = 1))")
[ -z "$bad" ] || it_fail "jobs not completed exactly once nor dead-lettered without effect:
$(echo "$bad" | head -20)"
it_ok "every job completed exactly once (one row) or dead-lettered (no row)"
assert_eq "$(q "SELECT count(*) FROM public.chaos_done WHERE k NOT BETWEEN 1 AND $N")" 0 "no row for a key nobody submitted"
assert_eq "$(q "SELECT count(DISTINCT (payload->>'k')) FROM jobq.jobs WHERE queue = 'chaos'")" "$N" "one job per key"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'chaos' AND state = 'failed'
                  AND (payload->>'k')::bigint % 97 = 0")" "$(( N / 97 ))" "every failing key dead-lettered"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'chaos' AND state = 'completed'
                  AND (payload->>'k')::bigint % 97 = 0")" 0 "no failing key completed"
lost=$(q "SELECT count(*) FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id
          WHERE j.queue = 'chaos' AND a.error_class = 'worker_lost'")
[ "$lost" -ge 1 ] || it_fail "no attempt was lost: the kills hit no running job"
it_ok "$lost attempts lost to the chaos and recovered as worker_lost; $(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'chaos' AND state = 'failed' AND (payload->>'k')::bigint % 97 <> 0") jobs dead-lettered after too many"

# amcheck: every table and index of schema jobq.
q "CREATE EXTENSION amcheck"
heap=$(q "
SELECT string_agg(format('%s block %s offset %s: %s', c.oid::regclass, v.blkno, v.offnum, v.msg), E'\n')
FROM pg_class c, LATERAL verify_heapam(c.oid, check_toast => true) v
WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind IN ('r', 'm')")
[ -z "$heap" ] || it_fail "verify_heapam found corruption:
$heap"
it_ok "verify_heapam clean on $(q "SELECT count(*) FROM pg_class WHERE relnamespace = 'jobq'::regnamespace AND relkind IN ('r', 'm')") jobq tables (TOAST included)"
nbt=0
for idx in $(q "SELECT c.oid::regclass FROM pg_class c JOIN pg_am am ON am.oid = c.relam
                WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind = 'i' AND am.amname = 'btree'
                ORDER BY 1"); do
    q "SELECT bt_index_check('$idx'::regclass, true)" >/dev/null || it_fail "bt_index_check($idx, heapallindexed) failed"
    # the stricter check too (parent/child keys, every tuple found again
    # from the root); its ShareLock only makes idle executors wait
    q "SELECT bt_index_parent_check('$idx'::regclass, true, true)" >/dev/null \
        || it_fail "bt_index_parent_check($idx, heapallindexed, rootdescend) failed"
    nbt=$((nbt + 1))
done
[ "$nbt" -ge 1 ] || it_fail "no B-tree index found in schema jobq"
it_ok "bt_index_check(heapallindexed) and bt_index_parent_check(heapallindexed, rootdescend) clean on $nbt jobq B-tree indexes"
# BRIN: every row a sequential scan finds, a scan through the index finds.
other=$(q "SELECT string_agg(c.relname || ' (' || am.amname || ')', ', ') FROM pg_class c JOIN pg_am am ON am.oid = c.relam
           WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind = 'i' AND am.amname NOT IN ('btree', 'brin')")
[ -z "$other" ] || it_fail "indexes this test cannot check: $other (add a check)"
for row in $(q "SELECT c.relname || ',' || t.oid::regclass || ',' || quote_ident(a.attname)
                FROM pg_class c JOIN pg_am am ON am.oid = c.relam AND am.amname = 'brin'
                JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_class t ON t.oid = i.indrelid
                JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
                WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind = 'i'"); do
    IFS=, read -r idx tbl col <<<"$row"
    cond="$col BETWEEN '-infinity' AND 'infinity'"
    plan=$(psql -X -A -t -d postgres -c "SET enable_seqscan = off; SET enable_indexscan = off;
              EXPLAIN SELECT count(*) FROM $tbl WHERE $cond")
    echo "$plan" | grep -q "$idx" || it_fail "the BRIN check of $idx does not use it: $plan"
    via_idx=$(psql -X -A -t -q -d postgres -c "SET enable_seqscan = off; SET enable_indexscan = off;
              SELECT count(*) FROM $tbl WHERE $cond")
    seq=$(psql -X -A -t -q -d postgres -c "SET enable_bitmapscan = off; SET enable_indexscan = off;
              SELECT count(*) FROM $tbl WHERE $cond")
    assert_eq "$via_idx" "$seq" "BRIN $idx: a scan through it finds the $seq rows a sequential scan finds"
done
