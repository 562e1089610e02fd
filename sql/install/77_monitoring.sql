-- jobq install script, part 77: the monitoring views (docs/monitoring.md).
--
-- They answer fast on big queues: active and running jobs come from gauges
-- in shared memory (src/queue_gauges.c), not from a count of the queue;
-- scheduled jobs and the oldest runnable job come from the claim index, a
-- few entries per priority; finished work from jobq.metrics.

CREATE FUNCTION jobq._queue_counts(OUT queue text, OUT pending bigint, OUT running bigint)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_queue_counts';
COMMENT ON FUNCTION jobq._queue_counts() IS
    'Internal: pending (scheduled included) and running jobs of every queue, from the gauges in shared memory (src/queue_gauges.c)';
REVOKE ALL ON FUNCTION jobq._queue_counts() FROM PUBLIC;

-- Pending jobs of a queue scheduled for later, and the run_at of the
-- oldest runnable one.  The claim index orders a queue's pending jobs by
-- priority, then run_at: per distinct priority (found one after the
-- other), the first entry is its oldest job and the scheduled ones are the
-- last entries, so big queues of runnable jobs cost a few index probes.
CREATE FUNCTION jobq._queue_schedule(queue text, OUT scheduled bigint, OUT oldest_run_at timestamptz)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p       integer;
    first   timestamptz;
    t       timestamptz := now();
BEGIN
    scheduled := 0;
    SELECT a.priority INTO p FROM jobq.jobs_active a
     WHERE a.queue = _queue_schedule.queue AND a.state = 'pending'
     ORDER BY a.priority DESC LIMIT 1;
    WHILE p IS NOT NULL LOOP
        SELECT a.run_at INTO first FROM jobq.jobs_active a
         WHERE a.queue = _queue_schedule.queue AND a.state = 'pending' AND a.priority = p
         ORDER BY a.priority DESC, a.run_at LIMIT 1;
        IF first <= t AND (oldest_run_at IS NULL OR first < oldest_run_at) THEN
            oldest_run_at := first;
        END IF;
        scheduled := scheduled + (SELECT count(*) FROM jobq.jobs_active a
                                   WHERE a.queue = _queue_schedule.queue AND a.state = 'pending'
                                     AND a.priority = p AND a.run_at > t);
        first := NULL;
        SELECT a.priority INTO p FROM jobq.jobs_active a
         WHERE a.queue = _queue_schedule.queue AND a.state = 'pending' AND a.priority < p
         ORDER BY a.priority DESC LIMIT 1;
        IF NOT FOUND THEN
            p := NULL;
        END IF;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION jobq._queue_schedule(text) IS
    'Internal: pending jobs of the queue scheduled for later (run_at in the future), and the run_at of its oldest runnable pending job';
REVOKE ALL ON FUNCTION jobq._queue_schedule(text) FROM PUBLIC;

CREATE FUNCTION jobq._executor_alive(token bigint) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$ SELECT token = ANY (jobq._live_executor_tokens()) $fn$;
COMMENT ON FUNCTION jobq._executor_alive(bigint) IS
    'Internal: whether the executor (or HTTP worker) of this token is running in this database';

