\echo Use "CREATE EXTENSION jobq VERSION '0.1.0'" to load this file. \quit
-- jobq install script, part 00: the schema and the hook into the launcher.
-- Every name is schema-qualified: the script runs with the installer's
-- search_path (pg_cron 1.4.2, pgspot PS001/PS016).

COMMENT ON SCHEMA jobq IS 'jobq: background job queue run by in-server workers';

CREATE FUNCTION jobq._activate_database() RETURNS void
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'jobq_activate_database';
COMMENT ON FUNCTION jobq._activate_database() IS
    'Internal: tells the jobq launcher, at commit, that this database has jobq.';
REVOKE ALL ON FUNCTION jobq._activate_database() FROM PUBLIC;

CREATE FUNCTION jobq._wake_at_commit() RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_wake_at_commit';
COMMENT ON FUNCTION jobq._wake_at_commit() IS
    'Internal: wakes an idle executor of this database when the transaction commits';
REVOKE ALL ON FUNCTION jobq._wake_at_commit() FROM PUBLIC;

CREATE FUNCTION jobq._claim_floor_note(queue text, priority integer,
                                       run_at timestamptz, id bigint) RETURNS void
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_claim_floor_note';
COMMENT ON FUNCTION jobq._claim_floor_note(text, integer, timestamptz, bigint) IS
    'Internal: a pending job with this claim-order key was just written; claims of the queue must not start past it (src/claim_floor.c)';
REVOKE ALL ON FUNCTION jobq._claim_floor_note(text, integer, timestamptz, bigint) FROM PUBLIC;

CREATE FUNCTION jobq._claim_floor(queue text, OUT priority integer,
                                  OUT run_at timestamptz, OUT id bigint)
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_claim_floor';
COMMENT ON FUNCTION jobq._claim_floor(text) IS
    'Internal (tests, diagnosis): the claim-order key where the next claim of queue starts in this database; NULLs: at the front of the queue';
REVOKE ALL ON FUNCTION jobq._claim_floor(text) FROM PUBLIC;
-- jobq install script, part 10: the roles jobq's privileges are granted to.
--
-- Roles are cluster-wide and outlive the extension (DROP EXTENSION does not
-- drop them), and several databases of one cluster may install jobq: create
-- each only when absent.  NOLOGIN: they are groups, granted to real roles.
--   jobq_admin   manages queues, policies, rules and the dead letter queue,
--                sees and cancels every job
--   jobq_worker  may claim/heartbeat/complete/fail jobs as an external worker
-- Submitters need no role: GRANT USAGE ON SCHEMA jobq TO them (see
-- docs/api.md "Privileges").

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) 'jobq_admin') THEN
        CREATE ROLE jobq_admin NOLOGIN;
        COMMENT ON ROLE jobq_admin IS
            'jobq: manages queues, retry policies, error rules and the dead letter queue; sees and cancels every job';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) 'jobq_worker') THEN
        CREATE ROLE jobq_worker NOLOGIN;
        COMMENT ON ROLE jobq_worker IS
            'jobq: external workers: may claim, heartbeat, complete and fail jobs';
    END IF;
END
$roles$;
-- jobq install script, part 20: storage.
--
-- Why jobq.jobs is partitioned by state (src/README.md "Storage"):
-- jobs_active holds only pending and running jobs, so the rows a claim reads
-- stay few and hot however much history piles up in jobs_final; a job
-- leaves jobs_active by DELETE ... RETURNING feeding an INSERT INTO
-- jobs_final, never by an UPDATE of state across partitions.
--
-- Queue names keep the database collation although "C" would make index
-- inserts ~10% cheaper: row comparisons mixing "C" and default-collated text
-- fail ("could not determine which collation"), e.g. in users' tests.

-- The error classes and backoff strategies, in one place for the CHECKs.
CREATE FUNCTION jobq._error_classes() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN ARRAY['transient', 'timeout', 'rate_limited', 'validation',
                 'permanent', 'api_error', 'cancelled', 'worker_lost',
                 'unknown']::text[];
COMMENT ON FUNCTION jobq._error_classes() IS
    'Internal: the error classes of jobq, in documentation order.';

CREATE FUNCTION jobq._backoff_strategies() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN ARRAY['exponential', 'linear', 'fibonacci', 'aggressive',
                 'fixed']::text[];
COMMENT ON FUNCTION jobq._backoff_strategies() IS
    'Internal: the backoff strategies of jobq.';

---------------------------------------------------------------------------
-- queues
---------------------------------------------------------------------------
CREATE TABLE jobq.queues (
    name            text PRIMARY KEY,
    kind            text NOT NULL
                    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['sql', 'http', 'external'])),
    handler         text,
    concurrency     integer CHECK (concurrency OPERATOR(pg_catalog.>) 0),
    max_attempts    integer NOT NULL CHECK (max_attempts OPERATOR(pg_catalog.>) 0),
    backoff         text NOT NULL
                    CHECK (backoff OPERATOR(pg_catalog.=) ANY (jobq._backoff_strategies())),
    base_delay      interval NOT NULL,
    max_delay       interval NOT NULL,
    jitter          double precision NOT NULL
                    CHECK (jitter OPERATOR(pg_catalog.>=) 0 AND jitter OPERATOR(pg_catalog.<=) 1),
    timeout         interval NOT NULL,
    warn_after      interval,
    rate_limit      double precision CHECK (rate_limit OPERATOR(pg_catalog.>) 0),
    retention       interval NOT NULL,
    breaker         text,
    paused          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- token bucket of rate_limit (state, not configuration)
    rate_tokens     double precision,
    rate_refilled_at timestamptz,
    CHECK ((kind OPERATOR(pg_catalog.=) 'sql') OPERATOR(pg_catalog.=) (handler IS NOT NULL))
);
COMMENT ON TABLE jobq.queues IS
    'jobq: one row per queue; written only through jobq.create_queue/alter_queue/pause_queue/resume_queue/drop_queue';
COMMENT ON COLUMN jobq.queues.handler IS
    'SQL handler as schema.function(argtypes) text (not regprocedure: reg* columns block pg_upgrade); NULL unless kind = sql';
COMMENT ON COLUMN jobq.queues.concurrency IS 'max jobs of this queue running at once; NULL = no limit';
COMMENT ON COLUMN jobq.queues.max_attempts IS 'total tries, the first included (a job''s own max_attempts overrides it)';
COMMENT ON COLUMN jobq.queues.backoff IS 'exponential | linear | fibonacci | aggressive | fixed';
COMMENT ON COLUMN jobq.queues.jitter IS '+/- fraction applied to every backoff delay';
COMMENT ON COLUMN jobq.queues.timeout IS 'hard limit of one attempt (a job''s own timeout overrides it)';
COMMENT ON COLUMN jobq.queues.warn_after IS 'a running attempt past this is logged as slow; NULL = never';
COMMENT ON COLUMN jobq.queues.rate_limit IS 'max job starts per second; NULL = no limit';
COMMENT ON COLUMN jobq.queues.retention IS 'completed and cancelled jobs are kept this long';
COMMENT ON COLUMN jobq.queues.breaker IS 'circuit breaker key; NULL = the queue''s name';
COMMENT ON COLUMN jobq.queues.paused IS 'a paused queue gives out no jobs';
COMMENT ON COLUMN jobq.queues.rate_tokens IS 'token bucket: starts left (capacity max(1, rate_limit)); internal state';
COMMENT ON COLUMN jobq.queues.rate_refilled_at IS 'token bucket: when rate_tokens was last computed; internal state';

---------------------------------------------------------------------------
-- jobs
---------------------------------------------------------------------------
CREATE SEQUENCE jobq.jobs_id_seq AS bigint;
COMMENT ON SEQUENCE jobq.jobs_id_seq IS 'jobq: ids of jobq.jobs (shared by both partitions)';

