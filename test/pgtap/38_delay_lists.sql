-- backoff => 'custom' with delays interval[]: retry n waits delays[n], the
-- last repeating, jitter applied, max_delay not; on queues (create_queue,
-- alter_queue, reset) and on retry policies (a policy's own list; a NULL
-- backoff takes the queue's); validation; through the retry engine.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(25);

-- backoff_delay
SELECT is(jobq.backoff_delay('custom', '1 s', '1 s', 0, 1, '{60 s, 180 s, 600 s}'), interval '60 s', 'retry 1: delays[1]');
SELECT is(jobq.backoff_delay('custom', '1 s', '1 s', 0, 3, '{60 s, 180 s, 600 s}'), interval '600 s', 'retry 3: delays[3] (max_delay does not cap)');
SELECT is(jobq.backoff_delay('custom', '1 s', '1 s', 0, 9, '{60 s, 180 s, 600 s}'), interval '600 s', 'retry 9: the last one repeats');
SELECT ok((SELECT bool_and(d BETWEEN interval '90 s' AND interval '110 s') AND count(DISTINCT d) > 1
             FROM (SELECT jobq.backoff_delay('custom', '1 s', '1 s', 0.1, 2, '{10 s, 100 s}') d
                     FROM generate_series(1, 50)) x),
          'jitter still applied (+/- 10%)');
SELECT throws_ok($$SELECT jobq.backoff_delay('custom', '1 s', '1 s', 0, 1)$$, '22023', 'backoff custom needs delays', 'custom without delays');
SELECT throws_ok($$SELECT jobq.backoff_delay('fixed', '1 s', '1 s', 0, 1, '{1 s}')$$, '22023', NULL, 'delays with another strategy');
SELECT throws_ok($$SELECT jobq.backoff_delay('custom', '1 s', '1 s', 0, 1, '{}')$$, '22023', NULL, 'an empty list');
SELECT throws_ok($$SELECT jobq.backoff_delay('custom', '1 s', '1 s', 0, 1, '{1 s, NULL}')$$, '22023', NULL, 'a NULL delay');
SELECT throws_ok($$SELECT jobq.backoff_delay('custom', '1 s', '1 s', 0, 1, '{-1 s}')$$, '22023', NULL, 'a negative delay');

-- queues
SELECT jobq.create_queue('dl', max_attempts => 10, backoff => 'custom', delays => '{60 s, 180 s, 600 s}', jitter => 0);
SELECT is((SELECT delays FROM jobq.queues WHERE name = 'dl'), '{00:01:00,00:03:00,00:10:00}'::interval[], 'create_queue keeps delays');
SELECT throws_ok($$SELECT jobq.create_queue('dl_bad', backoff => 'custom')$$, '22023', 'backoff custom needs delays', 'create_queue: custom without delays');
SELECT throws_ok($$SELECT jobq.create_queue('dl_bad', delays => '{1 s}')$$, '22023', NULL, 'create_queue: delays without custom');

CREATE TEMP TABLE v (id bigint);
INSERT INTO v SELECT jobq.submit('dl');
CREATE FUNCTION pg_temp.fail_once(cls text DEFAULT 'transient') RETURNS interval LANGUAGE plpgsql AS $$
DECLARE c record;
BEGIN
    PERFORM jobq.retry_now((SELECT id FROM v));
    SELECT * INTO c FROM jobq.claim('dl', 1);
    PERFORM jobq._fail(c.id, c.attempt, 'x', cls, NULL);
    RETURN (SELECT run_at - (SELECT max(a.finished_at) FROM jobq.job_attempts a WHERE a.job_id = j.id)
              FROM jobq.jobs j WHERE j.id = c.id);
END $$;
SELECT is(pg_temp.fail_once(), interval '60 s', 'retry engine: first retry waits 60 s');
SELECT is(pg_temp.fail_once(), interval '180 s', 'second 180 s');
SELECT is(pg_temp.fail_once(), interval '600 s', 'third 600 s');
SELECT is(pg_temp.fail_once(), interval '600 s', 'fourth: the last repeats');

-- retry policies: a class with its own list; a NULL backoff takes the queue's
INSERT INTO jobq.retry_policies (queue, error_class, retry, backoff, delays)
VALUES ('dl', 'timeout', true, 'custom', '{5 s}');
SELECT is(pg_temp.fail_once('timeout'), interval '5 s', 'a policy''s own delay list');
SELECT is(pg_temp.fail_once('unknown'), interval '600 s', 'a policy with NULL backoff: the queue''s list');
SELECT throws_ok($$INSERT INTO jobq.retry_policies (queue, error_class, retry, backoff) VALUES ('dl', 'api_error', true, 'custom')$$,
                 '23514', NULL, 'a custom policy without delays is refused');
SELECT throws_ok($$INSERT INTO jobq.retry_policies (queue, error_class, retry, backoff, delays) VALUES ('dl', 'api_error', true, 'custom', '{-5 s}')$$,
                 '23514', NULL, 'a policy with an invalid list is refused');

-- alter_queue
SELECT jobq.alter_queue('dl', delays => '{1 s, 2 s}');
SELECT is((SELECT delays FROM jobq.queues WHERE name = 'dl'), '{00:00:01,00:00:02}'::interval[], 'alter_queue changes delays');
SELECT jobq.alter_queue('dl', max_attempts => 20);
SELECT is((SELECT delays FROM jobq.queues WHERE name = 'dl'), '{00:00:01,00:00:02}'::interval[], 'and keeps them when not given');
SELECT jobq.alter_queue('dl', backoff => 'fixed');
SELECT is((SELECT delays FROM jobq.queues WHERE name = 'dl'), NULL, 'another strategy drops them');
SELECT throws_ok($$SELECT jobq.alter_queue('dl', backoff => 'custom')$$, '22023', 'backoff custom needs delays', 'custom again needs a list');
SELECT jobq.alter_queue('dl', backoff => 'custom', delays => '{3 s}');
SELECT jobq.alter_queue('dl', reset => '{backoff}');
SELECT is((SELECT backoff || coalesce(delays::text, '/none') FROM jobq.queues WHERE name = 'dl'), 'exponential/none',
          'reset backoff: exponential, no delays');

SELECT * FROM finish();
ROLLBACK;
