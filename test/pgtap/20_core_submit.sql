-- submit, submit_batch, submit_http: defaults, per-job overrides, owner,
-- unique_key, cancel and retry_now.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(43);

SELECT jobq.create_queue('ts_ext', max_attempts => 3);
CREATE TEMP TABLE ids (name text PRIMARY KEY, id bigint);

-- defaults
INSERT INTO ids SELECT 'plain', jobq.submit('ts_ext');
SELECT results_eq($$SELECT j.queue, j.payload, j.state, j.priority, j.run_at = now(), j.attempt,
                           j.max_attempts, j.unique_key, j.timeout, j.owner::text, j.snoozes
                      FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'plain'$$,
    $$VALUES ('ts_ext'::text, '{}'::jsonb, 'pending'::text, 0, true, 0, NULL::int, NULL::text,
              NULL::interval, current_user::text COLLATE "default", 0)$$,
    'submit defaults: empty payload, pending, priority 0, run_at now(), attempt 0, queue''s max_attempts, owner = caller');
SELECT ok((SELECT created_at IS NOT NULL AND started_at IS NULL AND completed_at IS NULL
             FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'plain'), 'timestamps of a new job');
SELECT is((SELECT j.tableoid::regclass::text FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'plain'),
          'jobq.jobs_active', 'a pending job lives in jobs_active');
INSERT INTO ids SELECT 'nullpayload', jobq.submit('ts_ext', NULL);
SELECT is((SELECT payload FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'nullpayload'), '{}'::jsonb,
          'a NULL payload is stored as {}');

-- per-job overrides
INSERT INTO ids SELECT 'over', jobq.submit('ts_ext', '{"k": 1}', run_at => now() + interval '1 hour',
                                         priority => 7, max_attempts => 9, timeout => '5 seconds');
SELECT results_eq($$SELECT payload, priority, run_at - now(), max_attempts, timeout
                      FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'over'$$,
    $$VALUES ('{"k": 1}'::jsonb, 7, '1 hour'::interval, 9, '5 seconds'::interval)$$,
    'per-job payload, run_at, priority, max_attempts, timeout');
SELECT throws_ok($$SELECT jobq.submit('ts_ext', max_attempts => 0)$$, '22023', NULL, 'max_attempts 0 refused');
SELECT throws_ok($$SELECT jobq.submit('ts_ext', timeout => '-1 s')$$, '22023', NULL, 'negative timeout refused');
SELECT throws_ok($$SELECT jobq.submit('no_such_queue')$$, '42704', NULL, 'unknown queue: 42704');
SELECT throws_ok($$SELECT jobq.submit(NULL)$$, '22004', NULL, 'NULL queue: 22004');

-- the handler's privilege is checked at submit: a dropped handler
CREATE FUNCTION pg_temp.gone(p jsonb) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION public.ts_gone(p jsonb) RETURNS void LANGUAGE sql AS '';
SELECT jobq.create_queue('ts_gone', 'public.ts_gone(jsonb)');
DROP FUNCTION public.ts_gone(jsonb);
SELECT throws_ok($$SELECT jobq.submit('ts_gone')$$, '42883', NULL, 'submit to a queue whose handler was dropped: 42883');

-- submit_batch
INSERT INTO ids SELECT 'b' || n, id FROM jobq.submit_batch('ts_ext', '[{"n": 1}, {"n": 2}, 3]', priority => 2)
    WITH ORDINALITY AS t(id, n);
SELECT results_eq($$SELECT j.payload, j.priority, j.state FROM jobq.jobs j JOIN ids USING (id)
                     WHERE ids.name LIKE 'b_' ORDER BY ids.name$$,
                  $$VALUES ('{"n": 1}'::jsonb, 2, 'pending'::text), ('{"n": 2}'::jsonb, 2, 'pending'),
                           ('3'::jsonb, 2, 'pending')$$,
                  'submit_batch: one job per element, ids in array order, options applied');
SELECT ok((SELECT max(id) - min(id) = 2 FROM ids WHERE name LIKE 'b_'), 'batch ids are consecutive');
SELECT is((SELECT count(*)::int FROM jobq.submit_batch('ts_ext', '[]')), 0, 'an empty array submits nothing');
SELECT throws_ok($$SELECT jobq.submit_batch('ts_ext', '{"a": 1}')$$, '22023', NULL, 'payloads must be an array');
SELECT throws_ok($$SELECT jobq.submit_batch('ts_ext', '[1]', unique_key => 'k')$$, '0A000', NULL,
                 'submit_batch takes no unique_key');
