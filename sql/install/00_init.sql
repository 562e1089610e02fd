-- jobq install script, part 00: the schema and the hook into the launcher.
-- Every name is schema-qualified: the script runs with the installer's
-- search_path (pg_cron 1.4.2, pgspot PS001/PS016).

COMMENT ON SCHEMA jobq IS 'jobq: background job queue run by in-server workers';

CREATE FUNCTION jobq._activate_database() RETURNS void
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'jobq_activate_database';
COMMENT ON FUNCTION jobq._activate_database() IS
    'Internal: tells the jobq launcher, at commit, that this database has jobq.';
REVOKE ALL ON FUNCTION jobq._activate_database() FROM PUBLIC;

CREATE FUNCTION jobq._wake_at_commit() RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_wake_at_commit';
COMMENT ON FUNCTION jobq._wake_at_commit() IS
    'Internal: wakes an idle executor of this database when the transaction commits';
REVOKE ALL ON FUNCTION jobq._wake_at_commit() FROM PUBLIC;

CREATE FUNCTION jobq._claim_floor_note(queue text, priority integer,
                                       run_at timestamptz, id bigint) RETURNS void
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_claim_floor_note';
COMMENT ON FUNCTION jobq._claim_floor_note(text, integer, timestamptz, bigint) IS
    'Internal: a pending job with this claim-order key was just written; claims of the queue must not start past it (src/claim_floor.c)';
REVOKE ALL ON FUNCTION jobq._claim_floor_note(text, integer, timestamptz, bigint) FROM PUBLIC;

CREATE FUNCTION jobq._claim_floor(queue text, OUT priority integer,
                                  OUT run_at timestamptz, OUT id bigint)
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'jobq_claim_floor';
COMMENT ON FUNCTION jobq._claim_floor(text) IS
    'Internal (tests, diagnosis): the claim-order key where the next claim of queue starts in this database; NULLs: at the front of the queue';
REVOKE ALL ON FUNCTION jobq._claim_floor(text) FROM PUBLIC;
