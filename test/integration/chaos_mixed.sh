#!/usr/bin/env bash
# Chaos: thousands of jobs, each of which writes one row keyed by its
# payload, while executors are killed with kill -9 (the postmaster then
# resets every backend: crash recovery), executors and external workers are
# terminated with pg_terminate_backend, and the whole cluster is stopped once
# with an immediate shutdown and started again.  Jobs are of two kinds:
#   * SQL jobs run by the executors (queue chaos): 2/3 submitted before the
#     chaos, 1/3 by a submitter during it (submit_batch killed mid-way is
#     retried; a batch table written in the same transaction says whether an
#     interrupted batch committed);
#   * jobs of an external queue (chaos_ext) run by two psql "workers" that
#     claim (one transaction) and then, per job, write its row and complete
#     it (a second transaction, rolled back when complete says the lease is
#     gone); a worker killed between the two leaves the lease to expire.
# Afterwards every job is final and
#   * completed exactly once: exactly one row for its key (a job's writes
#     and its completion commit together), or
#   * failed, with its dead letter row and no row for its key (a failed or
#     lost attempt leaves no writes behind);
# and amcheck finds every jobq table (verify_heapam, with TOAST) and every
# B-tree index (bt_index_check and bt_index_parent_check with
# heapallindexed: every heap tuple that should be in the index is)
# consistent: jobq writes heap tuples and index entries itself (bulk
# inserts, claims, completions through the table AM), and this is the check
# that it does so correctly, crashes included.  BRIN indexes, which amcheck
# cannot check, are checked by comparing a scan through them with a
# sequential scan.
#
# No timing assertions: every wait is a poll with a deadline.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

N=${CHAOS_JOBS:-3000}          # SQL jobs; the last third submitted during the chaos
NPRE=$(( N * 2 / 3 ))
NEXT=${CHAOS_EXT_JOBS:-1000}   # external jobs
BATCH=25                       # keys per batch of the submitter
it_start_cluster "jobq.workers = 4" "jobq.poll_interval = 100ms" "restart_after_crash = on"
FLAG=$IT_DIR/chaos.running
BG=()
stop_bg() {
    rm -f "$FLAG"; local p
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    BG=()
}
trap 'rc=$?; set +e; stop_bg; (exit $rc); it_cleanup' EXIT

q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.chaos_done (k bigint NOT NULL);
CREATE TABLE public.chaos_done_ext (k bigint NOT NULL);
CREATE TABLE public.chaos_batches (b int PRIMARY KEY);
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
-- An external worker's work on one claimed job, in its own transaction:
-- keys divisible by 89 fail (validation); the others write their row and
-- complete, and the row goes when the lease is no longer ours.
CREATE FUNCTION public.chaos_ext_finish(id bigint, attempt int, k bigint) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  IF k % 89 = 0 THEN
    PERFORM jobq.fail(id, attempt, 'chaos: external key fails', 'validation');
    RETURN;
  END IF;
  INSERT INTO public.chaos_done_ext (k) VALUES (k);
  PERFORM pg_sleep(0.02);
  IF NOT jobq.complete(id, attempt, jsonb_build_object('k', k)) THEN
    RAISE EXCEPTION 'chaos: lease of job % attempt % lost', id, attempt;
  END IF;
END \$\$;
-- An external worker's loop: claim up to 10 with a 3 s lease and commit,
-- then each job in its own transaction; until the queue is empty.
CREATE PROCEDURE public.chaos_ext_work() LANGUAGE plpgsql AS \$\$
DECLARE c record; claimed jsonb;
BEGIN
  WHILE EXISTS (SELECT FROM jobq.jobs_active WHERE queue = 'chaos_ext') LOOP
    SELECT jsonb_agg(jsonb_build_object('id', x.id, 'attempt', x.attempt, 'k', x.payload->'k'))
      INTO claimed FROM jobq.claim('chaos_ext', 10, '3 seconds', 'chaos-worker') x;
    COMMIT;
    IF claimed IS NULL THEN PERFORM pg_sleep(0.1); CONTINUE; END IF;
    FOR c IN SELECT * FROM jsonb_to_recordset(claimed) AS r(id bigint, attempt int, k bigint) LOOP
      BEGIN
        PERFORM public.chaos_ext_finish(c.id, c.attempt, c.k);
      EXCEPTION WHEN OTHERS THEN
        RAISE LOG 'chaos external worker: %', SQLERRM;
      END;
      COMMIT;
    END LOOP;
  END LOOP;
END \$\$;
SELECT jobq.create_queue('chaos', handler => 'public.chaos_handler(jsonb)',
       max_attempts => 6, base_delay => '100ms', max_delay => '1s', jitter => 0);
