#!/usr/bin/env bash
# jobq.workers shows a running job's id and an executor's last error only
# to the job's owner, jobq_admin and superusers: another role sees that the
# executor is busy, not with whose job, and not the error text.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE adm LOGIN IN ROLE jobq_admin;
GRANT USAGE ON SCHEMA jobq TO alice, bob, adm;
CREATE FUNCTION public.h(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    IF p ? 'fail' THEN PERFORM jobq.give_up(p->>'fail'); END IF;
    PERFORM pg_sleep((p->>'sleep')::float8);
END \$\$;
SELECT jobq.create_queue('q', handler => 'public.h(jsonb)', max_attempts => 1);
"
as() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$1" -d postgres -c "$2"; }

bad=$(as bob "SELECT jobq.submit('q', '{\"fail\": \"bob-secret-9f3\", \"sleep\": 0}')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $bad" failed 30 || it_fail "bob's job did not fail"
wait_for "SELECT last_error FROM jobq.workers WHERE kind = 'executor'" bob-secret-9f3 30 || it_fail "no last_error"
assert_eq "$(as bob "SELECT last_error FROM jobq.workers WHERE kind = 'executor'")" bob-secret-9f3 "the owner sees his job's error"
assert_eq "$(as adm "SELECT last_error FROM jobq.workers WHERE kind = 'executor'")" bob-secret-9f3 "jobq_admin sees it"
assert_eq "$(as alice "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND last_error IS NULL")" 1 \
    "another role does not see the error text"

run=$(as alice "SELECT jobq.submit('q', '{\"sleep\": 600}')")
wait_for "SELECT job_id FROM jobq.workers WHERE kind = 'executor'" "$run" 30 || it_fail "job not running"
assert_eq "$(as alice "SELECT job_id FROM jobq.workers WHERE kind = 'executor'")" "$run" "the owner sees her running job"
assert_eq "$(as adm "SELECT job_id FROM jobq.workers WHERE kind = 'executor'")" "$run" "jobq_admin sees it"
assert_eq "$(as bob "SELECT state || ' ' || coalesce(job_id::text, 'hidden') FROM jobq.workers WHERE kind = 'executor'")" \
    "running hidden" "another role sees a busy executor, not the job"
as alice "SELECT jobq.cancel($run)" >/dev/null
wait_for "SELECT state FROM jobq.workers WHERE kind = 'executor'" idle 30 || it_fail "executor did not go idle"
it_ok "cancelled"
