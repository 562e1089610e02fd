#!/usr/bin/env bash
# A queue administrator cannot run its own code as a job's owner: a job runs
# the handler its queue had when the job was submitted (jobq.jobs.handler),
# whatever alter_queue sets later.  Every path is tried with a handler
# change made by adm (a jobq_admin member) after the job was submitted:
# a pending job, a scheduled job made due by retry_now, a dead letter
# requeued by adm, a superuser's job, a job submitted through pg_cron; a job
# whose own handler was dropped fails instead of running the queue's new
# one, and a job without a handler (submitted while the queue was external)
# never runs one.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms" \
    "jobq.allow_superuser_jobs = on" "cron.use_background_workers = on"
q "CREATE EXTENSION jobq"
q "CREATE EXTENSION pg_cron"
q "
CREATE ROLE alice LOGIN; CREATE ROLE adm LOGIN;
GRANT jobq_admin TO adm;
GRANT USAGE ON SCHEMA jobq TO alice, adm;
GRANT USAGE ON SCHEMA cron TO alice;
CREATE TABLE public.ran (who text, via text, payload jsonb);
GRANT INSERT ON public.ran TO PUBLIC;
CREATE FUNCTION public.h_ok(p jsonb) RETURNS text LANGUAGE sql
    AS \$\$ INSERT INTO public.ran VALUES (current_user, 'h_ok', p) RETURNING 'h_ok' \$\$;
CREATE FUNCTION public.h_fail(p jsonb) RETURNS text LANGUAGE plpgsql
    AS \$\$ BEGIN PERFORM jobq.give_up('always fails'); RETURN 'x'; END \$\$;
CREATE FUNCTION public.h_old(p jsonb) RETURNS text LANGUAGE sql AS \$\$ SELECT 'old' \$\$;
CREATE SCHEMA adm AUTHORIZATION adm;
SELECT jobq.create_queue('ops', handler => 'public.h_ok(jsonb)');
SELECT jobq.create_queue('ops2', handler => 'public.h_fail(jsonb)', max_attempts => 1);
SELECT jobq.create_queue('ops3', handler => 'public.h_old(jsonb)');
SELECT jobq.create_queue('ext', kind => 'external');
SELECT jobq.create_queue('cronq', handler => 'public.h_ok(jsonb)');
"
# adm's code: records who it runs as, and tries to make adm a superuser
psql -X -q -v ON_ERROR_STOP=1 -U adm -d postgres -c "
CREATE FUNCTION adm.evil(p jsonb) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
    INSERT INTO public.ran VALUES (current_user, 'evil', p);
    BEGIN EXECUTE 'ALTER ROLE adm SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
    RETURN 'evil';
END \$\$;"
as_adm() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U adm -d postgres -c "$1"; }
as_alice() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U alice -d postgres -c "$1"; }

# pg_cron 1.4 fires on minute boundaries: schedule first, check at the end
q "SELECT jobq.pause_queue('cronq')" >/dev/null
as_alice "SELECT cron.schedule('alice-submit', '* * * * *', \$\$SELECT jobq.submit('cronq', '{\"via\": \"cron\"}')\$\$)" >/dev/null
q "SELECT jobq.pause_queue('ops')" >/dev/null

# a pending job, a scheduled job, a superuser's job: all submitted to h_ok
pending=$(as_alice "SELECT jobq.submit('ops', '{\"n\": \"pending\"}')")
scheduled=$(as_alice "SELECT jobq.submit('ops', '{\"n\": \"scheduled\"}', run_at => now() + interval '1 hour')")
su_job=$(q "SELECT jobq.submit('ops', '{\"n\": \"superuser\"}')")
assert_eq "$(q "SELECT handler FROM jobq.jobs WHERE id = $pending")" "public.h_ok(jsonb)" "the job pins its queue's handler"

