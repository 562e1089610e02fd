-- Hostile inputs, generated from the catalog: every function of schema jobq
-- that PUBLIC or a jobq_* group role (jobq_worker, jobq_admin, ...) may
-- EXECUTE is called, as a member of each such role that may execute it,
-- once with sane arguments and then once per argument per hostile value of
-- that argument's type (NULL, empty and huge strings, extreme numbers and
-- intervals, JSON of the wrong shape, quoting and injection strings,
-- unknown ids ...; a type without a list below gets NULL only), the other
-- arguments sane (a real queue, a job of the calling role, a real dead
-- letter ...).  A function added later is covered without editing this
-- file: the calls are built from pg_proc and has_function_privilege().
--
-- Asserted for every call:
--   * no internal error: no SQLSTATE of class XX (an elog(ERROR) without an
--     errcode is XX000: a user must get a clear error with a real SQLSTATE);
--   * the backend is still alive after it: each call is its own top-level
--     statement, so a crash (or an Assert, or a crash of any other process,
--     which makes the postmaster end every session) ends the script and
--     pg_prove reports the missing tests; the end re-checks the backend pid
--     and the postmaster start time;
--   * no row of any jobq table changed: every call runs in a subtransaction
--     that is always rolled back (an error, or our own raise after a
--     successful call, so calls do not disturb each other: a successful
--     drop_queue would otherwise take the real queue away from every later
--     call), and a checksum of every row of every jobq table (as superuser,
--     so row level security hides nothing) taken before must equal the one
--     taken after.  A rollback undoes every transactional write, so what
--     this catches is a write that escapes it: a row written outside the
--     subtransaction (another transaction, a heap tuple stamped with the
--     wrong transaction id by jobq's direct heap writes).  Sequences are not
--     rows and nextval() is not transactional by design: they are ignored.
--     Shared memory state (claim floors, wake-ups) is not rows either.
--
-- Bounds: each call is a top-level statement under statement_timeout, so a
-- function that sleeps or blocks on a hostile value (a huge timeout, say)
-- ends with 57014 at the bound instead of hanging the suite; such calls are
-- listed by a diag line and accepted (they are not internal errors).  Huge
-- values are built by expressions at call time, not sent as literals.
--
-- Excluded: nothing today.  hq_excluded below lists a function to leave
-- out with the reason; every excluded function must still exist (a stale
-- exclusion fails), and the coverage check fails for any executable
-- function that got no call.
\set ON_ERROR_STOP true
\set QUIET true
BEGIN;

SELECT pg_backend_pid() AS hq_pid0, pg_postmaster_start_time() AS hq_pm0 \gset

CREATE TEMP TABLE hq_excluded (fn text PRIMARY KEY, reason text NOT NULL);
-- INSERT INTO hq_excluded VALUES ('jobq.f(int)', 'why it cannot be called here');

-- ---- roles: PUBLIC (a plain role) and one member of each jobq_* group ----
CREATE TEMP TABLE hq_roles (grp text PRIMARY KEY, member text NOT NULL, rank int NOT NULL);
INSERT INTO hq_roles VALUES ('public', 'hq_public', 0);
INSERT INTO hq_roles
    SELECT rolname, 'hq_m_' || rolname, row_number() OVER (ORDER BY rolname)
    FROM pg_roles WHERE rolname LIKE 'jobq\_%' AND NOT rolcanlogin;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM hq_roles LOOP
        EXECUTE format('CREATE ROLE %I NOLOGIN', r.member);
        IF r.grp <> 'public' THEN
            EXECUTE format('GRANT %I TO %I', r.grp, r.member);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA jobq TO %I', r.member);
    END LOOP;
END $$;
GRANT SELECT ON hq_roles TO PUBLIC;

-- ---- fixtures: a real queue, and per role a job it owns -----------------
CREATE FUNCTION public.hq_handler(p jsonb) RETURNS void LANGUAGE sql AS '';
GRANT EXECUTE ON FUNCTION public.hq_handler(jsonb) TO PUBLIC;
SELECT jobq.create_queue('hq_ext');
SELECT jobq.create_queue('hq_sql', 'public.hq_handler(jsonb)');

-- job_id/attempt: the sane (id, attempt) of calls made by that role: a
-- running lease it holds when it may claim, else a pending job it owns.
CREATE TEMP TABLE hq_fix (member text PRIMARY KEY, job_id bigint, attempt int);
GRANT ALL ON hq_fix TO PUBLIC;
DO $$
DECLARE r record; jid bigint; att int;
BEGIN
    FOR r IN SELECT * FROM hq_roles ORDER BY rank LOOP
        EXECUTE format('SET LOCAL ROLE %I', r.member);
        -- a priority above every earlier fixture's: its own claim takes it
        jid := jobq.submit('hq_ext', jsonb_build_object('fixture', r.member),
                           priority => 1000 + 10 * r.rank);
        att := 0;
        IF has_function_privilege('jobq.claim(text,integer,interval,text)', 'EXECUTE') THEN
            SELECT c.id, c.attempt INTO jid, att FROM jobq.claim('hq_ext', 1, '1 hour') c;
        END IF;
        RESET ROLE;
        INSERT INTO hq_fix VALUES (r.member, jid, att);
    END LOOP;
END $$;
-- a real dead letter, for requeue_dead/resolve_dead
SELECT jobq.submit('hq_ext', '{"fixture": "dead"}', priority => 5000, max_attempts => 1) AS hq_dead_job \gset
SELECT jobq.fail(c.id, c.attempt, 'fixture', 'permanent') FROM jobq.claim('hq_ext', 1) c;
SELECT id AS hq_dead_letter FROM jobq.dead_letter WHERE job_id = :hq_dead_job \gset

-- ---- values ------------------------------------------------------------
-- sane value of an argument: by name, then by type
CREATE FUNCTION pg_temp.hq_sane(fn name, arg text, typ regtype, member text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE fx hq_fix;
BEGIN
    SELECT * INTO fx FROM hq_fix f WHERE f.member = hq_sane.member;
    RETURN CASE
        WHEN typ = 'text'::regtype THEN CASE
            WHEN arg IN ('name', 'queue') AND fn LIKE 'create\_%' THEN quote_literal('hq_new')
            WHEN arg IN ('name', 'queue', 'breaker_key', 'breaker') THEN quote_literal('hq_ext')
            WHEN arg IN ('strategy', 'backoff') THEN quote_literal('exponential')
            WHEN arg = 'error_class' THEN quote_literal('transient')
            WHEN arg = 'sqlstate' THEN quote_literal('40001')
            WHEN arg = 'detail' THEN quote_literal('jobq.retry_after=1')
            WHEN arg = 'url' THEN quote_literal('http://localhost/')
            WHEN arg = 'method' THEN quote_literal('GET')
            WHEN arg = 'kind' THEN quote_literal('external')
            ELSE quote_literal('hostile test') END
        WHEN typ = 'bigint'::regtype THEN CASE
            WHEN arg IN ('id', 'job_id') THEN fx.job_id::text
            WHEN arg = 'dead_letter_id' THEN current_setting('hq.dead_letter')
            ELSE '1' END
        WHEN typ = 'integer'::regtype THEN CASE
            WHEN arg = 'attempt' THEN fx.attempt::text
            WHEN arg = 'http_status' THEN '500'
            ELSE '1' END
        WHEN typ = 'jsonb'::regtype THEN CASE
            WHEN arg = 'payloads' THEN $v$'[{}]'::jsonb$v$
            ELSE $v$'{}'::jsonb$v$ END
        WHEN typ = 'json'::regtype THEN $v$'{}'::json$v$
        WHEN typ = 'double precision'::regtype THEN '0.1::float8'
        WHEN typ = 'real'::regtype THEN '0.1::real'
        WHEN typ = 'numeric'::regtype THEN '1::numeric'
        WHEN typ = 'smallint'::regtype THEN '1::smallint'
        WHEN typ = 'interval'::regtype THEN $v$'1 second'::interval$v$
        WHEN typ = 'timestamp with time zone'::regtype THEN 'now()'
        WHEN typ = 'boolean'::regtype THEN 'false'
        WHEN typ = 'regprocedure'::regtype THEN $v$'public.hq_handler(jsonb)'::regprocedure$v$
        WHEN typ = 'regrole'::regtype THEN format('%L::regrole', member)
        WHEN typ = 'text[]'::regtype THEN $v$'{}'::text[]$v$
        WHEN typ = 'bigint[]'::regtype THEN $v$'{}'::bigint[]$v$
        WHEN typ = 'integer[]'::regtype THEN $v$'{}'::integer[]$v$
        WHEN typ = 'interval[]'::regtype THEN $v$'{1 second}'::interval[]$v$
        ELSE format('NULL::%s', typ) END;
END $$;
SELECT set_config('hq.dead_letter', :'hq_dead_letter', true);

-- hostile values per type (SQL expressions); any other type: NULL only
CREATE TEMP TABLE hq_values (typ regtype, label text, expr text);
INSERT INTO hq_values VALUES
    ('text', 'NULL', 'NULL::text'),
    ('text', 'empty', $v$''$v$),
    ('text', 'blank', $v$'  '$v$),
    ('text', 'huge (1 MB)', $v$repeat('x', 1048576)$v$),
    ('text', '64 chars (past NAMEDATALEN)', $v$repeat('n', 64)$v$),
    ('text', 'quotes and backslashes', $v$$q$it's "quoted" \ back\slash \\$q$$v$),
    ('text', 'SQL injection', $v$$q$x'); DROP TABLE jobq.queues; --$q$$v$),
    ('text', 'identifier injection', $v$$q$"; DROP SCHEMA jobq CASCADE; --$q$$v$),
    ('text', 'dollar quote', $v$$q$$$; SELECT pg_sleep(10); $$$q$$v$),
    ('text', 'format specifiers', $v$'%s%s%s%n%d %x %1$s %'$v$),
    ('text', 'control and non-ASCII', $v$E'caf\u00e9 \u2603 \U0001D11E \t\r\n\x01\x7f'$v$),
    ('text', 'malformed JSON', $v$'{"unterminated": [1,'$v$),
    ('text', 'a catalog name', $v$'pg_catalog.pg_authid'$v$),
    ('jsonb', 'NULL', 'NULL::jsonb'),
    ('jsonb', 'JSON null', $v$'null'::jsonb$v$),
    ('jsonb', 'empty array', $v$'[]'::jsonb$v$),
    ('jsonb', 'empty object', $v$'{}'::jsonb$v$),
    ('jsonb', 'string', $v$'"str"'::jsonb$v$),
    ('jsonb', 'huge number', $v$'1e1000'::jsonb$v$),
    ('jsonb', 'wrong types in known keys',
     $v$'{"id": null, "url": 1, "method": [], "headers": "x", "body": {}, "timeout_ms": -1, "queue": 5}'::jsonb$v$),
    ('jsonb', 'array of nulls and scalars', $v$'[null, 1, "x", [], {}]'::jsonb$v$),
    ('jsonb', 'huge (1 MB string)', $v$jsonb_build_object('x', repeat('x', 1048576))$v$),
    ('jsonb', 'deep (1000 levels)', $v$(repeat('[', 1000) || repeat(']', 1000))::jsonb$v$),
    ('jsonb', 'wide (5000 elements)', $v$(SELECT jsonb_agg(jsonb_build_object('i', g)) FROM generate_series(1, 5000) g)$v$),
    ('jsonb', 'malformed JSON', $v$'{"a": [1,'::jsonb$v$),
    ('jsonb', 'NUL escape', $v$'{"a": "\u0000"}'::jsonb$v$),
    ('bigint', 'NULL', 'NULL::bigint'),
    ('bigint', '0', '0::bigint'),
    ('bigint', '-1', '(-1)::bigint'),
    ('bigint', 'max', '9223372036854775807::bigint'),
    ('bigint', 'min', '(-9223372036854775808)::bigint'),
    ('bigint', 'unknown id', '987654321987::bigint'),
    ('integer', 'NULL', 'NULL::integer'),
    ('integer', '0', '0'),
    ('integer', '-1', '(-1)'),
    ('integer', 'max', '2147483647'),
    ('integer', 'min', '(-2147483648)'),
    ('smallint', 'NULL', 'NULL::smallint'),
    ('smallint', 'max', '32767::smallint'),
    ('smallint', 'min', '(-32768)::smallint'),
    ('double precision', 'NULL', 'NULL::float8'),
    ('double precision', 'NaN', $v$'NaN'::float8$v$),
    ('double precision', 'Infinity', $v$'Infinity'::float8$v$),
    ('double precision', '-Infinity', $v$'-Infinity'::float8$v$),
    ('double precision', '0', '0::float8'),
    ('double precision', '-1', '(-1)::float8'),
    ('double precision', '1e308', '1e308::float8'),
    ('double precision', 'smallest denormal', $v$'4.9e-324'::float8$v$),
    ('numeric', 'NULL', 'NULL::numeric'),
    ('numeric', 'NaN', $v$'NaN'::numeric$v$),
    ('numeric', 'huge', $v$('1e1000')::numeric$v$),
    ('interval', 'NULL', 'NULL::interval'),
    ('interval', '0', $v$'0'::interval$v$),
    ('interval', '1 microsecond', $v$'1 microsecond'::interval$v$),
    ('interval', '-1 microsecond', $v$'-1 microsecond'::interval$v$),
    ('interval', '-1 day', $v$'-1 day'::interval$v$),
    ('interval', '1 month', $v$'1 month'::interval$v$),
    ('interval', '178000000 years', $v$'178000000 years'::interval$v$),
    ('interval', '-178000000 years', $v$'-178000000 years'::interval$v$),
    ('interval', 'max days and time', $v$'2147483647 days 2562047788:00:54.775807'::interval$v$),
    ('timestamp with time zone', 'NULL', 'NULL::timestamptz'),
    ('timestamp with time zone', 'infinity', $v$'infinity'::timestamptz$v$),
    ('timestamp with time zone', '-infinity', $v$'-infinity'::timestamptz$v$),
    ('timestamp with time zone', 'lowest', $v$'4714-11-24 00:00:00+00 BC'::timestamptz$v$),
    ('timestamp with time zone', 'highest', $v$'294276-12-31 23:59:59+00'::timestamptz$v$),
    ('timestamp with time zone', 'epoch', $v$'epoch'::timestamptz$v$),
    ('boolean', 'NULL', 'NULL::boolean'),
    ('boolean', 'true', 'true'),
    ('boolean', 'false', 'false'),
    ('regprocedure', 'NULL', 'NULL::regprocedure'),
    ('regprocedure', 'oid 0', '0::oid::regprocedure'),
    ('regprocedure', 'dangling oid', '4294967295::oid::regprocedure'),
    ('regprocedure', 'pg_sleep (wrong argument type)', $v$'pg_catalog.pg_sleep(double precision)'::regprocedure$v$),
    ('regprocedure', 'no arguments', $v$'pg_catalog.now()'::regprocedure$v$),
    ('regprocedure', 'a builtin taking jsonb', $v$'pg_catalog.jsonb_typeof(jsonb)'::regprocedure$v$),
    ('regprocedure', 'an aggregate', $v$'pg_catalog.jsonb_agg(anyelement)'::regprocedure$v$),
    ('regprocedure', 'a trigger function', $v$'pg_catalog.suppress_redundant_updates_trigger()'::regprocedure$v$),
    ('regprocedure', 'a jobq function', $v$'jobq.cancel(bigint)'::regprocedure$v$),
    ('regprocedure', 'a jobq internal function', $v$'jobq._complete(bigint,integer,jsonb)'::regprocedure$v$),
    ('regprocedure', 'pg_terminate_backend', $v$'pg_catalog.pg_terminate_backend(integer,bigint)'::regprocedure$v$),
    ('regrole', 'NULL', 'NULL::regrole'),
    ('regrole', 'oid 0', '0::oid::regrole'),
    ('regrole', 'superuser', $v$'postgres'::regrole$v$),
    ('regrole', 'PUBLIC pseudo-role', $v$'pg_database_owner'::regrole$v$),
    ('text[]', 'NULL', 'NULL::text[]'),
    ('text[]', 'empty', $v$'{}'::text[]$v$),
    ('text[]', '{NULL}', $v$'{NULL}'::text[]$v$),
    ('text[]', 'unknown names', $v$'{"no such thing", "%s", "x''; --"}'::text[]$v$),
    ('text[]', 'huge element', $v$ARRAY[repeat('x', 1048576)]$v$),
    ('text[]', 'wide (10000 elements)', $v$(SELECT array_agg('handler') FROM generate_series(1, 10000))$v$),
    ('text[]', 'two dimensions', $v$'{{a,b},{c,d}}'::text[]$v$),
    ('bigint[]', 'NULL', 'NULL::bigint[]'),
    ('bigint[]', 'empty', $v$'{}'::bigint[]$v$),
    ('bigint[]', '{NULL}', $v$'{NULL}'::bigint[]$v$),
    ('bigint[]', 'extremes', $v$'{-1, 0, 9223372036854775807}'::bigint[]$v$),
    ('integer[]', 'NULL', 'NULL::integer[]'),
    ('integer[]', 'empty', $v$'{}'::integer[]$v$),
    ('integer[]', '{NULL}', $v$'{NULL}'::integer[]$v$),
    ('interval[]', 'NULL', 'NULL::interval[]'),
    ('interval[]', 'empty', $v$'{}'::interval[]$v$),
    ('interval[]', '{NULL}', $v$'{NULL}'::interval[]$v$),
    ('interval[]', 'negative and huge', $v$'{"-1 day", "178000000 years"}'::interval[]$v$),
    ('interval[]', 'two dimensions', $v$'{{1s,2s},{3s,4s}}'::interval[]$v$);

-- ---- the calls -----------------------------------------------------------
-- Functions: schema jobq, executable by PUBLIC or a jobq_* group role, not
-- excluded.  Each is called as the member of every role that may execute it.
CREATE TEMP TABLE hq_fns AS
    SELECT p.oid AS fn, r.member, r.grp
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'jobq'
    JOIN hq_roles r ON has_function_privilege(r.grp, p.oid, 'EXECUTE')
    WHERE p.oid::regprocedure::text NOT IN (SELECT fn FROM hq_excluded);

CREATE TEMP TABLE hq_calls (
    n serial PRIMARY KEY, fn oid, member text, what text, sql text,
    state text, message text, changed boolean);

CREATE FUNCTION pg_temp.hq_build() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f record; i int; v record; nin int; ndef int;
    names text[]; types oid[]; named boolean; call text; args text[];
BEGIN
    FOR f IN SELECT h.fn, h.member, p.proname, p.pronargs, p.pronargdefaults,
                    ARRAY(SELECT unnest(p.proargtypes::oid[])) AS argtypes, p.proargnames, p.proargmodes,
                    p.provariadic, p.prokind, p.oid::regprocedure::text AS sig
             FROM hq_fns h JOIN pg_proc p ON p.oid = h.fn ORDER BY 7, 2 LOOP
        nin := f.pronargs; ndef := f.pronargdefaults; types := f.argtypes;
        -- input argument names (proargnames covers OUT arguments too); the
        -- types array starts at 1 (an oidvector starts at 0)
        IF f.proargmodes IS NULL THEN
            names := f.proargnames;
        ELSE
            SELECT array_agg(nm ORDER BY o) INTO names
            FROM unnest(f.proargnames, f.proargmodes) WITH ORDINALITY AS a(nm, md, o)
            WHERE md IN ('i', 'b', 'v');
        END IF;
        named := names IS NOT NULL AND coalesce(array_length(names, 1), 0) = nin
                 AND NOT ('' = ANY (names)) AND f.provariadic = 0;
        -- i = 0: all sane; i > 0: argument i hostile
        FOR i IN 0 .. nin LOOP
            FOR v IN
                SELECT 'sane' AS label, NULL::text AS expr WHERE i = 0
                UNION ALL
                SELECT hv.label, hv.expr FROM hq_values hv
                WHERE i > 0 AND hv.typ = types[i]
                UNION ALL
                SELECT 'NULL', format('NULL::%s', types[i]::regtype)
                WHERE i > 0 AND NOT EXISTS (SELECT FROM hq_values hv WHERE hv.typ = types[i])
            LOOP
                args := '{}';
                FOR k IN 1 .. nin LOOP
                    IF k = i THEN
                        args := args || CASE WHEN named THEN format('%I => %s', names[k], v.expr) ELSE v.expr END;
                    ELSIF named AND k > nin - ndef THEN
                        CONTINUE;  -- defaulted: the default is sane
                    ELSIF named THEN
                        args := args || format('%I => %s', names[k],
                                               pg_temp.hq_sane(f.proname, names[k], types[k]::regtype, f.member));
                    ELSE
                        args := args || pg_temp.hq_sane(f.proname, names[k], types[k]::regtype, f.member);
                    END IF;
                END LOOP;
                IF f.provariadic <> 0 THEN
                    args[nin] := 'VARIADIC ' || args[nin];
                END IF;
                call := format('%s(%s)', f.fn::regproc::text, array_to_string(args, ', '));
                IF f.prokind = 'p' THEN
                    call := 'CALL ' || call;
                ELSE
                    call := format('SELECT count(*) FROM (SELECT %s) s', call);
                END IF;
                INSERT INTO hq_calls (fn, member, what, sql)
                VALUES (f.fn, f.member,
                        format('%s as %s: %s', f.sig, f.member,
                               CASE WHEN i = 0 THEN 'sane arguments'
                                    ELSE format('%s = %s', coalesce(names[i], '$' || i), v.label) END),
                        call);
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
SELECT pg_temp.hq_build();

-- Checksum of every row of every jobq table (leaf partitions once).
SELECT 'SELECT md5(string_agg(c, '','' ORDER BY t)) FROM (' ||
       string_agg(format('SELECT %L AS t, coalesce(md5(string_agg(x::text, E''\n'' ORDER BY x::text)), ''-'') AS c FROM %s x',
                         c.relname, c.oid::regclass), ' UNION ALL ') || ') s' AS hq_sum_sql
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'jobq' AND c.relkind IN ('r', 'm') \gset
SELECT set_config('hq.sum_sql', :'hq_sum_sql', true);

-- One call: in a subtransaction, as its role, always rolled back.
CREATE FUNCTION pg_temp.hq_run(cn int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c hq_calls; st text := 'ok'; msg text; before text; after text;
    sum_sql text := current_setting('hq.sum_sql');
BEGIN
    SELECT * INTO c FROM hq_calls WHERE n = cn;
    EXECUTE sum_sql INTO before;
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', c.member);
        EXECUTE c.sql;
        RAISE SQLSTATE 'HQ000';     -- undo the successful call's effects
    EXCEPTION
        WHEN SQLSTATE 'HQ000' THEN st := 'ok';
        WHEN OTHERS OR query_canceled OR assert_failure THEN
            st := SQLSTATE; msg := SQLERRM;
    END;
    EXECUTE sum_sql INTO after;
    UPDATE hq_calls SET state = st, message = msg, changed = (before IS DISTINCT FROM after)
    WHERE n = cn;
    RETURN ok(st NOT LIKE 'XX%' AND before IS NOT DISTINCT FROM after,
              format('%s -> %s', c.what, st))
        || CASE WHEN st LIKE 'XX%' THEN E'\n' || diag(format('internal error %s: %s', st, msg)) ELSE '' END
        || CASE WHEN before IS DISTINCT FROM after THEN E'\n' || diag('rows of jobq tables changed by a rolled back call') ELSE '' END
        || CASE WHEN st = '57014' THEN E'\n' || diag(format('bounded by statement_timeout: %s', c.sql)) ELSE '' END;
END $$;

SELECT plan((SELECT count(*)::int FROM hq_calls) + 5);

SET statement_timeout = '1s';
SET lock_timeout = '500ms';
-- Test k is call k (hq_calls.n): when a call ends the session, pg_prove says
-- "planned N tests but ran M": call M + 1 did it (its SQL: the server log).
SELECT format('SELECT pg_temp.hq_run(%s) /* %s */', n, replace(what, '*/', '* /'))
FROM hq_calls ORDER BY n \gexec
RESET statement_timeout;
RESET lock_timeout;

-- every executable function is called, and none only in name
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'jobq'
    WHERE EXISTS (SELECT FROM hq_roles r WHERE has_function_privilege(r.grp, p.oid, 'EXECUTE'))
      AND p.oid::regprocedure::text NOT IN (SELECT fn FROM hq_excluded)
      AND NOT EXISTS (SELECT FROM hq_calls c WHERE c.fn = p.oid)$$,
    'every jobq function PUBLIC or a jobq_* role may execute gets calls');
SELECT is_empty($$SELECT fn FROM hq_excluded WHERE to_regprocedure(fn) IS NULL$$,
                'every exclusion names an existing function');

SELECT is(pg_backend_pid(), :hq_pid0, 'the same backend ran every call');
SELECT is(pg_postmaster_start_time(), :'hq_pm0'::timestamptz, 'no crash restarted the server meanwhile');
SELECT cmp_ok((SELECT count(*)::int FROM hq_calls WHERE state = 'ok' AND what LIKE '%sane arguments'),
              '>', 0, 'calls with sane arguments succeed (the fixtures are real)');
SELECT diag('sane call failed: ' || what || ' -> ' || state || ': ' || left(message, 200))
FROM hq_calls WHERE state <> 'ok' AND what LIKE '%sane arguments' ORDER BY n;
SELECT diag(format('%s calls: %s', count(*),
                   (SELECT string_agg(format('%s x %s', k, st), ', ' ORDER BY k DESC)
                    FROM (SELECT state AS st, count(*) AS k FROM hq_calls GROUP BY state) g)))
FROM hq_calls;

SELECT * FROM finish();
ROLLBACK;
