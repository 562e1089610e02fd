-- The dead letter queue: a failed job has one dead letter with its original
-- payload and full attempt history; requeue_dead and resolve_dead.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(20);

SELECT jobq.create_queue('td', max_attempts => 2, base_delay => '0', jitter => 0);
CREATE TEMP TABLE v (k text PRIMARY KEY, id bigint);
INSERT INTO v SELECT 'j', jobq.submit('td', '{"order": 17}', priority => 4, max_attempts => 2, timeout => '9 s');

SELECT is((SELECT jobq.fail(id, attempt, 'first', 'transient', NULL, '40001') FROM jobq.claim('td', 1, '1 minute', 'w1')),
          'pending', 'first failure: retried');
-- the retry is due at the failure's clock time, after this transaction's now()
SELECT jobq.retry_now((SELECT id FROM v WHERE k = 'j'));
SELECT is((SELECT jobq.fail(id, attempt, 'second', 'unknown', NULL, NULL, 503) FROM jobq.claim('td', 1, '1 minute', 'w2')),
          'failed', 'second failure: exhausted');
SELECT results_eq($$SELECT state, error_type, last_error, completed_at >= now() FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'j')$$,
                  $$VALUES ('failed'::text, 'transient'::text, 'second'::text, true)$$,
                  'the job is failed (HTTP 503 classified transient), in jobs_final');
SELECT is((SELECT count(*)::int FROM jobq.jobs_active WHERE id = (SELECT id FROM v WHERE k = 'j')), 0, 'not in jobs_active any more');
SELECT results_eq($$SELECT queue, payload, owner::text, error_class, last_error, attempts, resolved_at, requeued_job_id
                      FROM jobq.dead_letter WHERE job_id = (SELECT id FROM v WHERE k = 'j')$$,
                  $$VALUES ('td'::text, '{"order": 17}'::jsonb, current_user::text COLLATE "default", 'transient'::text,
                            'second'::text, 2, NULL::timestamptz, NULL::bigint)$$,
                  'one dead letter with the original payload, owner, class, last error, attempts used');
SELECT is((SELECT jsonb_array_length(history) FROM jobq.dead_letter WHERE job_id = (SELECT id FROM v WHERE k = 'j')), 2,
          'history holds both attempts');
SELECT results_eq($$SELECT h ->> 'attempt', h ->> 'outcome', h ->> 'error_class', h ->> 'error', h ->> 'worker',
                           h ->> 'sqlstate', h ->> 'http_status'
                      FROM jobq.dead_letter d, jsonb_array_elements(d.history) h
                     WHERE d.job_id = (SELECT id FROM v WHERE k = 'j')$$,
                  $$VALUES ('1', 'failed', 'transient', 'first', 'w1', '40001', NULL),
                           ('2', 'failed', 'transient', 'second', 'w2', NULL, '503')$$,
                  'history: every attempt, oldest first, with class, error, worker, sqlstate, http status');

-- requeue
CREATE TEMP TABLE dl AS SELECT id FROM jobq.dead_letter WHERE job_id = (SELECT id FROM v WHERE k = 'j');
INSERT INTO v SELECT 'requeued', jobq.requeue_dead((SELECT id FROM dl));
SELECT isnt((SELECT id FROM v WHERE k = 'requeued'), (SELECT id FROM v WHERE k = 'j'), 'requeue_dead makes a new job');
SELECT results_eq($$SELECT queue, payload, state, attempt, snoozes, priority, max_attempts, timeout, owner::text
                      FROM jobq.jobs WHERE id = (SELECT id FROM v WHERE k = 'requeued')$$,
                  $$VALUES ('td'::text, '{"order": 17}'::jsonb, 'pending'::text, 0, 0, 4, 2, '9 s'::interval,
                            current_user::text COLLATE "default")$$,
                  'same queue, payload, owner and overrides; fresh attempts');
SELECT results_eq($$SELECT requeued_job_id, resolved_at = now(), resolution_note FROM jobq.dead_letter WHERE id = (SELECT id FROM dl)$$,
                  $$VALUES ((SELECT id FROM v WHERE k = 'requeued'), true, 'requeued as job ' || (SELECT id FROM v WHERE k = 'requeued'))$$,
                  'the dead letter records the new job and is resolved');
SELECT throws_ok($$SELECT jobq.requeue_dead((SELECT id FROM dl))$$, '55000', NULL, 'requeue twice: 55000');
SELECT throws_ok($$SELECT jobq.requeue_dead(-1)$$, '42704', NULL, 'unknown dead letter: 42704');
SELECT is((SELECT count(*)::int FROM jobq.claim('td')), 1, 'the requeued job is claimable');

-- resolve
INSERT INTO v SELECT 'k', jobq.submit('td', '{"k": 1}');
SELECT is((SELECT jobq.fail(c.id, c.attempt, 'nope', 'permanent') FROM jobq.claim('td') c), 'failed', 'a permanent failure');
CREATE TEMP TABLE dl2 AS SELECT id FROM jobq.dead_letter WHERE job_id = (SELECT id FROM v WHERE k = 'k');
SELECT is((SELECT attempts FROM jobq.dead_letter WHERE id = (SELECT id FROM dl2)), 1, 'dead-lettered after 1 attempt');
SELECT lives_ok($$SELECT jobq.resolve_dead((SELECT id FROM dl2), 'fixed by hand')$$, 'resolve_dead');
SELECT results_eq($$SELECT resolved_at = now(), resolution_note, requeued_job_id FROM jobq.dead_letter WHERE id = (SELECT id FROM dl2)$$,
                  $$VALUES (true, 'fixed by hand'::text, NULL::bigint)$$, 'resolved with the note');
SELECT throws_ok($$SELECT jobq.resolve_dead((SELECT id FROM dl2), 'again')$$, '55000', NULL, 'resolve twice: 55000');
SELECT throws_ok($$SELECT jobq.requeue_dead((SELECT id FROM dl2))$$, '55000', NULL, 'a resolved dead letter is not requeued');
SELECT throws_ok($$SELECT jobq.resolve_dead(-1, 'x')$$, '42704', NULL, 'unknown dead letter: 42704');

SELECT * FROM finish();
ROLLBACK;
