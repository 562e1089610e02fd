#!/usr/bin/env bash
# The executor writes a finished job's final row and attempt row through the
# table AM (bulk_insert.c): every column as the SQL path writes it, and when a
# user puts a trigger on jobq.jobs_final or jobq.job_attempts it goes through
# SQL instead, so the trigger fires for every job.  The same for the claim
# (claim_heap.c) and the completion's delete with a trigger on jobs_active.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE bob LOGIN;
GRANT USAGE ON SCHEMA jobq TO bob;
CREATE FUNCTION public.echo(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT p || ''{\"done\": true}''';
GRANT EXECUTE ON FUNCTION public.echo(jsonb) TO bob;
SELECT jobq.create_queue('d', handler => 'public.echo(jsonb)', max_attempts => 4);
" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 1 20 || it_fail "executor"

# Jobs submitted one by one and in a batch, with every per-job option; the
# pending rows are kept to compare with the final ones.
psql -X -q -U bob -d postgres -c "
SELECT jobq.submit('d', '{\"n\": 1}', priority => 3, max_attempts => 2, timeout => '9 s');
SELECT jobq.submit_batch('d', '[{\"n\": 2}, {\"n\": 3}, [4], \"five\"]', priority => -1, timeout => '8 s');
" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'd' AND state = 'completed'" 5 20 || it_fail "jobs not completed"

# Copied from the active row: everything but what completion changes.
assert_eq "$(q "SELECT count(*) FROM jobq.jobs_final f
                 WHERE queue = 'd' AND owner = 'bob'::regrole AND attempt = 1 AND snoozes = 0
                   AND created_at IS NOT NULL AND run_at = created_at
                   AND started_at >= created_at AND completed_at >= started_at
                   AND last_heartbeat = started_at AND lease_expires_at IS NULL
                   AND worker LIKE 'jobq executor %' AND claimed_by IS NOT NULL
                   AND error_type IS NULL AND last_error IS NULL AND unique_key IS NULL
                   AND result = payload || '{\"done\": true}'")" 5 "final rows: copied columns, completion columns, result"
assert_eq "$(q "SELECT string_agg(payload::text || ' ' || priority || ' ' || coalesce(max_attempts::text, '-') || ' ' || timeout, ', ' ORDER BY id)
                 FROM jobq.jobs_final WHERE queue = 'd'")" \
    '{"n": 1} 3 2 00:00:09, {"n": 2} -1 - 00:00:08, {"n": 3} -1 - 00:00:08, [4] -1 - 00:00:08, "five" -1 - 00:00:08' \
    "payload, priority, max_attempts and timeout kept"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts a JOIN jobq.jobs_final f ON f.id = a.job_id
                 WHERE a.attempt = 1 AND a.queue = f.queue AND a.owner = f.owner
                   AND a.started_at = f.started_at AND a.finished_at = f.completed_at
                   AND a.outcome = 'completed' AND a.worker = f.worker
                   AND a.error_class IS NULL AND a.error IS NULL AND a.sqlstate IS NULL
                   AND a.http_status IS NULL AND a.detail IS NULL")" 5 "attempt rows match their jobs"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs_active")" 0 "nothing left in jobs_active"
it_ok "final and attempt rows written directly carry every column"

# A user's triggers on the history tables fire for each job.
q "
CREATE TABLE public.audit (tbl text, id bigint);
CREATE FUNCTION public.note() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  IF TG_TABLE_NAME = 'job_attempts' THEN
    INSERT INTO public.audit VALUES (TG_TABLE_NAME, NEW.job_id);
  ELSE
    INSERT INTO public.audit VALUES (TG_TABLE_NAME, NEW.id);
  END IF;
  RETURN NEW;
END \$\$;
CREATE TRIGGER note AFTER INSERT ON jobq.jobs_final FOR EACH ROW EXECUTE FUNCTION public.note();
" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('d', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 50) i))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'd' AND state = 'completed'" 55 20 || it_fail "jobs with a trigger on jobs_final not completed"
assert_eq "$(q "SELECT count(DISTINCT id) FROM public.audit WHERE tbl = 'jobs_final'")" 50 "trigger on jobs_final fired for each job"
q "DROP TRIGGER note ON jobq.jobs_final; TRUNCATE public.audit;
   CREATE TRIGGER note AFTER INSERT ON jobq.job_attempts FOR EACH ROW EXECUTE FUNCTION public.note()" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('d', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 50) i))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'd' AND state = 'completed'" 105 20 || it_fail "jobs with a trigger on job_attempts not completed"
assert_eq "$(q "SELECT count(DISTINCT id) FROM public.audit WHERE tbl = 'job_attempts'")" 50 "trigger on job_attempts fired for each job"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts")" 105 "one attempt row per job"
it_ok "with a trigger on jobs_final or job_attempts the rows go through SQL and the trigger fires"

# Triggers on jobs_active: the claim (an UPDATE) and the completion (a DELETE)
# go through SQL and fire them.
q "DROP TRIGGER note ON jobq.job_attempts; TRUNCATE public.audit;
   CREATE FUNCTION public.note_active() RETURNS trigger LANGUAGE plpgsql AS \$\$
   BEGIN
     INSERT INTO public.audit VALUES (TG_OP, OLD.id);
     RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
   END \$\$;
   CREATE TRIGGER note_active AFTER UPDATE OR DELETE ON jobq.jobs_active FOR EACH ROW EXECUTE FUNCTION public.note_active()" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('d', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 30) i))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'd' AND state = 'completed'" 135 20 || it_fail "jobs with a trigger on jobs_active not completed"
assert_eq "$(q "SELECT count(DISTINCT id) FROM public.audit WHERE tbl = 'UPDATE'")" 30 "the claim fired the UPDATE trigger for each job"
assert_eq "$(q "SELECT count(DISTINCT id) FROM public.audit WHERE tbl = 'DELETE'")" 30 "the completion fired the DELETE trigger for each job"
it_ok "with a trigger on jobs_active the claim and the completion go through SQL and fire it"

# A session that completed jobs keeps working across DROP and CREATE
# EXTENSION: the direct-access completion looks jobs_active up again.
out=$(psql -X -At -v ON_ERROR_STOP=1 <<'SQL'
SELECT jobq.create_queue('ext', kind => 'external');
SELECT jobq.submit('ext') > 0;
SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('ext') c;
DROP EXTENSION jobq CASCADE;
CREATE EXTENSION jobq;
SELECT jobq.create_queue('ext', kind => 'external');
SELECT jobq.submit('ext') > 0;
SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('ext') c;
SELECT state FROM jobq.jobs;
SQL
) || it_fail "claim and complete across DROP/CREATE EXTENSION failed: $out"
assert_eq "$(echo "$out" | tr '\n' ' ')" " t t DROP EXTENSION CREATE EXTENSION  t t completed " "complete works in the same session after the extension was recreated"
it_ok "one session: complete, DROP EXTENSION, CREATE EXTENSION, complete again"

# The direct paths refuse a read-only transaction as the SQL ones did (25006).
for call in "SELECT jobq.claim('ext')" "SELECT jobq.complete(1, 1)" "SELECT jobq.submit('ext')" \
            "SELECT jobq.submit_batch('ext', '[1]')"; do
    err=$(psql -X -At -c "BEGIN READ ONLY" -c "$call" 2>&1 || true)
    echo "$err" | grep -q "read-only transaction" || it_fail "$call in a read-only transaction: $err"
done
it_ok "claim, complete, submit and submit_batch refuse a read-only transaction"
