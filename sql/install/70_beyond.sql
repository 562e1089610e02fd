-- jobq install script, part 70: beyond the peers (external workers' one
-- round trip per job).

-- In C (src/worker_api.c): jobq.complete or jobq.fail, then jobq.claim of
-- one job, in one transaction.
CREATE FUNCTION jobq.finish_and_claim(queue text, done_id bigint, done_attempt integer,
                                      result jsonb DEFAULT NULL,
                                      error text DEFAULT NULL,
                                      error_class text DEFAULT 'unknown',
                                      lease interval DEFAULT '30 seconds',
                                      worker text DEFAULT NULL,
                                      retry_after interval DEFAULT NULL)
    RETURNS TABLE (finished text, id bigint, payload jsonb, attempt integer,
                   lease_expires_at timestamptz)
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1
    AS 'MODULE_PATHNAME', 'jobq_finish_and_claim';
COMMENT ON FUNCTION jobq.finish_and_claim(text, bigint, integer, jsonb, text, text, interval, text, interval) IS
    'jobq: one transaction per job for an external worker: ends the lease (done_id, done_attempt) like jobq.complete(result) when error is NULL, else like jobq.fail(error, error_class, retry_after), then claims the next job of queue like jobq.claim(queue, 1, lease, worker). One row: finished = the ended job''s new state (completed | pending | failed), NULL when the lease was not current or done_id is NULL; id, payload, attempt, lease_expires_at of the claimed job, NULL when none was due (queue NULL: end only)';
REVOKE ALL ON FUNCTION jobq.finish_and_claim(text, bigint, integer, jsonb, text, text, interval, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.finish_and_claim(text, bigint, integer, jsonb, text, text, interval, text, interval)
    TO jobq_worker, jobq_admin;

-- jobq.wait: in C (src/job_wait.c), woken by the commit that makes the job
-- final; jobq._wait_state reads the state as the caller may see it.
CREATE FUNCTION jobq._wait_state(id bigint, caller regrole) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    o       regrole;
    s       text;
BEGIN
    SELECT a.owner, a.state INTO o, s FROM jobq.jobs_active a WHERE a.id = _wait_state.id;
    IF NOT FOUND THEN
        SELECT f.owner, f.state INTO o, s FROM jobq.jobs_final f WHERE f.id = _wait_state.id;
        IF NOT FOUND THEN
            PERFORM jobq._no_job(_wait_state.id);
        END IF;
    END IF;
    IF NOT jobq._may_manage(o, caller) THEN
        PERFORM jobq._no_job(_wait_state.id);
    END IF;
    RETURN s;
END
$fn$;
COMMENT ON FUNCTION jobq._wait_state(bigint, regrole) IS
    'Internal (jobq.wait): the state of job id, 42704 when it does not exist or caller may not manage it';
REVOKE ALL ON FUNCTION jobq._wait_state(bigint, regrole) FROM PUBLIC;

CREATE FUNCTION jobq.wait(id bigint, timeout interval DEFAULT '30 seconds') RETURNS text
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'jobq_wait';
COMMENT ON FUNCTION jobq.wait(bigint, interval) IS
    'jobq: blocks until job id is final (completed, failed or cancelled) or timeout (at most 24 days) has passed, and returns its state; woken by the commit that makes the job final, no polling. Owner or jobq_admin. READ COMMITTED only';
REVOKE ALL ON FUNCTION jobq.wait(bigint, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.wait(bigint, interval) TO PUBLIC;
