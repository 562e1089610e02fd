-- Queue management: create, alter (with reset), pause, resume, drop; the
-- handler is stored as normalised text; bad input is refused with its
-- SQLSTATE and leaves nothing behind (messages: sql/queue_errors.sql).
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(34);

CREATE SCHEMA tq;
CREATE FUNCTION tq.ok(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT p';
CREATE FUNCTION tq."Mixed Case"(p jsonb) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION tq.two(p jsonb, n int) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION tq.txt(p text) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION tq.srf(p jsonb) RETURNS SETOF int LANGUAGE sql AS 'SELECT 1';
CREATE PROCEDURE tq.proc(p jsonb) LANGUAGE sql AS '';

SELECT lives_ok($$SELECT jobq.create_queue('tq_sql', 'tq.ok(jsonb)')$$, 'create a queue with a handler');
SELECT results_eq($$SELECT kind, handler, concurrency, max_attempts, backoff, base_delay, max_delay,
                           jitter, timeout, warn_after, rate_limit, retention, breaker, paused
                      FROM jobq.queues WHERE name = 'tq_sql'$$,
    $$VALUES ('sql'::text, 'tq.ok(jsonb)'::text, NULL::int, 5, 'exponential'::text, '1 second'::interval,
              '1 hour'::interval, 0.1::float8, '3 minutes'::interval, '1 minute'::interval,
              NULL::float8, '1 hour'::interval, NULL::text, false)$$,
    'kind sql inferred from the handler; the defaults of API.md');
SELECT lives_ok($$SELECT jobq.create_queue('tq_mixed', 'tq."Mixed Case"(jsonb)')$$, 'a handler whose name needs quoting');
SELECT is((SELECT handler FROM jobq.queues WHERE name = 'tq_mixed'), 'tq."Mixed Case"(jsonb)',
          'the handler is stored as quoted schema.function(argtypes)');
SELECT is((SELECT handler::regprocedure FROM jobq.queues WHERE name = 'tq_mixed'),
          'tq."Mixed Case"(jsonb)'::regprocedure, 'the stored handler text casts back to the function');
SELECT lives_ok($$SELECT jobq.create_queue('tq_ext')$$, 'create a queue without handler');
SELECT is((SELECT kind FROM jobq.queues WHERE name = 'tq_ext'), 'external', 'no handler: kind external');
SELECT lives_ok($$SELECT jobq.create_queue('tq_http', kind => 'http', concurrency => 3, rate_limit => 2.5,
                                           max_attempts => 2, backoff => 'fixed', jitter => 0)$$,
                'create an http queue with options');
SELECT results_eq($$SELECT kind, concurrency, rate_limit, max_attempts, backoff FROM jobq.queues WHERE name = 'tq_http'$$,
                  $$VALUES ('http'::text, 3, 2.5::float8, 2, 'fixed'::text)$$, 'options stored');

-- refused input: SQLSTATE, and nothing written
SELECT throws_ok($$SELECT jobq.create_queue('tq_sql')$$, '42710', NULL, 'duplicate name: 42710');
SELECT throws_ok($$SELECT jobq.create_queue('tq_two', 'tq.two(jsonb, int)')$$, '22023', NULL, 'handler with two arguments');
SELECT throws_ok($$SELECT jobq.create_queue('tq_txt', 'tq.txt(text)')$$, '22023', NULL, 'handler taking text');
SELECT throws_ok($$SELECT jobq.create_queue('tq_srf', 'tq.srf(jsonb)')$$, '22023', NULL, 'set-returning handler');
SELECT throws_ok($$SELECT jobq.create_queue('tq_proc', 'tq.proc(jsonb)')$$, '22023', NULL, 'procedure as handler');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', backoff => 'quadratic')$$, '22023', NULL, 'unknown backoff');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', max_attempts => 0)$$, '22023', NULL, 'max_attempts 0');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', concurrency => 0)$$, '22023', NULL, 'concurrency 0');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', timeout => '0')$$, '22023', NULL, 'timeout 0');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', base_delay => '-1 s')$$, '22023', NULL, 'negative base_delay');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', jitter => 1.5)$$, '22023', NULL, 'jitter above 1');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', rate_limit => 0)$$, '22023', NULL, 'rate_limit 0');
SELECT throws_ok($$SELECT jobq.create_queue('tq_bad', kind => 'sql')$$, '22023', NULL, 'kind sql without handler');
SELECT throws_ok($$SELECT jobq.create_queue('bad name!')$$, '22023', NULL, 'invalid queue name');
SELECT is((SELECT count(*)::int FROM jobq.queues WHERE name LIKE 'tq\_%'), 4, 'nothing written by refused calls');

-- alter
SELECT lives_ok($$SELECT jobq.alter_queue('tq_sql', concurrency => 2, max_attempts => 9)$$, 'alter some options');
SELECT results_eq($$SELECT concurrency, max_attempts, backoff FROM jobq.queues WHERE name = 'tq_sql'$$,
                  $$VALUES (2, 9, 'exponential'::text)$$, 'given options changed, the others kept');
SELECT lives_ok($$SELECT jobq.alter_queue('tq_sql', reset => ARRAY['concurrency', 'max_attempts'])$$, 'reset options');
SELECT results_eq($$SELECT concurrency, max_attempts FROM jobq.queues WHERE name = 'tq_sql'$$,
                  $$VALUES (NULL::int, 5)$$, 'reset: NULL or the create_queue default');
SELECT throws_ok($$SELECT jobq.alter_queue('tq_sql', max_delay => '1 ms')$$, '22023', NULL,
                 'alter validates the resulting queue (max_delay < base_delay)');
SELECT throws_ok($$SELECT jobq.alter_queue('nope', concurrency => 1)$$, '42704', NULL, 'alter of an unknown queue: 42704');

-- pause / resume / drop
SELECT jobq.pause_queue('tq_ext');
SELECT ok((SELECT paused FROM jobq.queues WHERE name = 'tq_ext'), 'pause_queue');
SELECT jobq.resume_queue('tq_ext');
SELECT ok(NOT (SELECT paused FROM jobq.queues WHERE name = 'tq_ext'), 'resume_queue');

SELECT jobq.submit('tq_ext');
SELECT throws_ok($$SELECT jobq.drop_queue('tq_ext')$$, '2BP01', NULL, 'drop refuses a queue with pending jobs');
SELECT jobq.drop_queue('tq_ext', force => true);
SELECT ok(NOT EXISTS (SELECT FROM jobq.queues WHERE name = 'tq_ext')
          AND NOT EXISTS (SELECT FROM jobq.jobs WHERE queue = 'tq_ext'), 'drop force removes the queue and its jobs');

SELECT * FROM finish();
ROLLBACK;