SELECT jobq.create_queue('chaos_ext', max_attempts => 6, base_delay => '100ms', max_delay => '1s', jitter => 0);
-- the kills below lose jobs on purpose: no circuit breaker holds them
SELECT jobq.configure_breaker(q, failure_threshold => 100) FROM unnest(ARRAY['chaos', 'chaos_ext']) q;
"
# submitted in a few batches (several transactions, several claim ranges)
for start in $(seq 1 1000 "$NPRE"); do
    end=$(( start + 999 < NPRE ? start + 999 : NPRE ))
    q "SELECT count(*) FROM jobq.submit_batch('chaos',
         (SELECT jsonb_agg(jsonb_build_object('k', g)) FROM generate_series($start, $end) g))" >/dev/null
done
q "SELECT count(*) FROM jobq.submit_batch('chaos_ext',
     (SELECT jsonb_agg(jsonb_build_object('k', g)) FROM generate_series(1, $NEXT) g))" >/dev/null
assert_eq "$(q "SELECT count(*) FROM jobq.jobs")" "$(( NPRE + NEXT ))" "$NPRE SQL and $NEXT external jobs submitted"
touch "$FLAG"

# The submitter: keys NPRE+1 .. N in batches of $BATCH, each batch with its
# row in chaos_batches in one transaction; a batch whose outcome is unknown
# (connection lost) is retried unless its row is there.  Gives up at the
# deadline or when the flag goes.
submitter() {
    local b=0 start end deadline=$(( $(date +%s) + 150 ))
    for start in $(seq $(( NPRE + 1 )) $BATCH "$N"); do
        b=$((b + 1)); end=$(( start + BATCH - 1 < N ? start + BATCH - 1 : N ))
        while [ -e "$FLAG" ] && [ "$(date +%s)" -lt "$deadline" ]; do
            PGAPPNAME=chaos_submitter psql -X -q -v ON_ERROR_STOP=1 -c "BEGIN" \
                -c "INSERT INTO public.chaos_batches VALUES ($b)" \
                -c "SELECT count(*) FROM jobq.submit_batch('chaos',
                      (SELECT jsonb_agg(jsonb_build_object('k', g)) FROM generate_series($start, $end) g))" \
                -c "COMMIT" >/dev/null 2>&1 && break
            [ "$(q "SELECT count(*) FROM public.chaos_batches WHERE b = $b" 2>/dev/null)" = 1 ] && break
            sleep 0.2
        done
        sleep 0.$(( RANDOM % 3 + 1 ))
    done
}
# An external worker: one session running chaos_ext_work() until the
# queue is drained, started again when its session dies.
ext_worker() {
    while [ -e "$FLAG" ]; do
        PGAPPNAME=chaos_ext psql -X -q -c "CALL public.chaos_ext_work()" >/dev/null 2>&1 && break
        sleep 0.2
    done
}
submitter & SUB=$!; BG+=("$SUB")
ext_worker & BG+=("$!")
ext_worker & BG+=("$!")

left() { q "SELECT count(*) FROM jobq.jobs_active" 2>/dev/null || echo "?"; }
up() { wait_for "SELECT 1" 1 60 || it_fail "server not accepting connections again"; }

# A pid to hit: an executor (one with a job in hand when there is one), or
# an external worker's session.
victim() {
    if [ "$1" = ext ]; then
        q "SELECT pid FROM pg_stat_activity WHERE application_name = 'chaos_ext' AND pid <> pg_backend_pid()
           ORDER BY random() LIMIT 1" 2>/dev/null || true
        return
    fi
    wait_for "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'jobq executor'" t 60 \
        || it_fail "no executor came back"
    q "SELECT pid FROM jobq.workers WHERE kind = 'executor'
       ORDER BY job_id IS NULL, random() LIMIT 1" 2>/dev/null || true
}

# The chaos: kill -9 and pg_terminate_backend of executors, pg_terminate_backend
# of external workers, one immediate shutdown, each once SQL jobs are
# running again; it stops early when everything is drained.
actions="kill term kill termext kill immediate kill term termext kill term kill termext kill term kill"
kills=0 terms=0 termexts=0 immediates=0
for a in $actions; do
    [ "$(left)" = 0 ] && break
    wait_for "SELECT count(*) > 0 FROM jobq.jobs_active WHERE queue = 'chaos' AND state = 'running'" t 60 \
        || { [ "$(left)" = 0 ] && break; it_fail "no SQL job running while jobs are left"; }
    sleep 0.$(( RANDOM % 5 + 1 ))
    case $a in
        kill)
            pid=$(victim executor)
            if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
            sleep 0.5; up ;;
        term|termext)
            pid=$(victim "${a#term}")
            if [ -n "$pid" ] && [ "$(q "SELECT pg_terminate_backend($pid)" 2>/dev/null)" = t ]; then
                if [ "$a" = term ]; then terms=$((terms + 1)); else termexts=$((termexts + 1)); fi
            fi ;;
        immediate)
            cluster_stop_immediate "$IT_DIR"
            cluster_start "$IT_DIR"
            immediates=$((immediates + 1)) ;;
    esac
    log "  $a: $(left) jobs left"
