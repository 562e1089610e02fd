-- jobq install script, part 10: the roles jobq's privileges are granted to.
--
-- Roles are cluster-wide and outlive the extension (DROP EXTENSION does not
-- drop them), and several databases of one cluster may install jobq: create
-- each only when absent.  NOLOGIN: they are groups, granted to real roles.
--   jobq_admin   manages queues, policies, rules and the dead letter queue,
--                sees and cancels every job
--   jobq_worker  may claim/heartbeat/complete/fail jobs as an external worker
--   jobq_http    may submit HTTP jobs (jobs of http queues); jobq_admin may too
-- Submitters need no role: GRANT USAGE ON SCHEMA jobq TO them (see
-- docs/api.md "Privileges").

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) 'jobq_admin') THEN
        CREATE ROLE jobq_admin NOLOGIN;
        COMMENT ON ROLE jobq_admin IS
            'jobq: manages queues, retry policies, error rules and the dead letter queue; sees and cancels every job';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) 'jobq_worker') THEN
        CREATE ROLE jobq_worker NOLOGIN;
        COMMENT ON ROLE jobq_worker IS
            'jobq: external workers: may claim, heartbeat, complete and fail jobs';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                   WHERE rolname OPERATOR(pg_catalog.=) 'jobq_http') THEN
        CREATE ROLE jobq_http NOLOGIN;
        COMMENT ON ROLE jobq_http IS
            'jobq: may submit HTTP jobs (to hosts jobq.http_allowed_hosts allows)';
    END IF;
END
$roles$;
