-- jobq install script, part 65: circuit breakers (src/breaker.c).
--
-- The live state of every breaker is in shared memory; jobq.breakers keeps
-- each key's settings and its last state (written by an executor after each
-- transition), so that an open breaker stays open across a restart.

CREATE TABLE jobq.breakers (
    breaker_key       text PRIMARY KEY,
    failure_threshold integer NOT NULL DEFAULT 5,
    failure_window    interval NOT NULL DEFAULT '5 minutes',
    cooldown          interval NOT NULL DEFAULT '10 minutes',
    half_open_probes  integer NOT NULL DEFAULT 1,
    state             text NOT NULL DEFAULT 'closed'
                      CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['closed', 'open', 'half_open'])),
    opened_at         timestamptz,
    next_probe_at     timestamptz,
    last_failure_at   timestamptz,
    last_error        text,
    times_opened      bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE jobq.breakers IS
    'jobq: circuit breaker settings (configure_breaker) and last recorded state; the live state is jobq.circuit_breaker_state';

CREATE FUNCTION jobq._breaker_set(b jobq.breakers) RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_breaker_set';
COMMENT ON FUNCTION jobq._breaker_set(jobq.breakers) IS
    'Internal: the breaker row just written reaches the live state when the transaction commits (its settings always; its state unless NULL)';

CREATE FUNCTION jobq._breaker_states(
    OUT breaker_key text, OUT state text, OUT failure_count integer,
    OUT failure_threshold integer, OUT failure_window interval, OUT cooldown interval,
    OUT half_open_probes integer, OUT opened_at timestamptz, OUT next_probe_at timestamptz,
    OUT last_failure_at timestamptz, OUT last_error text, OUT times_opened bigint)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_breaker_states';
COMMENT ON FUNCTION jobq._breaker_states() IS
    'Internal: every circuit breaker of this database, live (behind jobq.circuit_breaker_state)';

CREATE VIEW jobq.circuit_breaker_state AS
    SELECT s.breaker_key, s.state, s.failure_count, s.failure_threshold, s.failure_window,
           s.cooldown, s.half_open_probes, s.opened_at, s.next_probe_at,
           s.last_failure_at, s.last_error, s.times_opened
      FROM jobq._breaker_states() s;
COMMENT ON VIEW jobq.circuit_breaker_state IS
    'jobq: every circuit breaker, live: state (closed, open, half_open), failure_count (retryable failures within failure_window), its settings, when it opened and when it admits a probe, the last failure, how many times it opened';

