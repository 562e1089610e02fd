-- jobq install script, part 75: per-queue, per-minute counters.
--
-- Rows are added to by jobq's processes from counters kept in shared
-- memory (src/metrics.c), never by an UPDATE per job: the executors flush
-- them every jobq.metrics_flush_interval, jobq.flush_metrics() does it by
-- hand.  See docs/monitoring.md.

CREATE TABLE jobq.metrics (
    queue            text NOT NULL,
    bucket           timestamptz NOT NULL,
    submitted        bigint NOT NULL DEFAULT 0,
    started          bigint NOT NULL DEFAULT 0,
    completed        bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    retried          bigint NOT NULL DEFAULT 0,
    timed_out        bigint NOT NULL DEFAULT 0,
    cancelled        bigint NOT NULL DEFAULT 0,
    dead_lettered    bigint NOT NULL DEFAULT 0,
    total_runtime_ms double precision NOT NULL DEFAULT 0,
    max_runtime_ms   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, bucket)
);
-- the retention of jobq.metrics_retention and the time ranges of dashboards
CREATE INDEX metrics_bucket ON jobq.metrics (bucket);
COMMENT ON TABLE jobq.metrics IS
    'jobq: per queue per minute (bucket): jobs submitted, attempts started, completed, failed (failed attempts), retried (failed attempts retried), timed_out (failed attempts of class timeout), jobs cancelled and dead_lettered, total and max attempt runtime in milliseconds; flushed from shared memory every jobq.metrics_flush_interval';
GRANT SELECT ON jobq.metrics TO PUBLIC;

CREATE FUNCTION jobq._flush_metrics() RETURNS integer
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_flush_metrics';
COMMENT ON FUNCTION jobq._flush_metrics() IS
    'Internal: adds the counts kept in shared memory for this database to jobq.metrics, in the caller''s transaction (given back if it aborts); returns how many rows were written';
REVOKE ALL ON FUNCTION jobq._flush_metrics() FROM PUBLIC;

CREATE FUNCTION jobq.flush_metrics() RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$ SELECT jobq._flush_metrics() $fn$;
COMMENT ON FUNCTION jobq.flush_metrics() IS
    'jobq: adds the counts not flushed yet to jobq.metrics now (the executors do it every jobq.metrics_flush_interval); returns how many (queue, minute) rows were written';
REVOKE ALL ON FUNCTION jobq.flush_metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.flush_metrics() TO jobq_admin;