-- Running jobs that are not making their way to an outcome, as the caller
-- sees them (jobq.jobs' policy: its own jobs; all for jobq_admin, and for
-- the views' own functions, which run as the extension's owner).
CREATE FUNCTION jobq._stuck_jobs()
    RETURNS TABLE (id bigint, queue text, owner regrole, attempt integer, worker text,
                   started_at timestamptz, running_for interval, reason text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT x.id, x.queue, x.owner, x.attempt, x.worker, x.started_at, now() - x.started_at, x.reason
      FROM (SELECT j.*,
                   CASE
                     WHEN j.claimed_by IS NULL AND j.lease_expires_at < now()
                       THEN 'lease expired'
                     WHEN j.claimed_by IS NOT NULL AND NOT jobq._executor_alive(j.claimed_by)
                       THEN 'worker gone'
                     WHEN now() - j.started_at > coalesce(j.timeout, q.timeout) + interval '1 minute'
                       THEN 'past its timeout'
                     WHEN now() - j.started_at > q.warn_after
                       THEN 'past warn_after'
                   END AS reason
              FROM jobq.jobs j
              JOIN jobq.queues q ON q.name = j.queue
             WHERE j.state = 'running') x
     WHERE x.reason IS NOT NULL
$fn$;
COMMENT ON FUNCTION jobq._stuck_jobs() IS
    'Internal: the stuck running jobs the caller may see (see jobq.stuck_jobs)';

CREATE VIEW jobq.stuck_jobs WITH (security_invoker = true) AS
    SELECT s.id, s.queue, s.owner, s.attempt, s.worker, s.started_at, s.running_for, s.reason
      FROM jobq._stuck_jobs() s;
COMMENT ON VIEW jobq.stuck_jobs IS
    'jobq: running jobs that are stuck, with the reason: lease expired (an external worker stopped heartbeating; the next claim recovers it), worker gone (its executor died; recovered shortly), past its timeout (by more than a minute: a handler that does not stop), past warn_after (running longer than its queue''s warn_after). A role sees its own jobs; jobq_admin sees all';
GRANT SELECT ON jobq.stuck_jobs TO PUBLIC;

-- queue_stats and health show counts of every role's jobs to every role,
-- like jobq.queues and pg_stat_user_tables: functions that run as the
-- extension's owner.
CREATE FUNCTION jobq._queue_stats(OUT queue text, OUT pending bigint, OUT scheduled bigint,
                                  OUT running bigint, OUT completed bigint, OUT failed bigint,
                                  OUT cancelled bigint, OUT stuck bigint,
                                  OUT oldest_pending_age interval, OUT paused boolean)
    RETURNS SETOF record
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT q.name,
           greatest(coalesce(c.pending, 0) - s.scheduled, 0),
           s.scheduled,
           coalesce(c.running, 0),
           coalesce(m.completed, 0),
           coalesce(m.failed, 0),
           coalesce(m.cancelled, 0),
           coalesce(st.stuck, 0),
           now() - s.oldest_run_at,
           q.paused
      FROM jobq.queues q
      LEFT JOIN jobq._queue_counts() c ON c.queue = q.name
      CROSS JOIN LATERAL jobq._queue_schedule(q.name) s
      LEFT JOIN LATERAL (SELECT sum(x.completed)::bigint AS completed,
                                sum(x.dead_lettered)::bigint AS failed,
                                sum(x.cancelled)::bigint AS cancelled
                           FROM jobq.metrics x
                          WHERE x.queue = q.name AND x.bucket > now() - interval '24 hours') m ON true
      LEFT JOIN (SELECT sj.queue, count(*) AS stuck FROM jobq._stuck_jobs() sj GROUP BY sj.queue) st
             ON st.queue = q.name
     ORDER BY q.name
$fn$;
COMMENT ON FUNCTION jobq._queue_stats() IS
    'Internal: the rows of jobq.queue_stats';

CREATE VIEW jobq.queue_stats AS
    SELECT s.queue, s.pending, s.scheduled, s.running, s.completed, s.failed, s.cancelled,
           s.stuck, s.oldest_pending_age, s.paused
      FROM jobq._queue_stats() s;
COMMENT ON VIEW jobq.queue_stats IS
    'jobq: per queue: pending (runnable now), scheduled (run_at later), running, completed, failed (dead-lettered) and cancelled jobs in the last 24 hours (jobq.metrics), stuck running jobs (jobq.stuck_jobs), oldest_pending_age (how long the oldest runnable job has waited), paused';
GRANT SELECT ON jobq.queue_stats TO PUBLIC;

CREATE VIEW jobq.retry_stats WITH (security_invoker = true) AS
    SELECT a.queue, a.error_class,
           count(*) AS failed_attempts,
           count(DISTINCT a.job_id) AS jobs,
           count(*) FILTER (WHERE f.id IS NULL OR a.attempt < f.attempt) AS retried,
           count(*) FILTER (WHERE f.state = 'failed' AND a.attempt = f.attempt) AS dead_lettered,
           max(a.finished_at) AS last_failed_at,
           (array_agg(a.error ORDER BY a.finished_at DESC))[1] AS last_error
      FROM jobq.job_attempts a
      LEFT JOIN jobq.jobs f ON f.id = a.job_id AND f.state IN ('completed', 'failed', 'cancelled')
     WHERE a.outcome = 'failed' AND a.finished_at > now() - interval '24 hours'
     GROUP BY a.queue, a.error_class;
COMMENT ON VIEW jobq.retry_stats IS
    'jobq: failed attempts of the last 24 hours per queue and error class: how many, of how many jobs, how many were retried and how many ended in the dead letter queue, the last one and its error. A role sees its own jobs'' attempts; jobq_admin sees all';
GRANT SELECT ON jobq.retry_stats TO PUBLIC;

-- The rules of jobq.health, one row each when it applies: its severity and
-- what it says.  Thresholds are in docs/monitoring.md.
CREATE FUNCTION jobq._health_issues(vacuum_warn interval DEFAULT '5 minutes',
                                    OUT severity text, OUT issue text)
    RETURNS SETOF record
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n           bigint;
    done        bigint;
    failed      bigint;
    rate        float8;
    keys        text;
    age         interval;
    who         text;
BEGIN
    -- stuck jobs
    SELECT count(*) INTO n FROM jobq._stuck_jobs();
    IF n > 0 THEN
        severity := 'degraded';
        issue := format('%s stuck job(s): see jobq.stuck_jobs', n);
        RETURN NEXT;
    END IF;
    -- open circuit breakers
    SELECT count(*), string_agg(b.breaker_key, ', ' ORDER BY b.breaker_key) INTO n, keys
      FROM jobq._breaker_states() b WHERE b.state <> 'closed';
    IF n > 0 THEN
        severity := 'degraded';
        issue := format('%s circuit breaker(s) not closed: %s', n, keys);
        RETURN NEXT;
    END IF;
    -- failure rate of the last 15 minutes
    SELECT coalesce(sum(m.completed), 0), coalesce(sum(m.failed), 0) INTO done, failed
      FROM jobq.metrics m WHERE m.bucket > now() - interval '15 minutes';
    IF done + failed >= 10 THEN
        rate := 100.0 * failed / (done + failed);
        IF rate >= 50 THEN
            severity := 'unhealthy';
        ELSIF rate >= 10 THEN
            severity := 'degraded';
        END IF;
        IF rate >= 10 THEN
            issue := format('%s%% of the attempts of the last 15 minutes failed (%s of %s)',
                            round(rate::numeric, 1), failed, done + failed);
            RETURN NEXT;
        END IF;
    END IF;
    -- dead letter queue growing
    SELECT count(*) INTO n FROM jobq.dead_letter d
     WHERE d.resolved_at IS NULL AND d.failed_at > now() - interval '1 hour';
    IF n > 0 THEN
        severity := 'degraded';
        issue := format('%s job(s) dead-lettered in the last hour: see jobq.dead_letter', n);
        RETURN NEXT;
    END IF;
    -- runnable jobs that no executor of this database will run
    IF NOT EXISTS (SELECT FROM jobq._workers() w
                    WHERE w.kind = 'executor' AND w.database = current_database()) THEN
        SELECT coalesce(sum(s.pending), 0) INTO n
          FROM jobq.queue_stats s JOIN jobq.queues q ON q.name = s.queue
         WHERE q.kind = 'sql' AND NOT q.paused;
        IF n > 0 THEN
            severity := 'critical';
            issue := format('no jobq executor runs in this database, and %s job(s) wait', n);
            RETURN NEXT;
        END IF;
    END IF;
    -- the oldest transaction or prepared transaction holding back VACUUM
    SELECT now() - x.since, x.who INTO age, who FROM (
        SELECT a.xact_start AS since,
               format('pid %s (%s, %s)', a.pid, coalesce(nullif(a.application_name, ''), a.backend_type),
                      a.state) AS who
          FROM pg_stat_activity a
         WHERE a.backend_xmin IS NOT NULL AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
        UNION ALL
        SELECT p.prepared, format('prepared transaction %s', p.gid) FROM pg_prepared_xacts p
    ) x ORDER BY x.since LIMIT 1;
    IF age > vacuum_warn THEN
        severity := CASE WHEN age > greatest(vacuum_warn, interval '1 hour') THEN 'unhealthy' ELSE 'degraded' END;
        issue := format('%s has held back VACUUM for %s: dead job rows pile up until it ends',
                        who, date_trunc('second', age));
        RETURN NEXT;
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._health_issues(interval) IS
    'Internal: the rules of jobq.health that apply now, with their severity';
REVOKE ALL ON FUNCTION jobq._health_issues(interval) FROM PUBLIC;

CREATE FUNCTION jobq._health(OUT status text, OUT stuck_jobs bigint, OUT running_jobs bigint,
                             OUT open_breakers bigint, OUT dlq_unresolved bigint,
                             OUT failure_rate numeric, OUT workers_alive bigint, OUT issues text[])
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE
             WHEN 'critical' = ANY (i.severities) THEN 'critical'
             WHEN 'unhealthy' = ANY (i.severities) THEN 'unhealthy'
             WHEN 'degraded' = ANY (i.severities) THEN 'degraded'
             ELSE 'healthy'
           END,
           (SELECT count(*) FROM jobq._stuck_jobs()),
           (SELECT coalesce(sum(c.running), 0)::bigint FROM jobq._queue_counts() c),
           (SELECT count(*) FROM jobq._breaker_states() b WHERE b.state <> 'closed'),
           (SELECT count(*) FROM jobq.dead_letter d WHERE d.resolved_at IS NULL),
           (SELECT round((100.0 * sum(m.failed) / nullif(sum(m.completed) + sum(m.failed), 0))::numeric, 2)
              FROM jobq.metrics m WHERE m.bucket > now() - interval '15 minutes'),
           (SELECT count(*) FROM jobq._workers() w
             WHERE w.kind IN ('executor', 'http') AND w.database = current_database()),
           coalesce(i.issues, '{}')
      FROM (SELECT array_agg(h.severity) AS severities,
                   array_agg(h.severity || ': ' || h.issue) AS issues
              FROM jobq._health_issues() h) i
$fn$;
COMMENT ON FUNCTION jobq._health() IS
    'Internal: the row of jobq.health';

CREATE VIEW jobq.health AS
    SELECT h.status, h.stuck_jobs, h.running_jobs, h.open_breakers, h.dlq_unresolved,
           h.failure_rate, h.workers_alive, h.issues
      FROM jobq._health() h;
COMMENT ON VIEW jobq.health IS
    'jobq: one row: status (healthy, degraded, unhealthy, critical: the worst rule that applies), stuck_jobs, running_jobs, open_breakers (not closed), dlq_unresolved, failure_rate (percent of the attempts of the last 15 minutes that failed), workers_alive (executors and HTTP workers of this database), issues (each rule that applies, with its severity); the rules are in docs/monitoring.md';
GRANT SELECT ON jobq.health TO PUBLIC;

CREATE FUNCTION jobq._prometheus_totals() RETURNS text
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_prometheus_totals';
COMMENT ON FUNCTION jobq._prometheus_totals() IS
    'Internal: this database''s counters per queue since the server started and the attempt runtime histogram, in the Prometheus text format';
REVOKE ALL ON FUNCTION jobq._prometheus_totals() FROM PUBLIC;

CREATE FUNCTION jobq._prometheus_label(v text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$ SELECT replace(replace(replace(v, '\', '\\'), '"', '\"'), E'\n', '\n') $fn$;
COMMENT ON FUNCTION jobq._prometheus_label(text) IS
    'Internal: a Prometheus label value, escaped';

-- Counters from the queue gauges' totals (reset by a server restart, as
-- Prometheus expects of counters), gauges from queue_stats and health.
CREATE FUNCTION jobq.prometheus_metrics() RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    out     text := jobq._prometheus_totals();
    h       record;
    g       record;
    r       record;
BEGIN
    FOR g IN SELECT * FROM (VALUES
            ('jobq_queue_pending', 'Jobs runnable now.', 'pending'),
            ('jobq_queue_scheduled', 'Pending jobs with run_at in the future.', 'scheduled'),
            ('jobq_queue_running', 'Running jobs.', 'running'),
            ('jobq_queue_stuck', 'Stuck running jobs (jobq.stuck_jobs).', 'stuck'),
            ('jobq_queue_oldest_pending_seconds', 'How long the oldest runnable job has waited.', 'oldest'),
            ('jobq_queue_paused', '1 when the queue is paused.', 'paused')) x(name, help, col) LOOP
        out := out || format(E'# HELP %s %s\n# TYPE %s gauge\n', g.name, g.help, g.name);
        FOR r IN SELECT s.queue, CASE g.col
                     WHEN 'pending' THEN s.pending::float8
                     WHEN 'scheduled' THEN s.scheduled::float8
                     WHEN 'running' THEN s.running::float8
                     WHEN 'stuck' THEN s.stuck::float8
                     WHEN 'oldest' THEN coalesce(extract(epoch FROM s.oldest_pending_age)::float8, 0)
                     ELSE s.paused::int::float8 END AS v
                   FROM jobq._queue_stats() s LOOP
            out := out || format(E'%s{queue="%s"} %s\n', g.name, jobq._prometheus_label(r.queue), r.v);
        END LOOP;
    END LOOP;
    out := out || E'# HELP jobq_dead_letter_unresolved Dead letters not resolved yet.\n# TYPE jobq_dead_letter_unresolved gauge\n';
    FOR r IN SELECT q.name AS queue, (SELECT count(*) FROM jobq.dead_letter d
                                       WHERE d.queue = q.name AND d.resolved_at IS NULL) AS n
               FROM jobq.queues q ORDER BY q.name LOOP
        out := out || format(E'jobq_dead_letter_unresolved{queue="%s"} %s\n', jobq._prometheus_label(r.queue), r.n);
    END LOOP;
    out := out || E'# HELP jobq_breaker_open 1 when the circuit breaker is open or half open.\n# TYPE jobq_breaker_open gauge\n';
    FOR r IN SELECT b.breaker_key, b.state FROM jobq._breaker_states() b ORDER BY 1 LOOP
        out := out || format(E'jobq_breaker_open{breaker="%s"} %s\n', jobq._prometheus_label(r.breaker_key),
                             CASE WHEN r.state = 'closed' THEN 0 ELSE 1 END);
    END LOOP;
    SELECT * INTO h FROM jobq._health();
    out := out || format(E'# HELP jobq_workers_alive Executors and HTTP workers of this database.\n# TYPE jobq_workers_alive gauge\njobq_workers_alive %s\n', h.workers_alive);
    out := out || format(E'# HELP jobq_health_status jobq.health status: 0 healthy, 1 degraded, 2 unhealthy, 3 critical.\n# TYPE jobq_health_status gauge\njobq_health_status %s\n',
                         array_position(ARRAY['healthy', 'degraded', 'unhealthy', 'critical'], h.status) - 1);
    RETURN out;
END
$fn$;
COMMENT ON FUNCTION jobq.prometheus_metrics() IS
    'jobq: this database''s metrics in the Prometheus text exposition format: counters per queue since the server started (jobs submitted, attempts started, completed, failed, retried, timed out, snoozed, released, jobs cancelled and dead-lettered; failed attempts by error class), the attempt runtime histogram, gauges per queue (pending, scheduled, running, stuck, oldest pending age, paused, unresolved dead letters), per circuit breaker (open), workers alive and the health status';
GRANT EXECUTE ON FUNCTION jobq.prometheus_metrics() TO PUBLIC;
