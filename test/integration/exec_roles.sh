#!/usr/bin/env bash
# Jobs run as their owner, re-checked at run time: a dropped role, a role
# that lost EXECUTE on the handler, and (with jobq.allow_superuser_jobs off)
# a superuser owner each fail the job cleanly (class permanent), and the
# executor keeps running.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN;
GRANT USAGE ON SCHEMA jobq TO bob, carol;
CREATE FUNCTION public.h(p jsonb) RETURNS text LANGUAGE sql AS 'SELECT current_user::text';
SELECT jobq.create_queue('q', handler => 'public.h(jsonb)', max_attempts => 3);
SELECT jobq.pause_queue('q');
"
bob=$(psql -X -Atq -U bob -d postgres -c "SELECT jobq.submit('q')")
carol=$(psql -X -Atq -U carol -d postgres -c "SELECT jobq.submit('q')")
root=$(q "SELECT jobq.submit('q')")
q "DROP OWNED BY bob; DROP ROLE bob"
q "REVOKE EXECUTE ON FUNCTION public.h(jsonb) FROM PUBLIC"
q "ALTER SYSTEM SET jobq.allow_superuser_jobs = off"
q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "SELECT jobq.resume_queue('q')"
q "SELECT jobq.submit('q')" >/dev/null   # wake
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($bob, $carol, $root) AND state = 'failed'" 3 15 || it_fail "jobs not failed"
assert_eq "$(q "SELECT error_type || ': ' || last_error FROM jobq.jobs WHERE id = $bob")" \
    "permanent: the job's owner role (oid $(q "SELECT owner::oid FROM jobq.dead_letter WHERE job_id = $bob")) no longer exists" "dropped owner: permanent failure"
assert_eq "$(q "SELECT error_type || ': ' || last_error FROM jobq.jobs WHERE id = $carol")" \
    'permanent: role "carol" may not execute the handler public.h(jsonb)' "owner without EXECUTE: permanent failure"
assert_eq "$(q "SELECT error_type || ': ' || last_error FROM jobq.jobs WHERE id = $root")" \
    'permanent: jobs owned by superuser "postgres" may not run: jobq.allow_superuser_jobs is off' "superuser job refused"
assert_eq "$(q "SELECT attempt FROM jobq.jobs WHERE id = $carol")" 1 "not retried"
q "ALTER SYSTEM RESET jobq.allow_superuser_jobs"
q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
id=$(q "SELECT jobq.submit('q')")
wait_for "SELECT state || ' ' || result::text FROM jobq.jobs WHERE id = $id" 'completed "postgres"' 10 || it_fail "executor not alive"
it_ok "executor still serves jobs"