-- submit_batch writes its rows directly (bulk_insert.c): the same row submit
-- writes (both into one open batch: submit_batch alone makes a batch of its own)
INSERT INTO ids SELECT 'batch', jobq.create_batch();
INSERT INTO ids SELECT 'same1', jobq.submit('ts_ext', '{"n": 9}', priority => 4, max_attempts => 5, timeout => '7 s',
                                            batch_id => (SELECT id FROM ids WHERE name = 'batch'));
INSERT INTO ids SELECT 'same2', t.id FROM jobq.submit_batch('ts_ext', '[{"n": 9}]', priority => 4, max_attempts => 5, timeout => '7 s',
                                                            batch_id => (SELECT id FROM ids WHERE name = 'batch')) AS t(id);
SELECT is((SELECT to_jsonb(j) - 'id' FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'same2'),
          (SELECT to_jsonb(j) - 'id' FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'same1'),
          'submit_batch writes every column as submit does');
-- submit without unique_key writes directly, with one through SQL (ON CONFLICT): the same row
INSERT INTO ids SELECT 'same3', jobq.submit('ts_ext', '{"n": 9}', priority => 4, max_attempts => 5, timeout => '7 s', unique_key => 'u9');
SELECT is((SELECT to_jsonb(j) - 'id' - 'unique_key' - 'unique_owner' FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'same3'),
          (SELECT to_jsonb(j) - 'id' - 'unique_key' - 'unique_owner' - 'batch_id' || '{"batch_id": null}' FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'same1'),
          'submit writes the same row directly as through SQL');
-- jobq's tables take no user triggers (the direct writes would not fire them)
CREATE FUNCTION public.ts_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NEW; END $$;
SELECT throws_ok($$CREATE TRIGGER ts_note AFTER INSERT ON jobq.jobs_active
                   FOR EACH ROW EXECUTE FUNCTION public.ts_note()$$, '0A000', NULL,
                 'a trigger on jobq.jobs_active is refused');
-- with jobq.direct_access off, submit and submit_batch insert through SQL: the same rows
SET jobq.direct_access = off;
INSERT INTO ids SELECT 'sql1', jobq.submit('ts_ext', '{"n": 9}', priority => 4, max_attempts => 5, timeout => '7 s',
                                           batch_id => (SELECT id FROM ids WHERE name = 'batch'));
INSERT INTO ids SELECT 'sql2', t.id FROM jobq.submit_batch('ts_ext', '[{"n": 9}]', priority => 4, max_attempts => 5, timeout => '7 s',
                                                           batch_id => (SELECT id FROM ids WHERE name = 'batch')) AS t(id);
RESET jobq.direct_access;
SELECT is((SELECT jsonb_agg(to_jsonb(j) - 'id' ORDER BY ids.name) FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name IN ('sql1', 'sql2')),
          (SELECT jsonb_agg(to_jsonb(j) - 'id') FROM jobq.jobs j JOIN ids USING (id), generate_series(1, 2) WHERE ids.name = 'same1'),
          'with jobq.direct_access off, submit and submit_batch write the rows the direct paths write');

-- submit_http
INSERT INTO ids SELECT 'http', jobq.submit_http('https://example.com/hook?x=1', 'post',
                                               '{"Content-Type": "application/json"}', '{"a":1}');
SELECT results_eq($$SELECT j.queue, j.payload FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'http'$$,
    $$VALUES ('http'::text, '{"url": "https://example.com/hook?x=1", "method": "POST",
              "headers": {"Content-Type": "application/json"}, "body": "{\"a\":1}", "timeout_ms": null}'::jsonb)$$,
    'submit_http stores {url, method, headers, body, timeout_ms} in queue http (timeout_ms NULL: the queue''s timeout applies)');
INSERT INTO ids SELECT 'http2', jobq.submit_http('http://[2606:4700::1]:8080/', timeout => '2 seconds');
SELECT is((SELECT payload - 'url' FROM jobq.jobs j JOIN ids USING (id) WHERE ids.name = 'http2'),
          '{"method": "GET", "headers": {}, "body": null, "timeout_ms": 2000}'::jsonb,
          'submit_http defaults: GET, no headers, no body; timeout_ms from the job timeout');
