-- jobq install script, part 55: privileges, row level security, pg_dump.
--
-- The tables are the trust boundary (ARCHITECTURE-AND-STYLE §3 item 1):
-- nobody but the extension owner writes them (PUBLIC and jobq_worker get no
-- INSERT/UPDATE/DELETE anywhere; jobq_admin only on error_rules and
-- retry_policies).  Every write goes through the C entry points or a
-- SECURITY DEFINER function with a pinned search_path.
--
-- Submitters: GRANT USAGE ON SCHEMA jobq TO role.  The role may then submit
-- to any queue whose handler it may EXECUTE (checked in C at submit) and to
-- external and http queues, and sees and cancels its own jobs (RLS below).

GRANT USAGE ON SCHEMA jobq TO jobq_admin, jobq_worker, jobq_http;

-- Functions: nothing for PUBLIC unless granted below.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobq FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    jobq.submit(text, jsonb, timestamptz, integer, text, integer, interval, bigint),
    jobq.submit_batch(text, jsonb, timestamptz, integer, text, integer, interval, bigint, text, jsonb),
    jobq.submit_http(text, text, jsonb, text, text, timestamptz, integer, text, integer, interval, integer),
    jobq.cancel(bigint),
    jobq.retry_now(bigint),
    jobq.retry_later(text, interval),
    jobq.rate_limited(text, interval),
    jobq.give_up(text),
    jobq.backoff_delay(text, interval, interval, double precision, integer, interval[]),
    jobq.classify_error(text, integer, text),
    -- pure helpers the functions above call with the caller's privileges
    jobq._check_after(interval),
    jobq._retry_after_detail(interval),
    jobq._retry_after_from_detail(text),
    jobq._backoff_strategies(),
    jobq._delays_valid(interval[]),
    jobq._error_classes()
    TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    jobq.claim(text, integer, interval, text),
    jobq.heartbeat(bigint, integer, interval, double precision, text),
    jobq.complete(bigint, integer, jsonb),
    jobq.fail(bigint, integer, text, text, interval, text, integer)
    TO jobq_worker, jobq_admin;

GRANT EXECUTE ON FUNCTION
    jobq.create_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text, text, interval[], text),
    jobq.alter_queue(text, regprocedure, text, integer, integer, text, interval, interval, double precision, interval, interval, double precision, interval, text, text[], text, interval[], text),
    jobq.pause_queue(text),
    jobq.resume_queue(text),
    jobq.drop_queue(text, boolean),
    jobq.requeue_dead(bigint),
    jobq.resolve_dead(bigint, text)
    TO jobq_admin;

-- Tables: read access; jobs, attempts and dead letters filtered by RLS.
REVOKE ALL ON ALL TABLES IN SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobq FROM PUBLIC;
GRANT SELECT ON jobq.jobs, jobq.job_attempts, jobq.dead_letter, jobq.queues,
                jobq.error_rules, jobq.retry_policies
    TO PUBLIC;
-- The partitions bypass the parent's policies: only jobq_admin reads them.
GRANT SELECT ON jobq.jobs_active, jobq.jobs_final TO jobq_admin;
GRANT INSERT, UPDATE, DELETE ON jobq.error_rules, jobq.retry_policies TO jobq_admin;
GRANT USAGE ON SEQUENCE jobq.error_rules_id_seq TO jobq_admin;

-- A role sees its own jobs; jobq_admin (and superusers) see all.  The role
-- lookup is an uncorrelated subquery: evaluated once per query, not per row.
ALTER TABLE jobq.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_owner_or_admin ON jobq.jobs FOR SELECT
    USING (owner::pg_catalog.oid OPERATOR(pg_catalog.=)
               (SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
           OR pg_catalog.pg_has_role('jobq_admin', 'USAGE'));
COMMENT ON POLICY jobs_owner_or_admin ON jobq.jobs IS
    'jobq: a role sees the jobs it submitted; jobq_admin sees all';

ALTER TABLE jobq.job_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_attempts_owner_or_admin ON jobq.job_attempts FOR SELECT
    USING (owner::pg_catalog.oid OPERATOR(pg_catalog.=)
               (SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
           OR pg_catalog.pg_has_role('jobq_admin', 'USAGE'));
COMMENT ON POLICY job_attempts_owner_or_admin ON jobq.job_attempts IS
    'jobq: a role sees the attempts of the jobs it submitted; jobq_admin sees all';

ALTER TABLE jobq.dead_letter ENABLE ROW LEVEL SECURITY;
CREATE POLICY dead_letter_owner_or_admin ON jobq.dead_letter FOR SELECT
    USING (owner::pg_catalog.oid OPERATOR(pg_catalog.=)
               (SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
           OR pg_catalog.pg_has_role('jobq_admin', 'USAGE'));
COMMENT ON POLICY dead_letter_owner_or_admin ON jobq.dead_letter IS
    'jobq: a role sees the dead letters of the jobs it submitted; jobq_admin sees all';

-- pg_dump keeps queues, jobs, dead letters and the rules and policies users
-- added; built-in rows come back with CREATE EXTENSION.  Attempt history is
-- not dumped (dead letters carry their own copy).
SELECT pg_catalog.pg_extension_config_dump('jobq.queues', $$WHERE name OPERATOR(pg_catalog.<>) 'http'$$);
SELECT pg_catalog.pg_extension_config_dump('jobq.jobs_active', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.jobs_final', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.dead_letter', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.error_rules', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('jobq.retry_policies', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('jobq.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.dead_letter_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.error_rules_id_seq', '');
