-- jobq install script, part 60: the worker processes, read from shared memory.

CREATE FUNCTION jobq._workers(
    OUT pid integer, OUT database text, OUT kind text, OUT state text,
    OUT job_id bigint, OUT since timestamptz, OUT jobs_done bigint,
    OUT last_error text, OUT claims bigint)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_worker_slots';
COMMENT ON FUNCTION jobq._workers() IS
    'Internal: jobq''s launcher and executor slots from shared memory (behind the view jobq.workers).';

CREATE FUNCTION jobq._live_executor_tokens() RETURNS bigint[]
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_live_executor_tokens';
COMMENT ON FUNCTION jobq._live_executor_tokens() IS
    'Internal: the tokens of this database''s running executors (a running job whose claimed_by is not among them is lost)';
REVOKE ALL ON FUNCTION jobq._live_executor_tokens() FROM PUBLIC;

CREATE VIEW jobq.workers AS
    SELECT w.pid, w.database, w.kind, w.state, w.job_id, w.since,
           w.jobs_done, w.last_error, w.claims
      FROM jobq._workers() w;
COMMENT ON VIEW jobq.workers IS
    'jobq: the launcher and every executor (all databases): pid, database, kind (launcher | executor | probe), state (idle | running | ...), job_id being run, since (state change), jobs_done, last_error, claims (claim statements run: one per queue looked at; their rate is the cost of looking for work)';
GRANT SELECT ON jobq.workers TO PUBLIC;
