#!/usr/bin/env bash
# The jobs of a batch run in nested subtransactions, so a SQL-language
# handler's planned body is reused from one job to the next (see BatchHandler
# in src/executor.c).  What must not change:
#  - the body is resolved per job owner: with search_path
#    pg_catalog, "$user", public, an unqualified table is the owner's own;
#  - a job that fails half way through a multi-statement SQL handler loses
#    its own writes only, and the next jobs of the batch, same handler, run
#    normally (its cut-off execution state is not reused);
#  - every completed job's writes are kept once, failed ones leave nothing.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 0"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
GRANT USAGE ON SCHEMA jobq TO alice, bob;
CREATE SCHEMA alice AUTHORIZATION alice; CREATE SCHEMA bob AUTHORIZATION bob;
CREATE TABLE alice.t (n int, who text); ALTER TABLE alice.t OWNER TO alice;
CREATE TABLE bob.t (n int, who text); ALTER TABLE bob.t OWNER TO bob;
CREATE TABLE public.log (n int);
GRANT INSERT ON public.log TO alice, bob;
-- unqualified t: alice.t for alice's jobs, bob.t for bob's
SET check_function_bodies = off;
CREATE FUNCTION public.put(p jsonb) RETURNS void LANGUAGE sql AS
  'INSERT INTO t VALUES ((p->>''n'')::int, current_user)';
-- two statements; the second fails when d = 0
CREATE FUNCTION public.div(p jsonb) RETURNS jsonb LANGUAGE sql AS
  'INSERT INTO public.log VALUES ((p->>''n'')::int);
   SELECT jsonb_build_object(''q'', 100 / (p->>''d'')::int)';
GRANT EXECUTE ON FUNCTION public.put(jsonb), public.div(jsonb) TO alice, bob;
SELECT jobq.create_queue('put', handler => 'public.put(jsonb)');
SELECT jobq.create_queue('div', handler => 'public.div(jsonb)', max_attempts => 1);
" >/dev/null

# Interleaved owners in one backlog, then one executor takes them in batches.
for i in $(seq 1 20); do
    who=alice; [ $((i % 2)) = 0 ] && who=bob
    psql -X -q -U $who -d postgres -c "SELECT jobq.submit('put', '{\"n\": $i}')" >/dev/null
done
psql -X -q -U alice -d postgres -c "SELECT count(*) FROM jobq.submit_batch('div',
    (SELECT jsonb_agg(jsonb_build_object('n', g, 'd', CASE WHEN g % 5 = 0 THEN 0 ELSE 1 END)) FROM generate_series(1, 60) g))" >/dev/null
q "ALTER SYSTEM SET jobq.workers = 1" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE state IN ('completed', 'failed')" 80 30 || it_fail "jobs did not finish"

assert_eq "$(q "SELECT count(*) || ' ' || bool_and(who = 'alice') || ' ' || bool_and(n % 2 = 1) FROM alice.t")" "10 true true" "alice's jobs wrote alice.t"
assert_eq "$(q "SELECT count(*) || ' ' || bool_and(who = 'bob') || ' ' || bool_and(n % 2 = 0) FROM bob.t")" "10 true true" "bob's jobs wrote bob.t"
it_ok "one handler, two owners in the same batches: each job's unqualified table is its owner's"

assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'div' AND state = 'failed'")" 12 "the 12 jobs dividing by zero failed"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'div' AND state = 'completed' AND result = '{\"q\": 100}'")" 48 "the others completed with their result"
assert_eq "$(q "SELECT count(*) FROM public.log WHERE n % 5 = 0")" 0 "a failed job's first statement was rolled back"
assert_eq "$(q "SELECT count(*) || ' ' || count(DISTINCT n) FROM public.log")" "48 48" "each completed job's write is there once"
assert_eq "$(q "SELECT min(sqlstate) FROM jobq.job_attempts WHERE outcome = 'failed'")" "22012" "failures carry division_by_zero"
assert_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor'")" 1 "the executor survived"
it_ok "failures half way through a SQL handler, amid a batch of the same handler: only their own writes lost"
