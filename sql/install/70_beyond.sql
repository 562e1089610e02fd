-- jobq install script, part 70: beyond the peers (external workers' one
-- round trip per job).

-- In C (src/worker_api.c): jobq.complete or jobq.fail, then jobq.claim of
-- one job, in one transaction.
CREATE FUNCTION jobq.finish_and_claim(queue text, done_id bigint, done_attempt integer,
                                      result jsonb DEFAULT NULL,
                                      error text DEFAULT NULL,
                                      error_class text DEFAULT 'unknown',
                                      lease interval DEFAULT '30 seconds',
                                      worker text DEFAULT NULL)
    RETURNS TABLE (finished text, id bigint, payload jsonb, attempt integer,
                   lease_expires_at timestamptz)
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1
    AS 'MODULE_PATHNAME', 'jobq_finish_and_claim';
COMMENT ON FUNCTION jobq.finish_and_claim(text, bigint, integer, jsonb, text, text, interval, text) IS
    'jobq: one transaction per job for an external worker: ends the lease (done_id, done_attempt) like jobq.complete(result) when error is NULL, else like jobq.fail(error, error_class), then claims the next job of queue like jobq.claim(queue, 1, lease, worker). One row: finished = the ended job''s new state (completed | pending | failed), NULL when the lease was not current or done_id is NULL; id, payload, attempt, lease_expires_at of the claimed job, NULL when none was due (queue NULL: end only)';
REVOKE ALL ON FUNCTION jobq.finish_and_claim(text, bigint, integer, jsonb, text, text, interval, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.finish_and_claim(text, bigint, integer, jsonb, text, text, interval, text)
    TO jobq_worker, jobq_admin;
