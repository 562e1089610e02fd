#!/usr/bin/env bash
# ALTER EXTENSION jobq UPDATE from 0.1.0 gives the same objects as a fresh
# install (functions with their bodies, settings and privileges, columns,
# indexes, constraints, comments, views), and keeps the jobs: a job waiting
# under 0.1.0 is pinned to its queue's handler and runs; a dead letter gets
# its handler; unique keys become their owners'.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms"
q "CREATE DATABASE up"
q "CREATE DATABASE fresh"
q "CREATE EXTENSION jobq VERSION '0.1.0'" up
q "CREATE EXTENSION jobq" fresh
assert_eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'jobq'" up)" 0.1.0 "0.1.0 installed"

# 0.1.0's data, written as 0.1.0 wrote it (this library cannot submit there)
q "
CREATE ROLE alice LOGIN;
GRANT USAGE ON SCHEMA jobq TO alice;
CREATE TABLE public.ran (who text);
GRANT INSERT ON public.ran TO alice;
CREATE FUNCTION public.h(p jsonb) RETURNS text LANGUAGE sql AS 'INSERT INTO public.ran VALUES (current_user) RETURNING ''ran''';
SELECT jobq.create_queue('q', handler => 'public.h(jsonb)');
-- as every writer of a pending job does, it tells the claims where it is
WITH j AS (INSERT INTO jobq.jobs_active (queue, payload, state, owner, unique_key)
           VALUES ('q', '{\"n\": 1}', 'pending', 'alice', 'k1') RETURNING id)
SELECT jobq._claim_floor_note('q', 0, now(), id) FROM j;
INSERT INTO jobq.dead_letter (job_id, queue, payload, owner, attempts)
VALUES (424242, 'q', '{\"n\": 2}', 'alice', 1);
" up >/dev/null

q "ALTER EXTENSION jobq UPDATE TO '0.2.0'" up
assert_eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'jobq'" up)" 0.2.0 "updated to 0.2.0"

# every object of the extension, described; compared between the two databases
describe() {
    q "
SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) || ' ' || p.provolatile::text || p.prosecdef::text
       || ' ' || coalesce(p.proconfig::text, '') || ' ' || coalesce(p.proacl::text, '')
       || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM pg_proc p WHERE p.pronamespace = 'jobq'::regnamespace
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
       || a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' '
       || coalesce(col_description(c.oid, a.attnum), '')
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind IN ('r', 'p', 'v')
UNION ALL
SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '') || ' '
       || coalesce(obj_description(c.oid, 'pg_class'), '') || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
  FROM pg_class c WHERE c.relnamespace = 'jobq'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relnamespace = 'jobq'::regnamespace
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'jobq'::regnamespace
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'jobq'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'view ' || c.relname || ' ' || md5(pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'jobq') AND deptype = 'e'
ORDER BY 1" "$1"
}
describe up >"$IT_DIR/up.txt"
describe fresh >"$IT_DIR/fresh.txt"
if ! diff -u "$IT_DIR/fresh.txt" "$IT_DIR/up.txt" >"$IT_DIR/objects.diff"; then
    cat "$IT_DIR/objects.diff" >&2
    it_fail "the updated extension differs from a fresh install"
fi
it_ok "the updated extension has the same $(wc -l <"$IT_DIR/up.txt") objects as a fresh install"

assert_eq "$(q "SELECT handler || ' ' || unique_owner::regrole::text FROM jobq.jobs WHERE unique_key = 'k1'" up)" \
    "public.h(jsonb) alice" "the waiting job got its queue's handler and its owner's key"
assert_eq "$(q "SELECT handler FROM jobq.dead_letter WHERE job_id = 424242" up)" "public.h(jsonb)" "the dead letter got its handler"
wait_for "SELECT state || ' ' || (result #>> '{}') FROM jobq.jobs WHERE unique_key = 'k1'" "completed ran" 60 up \
    || { q "SELECT state, attempt, error_type, last_error FROM jobq.jobs" up >&2; q "SELECT * FROM jobq.workers" up >&2; it_fail "the job waiting across the update did not run"; }
assert_eq "$(q "SELECT string_agg(who, ',') FROM public.ran" up)" alice "it ran as its owner"
id=$(psql -X -Atq -U alice -d up -c "SELECT jobq.submit('q')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 60 up || it_fail "a new job did not run after the update"
it_ok "jobs run after the update"