done
it_ok "chaos: $kills kill -9 and $terms pg_terminate_backend of executors, $termexts of external workers, $immediates immediate shutdown"
[ "$kills" -ge 1 ] || it_fail "no executor was killed: the queue drained before the chaos (raise CHAOS_JOBS)"
[ "$immediates" = 1 ] || it_fail "the immediate shutdown did not happen: the queue drained too early (raise CHAOS_JOBS)"

# The submitter finishes (its own deadline), then every job is final
# (retries of lost attempts wait up to max_delay, lost leases 3 s).
up
wait "$SUB" || true
assert_eq "$(q "SELECT count(*) FROM public.chaos_batches")" "$(( (N - NPRE + BATCH - 1) / BATCH ))" "every batch of the submitter committed"
wait_for "SELECT count(*) FROM jobq.jobs_active" 0 120 \
    || it_fail "jobs still pending or running: $(q "SELECT string_agg(queue || ' ' || state || ':' || n, ' ') FROM (SELECT queue, state, count(*) n FROM jobq.jobs_active GROUP BY 1, 2) s")"
stop_bg
it_ok "every job final: $(q "SELECT string_agg(queue || ' ' || state || ' ' || n, ', ' ORDER BY queue, state) FROM (SELECT queue, state, count(*) n FROM jobq.jobs GROUP BY 1, 2) s")"

# Exactly once, or dead-lettered with no effect.
check_once() {  # QUEUE ROWS_TABLE
    q "
WITH jobs AS (SELECT id, (payload->>'k')::bigint AS k, state FROM jobq.jobs WHERE queue = '$1'),
     runs AS (SELECT k, count(*) AS n FROM $2 GROUP BY k)
SELECT string_agg(format('job %s key %s %s rows %s dead letters %s', j.id, j.k, j.state, coalesce(r.n, 0),
                         (SELECT count(*) FROM jobq.dead_letter d WHERE d.job_id = j.id)), E'\n')
FROM jobs j LEFT JOIN runs r USING (k)
WHERE NOT ((j.state = 'completed' AND r.n = 1
            AND NOT EXISTS (SELECT FROM jobq.dead_letter d WHERE d.job_id = j.id))
        OR (j.state = 'failed' AND r.n IS NULL
            AND (SELECT count(*) FROM jobq.dead_letter d WHERE d.job_id = j.id) = 1))"
}
bad=$(check_once chaos public.chaos_done)
[ -z "$bad" ] || it_fail "SQL jobs not completed exactly once nor dead-lettered without effect:
$(echo "$bad" | head -20)"
it_ok "every SQL job completed exactly once (one row) or dead-lettered (no row)"
bad=$(check_once chaos_ext public.chaos_done_ext)
[ -z "$bad" ] || it_fail "external jobs not completed exactly once nor dead-lettered without effect:
$(echo "$bad" | head -20)"
it_ok "every external job completed exactly once (one row) or dead-lettered (no row)"
assert_eq "$(q "SELECT (SELECT count(*) FROM public.chaos_done WHERE k NOT BETWEEN 1 AND $N)
                     + (SELECT count(*) FROM public.chaos_done_ext WHERE k NOT BETWEEN 1 AND $NEXT)")" 0 \
    "no row for a key nobody submitted"
assert_eq "$(q "SELECT count(DISTINCT (payload->>'k')) || '/' || count(*) FROM jobq.jobs WHERE queue = 'chaos'")" "$N/$N" "one SQL job per key"
assert_eq "$(q "SELECT count(DISTINCT (payload->>'k')) || '/' || count(*) FROM jobq.jobs WHERE queue = 'chaos_ext'")" "$NEXT/$NEXT" "one external job per key"
assert_eq "$(q "SELECT count(*) FILTER (WHERE state = 'failed') || '/' || count(*) FILTER (WHERE state = 'completed')
                FROM jobq.jobs WHERE queue = 'chaos' AND (payload->>'k')::bigint % 97 = 0")" "$(( N / 97 ))/0" \
    "every failing SQL key dead-lettered, none completed"
assert_eq "$(q "SELECT count(*) FILTER (WHERE state = 'failed') || '/' || count(*) FILTER (WHERE state = 'completed')
                FROM jobq.jobs WHERE queue = 'chaos_ext' AND (payload->>'k')::bigint % 89 = 0")" "$(( NEXT / 89 ))/0" \
    "every failing external key dead-lettered, none completed"
lost=$(q "SELECT count(*) FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id
          WHERE j.queue = 'chaos' AND a.error_class = 'worker_lost'")
[ "$lost" -ge 1 ] || it_fail "no attempt was lost: the kills hit no running job"
it_ok "lost attempts recovered as worker_lost: $lost of SQL jobs, $(q "SELECT count(*) FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id WHERE j.queue = 'chaos_ext' AND a.error_class = 'worker_lost'") of external jobs; dead-lettered after too many: $(q "SELECT count(*) FROM jobq.dead_letter WHERE error_class = 'worker_lost'")"

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
