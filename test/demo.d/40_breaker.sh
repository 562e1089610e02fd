# test/demo part 40: a circuit breaker opening on a failing dependency,
# holding the jobs behind it, and closing once a probe succeeds.
# Sourced by test/demo with run() and q() available.

q "
CREATE TABLE demo.payment_api (up boolean);
INSERT INTO demo.payment_api VALUES (false);
GRANT SELECT ON demo.payment_api TO app;
-- a handler calling a dependency that is down until the table says up
CREATE FUNCTION demo.charge(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  IF NOT (SELECT up FROM demo.payment_api) THEN
    PERFORM jobq.retry_later('payment API unreachable', '200 ms');
  END IF;
END \$\$;
"
run "SELECT jobq.create_queue('payments', handler => 'demo.charge(jsonb)', max_attempts => 100, base_delay => '200 ms')"
# 3 failures within a minute open it; a probe is let through after 3 seconds
run "SELECT jobq.configure_breaker('payments', failure_threshold => 3, failure_window => '1 minute', cooldown => '3 seconds')"
run "SET ROLE app; SELECT count(*) AS submitted FROM jobq.submit_batch('payments', (SELECT jsonb_agg(jsonb_build_object('order', g)) FROM generate_series(1, 10) g))"
wait_for "SELECT state FROM jobq.circuit_breaker_state WHERE breaker_key = 'payments'" open 30 || true
run "SELECT breaker_key, state, failure_count, times_opened, last_error, next_probe_at - opened_at AS cooldown FROM jobq.circuit_breaker_state"
# held: pending, no attempts used while it is open
run "SELECT state, count(*), sum(attempt) AS attempts_used FROM jobq.jobs WHERE queue = 'payments' GROUP BY state"
# the dependency recovers: the next probe succeeds and closes the breaker
q "UPDATE demo.payment_api SET up = true"
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'payments' AND state = 'completed'" 10 60 || true
run "SELECT breaker_key, state, failure_count, times_opened FROM jobq.circuit_breaker_state"
run "SELECT state, count(*) FROM jobq.jobs WHERE queue = 'payments' GROUP BY state"
