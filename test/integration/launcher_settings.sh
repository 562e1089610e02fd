#!/usr/bin/env bash
# Executors follow jobq.database and jobq.workers on reload: a database that
# leaves jobq.database loses its executors (its running job gets the grace,
# then is released without using an attempt) while the others keep
# running; back in the list, it gets them again; a lower jobq.workers stops
# the extra executors.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms" "jobq.shutdown_grace = 1s"
for db in db1 db2; do
    q "CREATE DATABASE $db"
    q "CREATE EXTENSION jobq" "$db"
    q "CREATE FUNCTION public.h(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep((\$1->>''s'')::float8)';
       SELECT jobq.create_queue('q', handler => 'public.h(jsonb)', max_attempts => 3)" "$db" >/dev/null
done
executors() { q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = '$1'"; }
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'db1'" 2 60 || it_fail "db1 executors"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'db2'" 2 60 || it_fail "db2 executors"

long=$(q "SELECT jobq.submit('q', '{\"s\": 600}')" db2)
wait_for "SELECT state FROM jobq.jobs WHERE id = $long" running 60 db2 || it_fail "db2 job not running"

q "ALTER SYSTEM SET jobq.database = 'db1'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'db2'" 0 60 \
    || it_fail "db2 kept its executors after leaving jobq.database"
it_ok "db2's executors stopped when it left jobq.database"
assert_eq "$(q "SELECT state || ' ' || (attempt - snoozes) FROM jobq.jobs WHERE id = $long" db2)" "pending 0" \
    "its running job was released without using an attempt"
assert_eq "$(q "SELECT string_agg(outcome, ',') FROM jobq.job_attempts WHERE job_id = $long" db2)" released "attempt row: released"
id=$(q "SELECT jobq.submit('q', '{\"s\": 0}')" db1)
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 60 db1 || it_fail "db1 stopped running jobs"
assert_eq "$(executors db1)" 2 "db1 keeps its executors"

q "ALTER SYSTEM RESET jobq.database" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'db2'" 2 60 \
    || it_fail "db2 did not get its executors back"
wait_for "SELECT state FROM jobq.jobs WHERE id = $long" running 60 db2 || it_fail "the released job did not run again"
it_ok "back in the list, db2 runs its jobs again"
q "SELECT jobq.cancel($long)" db2 >/dev/null

q "ALTER SYSTEM SET jobq.workers = 1" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname IN ('db1', 'db2')" 2 60 \
    || it_fail "jobq.workers lowered: extra executors not stopped"
it_ok "a lower jobq.workers stops the extra executors"
