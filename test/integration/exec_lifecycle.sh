#!/usr/bin/env bash
# jobq follows the extension: executors start after CREATE EXTENSION, leave
# after DROP EXTENSION (even with a job running), come back with CREATE
# EXTENSION; DROP DATABASE and ALTER DATABASE RENAME are never blocked by
# them; a database without jobq has no executor.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.shutdown_grace = 1s" "jobq.poll_interval = 200ms"
EXECS="SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'db2'"
q "CREATE DATABASE db2"
q "CREATE DATABASE nojobq"
sleep 2
assert_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor'")" 0 "no executor where jobq is not installed"

q "CREATE EXTENSION jobq" db2
wait_for "$EXECS" 2 10 db2 || it_fail "executors did not start after CREATE EXTENSION"
it_ok "executors start after CREATE EXTENSION"
q "CREATE FUNCTION public.nap(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(30)';
   SELECT jobq.create_queue('nap', handler => 'public.nap(jsonb)')" db2
q "SELECT jobq.submit('nap')" db2 >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE state = 'running' AND database = 'db2'" 1 10 db2 || it_fail "job not running"

# DROP EXTENSION while a job runs: it is not blocked for long, executors leave.
start=$(date +%s)
timeout 60 psql -X -q -d db2 -c "DROP EXTENSION jobq" || it_fail "DROP EXTENSION failed"
it_ok "DROP EXTENSION with a running job took $(( $(date +%s) - start )) s"
wait_for "$EXECS" 0 30 db2 || it_fail "executors stayed after DROP EXTENSION"
it_ok "executors leave after DROP EXTENSION"
sleep 2
assert_eq "$(q "$EXECS" db2)" 0 "no executor comes back while jobq is absent"

q "CREATE EXTENSION jobq" db2
wait_for "$EXECS" 2 15 db2 || it_fail "executors did not come back"
it_ok "executors come back after CREATE EXTENSION"

# DROP EXTENSION while executors are busy with quick jobs (they take locks
# on jobq's tables all the time): never a deadlock, never an error.
q "CREATE DATABASE churn"
for round in 1 2 3; do
    q "CREATE EXTENSION jobq" churn
    wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'churn'" 2 15 churn \
        || it_fail "executors did not start (round $round)"
    q "CREATE FUNCTION public.quick(p jsonb) RETURNS void LANGUAGE sql AS '';
       SELECT jobq.create_queue('quick', handler => 'public.quick(jsonb)');
       SELECT count(*) FROM jobq.submit_batch('quick', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 5000)));" churn >/dev/null
    sleep 0.3
    out=$(psql -X -q -d churn -c "DROP EXTENSION jobq; DROP FUNCTION public.quick(jsonb);" 2>&1) || it_fail "DROP EXTENSION failed in round $round: $out"
done
it_ok "DROP EXTENSION during a burst of jobs succeeded 3 times"
q "DROP DATABASE churn"

# ALTER DATABASE RENAME and DROP DATABASE (no FORCE) while executors run.
start=$(date +%s)
q "ALTER DATABASE db2 RENAME TO db3" || it_fail "RENAME blocked"
it_ok "ALTER DATABASE RENAME not blocked ($(( $(date +%s) - start )) s)"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'db3'" 2 20 \
    || it_fail "executors not back after rename"
it_ok "executors back in the renamed database"
start=$(date +%s)
q "DROP DATABASE db3" || it_fail "DROP DATABASE blocked"
it_ok "DROP DATABASE not blocked ($(( $(date +%s) - start )) s)"
sleep 2
assert_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor'")" 0 "no executor left for the dropped database"
if grep -E 'jobq executor (ERROR|PANIC)|deadlock detected|terminated by signal' "$IT_DIR/server.log"; then
    it_fail "errors in the server log"
fi
it_ok "no executor error, deadlock or crash in the log"
assert_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq launcher'")" 1 "launcher still up"