# a dead letter of alice's, failed under h_fail
dead=$(as_alice "SELECT jobq.submit('ops2', '{\"n\": \"dead\"}')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $dead" failed 30 || it_fail "ops2 job not dead"
assert_eq "$(q "SELECT handler FROM jobq.dead_letter WHERE job_id = $dead")" "public.h_fail(jsonb)" "the dead letter keeps the handler"

# adm takes over the queues' handlers
as_adm "SELECT jobq.alter_queue('ops', handler => 'adm.evil(jsonb)'::regprocedure)" >/dev/null
as_adm "SELECT jobq.alter_queue('ops2', handler => 'adm.evil(jsonb)'::regprocedure)" >/dev/null
requeued=$(as_adm "SELECT jobq.requeue_dead((SELECT id FROM jobq.dead_letter WHERE job_id = $dead))")
assert_eq "$(q "SELECT owner::text || ' ' || handler FROM jobq.jobs WHERE id = $requeued")" \
    "alice public.h_fail(jsonb)" "requeue_dead keeps the dead job's owner and handler"
as_adm "SELECT jobq.retry_now($scheduled)" >/dev/null
q "SELECT jobq.resume_queue('ops')" >/dev/null

wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($pending, $scheduled, $su_job) AND state = 'completed'" 3 30 \
    || it_fail "pinned jobs did not complete"
assert_eq "$(q "SELECT string_agg(result #>> '{}', ',' ORDER BY id) FROM jobq.jobs WHERE id IN ($pending, $scheduled, $su_job)")" \
    "h_ok,h_ok,h_ok" "pending, retry_now'd and superuser jobs ran their own handler"
wait_for "SELECT state || ' ' || error_type || ' ' || last_error FROM jobq.jobs WHERE id = $requeued" \
    "failed permanent always fails" 30 || it_fail "requeued job did not run h_fail"
it_ok "the requeued dead letter ran its own handler"

# a job submitted now runs the queue's current handler, as the rule says
after=$(as_alice "SELECT jobq.submit('ops', '{\"n\": \"after\"}')")
wait_for "SELECT result #>> '{}' FROM jobq.jobs WHERE id = $after" evil 30 || it_fail "new job did not run the new handler"
assert_eq "$(q "SELECT count(*) FROM public.ran WHERE via = 'evil' AND payload->>'n' IN ('pending', 'scheduled', 'superuser', 'dead')")" 0 \
    "adm's code ran for no job submitted before its change"

# a dropped pinned handler: the job fails, the queue's handler is not used
q "SELECT jobq.pause_queue('ops3')" >/dev/null
old=$(as_alice "SELECT jobq.submit('ops3')")
as_adm "SELECT jobq.alter_queue('ops3', handler => 'adm.evil(jsonb)'::regprocedure)" >/dev/null
q "DROP FUNCTION public.h_old(jsonb)" >/dev/null
q "SELECT jobq.resume_queue('ops3')" >/dev/null
wait_for "SELECT state || ' ' || error_type || ' ' || last_error FROM jobq.jobs WHERE id = $old" \
    "failed permanent the job's handler public.h_old(jsonb) no longer exists" 30 || it_fail "dropped handler"
it_ok "a job whose handler was dropped fails, permanent"

# a job submitted to an external queue has no handler: turned into an sql
# queue by adm, it runs nothing
q "SELECT jobq.pause_queue('ext')" >/dev/null
ext=$(as_alice "SELECT jobq.submit('ext')")
as_adm "SELECT jobq.alter_queue('ext', kind => 'sql', handler => 'adm.evil(jsonb)'::regprocedure)" >/dev/null
q "SELECT jobq.resume_queue('ext')" >/dev/null
wait_for "SELECT state || ' ' || error_type FROM jobq.jobs WHERE id = $ext" "failed permanent" 30 \
    || it_fail "handler-less job"
it_ok "a job submitted without a handler does not run the one set later"

# pg_cron: alice's schedule submits as alice; the jobs keep their handler
wait_for "SELECT count(*) > 0 FROM jobq.jobs WHERE queue = 'cronq'" t 90 \
    || { q "SELECT * FROM cron.job_run_details" >&2; it_fail "cron job did not submit"; }
as_alice "SELECT cron.unschedule('alice-submit')" >/dev/null
as_adm "SELECT jobq.alter_queue('cronq', handler => 'adm.evil(jsonb)'::regprocedure)" >/dev/null
q "SELECT jobq.resume_queue('cronq')" >/dev/null
wait_for "SELECT string_agg(DISTINCT owner::text || ' ' || state || ' ' || (result #>> '{}'), ',') FROM jobq.jobs WHERE queue = 'cronq'" \
    "alice completed h_ok" 30 || it_fail "cron-submitted jobs"
it_ok "jobs submitted through pg_cron run as the schedule's role, with their own handler"

assert_eq "$(q "SELECT count(*) FROM public.ran WHERE via = 'evil' AND who <> 'alice'")" 0 \
    "adm's code never ran as another role"
assert_eq "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = 'adm'")" f "adm did not become superuser"
