-- Core queue objects: tables, partitions, indexes, functions, roles, the
-- built-in http queue, rules and policies, and the hygiene rules of the
-- install script (pinned search_path, no DML for PUBLIC, pg_dump config).
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(65);

SELECT has_table('jobq', 'queues', 'table jobq.queues');
SELECT has_table('jobq', 'jobs', 'table jobq.jobs');
SELECT has_table('jobq', 'jobs_active', 'partition jobq.jobs_active');
SELECT has_table('jobq', 'jobs_final', 'partition jobq.jobs_final');
SELECT has_table('jobq', 'job_attempts', 'table jobq.job_attempts');
SELECT has_table('jobq', 'dead_letter', 'table jobq.dead_letter');
SELECT has_table('jobq', 'error_rules', 'table jobq.error_rules');
SELECT has_table('jobq', 'retry_policies', 'table jobq.retry_policies');

SELECT is((SELECT c.relkind::text FROM pg_class c WHERE c.oid = 'jobq.jobs'::regclass), 'p',
          'jobq.jobs is partitioned');
SELECT is((SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.oid = 'jobq.jobs_active'::regclass),
          'FOR VALUES IN (''pending'', ''running'')', 'jobs_active holds pending and running');
SELECT is((SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.oid = 'jobq.jobs_final'::regclass),
          'FOR VALUES IN (''completed'', ''failed'', ''cancelled'')', 'jobs_final holds the final states');

SELECT columns_are('jobq', 'jobs', ARRAY['id', 'queue', 'payload', 'state', 'priority', 'run_at',
    'attempt', 'max_attempts', 'unique_key', 'unique_owner', 'timeout', 'owner', 'handler', 'created_at', 'started_at',
    'completed_at', 'last_heartbeat', 'lease_expires_at', 'worker', 'claimed_by', 'snoozes',
    'error_type', 'last_error', 'result', 'progress', 'progress_note', 'batch_id'], 'jobq.jobs has the API columns and the lease columns');
SELECT col_type_is('jobq', 'jobs', 'owner', 'regrole', 'jobs.owner is a regrole');
SELECT col_not_null('jobq', 'jobs', 'run_at', 'run_at is never NULL');
SELECT col_is_null('jobq', 'jobs', 'max_attempts', 'max_attempts may be NULL (queue''s)');
SELECT col_type_is('jobq', 'queues', 'handler', 'text', 'queues.handler is text, not regprocedure');
SELECT columns_are('jobq', 'job_attempts', ARRAY['job_id', 'attempt', 'queue', 'owner', 'started_at',
    'finished_at', 'outcome', 'error_class', 'error', 'sqlstate', 'http_status', 'worker', 'detail'],
    'jobq.job_attempts columns');
SELECT columns_are('jobq', 'dead_letter', ARRAY['id', 'job_id', 'queue', 'payload', 'owner', 'handler', 'priority',
    'max_attempts', 'timeout', 'error_class', 'last_error', 'attempts', 'history', 'failed_at',
    'resolved_at', 'resolution_note', 'requeued_job_id'], 'jobq.dead_letter columns');
SELECT columns_are('jobq', 'retry_policies', ARRAY['queue', 'error_class', 'retry', 'backoff',
    'base_delay', 'max_delay', 'builtin', 'delays'], 'jobq.retry_policies columns');

SELECT col_is_pk('jobq', 'jobs_active', 'id', 'jobs_active primary key on id');
SELECT col_is_pk('jobq', 'jobs_final', 'id', 'jobs_final primary key on id');
SELECT is((SELECT pg_get_indexdef('jobq.jobs_active_claim_idx'::regclass)),
          'CREATE INDEX jobs_active_claim_idx ON jobq.jobs_active USING btree (queue, priority DESC, run_at, id) WITH (deduplicate_items=off) WHERE (state = ''pending''::text)',
          'claim index: queue, priority DESC, run_at, id over pending jobs');
SELECT is((SELECT pg_get_indexdef('jobq.jobs_active_unique_key_idx'::regclass)),
          'CREATE UNIQUE INDEX jobs_active_unique_key_idx ON jobq.jobs_active USING btree (queue, unique_key, unique_owner) WHERE (unique_key IS NOT NULL)',
          'unique_key is unique per queue and key space (owner, or the whole queue) among active jobs only');
