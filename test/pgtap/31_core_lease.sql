-- Leases: heartbeat extends and says when to stop; complete and fail are
-- fenced by (id, attempt); expired leases are recovered as worker_lost
-- (attempt used); executor jobs are recovered by token; release.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(34);

SELECT jobq.create_queue('tl_ext', max_attempts => 3, base_delay => '0', jitter => 0);
CREATE TEMP TABLE v (k text PRIMARY KEY, id bigint);
INSERT INTO v SELECT 'a', jobq.submit('tl_ext', '{"a": 1}');

-- heartbeat
SELECT is((SELECT attempt FROM jobq.claim('tl_ext', 1, '10 seconds', 'old-holder')), 1, 'claimed, attempt 1');
SELECT ok(jobq.heartbeat((SELECT id FROM v WHERE k = 'a'), 1), 'heartbeat of the current lease: true');
SELECT is((SELECT lease_expires_at - now() FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'a')),
          interval '10 seconds', 'heartbeat without extend keeps the lease length');
SELECT ok(jobq.heartbeat((SELECT id FROM v WHERE k = 'a'), 1, '2 minutes'), 'heartbeat with extend');
SELECT is((SELECT lease_expires_at - now() FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'a')),
          interval '2 minutes', 'the lease now ends 2 minutes from now');
SELECT ok(NOT jobq.heartbeat((SELECT id FROM v WHERE k = 'a'), 2), 'heartbeat of a lease that never existed: false');
SELECT throws_ok($$SELECT jobq.heartbeat(1, 1, '-1 s')$$, '22023', NULL, 'negative extend refused');

-- the lease expires; recovery; another worker claims; the old holder is fenced
UPDATE jobq.jobs_active SET lease_expires_at = now() - interval '1 second'
 WHERE id = (SELECT id FROM v WHERE k = 'a');
SELECT is(jobq._recover_lost(NULL), 1, '_recover_lost(NULL) recovers the expired external lease');
SELECT results_eq($$SELECT state, attempt, error_type, run_at BETWEEN now() AND clock_timestamp() FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'a')$$,
                  $$VALUES ('pending'::text, 1, 'worker_lost'::text, true)$$,
                  'worker_lost: pending again, the attempt used, retried per policy');
SELECT results_eq($$SELECT outcome, error_class FROM jobq.job_attempts WHERE job_id = (SELECT id FROM v WHERE k = 'a')$$,
                  $$VALUES ('failed'::text, 'worker_lost'::text)$$, 'the lost attempt is recorded');
SELECT ok(NOT jobq.heartbeat((SELECT id FROM v WHERE k = 'a'), 1), 'heartbeat of the lost lease: false');
SELECT is((SELECT attempt FROM jobq.claim('tl_ext', 1, '1 minute', 'new-holder')), 2, 're-claimed: attempt 2');

SELECT ok(NOT jobq.complete((SELECT id FROM v WHERE k = 'a'), 1, '{"stale": true}'), 'stale holder: complete -> false');
SELECT is(jobq.fail((SELECT id FROM v WHERE k = 'a'), 1, 'stale', 'permanent'), NULL, 'stale holder: fail -> NULL');
SELECT ok(NOT jobq.heartbeat((SELECT id FROM v WHERE k = 'a'), 1), 'stale holder: heartbeat -> false');
SELECT results_eq($$SELECT state, attempt, worker, result FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'a')$$,
                  $$VALUES ('running'::text, 2, 'new-holder'::text, NULL::jsonb)$$,
                  'the stale holder changed nothing');
SELECT is((SELECT count(*)::int FROM jobq.job_attempts WHERE job_id = (SELECT id FROM v WHERE k = 'a')), 1,
          'no attempt row from the stale holder');
SELECT ok(jobq.complete((SELECT id FROM v WHERE k = 'a'), 2, '{"ok": true}'), 'current holder: complete -> true');
SELECT results_eq($$SELECT state, result, completed_at BETWEEN now() AND clock_timestamp(), lease_expires_at FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'a')$$,
                  $$VALUES ('completed'::text, '{"ok": true}'::jsonb, true, NULL::timestamptz)$$,
                  'completed with its result');
