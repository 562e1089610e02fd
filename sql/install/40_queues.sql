-- jobq install script, part 40: queue management (jobq_admin).
--
-- Every function validates all its arguments before writing anything, and
-- raises 22023 (invalid_parameter_value), 42704 (undefined_object), 42710
-- (duplicate_object) or 2BP01 (dependent_objects_still_exist) with a detail
-- and a hint.  SECURITY DEFINER: jobq_admin needs no privilege on the tables.

-- The normalized text of a handler, after checking it is a plain function
-- taking exactly (jsonb).  Stored as text, not regprocedure: reg* columns
-- other than regclass/regrole/regtype block pg_upgrade.
CREATE FUNCTION jobq._handler_text(handler regprocedure) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p record;
BEGIN
    SELECT pr.prokind, pr.pronargs, pr.proargtypes, pr.proretset,
           pr.proname, n.nspname
      INTO p
      FROM pg_catalog.pg_proc pr
      JOIN pg_catalog.pg_namespace n ON n.oid = pr.pronamespace
     WHERE pr.oid = handler::oid;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_function',
            MESSAGE = format('handler function with OID %s does not exist', handler::oid),
            DETAIL = 'It was dropped while the queue was being created.',
            HINT = 'Create the function, then the queue.';
    END IF;
    IF p.prokind <> 'f' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('handler %s is not a function', handler),
            DETAIL = format('It is %s.', CASE p.prokind WHEN 'p' THEN 'a procedure'
                                                        WHEN 'a' THEN 'an aggregate function'
                                                        WHEN 'w' THEN 'a window function'
                                                        ELSE 'not a plain function' END),
            HINT = 'A handler is a function taking one argument of type jsonb, such as CREATE FUNCTION my_handler(payload jsonb) RETURNS jsonb.';
    END IF;
    IF p.pronargs <> 1 OR p.proargtypes[0] <> 'pg_catalog.jsonb'::pg_catalog.regtype THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('handler %s must take exactly one argument of type jsonb', handler),
            DETAIL = format('It takes (%s).', pg_catalog.oidvectortypes(p.proargtypes)),
            HINT = 'A handler is a function taking one argument of type jsonb, such as CREATE FUNCTION my_handler(payload jsonb) RETURNS jsonb.';
    END IF;
    IF p.proretset THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('handler %s must not return a set', handler),
            DETAIL = 'The result of a job is one value, stored as jsonb.',
            HINT = 'Return jsonb (for example an array) or void.';
    END IF;
    RETURN format('%I.%I(%s)', p.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes));
END
$fn$;
COMMENT ON FUNCTION jobq._handler_text(regprocedure) IS
    'Internal: checks that a handler is a function taking (jsonb), and returns it as schema.function(jsonb) text';

