#!/usr/bin/env bash
# The executor writes a finished job's final row and attempt row through the
# table AM (bulk_insert.c): every column as the SQL path writes it.  User
# triggers and rules on jobq's tables, which those writes would not fire,
# are refused.
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

# jobq's tables take no user triggers or rules: the rows above were written
# below SQL, where they would not fire.
q "CREATE FUNCTION public.note() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN RETURN NEW; END \$\$" >/dev/null
for t in jobs jobs_active jobs_final job_attempts dead_letter queues; do
    err=$(q "CREATE TRIGGER note AFTER INSERT ON jobq.$t FOR EACH ROW EXECUTE FUNCTION public.note()" 2>&1) \
        && it_fail "a trigger on jobq.$t was accepted"
    echo "$err" | grep -q "do not take a user's trigger" || it_fail "trigger on jobq.$t: $err"
done
err=$(q "CREATE RULE r AS ON INSERT TO jobq.jobs_final DO ALSO NOTIFY x" 2>&1) && it_fail "a rule on jobq.jobs_final was accepted"
echo "$err" | grep -q "do not take a user's rule" || it_fail "rule on jobq.jobs_final: $err"
q "CREATE TABLE public.mine (x int); CREATE TRIGGER note AFTER INSERT ON public.mine FOR EACH ROW EXECUTE FUNCTION public.note()" >/dev/null
it_ok "triggers and rules on jobq's tables are refused (other tables keep theirs)"

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
