-- jobq install script, part 45: jobs: submit (C), cancel, retry_now, the
-- claim, heartbeat, complete, fail, release and lost-lease recovery.
--
-- Internal contract used by executors (src/README.md "Internal SQL
-- contract"): jobq._claim, jobq._fail, jobq._release, jobq._finalize,
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
                   END);
    RETURN jsonb_build_object('url', url, 'method', m, 'headers', h,
                              'body', body, 'timeout_ms', ms);
END
$fn$;
COMMENT ON FUNCTION jobq._http_payload(text, text, jsonb, text, integer, interval) IS
    'Internal: validates an HTTP request and returns it as a job payload {url, method, headers, body, timeout_ms} (timeout_ms: given, else the job timeout, else NULL: the HTTP worker then takes the queue''s)';

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
                            timeout interval DEFAULT NULL,
                            batch_id bigint DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_submit';
COMMENT ON FUNCTION jobq.submit(text, jsonb, timestamptz, integer, text, integer, interval, bigint) IS
    'jobq: submits a job, owned by the calling role; returns its id (or the id of the not-final job of the queue with the same unique_key); batch_id: adds it to the caller''s open batch (jobq.create_batch)';

CREATE FUNCTION jobq.submit_batch(queue text, payloads jsonb,
                                  run_at timestamptz DEFAULT NULL,
                                  priority integer DEFAULT 0,
                                  unique_key text DEFAULT NULL,
                                  max_attempts integer DEFAULT NULL,
                                  timeout interval DEFAULT NULL,
                                  batch_id bigint DEFAULT NULL,
                                  on_complete_queue text DEFAULT NULL,
                                  on_complete_payload jsonb DEFAULT NULL)
    RETURNS SETOF bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'jobq_submit_batch';
COMMENT ON FUNCTION jobq.submit_batch(text, jsonb, timestamptz, integer, text, integer, interval, bigint, text, jsonb) IS
    'jobq: submits one job per element of the JSON array payloads, in one statement; returns the ids in array order (unique_key must be NULL).  The jobs share a batch (jobq.batches): a new closed one, with the callback on_complete_queue/on_complete_payload, or the caller''s open batch batch_id';

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
        DETAIL = 'A role sees only the jobs it submitted (jobq_admin sees all); final jobs are removed after their queue''s retention.',
        HINT = 'jobq.jobs lists the jobs you may see.';
END
$fn$;
COMMENT ON FUNCTION jobq._no_job(bigint) IS 'Internal: raises 42704 for a job that does not exist or that the caller may not see (the two answer alike, so that ids cannot be probed).';


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
            PERFORM jobq._no_job(j.id);
        END IF;
        IF j.state = 'running' THEN
            PERFORM jobq._attempt_finished(j, 'cancelled', clock_timestamp(), 'cancelled',
                                           format('cancelled by %s', caller));
            claimed_by := j.claimed_by;
        END IF;
        PERFORM jobq._finalize(j.id, 'cancelled', NULL, NULL, NULL);
        cancelled := true;
        RETURN;
    END IF;
    SELECT f.owner INTO o FROM jobq.jobs_final f WHERE f.id = _cancel.id;
    IF NOT FOUND THEN
        PERFORM jobq._no_job(_cancel.id);
    END IF;
    IF NOT jobq._may_manage(o, caller) THEN
        PERFORM jobq._no_job(_cancel.id);
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
        PERFORM jobq._no_job(_retry_now.id);
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
-- the job store's events, attempt rows and moves to jobs_final
---------------------------------------------------------------------------
CREATE FUNCTION jobq._job_event(event text, queue text, job_id bigint, attempt integer,
                                owner oid, error_class text, started_at timestamptz,
                                finished_at timestamptz, retry_at timestamptz,
                                error text DEFAULT NULL, batch_id bigint DEFAULT NULL)
    RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_job_event';
COMMENT ON FUNCTION jobq._job_event(text, text, bigint, integer, oid, text, timestamptz, timestamptz, timestamptz, text, bigint) IS
    'Internal: reports an event of one job (submitted, attempt_<outcome>, final_<state>) to the job store''s hook point (src/job_events.c), in the transaction that made the change';

CREATE FUNCTION jobq._job_events() RETURNS TABLE (event text, count bigint)
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_job_events';
COMMENT ON FUNCTION jobq._job_events() IS
    'Internal: committed job events of this database since the server started: submitted, claimed, attempt_<outcome>, final_<state>';

