-- jobq install script, part 30: the retry engine, the one place that
-- decides what happens after a failed attempt:
--   classification   jobq.classify_error (explicit class wins; else
--                    jobq.error_rules; else 'unknown')
--   policy           jobq._retry_policy (queue row, else '*' row; NULL
--                    backoff columns = the queue's own)
--   delay            jobq.backoff_delay (strategy or delay list, cap, jitter), raised to
--                    an explicit retry_after
--   decision         jobq._retry_decision (retry or dead letter; a
--                    rate_limited wait does not use up an attempt)
-- and the helpers handlers raise to choose a class (jobq.retry_later,
-- jobq.rate_limited, jobq.give_up).  See src/README.md "Error classes".

---------------------------------------------------------------------------
-- backoff
---------------------------------------------------------------------------
CREATE FUNCTION jobq.backoff_delay(strategy text, base_delay interval,
                                   max_delay interval, jitter double precision,
                                   n integer, delays interval[] DEFAULT NULL)
    RETURNS interval
    LANGUAGE plpgsql VOLATILE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    base    float8;
    cap     float8;
    factor  float8;
    a       float8 := 1;
    b       float8 := 1;
    t       float8;
    d       float8;
BEGIN
    IF strategy IS NULL OR NOT (strategy = ANY (jobq._backoff_strategies())) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown backoff strategy "%s"', strategy),
            DETAIL = 'backoff is the strategy that spaces the retries of a job.',
            HINT = 'Use one of exponential, linear, fibonacci, aggressive, fixed, custom.';
    END IF;
    IF (strategy = 'custom') <> (delays IS NOT NULL) OR NOT jobq._delays_valid(delays) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = CASE WHEN strategy = 'custom' AND delays IS NULL THEN 'backoff custom needs delays'
                           WHEN strategy <> 'custom' THEN format('delays are only for backoff custom, not %s', strategy)
                           ELSE format('invalid delays %s', delays) END,
            DETAIL = 'With backoff custom, retry n waits delays[n] and the last delay repeats: 1 to 100 delays, each from 0 to 1 year.',
            HINT = 'Pass e.g. backoff => ''custom'', delays => ''{60 s, 180 s, 600 s}''.';
    END IF;
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retry number must be at least 1, not %s', coalesce(n::text, 'NULL')),
            DETAIL = 'n = 1 is the delay before the first retry.',
            HINT = 'Pass the number of the retry, 1 or more.';
    END IF;
    IF jitter IS NULL OR NOT (jitter >= 0 AND jitter <= 1) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('jitter must be between 0 and 1, not %s', coalesce(jitter::text, 'NULL')),
            DETAIL = 'jitter is the +/- fraction applied to every backoff delay.',
            HINT = 'Pass 0 for exact delays, 0.1 for +/- 10%.';
    END IF;
    IF base_delay IS NULL OR base_delay < interval '0' OR max_delay IS NULL OR max_delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'base_delay and max_delay must not be NULL or negative',
            DETAIL = 'The delay starts from base_delay and never exceeds max_delay.',
            HINT = 'Pass intervals such as ''1 second'' and ''1 hour''.';
    END IF;

    -- custom: the list as given (max_delay does not cap it), jitter applied
    IF strategy = 'custom' THEN
        d := extract(epoch FROM delays[least(n, cardinality(delays))]);
        IF jitter > 0 THEN
            d := d * (1 + jitter * (2 * random() - 1));
        END IF;
        RETURN make_interval(secs => greatest(d, 0));
    END IF;

    base := extract(epoch FROM base_delay);
    cap := extract(epoch FROM max_delay);
    -- Exponents are clamped: the cap is reached long before, and power()
    -- raises on overflow.
    CASE strategy
        WHEN 'exponential' THEN factor := power(2::float8, least(n - 1, 200));
        WHEN 'aggressive' THEN factor := power(3::float8, least(n - 1, 200));
        WHEN 'linear' THEN factor := n;
        WHEN 'fixed' THEN factor := 1;
        WHEN 'fibonacci' THEN
            FOR i IN 3 .. least(n, 300) LOOP
                t := a + b; a := b; b := t;
            END LOOP;
            factor := b;
    END CASE;

    -- Cap, then jitter, then cap again: a delay is never above max_delay,
    -- and delays at the cap still spread over [cap*(1-jitter), cap].
    d := least(base * factor, cap);
    -- a jitter under a billionth changes nothing (and a denormal one would
    -- underflow in the product)
    IF jitter >= 1e-9 THEN
        d := d * (1 + jitter * (2 * random() - 1));
    END IF;
    d := least(greatest(d, 0), cap);
    RETURN make_interval(secs => d);
END
$fn$;
COMMENT ON FUNCTION jobq.backoff_delay(text, interval, interval, double precision, integer, interval[]) IS
    'jobq: delay before retry n (n = 1 first retry): exponential base*2^(n-1), linear base*n, fibonacci base*fib(n), aggressive base*3^(n-1), fixed base; capped at max_delay, then +/- jitter fraction, never above max_delay; custom: delays[n], the last one repeating, +/- jitter (max_delay does not apply)';

---------------------------------------------------------------------------
-- classification
---------------------------------------------------------------------------
CREATE FUNCTION jobq.classify_error(sqlstate text, http_status integer DEFAULT NULL,
                                    message text DEFAULT NULL)
    RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(
        (SELECT r.error_class
           FROM jobq.error_rules r
          WHERE (r.sqlstate IS NULL OR classify_error.sqlstate LIKE r.sqlstate)
            AND (r.http_status_min IS NULL
                 OR classify_error.http_status BETWEEN r.http_status_min AND r.http_status_max)
            AND (r.message_pattern IS NULL OR classify_error.message ~ r.message_pattern)
          ORDER BY r.priority, r.id
          LIMIT 1),
        'unknown');
END;
COMMENT ON FUNCTION jobq.classify_error(text, integer, text) IS
    'jobq: the error class jobq.error_rules gives an error (SQLSTATE, HTTP status, message); ''unknown'' when no rule matches';

CREATE FUNCTION jobq._check_error_class(error_class text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF error_class IS NOT NULL AND NOT (error_class = ANY (jobq._error_classes())) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown error class "%s"', error_class),
            DETAIL = 'The error class decides whether and how a failed job is retried.',
            HINT = 'Use one of ' || array_to_string(jobq._error_classes(), ', ') || '.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_error_class(text) IS
    'Internal: raises 22023 unless error_class is NULL or a known class.';

---------------------------------------------------------------------------
-- policy
---------------------------------------------------------------------------
CREATE FUNCTION jobq._retry_policy(queue text, error_class text,
                                   OUT retry boolean, OUT backoff text,
                                   OUT base_delay interval, OUT max_delay interval,
                                   OUT delays interval[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(p.retry, false),
           coalesce(p.backoff, q.backoff),
           coalesce(p.base_delay, q.base_delay),
           coalesce(p.max_delay, q.max_delay),
           -- a policy's own strategy comes with its own delays
           CASE WHEN p.backoff IS NOT NULL THEN p.delays ELSE q.delays END
      FROM jobq.queues q
      LEFT JOIN LATERAL (
            SELECT rp.retry, rp.backoff, rp.base_delay, rp.max_delay, rp.delays
              FROM jobq.retry_policies rp
             WHERE rp.error_class = _retry_policy.error_class
               AND rp.queue IN (q.name, '*')
             ORDER BY rp.queue = '*'
             LIMIT 1) p ON true
     WHERE q.name = _retry_policy.queue;
END;
COMMENT ON FUNCTION jobq._retry_policy(text, text) IS
    'Internal: the retry policy of a class in a queue: the queue''s row, else the ''*'' row, else no retry; NULL backoff columns filled from the queue (a NULL backoff takes the queue''s delays too)';

-- What to do after a failed lease.  attempt is the lease number (jobs.attempt),
-- snoozes the leases that did not count before this one.
CREATE FUNCTION jobq._retry_decision(queue text, job_max_attempts integer,
                                     attempt integer, snoozes integer,
                                     error_class text, retry_after interval,
                                     OUT retry boolean, OUT snooze boolean,
                                     OUT delay interval)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    pol     record;
    q       record;
    used    integer;
    n       integer;
BEGIN
    SELECT * INTO q FROM jobq.queues WHERE name = _retry_decision.queue;
    IF NOT FOUND THEN
        retry := false;
        snooze := false;
        RETURN;
    END IF;
    SELECT * INTO pol FROM jobq._retry_policy(q.name, error_class);
    -- A rate_limited wait is a snooze: the lease does not use up an attempt.
    snooze := (error_class = 'rate_limited');
    used := attempt - snoozes - CASE WHEN snooze THEN 1 ELSE 0 END;
    IF NOT coalesce(pol.retry, false) THEN
        retry := false;
    ELSIF snooze THEN
        retry := true;
    ELSE
        retry := used < coalesce(job_max_attempts, q.max_attempts);
    END IF;
    IF NOT retry THEN
        snooze := false;
        RETURN;
    END IF;
    -- n: 1 before the first retry.  Snoozes back off on their own count.
    n := CASE WHEN snooze THEN snoozes + 1 ELSE greatest(used, 1) END;
    delay := jobq.backoff_delay(pol.backoff, pol.base_delay, pol.max_delay, q.jitter, n, pol.delays);
    -- An explicit delay is a minimum, even above max_delay.
    IF retry_after IS NOT NULL AND retry_after > delay THEN
        delay := retry_after;
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._retry_decision(text, integer, integer, integer, text, interval) IS
    'Internal: after a failed lease: retry (with delay, and whether it is a snooze that uses no attempt) or not (dead letter)';

---------------------------------------------------------------------------
-- handler helpers: raise errors that carry their class
---------------------------------------------------------------------------
-- The class is the SQLSTATE (JQ001 transient, JQ002 rate_limited, JQ003
-- permanent; rows in jobq.error_rules map them), the delay is the DETAIL
-- "jobq.retry_after=<seconds>" (parsed by jobq._retry_after_from_detail).
CREATE FUNCTION jobq._retry_after_detail(after interval) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN after IS NOT NULL
                THEN 'jobq.retry_after=' || (extract(epoch FROM after))::numeric(20,6)::text
           END;
COMMENT ON FUNCTION jobq._retry_after_detail(interval) IS
    'Internal: the DETAIL that carries an explicit retry delay in an error raised by jobq.retry_later/rate_limited';

CREATE FUNCTION jobq._retry_after_from_detail(detail text) RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN make_interval(secs => (substring(detail FROM '^jobq\.retry_after=([0-9]+(?:\.[0-9]*)?)$'))::float8);
COMMENT ON FUNCTION jobq._retry_after_from_detail(text) IS
    'Internal: the explicit retry delay carried by a DETAIL "jobq.retry_after=<seconds>", else NULL';

CREATE FUNCTION jobq._check_after(after interval) RETURNS void
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF after < interval '0' OR after > interval '1 year' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retry delay must be between 0 and 1 year, not %s', after),
            DETAIL = 'An explicit retry delay is the least time before the next attempt.',
            HINT = 'Pass NULL to let the retry policy choose the delay.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_after(interval) IS 'Internal: validates an explicit retry delay.';

CREATE FUNCTION jobq.retry_later(message text, after interval DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM jobq._check_after(after);
    RAISE EXCEPTION USING ERRCODE = 'JQ001',
        MESSAGE = coalesce(message, 'retry later'),
        DETAIL = coalesce(jobq._retry_after_detail(after), ''),
        HINT = 'Raised by jobq.retry_later: the job is retried (error class transient).';
END
$fn$;
COMMENT ON FUNCTION jobq.retry_later(text, interval) IS
    'jobq: called by a handler (PERFORM): fails the attempt as transient, retried not before after (SQLSTATE JQ001)';

CREATE FUNCTION jobq.rate_limited(message text, after interval DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM jobq._check_after(after);
    RAISE EXCEPTION USING ERRCODE = 'JQ002',
        MESSAGE = coalesce(message, 'rate limited'),
        DETAIL = coalesce(jobq._retry_after_detail(after), ''),
        HINT = 'Raised by jobq.rate_limited: the job waits without using up an attempt (error class rate_limited).';
END
$fn$;
COMMENT ON FUNCTION jobq.rate_limited(text, interval) IS
    'jobq: called by a handler (PERFORM): the job waits (not before after) without using up an attempt (SQLSTATE JQ002)';

CREATE FUNCTION jobq.give_up(message text) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'JQ003',
        MESSAGE = coalesce(message, 'gave up'),
        HINT = 'Raised by jobq.give_up: the job is not retried (error class permanent).';
END
$fn$;
COMMENT ON FUNCTION jobq.give_up(text) IS
    'jobq: called by a handler (PERFORM): fails the job at once, not retried (SQLSTATE JQ003, error class permanent)';

---------------------------------------------------------------------------
-- built-in rules and policies
---------------------------------------------------------------------------
INSERT INTO jobq.error_rules (priority, sqlstate, http_status_min, http_status_max, error_class, builtin, description) VALUES
    (10, 'JQ001', NULL, NULL, 'transient',    true, 'jobq.retry_later'),
    (10, 'JQ002', NULL, NULL, 'rate_limited', true, 'jobq.rate_limited'),
    (10, 'JQ003', NULL, NULL, 'permanent',    true, 'jobq.give_up'),
    (20, '57014', NULL, NULL, 'timeout',      true, 'query_canceled (statement_timeout)'),
    (30, '40001', NULL, NULL, 'transient',    true, 'serialization_failure'),
    (30, '40P01', NULL, NULL, 'transient',    true, 'deadlock_detected'),
    (30, '55P03', NULL, NULL, 'transient',    true, 'lock_not_available'),
    (30, '08%',   NULL, NULL, 'transient',    true, 'connection exceptions'),
    (30, '53%',   NULL, NULL, 'transient',    true, 'insufficient resources'),
    (30, '57P0%', NULL, NULL, 'transient',    true, 'operator intervention (shutdown)'),
    (40, '22%',   NULL, NULL, 'validation',   true, 'data exceptions'),
    (40, '23%',   NULL, NULL, 'validation',   true, 'integrity constraint violations'),
    (40, '42%',   NULL, NULL, 'validation',   true, 'syntax errors and access rule violations'),
    (50, NULL, 429, 429, 'rate_limited',      true, 'HTTP 429 Too Many Requests'),
    (50, NULL, 408, 408, 'timeout',           true, 'HTTP 408 Request Timeout'),
    (50, NULL, 401, 401, 'api_error',         true, 'HTTP 401 Unauthorized'),
    (50, NULL, 403, 403, 'api_error',         true, 'HTTP 403 Forbidden'),
    (60, NULL, 500, 599, 'transient',         true, 'HTTP 5xx'),
    (60, NULL, 400, 499, 'permanent',         true, 'HTTP other 4xx'),
    (60, NULL, 300, 399, 'permanent',         true, 'HTTP 3xx not followed (follow_redirects off, or too many)');
-- HTTP jobs whose transfer failed (no status): the message's prefix
INSERT INTO jobq.error_rules (priority, message_pattern, error_class, builtin, description) VALUES
    (70, '^http timeout:',          'timeout',   true, 'HTTP request timed out'),
    (70, '^http connection error:', 'transient', true, 'HTTP connection failed or dropped'),
    (70, '^http tls error:',        'permanent', true, 'HTTP TLS handshake or certificate refused'),
    (70, '^http refused:',          'permanent', true, 'HTTP host or address not allowed (jobq.http_allowed_hosts)');

INSERT INTO jobq.retry_policies (queue, error_class, retry, backoff, builtin) VALUES
    ('*', 'transient',    true,  NULL,         true),
    ('*', 'timeout',      true,  'linear',     true),
    ('*', 'rate_limited', true,  'aggressive', true),
    ('*', 'unknown',      true,  NULL,         true),
    ('*', 'worker_lost',  true,  NULL,         true),
    ('*', 'validation',   false, NULL,         true),
    ('*', 'permanent',    false, NULL,         true),
    ('*', 'api_error',    false, NULL,         true),
    ('*', 'cancelled',    false, NULL,         true),
    ('*', 'breaker_open', false, NULL,         true);
