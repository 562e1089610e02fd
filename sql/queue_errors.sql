-- jobq core queue: the exact errors of bad input (SQLSTATE, message, detail,
-- hint), and that a refused call writes nothing.
--
-- pg_temp.err(sql) runs sql and shows the error it raised, so the SQLSTATE
-- is visible without the server-version-dependent LOCATION line of
-- VERBOSITY verbose.
\set SHOW_CONTEXT never
\pset null '(null)'
CREATE FUNCTION pg_temp.err(q text, OUT code text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    code := '00000';
    message := 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END $$;
\x on

CREATE FUNCTION public.qe_handler(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT p';
CREATE FUNCTION public.qe_two(p jsonb, n int) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION public.qe_text(p text) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION public.qe_set(p jsonb) RETURNS SETOF int LANGUAGE sql AS 'SELECT 1';
CREATE PROCEDURE public.qe_proc(p jsonb) LANGUAGE sql AS '';
CREATE AGGREGATE public.qe_agg(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb);
SELECT jobq.create_queue('qe');

-- create_queue
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('qe')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('has space')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('*')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue(repeat('x', 64))$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', kind => 'cron')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', kind => 'sql')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', 'public.qe_handler(jsonb)', kind => 'external')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', 'public.qe_two(jsonb, int)')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', 'public.qe_text(text)')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', 'public.qe_set(jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', 'public.qe_proc(jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', 'public.qe_agg(jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', 'public.no_such(jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', concurrency => 0)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', max_attempts => 0)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', max_attempts => NULL)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', backoff => 'quadratic')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', base_delay => '-1 second')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', base_delay => '1 minute', max_delay => '30 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', jitter => 1.5)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', jitter => -0.1)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', jitter => 'NaN')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', timeout => '0')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', warn_after => '-1 minute')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', rate_limit => 0)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', rate_limit => 'Infinity')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', retention => '-1 hour')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('q', breaker => '')$$);
\x off
SELECT name FROM jobq.queues ORDER BY name;
\x on

-- alter_queue, pause_queue, resume_queue, drop_queue
SELECT * FROM pg_temp.err($$SELECT jobq.alter_queue('nope', concurrency => 1)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.alter_queue('qe', reset => ARRAY['colour'])$$);
SELECT * FROM pg_temp.err($$SELECT jobq.alter_queue('qe', kind => 'sql')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.alter_queue('qe', concurrency => -3)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.pause_queue('nope')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.resume_queue('nope')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.drop_queue('nope')$$);
SELECT jobq.submit('qe') > 0 AS submitted;
SELECT * FROM pg_temp.err($$SELECT jobq.drop_queue('qe')$$);
\x off
SELECT concurrency, paused FROM jobq.queues WHERE name = 'qe';
\x on

-- submit
SELECT * FROM pg_temp.err($$SELECT jobq.submit('nope')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit('qe', max_attempts => 0)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit('qe', timeout => '0')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit('http', '{"method": "GET"}')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit('http', '[1]')$$);
CREATE FUNCTION public.qe_dropped(p jsonb) RETURNS void LANGUAGE sql AS '';
SELECT jobq.create_queue('qe_dropped', 'public.qe_dropped(jsonb)');
DROP FUNCTION public.qe_dropped(jsonb);
SELECT * FROM pg_temp.err($$SELECT jobq.submit('qe_dropped')$$);
CREATE ROLE regress_jobq_bob;
GRANT USAGE ON SCHEMA jobq TO regress_jobq_bob;
REVOKE EXECUTE ON FUNCTION public.qe_handler(jsonb) FROM PUBLIC;
SELECT jobq.create_queue('qe_sql', 'public.qe_handler(jsonb)');
SET ROLE regress_jobq_bob;
SELECT * FROM pg_temp.err($$SELECT jobq.submit('qe_sql')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM jobq.claim('qe')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.create_queue('bobs')$$);
RESET ROLE;

-- submit_batch
SELECT * FROM pg_temp.err($$SELECT jobq.submit_batch('qe', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_batch('qe', '{"a": 1}')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_batch('qe', '"text"')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_batch('qe', '[1]', unique_key => 'k')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_batch('http', '[1]')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_batch('nope', '[1]')$$);

-- submit_http
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('ftp://example.com/file')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('example.com')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('http://')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('http://exa mple.com/')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', 'BREW')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', headers => '["a"]')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', headers => '{"X-Count": 3}')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', headers => '{"Bad Name": "x"}')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', headers => '{"X": "a\r\nInjected: 1"}')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', timeout_ms => 0)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', queue => 'qe')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.submit_http('https://example.com/', queue => 'nope')$$);

-- claim, heartbeat, complete, fail
SELECT * FROM pg_temp.err($$SELECT * FROM jobq.claim('nope')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM jobq.claim('qe', 0)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM jobq.claim('qe', 1, '0 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM jobq.claim('qe', 1, NULL)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.heartbeat(1, 1, '-5 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.fail(1, 1, 'x', 'flaky')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.fail(1, 1, 'x', 'transient', '-1 second')$$);

-- cancel, retry_now, dead letters
SELECT * FROM pg_temp.err($$SELECT jobq.cancel(-1)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.retry_now(-1)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.requeue_dead(-1)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.resolve_dead(-1, 'note')$$);

-- retry engine helpers
SELECT * FROM pg_temp.err($$SELECT jobq.backoff_delay('quadratic', '1 s', '1 h', 0, 1)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.backoff_delay('fixed', '1 s', '1 h', 0, 0)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.backoff_delay('fixed', '1 s', '1 h', 2, 1)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.retry_later('busy', '-1 second')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.retry_later('busy', '5 seconds')$$);
SELECT * FROM pg_temp.err($$SELECT jobq.rate_limited(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT jobq.give_up('no such customer')$$);
SELECT * FROM pg_temp.err($$INSERT INTO jobq.retry_policies (queue, error_class, retry) VALUES ('qe', 'flaky', true)$$);
\x off

-- nothing was written by the refused calls
SELECT count(*) AS jobs FROM jobq.jobs;
SELECT name FROM jobq.queues ORDER BY name;

SELECT jobq.drop_queue(name, force => true) FROM jobq.queues WHERE name LIKE 'qe%';
DROP FUNCTION public.qe_handler(jsonb), public.qe_two(jsonb, int), public.qe_text(text), public.qe_set(jsonb);
DROP PROCEDURE public.qe_proc(jsonb);
DROP AGGREGATE public.qe_agg(jsonb);
REVOKE USAGE ON SCHEMA jobq FROM regress_jobq_bob;
DROP ROLE regress_jobq_bob;
