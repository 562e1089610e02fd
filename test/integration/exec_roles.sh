#!/usr/bin/env bash
# Jobs run as their owner, re-checked at run time: a dropped role, a role
# that lost EXECUTE on the handler, and (jobq.allow_superuser_jobs off, the
# default) an owner made superuser after submitting each fail the job
# cleanly (class permanent), and the executor keeps running.  A superuser's
# submit to an sql queue is refused at once (42501).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms" "jobq.allow_superuser_jobs = off"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN; CREATE ROLE dave LOGIN;
GRANT USAGE ON SCHEMA jobq TO bob, carol, dave;
CREATE FUNCTION public.h(p jsonb) RETURNS text LANGUAGE sql AS 'SELECT current_user::text';
SELECT jobq.create_queue('q', handler => 'public.h(jsonb)', max_attempts => 3);
SELECT jobq.pause_queue('q');
"
bob=$(psql -X -Atq -U bob -d postgres -c "SELECT jobq.submit('q')")
carol=$(psql -X -Atq -U carol -d postgres -c "SELECT jobq.submit('q')")
root=$(psql -X -Atq -U dave -d postgres -c "SELECT jobq.submit('q')")
err=$(psql -X -Atq -d postgres -v VERBOSITY=verbose -c "SELECT jobq.submit('q')" 2>&1 || true)
case "$err" in
    *"ERROR:  42501: superuser \"postgres\" may not submit to sql queue \"q\""*) it_ok "a superuser's submit is refused (42501)" ;;
    *) it_fail "superuser submit not refused: $err" ;;
esac
q "DROP OWNED BY bob; DROP ROLE bob"
q "REVOKE EXECUTE ON FUNCTION public.h(jsonb) FROM PUBLIC"
q "GRANT EXECUTE ON FUNCTION public.h(jsonb) TO dave"
q "ALTER ROLE dave SUPERUSER"
q "SELECT jobq.resume_queue('q')"
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($bob, $carol, $root) AND state = 'failed'" 3 15 || it_fail "jobs not failed"
assert_eq "$(q "SELECT error_type || ': ' || last_error FROM jobq.jobs WHERE id = $bob")" \
    "permanent: the job's owner role (oid $(q "SELECT owner::oid FROM jobq.dead_letter WHERE job_id = $bob")) no longer exists" "dropped owner: permanent failure"
assert_eq "$(q "SELECT error_type || ': ' || last_error FROM jobq.jobs WHERE id = $carol")" \
    'permanent: role "carol" may not execute the handler public.h(jsonb)' "owner without EXECUTE: permanent failure"
assert_eq "$(q "SELECT error_type || ': ' || last_error FROM jobq.jobs WHERE id = $root")" \
    'permanent: jobs owned by superuser "dave" may not run: jobq.allow_superuser_jobs is off' "a job whose owner became superuser fails"
assert_eq "$(q "SELECT attempt FROM jobq.jobs WHERE id = $carol")" 1 "not retried"
q "ALTER ROLE dave NOSUPERUSER"
id=$(psql -X -Atq -U dave -d postgres -c "SELECT jobq.submit('q')")
wait_for "SELECT state || ' ' || result::text FROM jobq.jobs WHERE id = $id" 'completed "dave"' 10 || it_fail "executor not alive"
it_ok "executor still serves jobs"