-- Checks every setting of a queue row (from create_queue or alter_queue).
CREATE FUNCTION jobq._check_queue(q jobq.queues) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF q.name IS NULL OR q.name !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid queue name %s', coalesce(quote_literal(q.name), 'NULL')),
            DETAIL = 'A queue name has 1 to 63 characters: letters, digits, "_", ".", ":" and "-", and does not start with ".", ":" or "-".',
            HINT = 'Choose a name such as "emails" or "billing.invoices".';
    END IF;
    IF q.kind IS NULL OR NOT (q.kind = ANY (ARRAY['sql', 'http', 'external'])) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown queue kind "%s"', q.kind),
            DETAIL = 'The kind of a queue says how its jobs run.',
            HINT = 'Use sql (jobs run a handler function), http (jobs are HTTP requests) or external (jobs are claimed by workers outside the database).';
    END IF;
    IF q.kind = 'sql' AND q.handler IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('queue "%s" of kind sql needs a handler', q.name),
            DETAIL = 'Jobs of an sql queue run its handler function.',
            HINT = 'Pass handler => ''my_schema.my_handler(jsonb)''::regprocedure, or kind => ''external'' for jobs claimed by external workers.';
    END IF;
    IF q.kind <> 'sql' AND q.handler IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('queue "%s" of kind %s takes no handler', q.name, q.kind),
            DETAIL = 'Only sql queues run a handler function.',
            HINT = 'Pass kind => ''sql'', or no handler.';
    END IF;
    IF q.concurrency IS NOT NULL AND q.concurrency < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('concurrency must be at least 1, not %s', q.concurrency),
            DETAIL = 'concurrency is the most jobs of the queue running at once.',
            HINT = 'Pass NULL for no limit.';
    END IF;
    IF q.max_attempts IS NULL OR q.max_attempts < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_attempts must be at least 1, not %s', coalesce(q.max_attempts::text, 'NULL')),
            DETAIL = 'max_attempts counts every try of a job, the first included.',
            HINT = 'Pass 1 for jobs that are never retried.';
    END IF;
    IF q.backoff IS NULL OR NOT (q.backoff = ANY (jobq._backoff_strategies())) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown backoff strategy "%s"', q.backoff),
            DETAIL = 'backoff is the strategy that spaces the retries of a job.',
            HINT = 'Use one of exponential, linear, fibonacci, aggressive, fixed, custom.';
    END IF;
    IF (q.backoff = 'custom') <> (q.delays IS NOT NULL) OR NOT jobq._delays_valid(q.delays) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = CASE WHEN q.backoff = 'custom' AND q.delays IS NULL THEN 'backoff custom needs delays'
                           WHEN q.backoff <> 'custom' THEN format('delays are only for backoff custom, not %s', q.backoff)
                           ELSE format('invalid delays %s', q.delays) END,
            DETAIL = 'With backoff custom, retry n waits delays[n] and the last delay repeats: 1 to 100 delays, each from 0 to 1 year.',
            HINT = 'Pass e.g. backoff => ''custom'', delays => ''{60 s, 180 s, 600 s}''.';
    END IF;
    IF q.base_delay IS NULL OR q.base_delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('base_delay must not be negative, not %s', coalesce(q.base_delay::text, 'NULL')),
            DETAIL = 'base_delay is the delay the backoff strategy starts from.',
            HINT = 'Pass an interval such as ''1 second''.';
    END IF;
    IF q.base_delay > interval '1 year' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('base_delay must not exceed 1 year, not %s', q.base_delay),
            DETAIL = 'base_delay is the delay the backoff strategy starts from.',
            HINT = 'Pass an interval such as ''1 second''.';
    END IF;
    IF q.max_delay > interval '1 year' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_delay must not exceed 1 year, not %s', q.max_delay),
            DETAIL = 'max_delay caps every backoff delay.',
            HINT = 'Pass an interval such as ''1 hour''.';
    END IF;
    IF q.max_delay IS NULL OR q.max_delay < q.base_delay THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_delay must not be less than base_delay (%s), not %s', q.base_delay, coalesce(q.max_delay::text, 'NULL')),
            DETAIL = 'max_delay caps every backoff delay.',
            HINT = 'Pass a max_delay at least as long as base_delay.';
    END IF;
    IF q.jitter IS NULL OR NOT (q.jitter >= 0 AND q.jitter <= 1) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('jitter must be between 0 and 1, not %s', coalesce(q.jitter::text, 'NULL')),
            DETAIL = 'jitter is the +/- fraction applied to every backoff delay.',
            HINT = 'Pass 0 for exact delays, 0.1 for +/- 10%.';
    END IF;
    IF q.timeout IS NULL OR NOT jobq._timeout_in_range(q.timeout) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('timeout must be between 1 millisecond and 24 days, not %s', coalesce(q.timeout::text, 'NULL')),
            DETAIL = 'timeout is the hard limit of one attempt, enforced to the millisecond.',
            HINT = 'Pass an interval such as ''3 minutes''.';
    END IF;
    IF q.warn_after IS NOT NULL AND NOT jobq._timeout_in_range(q.warn_after) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('warn_after must be between 1 millisecond and 24 days, not %s', q.warn_after),
            DETAIL = 'A running attempt past warn_after is logged as slow.',
            HINT = 'Pass NULL to never warn.';
    END IF;
    IF q.rate_limit IS NOT NULL AND NOT (q.rate_limit >= 0.000001 AND q.rate_limit <= 1000000) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rate_limit must be between 0.000001 and 1000000, not %s', q.rate_limit),
            DETAIL = 'rate_limit is the most job starts per second of the queue.',
            HINT = 'Pass NULL for no limit, 0.5 for one start every two seconds.';
    END IF;
    IF q.retention IS NULL OR q.retention < interval '0' OR q.retention > interval '100 years' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retention must be between 0 and 100 years, not %s', coalesce(q.retention::text, 'NULL')),
            DETAIL = 'Completed and cancelled jobs are kept for retention.',
            HINT = 'Pass ''0'' to remove them at the next cleanup.';
    END IF;
    IF q.breaker IS NOT NULL AND (q.breaker = '' OR length(q.breaker) > 200
                                  OR q.breaker ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid breaker key %s', quote_literal(q.breaker)),
            DETAIL = 'A circuit breaker key has 1 to 200 characters and no control characters (it appears in logs and alerts).',
            HINT = 'Pass NULL to use the queue name as the circuit breaker key.';
    END IF;
    IF q.breaker_mode IS NULL OR NOT (q.breaker_mode = ANY (ARRAY['hold', 'fail_fast'])) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown breaker_mode "%s"', q.breaker_mode),
            DETAIL = 'breaker_mode says what happens to the queue''s jobs while its circuit breaker is open.',
            HINT = 'Use hold (jobs wait, the default) or fail_fast (jobs are dead-lettered at once with class breaker_open).';
    END IF;
    IF q.unique_scope IS NULL OR NOT (q.unique_scope = ANY (ARRAY['owner', 'queue'])) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown unique_scope "%s"', q.unique_scope),
            DETAIL = 'unique_scope says whose jobs a unique_key is unique among.',
            HINT = 'Use owner (each role''s keys apart, the default) or queue (one key space for every role).';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_queue(jobq.queues) IS
    'Internal: raises 22023 with detail and hint on the first invalid setting of a queue';

CREATE FUNCTION jobq._no_queue(name text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'undefined_object',
        MESSAGE = format('queue "%s" does not exist', name),
        DETAIL = 'jobq.queues lists the queues; names are case-sensitive.',
        HINT = 'Create it with jobq.create_queue().';
END
$fn$;
COMMENT ON FUNCTION jobq._no_queue(text) IS 'Internal: raises 42704 for an unknown queue.';

CREATE FUNCTION jobq.create_queue(
    name          text,
    handler       regprocedure     DEFAULT NULL,
    kind          text             DEFAULT NULL,
    concurrency   integer          DEFAULT NULL,
    max_attempts  integer          DEFAULT 5,
    backoff       text             DEFAULT 'exponential',
    base_delay    interval         DEFAULT '1 second',
    max_delay     interval         DEFAULT '1 hour',
    jitter        double precision DEFAULT 0.1,
    timeout       interval         DEFAULT '3 minutes',
    warn_after    interval         DEFAULT '1 minute',
    rate_limit    double precision DEFAULT NULL,
    retention     interval         DEFAULT '1 hour',
    breaker       text             DEFAULT NULL,
    unique_scope  text             DEFAULT 'owner',
    delays        interval[]       DEFAULT NULL,
    breaker_mode  text             DEFAULT 'hold')
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    q jobq.queues;
BEGIN
    q.name := name;
    q.handler := CASE WHEN handler IS NOT NULL THEN jobq._handler_text(handler) END;
    q.kind := coalesce(kind, CASE WHEN handler IS NOT NULL THEN 'sql' ELSE 'external' END);
    q.concurrency := concurrency;
    q.max_attempts := max_attempts;
    q.backoff := backoff;
    q.base_delay := base_delay;
    q.max_delay := max_delay;
    q.jitter := jitter;
    q.timeout := timeout;
    q.warn_after := warn_after;
    q.rate_limit := rate_limit;
    q.retention := retention;
    q.breaker := breaker;
    q.unique_scope := unique_scope;
    q.delays := delays;
    q.breaker_mode := breaker_mode;
    PERFORM jobq._check_queue(q);

    INSERT INTO jobq.queues (name, kind, handler, concurrency, max_attempts,
                             backoff, base_delay, max_delay, jitter, timeout,
                             warn_after, rate_limit, retention, breaker,
                             unique_scope, delays, breaker_mode)
    VALUES (q.name, q.kind, q.handler, q.concurrency, q.max_attempts,
            q.backoff, q.base_delay, q.max_delay, q.jitter, q.timeout,
            q.warn_after, q.rate_limit, q.retention, q.breaker,
            q.unique_scope, q.delays, q.breaker_mode)
    ON CONFLICT ON CONSTRAINT queues_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('queue "%s" already exists', q.name),
            DETAIL = 'Queue names are unique in a database.',
            HINT = 'Use jobq.alter_queue() to change it, or jobq.drop_queue() first.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq.create_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text, text, interval[], text) IS
    'jobq: creates a queue (kind sql when a handler is given, else external unless kind says http); backoff custom takes the delay list delays; breaker_mode fail_fast dead-letters jobs at once while the breaker is open';

CREATE FUNCTION jobq.alter_queue(
    name          text,
    handler       regprocedure     DEFAULT NULL,
    kind          text             DEFAULT NULL,
    concurrency   integer          DEFAULT NULL,
    max_attempts  integer          DEFAULT NULL,
    backoff       text             DEFAULT NULL,
    base_delay    interval         DEFAULT NULL,
    max_delay     interval         DEFAULT NULL,
    jitter        double precision DEFAULT NULL,
    timeout       interval         DEFAULT NULL,
    warn_after    interval         DEFAULT NULL,
    rate_limit    double precision DEFAULT NULL,
    retention     interval         DEFAULT NULL,
    breaker       text             DEFAULT NULL,
    reset         text[]           DEFAULT NULL,
    unique_scope  text             DEFAULT NULL,
    delays        interval[]       DEFAULT NULL,
    breaker_mode  text             DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    q       jobq.queues;
    opt     text;
    options CONSTANT text[] := ARRAY['handler', 'concurrency', 'max_attempts',
        'backoff', 'base_delay', 'max_delay', 'jitter', 'timeout',
        'warn_after', 'rate_limit', 'retention', 'breaker', 'unique_scope',
        'delays', 'breaker_mode'];
BEGIN
    FOREACH opt IN ARRAY coalesce(reset, '{}') LOOP
        IF opt IS NULL OR NOT (opt = ANY (options)) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('unknown queue option "%s" in reset', opt),
                DETAIL = 'reset names the settings to set back to their defaults.',
                HINT = 'reset takes names among ' || array_to_string(options, ', ') || '.';
        END IF;
    END LOOP;

    SELECT * INTO q FROM jobq.queues WHERE queues.name = alter_queue.name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._no_queue(alter_queue.name);
    END IF;

    -- reset: NULL where the setting may be NULL, else create_queue's default
    IF 'handler' = ANY (reset) THEN q.handler := NULL; END IF;
    IF 'concurrency' = ANY (reset) THEN q.concurrency := NULL; END IF;
    IF 'max_attempts' = ANY (reset) THEN q.max_attempts := 5; END IF;
    IF 'backoff' = ANY (reset) THEN q.backoff := 'exponential'; END IF;
    IF 'base_delay' = ANY (reset) THEN q.base_delay := '1 second'; END IF;
    IF 'max_delay' = ANY (reset) THEN q.max_delay := '1 hour'; END IF;
    IF 'jitter' = ANY (reset) THEN q.jitter := 0.1; END IF;
    IF 'timeout' = ANY (reset) THEN q.timeout := '3 minutes'; END IF;
    IF 'warn_after' = ANY (reset) THEN q.warn_after := NULL; END IF;
    IF 'rate_limit' = ANY (reset) THEN q.rate_limit := NULL; END IF;
    IF 'retention' = ANY (reset) THEN q.retention := '1 hour'; END IF;
    IF 'breaker' = ANY (reset) THEN q.breaker := NULL; END IF;
    IF 'unique_scope' = ANY (reset) THEN q.unique_scope := 'owner'; END IF;
    IF 'delays' = ANY (reset) THEN q.delays := NULL; END IF;
    IF 'breaker_mode' = ANY (reset) THEN q.breaker_mode := 'hold'; END IF;

    IF handler IS NOT NULL THEN
        q.handler := jobq._handler_text(handler);
        q.kind := coalesce(kind, 'sql');
    ELSIF kind IS NOT NULL THEN
        q.kind := kind;
        IF kind <> 'sql' THEN
            q.handler := NULL;
        END IF;
    END IF;
    q.concurrency := coalesce(concurrency, q.concurrency);
    q.max_attempts := coalesce(max_attempts, q.max_attempts);
    q.backoff := coalesce(backoff, q.backoff);
    q.base_delay := coalesce(base_delay, q.base_delay);
    q.max_delay := coalesce(max_delay, q.max_delay);
    q.jitter := coalesce(jitter, q.jitter);
    q.timeout := coalesce(timeout, q.timeout);
    q.warn_after := coalesce(warn_after, q.warn_after);
    q.rate_limit := coalesce(rate_limit, q.rate_limit);
    q.retention := coalesce(retention, q.retention);
    q.breaker := coalesce(breaker, q.breaker);
    q.unique_scope := coalesce(unique_scope, q.unique_scope);
    q.breaker_mode := coalesce(breaker_mode, q.breaker_mode);
    -- delays belong to backoff custom: another strategy drops them
    q.delays := CASE WHEN q.backoff = 'custom' THEN coalesce(delays, q.delays) ELSE delays END;
    PERFORM jobq._check_queue(q);

    UPDATE jobq.queues
       SET kind = q.kind, handler = q.handler, concurrency = q.concurrency,
           max_attempts = q.max_attempts, backoff = q.backoff,
           base_delay = q.base_delay, max_delay = q.max_delay,
           jitter = q.jitter, timeout = q.timeout, warn_after = q.warn_after,
           rate_limit = q.rate_limit, retention = q.retention,
           breaker = q.breaker, unique_scope = q.unique_scope, delays = q.delays,
           breaker_mode = q.breaker_mode,
           updated_at = now(),
           rate_tokens = CASE WHEN q.rate_limit IS DISTINCT FROM queues.rate_limit
                              THEN NULL ELSE queues.rate_tokens END
     WHERE queues.name = q.name;
    -- a higher concurrency or rate limit (or a new handler) may let waiting
    -- jobs run now; idle executors do not watch a full queue: wake one
    PERFORM jobq._wake_at_commit();
END
$fn$;
COMMENT ON FUNCTION jobq.alter_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text, text[], text, interval[], text) IS
    'jobq: changes the settings given (NULL = unchanged); reset names settings to set back to NULL (handler, concurrency, warn_after, rate_limit, breaker) or to create_queue''s default';

CREATE FUNCTION jobq.pause_queue(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE jobq.queues SET paused = true, updated_at = now()
     WHERE queues.name = pause_queue.name;
    IF NOT FOUND THEN
        PERFORM jobq._no_queue(pause_queue.name);
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq.pause_queue(text) IS
    'jobq: a paused queue gives out no jobs (running jobs finish); jobs can still be submitted';

CREATE FUNCTION jobq.resume_queue(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE jobq.queues SET paused = false, updated_at = now()
     WHERE queues.name = resume_queue.name;
    IF NOT FOUND THEN
        PERFORM jobq._no_queue(resume_queue.name);
    END IF;
    -- its pending jobs may run now: wake an executor at commit
    PERFORM jobq._wake_at_commit();
END
$fn$;
COMMENT ON FUNCTION jobq.resume_queue(text) IS 'jobq: the queue gives out jobs again';

CREATE FUNCTION jobq.drop_queue(name text, force boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n_active    bigint;
    n_dead      bigint;
BEGIN
    -- Conflicts with the ROW EXCLUSIVE lock submit takes before it looks the
    -- queue up: no job can be submitted to a queue being dropped.
    LOCK TABLE jobq.jobs_active IN SHARE ROW EXCLUSIVE MODE;
    PERFORM FROM jobq.queues WHERE queues.name = drop_queue.name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._no_queue(drop_queue.name);
    END IF;
    IF NOT coalesce(force, false) THEN
        SELECT count(*) INTO n_active FROM jobq.jobs_active j WHERE j.queue = drop_queue.name;
        SELECT count(*) INTO n_dead FROM jobq.dead_letter d
         WHERE d.queue = drop_queue.name AND d.resolved_at IS NULL;
        IF n_active > 0 OR n_dead > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('queue "%s" is not empty', drop_queue.name),
                DETAIL = format('It has %s pending or running jobs and %s unresolved dead letters.', n_active, n_dead),
                HINT = 'Cancel or finish the jobs and resolve the dead letters, or pass force => true to delete them all.';
        END IF;
    END IF;
    DELETE FROM jobq.jobs_active j WHERE j.queue = drop_queue.name;
    DELETE FROM jobq.jobs_final j WHERE j.queue = drop_queue.name;
    DELETE FROM jobq.job_attempts a WHERE a.queue = drop_queue.name;
    DELETE FROM jobq.dead_letter d WHERE d.queue = drop_queue.name;
    DELETE FROM jobq.retry_policies p WHERE p.queue = drop_queue.name;
    DELETE FROM jobq.queues WHERE queues.name = drop_queue.name;
END
$fn$;
COMMENT ON FUNCTION jobq.drop_queue(text, boolean) IS
    'jobq: drops a queue with its finished jobs, attempts, dead letters and retry policies; refuses while it has pending or running jobs or unresolved dead letters unless force';

-- The queue of jobq.submit_http.
INSERT INTO jobq.queues (name, kind, max_attempts, backoff, base_delay,
                         max_delay, jitter, timeout, warn_after, retention)
VALUES ('http', 'http', 5, 'exponential', '1 second', '1 hour', 0.1,
        '3 minutes', '1 minute', '1 hour');

-- Executors cache the queue list; this tells them, at commit, that it
-- changed (however it was changed: these functions or a superuser's own
-- UPDATE).  The token-bucket columns are written by claims and do not count.
CREATE FUNCTION jobq._queues_changed() RETURNS trigger
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_queues_changed';
COMMENT ON FUNCTION jobq._queues_changed() IS
    'Internal: statement trigger on jobq.queues; executors re-read their queue list after the commit';
REVOKE ALL ON FUNCTION jobq._queues_changed() FROM PUBLIC;
CREATE TRIGGER queues_changed
    AFTER INSERT OR DELETE OR TRUNCATE
       OR UPDATE OF name, kind, handler, concurrency, timeout, warn_after, rate_limit, paused
    ON jobq.queues FOR EACH STATEMENT EXECUTE FUNCTION jobq._queues_changed();