SELECT throws_ok($$SELECT jobq.submit_http('ftp://example.com/')$$, '22023', NULL, 'URL scheme must be http(s)');
SELECT throws_ok($$SELECT jobq.submit_http('http://exa mple.com/')$$, '22023', NULL, 'URL without spaces');
SELECT throws_ok($$SELECT jobq.submit_http('http:///path')$$, '22023', NULL, 'URL needs a host');
SELECT throws_ok($$SELECT jobq.submit_http('http://example.com/', 'BREW')$$, '22023', NULL, 'unknown method');
SELECT throws_ok($$SELECT jobq.submit_http('http://example.com/', headers => '[]')$$, '22023', NULL, 'headers must be an object');
SELECT throws_ok($$SELECT jobq.submit_http('http://example.com/', headers => '{"X": 1}')$$, '22023', NULL, 'header values must be strings');
SELECT throws_ok($$SELECT jobq.submit_http('http://example.com/', headers => '{"X": "a\r\nB: c"}')$$, '22023', NULL, 'no line breaks in header values');
SELECT throws_ok($$SELECT jobq.submit_http('http://example.com/', queue => 'ts_ext')$$, '22023', NULL, 'submit_http needs an http queue');
SELECT throws_ok($$SELECT jobq.submit('http', '{"no": "url"}')$$, '22023', NULL, 'submit to an http queue validates the payload');

-- unique_key
INSERT INTO ids SELECT 'u1', jobq.submit('ts_ext', '{"v": 1}', unique_key => 'key-1');
INSERT INTO ids SELECT 'u2', jobq.submit('ts_ext', '{"v": 2}', unique_key => 'key-1');
SELECT is((SELECT id FROM ids WHERE name = 'u2'), (SELECT id FROM ids WHERE name = 'u1'),
          'same queue and unique_key while not final: the same id');
SELECT is((SELECT payload FROM jobq.jobs WHERE id = (SELECT id FROM ids WHERE name = 'u1')), '{"v": 1}'::jsonb,
          'the first job is kept unchanged');
SELECT jobq.create_queue('ts_ext2');
INSERT INTO ids SELECT 'u3', jobq.submit('ts_ext2', '{}', unique_key => 'key-1');
SELECT isnt((SELECT id FROM ids WHERE name = 'u3'), (SELECT id FROM ids WHERE name = 'u1'),
            'unique_key is scoped to its queue');
-- running is not final either
SELECT ok((SELECT count(*) = 1 FROM jobq.claim('ts_ext2', 1, '1 minute')), 'claimed the ts_ext2 job');
SELECT is(jobq.submit('ts_ext2', '{}', unique_key => 'key-1'), (SELECT id FROM ids WHERE name = 'u3'),
          'a running job keeps its unique_key');
SELECT ok(jobq.cancel((SELECT id FROM ids WHERE name = 'u1')), 'cancel the first keyed job');
INSERT INTO ids SELECT 'u4', jobq.submit('ts_ext', '{"v": 4}', unique_key => 'key-1');
SELECT ok((SELECT id FROM ids WHERE name = 'u4') > (SELECT id FROM ids WHERE name = 'u1'),
          'once final, the key is free again: a new job');

-- cancel and retry_now
SELECT is((SELECT state || '/' || tableoid::regclass::text FROM jobq.jobs WHERE id = (SELECT id FROM ids WHERE name = 'u1')),
          'cancelled/jobq.jobs_final', 'a cancelled job is final (jobs_final)');
SELECT ok(NOT jobq.cancel((SELECT id FROM ids WHERE name = 'u1')), 'cancel of a final job: false');
SELECT throws_ok($$SELECT jobq.cancel(-1)$$, '42704', NULL, 'cancel of an unknown job: 42704');
SELECT ok(jobq.retry_now((SELECT id FROM ids WHERE name = 'over')), 'retry_now of a pending job scheduled later: true');
SELECT is((SELECT run_at FROM jobq.jobs WHERE id = (SELECT id FROM ids WHERE name = 'over')), now(),
          'retry_now: due now');
SELECT ok(NOT jobq.retry_now((SELECT id FROM ids WHERE name = 'u1')), 'retry_now of a final job: false');

SELECT * FROM finish();
ROLLBACK;
