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
                 'breaker_open', 'unknown']::text[];
COMMENT ON FUNCTION jobq._error_classes() IS
    'Internal: the error classes of jobq, in documentation order.';

CREATE FUNCTION jobq._backoff_strategies() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN ARRAY['exponential', 'linear', 'fibonacci', 'aggressive',
                 'fixed', 'custom']::text[];
COMMENT ON FUNCTION jobq._backoff_strategies() IS
    'Internal: the backoff strategies of jobq.';

CREATE FUNCTION jobq._delays_valid(delays interval[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN delays IS NULL
        OR (cardinality(delays) BETWEEN 1 AND 100
            AND array_ndims(delays) = 1
            AND NOT EXISTS (SELECT FROM unnest(delays) d
                             WHERE d IS NULL OR d < interval '0' OR d > interval '1 year'));
COMMENT ON FUNCTION jobq._delays_valid(interval[]) IS
    'Internal: whether a custom backoff delay list is valid: 1 to 100 delays, each from 0 to 1 year, no NULL';

-- The range of every time limit jobq enforces (queue and job timeouts,
-- warn_after): at least 1 ms, the unit limits are enforced in (a shorter one
-- would round to 0, "no limit"), at most 24 days (statement_timeout is a
-- 32-bit count of milliseconds).
CREATE FUNCTION jobq._timeout_in_range(t interval) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN t >= interval '1 millisecond' AND t <= interval '24 days';
COMMENT ON FUNCTION jobq._timeout_in_range(interval) IS
    'Internal: whether a time limit is within 1 millisecond .. 24 days (the range jobq enforces to the millisecond)';

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
    unique_scope    text NOT NULL DEFAULT 'owner'
                    CHECK (unique_scope OPERATOR(pg_catalog.=) ANY (ARRAY['owner', 'queue'])),
    paused          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- token bucket of rate_limit (state, not configuration)
    rate_tokens     double precision,
    rate_refilled_at timestamptz,
    CHECK ((kind OPERATOR(pg_catalog.=) 'sql') OPERATOR(pg_catalog.=) (handler IS NOT NULL)),
    delays          interval[],
    CONSTRAINT queues_delays_custom
        CHECK ((backoff OPERATOR(pg_catalog.=) 'custom') OPERATOR(pg_catalog.=) (delays IS NOT NULL)),
    breaker_mode    text NOT NULL DEFAULT 'hold'
                    CHECK (breaker_mode OPERATOR(pg_catalog.=) ANY (ARRAY['hold', 'fail_fast']))
);
COMMENT ON TABLE jobq.queues IS
    'jobq: one row per queue; written only through jobq.create_queue/alter_queue/pause_queue/resume_queue/drop_queue';
COMMENT ON COLUMN jobq.queues.handler IS
    'SQL handler as schema.function(argtypes) text (not regprocedure: reg* columns block pg_upgrade); NULL unless kind = sql';
COMMENT ON COLUMN jobq.queues.concurrency IS 'max jobs of this queue running at once; NULL = no limit';
COMMENT ON COLUMN jobq.queues.max_attempts IS 'total tries, the first included (a job''s own max_attempts overrides it)';
COMMENT ON COLUMN jobq.queues.backoff IS 'exponential | linear | fibonacci | aggressive | fixed | custom (delays)';
COMMENT ON COLUMN jobq.queues.delays IS 'backoff custom: retry n waits delays[n], the last one repeating (jitter applied, max_delay not); NULL for other strategies';
COMMENT ON COLUMN jobq.queues.jitter IS '+/- fraction applied to every backoff delay';
COMMENT ON COLUMN jobq.queues.timeout IS 'hard limit of one attempt (a job''s own timeout overrides it)';
COMMENT ON COLUMN jobq.queues.warn_after IS 'a running attempt past this is logged as slow; NULL = never';
COMMENT ON COLUMN jobq.queues.rate_limit IS 'max job starts per second; NULL = no limit';
COMMENT ON COLUMN jobq.queues.retention IS 'completed and cancelled jobs are kept this long';
COMMENT ON COLUMN jobq.queues.breaker IS 'circuit breaker key; NULL = the queue''s name';
COMMENT ON COLUMN jobq.queues.breaker_mode IS 'while the breaker is open: hold (jobs wait, no attempt used) or fail_fast (jobs claimed are dead-lettered at once, class breaker_open)';
COMMENT ON COLUMN jobq.queues.unique_scope IS
    'owner: a unique_key names one not-final job per queue and owner (roles cannot see or block each other''s keys); queue: one per queue, across roles';
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
    unique_owner    oid,            -- owner, or 0 (unique_scope queue); set with unique_key
    timeout         interval,
    owner           regrole NOT NULL,
    handler         text,
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
    result          jsonb,
    progress        double precision,
    progress_note   text,
    batch_id        bigint          -- jobq.job_batches.id; NULL: not in a batch
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
COMMENT ON COLUMN jobq.jobs.unique_key IS 'while a job of the queue (and owner: see jobq.queues.unique_scope) with this key is not final, submit returns its id';
COMMENT ON COLUMN jobq.jobs.unique_owner IS 'whose keys unique_key is among: the owner''s OID, or 0 when the queue''s unique_scope is queue; NULL without unique_key';
COMMENT ON COLUMN jobq.jobs.timeout IS 'per-job override of the queue''s timeout; NULL = the queue''s';
COMMENT ON COLUMN jobq.jobs.owner IS 'the role that submitted the job (captured in C with GetUserId()); the job runs as this role';
COMMENT ON COLUMN jobq.jobs.handler IS
    'the SQL handler the job runs: its queue''s handler when the job was submitted (schema.function(jsonb) text), kept when the queue''s handler changes; NULL for jobs of other kinds';
COMMENT ON COLUMN jobq.jobs.lease_expires_at IS 'running: the lease ends here unless extended by jobq.heartbeat';
COMMENT ON COLUMN jobq.jobs.worker IS 'running: the worker name given to claim';
COMMENT ON COLUMN jobq.jobs.claimed_by IS 'running: token of the jobq executor that holds the job; NULL for external workers';
COMMENT ON COLUMN jobq.jobs.error_type IS 'error class of the last failed attempt';
COMMENT ON COLUMN jobq.jobs.result IS 'completed: the handler''s result (NULL for void handlers)';
COMMENT ON COLUMN jobq.jobs.progress IS 'the last progress (0 to 1) its handler committed (jobq.report_progress) or its external worker reported (jobq.heartbeat); live values: jobq.job_progress';
COMMENT ON COLUMN jobq.jobs.progress_note IS 'the note reported with progress';
COMMENT ON COLUMN jobq.jobs.batch_id IS 'the batch the job belongs to (jobq.batches); NULL for a job submitted outside a batch';

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

-- Retention deletes from jobs_final and job_attempts as fast as jobs
-- finish: their dead rows are vacuumed at a twentieth of the table, not
-- autovacuum's default fifth, so that their size stays bounded.
CREATE TABLE jobq.jobs_final PARTITION OF jobq.jobs
    FOR VALUES IN ('completed', 'failed', 'cancelled')
    WITH (autovacuum_vacuum_scale_factor = 0.05);
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
    (queue, unique_key, unique_owner) WHERE unique_key IS NOT NULL;
COMMENT ON INDEX jobq.jobs_active_unique_key_idx IS 'jobq: one not-final job per (queue, unique_key, unique_owner)';
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
) WITH (autovacuum_vacuum_insert_scale_factor = 0.05,
       autovacuum_vacuum_scale_factor = 0.05);
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
    handler         text,
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
COMMENT ON COLUMN jobq.dead_letter.handler IS 'the job''s handler (jobq.jobs.handler): jobq.requeue_dead runs this one again, not the queue''s current one';
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
    PRIMARY KEY (queue, error_class),
    delays          interval[],
    CONSTRAINT retry_policies_delays_custom
        CHECK ((backoff OPERATOR(pg_catalog.=) 'custom') IS NOT DISTINCT FROM (delays IS NOT NULL)
               OR (backoff IS NULL AND delays IS NULL)),
    CONSTRAINT retry_policies_delays_valid CHECK (jobq._delays_valid(delays))
);
COMMENT ON TABLE jobq.retry_policies IS
    'jobq: whether and how an error class is retried; rows of a queue override the ''*'' defaults; NULL backoff columns mean the queue''s own';
COMMENT ON COLUMN jobq.retry_policies.delays IS 'backoff custom: the policy''s delay list (required with custom, NULL otherwise); NULL backoff: the queue''s strategy and delays';
COMMENT ON COLUMN jobq.retry_policies.builtin IS 'installed by jobq; pg_dump keeps only rows that are not built in';
