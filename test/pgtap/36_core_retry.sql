-- The retry engine: classification (explicit, error_rules, unknown), the
-- per-class policy with queue overrides, backoff applied, retry_after as a
-- minimum, rate_limited waits that use no attempt, and the helpers that
-- raise errors carrying their class.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(41);

-- classification by the built-in rules
SELECT is(jobq.classify_error('40001'), 'transient', '40001 serialization failure: transient');
SELECT is(jobq.classify_error('40P01'), 'transient', '40P01 deadlock: transient');
SELECT is(jobq.classify_error('55P03'), 'transient', '55P03 lock not available: transient');
SELECT is(jobq.classify_error('08006'), 'transient', '08xxx connection: transient');
SELECT is(jobq.classify_error('57014'), 'timeout', '57014 query canceled: timeout');
SELECT is(jobq.classify_error('22012'), 'validation', '22xxx data exception: validation');
SELECT is(jobq.classify_error('23505'), 'validation', '23xxx integrity: validation');
SELECT is(jobq.classify_error('42P01'), 'validation', '42xxx syntax/access: validation');
SELECT is(jobq.classify_error('JQ001'), 'transient', 'JQ001 (retry_later): transient');
SELECT is(jobq.classify_error('JQ002'), 'rate_limited', 'JQ002 (rate_limited): rate_limited');
SELECT is(jobq.classify_error('JQ003'), 'permanent', 'JQ003 (give_up): permanent');
SELECT is(jobq.classify_error(NULL, 429), 'rate_limited', 'HTTP 429: rate_limited');
SELECT is(jobq.classify_error(NULL, 503), 'transient', 'HTTP 5xx: transient');
SELECT is(jobq.classify_error(NULL, 408), 'timeout', 'HTTP 408: timeout');
SELECT is(jobq.classify_error(NULL, 401), 'api_error', 'HTTP 401: api_error');
SELECT is(jobq.classify_error(NULL, 403), 'api_error', 'HTTP 403: api_error');
SELECT is(jobq.classify_error(NULL, 404), 'permanent', 'other HTTP 4xx: permanent');
SELECT is(jobq.classify_error('P0001', NULL, 'whatever'), 'unknown', 'no rule: unknown');
-- a user rule by message, ordered before the built-in ones
INSERT INTO jobq.error_rules (priority, message_pattern, error_class) VALUES (5, 'quota exceeded', 'rate_limited');
SELECT is(jobq.classify_error('P0001', NULL, 'daily quota exceeded for key'), 'rate_limited', 'a user rule on the message');

-- the helpers raise errors that carry their class and delay
SELECT throws_ok($$SELECT jobq.retry_later('busy', '30 seconds')$$, 'JQ001', 'busy', 'retry_later raises JQ001 with the message');
SELECT throws_ok($$SELECT jobq.rate_limited('slow down')$$, 'JQ002', 'slow down', 'rate_limited raises JQ002');
SELECT throws_ok($$SELECT jobq.give_up('no such customer')$$, 'JQ003', 'no such customer', 'give_up raises JQ003');
CREATE FUNCTION pg_temp.detail_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END $$;
SELECT is(pg_temp.detail_of($$SELECT jobq.retry_later('busy', '1 minute 30.5 seconds')$$),
          'jobq.retry_after=90.500000', 'the delay travels in the DETAIL');
SELECT is(jobq._retry_after_from_detail('jobq.retry_after=90.500000'), interval '90.5 seconds', 'and is read back');

-- a queue with exact delays
SELECT jobq.create_queue('tr', max_attempts => 3, base_delay => '10 s', jitter => 0, backoff => 'exponential');
-- the failures below are the test's own: the queue's circuit breaker must not hold its jobs
SELECT jobq.configure_breaker('tr', failure_threshold => 100);
CREATE TEMP TABLE v (k text PRIMARY KEY, id bigint);
CREATE FUNCTION pg_temp.run_fail(k text, err text, cls text, after interval DEFAULT NULL,
                                 st text DEFAULT NULL, http int DEFAULT NULL, det text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql AS $$
DECLARE c record;
BEGIN
    PERFORM jobq.retry_now((SELECT id FROM v WHERE v.k = run_fail.k));
    SELECT * INTO c FROM jobq.claim('tr', 1) WHERE id = (SELECT id FROM v WHERE v.k = run_fail.k);
    IF NOT FOUND THEN RETURN 'not claimed'; END IF;
    RETURN jobq._fail(c.id, c.attempt, err, cls, after, st, http, det);
END $$;

INSERT INTO v SELECT 't', jobq.submit('tr', '{"t": 1}');
SELECT is(pg_temp.run_fail('t', 'deadlock', NULL, NULL, '40P01'), 'pending', 'a transient failure is retried');
SELECT results_eq($$SELECT error_type, last_error, run_at - (SELECT max(a.finished_at) FROM jobq.job_attempts a WHERE a.job_id = jobs.id) FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 't')$$,
                  $$VALUES ('transient'::text, 'deadlock'::text, interval '10 s')$$,
                  'classified by SQLSTATE; first retry after base_delay');
