-- jobq install script, part 78: alerts (docs/alerts.md).
--
-- Rules in jobq.alert_config are evaluated by jobq.evaluate_alerts(): by a
-- duty of the database's executors every jobq.alert_interval
-- (src/alerts.c), or by hand.  A rule fires when its metric is above its
-- threshold, at most once per cooldown, and is resolved once when the
-- metric is back at or under it; jobq.alert_history keeps every firing and
-- resolution with its delivery.  Channels: log (a server log line), notify
-- (NOTIFY jobq_alerts, JSON) and webhook (an HTTP job of queue jobq_alerts,
-- so retried and behind its host's circuit breaker; its outcome is written
-- back to the history row by the next evaluation).

CREATE TABLE jobq.alert_config (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    metric          text NOT NULL
                    CONSTRAINT alert_config_metric_known CHECK (metric OPERATOR(pg_catalog.=) ANY (ARRAY[
                        'failure_rate', 'dlq_size', 'breaker_open', 'stuck_jobs', 'queue_depth',
                        'oldest_pending_seconds', 'retry_exhausted'])),
    queue           text,
    "window"        interval NOT NULL DEFAULT '15 minutes'
                    CONSTRAINT alert_config_window_positive CHECK ("window" OPERATOR(pg_catalog.>) '0'::interval),
    threshold       double precision NOT NULL,
    severity        text NOT NULL DEFAULT 'warning'
                    CONSTRAINT alert_config_severity_known CHECK (severity OPERATOR(pg_catalog.=) ANY (ARRAY[
                        'warning', 'error', 'critical'])),
    cooldown        interval NOT NULL DEFAULT '15 minutes'
                    CONSTRAINT alert_config_cooldown_not_negative CHECK (cooldown OPERATOR(pg_catalog.>=) '0'::interval),
    channels        text[] NOT NULL DEFAULT ARRAY['notify', 'log']
                    CONSTRAINT alert_config_channels_known CHECK (
                        channels OPERATOR(pg_catalog.<@) ARRAY['notify', 'log', 'webhook']
                        AND pg_catalog.cardinality(channels) OPERATOR(pg_catalog.>) 0),
    webhook_url     text,
    enabled         boolean NOT NULL DEFAULT true,
    min_samples     integer NOT NULL DEFAULT 10
                    CONSTRAINT alert_config_min_samples_positive CHECK (min_samples OPERATOR(pg_catalog.>) 0),
    builtin         boolean NOT NULL DEFAULT false,
    CONSTRAINT alert_config_webhook_needs_url CHECK (
        NOT ('webhook' OPERATOR(pg_catalog.=) ANY (channels)) OR webhook_url IS NOT NULL)
);
COMMENT ON TABLE jobq.alert_config IS
    'jobq: alert rules, evaluated every jobq.alert_interval and by jobq.evaluate_alerts(); a rule fires when its metric is above threshold, at most once per cooldown, and is resolved once when the metric is back (docs/alerts.md)';
COMMENT ON COLUMN jobq.alert_config.metric IS
    'failure_rate (percent of the attempts finished in window that failed, when at least min_samples), dlq_size (unresolved dead letters), breaker_open (circuit breakers not closed), stuck_jobs (jobq.stuck_jobs), queue_depth (pending jobs, scheduled included), oldest_pending_seconds (age of the oldest runnable job of an unpaused queue), retry_exhausted (jobs dead-lettered in window after using all their attempts)';
COMMENT ON COLUMN jobq.alert_config.queue IS
    'NULL: all queues together; ''*'': each queue on its own (one alert per queue); else that queue';
COMMENT ON COLUMN jobq.alert_config."window" IS 'the time the failure_rate and retry_exhausted metrics look back';
COMMENT ON COLUMN jobq.alert_config.cooldown IS 'no new firing of the rule (per queue) sooner than this after the last one';
COMMENT ON COLUMN jobq.alert_config.channels IS 'notify (NOTIFY jobq_alerts), log (server log), webhook (JSON POST to webhook_url)';
COMMENT ON COLUMN jobq.alert_config.webhook_url IS 'the webhook channel''s URL: checked against jobq.http_allowed_hosts when set and again when delivered';
COMMENT ON COLUMN jobq.alert_config.min_samples IS 'failure_rate: fewer finished attempts in window than this give no value (neither fire nor keep firing)';
COMMENT ON COLUMN jobq.alert_config.builtin IS 'one of the rules jobq installs (pg_dump keeps only the others)';

