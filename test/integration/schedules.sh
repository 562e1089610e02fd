#!/usr/bin/env bash
# jobq.schedule / jobq.unschedule / jobq.schedules through a real pg_cron
# (1.4: minute resolution, so one run takes up to a minute): a schedule
# submits as the role that made it, and the job runs as that role; a role
# sees and removes only its own; clear errors without pg_cron in the
# database, and without pg_cron in shared_preload_libraries.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "cron.use_background_workers = on"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
GRANT USAGE ON SCHEMA jobq TO alice, bob;
CREATE TABLE public.ticks (who text, n int);
GRANT INSERT ON public.ticks TO alice;
CREATE FUNCTION public.tick(p jsonb) RETURNS void LANGUAGE sql
    AS 'INSERT INTO public.ticks VALUES (current_user, (p->>''n'')::int)';
GRANT EXECUTE ON FUNCTION public.tick(jsonb) TO alice;
SELECT jobq.create_queue('tick', handler => 'public.tick(jsonb)');
" >/dev/null
as() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$1" -d postgres -c "$2"; }

# Without the pg_cron extension in this database: 55000, and what to do.
err=$(as alice "SELECT jobq.schedule('s1', '* * * * *', 'tick')" 2>&1) && it_fail "scheduled without pg_cron"
echo "$err" | grep -q "jobq schedules need the pg_cron extension" || it_fail "unexpected: $err"
q "CREATE DATABASE other"
q "CREATE EXTENSION jobq" other
err=$(q "SELECT jobq.schedule('s1', '* * * * *', 'http')" other 2>&1) && it_fail "scheduled in a database without pg_cron"
echo "$err" | grep -q "cron.database_name (postgres); this is other" || it_fail "unexpected: $err"
it_ok "without pg_cron in the database: 55000 naming cron.database_name"

q "CREATE EXTENSION pg_cron"
# bad input
err=$(as alice "SELECT jobq.schedule('', '* * * * *', 'tick')" 2>&1) && it_fail "empty name accepted"
echo "$err" | grep -q "invalid schedule name" || it_fail "unexpected: $err"
err=$(as alice "SELECT jobq.schedule('s1', '* * * * *', 'nope')" 2>&1) && it_fail "unknown queue accepted"
echo "$err" | grep -q 'queue "nope" does not exist' || it_fail "unexpected: $err"
err=$(as alice "SELECT jobq.schedule('s1', 'every now and then', 'tick')" 2>&1) && it_fail "bad cron expression accepted"
it_ok "bad name, unknown queue and bad cron expression refused"

# alice's schedule: replaced in place, seen by alice only
jobid=$(as alice "SELECT jobq.schedule('tick-every-minute', '* * * * *', 'tick', '{\"n\": 1}')")
again=$(as alice "SELECT jobq.schedule('tick-every-minute', '* * * * *', 'tick', '{\"n\": 2}')")
assert_eq "$again" "$jobid" "the same pg_cron job, replaced"
assert_eq "$(as alice "SELECT name || ' ' || owner || ' ' || queue || ' ' || payload || ' ' || active FROM jobq.schedules")" \
    'tick-every-minute alice tick {"n": 2} true' "alice sees her schedule"
assert_eq "$(q "SELECT username || ' ' || database FROM cron.job WHERE jobid = $jobid")" "alice postgres" "pg_cron runs it as alice, here"
assert_eq "$(as bob "SELECT count(*) FROM jobq.schedules")" 0 "bob sees none of alice's"
assert_eq "$(as bob "SELECT jobq.unschedule('tick-every-minute')")" f "bob cannot remove alice's"
it_ok "a schedule belongs to its role"

# it fires within its minute: submitted as alice, run as alice
wait_for "SELECT count(*) > 0 FROM public.ticks" t 130 \
    || { q "SELECT * FROM cron.job_run_details" >&2; it_fail "the schedule did not submit a job that ran"; }
assert_eq "$(q "SELECT DISTINCT owner::text || ' ' || state FROM jobq.jobs WHERE queue = 'tick'")" "alice completed" "submitted as alice"
assert_eq "$(q "SELECT DISTINCT who || ' ' || n FROM public.ticks")" "alice 2" "run as alice, with the payload"
wait_for "SELECT last_status FROM jobq.schedules" succeeded 30 || it_fail "last run not shown"
it_ok "the schedule submitted as its role, the job ran as that role"

assert_eq "$(as alice "SELECT jobq.unschedule('tick-every-minute')")" t "removed"
assert_eq "$(q "SELECT count(*) FROM cron.job")" 0 "its pg_cron job is gone"
assert_eq "$(q "SELECT count(*) FROM jobq.schedules")" 0 "and the schedule"
it_ok "unschedule removes the schedule and its pg_cron job"

# pg_cron installed in the database but not preloaded (after a restart
# without it): 55000, and the hint says what to do
echo "shared_preload_libraries = 'jobq'" >> "$IT_DIR/data/jobq_test.conf"
cluster_stop "$IT_DIR"
cluster_start "$IT_DIR"
err=$(q "SELECT jobq.schedule('s9', '* * * * *', 'tick')" 2>&1) && it_fail "scheduled without pg_cron loaded"
echo "$err" | grep -q "jobq schedules need pg_cron, which is not loaded" || it_fail "unexpected: $err"
echo "$err" | grep -q "HINT:  Add pg_cron to shared_preload_libraries" || it_fail "no hint: $err"
it_ok "pg_cron not in shared_preload_libraries: 55000 with a hint"
