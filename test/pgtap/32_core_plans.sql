-- Plans of the per-job statements stay index lookups whatever the
-- statistics say.  Statistics taken while no job runs make the partial
-- index of running jobs look empty; a by-id statement or the lease-expiry
-- probe that can use it then walks every running job (a claim took 1.6 ms
-- with 9,000 leased jobs).  The statements below have the shapes of those
-- in src/store_claim.c, src/worker_api.c and jobq._fail/_release/_recover_expired.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(6);

SELECT jobq.create_queue('tp_ext');
SELECT count(*) FROM jobq.submit_batch('tp_ext', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 3000)));
ANALYZE jobq.jobs_active;      -- nothing runs: the running-job indexes look empty
SELECT count(*) FROM jobq.claim('tp_ext', 2000, '1 hour');

CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; p text := '';
BEGIN
    FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP p := p || r || E'\n'; END LOOP;
    RETURN p;
END $$;
SET LOCAL plan_cache_mode = force_generic_plan;

PREPARE take(bigint, int) AS
    DELETE FROM jobq.jobs_active a WHERE a.id = $1 AND a.attempt = $2
       AND pg_catalog.texteq(a.state, 'running') RETURNING a;
SELECT matches(pg_temp.plan_of('EXECUTE take(1, 1)'), 'jobs_active_pkey',
               'completion by (id, attempt): primary key');
SELECT doesnt_match(pg_temp.plan_of('EXECUTE take(1, 1)'), 'jobs_active_running_idx',
                    'completion by (id, attempt): never a walk of the running jobs');

PREPARE fail_row(bigint, int) AS
    SELECT * FROM jobq.jobs_active a WHERE a.id = $1 AND a.attempt = $2
       AND pg_catalog.texteq(a.state, 'running') FOR UPDATE;
SELECT matches(pg_temp.plan_of('EXECUTE fail_row(1, 1)'), 'jobs_active_pkey',
               'fail/release/heartbeat by (id, attempt): primary key');

SELECT matches(pg_temp.plan_of($q$
    SELECT FROM jobq.jobs_active a
     WHERE pg_catalog.texteq(a.state, 'running') AND a.claimed_by IS NULL
       AND a.lease_expires_at < pg_catalog.now() LIMIT 1$q$),
    'jobs_active_lease_idx', 'expired-lease probe: the lease index');
SELECT doesnt_match(pg_temp.plan_of($q$
    SELECT FROM jobq.jobs_active a
     WHERE pg_catalog.texteq(a.state, 'running') AND a.claimed_by IS NULL
       AND a.lease_expires_at < pg_catalog.now() LIMIT 1$q$),
    'jobs_active_running_idx', 'expired-lease probe: never a walk of the running jobs');

-- and the probe finds nothing quickly with 2,000 live leases: no recovery
SELECT is(jobq._recover_expired(100), 0, 'no lease expired: nothing recovered');

SELECT * FROM finish();
ROLLBACK;