-- Every attempt that ends writes its row here (the batched completion of
-- executors and jobq.complete writes the same row through the table AM,
-- src/store_complete.c); the row is the "attempt finished" event.
CREATE FUNCTION jobq._attempt_finished(j jobq.jobs_active, outcome text,
                                       finished_at timestamptz,
                                       error_class text DEFAULT NULL,
                                       error text DEFAULT NULL,
                                       sqlstate text DEFAULT NULL,
                                       http_status integer DEFAULT NULL,
                                       detail text DEFAULT NULL,
                                       retry_at timestamptz DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    INSERT INTO jobq.job_attempts (job_id, attempt, queue, owner, started_at,
                                   finished_at, outcome, error_class, error, sqlstate,
                                   http_status, worker, detail)
    VALUES (j.id, j.attempt, j.queue, j.owner, j.started_at,
            _attempt_finished.finished_at, outcome, error_class, error, sqlstate,
            http_status, j.worker, detail);
    PERFORM jobq._job_event('attempt_' || outcome, j.queue, j.id, j.attempt, j.owner,
                            error_class, j.started_at, _attempt_finished.finished_at, retry_at,
                            error);
END
$fn$;
COMMENT ON FUNCTION jobq._attempt_finished(jobq.jobs_active, text, timestamptz, text, text, text, integer, text, timestamptz) IS
    'Internal: the attempt of job row j ended with outcome: its job_attempts row and its event (retry_at: when the job runs again, if it does)';

-- The final row of a job taken out of jobs_active (d, as it was there).
CREATE FUNCTION jobq._final_row(d jobq.jobs_active, new_state text,
                                finished_at timestamptz, result jsonb,
                                error_class text, error text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    INSERT INTO jobq.jobs_final (id, queue, payload, state, priority, run_at,
            attempt, max_attempts, unique_key, unique_owner, timeout, owner, handler, created_at,
            started_at, completed_at, last_heartbeat, lease_expires_at,
            worker, claimed_by, snoozes, error_type, last_error, result,
            progress, progress_note, batch_id)
    VALUES (d.id, d.queue, d.payload, new_state, d.priority, d.run_at,
            d.attempt, d.max_attempts, d.unique_key, d.unique_owner, d.timeout, d.owner, d.handler, d.created_at,
            d.started_at, _final_row.finished_at, d.last_heartbeat, NULL,
            d.worker, d.claimed_by, d.snoozes,
            coalesce(error_class, d.error_type), coalesce(error, d.last_error), result,
            d.progress, d.progress_note, d.batch_id);
    PERFORM jobq._job_event('final_' || new_state, d.queue, d.id, d.attempt, d.owner,
                            coalesce(error_class, d.error_type), d.started_at,
                            _final_row.finished_at, NULL, NULL, d.batch_id);
END
$fn$;
COMMENT ON FUNCTION jobq._final_row(jobq.jobs_active, text, timestamptz, jsonb, text, text) IS
    'Internal: writes the jobs_final row (state new_state) of job row d, already deleted from jobs_active, and its event';

-- Moves a job (any state) from jobs_active to jobs_final with new_state: an
-- explicit DELETE and INSERT, never a cross-partition UPDATE (src/README.md).
CREATE FUNCTION jobq._finalize(id bigint, new_state text, result jsonb,
                               error_class text, error text,
                               finished_at timestamptz DEFAULT clock_timestamp())
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    d       jobq.jobs_active;
BEGIN
    DELETE FROM jobq.jobs_active a WHERE a.id = _finalize.id RETURNING a.* INTO d;
    IF FOUND THEN
        PERFORM jobq._final_row(d, new_state, finished_at, result, error_class, error);
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._finalize(bigint, text, jsonb, text, text, timestamptz) IS
    'Internal: moves a job from jobs_active to jobs_final (DELETE ... RETURNING, then jobq._final_row)';

---------------------------------------------------------------------------
-- the claim
---------------------------------------------------------------------------
CREATE FUNCTION jobq._check_lease(lease interval, what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF lease IS NULL OR lease <= interval '0' OR lease > interval '24 days' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s must be positive and at most 24 days, not %s', what, coalesce(lease::text, 'NULL')),
            DETAIL = 'A lease is how long a worker holds a job without a heartbeat.',
            HINT = 'Pass an interval such as ''30 seconds''.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_lease(interval, text) IS 'Internal: validates a lease length.';

CREATE FUNCTION jobq._check_progress(progress double precision, note text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- NaN sorts above every number: the upper bound refuses it
    IF progress IS NOT NULL AND NOT (progress >= 0 AND progress <= 1) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('progress must be between 0 and 1, not %s', progress),
            DETAIL = 'Progress is the fraction of the job done.',
            HINT = 'Report 0.5 for half done.';
    END IF;
    IF note IS NOT NULL AND length(note) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'string_data_right_truncation',
            MESSAGE = format('a progress note has at most 200 characters, not %s', length(note)),
            DETAIL = 'The note is shown live beside the progress in jobq.job_progress and jobq.workers.',
            HINT = 'Keep details in the job''s result.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._check_progress(double precision, text) IS 'Internal: validates a progress report (0 to 1, a note of at most 200 characters).';

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

    PERFORM jobq._attempt_finished(j, CASE WHEN d.snooze THEN 'snoozed' ELSE 'failed' END,
                                   t, cls, error, sqlstate, http_status, detail,
                                   CASE WHEN d.retry THEN t + d.delay END);

    -- A slot of a concurrency-limited SQL queue came free: idle executors do
    -- not watch full queues, so wake one (an executor failing its own job
    -- claims the next itself, but recovery and jobq.cancel are not it).
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
    PERFORM jobq._finalize(j.id, 'failed', NULL, cls, error, t);
    INSERT INTO jobq.dead_letter (job_id, queue, payload, owner, handler, priority,
                                  max_attempts, timeout, error_class,
                                  last_error, attempts, history)
    SELECT j.id, j.queue, j.payload, j.owner, j.handler, j.priority, j.max_attempts,
           j.timeout, cls, error, j.attempt - j.snoozes,
           coalesce((SELECT jsonb_agg(to_jsonb(h) - 'job_id' - 'queue' - 'owner'
                                      ORDER BY h.attempt)
                       FROM jobq.job_attempts h WHERE h.job_id = j.id), '[]');
    RETURN 'failed';
END
$fn$;
COMMENT ON FUNCTION jobq._fail(bigint, integer, text, text, interval, text, integer, text) IS
    'Internal: fenced; records the failed attempt, classifies it (error_class NULL or unknown: jobq.error_rules), and schedules the retry (returns pending) or dead-letters the job (returns failed); NULL when the lease is not current. A DETAIL "jobq.retry_after=<s>" gives the delay when retry_after is NULL';

CREATE FUNCTION jobq._release(id bigint, attempt integer,
                              held_until timestamptz DEFAULT NULL,
                              held_by text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    j       jobq.jobs_active;
    -- a plain release (shutdown, an ended executor's batch mates) has no
    -- reason of its own: the job keeps its last error
    reason  text := CASE WHEN held_by IS NOT NULL
                         THEN format('held: the circuit breaker "%s" is open', held_by) END;
BEGIN
    SELECT * INTO j FROM jobq.jobs_active a
     WHERE a.id = _release.id AND a.attempt = _release.attempt
       AND pg_catalog.texteq(a.state, 'running')  -- by id: see jobs_active_running_idx
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM jobq._attempt_finished(j, 'released', clock_timestamp(),
                                   error_class => CASE WHEN held_by IS NOT NULL THEN 'breaker_open' END,
                                   error => reason, retry_at => held_until);
    UPDATE jobq.jobs_active a
       SET state = 'pending', snoozes = a.snoozes + 1,
           run_at = coalesce(held_until, a.run_at),
           error_type = CASE WHEN held_by IS NOT NULL THEN 'breaker_open' ELSE a.error_type END,
           last_error = coalesce(reason, a.last_error),
           lease_expires_at = NULL, worker = NULL, claimed_by = NULL
     WHERE a.id = j.id;
    PERFORM jobq._claim_floor_note(j.queue, j.priority, coalesce(held_until, j.run_at), j.id);
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION jobq._release(bigint, integer, timestamptz, text) IS
    'Internal: fenced; gives a running job back (pending) without using up its attempt: at shutdown (run_at unchanged), or an HTTP job held by the open circuit breaker held_by of its host until held_until (error_type breaker_open, until _breaker_unhold)';

CREATE FUNCTION jobq._breaker_unhold() RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r       record;
    n       integer := 0;
BEGIN
    FOR r IN UPDATE jobq.jobs_active a SET run_at = now()
              WHERE pg_catalog.texteq(a.state, 'pending')
                AND a.error_type = 'breaker_open' AND a.run_at > now()
                AND a.queue IN (SELECT q.name FROM jobq.queues q WHERE q.kind = 'http')
             RETURNING a.id, a.queue, a.priority
    LOOP
        PERFORM jobq._claim_floor_note(r.queue, r.priority, now(), r.id);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION jobq._breaker_unhold() IS
    'Internal: a circuit breaker closed: HTTP jobs held by an open host breaker are due now (those whose host is still open are held again at their claim)';

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

CREATE FUNCTION jobq.heartbeat(id bigint, attempt integer, extend interval DEFAULT NULL,
                               progress double precision DEFAULT NULL,
                               note text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF extend IS NOT NULL THEN
        PERFORM jobq._check_lease(extend, 'extend');
    END IF;
    PERFORM jobq._check_progress(progress, note);
    UPDATE jobq.jobs_active a
       SET lease_expires_at = now() + coalesce(extend,
                                               a.lease_expires_at - a.last_heartbeat,
                                               interval '30 seconds'),
           last_heartbeat = now(),
           progress = coalesce(heartbeat.progress, a.progress),
           progress_note = CASE WHEN heartbeat.progress IS NOT NULL OR note IS NOT NULL
                                THEN note ELSE a.progress_note END
     WHERE a.id = heartbeat.id AND a.attempt = heartbeat.attempt
       AND pg_catalog.texteq(a.state, 'running')  -- by id: see jobs_active_running_idx
       AND a.claimed_by IS NULL;                   -- an external worker's lease
    RETURN FOUND;
END
$fn$;
COMMENT ON FUNCTION jobq.heartbeat(bigint, integer, interval, double precision, text) IS
    'jobq: extends the lease (id, attempt) by extend (default: the lease length given to claim) and records progress (0 to 1) and its note when given; false when the holder must stop: job cancelled, lease recovered or claimed again';

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
