-- jobq.finish_and_claim: ends the lease in hand (complete, or fail with a
-- class) and claims the next job in the same call; fenced like complete and
-- fail (retry_after included); the same with jobq.direct_access off; jobq_worker may call it,
-- PUBLIC may not.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(28);
\ir lib/as_role.sql

SELECT jobq.create_queue('fc', max_attempts => 2, base_delay => '1 hour', jitter => 0);
SELECT jobq.submit('fc', '{"n": 1}', priority => 3);
SELECT jobq.submit('fc', '{"n": 2}', priority => 2);
SELECT jobq.submit('fc', '{"n": 3}', priority => 1);

-- first call: nothing in hand
CREATE TEMP TABLE r1 AS SELECT * FROM jobq.finish_and_claim('fc', NULL, NULL, lease => '45 seconds', worker => 'w');
SELECT results_eq($$SELECT finished, payload ->> 'n', attempt, lease_expires_at = now() + interval '45 seconds' FROM r1$$,
                  $$VALUES (NULL::text, '1'::text, 1, true)$$,
                  'nothing in hand: finished NULL, the first job claimed with the lease given');
SELECT results_eq($$SELECT state, worker, claimed_by FROM jobq.jobs WHERE id = (SELECT id FROM r1)$$,
                  $$VALUES ('running'::text, 'w'::text, NULL::bigint)$$, 'claimed as an external lease');

-- complete + claim
CREATE TEMP TABLE r2 AS SELECT * FROM jobq.finish_and_claim('fc', (SELECT id FROM r1), (SELECT attempt FROM r1), '{"ok": 1}');
SELECT results_eq($$SELECT finished, payload ->> 'n' FROM r2$$, $$VALUES ('completed'::text, '2'::text)$$,
                  'completed, and the next job claimed');
SELECT results_eq($$SELECT state, result FROM jobq.jobs WHERE id = (SELECT id FROM r1)$$,
                  $$VALUES ('completed'::text, '{"ok": 1}'::jsonb)$$, 'the result is kept');
SELECT is((SELECT count(*)::int FROM jobq.job_attempts WHERE job_id = (SELECT id FROM r1) AND outcome = 'completed'), 1,
          'one completed attempt row');

-- fenced: the same lease again changes nothing, still claims
CREATE TEMP TABLE r3 AS SELECT * FROM jobq.finish_and_claim('fc', (SELECT id FROM r1), (SELECT attempt FROM r1), '{"ok": 2}');
SELECT results_eq($$SELECT finished, payload ->> 'n' FROM r3$$, $$VALUES (NULL::text, '3'::text)$$,
                  'a lease no longer current: finished NULL, nothing changed, the claim still happens');
SELECT is((SELECT result FROM jobq.jobs WHERE id = (SELECT id FROM r1)), '{"ok": 1}'::jsonb, 'the old result stays');

-- fail + claim: retry scheduled, then dead letter
CREATE TEMP TABLE r4 AS SELECT * FROM jobq.finish_and_claim('fc', (SELECT id FROM r2), (SELECT attempt FROM r2),
                                                              error => 'boom', error_class => 'transient');
SELECT results_eq($$SELECT finished, id, payload, attempt FROM r4$$,
                  $$VALUES ('pending'::text, NULL::bigint, NULL::jsonb, NULL::integer)$$,
                  'failed with a retryable class: pending; nothing due: the claim part is NULL');
SELECT results_eq($$SELECT outcome, error, error_class FROM jobq.job_attempts WHERE job_id = (SELECT id FROM r2)$$,
                  $$VALUES ('failed'::text, 'boom'::text, 'transient'::text)$$, 'the failed attempt is recorded with its class');
SELECT cmp_ok((SELECT run_at FROM jobq.jobs WHERE id = (SELECT id FROM r2)), '>', now() + interval '59 minutes',
              'the retry waits the queue''s backoff');
CREATE TEMP TABLE r5 AS SELECT * FROM jobq.finish_and_claim('fc', (SELECT id FROM r3), (SELECT attempt FROM r3),
                                                              error => 'bad input', error_class => 'permanent');
SELECT is((SELECT finished FROM r5), 'failed', 'a permanent failure: failed (dead letter)');
SELECT is((SELECT count(*)::int FROM jobq.dead_letter WHERE job_id = (SELECT id FROM r3)), 1, 'dead-lettered');
SELECT throws_ok($$SELECT * FROM jobq.finish_and_claim('fc', 1, 1, error => 'x', error_class => 'no_such_class')$$,
                 '22023', NULL, 'an unknown error class is refused like jobq.fail');

-- end only (queue NULL)
SELECT jobq.retry_now((SELECT id FROM r2));
CREATE TEMP TABLE r6 AS SELECT * FROM jobq.claim('fc');
SELECT results_eq($$SELECT finished, id FROM jobq.finish_and_claim(NULL, (SELECT id FROM r6), (SELECT attempt FROM r6))$$,
                  $$VALUES ('completed'::text, NULL::bigint)$$, 'queue NULL: ends the lease, claims nothing');