-- Where each (rule, scope) stands: firing or not, when it last fired.
CREATE TABLE jobq.alert_state (
    alert_id        bigint NOT NULL REFERENCES jobq.alert_config (id) ON DELETE CASCADE,
    queue_key       text NOT NULL,
    firing          boolean NOT NULL,
    last_fired_at   timestamptz,
    last_resolved_at timestamptz,
    PRIMARY KEY (alert_id, queue_key)
);
COMMENT ON TABLE jobq.alert_state IS
    'jobq: per alert rule and scope (queue_key: the queue, '''' for all queues): firing or not, last firing and resolution';

CREATE TABLE jobq.alert_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint REFERENCES jobq.alert_config (id) ON DELETE SET NULL,
    fired_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    severity        text NOT NULL,
    metric          text NOT NULL,
    value           double precision,
    threshold       double precision NOT NULL,
    message         text NOT NULL,
    delivered       boolean,
    delivery_error  text,
    name            text NOT NULL,
    queue           text,
    status          text NOT NULL
                    CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['firing', 'resolved'])),
    channels        text[] NOT NULL,
    delivery_job_id bigint
);
COMMENT ON TABLE jobq.alert_history IS
    'jobq: every firing and resolution of an alert, with its delivery: delivered true once every channel delivered it (notify and log at once, webhook when its HTTP job completed), false with delivery_error when the webhook failed, NULL while the webhook job runs (written by the next evaluation)';
COMMENT ON COLUMN jobq.alert_history.status IS 'firing, or resolved (the metric is back at or under the threshold)';
COMMENT ON COLUMN jobq.alert_history.queue IS 'the queue the alert is about; NULL: all queues together';
COMMENT ON COLUMN jobq.alert_history.delivery_job_id IS 'the webhook''s HTTP job (queue jobq_alerts)';
CREATE INDEX alert_history_fired_at_idx ON jobq.alert_history (fired_at);
CREATE INDEX alert_history_undelivered_idx ON jobq.alert_history (delivery_job_id)
    WHERE delivered IS NULL;

-- The queue of the webhook channel's HTTP jobs.
INSERT INTO jobq.queues (name, kind, max_attempts, backoff, base_delay,
                         max_delay, jitter, timeout, warn_after, retention)
VALUES ('jobq_alerts', 'http', 5, 'exponential', '1 second', '5 minutes', 0.1,
        '30 seconds', '1 minute', '1 day');

-- The recommended alerts (docs/alerts.md).
INSERT INTO jobq.alert_config (name, metric, queue, "window", threshold, severity, builtin) VALUES
    ('failure_rate_warning', 'failure_rate', '*', '15 minutes', 20, 'warning', true),
    ('failure_rate_error', 'failure_rate', '*', '15 minutes', 50, 'error', true),
    ('breaker_open', 'breaker_open', NULL, '15 minutes', 0, 'critical', true),
    ('dlq_error', 'dlq_size', NULL, '15 minutes', 50, 'error', true),
    ('dlq_critical', 'dlq_size', NULL, '15 minutes', 100, 'critical', true),
    ('stuck_jobs', 'stuck_jobs', NULL, '15 minutes', 0, 'warning', true),
    ('oldest_pending', 'oldest_pending_seconds', '*', '15 minutes', 300, 'warning', true);

CREATE FUNCTION jobq._check_webhook_url(url text) RETURNS void
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'jobq_check_webhook_url';
COMMENT ON FUNCTION jobq._check_webhook_url(text) IS
    'Internal: raises 22023 unless jobq.http_allowed_hosts allows the URL (the check of jobq.submit_http)';

CREATE FUNCTION jobq._alert_config_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NEW.webhook_url IS NOT NULL THEN
        PERFORM jobq._check_webhook_url(NEW.webhook_url);
    END IF;
    IF NEW.queue IS NOT NULL AND NEW.queue <> '*'
       AND NOT EXISTS (SELECT FROM jobq.queues q WHERE q.name = NEW.queue) THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('queue "%s" does not exist', NEW.queue),
            HINT = 'Name an existing queue, * for each queue on its own, or NULL for all queues together.';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION jobq._alert_config_check() IS
    'Internal: jobq.alert_config''s webhook URL is one jobq.http_allowed_hosts allows; its queue exists';
CREATE TRIGGER alert_config_check BEFORE INSERT OR UPDATE ON jobq.alert_config
    FOR EACH ROW EXECUTE FUNCTION jobq._alert_config_check();

-- A rule's metric now: one row per scope (queue_key '' for all queues
-- together), value NULL when there is nothing to judge by.
CREATE FUNCTION jobq._alert_values(metric text, queue text, win interval, min_samples integer)
    RETURNS TABLE (queue_key text, value double precision, detail text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    scopes  text[];
    s       text;
    n       bigint;
    done    bigint;
    failed  bigint;
    keys    text;
    oldest  timestamptz;
BEGIN
    IF queue IS NULL THEN
        scopes := ARRAY[''];
    ELSIF queue = '*' THEN
        scopes := ARRAY(SELECT q.name FROM jobq.queues q ORDER BY q.name);
    ELSE
        scopes := ARRAY[queue];
    END IF;
    FOREACH s IN ARRAY scopes LOOP
        queue_key := s;
        value := NULL;
        detail := NULL;
        CASE metric
        WHEN 'failure_rate' THEN
            SELECT coalesce(sum(m.completed), 0), coalesce(sum(m.failed), 0) INTO done, failed
              FROM jobq.metrics m
             WHERE m.bucket > now() - win AND (s = '' OR m.queue = s);
            IF done + failed >= min_samples THEN
                value := 100.0 * failed / (done + failed);
                detail := format('%s of %s attempts failed in the last %s', failed, done + failed, win);
            ELSE
                detail := format('%s attempts in the last %s, fewer than %s', done + failed, win, min_samples);
            END IF;
        WHEN 'dlq_size' THEN
            SELECT count(*) INTO n FROM jobq.dead_letter d
             WHERE d.resolved_at IS NULL AND (s = '' OR d.queue = s);
            value := n;
            detail := format('%s unresolved dead letters', n);
        WHEN 'breaker_open' THEN
            SELECT count(*), string_agg(b.breaker_key || ' ' || b.state, ', ' ORDER BY b.breaker_key)
              INTO n, keys
              FROM jobq._breaker_states() b
             WHERE b.state <> 'closed'
               AND (s = '' OR b.breaker_key = (SELECT coalesce(q.breaker, q.name)
                                                 FROM jobq.queues q WHERE q.name = s));
            value := n;
            detail := CASE WHEN n > 0 THEN format('circuit breakers not closed: %s', keys)
                           ELSE 'every circuit breaker is closed' END;
        WHEN 'stuck_jobs' THEN
            SELECT count(*) INTO n FROM jobq._stuck_jobs() j WHERE s = '' OR j.queue = s;
            value := n;
            detail := format('%s stuck jobs (see jobq.stuck_jobs)', n);
        WHEN 'queue_depth' THEN
            SELECT coalesce(sum(c.pending), 0) INTO n FROM jobq._queue_counts() c
             WHERE s = '' OR c.queue = s;
            value := n;
            detail := format('%s pending jobs', n);
        WHEN 'oldest_pending_seconds' THEN
            SELECT min(x.oldest_run_at) INTO oldest
              FROM jobq.queues q CROSS JOIN LATERAL jobq._queue_schedule(q.name) x
             WHERE NOT q.paused AND (s = '' OR q.name = s);
            value := coalesce(extract(epoch FROM now() - oldest), 0);
            detail := CASE WHEN oldest IS NULL THEN 'no runnable job waits'
                           ELSE format('the oldest runnable job has waited %s',
                                       date_trunc('second', now() - oldest)) END;
        WHEN 'retry_exhausted' THEN
            SELECT count(*) INTO n FROM jobq.dead_letter d
              LEFT JOIN jobq.queues q ON q.name = d.queue
             WHERE d.failed_at > now() - win AND (s = '' OR d.queue = s)
               AND d.attempts >= coalesce(d.max_attempts, q.max_attempts);
            value := n;
            detail := format('%s jobs used all their attempts and were dead-lettered in the last %s', n, win);
        END CASE;
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION jobq._alert_values(text, text, interval, integer) IS
    'Internal: an alert metric''s value per scope (queue_key '''' = all queues together), with a sentence saying what it counts';

