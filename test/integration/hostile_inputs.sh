#!/usr/bin/env bash
# Hostile input, generated from the catalog: every function in schema jobq
# that PUBLIC, jobq_worker or jobq_admin may execute is called, as the least
# privileged role that may, with each argument in turn replaced by hostile
# values of its type (NULL, empty and huge strings, extreme numbers and
# intervals, infinite and ancient times, quoting and injection strings,
# unknown ids, deep JSON; malformed JSON fails in the cast, before any
# function runs), the others sane.  Asserted: no internal error (XX000), no
# crash (the postmaster and this session survive: an assertion failure in
# the assert-enabled test build is a crash too), and no jobq table changed
# by a call that raised.  Every call is rolled back, so all calls meet the
# same state.  A function added later is covered without editing this test.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# no executors: the jobq tables change only through the calls under test
it_start_cluster "jobq.workers = 0" "statement_timeout = '60s'"
q "CREATE EXTENSION jobq"
pm_pid=$(cluster_pid "$IT_DIR")
q "
CREATE ROLE h_public; CREATE ROLE h_worker IN ROLE jobq_worker; CREATE ROLE h_admin IN ROLE jobq_admin;
GRANT USAGE ON SCHEMA jobq TO h_public, h_worker, h_admin;
CREATE FUNCTION public.hh(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT p';
SELECT jobq.create_queue('hq', handler => 'public.hh(jsonb)');
SELECT jobq.create_queue('hx');
SET ROLE h_public;
SELECT jobq.submit('hq', '{\"fixture\": 1}');
SELECT jobq.submit('hx', '{\"fixture\": 2}');
SELECT jobq.submit('hx', '{\"fixture\": 3}');
RESET ROLE;
SELECT count(*) FROM jobq.claim('hx', 1, '1 hour', 'fixture');
" >/dev/null
q "SELECT jobq.fail(j.id, j.attempt, 'fixture failure', 'permanent') FROM jobq.jobs j WHERE j.state = 'running'" >/dev/null

q "
CREATE TABLE public.hostile_log (fn text, role text, argno int, argtype text, val text,
                                 sqlstate text, message text, changed boolean);
-- every jobq table's content, as one digest
CREATE FUNCTION public.jobq_digest() RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE r regclass; d text := ''; x text;
BEGIN
    FOR r IN SELECT c.oid FROM pg_class c
              WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind = 'r' ORDER BY c.relname LOOP
        EXECUTE format('SELECT coalesce(md5(string_agg(t::text, '','' ORDER BY t::text)), '''') FROM %s t', r) INTO x;
        d := d || r::text || ':' || x || ';';
    END LOOP;
    RETURN md5(d);
END \$\$;
-- hostile values of a type, as SQL expressions
CREATE FUNCTION public.hostile(t regtype) RETURNS text[] LANGUAGE sql IMMUTABLE AS \$\$
SELECT CASE t
  WHEN 'text'::regtype THEN ARRAY['NULL', '''''', 'repeat(''x'', 100000)', \$q\$'''; DROP TABLE jobq.jobs; --'\$q\$,
       \$q\$E'line\\nbreak\\r\\x01'\$q\$, '''hq''', '''*''', '''\"quoted\"''', '''%s%n%x''', '''é€😀''']
  WHEN 'jsonb'::regtype THEN ARRAY['NULL', '''{}''', '''[]''', '''null''', '''\"s\"''', '''1e308''',
       'repeat(''['', 2000)::text || repeat('']'', 2000)', '''{bad json''', '(SELECT jsonb_object_agg(g::text, g) FROM generate_series(1, 10000) g)',
       '''{\"url\": \"http://127.0.0.1:1/\\u0000\", \"headers\": {\"a\\nb\": \"c\"}}''']
  WHEN 'bigint'::regtype THEN ARRAY['NULL', '0', '-1', '9223372036854775807', '(-9223372036854775807 - 1)', '987654321',
       '(SELECT min(id) FROM jobq.jobs)', '(SELECT max(id) FROM jobq.jobs)', '(SELECT min(id) FROM jobq.dead_letter)']
  WHEN 'integer'::regtype THEN ARRAY['NULL', '0', '-1', '2147483647', '(-2147483647 - 1)', '1000000']
  WHEN 'double precision'::regtype THEN ARRAY['NULL', '''NaN''', '''Infinity''', '''-Infinity''', '1e308', '-1e308', '0', '1e-308']
  WHEN 'interval'::regtype THEN ARRAY['NULL', '''0''', '''-1 day''', '''1 microsecond''', '''178000000 years''',
       '''-178000000 years''', '''2147483647 days 2562047788 hours''']
  WHEN 'timestamp with time zone'::regtype THEN ARRAY['NULL', '''infinity''', '''-infinity''', '''4713-01-01 BC''',
       '''294276-12-31''', 'now()']
  WHEN 'boolean'::regtype THEN ARRAY['NULL', 'true', 'false']
  WHEN 'regprocedure'::regtype THEN ARRAY['NULL', '''pg_catalog.now()''', '''public.hh(jsonb)''', '''pg_catalog.pg_sleep(double precision)''',
       '''jobq.submit(text,jsonb,timestamp with time zone,integer,text,integer,interval)''']
  WHEN 'text[]'::regtype THEN ARRAY['NULL', '''{}''', '''{NULL}''', 'ARRAY[''handler'']', 'ARRAY[repeat(''x'', 10000)]',
       'ARRAY[''handler'', ''concurrency'', ''max_attempts'', ''backoff'', ''base_delay'', ''max_delay'', ''jitter'', ''timeout'', ''warn_after'', ''rate_limit'', ''retention'', ''breaker'']']
  WHEN 'bigint[]'::regtype THEN ARRAY['NULL', '''{}''', '''{NULL}''', '''{1,2,3}''']
  WHEN 'regrole'::regtype THEN ARRAY['NULL', '''postgres''', '''h_public''']
  ELSE ARRAY['NULL']
END
\$\$;
-- a sane value of an argument (by name, else by type), for the arguments
-- not under attack
CREATE FUNCTION public.sane(t regtype, argname text) RETURNS text LANGUAGE sql IMMUTABLE AS \$\$
SELECT CASE
  WHEN argname IN ('error_class') THEN '''transient'''
  WHEN argname IN ('backoff', 'strategy') THEN '''fixed'''
  WHEN argname IN ('kind') THEN '''external'''
  WHEN argname IN ('method') THEN '''POST'''
  WHEN argname IN ('url') THEN '''http://example.com/hook'''
  WHEN argname IN ('unique_scope') THEN '''owner'''
  WHEN argname IN ('queue', 'name') AND t = 'text'::regtype THEN '''hx'''
  WHEN argname IN ('what', 'action') THEN '''lease'''
  WHEN argname IN ('unique_key') THEN 'NULL'
  -- jobq.wait blocks for its timeout: a short one (also valid for queues and jobs)
  WHEN argname IN ('timeout') AND t = 'interval'::regtype THEN '''10 milliseconds'''
  WHEN argname IN ('payloads') THEN '''[{}, {\"n\": 2}]'''
  WHEN argname IN ('dead_letter_id') THEN '(SELECT min(id) FROM jobq.dead_letter)'
  ELSE (SELECT CASE t
  WHEN 'text'::regtype THEN '''hx'''
  WHEN 'jsonb'::regtype THEN '''{}'''
  WHEN 'bigint'::regtype THEN '(SELECT max(id) FROM jobq.jobs)'
  WHEN 'integer'::regtype THEN '1'
  WHEN 'double precision'::regtype THEN '1'
  WHEN 'interval'::regtype THEN '''1 minute'''
  WHEN 'timestamp with time zone'::regtype THEN 'now()'
  WHEN 'boolean'::regtype THEN 'false'
  WHEN 'regprocedure'::regtype THEN '''public.hh(jsonb)'''
  WHEN 'regrole'::regtype THEN '''h_public'''
  ELSE 'NULL'
  END)
END
\$\$;
"

q "
DO \$\$
DECLARE
    f       record;
    i       int;
    j       int;
    v       text;
    args    text[];
    call    text;
    st      text;
    msg     text;
    before  text;
    after   text;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure::text AS sig, p.oid::regproc::text AS name, p.pronargs,
               string_to_array(p.proargtypes::text, ' ')::oid[] AS types,  -- 1-based
               p.proargnames AS names,
               CASE WHEN has_function_privilege('h_public', p.oid, 'EXECUTE') THEN 'h_public'
                    WHEN has_function_privilege('h_worker', p.oid, 'EXECUTE') THEN 'h_worker'
                    WHEN has_function_privilege('h_admin', p.oid, 'EXECUTE') THEN 'h_admin' END AS role
          FROM pg_proc p
         WHERE p.pronamespace = 'jobq'::regnamespace AND p.prokind = 'f'
         ORDER BY 1
    LOOP
        CONTINUE WHEN f.role IS NULL;
        FOR i IN 1 .. greatest(f.pronargs, 1) LOOP
            FOREACH v IN ARRAY CASE WHEN f.pronargs = 0 THEN ARRAY['-'] ELSE public.hostile(f.types[i]::regtype) END LOOP
                args := '{}';
                FOR j IN 1 .. f.pronargs LOOP
                    args := args || format('(%s)::%s', CASE WHEN j = i THEN v ELSE public.sane(f.types[j]::regtype, f.names[j]) END,
                                           f.types[j]::regtype);
                END LOOP;
                call := format('SELECT count(*) FROM %s(%s) AS t', f.name, array_to_string(args, ', '));
                before := public.jobq_digest();
                BEGIN
                    EXECUTE format('SET LOCAL ROLE %I', f.role);
                    EXECUTE call;
                    RESET ROLE;
                    -- every call is undone, so that all meet the same state
                    RAISE EXCEPTION USING ERRCODE = 'JQ999', MESSAGE = 'returned';
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
                END;
                after := public.jobq_digest();
                INSERT INTO public.hostile_log
                VALUES (f.sig, f.role, i, CASE WHEN f.pronargs > 0 THEN f.types[i]::regtype::text END,
                        left(v, 80), st, left(msg, 200), before IS DISTINCT FROM after);
            END LOOP;
        END LOOP;
    END LOOP;
END
\$\$;
" >/dev/null || it_fail "the hostile-input run did not finish (the session or server died)"

[ "$(cluster_pid "$IT_DIR")" = "$pm_pid" ] || it_fail "the postmaster restarted"
if grep -E "terminated by signal|was terminated|TRAP:" "$IT_DIR/server.log" >&2; then
    it_fail "a backend crashed"
fi
nfn=$(q "SELECT count(DISTINCT fn) FROM public.hostile_log")
ncalls=$(q "SELECT count(*) FROM public.hostile_log")
expected=$(q "SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'jobq'::regnamespace AND p.prokind = 'f'
                AND (has_function_privilege('h_public', p.oid, 'EXECUTE') OR has_function_privilege('h_worker', p.oid, 'EXECUTE')
                     OR has_function_privilege('h_admin', p.oid, 'EXECUTE'))")
assert_eq "$nfn" "$expected" "every executable jobq function was called ($ncalls calls)"
internal=$(q "SELECT string_agg(fn || ' arg ' || argno || ' = ' || val || ': ' || message, E'\n') FROM public.hostile_log WHERE sqlstate = 'XX000'")
[ -z "$internal" ] || it_fail "internal errors (XX000):
$internal"
it_ok "no internal error"
changed=$(q "SELECT string_agg(fn || ' arg ' || argno || ' = ' || val || ' (' || sqlstate || ')', E'\n') FROM public.hostile_log WHERE changed")
[ -z "$changed" ] || it_fail "jobq tables changed by a call that raised:
$changed"
it_ok "no call that raised changed a jobq table"
q "SELECT sqlstate, count(*), min(message) FROM public.hostile_log GROUP BY 1 ORDER BY 2 DESC" >&2
if [ -n "${HOSTILE_DEBUG:-}" ]; then
    q "SELECT fn, sqlstate, count(*), min(message) FROM public.hostile_log GROUP BY 1, 2 ORDER BY 3 DESC" >&2
fi
