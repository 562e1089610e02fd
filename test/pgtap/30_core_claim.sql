-- claim: order (priority DESC, run_at, id), batches, leases, attempt
-- incremented at claim, due jobs only, paused queues, concurrency limit,
-- rate limit.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(25);

SELECT jobq.create_queue('tc_ext');
CREATE TEMP TABLE j (name text PRIMARY KEY, id bigint);
INSERT INTO j SELECT 'low_old',   jobq.submit('tc_ext', '{"n": "low_old"}', run_at => now() - interval '2 hours', priority => 0);
INSERT INTO j SELECT 'high_new',  jobq.submit('tc_ext', '{"n": "high_new"}', run_at => now() - interval '1 minute', priority => 10);
INSERT INTO j SELECT 'high_old',  jobq.submit('tc_ext', '{"n": "high_old"}', run_at => now() - interval '1 hour', priority => 10);
INSERT INTO j SELECT 'mid_a',     jobq.submit('tc_ext', '{"n": "mid_a"}', run_at => now() - interval '1 minute', priority => 5);
INSERT INTO j SELECT 'mid_b',     jobq.submit('tc_ext', '{"n": "mid_b"}', run_at => now() - interval '1 minute', priority => 5);
INSERT INTO j SELECT 'future',    jobq.submit('tc_ext', '{"n": "future"}', run_at => now() + interval '1 hour', priority => 100);
INSERT INTO j SELECT 'neg',       jobq.submit('tc_ext', '{"n": "neg"}', priority => -1);

CREATE TEMP TABLE c1 AS SELECT * FROM jobq.claim('tc_ext', 3, '45 seconds', 'w-1');
SELECT results_eq($$SELECT payload ->> 'n' FROM c1$$,
                  $$VALUES ('high_old'), ('high_new'), ('mid_a')$$,
                  'claim takes priority DESC, then run_at, then id, in that order');
SELECT ok((SELECT bool_and(attempt = 1) FROM c1), 'attempt incremented at claim (0 -> 1)');
SELECT ok((SELECT bool_and(lease_expires_at = now() + interval '45 seconds') FROM c1), 'lease_expires_at = now() + lease');
SELECT results_eq($$SELECT state, attempt, worker, claimed_by, started_at = now(), last_heartbeat = now()
                      FROM jobq.jobs WHERE id = (SELECT id FROM j WHERE name = 'high_old')$$,
                  $$VALUES ('running'::text, 1, 'w-1'::text, NULL::bigint, true, true)$$,
                  'a claimed job is running, with worker, no executor token, started_at and heartbeat');
CREATE TEMP TABLE c2 AS SELECT * FROM jobq.claim('tc_ext', 10);
SELECT results_eq($$SELECT payload ->> 'n' FROM c2$$,
                  $$VALUES ('mid_b'), ('low_old'), ('neg')$$,
                  'the next claim skips running jobs and future jobs');
SELECT is((SELECT lease_expires_at - now() FROM c2 LIMIT 1), interval '30 seconds', 'default lease 30 seconds');
SELECT is_empty($$SELECT * FROM jobq.claim('tc_ext')$$, 'nothing due: empty claim');
SELECT is((SELECT state FROM jobq.jobs WHERE id = (SELECT id FROM j WHERE name = 'future')), 'pending',
          'a job with run_at in the future is not claimed, whatever its priority');
SELECT ok(jobq.retry_now((SELECT id FROM j WHERE name = 'future')), 'retry_now makes it due');
SELECT results_eq($$SELECT payload ->> 'n' FROM jobq.claim('tc_ext')$$, $$VALUES ('future')$$, 'and claimable');

SELECT throws_ok($$SELECT * FROM jobq.claim('tc_ext', 0)$$, '22023', NULL, 'max_jobs 0 refused');
SELECT throws_ok($$SELECT * FROM jobq.claim('tc_ext', 1, '0 seconds')$$, '22023', NULL, 'lease 0 refused');
SELECT throws_ok($$SELECT * FROM jobq.claim('tc_nope')$$, '42704', NULL, 'unknown queue: 42704');

-- paused
SELECT jobq.create_queue('tc_paused');
SELECT jobq.submit('tc_paused');
SELECT jobq.pause_queue('tc_paused');
SELECT is_empty($$SELECT * FROM jobq.claim('tc_paused')$$, 'a paused queue gives nothing');
SELECT jobq.resume_queue('tc_paused');
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_paused')), 1, 'resumed: the job is claimed');

-- concurrency
SELECT jobq.create_queue('tc_conc', concurrency => 2);
SELECT jobq.submit_batch('tc_conc', '[1, 2, 3, 4, 5]');
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_conc', 5)), 2, 'concurrency 2: a claim of 5 gets 2');
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_conc', 5)), 0, 'concurrency 2 reached: nothing more');
SELECT ok((SELECT jobq.complete(id, attempt) FROM jobq.jobs WHERE queue = 'tc_conc' AND state = 'running' ORDER BY id LIMIT 1),
          'one of them completes');
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_conc', 5)), 1, 'a slot is free again: 1 more');
SELECT is((SELECT count(*)::int FROM jobq.jobs WHERE queue = 'tc_conc' AND state = 'running'), 2, 'never more than 2 running');

-- rate limit: token bucket of capacity max(1, rate) refilled at rate/s
SELECT jobq.create_queue('tc_rate', rate_limit => 3);
SELECT jobq.submit_batch('tc_rate', '[1, 2, 3, 4, 5, 6, 7, 8]');
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_rate', 8)), 3, 'rate_limit 3/s: a burst of 3');
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_rate', 8)), 0, 'bucket empty: nothing (same instant)');
-- one second later (the bucket state is moved back instead of sleeping)
UPDATE jobq.queues SET rate_refilled_at = rate_refilled_at - interval '1 second' WHERE name = 'tc_rate';
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_rate', 8)), 3, 'after 1 s: 3 more');
UPDATE jobq.queues SET rate_refilled_at = rate_refilled_at - interval '0.4 second' WHERE name = 'tc_rate';
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_rate', 8)), 1, 'after 0.4 s: 1 more (1.2 tokens)');
UPDATE jobq.queues SET rate_refilled_at = rate_refilled_at - interval '1 hour' WHERE name = 'tc_rate';
SELECT is((SELECT count(*)::int FROM jobq.claim('tc_rate', 8)), 1, 'after a long idle time the burst is still capped (1 left)');

SELECT * FROM finish();
ROLLBACK;
