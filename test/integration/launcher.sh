#!/usr/bin/env bash
# The launcher: visible in pg_stat_activity, survives SIGHUP, comes back
# after pg_terminate_backend and after kill -9, idles (no crash loop) when
# jobq.database names a database that does not exist yet, and the server
# stops promptly on fast shutdown.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.database = 'later_db'"

LAUNCHER="SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobq launcher'"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq launcher'" 1 20 \
    || it_fail "launcher not in pg_stat_activity"
it_ok "launcher visible with backend_type 'jobq launcher'"
assert_eq "$(q "SELECT application_name FROM pg_stat_activity WHERE backend_type = 'jobq launcher'")" \
    "jobq launcher" "launcher reports its application_name"
pid1=$(q "$LAUNCHER")

# SIGHUP: reloads, does not exit.
q "ALTER SYSTEM SET jobq.workers = 3"
q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
kill -0 "$pid1" || it_fail "launcher exited on SIGHUP"
it_ok "launcher survives SIGHUP"

# A database named in jobq.database that does not exist: no crash loop.
sleep 2
assert_eq "$(q "$LAUNCHER")" "$pid1" "launcher stays up while its database does not exist"
if grep -E "jobq.*(FATAL|ERROR)|terminated by signal|exited with exit code 1" "$IT_DIR/server.log" | grep -v "pg_cron" | grep -q .; then
    grep -E "FATAL|ERROR|exited with exit code" "$IT_DIR/server.log" >&2
    it_fail "errors in the log while idling"
fi
it_ok "no errors logged while the database is missing"

# The database appears, jobq is created there: executors start, 3 of them.
q "CREATE DATABASE later_db"
q "CREATE EXTENSION jobq" later_db
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'later_db'" 3 20 \
    || it_fail "executors did not start after CREATE EXTENSION"
it_ok "3 executors (jobq.workers after reload) start after CREATE EXTENSION"

# SIGTERM (pg_terminate_backend): exits and is restarted, not disabled.
q "SELECT pg_terminate_backend($pid1)" >/dev/null
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq launcher' AND pid <> $pid1" 1 20 \
    || it_fail "launcher not restarted after SIGTERM"
it_ok "launcher restarted after pg_terminate_backend"
pid2=$(q "$LAUNCHER")

# kill -9: the postmaster resets the cluster and the launcher comes back.
kill -9 "$pid2"
sleep 1
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq launcher' AND pid <> $pid2" 1 30 \
    || it_fail "launcher not back after kill -9"
it_ok "launcher back after kill -9"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor' AND datname = 'later_db'" 3 30 \
    || it_fail "executors not back after crash restart"
it_ok "executors back after crash restart"

# Fast shutdown: everything exits promptly.
pm=$(cluster_pid "$IT_DIR")
jobq_pids=$(q "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type LIKE 'jobq%'")
start=$(date +%s)
kill -INT "$pm"
for _ in $(seq 1 200); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pm" 2>/dev/null && it_fail "server still running 20 s after fast shutdown"
it_ok "fast shutdown completes in $(( $(date +%s) - start )) s"
for p in $jobq_pids; do kill -0 "$p" 2>/dev/null && it_fail "jobq process $p left after shutdown"; done
it_ok "no jobq process left ($jobq_pids)"