-- an executor's lease is not an external worker's to end
SELECT jobq.submit('fc', '{"n": 4}');
CREATE TEMP TABLE r7 AS SELECT * FROM jobq.claim('fc');
SET LOCAL jobq.direct_access = off;
UPDATE jobq.jobs_active SET claimed_by = 42 WHERE id = (SELECT id FROM r7);
SELECT results_eq($$SELECT finished FROM jobq.finish_and_claim(NULL, (SELECT id FROM r7), (SELECT attempt FROM r7))$$,
                  $$VALUES (NULL::text)$$, 'an executor lease is not completed');
SELECT results_eq($$SELECT finished FROM jobq.finish_and_claim(NULL, (SELECT id FROM r7), (SELECT attempt FROM r7), error => 'x')$$,
                  $$VALUES (NULL::text)$$, 'nor failed');
SELECT is((SELECT state FROM jobq.jobs WHERE id = (SELECT id FROM r7)), 'running', 'it is still running');
UPDATE jobq.jobs_active SET claimed_by = NULL WHERE id = (SELECT id FROM r7);

-- jobq.direct_access off: the same through the SQL twins
SELECT jobq.submit('fc', '{"n": 5}');
CREATE TEMP TABLE r8 AS SELECT * FROM jobq.finish_and_claim('fc', (SELECT id FROM r7), (SELECT attempt FROM r7), '{"d": 0}');
SELECT results_eq($$SELECT finished, payload ->> 'n' FROM r8$$, $$VALUES ('completed'::text, '5'::text)$$,
                  'direct_access off: completed and the next claimed');
SELECT is((SELECT result FROM jobq.jobs WHERE id = (SELECT id FROM r7)), '{"d": 0}'::jsonb, 'direct_access off: result kept');
CREATE TEMP TABLE r9 AS SELECT * FROM jobq.finish_and_claim('fc', (SELECT id FROM r8), (SELECT attempt FROM r8), error => 'e', error_class => 'permanent');
SELECT is((SELECT finished FROM r9), 'failed', 'direct_access off: failed');
RESET jobq.direct_access;

-- retry_after: the least wait before the retry, like jobq.fail's
SELECT jobq.create_queue('fc_ra', max_attempts => 3, base_delay => '1 second', jitter => 0);
SELECT jobq.submit('fc_ra', '{"n": 7}');
CREATE TEMP TABLE ra1 AS SELECT * FROM jobq.claim('fc_ra');
SELECT is((SELECT finished FROM jobq.finish_and_claim(NULL, (SELECT id FROM ra1), (SELECT attempt FROM ra1),
                                                      error => '429', error_class => 'transient',
                                                      retry_after => '2 minutes')),
          'pending', 'retry_after: pending');
SELECT cmp_ok((SELECT run_at FROM jobq.jobs WHERE id = (SELECT id FROM ra1)), '>=', now() + interval '2 minutes',
              'retry_after: the retry waits at least the given 2 minutes (the queue''s backoff is 1 second)');
SELECT throws_ok($$SELECT * FROM jobq.finish_and_claim(NULL, 1, 1, error => 'x', retry_after => '-1 minute')$$,
                 '22023', NULL, 'a negative retry_after is refused like jobq.fail');

-- a limited queue goes through jobq._claim
SELECT jobq.create_queue('fc_lim', concurrency => 1);
SELECT jobq.submit_batch('fc_lim', '[1, 2]');
CREATE TEMP TABLE l1 AS SELECT * FROM jobq.finish_and_claim('fc_lim', NULL, NULL);
SELECT results_eq($$SELECT finished, id FROM jobq.finish_and_claim('fc_lim', NULL, NULL)$$,
                  $$VALUES (NULL::text, NULL::bigint)$$, 'concurrency 1 reached: nothing claimed');
SELECT results_eq($$SELECT finished, payload FROM jobq.finish_and_claim('fc_lim', (SELECT id FROM l1), (SELECT attempt FROM l1))$$,
                  $$VALUES ('completed'::text, '2'::jsonb)$$, 'limited queue: the slot freed by the completion is taken');
SELECT throws_ok($$SELECT * FROM jobq.finish_and_claim('fc_nope', NULL, NULL)$$, '42704', NULL, 'unknown queue: 42704 like claim');

-- privileges
GRANT USAGE ON SCHEMA jobq TO PUBLIC;
CREATE ROLE fc_worker IN ROLE jobq_worker;
CREATE ROLE fc_nobody;
SELECT jobq.submit('fc', '{"n": 6}');
SELECT is(pg_temp.as_role('fc_worker', $$SELECT payload ->> 'n' FROM jobq.finish_and_claim('fc', NULL, NULL)$$), '6',
          'jobq_worker may call it');
SELECT is(pg_temp.as_role('fc_nobody', $$SELECT payload ->> 'n' FROM jobq.finish_and_claim('fc', NULL, NULL)$$), 'ERROR 42501',
          'PUBLIC may not');

SELECT * FROM finish();
ROLLBACK;