CREATE FUNCTION jobq._check_breaker_key(breaker_key text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF breaker_key IS NULL OR breaker_key = '' OR length(breaker_key) > 200
       OR breaker_key ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid breaker key %s', coalesce(quote_literal(left(breaker_key, 80)), 'NULL')),
            DETAIL = 'A circuit breaker key has 1 to 200 characters and no control characters: a queue''s breaker option, else its name.',
            HINT = 'jobq.circuit_breaker_state lists the keys in use.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_breaker_key(text) IS 'Internal: validates a circuit breaker key.';

CREATE FUNCTION jobq._check_breaker_time(t interval, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF t IS NULL OR NOT jobq._timeout_in_range(t) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s must be between 1 millisecond and 24 days, not %s', what, coalesce(t::text, 'NULL')),
            HINT = 'Pass an interval such as ''5 minutes''.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_breaker_time(interval, text) IS 'Internal: validates a circuit breaker time (failure_window, cooldown).';

CREATE FUNCTION jobq.configure_breaker(breaker_key text, failure_threshold integer DEFAULT 5,
                                       failure_window interval DEFAULT '5 minutes',
                                       cooldown interval DEFAULT '10 minutes',
                                       half_open_probes integer DEFAULT 1)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    b jobq.breakers;
BEGIN
    PERFORM jobq._check_breaker_key(breaker_key);
    IF failure_threshold IS NULL OR failure_threshold NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('failure_threshold must be between 1 and 100, not %s', coalesce(failure_threshold::text, 'NULL')),
            DETAIL = 'That many retryable failures within failure_window open the breaker.';
    END IF;
    IF half_open_probes IS NULL OR half_open_probes NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('half_open_probes must be between 1 and 100, not %s', coalesce(half_open_probes::text, 'NULL')),
            DETAIL = 'A half open breaker lets that many jobs run to test the dependency.';
    END IF;
    PERFORM jobq._check_breaker_time(failure_window, 'failure_window');
    PERFORM jobq._check_breaker_time(cooldown, 'cooldown');
    INSERT INTO jobq.breakers AS x (breaker_key, failure_threshold, failure_window, cooldown, half_open_probes)
    VALUES (configure_breaker.breaker_key, configure_breaker.failure_threshold,
            configure_breaker.failure_window, configure_breaker.cooldown,
            configure_breaker.half_open_probes)
    ON CONFLICT ON CONSTRAINT breakers_pkey DO UPDATE
       SET failure_threshold = EXCLUDED.failure_threshold, failure_window = EXCLUDED.failure_window,
           cooldown = EXCLUDED.cooldown, half_open_probes = EXCLUDED.half_open_probes
    RETURNING x.* INTO b;
    -- only the settings change: a NULL state keeps the live one
    b.state := NULL;
    PERFORM jobq._breaker_set(b);
END
$fn$;
COMMENT ON FUNCTION jobq.configure_breaker(text, integer, interval, interval, integer) IS
    'jobq: sets circuit breaker breaker_key''s settings: failure_threshold retryable failures within failure_window open it for cooldown, then half_open_probes jobs test the dependency';

CREATE FUNCTION jobq.reset_breaker(breaker_key text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    b jobq.breakers;
BEGIN
    PERFORM jobq._check_breaker_key(breaker_key);
    INSERT INTO jobq.breakers AS x (breaker_key, state)
    VALUES (reset_breaker.breaker_key, 'closed')
    ON CONFLICT ON CONSTRAINT breakers_pkey DO UPDATE
       SET state = 'closed', opened_at = NULL, next_probe_at = NULL
    RETURNING x.* INTO b;
    PERFORM jobq._breaker_set(b);
END
$fn$;
COMMENT ON FUNCTION jobq.reset_breaker(text) IS
    'jobq: closes circuit breaker breaker_key and forgets its failures; the jobs it held run at once';

CREATE FUNCTION jobq.trip_breaker(breaker_key text, cooldown interval DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    b jobq.breakers;
BEGIN
    PERFORM jobq._check_breaker_key(breaker_key);
    IF cooldown IS NOT NULL THEN
        PERFORM jobq._check_breaker_time(cooldown, 'cooldown');
    END IF;
    INSERT INTO jobq.breakers AS x (breaker_key) VALUES (trip_breaker.breaker_key)
    ON CONFLICT ON CONSTRAINT breakers_pkey DO NOTHING;
    UPDATE jobq.breakers x
       SET state = 'open', opened_at = clock_timestamp(),
           next_probe_at = clock_timestamp() + coalesce(trip_breaker.cooldown, x.cooldown)
     WHERE x.breaker_key = trip_breaker.breaker_key
    RETURNING x.* INTO b;
    PERFORM jobq._breaker_set(b);
END
$fn$;
COMMENT ON FUNCTION jobq.trip_breaker(text, interval) IS
    'jobq: opens circuit breaker breaker_key now, for cooldown (default: its own): no job behind it starts until then';

REVOKE ALL ON FUNCTION jobq._breaker_set(jobq.breakers), jobq._breaker_states(),
    jobq._check_breaker_key(text), jobq._check_breaker_time(interval, text),
    jobq.configure_breaker(text, integer, interval, interval, integer),
    jobq.reset_breaker(text), jobq.trip_breaker(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.configure_breaker(text, integer, interval, interval, integer),
    jobq.reset_breaker(text), jobq.trip_breaker(text, interval) TO jobq_admin;
REVOKE ALL ON jobq.breakers FROM PUBLIC;
GRANT SELECT ON jobq.breakers, jobq.circuit_breaker_state TO jobq_admin, jobq_worker;