-- Webhook deliveries that ended since the last evaluation: written back.
CREATE FUNCTION jobq._alert_sync_deliveries() RETURNS void
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    UPDATE jobq.alert_history h
       SET delivered = (j.state = 'completed'),
           delivery_error = CASE WHEN j.state = 'completed' THEN NULL
                                 ELSE coalesce((SELECT a.error FROM jobq.job_attempts a
                                                 WHERE a.job_id = j.id
                                                 ORDER BY a.attempt DESC LIMIT 1),
                                               'the webhook job was ' || j.state) END
      FROM jobq.jobs j
     WHERE h.delivered IS NULL AND j.id = h.delivery_job_id
       AND j.state IN ('completed', 'failed', 'cancelled')
$fn$;
COMMENT ON FUNCTION jobq._alert_sync_deliveries() IS
    'Internal: the outcome of ended webhook jobs, written to their alert_history rows';

-- One firing or resolution: its history row, then its channels.
CREATE FUNCTION jobq._alert_record(r jobq.alert_config, queue_key text, status text,
                                   value double precision, detail text)
    RETURNS jobq.alert_history
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    h       jobq.alert_history;
    scope   text := CASE WHEN queue_key = '' THEN 'all queues' ELSE format('queue %s', queue_key) END;
    shown   text := CASE WHEN value IS NULL THEN 'unknown'
                         WHEN value = trunc(value) THEN trunc(value)::numeric::text
                         ELSE round(value::numeric, 2)::text END;
    msg     text;
    payload jsonb;
    job     bigint;
