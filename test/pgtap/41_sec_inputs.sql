-- Input that would turn a limit into none, or that is accepted but
-- meaningless, is refused with 22023; unique keys are each owner's own
-- unless the queue shares them (unique_scope => 'queue').
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(38);

CREATE ROLE ts_alice NOLOGIN;
CREATE ROLE ts_bob NOLOGIN;
GRANT USAGE ON SCHEMA jobq TO ts_alice, ts_bob;
SELECT jobq.create_queue('ts_ext');
SELECT jobq.create_queue('ts_shared', unique_scope => 'queue');

\ir lib/as_role.sql
-- q's SQLSTATE, or 'ok'
CREATE FUNCTION pg_temp.state_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

-- V7: unique keys per owner by default
CREATE TEMP TABLE k (who text PRIMARY KEY, id bigint);
GRANT SELECT ON k TO PUBLIC;
INSERT INTO k VALUES ('alice1', pg_temp.as_role('ts_alice', $$SELECT jobq.submit('ts_ext', '{"who": "alice"}', unique_key => 'invoice-7')$$)::bigint);
INSERT INTO k VALUES ('bob1', pg_temp.as_role('ts_bob', $$SELECT jobq.submit('ts_ext', '{"who": "bob"}', unique_key => 'invoice-7')$$)::bigint);
INSERT INTO k VALUES ('alice2', pg_temp.as_role('ts_alice', $$SELECT jobq.submit('ts_ext', '{"who": "alice again"}', unique_key => 'invoice-7')$$)::bigint);
SELECT isnt((SELECT id FROM k WHERE who = 'bob1'), (SELECT id FROM k WHERE who = 'alice1'),
            'another role''s unique_key does not return (or block on) alice''s job');
SELECT is((SELECT payload->>'who' FROM jobq.jobs WHERE id = (SELECT id FROM k WHERE who = 'bob1')), 'bob',
          'bob''s payload is kept');
SELECT is((SELECT id FROM k WHERE who = 'alice2'), (SELECT id FROM k WHERE who = 'alice1'),
          'the same owner''s key still returns the not-final job');
SELECT is((SELECT count(*)::int FROM jobq.jobs WHERE queue = 'ts_ext' AND unique_key = 'invoice-7'), 2,
          'one job per owner and key');
-- unique_scope => 'queue': one key space for every role (the earlier contract)
INSERT INTO k VALUES ('alice3', pg_temp.as_role('ts_alice', $$SELECT jobq.submit('ts_shared', '{}', unique_key => 'k')$$)::bigint);
INSERT INTO k VALUES ('bob3', pg_temp.as_role('ts_bob', $$SELECT jobq.submit('ts_shared', '{}', unique_key => 'k')$$)::bigint);
SELECT is((SELECT id FROM k WHERE who = 'bob3'), (SELECT id FROM k WHERE who = 'alice3'),
          'unique_scope queue: the key is shared across roles');
SELECT is((SELECT unique_scope FROM jobq.queues WHERE name = 'ts_ext'), 'owner', 'unique_scope defaults to owner');
SELECT is(pg_temp.state_of($$SELECT jobq.create_queue('ts_bad', unique_scope => 'global')$$), '22023', 'unknown unique_scope');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_shared', reset => '{unique_scope}')$$), 'ok', 'unique_scope can be reset');
SELECT is((SELECT unique_scope FROM jobq.queues WHERE name = 'ts_shared'), 'owner', 'reset unique_scope is owner');

-- V4: limits that would round to none, or overflow
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', timeout => '1 microsecond')$$), '22023', 'job timeout of 1 microsecond');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', timeout => '0.9 milliseconds')$$), '22023', 'job timeout of 0.9 ms');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', timeout => '1000000 years')$$), '22023', 'job timeout of 1000000 years');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', timeout => '25 days')$$), '22023', 'job timeout above 24 days');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', timeout => '1 millisecond')$$), 'ok', 'job timeout of 1 ms');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', timeout => '24 days')$$), 'ok', 'job timeout of 24 days');
SELECT is(pg_temp.state_of($$SELECT count(*) FROM jobq.submit_batch('ts_ext', '[1]', timeout => '0.5 ms')$$), '22023', 'batch timeout below 1 ms');
SELECT is(pg_temp.state_of($$SELECT jobq.create_queue('ts_q1', timeout => '0.5 ms')$$), '22023', 'queue timeout below 1 ms');
SELECT is(pg_temp.state_of($$SELECT jobq.create_queue('ts_q2', timeout => '1000000 years')$$), '22023', 'queue timeout of 1000000 years');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', timeout => '1 microsecond')$$), '22023', 'alter_queue timeout below 1 ms');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', warn_after => '1 microsecond')$$), '22023', 'warn_after below 1 ms');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', max_delay => '1000000 years')$$), '22023', 'max_delay beyond a year');
SELECT is(pg_temp.state_of($$SELECT jobq.retry_later('x', '1000000 years')$$), '22023', 'retry delay beyond a year');

-- accepted but meaningless
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', run_at => 'infinity')$$), '22023', 'run_at infinity (would never run)');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', run_at => '-infinity')$$), '22023', 'run_at -infinity');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', run_at => '4713-01-01 BC')$$), '22023', 'run_at 4713 BC (would jump ahead of every job)');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', run_at => now() + interval '101 years')$$), '22023', 'run_at beyond a century');
SELECT is(pg_temp.state_of($$SELECT count(*) FROM jobq.submit_batch('ts_ext', '[1]', run_at => 'infinity')$$), '22023', 'batch run_at infinity');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', run_at => now() - interval '1 hour')$$), 'ok', 'run_at an hour ago');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', run_at => now() + interval '1 year')$$), 'ok', 'run_at a year ahead');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', rate_limit => 1e308)$$), '22023', 'rate_limit 1e308');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', rate_limit => 'NaN')$$), '22023', 'rate_limit NaN');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', rate_limit => 1e-9)$$), '22023', 'rate_limit 1e-9');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', breaker => E'dep\nERROR: forged')$$), '22023', 'breaker key with a line break');
SELECT is(pg_temp.state_of($$SELECT jobq.alter_queue('ts_ext', breaker => 'payments-api')$$), 'ok', 'a plain breaker key');

-- limits that would otherwise end in a less helpful error deeper down
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', unique_key => repeat('k', 2000))$$), '54000',
          'a unique_key over 1024 bytes is refused before the index would refuse it');
SELECT is(pg_temp.state_of($$SELECT jobq.submit('ts_ext', unique_key => repeat('k', 1024))$$), 'ok',
          'a unique_key of 1024 bytes is accepted');
SELECT is(pg_temp.state_of($$SELECT * FROM jobq.claim('ts_ext', 1, '1000 years')$$), '22023',
          'a lease past 24 days is refused (not a timestamp overflow)');
SELECT ok(jobq.backoff_delay('fixed', '1 second', '1 minute', 1e-310, 1) = interval '1 second',
          'a denormal jitter is no jitter (not an underflow error)');
SELECT * FROM finish();
ROLLBACK;
