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
