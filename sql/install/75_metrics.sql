-- jobq install script, part 75: per-queue, per-minute counters.
--
-- Rows are added to by jobq's processes from counters kept in shared
-- memory (never by an UPDATE per job); see docs/metrics.md.

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
COMMENT ON TABLE jobq.metrics IS
    'jobq: per queue per minute (bucket): jobs submitted, attempts started, completed, failed (failed attempts), retried, timed_out, cancelled, dead_lettered, total and max attempt runtime in milliseconds';
GRANT SELECT ON jobq.metrics TO PUBLIC;