CREATE TABLE jobq.jobs (
    id              bigint NOT NULL DEFAULT pg_catalog.nextval('jobq.jobs_id_seq'::pg_catalog.regclass),
    queue           text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    state           text NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    run_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attempt         integer NOT NULL DEFAULT 0,
    max_attempts    integer,        -- > 0: validated by submit
    unique_key      text,
    timeout         interval,
    owner           regrole NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at      timestamptz,
    completed_at    timestamptz,
    last_heartbeat  timestamptz,
    lease_expires_at timestamptz,
    worker          text,
    claimed_by      bigint,
    snoozes         integer NOT NULL DEFAULT 0,
    error_type      text,
    last_error      text,
    result          jsonb
    -- No CHECK constraints on the job tables: the executor re-parses every
    -- CHECK expression of a table at each INSERT/UPDATE statement (15% of
    -- an executor's time for a no-op job).  state is bounded by the
    -- partitions themselves; the other values are validated by the only
    -- code that writes these rows.
) PARTITION BY LIST (state);
ALTER SEQUENCE jobq.jobs_id_seq OWNED BY jobq.jobs.id;
COMMENT ON TABLE jobq.jobs IS
    'jobq: every job (partitioned by state: jobs_active = pending/running, jobs_final = completed/failed/cancelled); a role sees its own jobs unless it has jobq_admin; written only by jobq';
COMMENT ON COLUMN jobq.jobs.state IS 'pending | running | completed | failed | cancelled';
COMMENT ON COLUMN jobq.jobs.priority IS 'higher runs first';
COMMENT ON COLUMN jobq.jobs.run_at IS 'not claimed before this time; never NULL';
COMMENT ON COLUMN jobq.jobs.attempt IS 'leases given out so far: incremented by every claim, so (id, attempt) names one lease';
COMMENT ON COLUMN jobq.jobs.snoozes IS 'leases that did not use up an attempt (rate_limited, released); tries used = attempt - snoozes';
COMMENT ON COLUMN jobq.jobs.max_attempts IS 'per-job override of the queue''s max_attempts; NULL = the queue''s';
COMMENT ON COLUMN jobq.jobs.unique_key IS 'while a job of the queue with this key is not final, submit returns its id';
COMMENT ON COLUMN jobq.jobs.timeout IS 'per-job override of the queue''s timeout; NULL = the queue''s';
COMMENT ON COLUMN jobq.jobs.owner IS 'the role that submitted the job (captured in C with GetUserId()); the job runs as this role';
COMMENT ON COLUMN jobq.jobs.lease_expires_at IS 'running: the lease ends here unless extended by jobq.heartbeat';
COMMENT ON COLUMN jobq.jobs.worker IS 'running: the worker name given to claim';
COMMENT ON COLUMN jobq.jobs.claimed_by IS 'running: token of the jobq executor that holds the job; NULL for external workers';
COMMENT ON COLUMN jobq.jobs.error_type IS 'error class of the last failed attempt';
COMMENT ON COLUMN jobq.jobs.result IS 'completed: the handler''s result (NULL for void handlers)';

CREATE TABLE jobq.jobs_active PARTITION OF jobq.jobs
    FOR VALUES IN ('pending', 'running')
    WITH (fillfactor = 80,
          autovacuum_vacuum_scale_factor = 0.01,
          autovacuum_vacuum_threshold = 1000,
          autovacuum_vacuum_insert_scale_factor = 0.01,
          autovacuum_analyze_scale_factor = 0.02,
          autovacuum_vacuum_cost_delay = 0);
COMMENT ON TABLE jobq.jobs_active IS
    'jobq: pending and running jobs: the only rows a claim reads; small, hot, vacuumed aggressively';

CREATE TABLE jobq.jobs_final PARTITION OF jobq.jobs
    FOR VALUES IN ('completed', 'failed', 'cancelled');
COMMENT ON TABLE jobq.jobs_final IS
    'jobq: completed, failed and cancelled jobs, until jobq.cleanup removes them';

-- A primary key of the parent would have to include state; per partition
-- is what we need: one sequence feeds both and a job is in one at a time.
ALTER TABLE jobq.jobs_active ADD PRIMARY KEY (id);
ALTER TABLE jobq.jobs_final ADD PRIMARY KEY (id);

-- The claim: equality on queue, then the ORDER BY of the claim, only over
-- pending rows.
-- Its keys are unique (id is one of them), so btree deduplication, which
-- runs whenever a leaf page fills, never finds anything to merge: off, it
-- costs nothing (it was 4% of a submit_batch).
CREATE INDEX jobs_active_claim_idx ON jobq.jobs_active
    (queue, priority DESC, run_at, id) WITH (deduplicate_items = off)
    WHERE state OPERATOR(pg_catalog.=) 'pending';
COMMENT ON INDEX jobq.jobs_active_claim_idx IS 'jobq: the claim order of pending jobs of a queue';
-- unique_key is free again the moment its job leaves jobs_active.
CREATE UNIQUE INDEX jobs_active_unique_key_idx ON jobq.jobs_active
    (queue, unique_key) WHERE unique_key IS NOT NULL;
COMMENT ON INDEX jobq.jobs_active_unique_key_idx IS 'jobq: one not-final job per (queue, unique_key)';
-- Running jobs: the concurrency count of a queue, and lease expiry.
-- Statements that find ONE job by id write the state test as
-- pg_catalog.texteq(state, 'running'), which these partial indexes cannot
-- prove: with "state = 'running'" the planner may scan a whole partial
-- index (statistics taken while nothing ran make it look empty) instead of
-- the primary key, and every completion then walks every running job.
CREATE INDEX jobs_active_running_idx ON jobq.jobs_active
    (queue) WHERE state OPERATOR(pg_catalog.=) 'running';
COMMENT ON INDEX jobq.jobs_active_running_idx IS 'jobq: running jobs of a queue (concurrency limit)';
-- Only external workers' leases expire: an executor's job is recovered by
-- its executor's token (claimed_by), so executor jobs stay out of this index
-- (one index insertion less per executed job).  lease_expires_at is set
-- exactly while a job runs; the predicate does not name state so that the
-- expiry probe (state tested with texteq, see above) can only use this
-- index, never a walk of every running job in jobs_active_running_idx.
CREATE INDEX jobs_active_lease_idx ON jobq.jobs_active
    (lease_expires_at) WHERE claimed_by IS NULL AND lease_expires_at IS NOT NULL;
COMMENT ON INDEX jobq.jobs_active_lease_idx IS 'jobq: external workers'' running jobs by lease end (recovery of expired leases)';

-- History is appended in time order, so a BRIN index answers time ranges
-- (retention cleanup, recent-history views) for almost no write cost; a
-- btree here was one more WAL-logged insertion per finished job.
CREATE INDEX jobs_final_completed_brin ON jobq.jobs_final USING brin (completed_at)
    WITH (autosummarize = on);
COMMENT ON INDEX jobq.jobs_final_completed_brin IS 'jobq: finished jobs by time (retention cleanup, recent history)';

---------------------------------------------------------------------------
-- attempts: one row per finished lease, written once
---------------------------------------------------------------------------
CREATE TABLE jobq.job_attempts (
    job_id          bigint NOT NULL,
    attempt         integer NOT NULL,
    queue           text NOT NULL,
    owner           regrole NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    outcome         text NOT NULL,  -- completed | failed | snoozed | released | cancelled (no CHECK: see jobq.jobs)
    error_class     text,
    error           text,
    sqlstate        text,
    http_status     integer,
    worker          text,
    detail          text,
    PRIMARY KEY (job_id, attempt)
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05);
COMMENT ON TABLE jobq.job_attempts IS
    'jobq: one row per finished attempt (lease) of a job; a role sees the attempts of its own jobs unless it has jobq_admin';
COMMENT ON COLUMN jobq.job_attempts.outcome IS
    'completed | failed (the attempt failed; see error_class) | snoozed (rate_limited: not counted) | released (given back at shutdown: not counted) | cancelled';
-- Appended in time order: BRIN (see jobs_final_completed_brin).
CREATE INDEX job_attempts_finished_brin ON jobq.job_attempts USING brin (finished_at)
    WITH (autosummarize = on);
COMMENT ON INDEX jobq.job_attempts_finished_brin IS 'jobq: attempts by time (failure rates, cleanup)';

---------------------------------------------------------------------------
-- dead letter queue
---------------------------------------------------------------------------
CREATE TABLE jobq.dead_letter (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id          bigint NOT NULL,
    queue           text NOT NULL,
    payload         jsonb NOT NULL,
    owner           regrole NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    max_attempts    integer,
    timeout         interval,
    error_class     text,
    last_error      text,
    attempts        integer NOT NULL,
    history         jsonb NOT NULL DEFAULT '[]'::jsonb,
    failed_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    resolved_at     timestamptz,
    resolution_note text,
    requeued_job_id bigint
);
COMMENT ON TABLE jobq.dead_letter IS
    'jobq: one row per failed job (retries exhausted or not retryable), with the original payload and its attempt history';
COMMENT ON COLUMN jobq.dead_letter.attempts IS 'attempts used (rate_limited waits and releases not counted)';
COMMENT ON COLUMN jobq.dead_letter.history IS 'every attempt row of the job (jobq.job_attempts) as a JSON array, oldest first';
COMMENT ON COLUMN jobq.dead_letter.requeued_job_id IS 'the job created by jobq.requeue_dead';
CREATE INDEX dead_letter_unresolved_idx ON jobq.dead_letter (queue, failed_at) WHERE resolved_at IS NULL;
COMMENT ON INDEX jobq.dead_letter_unresolved_idx IS 'jobq: unresolved dead letters per queue';

---------------------------------------------------------------------------
-- error classification rules and retry policies
---------------------------------------------------------------------------
CREATE TABLE jobq.error_rules (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    priority        integer NOT NULL DEFAULT 100,
    sqlstate        text,
    http_status_min integer,
    http_status_max integer,
    message_pattern text,
    error_class     text NOT NULL
                    CHECK (error_class OPERATOR(pg_catalog.=) ANY (jobq._error_classes())),
    builtin         boolean NOT NULL DEFAULT false,
    description     text,
    CHECK (sqlstate IS NOT NULL OR http_status_min IS NOT NULL OR message_pattern IS NOT NULL),
    CHECK ((http_status_min IS NULL) OPERATOR(pg_catalog.=) (http_status_max IS NULL)),
    CHECK (http_status_min OPERATOR(pg_catalog.<=) http_status_max)
);
COMMENT ON TABLE jobq.error_rules IS
    'jobq: maps an error to its class when the caller gave none: the matching rule with the lowest priority wins (then lowest id); every non-NULL criterion of a rule must match';
COMMENT ON COLUMN jobq.error_rules.sqlstate IS 'LIKE pattern on the SQLSTATE (e.g. 40001, 08%)';
COMMENT ON COLUMN jobq.error_rules.http_status_min IS 'HTTP status range, inclusive';
COMMENT ON COLUMN jobq.error_rules.message_pattern IS 'regular expression (~) on the error message';
COMMENT ON COLUMN jobq.error_rules.builtin IS 'installed by jobq; pg_dump keeps only rows that are not built in';
CREATE INDEX error_rules_priority_idx ON jobq.error_rules (priority, id);
COMMENT ON INDEX jobq.error_rules_priority_idx IS 'jobq: rule order';

CREATE TABLE jobq.retry_policies (
    queue           text NOT NULL DEFAULT '*',
    error_class     text NOT NULL
                    CHECK (error_class OPERATOR(pg_catalog.=) ANY (jobq._error_classes())),
    retry           boolean NOT NULL,
    backoff         text CHECK (backoff OPERATOR(pg_catalog.=) ANY (jobq._backoff_strategies())),
    base_delay      interval CHECK (base_delay OPERATOR(pg_catalog.>=) '0'::interval),
    max_delay       interval CHECK (max_delay OPERATOR(pg_catalog.>=) '0'::interval),
    builtin         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (queue, error_class)
);
COMMENT ON TABLE jobq.retry_policies IS
    'jobq: whether and how an error class is retried; rows of a queue override the ''*'' defaults; NULL backoff columns mean the queue''s own';
COMMENT ON COLUMN jobq.retry_policies.builtin IS 'installed by jobq; pg_dump keeps only rows that are not built in';
-- jobq install script, part 30: the retry engine, the one place that
-- decides what happens after a failed attempt:
--   classification   jobq.classify_error (explicit class wins; else
--                    jobq.error_rules; else 'unknown')
--   policy           jobq._retry_policy (queue row, else '*' row; NULL
--                    backoff columns = the queue's own)
--   delay            jobq.backoff_delay (strategy, cap, jitter), raised to
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
                                   n integer)
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
            HINT = 'Use one of exponential, linear, fibonacci, aggressive, fixed.';
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
    IF jitter > 0 THEN
        d := d * (1 + jitter * (2 * random() - 1));
    END IF;
    d := least(greatest(d, 0), cap);
    RETURN make_interval(secs => d);
END
$fn$;
COMMENT ON FUNCTION jobq.backoff_delay(text, interval, interval, double precision, integer) IS
    'jobq: delay before retry n (n = 1 first retry): exponential base*2^(n-1), linear base*n, fibonacci base*fib(n), aggressive base*3^(n-1), fixed base; capped at max_delay, then +/- jitter fraction, never above max_delay';

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
                                   OUT base_delay interval, OUT max_delay interval)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(p.retry, false),
           coalesce(p.backoff, q.backoff),
           coalesce(p.base_delay, q.base_delay),
           coalesce(p.max_delay, q.max_delay)
      FROM jobq.queues q
      LEFT JOIN LATERAL (
            SELECT rp.retry, rp.backoff, rp.base_delay, rp.max_delay
              FROM jobq.retry_policies rp
             WHERE rp.error_class = _retry_policy.error_class
               AND rp.queue IN (q.name, '*')
             ORDER BY rp.queue = '*'
             LIMIT 1) p ON true
     WHERE q.name = _retry_policy.queue;
