-- Foundation: schema, settings and their defaults.
BEGIN;
SELECT plan(13);

SELECT has_schema('jobq');
SELECT has_extension('jobq');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'jobq'), '0.2.0', 'version 0.2.0');
SELECT is(current_setting('jobq.database'), '', 'jobq.database defaults to every database');
SELECT is(current_setting('jobq.workers'), '2', 'jobq.workers default');
SELECT is(current_setting('jobq.shutdown_grace'), '10s', 'jobq.shutdown_grace default');
SELECT is(current_setting('jobq.cleanup_interval'), '1min', 'jobq.cleanup_interval default');
SELECT is(current_setting('jobq.alert_interval'), '30s', 'jobq.alert_interval default');
SELECT is(current_setting('jobq.http_allowed_hosts'), '*', 'jobq.http_allowed_hosts default');
SELECT is((SELECT boot_val FROM pg_settings WHERE name = 'jobq.allow_superuser_jobs'), 'off', 'jobq.allow_superuser_jobs default');
SELECT is(current_setting('jobq.vacuum_after'), '10000', 'jobq.vacuum_after default');
SELECT is((SELECT context FROM pg_settings WHERE name = 'jobq.max_total_workers'), 'postmaster',
          'slot count is fixed at server start');
-- but jobq.direct_access: a developer setting (superuser only) that the
-- differential test sets per database; both of its values give the same
-- rows; and jobq.log_events, like log_statement (superuser only): the
-- lifecycle log of one session or database
SELECT is((SELECT string_agg(name, ',' ORDER BY name) FROM pg_settings WHERE name LIKE 'jobq.%' AND context IN ('user', 'superuser')),
          'jobq.direct_access,jobq.log_events', 'no jobq setting but jobq.direct_access and jobq.log_events can be changed per session');

SELECT * FROM finish();
ROLLBACK;