BEGIN
    msg := CASE status
           WHEN 'firing' THEN format('%s is %s, above %s (%s): %s', r.metric, shown, r.threshold, scope, detail)
           ELSE format('%s is %s, back at or under %s (%s): %s', r.metric, shown, r.threshold, scope, detail)
           END;
    INSERT INTO jobq.alert_history (alert_id, severity, metric, value, threshold, message,
                                    delivered, name, queue, status, channels)
    VALUES (r.id, r.severity, r.metric, value, r.threshold, msg,
            CASE WHEN 'webhook' = ANY (r.channels) THEN NULL ELSE true END,
            r.name, nullif(queue_key, ''), status, r.channels)
    RETURNING * INTO h;
    payload := jsonb_build_object('id', h.id, 'alert', r.name, 'status', status,
                                  'severity', r.severity, 'metric', r.metric,
                                  'queue', nullif(queue_key, ''), 'value', value,
                                  'threshold', r.threshold, 'message', left(msg, 2000),
                                  'fired_at', h.fired_at);
    IF 'log' = ANY (r.channels) THEN
        RAISE LOG 'jobq alert %: % (%): %', r.name, status, r.severity, msg;
    END IF;
    IF 'notify' = ANY (r.channels) THEN
        PERFORM pg_notify('jobq_alerts', payload::text);
    END IF;
    IF 'webhook' = ANY (r.channels) THEN
        BEGIN
            job := jobq.submit_http(r.webhook_url, 'POST', '{"Content-Type": "application/json"}',
                                    (payload || jsonb_build_object('text',
                                        format('[%s] jobq alert %s %s: %s',
                                               CASE status WHEN 'resolved' THEN 'resolved' ELSE r.severity END,
                                               r.name, status, msg)))::text,
                                    queue => 'jobq_alerts');
            UPDATE jobq.alert_history SET delivery_job_id = job WHERE id = h.id;
            h.delivery_job_id := job;
        EXCEPTION WHEN OTHERS THEN
            UPDATE jobq.alert_history SET delivered = false, delivery_error = SQLERRM WHERE id = h.id;
            h.delivered := false;
            h.delivery_error := SQLERRM;
        END;
    END IF;
    RETURN h;
END
$fn$;
COMMENT ON FUNCTION jobq._alert_record(jobq.alert_config, text, text, double precision, text) IS
    'Internal: records one firing or resolution of a rule in jobq.alert_history and delivers it to the rule''s channels';

CREATE FUNCTION jobq.evaluate_alerts() RETURNS SETOF jobq.alert_history
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r       jobq.alert_config;
    v       record;
    st      jobq.alert_state;
    seen    text[];
    above   boolean;
    fired   jobq.alert_history[];
    h       jobq.alert_history;
