-- Privileges: the submitting role is captured by submit; a role sees and
-- cancels only its own jobs unless it has jobq_admin; it submits only to
-- queues whose handler it may EXECUTE; claim/complete/fail need
-- jobq_worker; queue and dead letter management need jobq_admin; no direct
-- DML on jobq's tables.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(39);

CREATE ROLE tp_alice NOLOGIN;
CREATE ROLE tp_bob NOLOGIN;
CREATE ROLE tp_worker NOLOGIN IN ROLE jobq_worker;
CREATE ROLE tp_admin NOLOGIN IN ROLE jobq_admin;
GRANT USAGE ON SCHEMA jobq TO tp_alice, tp_bob, tp_worker, tp_admin;

CREATE FUNCTION public.tp_handler(p jsonb) RETURNS void LANGUAGE sql AS '';
REVOKE EXECUTE ON FUNCTION public.tp_handler(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tp_handler(jsonb) TO tp_alice;
SELECT jobq.create_queue('tp_sql', 'public.tp_handler(jsonb)');
SELECT jobq.create_queue('tp_ext');

\ir lib/as_role.sql
-- the whole error a role gets: SQLSTATE, message, detail and hint
CREATE FUNCTION pg_temp.error_text(r text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE m text; d text; h text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    EXECUTE q;
    RESET ROLE;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN concat_ws(' | ', SQLSTATE, m, d, h);
END $$;
CREATE TEMP TABLE v (k text PRIMARY KEY, id bigint);
GRANT SELECT ON v TO PUBLIC;

-- submit: owner captured, handler privilege checked
INSERT INTO v SELECT 'alice_sql', pg_temp.as_role('tp_alice', $$SELECT jobq.submit('tp_sql', '{"who": "alice"}')$$)::bigint;
SELECT is((SELECT owner::text FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'alice_sql')), 'tp_alice',
          'submit stores the calling role as owner');
SELECT is(pg_temp.as_role('tp_bob', $$SELECT jobq.submit('tp_sql', '{}')$$), 'ERROR 42501',
          'a role that may not EXECUTE the handler cannot submit to the queue');
INSERT INTO v SELECT 'bob_ext', pg_temp.as_role('tp_bob', $$SELECT jobq.submit('tp_ext', '{"who": "bob"}')$$)::bigint;
SELECT is((SELECT owner::text FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'bob_ext')), 'tp_bob',
          'anyone with USAGE may submit to an external queue');
INSERT INTO v SELECT 'alice_ext', pg_temp.as_role('tp_alice', $$SELECT jobq.submit('tp_ext', '{"who": "alice"}')$$)::bigint;
SELECT is(pg_temp.as_role('tp_alice', $$SELECT count(*) FROM jobq.submit_batch('tp_sql', '[1, 2]')$$), '2',
          'submit_batch checks the handler privilege too (allowed)');
SELECT is(pg_temp.as_role('tp_bob', $$SELECT count(*) FROM jobq.submit_batch('tp_sql', '[1, 2]')$$), 'ERROR 42501',
          'submit_batch checks the handler privilege too (refused)');
SELECT is((SELECT count(*)::int FROM jobq.jobs WHERE queue = 'tp_sql' AND owner = 'tp_bob'::regrole), 0,
          'nothing written by refused submits');
-- the owner is the caller even through a SECURITY DEFINER function of another role
CREATE FUNCTION public.tp_submit_as_definer() RETURNS bigint LANGUAGE sql SECURITY DEFINER
    AS $$SELECT jobq.submit('tp_ext', '{"via": "definer"}')$$;
ALTER FUNCTION public.tp_submit_as_definer() OWNER TO tp_alice;
INSERT INTO v SELECT 'definer', pg_temp.as_role('tp_bob', $$SELECT public.tp_submit_as_definer()$$)::bigint;
SELECT is((SELECT owner::text FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'definer')), 'tp_alice',
          'the owner is the role in effect (GetUserId), not the session user');

-- visibility
SELECT is(pg_temp.as_role('tp_alice', $$SELECT string_agg(DISTINCT owner::text, ',') FROM jobq.jobs$$), 'tp_alice',
          'alice sees only her jobs');
SELECT is(pg_temp.as_role('tp_bob', $$SELECT string_agg(DISTINCT owner::text, ',') FROM jobq.jobs$$), 'tp_bob',
          'bob sees only his jobs');
SELECT is(pg_temp.as_role('tp_admin', $$SELECT count(DISTINCT owner) FROM jobq.jobs WHERE owner::text LIKE 'tp\_%'$$), '2',
          'jobq_admin sees every job');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT count(*) FROM jobq.jobs_active$$), 'ERROR 42501',
          'the partitions are not readable directly (they would bypass RLS)');

-- cancel
SELECT is(pg_temp.as_role('tp_alice', format('SELECT jobq.cancel(%s)', (SELECT id FROM v WHERE k = 'bob_ext'))), 'ERROR 42704',
          'alice cannot cancel bob''s job: to her it does not exist');
SELECT is(replace(pg_temp.error_text('tp_alice', format('SELECT jobq.cancel(%s)', (SELECT id FROM v WHERE k = 'bob_ext'))),
                  'job ' || (SELECT id FROM v WHERE k = 'bob_ext') || ' ', 'job N '),
          replace(pg_temp.error_text('tp_alice', 'SELECT jobq.cancel(987654321)'), 'job 987654321 ', 'job N '),
          'cancel answers another role''s job and an unknown id alike (ids cannot be probed)');
