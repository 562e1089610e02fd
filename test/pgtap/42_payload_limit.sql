-- jobq.max_payload_size: a larger payload is refused at submit with 54000,
-- a detail giving both sizes, and nothing written: submit, submit_batch
-- (each element) and submit_http alike.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(9);

SELECT jobq.create_queue('pl_ext');
SELECT jobq.create_queue('pl_http', kind => 'http');
CREATE TEMP TABLE big AS SELECT repeat('x', 21 * 1024 * 1024) AS s;

-- the error a statement raises: SQLSTATE, message and detail
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE m text; d text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' | ' || m || ' | ' || d;
END $$;

SELECT is(current_setting('jobq.max_payload_size'), '20MB', 'jobq.max_payload_size defaults to 20MB');
SELECT matches(pg_temp.error_of($$SELECT jobq.submit('pl_ext', jsonb_build_object('blob', (SELECT s FROM big)))$$),
               '^54000 \| payload is too large \| The payload takes \d+ bytes; jobq.max_payload_size is 20971520 bytes\.$',
               'submit: 54000, with both sizes');
SELECT matches(pg_temp.error_of($$SELECT count(*) FROM jobq.submit_batch('pl_ext',
                   jsonb_build_array('{}'::jsonb, jsonb_build_object('blob', (SELECT s FROM big))))$$),
               '^54000 \| payload 2 of the batch is too large \| The payload takes \d+ bytes; jobq.max_payload_size is 20971520 bytes\.$',
               'submit_batch: the element that is too large is named');
SELECT matches(pg_temp.error_of($$SELECT jobq.submit_http('https://example.com/hook', 'POST', '{}', (SELECT s FROM big), 'pl_http')$$),
               '^54000 \| payload is too large',
               'submit_http: refused alike');
SELECT matches(pg_temp.error_of($$SELECT jobq.submit('pl_http', jsonb_build_object('url', 'https://example.com/', 'body', (SELECT s FROM big)))$$),
               '^54000 \| payload is too large',
               'submit to an http queue: refused alike');
SELECT is((SELECT count(*)::int FROM jobq.jobs WHERE queue IN ('pl_ext', 'pl_http')), 0, 'nothing written');

-- below the limit: accepted
SELECT ok(jobq.submit('pl_ext', jsonb_build_object('blob', repeat('y', 19 * 1024 * 1024))) > 0, 'a 19 MB payload is accepted');
SELECT is((SELECT count(*)::int FROM jobq.submit_batch('pl_ext', jsonb_build_array(jsonb_build_object('blob', repeat('z', 11 * 1024 * 1024)),
                                                                              jsonb_build_object('blob', repeat('w', 11 * 1024 * 1024))))),
          2, 'a batch larger than the limit whose elements are each below it is accepted');
SELECT is((SELECT count(*)::int FROM jobq.jobs WHERE queue = 'pl_ext'), 3, 'those jobs were written');

SELECT * FROM finish();
ROLLBACK;
