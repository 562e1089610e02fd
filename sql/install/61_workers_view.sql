-- jobq install script, part 61: the view of the worker processes, read
-- from shared memory (monitor.c).

CREATE FUNCTION jobq._workers(
    OUT pid integer, OUT database text, OUT kind text, OUT state text,
    OUT job_id bigint, OUT since timestamptz, OUT jobs_done bigint,
    OUT last_error text, OUT claims bigint, OUT progress double precision,
    OUT progress_note text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_worker_slots';
COMMENT ON FUNCTION jobq._workers() IS
    'Internal: jobq''s launcher and executor slots from shared memory (behind the view jobq.workers).';

CREATE VIEW jobq.workers AS
    SELECT w.pid, w.database, w.kind, w.state, w.job_id, w.since,
           w.jobs_done, w.last_error, w.claims, w.progress, w.progress_note
      FROM jobq._workers() w;
COMMENT ON VIEW jobq.workers IS
    'jobq: the launcher and every executor (all databases): pid, database, kind (launcher | executor | probe), state (idle | running | ...), job_id being run, since (state change), jobs_done, last_error, claims (claim statements run: one per queue looked at; their rate is the cost of looking for work), progress and progress_note of the running job (jobq.report_progress, live)';
GRANT SELECT ON jobq.workers TO PUBLIC;