SELECT is(replace(pg_temp.error_text('tp_alice', format('SELECT jobq.retry_now(%s)', (SELECT id FROM v WHERE k = 'bob_ext'))),
                  'job ' || (SELECT id FROM v WHERE k = 'bob_ext') || ' ', 'job N '),
          replace(pg_temp.error_text('tp_alice', 'SELECT jobq.retry_now(987654321)'), 'job 987654321 ', 'job N '),
          'retry_now answers another role''s job and an unknown id alike');
SELECT is((SELECT state FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'bob_ext')), 'pending', 'bob''s job untouched');
SELECT is(pg_temp.as_role('tp_alice', format('SELECT jobq.retry_now(%s)', (SELECT id FROM v WHERE k = 'bob_ext'))), 'ERROR 42704',
          'alice cannot retry_now bob''s job');
SELECT is(pg_temp.as_role('tp_bob', format('SELECT jobq.cancel(%s)', (SELECT id FROM v WHERE k = 'bob_ext'))), 'true',
          'bob cancels his own job');
SELECT is(pg_temp.as_role('tp_admin', format('SELECT jobq.cancel(%s)', (SELECT id FROM v WHERE k = 'alice_ext'))), 'true',
          'jobq_admin cancels anyone''s job');

-- external worker functions
SELECT is(pg_temp.as_role('tp_alice', $$SELECT count(*) FROM jobq.claim('tp_ext')$$), 'ERROR 42501',
          'claim needs jobq_worker');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT jobq.complete(1, 1)$$), 'ERROR 42501', 'complete needs jobq_worker');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT jobq.fail(1, 1, 'x')$$), 'ERROR 42501', 'fail needs jobq_worker');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT jobq.heartbeat(1, 1)$$), 'ERROR 42501', 'heartbeat needs jobq_worker');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT count(*) FROM jobq._claim('tp_ext', 1, '1 minute', NULL)$$), 'ERROR 42501',
          'the internal functions are not executable by users');
INSERT INTO v SELECT 'bob_ext2', pg_temp.as_role('tp_bob', $$SELECT jobq.submit('tp_ext', '{"n": 2}')$$)::bigint;
SELECT is(pg_temp.as_role('tp_worker', $$SELECT count(*) FROM jobq.claim('tp_ext', 10)$$), '2',
          'a jobq_worker member claims (jobs of any owner)');
SELECT is(pg_temp.as_role('tp_worker', format('SELECT jobq.complete(%s, 1)', (SELECT id FROM v WHERE k = 'bob_ext2'))), 'true',
          'and completes');

-- management
SELECT is(pg_temp.as_role('tp_alice', $$SELECT jobq.create_queue('tp_x')$$), 'ERROR 42501', 'create_queue needs jobq_admin');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT jobq.pause_queue('tp_ext')$$), 'ERROR 42501', 'pause_queue needs jobq_admin');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT jobq.drop_queue('tp_ext', true)$$), 'ERROR 42501', 'drop_queue needs jobq_admin');
SELECT is(pg_temp.as_role('tp_alice', $$SELECT jobq.requeue_dead(1)$$), 'ERROR 42501', 'requeue_dead needs jobq_admin');
SELECT is(pg_temp.as_role('tp_admin', $$SELECT 'ok' FROM jobq.create_queue('tp_x')$$), 'ok', 'jobq_admin creates a queue');
SELECT is(pg_temp.as_role('tp_admin', $$SELECT 'ok' FROM jobq.alter_queue('tp_x', concurrency => 4)$$), 'ok', 'jobq_admin alters it');
SELECT is(pg_temp.as_role('tp_admin', $$INSERT INTO jobq.retry_policies (queue, error_class, retry) VALUES ('tp_x', 'timeout', false) RETURNING 1$$), '1',
          'jobq_admin edits retry policies');

-- no direct DML
SELECT is(pg_temp.as_role('tp_alice', $$INSERT INTO jobq.jobs (queue, state, owner) VALUES ('tp_ext', 'pending', 'tp_bob') RETURNING 1$$),
          'ERROR 42501', 'no INSERT into jobq.jobs');
SELECT is(pg_temp.as_role('tp_alice', $$UPDATE jobq.jobs SET priority = 9 RETURNING 1$$), 'ERROR 42501', 'no UPDATE of jobq.jobs');
SELECT is(pg_temp.as_role('tp_alice', $$DELETE FROM jobq.jobs RETURNING 1$$), 'ERROR 42501', 'no DELETE from jobq.jobs');
SELECT is(pg_temp.as_role('tp_alice', $$UPDATE jobq.queues SET paused = true RETURNING 1$$), 'ERROR 42501', 'no UPDATE of jobq.queues');
SELECT is(pg_temp.as_role('tp_alice', $$INSERT INTO jobq.error_rules (sqlstate, error_class) VALUES ('%', 'permanent') RETURNING 1$$),
          'ERROR 42501', 'no INSERT into jobq.error_rules for users');
SELECT is(pg_temp.as_role('tp_worker', $$UPDATE jobq.jobs SET state = 'completed' RETURNING 1$$), 'ERROR 42501', 'no DML for jobq_worker');
SELECT is(pg_temp.as_role('tp_admin', $$DELETE FROM jobq.jobs RETURNING 1$$), 'ERROR 42501', 'no job DML even for jobq_admin');

SELECT * FROM finish();
ROLLBACK;