BEGIN
    -- one evaluation at a time: two at once would both fire the same alert
    PERFORM pg_advisory_xact_lock(hashtext('jobq.evaluate_alerts'));
    PERFORM jobq._alert_sync_deliveries();
    FOR r IN SELECT * FROM jobq.alert_config c ORDER BY c.id LOOP
        seen := '{}';
        fired := '{}';
        BEGIN
            IF r.enabled THEN
                FOR v IN SELECT * FROM jobq._alert_values(r.metric, r.queue, r."window", r.min_samples) LOOP
                    seen := seen || v.queue_key;
                    st := NULL;
                    SELECT * INTO st FROM jobq.alert_state s
                     WHERE s.alert_id = r.id AND s.queue_key = v.queue_key;
                    above := v.value IS NOT NULL AND v.value > r.threshold;
                    IF above THEN
                        -- not again within the cooldown of the last firing,
                        -- still firing or resolved since
                        CONTINUE WHEN st.last_fired_at IS NOT NULL
                                  AND now() - st.last_fired_at < r.cooldown;
                        fired := fired || jobq._alert_record(r, v.queue_key, 'firing', v.value, v.detail);
                        INSERT INTO jobq.alert_state AS s (alert_id, queue_key, firing, last_fired_at)
                        VALUES (r.id, v.queue_key, true, now())
                        ON CONFLICT (alert_id, queue_key)
                        DO UPDATE SET firing = true, last_fired_at = now();
                    ELSIF st.firing THEN
                        fired := fired || jobq._alert_record(r, v.queue_key, 'resolved', v.value, v.detail);
                        UPDATE jobq.alert_state s SET firing = false, last_resolved_at = now()
                         WHERE s.alert_id = r.id AND s.queue_key = v.queue_key;
                    END IF;
                END LOOP;
            END IF;
            -- firing alerts of a disabled rule, or of a queue that is gone
            FOR st IN SELECT * FROM jobq.alert_state s
                       WHERE s.alert_id = r.id AND s.firing AND NOT (s.queue_key = ANY (seen))
                       ORDER BY s.queue_key LOOP
                fired := fired || jobq._alert_record(r, st.queue_key, 'resolved', NULL,
                    CASE WHEN r.enabled THEN 'the queue no longer exists' ELSE 'the rule was disabled' END);
                UPDATE jobq.alert_state s SET firing = false, last_resolved_at = now()
                 WHERE s.alert_id = r.id AND s.queue_key = st.queue_key;
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            -- one broken rule does not keep the others from being evaluated
            -- (its rows and notifications were rolled back with it)
            RAISE WARNING 'jobq: alert rule "%" could not be evaluated: %', r.name, SQLERRM;
            fired := '{}';
        END;
        FOREACH h IN ARRAY fired LOOP
            RETURN NEXT h;
        END LOOP;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION jobq.evaluate_alerts() IS
    'jobq: evaluates every alert rule now: returns the jobq.alert_history rows it wrote (alerts fired, alerts resolved), after delivering them; also writes back the outcome of webhook deliveries that ended';

-- History older than jobq.metrics_retention goes with the cleanup
-- (jobq._cleanup_metrics, 76_retention.sql).

REVOKE ALL ON jobq.alert_config, jobq.alert_state, jobq.alert_history FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON jobq.alert_config TO jobq_admin;
GRANT SELECT ON jobq.alert_state, jobq.alert_history TO jobq_admin;
REVOKE ALL ON FUNCTION jobq._check_webhook_url(text), jobq._alert_config_check(),
    jobq._alert_values(text, text, interval, integer), jobq._alert_sync_deliveries(),
    jobq._alert_record(jobq.alert_config, text, text, double precision, text),
    jobq.evaluate_alerts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.evaluate_alerts() TO jobq_admin;

-- pg_dump keeps the rules users added, and (jobq_alerts being the
-- extension's own queue) not that queue
SELECT pg_catalog.pg_extension_config_dump('jobq.alert_config', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('jobq.alert_config_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.queues',
    $$WHERE name OPERATOR(pg_catalog.<>) ALL (ARRAY['http', 'jobq_alerts'])$$);