END;
COMMENT ON FUNCTION jobq._retry_policy(text, text) IS
    'Internal: the retry policy of a class in a queue: the queue''s row, else the ''*'' row, else no retry; NULL backoff columns filled from the queue';

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
    delay := jobq.backoff_delay(pol.backoff, pol.base_delay, pol.max_delay, q.jitter, n);
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
    IF after < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retry delay must not be negative, not %s', after),
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
    (60, NULL, 400, 499, 'permanent',         true, 'HTTP other 4xx');

INSERT INTO jobq.retry_policies (queue, error_class, retry, backoff, builtin) VALUES
    ('*', 'transient',    true,  NULL,         true),
    ('*', 'timeout',      true,  'linear',     true),
    ('*', 'rate_limited', true,  'aggressive', true),
    ('*', 'unknown',      true,  NULL,         true),
    ('*', 'worker_lost',  true,  NULL,         true),
    ('*', 'validation',   false, NULL,         true),
    ('*', 'permanent',    false, NULL,         true),
    ('*', 'api_error',    false, NULL,         true),
    ('*', 'cancelled',    false, NULL,         true);
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
            HINT = 'Use one of exponential, linear, fibonacci, aggressive, fixed.';
    END IF;
    IF q.base_delay IS NULL OR q.base_delay < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('base_delay must not be negative, not %s', coalesce(q.base_delay::text, 'NULL')),
            DETAIL = 'base_delay is the delay the backoff strategy starts from.',
            HINT = 'Pass an interval such as ''1 second''.';
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
    IF q.timeout IS NULL OR q.timeout <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('timeout must be positive, not %s', coalesce(q.timeout::text, 'NULL')),
            DETAIL = 'timeout is the hard limit of one attempt.',
            HINT = 'Pass an interval such as ''3 minutes''.';
    END IF;
    IF q.warn_after IS NOT NULL AND q.warn_after <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('warn_after must be positive, not %s', q.warn_after),
            DETAIL = 'A running attempt past warn_after is logged as slow.',
            HINT = 'Pass NULL to never warn.';
    END IF;
    IF q.rate_limit IS NOT NULL AND NOT (q.rate_limit > 0 AND q.rate_limit < 'Infinity'::float8) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('rate_limit must be a positive number, not %s', q.rate_limit),
            DETAIL = 'rate_limit is the most job starts per second of the queue.',
            HINT = 'Pass NULL for no limit, 0.5 for one start every two seconds.';
    END IF;
    IF q.retention IS NULL OR q.retention < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retention must not be negative, not %s', coalesce(q.retention::text, 'NULL')),
            DETAIL = 'Completed and cancelled jobs are kept for retention.',
            HINT = 'Pass ''0'' to remove them at the next cleanup.';
    END IF;
    IF q.breaker IS NOT NULL AND q.breaker = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'breaker must not be empty',
            DETAIL = 'breaker is the circuit breaker key of the queue.',
            HINT = 'Pass NULL to use the queue name as the circuit breaker key.';
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
    breaker       text             DEFAULT NULL)
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
    PERFORM jobq._check_queue(q);

    INSERT INTO jobq.queues (name, kind, handler, concurrency, max_attempts,
                             backoff, base_delay, max_delay, jitter, timeout,
                             warn_after, rate_limit, retention, breaker)
    VALUES (q.name, q.kind, q.handler, q.concurrency, q.max_attempts,
            q.backoff, q.base_delay, q.max_delay, q.jitter, q.timeout,
            q.warn_after, q.rate_limit, q.retention, q.breaker)
    ON CONFLICT ON CONSTRAINT queues_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('queue "%s" already exists', q.name),
            DETAIL = 'Queue names are unique in a database.',
            HINT = 'Use jobq.alter_queue() to change it, or jobq.drop_queue() first.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq.create_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text) IS
    'jobq: creates a queue (kind sql when a handler is given, else external unless kind says http)';

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
    reset         text[]           DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    q       jobq.queues;
    opt     text;
    options CONSTANT text[] := ARRAY['handler', 'concurrency', 'max_attempts',
        'backoff', 'base_delay', 'max_delay', 'jitter', 'timeout',
        'warn_after', 'rate_limit', 'retention', 'breaker'];
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
    PERFORM jobq._check_queue(q);

    UPDATE jobq.queues
       SET kind = q.kind, handler = q.handler, concurrency = q.concurrency,
           max_attempts = q.max_attempts, backoff = q.backoff,
           base_delay = q.base_delay, max_delay = q.max_delay,
           jitter = q.jitter, timeout = q.timeout, warn_after = q.warn_after,
           rate_limit = q.rate_limit, retention = q.retention,
           breaker = q.breaker, updated_at = now(),
           rate_tokens = CASE WHEN q.rate_limit IS DISTINCT FROM queues.rate_limit
                              THEN NULL ELSE queues.rate_tokens END
     WHERE queues.name = q.name;
    -- a higher concurrency or rate limit (or a new handler) may let waiting
    -- jobs run now; idle executors do not watch a full queue: wake one
    PERFORM jobq._wake_at_commit();
