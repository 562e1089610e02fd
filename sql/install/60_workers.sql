-- jobq install script, part 60: the worker processes, read from shared memory.

CREATE FUNCTION jobq._live_executor_tokens() RETURNS bigint[]
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'jobq_live_executor_tokens';
COMMENT ON FUNCTION jobq._live_executor_tokens() IS
    'Internal: the tokens of this database''s running executors (a running job whose claimed_by is not among them is lost)';
REVOKE ALL ON FUNCTION jobq._live_executor_tokens() FROM PUBLIC;
