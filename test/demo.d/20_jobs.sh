# test/demo part 20: SQL jobs running, retrying and dead-lettering.
# Sourced by test/demo with run() and q() available.

q "
CREATE SCHEMA IF NOT EXISTS demo;
CREATE TABLE demo.emails (id serial, recipient text, sent_at timestamptz DEFAULT clock_timestamp());
CREATE SEQUENCE demo.flaky_calls;
-- a handler that works
CREATE FUNCTION demo.send_email(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO demo.emails (recipient) VALUES (p->>'to');
  RETURN jsonb_build_object('sent_to', p->>'to');
END \$\$;
-- a handler whose first two calls hit a transient error (a deadlock, say)
CREATE FUNCTION demo.flaky(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  IF nextval('demo.flaky_calls') <= 2 THEN
    RAISE EXCEPTION 'upstream busy' USING ERRCODE = '40P01';
  END IF;
END \$\$;
-- a handler that can never succeed
CREATE FUNCTION demo.broken(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN PERFORM jobq.give_up('the invoice ' || (p->>'invoice') || ' does not exist'); END \$\$;
-- jobs run as the role that submits them: an application role, not a superuser
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA jobq, demo TO app;
GRANT INSERT ON demo.emails TO app;
GRANT USAGE ON demo.emails_id_seq, demo.flaky_calls TO app;
"
run "SELECT jobq.create_queue('emails', handler => 'demo.send_email(jsonb)')"
run "SELECT jobq.create_queue('flaky', handler => 'demo.flaky(jsonb)', backoff => 'exponential', base_delay => '300 ms')"
run "SELECT jobq.create_queue('billing', handler => 'demo.broken(jsonb)')"
run "SET ROLE app; SELECT jobq.submit('emails', jsonb_build_object('to', 'user' || g || '@example.com')) FROM generate_series(1, 3) g"
run "SET ROLE app; SELECT jobq.submit('flaky', '{\"task\": \"sync\"}')"
run "SET ROLE app; SELECT jobq.submit('billing', '{\"invoice\": 42}')"
# a superuser's job would run as superuser: refused (jobq.allow_superuser_jobs)
run "SELECT jobq.submit('emails', '{\"to\": \"root@example.com\"}')" || true
wait_for "SELECT count(*) FROM jobq.jobs WHERE state IN ('completed', 'failed')" 5 30 || true
run "SELECT id, queue, owner, state, attempt, error_type, last_error, result FROM jobq.jobs ORDER BY id"
run "SELECT job_id, attempt, outcome, error_class, sqlstate, error FROM jobq.job_attempts ORDER BY job_id, attempt"
run "SELECT id, job_id, queue, error_class, last_error, attempts, jsonb_array_length(history) AS history_len FROM jobq.dead_letter"
run "SELECT * FROM demo.emails"
run "SELECT pid, database, kind, state, jobs_done FROM jobq.workers"
