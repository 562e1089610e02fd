#!/usr/bin/env bash
# Live progress (issue 16): jobq.report_progress from a running handler is
# visible at once, before the job commits, in jobq.job_progress and
# jobq.workers (the owner and jobq_admin see it; another role does not);
# the last value committed is kept on the job when it ends, and a failed
# attempt's report is rolled back with its other writes.  External workers
# report through jobq.heartbeat.  Misuse gets clear errors.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 100ms"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.gate (open boolean);
INSERT INTO public.gate VALUES (false);
GRANT SELECT ON public.gate TO PUBLIC;
CREATE FUNCTION public.work(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM jobq.report_progress(0.25, 'fetching');
  PERFORM jobq.report_progress(0.5, 'half way: ' || (p->>'name'));
  WHILE NOT (SELECT open FROM public.gate) LOOP PERFORM pg_sleep(0.02); END LOOP;
  IF p->>'fail' = 'yes' THEN
    PERFORM jobq.report_progress(0.9, 'almost');
    PERFORM jobq.give_up('broke at 90%');
  END IF;
  PERFORM jobq.report_progress(1, 'done');
  RETURN '{}';
END \$\$;
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
GRANT USAGE ON SCHEMA jobq TO alice, bob;
GRANT EXECUTE ON FUNCTION public.work(jsonb) TO alice;
SELECT jobq.create_queue('w', handler => 'public.work(jsonb)', max_attempts => 1);
SELECT jobq.create_queue('x', kind => 'external');
" >/dev/null
as() { psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$1" -d postgres -c "$2"; }

# Live, before the commit: the handler waits at the gate after 0.5.
id=$(as alice "SELECT jobq.submit('w', '{\"name\": \"report\"}')")
wait_for "SELECT progress || ' ' || progress_note || ' ' || live FROM jobq.job_progress WHERE id = $id" "0.5 half way: report true" 60 \
    || it_fail "live progress not shown"
assert_eq "$(q "SELECT progress FROM jobq.jobs WHERE id = $id")" "" "not on the row before the commit"
assert_eq "$(q "SELECT progress || ' ' || progress_note FROM jobq.workers WHERE job_id = $id")" "0.5 half way: report" "jobq.workers shows it too"
assert_eq "$(as alice "SELECT progress FROM jobq.job_progress WHERE id = $id")" 0.5 "the owner sees it"
assert_eq "$(as bob "SELECT count(*) FROM jobq.job_progress WHERE id = $id")" 0 "another role does not see the job"
assert_eq "$(as bob "SELECT count(*) FROM jobq.workers WHERE progress IS NOT NULL")" 0 "nor its progress in jobq.workers"
it_ok "progress is visible at once, to the owner and jobq_admin only"

# Kept when the job ends; a failed attempt's report is rolled back.
fid=$(as alice "SELECT jobq.submit('w', '{\"name\": \"f\", \"fail\": \"yes\"}')")
q "UPDATE public.gate SET open = true" >/dev/null
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 60 || it_fail "job not completed"
assert_eq "$(q "SELECT progress || ' ' || progress_note FROM jobq.jobs WHERE id = $id")" "1 done" "the last value is kept on the completed job"
wait_for "SELECT state FROM jobq.jobs WHERE id = $fid" failed 60 || it_fail "failing job not failed"
assert_eq "$(q "SELECT coalesce(progress::text, 'none') FROM jobq.jobs WHERE id = $fid")" none "a failed attempt's progress is rolled back with it"
it_ok "kept with the job's transaction"

# External workers: heartbeat(progress, note).
q "GRANT jobq_worker TO alice" >/dev/null
xid=$(as alice "SELECT jobq.submit('x')")
att=$(as alice "SELECT attempt FROM jobq.claim('x')")
as alice "SELECT jobq.heartbeat($xid, $att, progress => 0.3, note => 'page 3 of 10')" >/dev/null
assert_eq "$(as alice "SELECT progress || ' ' || progress_note || ' ' || live FROM jobq.job_progress WHERE id = $xid")" "0.3 page 3 of 10 false" "an external worker's heartbeat reports progress"
as alice "SELECT jobq.heartbeat($xid, $att)" >/dev/null
assert_eq "$(as alice "SELECT progress || ' ' || progress_note FROM jobq.jobs WHERE id = $xid")" "0.3 page 3 of 10" "a heartbeat without progress keeps it"
as alice "SELECT jobq.complete($xid, $att)" >/dev/null
assert_eq "$(q "SELECT progress FROM jobq.jobs WHERE id = $xid")" 0.3 "kept on the completed job"
it_ok "external workers report through heartbeat"

# Misuse.
err() { psql -X -q -A -t -d postgres -c "$1" 2>&1 || true; }
case "$(err "SELECT jobq.report_progress(0.5)")" in
    *"called from a running job's handler only"*) it_ok "outside a job: refused";; *) it_fail "outside a job";; esac
case "$(err "SELECT jobq.heartbeat(1, 1, progress => 1.5)")" in
    *"progress must be between 0 and 1, not 1.5"*) it_ok "progress above 1 refused";; *) it_fail "progress 1.5 accepted";; esac
case "$(err "SELECT jobq.heartbeat(1, 1, progress => 'NaN')")" in
    *"progress must be between 0 and 1"*) it_ok "NaN refused";; *) it_fail "NaN accepted";; esac
case "$(err "SELECT jobq.heartbeat(1, 1, progress => 0.5, note => repeat('x', 201))")" in
    *"at most 200 characters"*) it_ok "a long note refused";; *) it_fail "long note accepted";; esac