SELECT ok(NOT jobq.complete((SELECT id FROM v WHERE k = 'a'), 2), 'completing twice: false');
SELECT results_eq($$SELECT attempt, outcome FROM jobq.job_attempts WHERE job_id = (SELECT id FROM v WHERE k = 'a') ORDER BY attempt$$,
                  $$VALUES (1, 'failed'::text), (2, 'completed'::text)$$, 'one attempt row per finished lease');

-- a job that loses its worker every time ends in the dead letter queue
INSERT INTO v SELECT 'poison', jobq.submit('tl_ext', '{"poison": true}');
SELECT jobq.claim('tl_ext');
UPDATE jobq.jobs_active SET lease_expires_at = now() - interval '1 s' WHERE id = (SELECT id FROM v WHERE k = 'poison');
SELECT jobq._recover_lost(NULL);
SELECT jobq.claim('tl_ext');
UPDATE jobq.jobs_active SET lease_expires_at = now() - interval '1 s' WHERE id = (SELECT id FROM v WHERE k = 'poison');
SELECT jobq._recover_lost(NULL);
SELECT jobq.claim('tl_ext');
UPDATE jobq.jobs_active SET lease_expires_at = now() - interval '1 s' WHERE id = (SELECT id FROM v WHERE k = 'poison');
-- claim recovers expired leases by itself
SELECT is_empty($$SELECT * FROM jobq.claim('tl_ext')$$, 'claim recovers the expired lease (and finds nothing to run)');
SELECT results_eq($$SELECT state, attempt FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'poison')$$,
                  $$VALUES ('failed'::text, 3)$$, 'after max_attempts lost leases the job failed');
SELECT results_eq($$SELECT error_class, attempts FROM jobq.dead_letter WHERE job_id = (SELECT id FROM v WHERE k = 'poison')$$,
                  $$VALUES ('worker_lost'::text, 3)$$, 'and has a dead letter (worker_lost, 3 attempts)');

-- executors: recovery by token, not by lease
INSERT INTO v SELECT 'exec', jobq.submit('tl_ext', '{"exec": true}');
SELECT is((SELECT attempt FROM jobq._claim('tl_ext', 1, '1 hour', 'executor', 4242)), 1, '_claim with an executor token');
SELECT is((SELECT claimed_by FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'exec')), 4242::bigint, 'claimed_by = token');
SELECT is(jobq._recover_lost(ARRAY[4242]::bigint[]), 0, 'token alive: not recovered');
SELECT is(jobq._recover_lost(NULL), 0, 'live_tokens NULL: executor jobs untouched');
SELECT is(jobq._recover_lost(ARRAY[1, 2]::bigint[]), 1, 'token not alive: recovered');
SELECT is((SELECT error_type FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'exec')), 'worker_lost', 'as worker_lost');

-- release: back to pending without using the attempt
SELECT jobq._claim('tl_ext', 1, '1 hour', 'executor', 7);
SELECT ok(jobq._release((SELECT id FROM v WHERE k = 'exec'), 2), '_release of the current lease');
SELECT results_eq($$SELECT state, attempt, snoozes, claimed_by FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'exec')$$,
                  $$VALUES ('pending'::text, 2, 1, NULL::bigint)$$, 'released: pending, the lease not counted as a try (snoozes)');

-- jobq.claim itself recovers an expired external lease before claiming
-- (its direct probe of the lease index, src/worker_api.c)
SELECT jobq.create_queue('tl_probe', base_delay => '0', jitter => 0);
INSERT INTO v SELECT 'p', jobq.submit('tl_probe');
SELECT is((SELECT attempt FROM jobq.claim('tl_probe', 1, '1 minute', 'w1')), 1, 'probe job claimed, attempt 1');
UPDATE jobq.jobs_active SET lease_expires_at = now() - interval '1 second'
 WHERE id = (SELECT id FROM v WHERE k = 'p');
SELECT is((SELECT attempt FROM jobq.claim('tl_probe', 1, '1 minute', 'w2')), 2,
          'jobq.claim recovers the expired lease, then claims the job again');

SELECT * FROM finish();
ROLLBACK;