SELECT has_index('jobq', 'jobs_active', 'jobs_active_running_idx', 'index of running jobs per queue');
SELECT has_index('jobq', 'jobs_active', 'jobs_active_lease_idx', 'index of running jobs by lease end');
SELECT ok((SELECT c.reloptions @> ARRAY['autovacuum_vacuum_scale_factor=0.01']
             FROM pg_class c WHERE c.oid = 'jobq.jobs_active'::regclass),
          'jobs_active is vacuumed aggressively');

SELECT has_function('jobq', f, f) FROM unnest(ARRAY['create_queue', 'alter_queue', 'pause_queue',
    'resume_queue', 'drop_queue', 'submit', 'submit_batch', 'submit_http', 'cancel', 'retry_now',
    'claim', 'heartbeat', 'complete', 'fail', 'retry_later', 'rate_limited', 'give_up',
    'requeue_dead', 'resolve_dead', 'backoff_delay', '_claim', '_finalize', '_fail', '_release',
    '_recover_lost']) f;

SELECT ok(EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobq_admin' AND NOT rolcanlogin), 'role jobq_admin (NOLOGIN)');
SELECT ok(EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobq_worker' AND NOT rolcanlogin), 'role jobq_worker (NOLOGIN)');

SELECT results_eq($$SELECT name, kind FROM jobq.queues WHERE name = 'http'$$,
                  $$VALUES ('http'::text, 'http'::text)$$, 'queue http of kind http exists after install');

-- Hygiene of the install script.
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
     WHERE p.pronamespace = 'jobq'::regnamespace AND p.prosecdef
       AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)$$,
    'every SECURITY DEFINER function pins search_path = pg_catalog, pg_temp');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
      JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = 'jobq'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
       AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)$$,
    'every SQL and PL/pgSQL function of jobq pins search_path (operators cannot be hijacked)');
SELECT is_empty($$
    SELECT c.relname || ' ' || a.privilege_type FROM pg_class c
     CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
     WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind IN ('r', 'p', 'S')
       AND a.grantee IN (0, 'jobq_worker'::regrole)
       AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'USAGE')$$,
    'no INSERT/UPDATE/DELETE/TRUNCATE on any jobq table for PUBLIC or jobq_worker');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
     CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
     WHERE c.oid IN ('jobq.jobs_active'::regclass, 'jobq.jobs_final'::regclass)
       AND a.grantee = 0$$,
    'PUBLIC cannot read the partitions directly (they bypass the parent''s RLS)');
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'jobq.jobs'::regclass), 'RLS on jobq.jobs');
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'jobq.dead_letter'::regclass), 'RLS on jobq.dead_letter');
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'jobq.job_attempts'::regclass), 'RLS on jobq.job_attempts');

SELECT set_eq($$SELECT c.relname::text FROM pg_extension e, unnest(e.extconfig) x(oid)
                  JOIN pg_class c ON c.oid = x.oid WHERE e.extname = 'jobq'$$,
              ARRAY['queues', 'jobs_active', 'jobs_final', 'dead_letter', 'error_rules',
                    'retry_policies', 'jobs_id_seq', 'dead_letter_id_seq', 'error_rules_id_seq',
                    'alert_config', 'alert_config_id_seq', 'job_batches', 'job_batches_id_seq'],
              'pg_dump keeps queues, jobs, dead letters, batches, user rules, policies and alert rules, and the sequences');
SELECT results_eq($$SELECT error_class, retry FROM jobq.retry_policies WHERE queue = '*' ORDER BY error_class$$,
    $$VALUES ('api_error', false), ('breaker_open', false), ('cancelled', false), ('permanent', false), ('rate_limited', true),
             ('timeout', true), ('transient', true), ('unknown', true), ('validation', false),
             ('worker_lost', true)$$,
    'default retry policies: transient, timeout, rate_limited, unknown, worker_lost retry');
SELECT is((SELECT backoff FROM jobq.retry_policies WHERE queue = '*' AND error_class = 'timeout'), 'linear',
          'timeouts back off linearly');
SELECT is((SELECT backoff FROM jobq.retry_policies WHERE queue = '*' AND error_class = 'rate_limited'), 'aggressive',
          'rate_limited backs off aggressively');

SELECT * FROM finish();
ROLLBACK;
