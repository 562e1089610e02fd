#!/usr/bin/env bash
# User triggers and rules on jobq's tables are refused.  While jobq is
# loaded, CREATE TRIGGER / CREATE RULE on them fail (exec_direct_record,
# pgtap/20_core_submit).  A trigger made while the server ran without jobq
# in shared_preload_libraries is found later: the job store refuses to
# write a table that has one (an error naming it, not a silent bypass of
# the trigger), and the update from 0.1.0 refuses an installation that has
# one.  Dropping it is enough.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 0"
q "CREATE DATABASE up"
q "CREATE EXTENSION jobq VERSION '0.1.0'" up
q "CREATE EXTENSION jobq"
q "SELECT jobq.create_queue('x', kind => 'external')" >/dev/null

# The same server without jobq loaded: nothing stops the triggers.
cluster_stop "$IT_DIR"
echo "shared_preload_libraries = 'pg_cron'" | as_pg tee -a "$IT_DIR/data/jobq_test.conf" >/dev/null
cluster_start "$IT_DIR"
for db in postgres up; do
    q "CREATE FUNCTION public.note() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN RETURN NEW; END \$\$;
       CREATE TRIGGER note AFTER INSERT ON jobq.jobs_active FOR EACH ROW EXECUTE FUNCTION public.note()" "$db" >/dev/null
done
q "CREATE RULE r AS ON INSERT TO jobq.job_attempts DO ALSO NOTIFY x" up >/dev/null
cluster_stop "$IT_DIR"
as_pg sed -i '$d' "$IT_DIR/data/jobq_test.conf"
cluster_start "$IT_DIR"

# The job store refuses to write past the trigger.
err=$(q "SELECT jobq.submit('x')" 2>&1) && it_fail "submit wrote jobs_active past a trigger: $err"
echo "$err" | grep -q 'jobq.jobs_active has a trigger or rule, which jobq does not support' \
    || it_fail "submit: unexpected error: $err"
assert_eq "$(psql -X -At -c "SELECT jobq.submit('x')" 2>&1 >/dev/null | grep -c 'HINT:  Drop the trigger or rule')" 1 "the error says what to do"
it_ok "a trigger made while jobq was not loaded: submit refuses with an error naming the table"

# The update from 0.1.0 refuses, naming what to drop.
err=$(q "ALTER EXTENSION jobq UPDATE TO '0.2.0'" up 2>&1) && it_fail "the update accepted a trigger on jobq's tables"
echo "$err" | grep -q 'does not support triggers or rules on its tables: rule r on jobq.job_attempts, trigger note on jobq.jobs_active' \
    || it_fail "update: unexpected error: $err"
assert_eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'jobq'" up)" 0.1.0 "still 0.1.0"
it_ok "ALTER EXTENSION jobq UPDATE refuses an installation with a trigger and a rule, naming them"

# Dropped, everything works.
q "DROP TRIGGER note ON jobq.jobs_active" >/dev/null
id=$(q "SELECT jobq.submit('x')")
assert_eq "$(q "SELECT jobq.complete(c.id, c.attempt) FROM jobq.claim('x') c")" t "claimed and completed"
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $id")" completed "the job completed"
q "DROP TRIGGER note ON jobq.jobs_active; DROP RULE r ON jobq.job_attempts" up >/dev/null
q "ALTER EXTENSION jobq UPDATE TO '0.2.0'" up
assert_eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'jobq'" up)" 0.2.0 "updated once they are gone"
it_ok "once dropped: jobs run and the update goes through"
