-- jobq install script, part 76: retention.  Final jobs past their queue's
-- retention are removed with their attempts, in bounded batches: by the
-- executors every jobq.cleanup_interval (src/retention.c, one transaction
-- per batch), or by hand with jobq.cleanup.
--
-- What goes: completed and cancelled jobs whose completed_at is older than
-- the queue's retention (or older_than); failed jobs only with their dead
-- letter, once it was resolved (resolve_dead, requeue_dead) longer ago
-- than jobq.dead_letter_retention (or older_than).  A dead letter that is
-- not resolved is never removed: it is the job's full history.

CREATE FUNCTION jobq._cleanup_batch(max_jobs integer, older_than interval DEFAULT NULL)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    q       record;
    ids     bigint[];
    n       integer := 0;
    dlq_keep interval := coalesce(older_than,
        pg_catalog.current_setting('jobq.dead_letter_retention')::interval);
BEGIN
    -- completed and cancelled jobs, queue by queue (the BRIN index on
    -- completed_at finds the old ones)
    FOR q IN SELECT qq.name, qq.retention FROM jobq.queues qq ORDER BY qq.name LOOP
        EXIT WHEN n >= max_jobs;
        WITH gone AS (
            DELETE FROM jobq.jobs_final f
             WHERE f.id IN (SELECT o.id FROM jobq.jobs_final o
                             WHERE o.queue = q.name
                               AND o.state IN ('completed', 'cancelled')
                               AND o.completed_at < now() - coalesce(older_than, q.retention)
                             LIMIT max_jobs - n)
            RETURNING f.id)
        SELECT array_agg(g.id) INTO ids FROM gone g;
        IF ids IS NOT NULL THEN
            DELETE FROM jobq.job_attempts a WHERE a.job_id = ANY (ids);
            n := n + cardinality(ids);
        END IF;
    END LOOP;

    -- resolved dead letters, with their failed job and its attempts
    IF n < max_jobs THEN
        WITH gone AS (
            DELETE FROM jobq.dead_letter d
             WHERE d.id IN (SELECT o.id FROM jobq.dead_letter o
                             WHERE o.resolved_at < now() - dlq_keep
                             LIMIT max_jobs - n)
            RETURNING d.job_id)
        SELECT array_agg(g.job_id) INTO ids FROM gone g;
        IF ids IS NOT NULL THEN
            DELETE FROM jobq.jobs_final f WHERE f.id = ANY (ids) AND f.state = 'failed';
            DELETE FROM jobq.job_attempts a WHERE a.job_id = ANY (ids);
            n := n + cardinality(ids);
        END IF;
    END IF;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION jobq._cleanup_batch(integer, interval) IS
    'Internal: removes at most max_jobs final jobs past retention (see jobq.cleanup) with their attempts; returns how many';
REVOKE ALL ON FUNCTION jobq._cleanup_batch(integer, interval) FROM PUBLIC;

-- Rows of jobq.metrics older than jobq.metrics_retention (-1: kept).
-- Once per cleanup run: a few rows per queue and minute.
CREATE FUNCTION jobq._cleanup_metrics() RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    keep    interval := pg_catalog.current_setting('jobq.metrics_retention')::interval;
    n       bigint;
BEGIN
    IF keep < interval '0' THEN
        RETURN 0;
    END IF;
    DELETE FROM jobq.metrics m WHERE m.bucket < now() - keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- alerts fired as long ago are kept as long (78_alerts.sql)
    DELETE FROM jobq.alert_history h WHERE h.fired_at < now() - keep;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION jobq._cleanup_metrics() IS
    'Internal: removes rows of jobq.metrics (and of jobq.alert_history) older than jobq.metrics_retention; returns how many metrics rows';
REVOKE ALL ON FUNCTION jobq._cleanup_metrics() FROM PUBLIC;

CREATE FUNCTION jobq.cleanup(older_than interval DEFAULT NULL, max_jobs bigint DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    total   bigint := 0;
    got     integer;
    batch   integer;
BEGIN
    IF older_than IS NOT NULL AND older_than < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('older_than must not be negative, not %s', older_than),
            DETAIL = 'Final jobs that ended longer ago than older_than are removed.',
            HINT = 'Pass NULL to use each queue''s retention, ''0'' to remove every final job.';
    END IF;
    IF max_jobs IS NOT NULL AND max_jobs < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_jobs must be positive, not %s', max_jobs),
            DETAIL = 'max_jobs bounds how many jobs one call removes.',
            HINT = 'Pass NULL for no bound.';
    END IF;
    LOOP
        batch := least(coalesce(max_jobs - total, 1000), 1000)::integer;
        EXIT WHEN batch <= 0;
        got := jobq._cleanup_batch(batch, older_than);
        total := total + got;
        EXIT WHEN got < batch;
    END LOOP;
    PERFORM jobq._cleanup_metrics();
    PERFORM jobq._cleanup_batches(older_than);
    RETURN total;
END
$fn$;
COMMENT ON FUNCTION jobq.cleanup(interval, bigint) IS
    'jobq: removes final jobs past retention with their attempts (completed and cancelled: the queue''s retention, or older_than; failed: with their dead letter once resolved longer ago than jobq.dead_letter_retention, or older_than), at most max_jobs; returns how many. Also removes rows of jobq.metrics and jobq.alert_history older than jobq.metrics_retention, and batches (jobq.job_batches) finished longer ago than older_than or than the longest queue retention. Runs in the caller''s transaction';
REVOKE ALL ON FUNCTION jobq.cleanup(interval, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.cleanup(interval, bigint) TO jobq_admin;
