#!/usr/bin/env bash
# Batches (issue 16): submit_batch gives its jobs one batch id; create_batch,
# submit(..., batch_id) and close_batch group single submits; jobq.batches
# counts total, pending, running, completed, failed (dead letters, retried
# ones included), cancelled and the success rate, as the owner and
# jobq_admin see them (another role does not); the callback job is
# submitted exactly once when the batch is final, as the batch's owner,
# with the summary as its payload, also when four executors and external
# workers finish the jobs of several batches at once; rolled-back finals
# are not counted; a callback that cannot be submitted is recorded, not
# raised; misuse gets clear errors.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 4" "jobq.poll_interval = 100ms"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.callbacks (job_id bigint, batch_id bigint, payload jsonb, run_as text);
GRANT INSERT ON public.callbacks TO PUBLIC;
CREATE TABLE public.gate (open boolean);
INSERT INTO public.gate VALUES (false);
GRANT SELECT ON public.gate TO PUBLIC;
-- p: {do}: fail (give_up), retry (always: exhausts its attempts), else completes
CREATE FUNCTION public.work(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  CASE p->>'do'
    WHEN 'fail' THEN PERFORM jobq.give_up('no');
    WHEN 'retry' THEN PERFORM jobq.retry_later('again', '10 ms');
    WHEN 'gate' THEN
      WHILE NOT (SELECT open FROM public.gate) LOOP PERFORM pg_sleep(0.02); END LOOP;
    ELSE NULL;
  END CASE;
  RETURN p;
END \$\$;
CREATE FUNCTION public.cb(p jsonb) RETURNS void LANGUAGE sql AS \$\$
  INSERT INTO public.callbacks SELECT NULL, (p->>'batch_id')::bigint, p, current_user
\$\$;
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE boss LOGIN IN ROLE jobq_admin;
GRANT USAGE ON SCHEMA jobq TO alice, bob;
GRANT EXECUTE ON FUNCTION public.work(jsonb), public.cb(jsonb) TO alice, bob;
SELECT jobq.create_queue('work', handler => 'public.work(jsonb)', max_attempts => 2,
                         base_delay => '10 ms', max_delay => '20 ms', jitter => 0);
SELECT jobq.create_queue('cbq', handler => 'public.cb(jsonb)');
SELECT jobq.create_queue('ext', kind => 'external', max_attempts => 2, base_delay => '10 ms', jitter => 0);
SELECT jobq.create_queue('ext2', kind => 'external');
SELECT jobq.create_queue('gone', kind => 'external');
SELECT jobq.configure_breaker(q, failure_threshold => 100) FROM unnest(ARRAY['work', 'ext', 'ext2']) q;
" >/dev/null
as() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$1" -d postgres -c "$2"; }
# sqlstate ROLE SQL: the SQLSTATE that SQL raises ("none" when it succeeds)
sqlstate() {
    as "$1" "DO \$x\$ BEGIN $2; RAISE NOTICE 'state=none'; EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'state=%', SQLSTATE; END \$x\$" 2>&1 |
        sed -n 's/.*state=//p'
}
counts() {
    q "SELECT concat_ws(' ', total, pending, running, completed, failed, cancelled, coalesce(success_rate::text, '-'), (finished_at IS NOT NULL)::text, coalesce(callback_job_id::text, '-')) FROM jobq.batches WHERE id = $1"
}

# --- submit_batch: one batch id, a new closed batch of exactly its jobs
ids=$(as alice "SELECT string_agg(id::text, ',') FROM jobq.submit_batch('ext2', '[{\"a\": 1}, {\"a\": 2}, {\"a\": 3}]') s(id)")
assert_eq "$(q "SELECT count(DISTINCT batch_id) || ' ' || count(batch_id) FROM jobq.jobs WHERE id IN ($ids)")" "1 3" \
    "submit_batch: the jobs share one batch id"
b0=$(q "SELECT batch_id FROM jobq.jobs WHERE id IN ($ids) LIMIT 1")
assert_eq "$(q "SELECT owner || ' ' || (closed_at IS NOT NULL) || ' ' || total FROM jobq.batches WHERE id = $b0")" "alice true 3" \
    "the batch is alice's, closed, of 3 jobs"
ids2=$(as alice "SELECT string_agg(id::text, ',') FROM jobq.submit_batch('ext2', '[{}, {}]') s(id)")
assert_eq "$(q "SELECT count(DISTINCT batch_id) FROM jobq.jobs WHERE id IN ($ids, $ids2)")" 2 \
    "each submit_batch call makes its own batch"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE batch_id IS NOT NULL AND id NOT IN ($ids, $ids2)")" 0 \
    "jobs submitted outside batches have no batch id"

# --- the counts through every state, external workers; the callback
ids=$(as alice "SELECT string_agg(id::text, ',') FROM jobq.submit_batch('ext', '[{\"i\": 1}, {\"i\": 2}, {\"i\": 3}, {\"i\": 4}, {\"i\": 5}]',
                      on_complete_queue => 'cbq', on_complete_payload => '{\"tag\": \"five\"}') s(id)")
b=$(q "SELECT DISTINCT batch_id FROM jobq.jobs WHERE id IN ($ids)")
assert_eq "$(counts "$b")" "5 5 0 0 0 0 - false -" "five pending"
c1=$(q "SELECT id || ' ' || attempt FROM jobq.claim('ext', 1)")
assert_eq "$(counts "$b")" "5 4 1 0 0 0 - false -" "one running"
q "BEGIN; SELECT jobq.complete(${c1% *}, ${c1#* }); ROLLBACK;" >/dev/null
assert_eq "$(counts "$b")" "5 4 1 0 0 0 - false -" "a rolled-back completion is not counted"
q "SELECT jobq.complete(${c1% *}, ${c1#* })" >/dev/null
assert_eq "$(counts "$b")" "5 4 0 1 0 0 1.0000 false -" "one completed"
c2=$(q "SELECT id || ' ' || attempt FROM jobq.claim('ext', 1)")
q "SELECT jobq.fail(${c2% *}, ${c2#* }, 'bad input', 'permanent')" >/dev/null
assert_eq "$(counts "$b")" "5 3 0 1 1 0 0.5000 false -" "one failed (dead letter)"
# cancel in a subtransaction rolled back: not counted; then for real
c4=$(q "SELECT id FROM jobq.jobs WHERE batch_id = $b AND state = 'pending' ORDER BY id LIMIT 1")
as alice "BEGIN; SAVEPOINT s; SELECT jobq.cancel($c4); ROLLBACK TO SAVEPOINT s; COMMIT;" >/dev/null
assert_eq "$(counts "$b")" "5 3 0 1 1 0 0.5000 false -" "a cancel rolled back with its subtransaction is not counted"
as alice "SELECT jobq.cancel($c4)" >/dev/null
assert_eq "$(counts "$b")" "5 2 0 1 1 1 0.3333 false -" "one cancelled, by its owner"
# retried, then dead-lettered when its attempts are used up (max_attempts 2);
# the last job held running meanwhile
c3=$(q "SELECT id || ' ' || attempt FROM jobq.claim('ext', 1)")
q "SELECT jobq.fail(${c3% *}, ${c3#* }, 'flaky', 'transient')" >/dev/null
c5=$(q "SELECT id || ' ' || attempt FROM jobq.claim('ext', 1)")
[ "${c5% *}" != "${c3% *}" ] || it_fail "the retried job was claimed before the last one"
assert_eq "$(counts "$b")" "5 1 1 1 1 1 0.3333 false -" "a retried job is pending again"
wait_for "SELECT count(*) FROM jobq.claim('ext', 1) c WHERE c.id = ${c3% *} AND jobq.fail(c.id, c.attempt, 'flaky', 'transient') = 'failed'" 1 60 \
    || it_fail "the retried job was not dead-lettered"
assert_eq "$(counts "$b")" "5 0 1 1 2 1 0.2500 false -" "retried then dead-lettered: failed"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'cbq'")" 0 "no callback before the batch is final"
q "SELECT jobq.complete(${c5% *}, ${c5#* })" >/dev/null
# judged by an executor after that commit
wait_for "SELECT finished_at IS NOT NULL FROM jobq.batches WHERE id = $b" t 60 || it_fail "the batch did not become final"
got=$(counts "$b")
assert_eq "${got% *}" "5 0 0 2 2 1 0.4000 true" "the batch is final"
wait_for "SELECT count(*) FROM public.callbacks WHERE batch_id = $b" 1 60 || it_fail "the callback did not run"
assert_eq "$(q "SELECT payload::text || ' ' || run_as FROM public.callbacks WHERE batch_id = $b")" \
    "{\"total\": 5, \"failed\": 2, \"payload\": {\"tag\": \"five\"}, \"batch_id\": $b, \"cancelled\": 1, \"completed\": 2, \"success_rate\": 0.4000} alice" \
    "the callback ran once, as the batch's owner, with the summary and the submitter's payload"
assert_eq "$(q "SELECT j.owner || ' ' || j.queue || ' ' || (j.batch_id IS NULL) FROM jobq.batches b JOIN jobq.jobs j ON j.id = b.callback_job_id WHERE b.id = $b")" \
    "alice cbq true" "jobq.batches names the callback job (alice's, in no batch)"

# --- an executor judges the batch after the commit of its last job and
# submits the callback, and the executors go on running jobs (a failing
# one among them)
ids=$(as alice "SELECT string_agg(id::text, ',') FROM jobq.submit_batch('work', '[{\"do\": \"gate\"}]', on_complete_queue => 'cbq') s(id)")
gb=$(q "SELECT batch_id FROM jobq.jobs WHERE id = $ids")
wait_for "SELECT state FROM jobq.jobs WHERE id = $ids" running 60 || it_fail "the gated job is not running"
q "UPDATE public.gate SET open = true" >/dev/null
wait_for "SELECT count(*) FROM public.callbacks WHERE batch_id = $gb" 1 60 || it_fail "the executor did not submit the callback"
f1=$(as alice "SELECT jobq.submit('work', '{\"do\": \"fail\"}')")
f2=$(as alice "SELECT jobq.submit('work', '{}')")
wait_for "SELECT string_agg(state, ',' ORDER BY id) FROM jobq.jobs WHERE id IN ($f1, $f2)" "failed,completed" 60 \
    || it_fail "the executors did not go on after submitting a callback"
it_ok "the callback of a batch completed by an executor is submitted, and the executors go on"

# --- grouping single submits: create_batch, submit(batch_id), close_batch
g=$(as alice "SELECT jobq.create_batch(on_complete_queue => 'cbq')")
for i in 1 2 3; do as alice "SELECT jobq.submit('work', '{\"n\": $i}', batch_id => $g)" >/dev/null; done
as alice "SELECT count(*) FROM jobq.submit_batch('work', '[{\"n\": 4}, {\"do\": \"fail\"}]', batch_id => $g)" >/dev/null
wait_for "SELECT completed || ' ' || failed FROM jobq.batches WHERE id = $g" "4 1" 60 || it_fail "grouped jobs not done"
assert_eq "$(q "SELECT total || ' ' || (closed_at IS NULL) || ' ' || (finished_at IS NULL) FROM jobq.batches WHERE id = $g")" "5 true true" \
    "an open batch whose jobs are all final is not final"
assert_eq "$(q "SELECT count(*) FROM public.callbacks WHERE batch_id = $g")" 0 "no callback while the batch is open"
assert_eq "$(as alice "SELECT jobq.close_batch($g)")" t "close_batch closes it"
assert_eq "$(as alice "SELECT jobq.close_batch($g)")" f "closing it again: false"
wait_for "SELECT count(*) FROM public.callbacks WHERE batch_id = $g" 1 60 || it_fail "no callback after close_batch"
assert_eq "$(q "SELECT payload->>'total' || ' ' || (payload->>'success_rate') FROM public.callbacks WHERE batch_id = $g")" "5 0.8000" \
    "close_batch of a batch whose jobs are final submits its callback"
# a batch closed while jobs run: judged after its last job's commit
g2=$(as alice "SELECT jobq.create_batch('cbq')")
as alice "SELECT jobq.submit('ext2', '{}', batch_id => $g2)" >/dev/null
as alice "SELECT jobq.close_batch($g2)" >/dev/null
q "SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('ext2', 10) c" >/dev/null
wait_for "SELECT count(*) FROM public.callbacks WHERE batch_id = $g2" 1 60 || it_fail "no callback for the closed batch"
it_ok "the last job of a closed batch submits its callback"
as alice "SELECT count(*) FROM jobq.submit_batch('work', '[]', on_complete_queue => 'cbq')" >/dev/null
assert_eq "$(q "SELECT count(*) FROM jobq.batches WHERE total = 0 AND finished_at IS NOT NULL AND callback_job_id IS NOT NULL")" 1 \
    "an empty submit_batch is a batch final at once, its callback submitted"

# a transaction adding a job to an open batch does not hold up the commits
# of the batch's finished jobs; close_batch waits for it and counts its job
g4=$(as alice "SELECT jobq.create_batch('cbq')")
( PGAPPNAME=adder psql -X -q -U alice -d postgres -c "BEGIN; SELECT jobq.submit('work', '{\"late\": 1}', batch_id => $g4); SELECT pg_sleep(3); COMMIT;" >/dev/null 2>&1 ) &
adder=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'adder' AND query LIKE '%pg_sleep%' AND state = 'active'" 1 60 \
    || it_fail "the adder is not in its transaction"
as alice "SELECT jobq.submit('work', '{}', batch_id => $g4)" >/dev/null
wait_for "SELECT completed FROM jobq.batches WHERE id = $g4" 1 60 || it_fail "an open transaction adding to the batch held up its finished job"
it_ok "a job of the batch completes while another transaction adds to it"
assert_eq "$(as alice "SELECT jobq.close_batch($g4)")" t "close_batch (after the adder's commit)"
wait $adder
assert_eq "$(q "SELECT total FROM jobq.batches WHERE id = $g4")" 2 "close_batch counted the job the adder committed meanwhile"
wait_for "SELECT count(*) FROM public.callbacks WHERE batch_id = $g4" 1 60 || it_fail "no callback for the batch closed after its adder"
assert_eq "$(q "SELECT payload->>'total' || ' ' || (payload->>'completed') FROM public.callbacks WHERE batch_id = $g4")" "2 2" \
    "its callback counts both jobs"
# a job cancelled in the transaction that closes its batch: close_batch sees it final
g5=$(as alice "SELECT jobq.create_batch('cbq')")
as alice "BEGIN; SELECT jobq.cancel(jobq.submit('ext2', '{}', batch_id => $g5)); SELECT jobq.close_batch($g5); COMMIT;" >/dev/null
assert_eq "$(counts "$g5" | cut -d' ' -f1-8)" "1 0 0 0 0 1 0.0000 true" \
    "a batch closed in the transaction that cancelled its only job is final at once"
wait_for "SELECT count(*) FROM public.callbacks WHERE batch_id = $g5" 1 60 || it_fail "no callback for the cancelled batch"

# --- privileges and errors
assert_eq "$(sqlstate bob "PERFORM jobq.submit('work', '{}', batch_id => $g2)")" 42704 "another role's batch: 42704, as an unknown one"
assert_eq "$(sqlstate alice "PERFORM jobq.submit('work', '{}', batch_id => 999999)")" 42704 "an unknown batch: 42704"
assert_eq "$(sqlstate alice "PERFORM jobq.submit('work', '{}', batch_id => $g2)")" 55000 "a closed batch: 55000"
g3=$(as alice "SELECT jobq.create_batch()")
assert_eq "$(sqlstate alice "PERFORM jobq.submit('work', '{}', unique_key => 'k', batch_id => $g3)")" 0A000 "unique_key with batch_id: 0A000"
assert_eq "$(sqlstate alice "PERFORM jobq.submit_batch('work', '[{}]', batch_id => $g3, on_complete_queue => 'cbq')")" 22023 \
    "a callback for a batch that exists: 22023"
assert_eq "$(sqlstate alice "PERFORM jobq.create_batch('nope')")" 42704 "a callback queue that does not exist: 42704"
assert_eq "$(sqlstate alice "PERFORM jobq.create_batch('http')")" 0A000 "a callback queue of kind http: 0A000"
assert_eq "$(sqlstate alice "PERFORM jobq.create_batch(on_complete_payload => '{}')")" 22023 "a callback payload without its queue: 22023"
assert_eq "$(sqlstate bob "PERFORM jobq.close_batch($g3)")" 42704 "bob may not close alice's batch"
assert_eq "$(sqlstate boss "PERFORM jobq.close_batch($g3)")" none "jobq_admin may close it"
assert_eq "$(as bob "SELECT count(*) FROM jobq.batches")" 0 "bob sees none of alice's batches"
bb=$(as bob "SELECT jobq.create_batch()")
assert_eq "$(as alice "SELECT count(*) FILTER (WHERE id = $bb) || ' ' || count(*) FILTER (WHERE id = $g3) FROM jobq.batches")" "0 1" "alice sees her batches, not bob's"
assert_eq "$(as boss "SELECT count(*) FROM jobq.batches WHERE id IN ($bb, $g3)")" 2 "jobq_admin sees every role's"
assert_eq "$(sqlstate bob "UPDATE jobq.job_batches SET total = 0 WHERE id = $bb")" 42501 "nobody writes job_batches"

# --- a callback that cannot be submitted is recorded, not raised
d=$(as alice "SELECT jobq.create_batch('gone')")
as alice "SELECT jobq.submit('ext2', '{}', batch_id => $d)" >/dev/null
as alice "SELECT jobq.close_batch($d)" >/dev/null
q "SELECT jobq.drop_queue('gone')" >/dev/null
q "SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('ext2', 10) c" >/dev/null 2>&1
wait_for "SELECT finished_at IS NOT NULL FROM jobq.batches WHERE id = $d" t 60 || it_fail "the batch of the dropped callback queue did not become final"
assert_eq "$(q "SELECT (finished_at IS NOT NULL) || ' ' || (callback_job_id IS NULL) || ' ' || (callback_error LIKE '%gone%') FROM jobq.batches WHERE id = $d")" \
    "true true true" "the callback's queue was dropped: the batch is final, the error recorded, the completion committed"

# --- the demo's batch (test/demo.d/70_beyond.sh): wait for each job, then
# the batch's row and its callback job
q "SELECT jobq.create_queue('campaign_reports', kind => 'external')" >/dev/null
ids=$(as alice "SELECT string_agg(id::text, ',') FROM jobq.submit_batch('work', '[{\"to\": \"ann@example.com\"}, {\"to\": \"bo@example.com\"}, {\"to\": \"cy@example.com\"}]', on_complete_queue => 'campaign_reports', on_complete_payload => '{\"campaign\": \"december\"}') s(id)")
assert_eq "$(as alice "SELECT string_agg(jobq.wait(i, '60 seconds'), ',') FROM unnest(ARRAY[$ids]) i")" "completed,completed,completed" \
    "jobq.wait returns each job of the batch completed"
batch=$(q "SELECT DISTINCT batch_id FROM jobq.jobs WHERE id IN ($ids)")
wait_for "SELECT finished_at IS NOT NULL FROM jobq.batches WHERE id = $batch" t 60 || it_fail "the demo's batch did not become final"
assert_eq "$(as alice "SELECT concat_ws(' ', total, pending, running, completed, failed, cancelled, success_rate, (finished_at IS NOT NULL)::text, (callback_job_id IS NOT NULL)::text) FROM jobq.batches WHERE id = $batch")" \
    "3 0 0 3 0 0 1.0000 true true" "the batch becomes final after its jobs"
assert_eq "$(q "SELECT queue || ' ' || owner || ' ' || state || ' ' || payload::text FROM jobq.jobs WHERE id = (SELECT callback_job_id FROM jobq.batches WHERE id = $batch)")" \
    "campaign_reports alice pending {\"total\": 3, \"failed\": 0, \"payload\": {\"campaign\": \"december\"}, \"batch_id\": $batch, \"cancelled\": 0, \"completed\": 3, \"success_rate\": 1.0000}" \
    "its callback job waits in campaign_reports with the summary"

# --- exactly once under concurrency: four executors and three external
# workers finish the jobs of five batches at the same time, twice over
rounds=2; nb=5
for r in $(seq 1 $rounds); do
    bs=()
    for i in $(seq 1 $nb); do
        bb=$(as alice "SELECT jobq.create_batch('cbq', '{\"round\": $r}')")
        as alice "SELECT count(*) FROM jobq.submit_batch('work', (SELECT jsonb_agg(CASE WHEN k % 50 = 0 THEN '{\"do\": \"retry\"}'::jsonb ELSE jsonb_build_object('k', k) END) FROM generate_series(1, 150) k), batch_id => $bb)" >/dev/null
        as alice "SELECT count(*) FROM jobq.submit_batch('ext2', (SELECT jsonb_agg(jsonb_build_object('k', k)) FROM generate_series(1, 40) k), batch_id => $bb)" >/dev/null
        bs+=("$bb")
    done
    # close them all in one transaction, while the executors already run jobs
    as alice "SELECT bool_and(jobq.close_batch(b)) FROM unnest(ARRAY[$(IFS=,; echo "${bs[*]}")]::bigint[]) b" >/dev/null
    pids=()
    for w in 1 2 3; do
        ( for _ in $(seq 1 400); do
              n=$(q "SELECT count(*) FROM jobq.claim('ext2', 3) c WHERE jobq.complete(c.id, c.attempt)" 2>/dev/null) || n=0
              left=$(q "SELECT count(*) FROM jobq.jobs_active WHERE queue = 'ext2'" 2>/dev/null) || left=1
              [ "$left" = 0 ] && break
          done ) &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    list=$(IFS=,; echo "${bs[*]}")
    wait_for "SELECT count(*) FROM jobq.batches WHERE id IN ($list) AND finished_at IS NOT NULL" "$nb" 180 \
        || it_fail "round $r: batches not final: $(q "SELECT string_agg(concat_ws(' ', id, total, pending, running, completed, failed, cancelled), '; ') FROM jobq.batches WHERE id IN ($list)")"
    wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'cbq' AND state = 'completed' AND (payload->>'batch_id')::bigint IN ($list)" "$nb" 120 \
        || it_fail "round $r: callbacks not run"
    assert_eq "$(q "SELECT string_agg(total || ':' || completed || ':' || failed || ':' || cancelled, ' ') FROM jobq.batches WHERE id IN ($list)")" \
        "$(printf '190:187:3:0 %.0s' $(seq 1 $nb) | sed 's/ $//')" "round $r: every batch counted 187 completed and 3 dead-lettered (retried first) of 190"
    assert_eq "$(q "SELECT count(*) || ' ' || count(DISTINCT batch_id) FROM public.callbacks WHERE batch_id IN ($list)")" "$nb $nb" \
        "round $r: exactly one callback per batch"
    assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'cbq' AND (payload->>'batch_id')::bigint IN ($list)")" "$nb" \
        "round $r: exactly one callback job per batch"
    assert_eq "$(q "SELECT count(*) FROM jobq.batches b JOIN jobq.jobs j ON j.id = b.callback_job_id WHERE b.id IN ($list) AND (j.payload->>'batch_id')::bigint = b.id AND j.payload->'payload'->>'round' = '$r'")" "$nb" \
        "round $r: each batch names its own callback job"
done
assert_eq "$(q "SELECT count(*) FROM jobq.batches WHERE callback_error IS NOT NULL AND on_complete_queue <> 'gone'")" 0 "no callback error but the dropped queue's"
# --- without executors (jobq.workers = 0) nothing judges batches after
# commits; jobq.finish_batches() does it by hand (jobq_admin only)
cluster_stop "$IT_DIR"
echo "jobq.workers = 0" | as_pg tee -a "$IT_DIR/data/postgresql.conf" >/dev/null
cluster_start "$IT_DIR"
n=$(as alice "SELECT jobq.create_batch('cbq')")
as alice "SELECT jobq.submit('ext2', '{}', batch_id => $n)" >/dev/null
as alice "SELECT jobq.close_batch($n)" >/dev/null
q "SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('ext2', 10) c" >/dev/null
assert_eq "$(q "SELECT (finished_at IS NULL) || ' ' || completed FROM jobq.batches WHERE id = $n")" "true 1" \
    "with no executor, a batch whose jobs are all final is not judged yet"
assert_eq "$(sqlstate alice "PERFORM jobq.finish_batches()")" 42501 "jobq.finish_batches is for jobq_admin"
as boss "SELECT jobq.finish_batches()" >/dev/null
assert_eq "$(q "SELECT (finished_at IS NOT NULL) || ' ' || (callback_job_id IS NOT NULL) FROM jobq.batches WHERE id = $n")" "true true" \
    "jobq.finish_batches() marks it final and submits its callback"
as boss "SELECT jobq.finish_batches()" >/dev/null
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'cbq' AND (payload->>'batch_id')::bigint = $n")" 1 \
    "judging it again submits no second callback"

# --- judging a batch costs the same however large it is: a closed batch of
# 100,000 pending jobs is judged (not final) reading a few pages, also
# with the generic plans a long-lived executor ends up with (a generic
# plan of a statement over the id range sorted the whole range each time)
big=$(as alice "SELECT min(s.id) FROM jobq.submit_batch('ext2', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 100000))) s(id)")
big=$(q "SELECT batch_id FROM jobq.jobs WHERE id = $big")
blocks=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d postgres <<SQL | tail -1
SET plan_cache_mode = force_generic_plan;
CREATE FUNCTION pg_temp.explain(query text) RETURNS json LANGUAGE plpgsql AS \$\$
DECLARE r json;
BEGIN EXECUTE 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ' || query INTO r; RETURN r; END \$\$;
SELECT jobq._batch_finish_if_final($big) FROM generate_series(1, 8);
SELECT (p->0->'Plan'->>'Shared Hit Blocks')::int + (p->0->'Plan'->>'Shared Read Blocks')::int
  FROM (SELECT pg_temp.explain('SELECT jobq._batch_finish_if_final($big)') p) x;
SQL
)
[ -n "$blocks" ] && [ "$blocks" -lt 100 ] ||
    it_fail "judging a batch of 100,000 pending jobs read $blocks pages (a few expected)"
it_ok "judging a batch of 100,000 pending jobs reads $blocks pages, with generic plans"
assert_eq "$(q "SELECT (finished_at IS NULL) || ' ' || pending FROM jobq.batches WHERE id = $big")" "true 100000" \
    "and it is not final"

if grep -q "terminated by signal" "$IT_DIR/server.log"; then
    it_fail "a server process crashed: $(grep "terminated by signal" "$IT_DIR/server.log" | head -3)"
fi
it_ok "no server process crashed"