SELECT is(pg_temp.run_fail('t', 'again', 'transient'), 'pending', 'second failure');
SELECT is((SELECT run_at - (SELECT max(a.finished_at) FROM jobq.job_attempts a WHERE a.job_id = jobs.id) FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 't')), interval '20 s',
          'second retry after base*2');
SELECT is(pg_temp.run_fail('t', 'again', 'transient', '1 hour'), 'failed', 'third failure of max_attempts 3: failed');

-- retry_after is a minimum, above or below the backoff
INSERT INTO v SELECT 'ra', jobq.submit('tr', '{"ra": 1}');
SELECT is(pg_temp.run_fail('ra', 'later', 'transient', '2 hours'), 'pending', 'retry_after above max_delay');
SELECT is((SELECT run_at - (SELECT max(a.finished_at) FROM jobq.job_attempts a WHERE a.job_id = jobs.id) FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'ra')), interval '2 hours',
          'retry_after honoured even beyond max_delay');
SELECT is(pg_temp.run_fail('ra', 'later', 'transient', '1 second'), 'pending', 'retry_after below the backoff');
SELECT is((SELECT run_at - (SELECT max(a.finished_at) FROM jobq.job_attempts a WHERE a.job_id = jobs.id) FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'ra')), interval '20 s',
          'a smaller retry_after does not shorten the backoff');

-- not retryable classes go straight to the dead letter queue
INSERT INTO v SELECT 'perm', jobq.submit('tr', '{"perm": 1}');
SELECT is(pg_temp.run_fail('perm', 'bad input', NULL, NULL, '22P02'), 'failed', 'validation: not retried, failed at once');

-- per-queue policy override; NULL backoff columns are the queue's own
INSERT INTO jobq.retry_policies (queue, error_class, retry, backoff, base_delay)
VALUES ('tr', 'validation', true, 'fixed', '3 seconds');
INSERT INTO v SELECT 'ov', jobq.submit('tr', '{"ov": 1}');
SELECT is(pg_temp.run_fail('ov', 'bad input', 'validation'), 'pending', 'a queue row overrides the ''*'' policy');
SELECT is((SELECT run_at - (SELECT max(a.finished_at) FROM jobq.job_attempts a WHERE a.job_id = jobs.id) FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'ov')), interval '3 s',
          'with the policy''s own backoff and base_delay');

-- rate_limited does not use up an attempt; the delay comes from the DETAIL
INSERT INTO v SELECT 'rl', jobq.submit('tr', '{"rl": 1}', max_attempts => 2);
SELECT is(pg_temp.run_fail('rl', 'slow down', NULL, NULL, 'JQ002', NULL, 'jobq.retry_after=42.000000'), 'pending',
          'rate_limited (JQ002): pending');
SELECT is((SELECT run_at - (SELECT max(a.finished_at) FROM jobq.job_attempts a WHERE a.job_id = jobs.id) FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'rl')), interval '42 s',
          'Retry-After from the DETAIL honoured');
SELECT pg_temp.run_fail('rl', '429', NULL, NULL, NULL, 429);
SELECT pg_temp.run_fail('rl', '429', 'rate_limited');
SELECT pg_temp.run_fail('rl', 'boom', 'transient');
SELECT results_eq($$SELECT state, attempt, snoozes FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'rl')$$,
                  $$VALUES ('pending'::text, 4, 3)$$,
                  'after 3 rate_limited waits and 1 failure of max_attempts 2: still pending (1 attempt used)');
SELECT is(pg_temp.run_fail('rl', 'boom', 'transient'), 'failed', 'the second real failure exhausts it');
SELECT results_eq($$SELECT outcome, error_class FROM jobq.job_attempts WHERE job_id = (SELECT id FROM v WHERE k = 'rl') ORDER BY attempt$$,
                  $$VALUES ('snoozed'::text, 'rate_limited'::text), ('snoozed', 'rate_limited'), ('snoozed', 'rate_limited'),
                           ('failed', 'transient'), ('failed', 'transient')$$,
                  'attempt history: 3 snoozes, 2 failures');

SELECT * FROM finish();
ROLLBACK;
