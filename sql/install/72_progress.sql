-- jobq install script, part 72: live progress of running jobs.
--
-- A handler reports with jobq.report_progress (src/progress.c): at once in
-- shared memory (jobq.workers, jobq.job_progress, before the job commits)
-- and on the job row in the handler's transaction (kept when the job
-- ends; rolled back with a failed attempt's other writes).  External
-- workers report through jobq.heartbeat(..., progress, note).

CREATE FUNCTION jobq._job_progress(id bigint, attempt integer,
                                   progress double precision, note text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM jobq._check_progress(progress, note);
    UPDATE jobq.jobs_active a
       SET progress = _job_progress.progress, progress_note = note
     WHERE a.id = _job_progress.id AND a.attempt = _job_progress.attempt
       AND pg_catalog.texteq(a.state, 'running');
END
$fn$;
COMMENT ON FUNCTION jobq._job_progress(bigint, integer, double precision, text) IS
    'Internal (jobq.report_progress): validates a progress report and writes it on the running job (id, attempt)';
REVOKE ALL ON FUNCTION jobq._job_progress(bigint, integer, double precision, text) FROM PUBLIC;

CREATE FUNCTION jobq.report_progress(progress double precision, note text DEFAULT NULL)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_report_progress';
COMMENT ON FUNCTION jobq.report_progress(double precision, text) IS
    'jobq: from a running job''s handler: the fraction done (0 to 1) and a note (at most 200 characters), shown at once in jobq.job_progress and jobq.workers and kept on the job with its transaction';
GRANT EXECUTE ON FUNCTION jobq.report_progress(double precision, text) TO PUBLIC;

-- security_invoker: the caller's view of jobq.jobs (its own jobs; all for
-- jobq_admin); the live values come from the executors' shared memory,
-- which jobq._workers shows for the same jobs only.
CREATE VIEW jobq.job_progress WITH (security_invoker = true) AS
    SELECT j.id, j.queue, j.owner, j.attempt, j.started_at, j.worker,
           coalesce(w.progress, j.progress) AS progress,
           CASE WHEN w.progress IS NOT NULL THEN w.progress_note ELSE j.progress_note END AS progress_note,
           w.progress IS NOT NULL AS live
      FROM jobq.jobs j
      LEFT JOIN jobq._workers() w ON w.job_id = j.id AND w.kind = 'executor'
                                 AND w.database = pg_catalog.current_database()
     WHERE j.state = 'running';
COMMENT ON VIEW jobq.job_progress IS
    'jobq: running jobs and their progress (0 to 1) and note: live from the executor running it (live true), else as last recorded on the job (an external worker''s heartbeat, or not reported)';
GRANT SELECT ON jobq.job_progress TO PUBLIC;