END
$fn$;
COMMENT ON FUNCTION jobq.alter_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text, text[]) IS
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
-- jobq install script, part 45: jobs: submit (C), cancel, retry_now, the
-- claim, heartbeat, complete, fail, release and lost-lease recovery.
--
-- Internal contract used by executors (src/README.md "Internal SQL
-- contract"): jobq._claim, jobq._complete, jobq._fail, jobq._release,
-- jobq._recover_lost.  (id, attempt) names one lease: a call whose lease is
-- not the job's current running lease changes nothing.
--
-- A job leaves jobs_active by DELETE ... RETURNING feeding an INSERT INTO
-- jobs_final (never an UPDATE of state across partitions: a concurrent
-- FOR UPDATE SKIP LOCKED skips a deleted row, but raises 40001 on a row
-- moved by a cross-partition UPDATE).

---------------------------------------------------------------------------
-- HTTP payloads
---------------------------------------------------------------------------
CREATE FUNCTION jobq._http_payload(url text, method text, headers jsonb,
                                   body text, timeout_ms integer,
                                   timeout interval DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    m       text := upper(coalesce(method, 'GET'));
    h       jsonb := coalesce(headers, '{}'::jsonb);
    k       text;
    v       jsonb;
    ms      integer;
BEGIN
    IF url IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'url must not be NULL',
            DETAIL = 'An HTTP job needs the URL it requests.',
            HINT = 'Pass an http:// or https:// URL.';
    END IF;
    IF url !~* '^https?://' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid URL "%s"', url),
            DETAIL = 'The URL scheme must be http or https.',
            HINT = 'Pass a URL such as https://example.com/hook.';
    END IF;
    IF url !~* '^https?://([^/?#[:space:][:cntrl:]@]*@)?(\[[0-9a-f:.]+\]|[^/?#[:space:][:cntrl:]@:\[\]]+)(:[0-9]{1,5})?([/?#][^[:space:][:cntrl:]]*)?$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid URL "%s"', url),
            DETAIL = 'The URL needs a host, and must not contain spaces or control characters.',
            HINT = 'Percent-encode spaces and special characters (%20).';
    END IF;
    IF NOT (m = ANY (ARRAY['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'])) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unsupported HTTP method "%s"', method),
            DETAIL = 'jobq sends the common HTTP methods only.',
            HINT = 'Use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.';
    END IF;
    IF jsonb_typeof(h) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'headers must be a JSON object',
            DETAIL = format('It is a JSON %s.', jsonb_typeof(h)),
            HINT = 'Pass headers such as ''{"Content-Type": "application/json"}''.';
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(h) e LOOP
        IF k !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('invalid HTTP header name "%s"', k),
                DETAIL = 'A header name is a token: letters, digits and !#$%&''*+-.^_`|~.',
                HINT = 'Remove spaces and colons from the header name.';
        END IF;
        IF jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('HTTP header "%s" must be a JSON string', k),
                DETAIL = format('It is a JSON %s.', jsonb_typeof(v)),
                HINT = 'Quote header values, e.g. {"X-Count": "3"}.';
        END IF;
        IF (v #>> '{}') ~ '[\r\n\x01-\x08\x0b\x0c\x0e-\x1f]' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('HTTP header "%s" contains a control character', k),
                DETAIL = 'Line breaks in a header value would inject headers.',
                HINT = 'Remove line breaks and control characters from header values.';
        END IF;
    END LOOP;
    IF timeout_ms IS NOT NULL AND timeout_ms <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('timeout_ms must be positive, not %s', timeout_ms),
            DETAIL = 'timeout_ms is the time limit of the HTTP request.',
            HINT = 'Pass NULL for the default.';
    END IF;
    ms := coalesce(timeout_ms,
                   CASE WHEN timeout IS NOT NULL
                        THEN least(greatest((extract(epoch FROM timeout) * 1000)::bigint, 1),
                                   2147483647)::integer
                   END,
                   5000);
    RETURN jsonb_build_object('url', url, 'method', m, 'headers', h,
                              'body', body, 'timeout_ms', ms);
END
$fn$;
COMMENT ON FUNCTION jobq._http_payload(text, text, jsonb, text, integer, interval) IS
    'Internal: validates an HTTP request and returns it as a job payload {url, method, headers, body, timeout_ms} (timeout_ms: given, else the job timeout, else 5000)';

CREATE FUNCTION jobq._check_http_payload(payload jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF jsonb_typeof(payload) <> 'object' OR NOT payload ? 'url' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'payload of an http job must be a JSON object with a "url"',
            DETAIL = 'Jobs of an http queue are HTTP requests: {"url", "method", "headers", "body", "timeout_ms"}.',
            HINT = 'Use jobq.submit_http().';
    END IF;
    IF jsonb_typeof(payload -> 'timeout_ms') NOT IN ('number', 'null') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'timeout_ms of an http job must be a JSON number',
            DETAIL = 'timeout_ms is the time limit of the HTTP request in milliseconds.',
            HINT = 'Use jobq.submit_http().';
    END IF;
    RETURN payload || jobq._http_payload(payload ->> 'url', payload ->> 'method',
                                         payload -> 'headers', payload ->> 'body',
                                         (payload ->> 'timeout_ms')::numeric::integer);
END
$fn$;
COMMENT ON FUNCTION jobq._check_http_payload(jsonb) IS
    'Internal: validates and normalises the payload of a job submitted with jobq.submit to an http queue';

---------------------------------------------------------------------------
-- submit (C: captures the calling role)
---------------------------------------------------------------------------
CREATE FUNCTION jobq.submit(queue text, payload jsonb DEFAULT '{}',
                            run_at timestamptz DEFAULT NULL,
                            priority integer DEFAULT 0,
                            unique_key text DEFAULT NULL,
                            max_attempts integer DEFAULT NULL,
                            timeout interval DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_submit';
COMMENT ON FUNCTION jobq.submit(text, jsonb, timestamptz, integer, text, integer, interval) IS
    'jobq: submits a job, owned by the calling role; returns its id (or the id of the not-final job of the queue with the same unique_key)';

CREATE FUNCTION jobq.submit_batch(queue text, payloads jsonb,
                                  run_at timestamptz DEFAULT NULL,
                                  priority integer DEFAULT 0,
                                  unique_key text DEFAULT NULL,
                                  max_attempts integer DEFAULT NULL,
                                  timeout interval DEFAULT NULL)
    RETURNS SETOF bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'jobq_submit_batch';
COMMENT ON FUNCTION jobq.submit_batch(text, jsonb, timestamptz, integer, text, integer, interval) IS
    'jobq: submits one job per element of the JSON array payloads, in one statement; returns the ids in array order (unique_key must be NULL)';

CREATE FUNCTION jobq.submit_http(url text, method text DEFAULT 'GET',
                                 headers jsonb DEFAULT '{}',
                                 body text DEFAULT NULL,
                                 queue text DEFAULT 'http',
                                 run_at timestamptz DEFAULT NULL,
                                 priority integer DEFAULT 0,
                                 unique_key text DEFAULT NULL,
                                 max_attempts integer DEFAULT NULL,
                                 timeout interval DEFAULT NULL,
                                 timeout_ms integer DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_submit_http';
COMMENT ON FUNCTION jobq.submit_http(text, text, jsonb, text, text, timestamptz, integer, text, integer, interval, integer) IS
    'jobq: submits an HTTP request (validated: http/https URL, known method, headers a JSON object of strings) as a job of an http queue';

---------------------------------------------------------------------------
-- who may manage a job
---------------------------------------------------------------------------
CREATE FUNCTION jobq._may_manage(owner regrole, caller regrole) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN owner::oid = caller::oid
        OR pg_has_role(caller::oid, 'jobq_admin', 'USAGE');
COMMENT ON FUNCTION jobq._may_manage(regrole, regrole) IS
    'Internal: true when caller submitted the job or has the privileges of jobq_admin';

CREATE FUNCTION jobq._no_job(id bigint) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'undefined_object',
        MESSAGE = format('job %s does not exist', id),
        DETAIL = 'Final jobs are removed after their queue''s retention.',
        HINT = 'jobq.jobs lists the jobs you may see.';
END
$fn$;
COMMENT ON FUNCTION jobq._no_job(bigint) IS 'Internal: raises 42704 for an unknown job.';

CREATE FUNCTION jobq._not_your_job(id bigint, action text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = format('permission denied to %s job %s', action, id),
        DETAIL = 'Only the role that submitted a job, or a member of jobq_admin, may do this.',
        HINT = 'Ask a member of jobq_admin.';
END
$fn$;
COMMENT ON FUNCTION jobq._not_your_job(bigint, text) IS 'Internal: raises 42501 for a job of another role.';

---------------------------------------------------------------------------
-- cancel, retry_now (called by the C entry points with the captured caller)
---------------------------------------------------------------------------
CREATE FUNCTION jobq._cancel(id bigint, caller regrole,
                             OUT cancelled boolean, OUT claimed_by bigint)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    j       jobq.jobs_active;
    o       regrole;
BEGIN
    SELECT * INTO j FROM jobq.jobs_active a WHERE a.id = _cancel.id FOR UPDATE;
    IF FOUND THEN
        IF NOT jobq._may_manage(j.owner, caller) THEN
            PERFORM jobq._not_your_job(j.id, 'cancel');
        END IF;
        PERFORM jobq._finalize(j.id, 'cancelled', NULL, NULL, NULL);
        IF j.state = 'running' THEN
            INSERT INTO jobq.job_attempts (job_id, attempt, queue, owner, started_at,
                                           outcome, error_class, error, worker)
            VALUES (j.id, j.attempt, j.queue, j.owner, j.started_at,
                    'cancelled', 'cancelled', format('cancelled by %s', caller), j.worker);
            claimed_by := j.claimed_by;
        END IF;
        cancelled := true;
        RETURN;
    END IF;
    SELECT f.owner INTO o FROM jobq.jobs_final f WHERE f.id = _cancel.id;
    IF NOT FOUND THEN
        PERFORM jobq._no_job(_cancel.id);
    END IF;
    IF NOT jobq._may_manage(o, caller) THEN
        PERFORM jobq._not_your_job(_cancel.id, 'cancel');
    END IF;
    cancelled := false;
END
$fn$;
COMMENT ON FUNCTION jobq._cancel(bigint, regrole) IS
    'Internal (jobq.cancel): cancels a pending or running job on behalf of caller; claimed_by tells jobq.cancel which executor to interrupt';

CREATE FUNCTION jobq._retry_now(id bigint, caller regrole) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    j       record;
    q       text;
    p       integer;
BEGIN
    SELECT a.owner, a.state INTO j FROM jobq.jobs_active a WHERE a.id = _retry_now.id FOR UPDATE;
    IF NOT FOUND THEN
        SELECT f.owner, f.state INTO j FROM jobq.jobs_final f WHERE f.id = _retry_now.id;
        IF NOT FOUND THEN
            PERFORM jobq._no_job(_retry_now.id);
        END IF;
    END IF;
    IF NOT jobq._may_manage(j.owner, caller) THEN
        PERFORM jobq._not_your_job(_retry_now.id, 'retry');
    END IF;
    IF j.state <> 'pending' THEN
        RETURN false;
    END IF;
    UPDATE jobq.jobs_active a SET run_at = now()
     WHERE a.id = _retry_now.id AND a.run_at > now()
    RETURNING a.queue, a.priority INTO q, p;
    IF FOUND THEN
        -- a claim-index entry earlier than before: claims must look there
        PERFORM jobq._claim_floor_note(q, p, now(), _retry_now.id);
    END IF;
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION jobq._retry_now(bigint, regrole) IS
    'Internal (jobq.retry_now): makes a pending job due now on behalf of caller; false unless pending';

CREATE FUNCTION jobq.cancel(id bigint) RETURNS boolean
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_cancel';
COMMENT ON FUNCTION jobq.cancel(bigint) IS
    'jobq: cancels a pending or running job of the calling role (any job for jobq_admin); false when it is already final';

CREATE FUNCTION jobq.retry_now(id bigint) RETURNS boolean
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_retry_now';
COMMENT ON FUNCTION jobq.retry_now(bigint) IS
    'jobq: a pending job waiting for its run_at (backoff or schedule) runs now; false when it is running or final';

---------------------------------------------------------------------------
-- attempts and moves to jobs_final
---------------------------------------------------------------------------
-- Moves a job (any state) from jobs_active to jobs_final with new_state.
CREATE FUNCTION jobq._finalize(id bigint, new_state text, result jsonb,
                               error_class text, error text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    WITH d AS (DELETE FROM jobq.jobs_active a WHERE a.id = _finalize.id RETURNING a.*)
    INSERT INTO jobq.jobs_final (id, queue, payload, state, priority, run_at,
            attempt, max_attempts, unique_key, timeout, owner, created_at,
            started_at, completed_at, last_heartbeat, lease_expires_at,
            worker, claimed_by, snoozes, error_type, last_error, result)
    SELECT d.id, d.queue, d.payload, _finalize.new_state, d.priority, d.run_at,
           d.attempt, d.max_attempts, d.unique_key, d.timeout, d.owner, d.created_at,
           d.started_at, clock_timestamp(), d.last_heartbeat, NULL,
           d.worker, d.claimed_by, d.snoozes,
           coalesce(_finalize.error_class, d.error_type),
           coalesce(_finalize.error, d.last_error), _finalize.result
      FROM d;
END
$fn$;
COMMENT ON FUNCTION jobq._finalize(bigint, text, jsonb, text, text) IS
    'Internal: moves a job from jobs_active to jobs_final (DELETE ... RETURNING into INSERT, never a cross-partition UPDATE)';

---------------------------------------------------------------------------
-- the claim
---------------------------------------------------------------------------
CREATE FUNCTION jobq._check_lease(lease interval, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s must be positive, not %s', what, coalesce(lease::text, 'NULL')),
            DETAIL = 'A lease is how long a worker holds a job without a heartbeat.',
            HINT = 'Pass an interval such as ''30 seconds''.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_lease(interval, text) IS 'Internal: validates a lease length.';

-- Jobs of sql (and http) queues run in jobq's executors, as their owner:
-- handing one to an external worker would give it the owner's payload and
-- let the job run without its handler.
CREATE FUNCTION jobq._not_external(queue text, kind text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
        MESSAGE = format('queue "%s" is not for external workers', queue),
        DETAIL = format('Jobs of a queue of kind %s are run by jobq''s executors.', kind),
        HINT = 'jobq.claim takes jobs of queues created with kind => ''external'' (or no handler).';
END
$fn$;
COMMENT ON FUNCTION jobq._not_external(text, text) IS 'Internal: the error of an external claim on a queue run by the executors.';

CREATE FUNCTION jobq._claim(queue text, max_jobs integer, lease interval,
                            worker text, claimed_by bigint DEFAULT NULL)
    RETURNS SETOF jobq.jobs_active
    LANGUAGE plpgsql VOLATILE ROWS 10
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    q           record;
    n           integer;
    running     integer;
    tokens      float8;
    got         bigint;
    due_by      timestamptz;
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_jobs must be at least 1, not %s', coalesce(max_jobs::text, 'NULL')),
            DETAIL = 'max_jobs is the most jobs one claim returns.',
            HINT = 'Pass the number of jobs the worker can take at once.';
    END IF;
    PERFORM jobq._check_lease(lease, 'lease');

    SELECT qq.name, qq.kind, qq.paused, qq.concurrency, qq.rate_limit INTO q
      FROM jobq.queues qq WHERE qq.name = _claim.queue;
    IF NOT FOUND THEN
        PERFORM jobq._no_queue(_claim.queue);
    END IF;
    IF _claim.claimed_by IS NULL AND q.kind <> 'external' THEN
        PERFORM jobq._not_external(q.name, q.kind);
    END IF;
    IF q.paused THEN
        RETURN;
    END IF;

    -- Opportunistic recovery of expired external leases: one probe of the
    -- lease index when nothing expired.
    PERFORM jobq._recover_expired(100);

    n := max_jobs;
    IF q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL THEN
        -- Limited queues: claims of this queue are serialised by the queue
        -- row lock (until the claiming transaction ends), so the count of
        -- running jobs and the token bucket are exact.
        SELECT qq.name, qq.paused, qq.concurrency, qq.rate_limit,
               qq.rate_tokens, qq.rate_refilled_at INTO q
          FROM jobq.queues qq WHERE qq.name = _claim.queue FOR NO KEY UPDATE;
        IF NOT FOUND OR q.paused THEN
            RETURN;
        END IF;
        IF q.concurrency IS NOT NULL THEN
            SELECT count(*) INTO running FROM jobq.jobs_active a
             WHERE a.queue = q.name AND a.state = 'running';
            n := least(n, q.concurrency - running);
        END IF;
        IF q.rate_limit IS NOT NULL THEN
            -- Token bucket: capacity max(1, rate_limit) starts, refilled at
            -- rate_limit per second.
            tokens := least(greatest(1, q.rate_limit),
                            coalesce(q.rate_tokens, greatest(1, q.rate_limit))
                            + q.rate_limit * greatest(0, extract(epoch FROM now() - coalesce(q.rate_refilled_at, now()))));
            n := least(n, floor(tokens)::integer);
        END IF;
        -- Out of tokens: nothing to write, the bucket's state (tokens at
        -- rate_refilled_at) still gives the same refill later.
        IF n < 1 THEN
            RETURN;
        END IF;
    END IF;

    -- due at the moment of the claim, as a value (an index condition; a
    -- clock_timestamp() call in the query would cost a heap fetch per
    -- not-yet-due entry passed)
    due_by := clock_timestamp();
    RETURN QUERY
    WITH c AS (
        SELECT a.id
          FROM jobq.jobs_active a
         -- due at the moment of the claim (a retry's run_at is set from the clock)
         WHERE a.queue = q.name AND a.state = 'pending' AND a.run_at <= due_by
         ORDER BY a.priority DESC, a.run_at, a.id
         LIMIT n
           FOR UPDATE SKIP LOCKED),
    u AS (
        UPDATE jobq.jobs_active a
           SET state = 'running', attempt = a.attempt + 1, started_at = now(),
               last_heartbeat = now(), lease_expires_at = now() + lease,
               worker = _claim.worker, claimed_by = _claim.claimed_by
          FROM c
         WHERE a.id = c.id
        RETURNING a.*)
    SELECT * FROM u ORDER BY u.priority DESC, u.run_at, u.id;
    GET DIAGNOSTICS got = ROW_COUNT;

    -- Only starts change the bucket: a claim that found nothing writes
    -- nothing (every claim round visits every queue).
    IF q.rate_limit IS NOT NULL AND got > 0 THEN
        UPDATE jobq.queues qq SET rate_tokens = tokens - got, rate_refilled_at = now()
         WHERE qq.name = q.name;
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._claim(text, integer, interval, text, bigint) IS
    'Internal: the one claim (external workers and executors): up to max_jobs due pending jobs by priority DESC, run_at, id, FOR UPDATE SKIP LOCKED; honours paused, concurrency and rate_limit; increments attempt; claimed_by = executor token (NULL for external workers)';

---------------------------------------------------------------------------
-- outcomes
---------------------------------------------------------------------------
CREATE FUNCTION jobq._complete(id bigint, attempt integer, result jsonb)
    RETURNS boolean
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'jobq_complete_lease';
-- In C (src/claim.c, ClaimComplete): the statement executors run after every
-- job, kept planned once per process; external workers reach the same code.
COMMENT ON FUNCTION jobq._complete(bigint, integer, jsonb) IS
    'Internal: fenced; the job of lease (id, attempt) is completed with result and its attempt recorded; false (nothing changed) when that lease is not the job''s current running lease';

CREATE FUNCTION jobq._fail(id bigint, attempt integer, error text,
                           error_class text, retry_after interval,
                           sqlstate text DEFAULT NULL,
                           http_status integer DEFAULT NULL,
                           detail text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    j       jobq.jobs_active;
    cls     text;
    ra      interval;
    d       record;
    -- the failure's instant: the attempt's end and the start of its backoff
    -- (not now(), the transaction's start: a long attempt must not eat
    -- into its own backoff)
    t       timestamptz := clock_timestamp();
BEGIN
    PERFORM jobq._check_error_class(error_class);
    PERFORM jobq._check_after(retry_after);

    SELECT * INTO j FROM jobq.jobs_active a
     WHERE a.id = _fail.id AND a.attempt = _fail.attempt
       AND pg_catalog.texteq(a.state, 'running')  -- by id: see jobs_active_running_idx
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    -- classification: an explicit class wins ('unknown' asks the rules)
    cls := CASE WHEN error_class IS NULL OR error_class = 'unknown'
                THEN jobq.classify_error(sqlstate, http_status, error)
                ELSE error_class END;
    ra := coalesce(retry_after, jobq._retry_after_from_detail(detail));
    SELECT * INTO d FROM jobq._retry_decision(j.queue, j.max_attempts, j.attempt,
                                              j.snoozes, cls, ra);

    INSERT INTO jobq.job_attempts (job_id, attempt, queue, owner, started_at,
                                   finished_at, outcome, error_class, error, sqlstate,
                                   http_status, worker, detail)
    VALUES (j.id, j.attempt, j.queue, j.owner, j.started_at, t,
            CASE WHEN d.snooze THEN 'snoozed' ELSE 'failed' END, cls, error,
            sqlstate, http_status, j.worker, detail);

    -- A slot of a concurrency-limited SQL queue came free: idle executors do
    -- not watch full queues, so wake one (see ClaimComplete in src/claim.c).
    IF EXISTS (SELECT FROM jobq.queues q
                WHERE q.name = j.queue AND q.kind = 'sql' AND q.concurrency IS NOT NULL) THEN
        PERFORM jobq._wake_at_commit();
    END IF;

    IF d.retry THEN
        UPDATE jobq.jobs_active a
           SET state = 'pending', run_at = t + d.delay,
               snoozes = a.snoozes + CASE WHEN d.snooze THEN 1 ELSE 0 END,
               error_type = cls, last_error = error,
               lease_expires_at = NULL, worker = NULL, claimed_by = NULL
         WHERE a.id = j.id;
        PERFORM jobq._claim_floor_note(j.queue, j.priority, t + d.delay, j.id);
        RETURN 'pending';
    END IF;

    -- exhausted or not retryable: failed, with a dead letter
    PERFORM jobq._finalize(j.id, 'failed', NULL, cls, error);
    INSERT INTO jobq.dead_letter (job_id, queue, payload, owner, priority,
                                  max_attempts, timeout, error_class,
                                  last_error, attempts, history)
    SELECT j.id, j.queue, j.payload, j.owner, j.priority, j.max_attempts,
           j.timeout, cls, error, j.attempt - j.snoozes,
           coalesce((SELECT jsonb_agg(to_jsonb(h) - 'job_id' - 'queue' - 'owner'
                                      ORDER BY h.attempt)
                       FROM jobq.job_attempts h WHERE h.job_id = j.id), '[]');
    RETURN 'failed';
END
$fn$;
COMMENT ON FUNCTION jobq._fail(bigint, integer, text, text, interval, text, integer, text) IS
    'Internal: fenced; records the failed attempt, classifies it (error_class NULL or unknown: jobq.error_rules), and schedules the retry (returns pending) or dead-letters the job (returns failed); NULL when the lease is not current. A DETAIL "jobq.retry_after=<s>" gives the delay when retry_after is NULL';

CREATE FUNCTION jobq._release(id bigint, attempt integer) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    j       jobq.jobs_active;
BEGIN
    SELECT * INTO j FROM jobq.jobs_active a
     WHERE a.id = _release.id AND a.attempt = _release.attempt
       AND pg_catalog.texteq(a.state, 'running')  -- by id: see jobs_active_running_idx
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO jobq.job_attempts (job_id, attempt, queue, owner, started_at,
                                   outcome, worker)
    VALUES (j.id, j.attempt, j.queue, j.owner, j.started_at, 'released', j.worker);
    UPDATE jobq.jobs_active a
       SET state = 'pending', snoozes = a.snoozes + 1,
           lease_expires_at = NULL, worker = NULL, claimed_by = NULL
     WHERE a.id = j.id;
    PERFORM jobq._claim_floor_note(j.queue, j.priority, j.run_at, j.id);
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION jobq._release(bigint, integer) IS
    'Internal: fenced; gives a running job back (pending, same run_at) without using up its attempt (shutdown grace)';

CREATE FUNCTION jobq._recover_expired(max_jobs integer DEFAULT 100) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r       record;
    n       integer := 0;
BEGIN
    FOR r IN SELECT a.id, a.attempt, a.worker, a.lease_expires_at
               FROM jobq.jobs_active a
              WHERE pg_catalog.texteq(a.state, 'running') AND a.claimed_by IS NULL
                AND a.lease_expires_at < now()  -- jobs_active_lease_idx only
              ORDER BY a.lease_expires_at
              LIMIT max_jobs
                FOR UPDATE SKIP LOCKED
    LOOP
        IF jobq._fail(r.id, r.attempt,
                      format('lease of worker %s expired at %s without heartbeat',
                             coalesce(quote_literal(r.worker), '(unnamed)'), r.lease_expires_at),
                      'worker_lost', NULL) IS NOT NULL THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION jobq._recover_expired(integer) IS
    'Internal: running jobs of external workers whose lease expired fail with worker_lost (attempt used); at most max_jobs per call';

CREATE FUNCTION jobq._recover_lost(live_tokens bigint[]) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r       record;
    n       integer := 0;
BEGIN
    IF live_tokens IS NOT NULL THEN
        FOR r IN SELECT a.id, a.attempt, a.claimed_by
                   FROM jobq.jobs_active a
                  WHERE a.state = 'running' AND a.claimed_by IS NOT NULL
                    AND NOT (a.claimed_by = ANY (live_tokens))
                    FOR UPDATE SKIP LOCKED
        LOOP
            IF jobq._fail(r.id, r.attempt,
                          format('jobq executor %s holding the job is gone', r.claimed_by),
                          'worker_lost', NULL) IS NOT NULL THEN
                n := n + 1;
            END IF;
        END LOOP;
    END IF;
    n := n + jobq._recover_expired(10000);
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION jobq._recover_lost(bigint[]) IS
    'Internal: running jobs lost by their holder fail with worker_lost (attempt used): executor jobs whose claimed_by is not in live_tokens (skipped when live_tokens is NULL) and external jobs whose lease expired; returns how many';

---------------------------------------------------------------------------
-- external workers (jobq_worker, jobq_admin)
---------------------------------------------------------------------------
CREATE FUNCTION jobq.claim(queue text, max_jobs integer DEFAULT 1,
                           lease interval DEFAULT '30 seconds',
                           worker text DEFAULT NULL)
    RETURNS TABLE (id bigint, payload jsonb, attempt integer,
                   lease_expires_at timestamptz)
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 10
    AS 'MODULE_PATHNAME', 'jobq_claim';
-- In C (src/worker_api.c): an unlimited queue is claimed with the executors'
-- one-statement claim; anything else goes through jobq._claim.
COMMENT ON FUNCTION jobq.claim(text, integer, interval, text) IS
    'jobq: claims up to max_jobs due jobs of queue for an external worker (priority DESC, run_at, id); each is leased until lease_expires_at; (id, attempt) names the lease. Call it in its own transaction';

CREATE FUNCTION jobq.heartbeat(id bigint, attempt integer, extend interval DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF extend IS NOT NULL THEN
        PERFORM jobq._check_lease(extend, 'extend');
    END IF;
    UPDATE jobq.jobs_active a
       SET lease_expires_at = now() + coalesce(extend,
                                               a.lease_expires_at - a.last_heartbeat,
                                               interval '30 seconds'),
           last_heartbeat = now()
     WHERE a.id = heartbeat.id AND a.attempt = heartbeat.attempt
       AND pg_catalog.texteq(a.state, 'running')  -- by id: see jobs_active_running_idx
       AND a.claimed_by IS NULL;                   -- an external worker's lease
    RETURN FOUND;
END
$fn$;
COMMENT ON FUNCTION jobq.heartbeat(bigint, integer, interval) IS
    'jobq: extends the lease (id, attempt) by extend (default: the lease length given to claim); false when the holder must stop: job cancelled, lease recovered or claimed again';

-- In C (src/worker_api.c): runs as the extension owner like a SECURITY
-- DEFINER function, without the wrapper's cost on every job.
CREATE FUNCTION jobq.complete(id bigint, attempt integer, result jsonb DEFAULT NULL)
    RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_complete';
COMMENT ON FUNCTION jobq.complete(bigint, integer, jsonb) IS
    'jobq: completes the job of lease (id, attempt) with result; false, changing nothing, when that lease is no longer the job''s current running lease';

CREATE FUNCTION jobq.fail(id bigint, attempt integer, error text,
                          error_class text DEFAULT 'unknown',
                          retry_after interval DEFAULT NULL,
                          sqlstate text DEFAULT NULL,
                          http_status integer DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- An executor's lease is not an external worker's to end: its handler's
    -- writes would be thrown away with its completion.  claimed_by is set
    -- with the lease, so (id, attempt) tells whose it is.
    IF EXISTS (SELECT FROM jobq.jobs_active a
                WHERE a.id = fail.id AND a.attempt = fail.attempt
                  AND a.claimed_by IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    RETURN jobq._fail(id, attempt, error, error_class, retry_after, sqlstate, http_status, NULL);
END
$fn$;
COMMENT ON FUNCTION jobq.fail(bigint, integer, text, text, interval, text, integer) IS
    'jobq: fails the attempt of lease (id, attempt): returns pending (retry scheduled) or failed (dead letter), NULL (nothing changed) when the lease is not current. error_class NULL or unknown: classified by jobq.error_rules from error, sqlstate and http_status';
-- jobq install script, part 50: the dead letter queue (jobq_admin).
-- Rows are written by jobq._fail when a job is exhausted or not retryable.

CREATE FUNCTION jobq._no_dead_letter(id bigint) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'undefined_object',
        MESSAGE = format('dead letter %s does not exist', id),
        DETAIL = 'The id of a dead letter is jobq.dead_letter.id, not the id of its job.',
        HINT = 'SELECT id FROM jobq.dead_letter WHERE job_id = ... finds it.';
END
$fn$;
COMMENT ON FUNCTION jobq._no_dead_letter(bigint) IS 'Internal: raises 42704 for an unknown dead letter.';

CREATE FUNCTION jobq.requeue_dead(dead_letter_id bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    dl      jobq.dead_letter;
    new_id  bigint;
BEGIN
    SELECT * INTO dl FROM jobq.dead_letter d WHERE d.id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._no_dead_letter(dead_letter_id);
    END IF;
    IF dl.requeued_job_id IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('dead letter %s was already requeued', dl.id),
            DETAIL = format('It was requeued as job %s.', dl.requeued_job_id),
            HINT = 'Look at that job, or requeue its own dead letter if it failed again.';
    END IF;
    IF dl.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('dead letter %s is already resolved', dl.id),
            DETAIL = format('It was resolved at %s: %s.', dl.resolved_at, coalesce(dl.resolution_note, 'no note')),
            HINT = 'Submit a new job with its payload instead.';
    END IF;
    PERFORM FROM jobq.queues q WHERE q.name = dl.queue;
    IF NOT FOUND THEN
        PERFORM jobq._no_queue(dl.queue);
    END IF;

    INSERT INTO jobq.jobs_active (queue, payload, state, priority, run_at,
                                  max_attempts, timeout, owner)
    VALUES (dl.queue, dl.payload, 'pending', dl.priority, now(),
            dl.max_attempts, dl.timeout, dl.owner)
    RETURNING jobs_active.id INTO new_id;
    PERFORM jobq._claim_floor_note(dl.queue, dl.priority, now(), new_id);

    UPDATE jobq.dead_letter d
       SET resolved_at = now(), requeued_job_id = new_id,
           resolution_note = format('requeued as job %s', new_id)
     WHERE d.id = dl.id;
    PERFORM jobq._wake_at_commit();
    RETURN new_id;
END
$fn$;
COMMENT ON FUNCTION jobq.requeue_dead(bigint) IS
    'jobq: submits the dead letter''s payload again (same queue, owner, priority and overrides; fresh attempts; no unique_key) and marks the dead letter resolved; returns the new job id';

CREATE FUNCTION jobq.resolve_dead(dead_letter_id bigint, note text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    dl      jobq.dead_letter;
BEGIN
    SELECT * INTO dl FROM jobq.dead_letter d WHERE d.id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._no_dead_letter(dead_letter_id);
    END IF;
    IF dl.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('dead letter %s is already resolved', dl.id),
            DETAIL = format('It was resolved at %s: %s.', dl.resolved_at, coalesce(dl.resolution_note, 'no note')),
            HINT = 'A dead letter is resolved once; its note stays.';
    END IF;
    UPDATE jobq.dead_letter d SET resolved_at = now(), resolution_note = note
     WHERE d.id = dl.id;
END
$fn$;
COMMENT ON FUNCTION jobq.resolve_dead(bigint, text) IS
    'jobq: marks a dead letter as handled, with a note, without running the job again';
-- jobq install script, part 55: privileges, row level security, pg_dump.
--
-- The tables are the trust boundary (ARCHITECTURE-AND-STYLE §3 item 1):
-- nobody but the extension owner writes them (PUBLIC and jobq_worker get no
-- INSERT/UPDATE/DELETE anywhere; jobq_admin only on error_rules and
-- retry_policies).  Every write goes through the C entry points or a
-- SECURITY DEFINER function with a pinned search_path.
--
-- Submitters: GRANT USAGE ON SCHEMA jobq TO role.  The role may then submit
-- to any queue whose handler it may EXECUTE (checked in C at submit) and to
-- external and http queues, and sees and cancels its own jobs (RLS below).

GRANT USAGE ON SCHEMA jobq TO jobq_admin, jobq_worker;

-- Functions: nothing for PUBLIC unless granted below.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobq FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    jobq.submit(text, jsonb, timestamptz, integer, text, integer, interval),
    jobq.submit_batch(text, jsonb, timestamptz, integer, text, integer, interval),
    jobq.submit_http(text, text, jsonb, text, text, timestamptz, integer, text, integer, interval, integer),
    jobq.cancel(bigint),
    jobq.retry_now(bigint),
    jobq.retry_later(text, interval),
    jobq.rate_limited(text, interval),
    jobq.give_up(text),
    jobq.backoff_delay(text, interval, interval, double precision, integer),
    jobq.classify_error(text, integer, text),
    -- pure helpers the functions above call with the caller's privileges
    jobq._check_after(interval),
    jobq._retry_after_detail(interval),
    jobq._retry_after_from_detail(text),
    jobq._backoff_strategies(),
    jobq._error_classes()
    TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    jobq.claim(text, integer, interval, text),
    jobq.heartbeat(bigint, integer, interval),
    jobq.complete(bigint, integer, jsonb),
    jobq.fail(bigint, integer, text, text, interval, text, integer)
    TO jobq_worker, jobq_admin;

GRANT EXECUTE ON FUNCTION
    jobq.create_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text),
    jobq.alter_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text, text[]),
    jobq.pause_queue(text),
    jobq.resume_queue(text),
    jobq.drop_queue(text, boolean),
    jobq.requeue_dead(bigint),
    jobq.resolve_dead(bigint, text)
    TO jobq_admin;

-- Tables: read access; jobs, attempts and dead letters filtered by RLS.
REVOKE ALL ON ALL TABLES IN SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobq FROM PUBLIC;
GRANT SELECT ON jobq.jobs, jobq.job_attempts, jobq.dead_letter, jobq.queues,
                jobq.error_rules, jobq.retry_policies
    TO PUBLIC;
-- The partitions bypass the parent's policies: only jobq_admin reads them.
GRANT SELECT ON jobq.jobs_active, jobq.jobs_final TO jobq_admin;
GRANT INSERT, UPDATE, DELETE ON jobq.error_rules, jobq.retry_policies TO jobq_admin;
GRANT USAGE ON SEQUENCE jobq.error_rules_id_seq TO jobq_admin;

-- A role sees its own jobs; jobq_admin (and superusers) see all.  The role
-- lookup is an uncorrelated subquery: evaluated once per query, not per row.
ALTER TABLE jobq.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_owner_or_admin ON jobq.jobs FOR SELECT
    USING (owner::pg_catalog.oid OPERATOR(pg_catalog.=)
               (SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
           OR pg_catalog.pg_has_role('jobq_admin', 'USAGE'));
COMMENT ON POLICY jobs_owner_or_admin ON jobq.jobs IS
    'jobq: a role sees the jobs it submitted; jobq_admin sees all';

ALTER TABLE jobq.job_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_attempts_owner_or_admin ON jobq.job_attempts FOR SELECT
    USING (owner::pg_catalog.oid OPERATOR(pg_catalog.=)
               (SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
           OR pg_catalog.pg_has_role('jobq_admin', 'USAGE'));
COMMENT ON POLICY job_attempts_owner_or_admin ON jobq.job_attempts IS
    'jobq: a role sees the attempts of the jobs it submitted; jobq_admin sees all';

ALTER TABLE jobq.dead_letter ENABLE ROW LEVEL SECURITY;
CREATE POLICY dead_letter_owner_or_admin ON jobq.dead_letter FOR SELECT
    USING (owner::pg_catalog.oid OPERATOR(pg_catalog.=)
               (SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
           OR pg_catalog.pg_has_role('jobq_admin', 'USAGE'));
COMMENT ON POLICY dead_letter_owner_or_admin ON jobq.dead_letter IS
    'jobq: a role sees the dead letters of the jobs it submitted; jobq_admin sees all';

-- pg_dump keeps queues, jobs, dead letters and the rules and policies users
-- added; built-in rows come back with CREATE EXTENSION.  Attempt history is
-- not dumped (dead letters carry their own copy).
SELECT pg_catalog.pg_extension_config_dump('jobq.queues', $$WHERE name OPERATOR(pg_catalog.<>) 'http'$$);
SELECT pg_catalog.pg_extension_config_dump('jobq.jobs_active', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.jobs_final', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.dead_letter', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.error_rules', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('jobq.retry_policies', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('jobq.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.dead_letter_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.error_rules_id_seq', '');
-- jobq install script, part 60: the worker processes, read from shared memory.

CREATE FUNCTION jobq._workers(
    OUT pid integer, OUT database text, OUT kind text, OUT state text,
    OUT job_id bigint, OUT since timestamptz, OUT jobs_done bigint,
    OUT last_error text, OUT claims bigint)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_worker_slots';
COMMENT ON FUNCTION jobq._workers() IS
    'Internal: jobq''s launcher and executor slots from shared memory (behind the view jobq.workers).';

CREATE VIEW jobq.workers AS
    SELECT w.pid, w.database, w.kind, w.state, w.job_id, w.since,
           w.jobs_done, w.last_error, w.claims
      FROM jobq._workers() w;
COMMENT ON VIEW jobq.workers IS
    'jobq: the launcher and every executor (all databases): pid, database, kind (launcher | executor | probe), state (idle | running | ...), job_id being run, since (state change), jobs_done, last_error, claims (claim statements run: one per queue looked at; their rate is the cost of looking for work)';
GRANT SELECT ON jobq.workers TO PUBLIC;
-- jobq install script, last part: start executors in this database once the
-- CREATE EXTENSION commits.
SELECT jobq._activate_database();
