-- jobq install script, part 70: recurring submissions through pg_cron.
--
-- A schedule is a pg_cron job, in this database, that runs
-- SELECT jobq.submit(queue, payload) as the role that created it (never as
-- anyone else: pg_cron runs a job as its username).  jobq.schedule_defs
-- keeps what jobq created; pg_cron keeps when it runs and how it went.
-- The C entry points (src/schedules.c) capture the calling role first.

CREATE TABLE jobq.schedule_defs (
    owner       regrole NOT NULL,
    name        text NOT NULL,
    schedule    text NOT NULL,
    queue       text NOT NULL,
    payload     jsonb NOT NULL,
    cron_jobid  bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (owner, name)
);
COMMENT ON TABLE jobq.schedule_defs IS
    'jobq: the recurring submissions made by jobq.schedule (one pg_cron job each, run as owner); read jobq.schedules';

-- Raises a clear error unless pg_cron can take jobs here.
CREATE FUNCTION jobq._cron_ready() RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM regexp_split_to_table(current_setting('shared_preload_libraries'), '\s*,\s*') l
                    WHERE trim(both '" ' from l) = 'pg_cron') THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'jobq schedules need pg_cron, which is not loaded',
            DETAIL = 'A jobq schedule is a pg_cron job; pg_cron must be in shared_preload_libraries.',
            HINT = 'Add pg_cron to shared_preload_libraries, restart, set cron.database_name to this database and run CREATE EXTENSION pg_cron.';
    END IF;
    IF to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'jobq schedules need the pg_cron extension (1.4 or later) in this database',
            DETAIL = format('pg_cron keeps its jobs in the database named by cron.database_name (%s); this is %s.',
                            coalesce(current_setting('cron.database_name', true), 'postgres'), current_database()),
            HINT = 'Set cron.database_name to this database and run CREATE EXTENSION pg_cron here (or ALTER EXTENSION pg_cron UPDATE).';
    END IF;
END
$fn$;
COMMENT ON FUNCTION jobq._cron_ready() IS 'Internal: raises 55000 with a hint unless pg_cron can schedule jobs in this database.';

CREATE FUNCTION jobq._schedule(name text, schedule text, queue text, payload jsonb, caller regrole)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jobid   bigint;
BEGIN
    IF name IS NULL OR name = '' OR length(name) > 100 OR name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid schedule name %s', coalesce(quote_literal(left(name, 80)), 'NULL')),
            DETAIL = 'A schedule name has 1 to 100 characters and no control characters.';
    END IF;
    IF schedule IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'schedule must not be NULL',
            HINT = 'Pass a cron expression such as ''*/5 * * * *''.';
    END IF;
    IF queue IS NULL OR NOT EXISTS (SELECT FROM jobq.queues q WHERE q.name = _schedule.queue) THEN
        PERFORM jobq._no_queue(queue);
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'payload must not be NULL',
            HINT = 'Pass ''{}'' for an empty payload.';
    END IF;
    PERFORM jobq._cron_ready();
    -- pg_cron checks the cron expression; the job runs as the caller
    jobid := cron.schedule_in_database('jobq:' || name, schedule,
                 format('SELECT jobq.submit(%L, %L::jsonb)', queue, payload::text),
                 current_database(), caller::text, true);
    INSERT INTO jobq.schedule_defs AS d (owner, name, schedule, queue, payload, cron_jobid)
    VALUES (caller, _schedule.name, _schedule.schedule, _schedule.queue, _schedule.payload, jobid)
    ON CONFLICT ON CONSTRAINT schedule_defs_pkey DO UPDATE
       SET schedule = EXCLUDED.schedule, queue = EXCLUDED.queue, payload = EXCLUDED.payload,
           cron_jobid = EXCLUDED.cron_jobid, updated_at = now();
    RETURN jobid;
END
$fn$;
COMMENT ON FUNCTION jobq._schedule(text, text, text, jsonb, regrole) IS
    'Internal (jobq.schedule): creates or replaces caller''s schedule name: a pg_cron job submitting payload to queue, run as caller';

CREATE FUNCTION jobq._unschedule(name text, caller regrole) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    jobid   bigint;
BEGIN
    DELETE FROM jobq.schedule_defs d WHERE d.owner = caller AND d.name = _unschedule.name
    RETURNING d.cron_jobid INTO jobid;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF to_regprocedure('cron.unschedule(bigint)') IS NOT NULL THEN
        EXECUTE 'SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobid = $1' USING jobid;
    END IF;
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION jobq._unschedule(text, regrole) IS
    'Internal (jobq.unschedule): removes caller''s schedule name and its pg_cron job; false when there is none';

CREATE FUNCTION jobq._schedule_rows(caller regrole,
    OUT name text, OUT owner regrole, OUT schedule text, OUT queue text, OUT payload jsonb,
    OUT active boolean, OUT created_at timestamptz, OUT updated_at timestamptz,
    OUT last_run_at timestamptz, OUT last_status text, OUT last_message text)
    RETURNS SETOF record
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    d       record;
    cron    boolean := to_regclass('cron.job') IS NOT NULL
                       AND to_regclass('cron.job_run_details') IS NOT NULL;
BEGIN
    FOR d IN SELECT s.* FROM jobq.schedule_defs s
              WHERE pg_has_role(caller, s.owner, 'MEMBER') OR pg_has_role(caller, 'jobq_admin', 'MEMBER')
              ORDER BY s.owner::text, s.name
    LOOP
        name := d.name; owner := d.owner; schedule := d.schedule; queue := d.queue;
        payload := d.payload; created_at := d.created_at; updated_at := d.updated_at;
        active := NULL; last_run_at := NULL; last_status := NULL; last_message := NULL;
        IF cron THEN
            EXECUTE 'SELECT j.active FROM cron.job j WHERE j.jobid = $1' INTO active USING d.cron_jobid;
            EXECUTE 'SELECT r.start_time, r.status, r.return_message FROM cron.job_run_details r
                      WHERE r.jobid = $1 ORDER BY r.start_time DESC NULLS LAST LIMIT 1'
               INTO last_run_at, last_status, last_message USING d.cron_jobid;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION jobq._schedule_rows(regrole) IS
    'Internal (jobq.schedules): the schedules caller may see (its own; all for jobq_admin) with pg_cron''s state and last run';

CREATE FUNCTION jobq.schedule(name text, schedule text, queue text, payload jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_schedule';
COMMENT ON FUNCTION jobq.schedule(text, text, text, jsonb) IS
    'jobq: creates (or replaces) the calling role''s recurring submission name: pg_cron runs SELECT jobq.submit(queue, payload) on schedule (cron syntax) as that role; returns the pg_cron job id';

CREATE FUNCTION jobq.unschedule(name text) RETURNS boolean
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_unschedule';
COMMENT ON FUNCTION jobq.unschedule(text) IS
    'jobq: removes the calling role''s schedule name and its pg_cron job; false when it has none of that name';

CREATE FUNCTION jobq._schedules(
    OUT name text, OUT owner regrole, OUT schedule text, OUT queue text, OUT payload jsonb,
    OUT active boolean, OUT created_at timestamptz, OUT updated_at timestamptz,
    OUT last_run_at timestamptz, OUT last_status text, OUT last_message text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_schedules';
COMMENT ON FUNCTION jobq._schedules() IS
    'Internal: jobq._schedule_rows for the calling role (behind jobq.schedules)';

CREATE VIEW jobq.schedules AS SELECT * FROM jobq._schedules();
COMMENT ON VIEW jobq.schedules IS
    'jobq: the calling role''s schedules (all of them for jobq_admin): cron schedule, queue, payload, whether pg_cron has the job active, its last run (start, status, message)';

REVOKE ALL ON jobq.schedule_defs FROM PUBLIC;
REVOKE ALL ON FUNCTION jobq._cron_ready(), jobq._schedule(text, text, text, jsonb, regrole),
    jobq._unschedule(text, regrole), jobq._schedule_rows(regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobq.schedule(text, text, text, jsonb), jobq.unschedule(text),
    jobq._schedules() TO PUBLIC;
GRANT SELECT ON jobq.schedules TO PUBLIC;
