#!/usr/bin/env bash
# An executor's kept (generic) plans are made again when jobs_active has
# grown: a claim planned while the table was nearly empty would otherwise
# keep scanning it sequentially as it grows to thousands of pages.
# auto_explain logs the executor's plans.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "autovacuum = off" \
    "shared_preload_libraries = 'jobq,pg_cron,auto_explain'" \
    "auto_explain.log_min_duration = 0" "auto_explain.log_nested_statements = on"
q "CREATE EXTENSION jobq"
q "CREATE FUNCTION public.noop(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb';
   SELECT jobq.create_queue('grow', handler => 'public.noop(jsonb)')" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 1 20 || it_fail "executor"

# plans made while jobs_active is (nearly) empty
q "SELECT jobq.submit('grow', '{}')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE state = 'completed'" 1 20 || it_fail "first job"
small=$(grep -c "Update on jobs_active" "$IT_DIR/server.log" || true)
[ "$small" -ge 1 ] || it_fail "auto_explain logged no claim"

# grow jobs_active ~100x, then let the executor drain it
q "SELECT jobq.pause_queue('grow')" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('grow', (SELECT jsonb_agg(jsonb_build_object('pad', repeat('x', 200))) FROM generate_series(1, 20000)))" >/dev/null
pages=$(q "SELECT pg_relation_size('jobq.jobs_active') / 8192")
[ "$pages" -ge 100 ] || it_fail "jobs_active has only $pages pages"
lines_before=$(wc -l <"$IT_DIR/server.log")
q "SELECT jobq.resume_queue('grow')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs_active" 0 120 || it_fail "the backlog did not drain"

tail -n +"$((lines_before + 1))" "$IT_DIR/server.log" >"$IT_DIR/after.log"
claims=$(grep -c "Update on jobs_active" "$IT_DIR/after.log" || true)
[ "$claims" -ge 1 ] || it_fail "no claim plan logged while draining"
# the claim's target rows: by primary key, never a sequential scan of
# jobs_active (plans are logged as blocks starting with "Query Text:")
bad=$(awk '/Query Text:/ { if (blk ~ /Update on jobs_active/ && blk ~ /Seq Scan on jobs_active/) n++; blk = "" }
           { blk = blk "\n" $0 }
           END { if (blk ~ /Update on jobs_active/ && blk ~ /Seq Scan on jobs_active/) n++; print n + 0 }' "$IT_DIR/after.log")
if [ "$bad" -gt 0 ]; then
    grep -m1 -B2 -A14 "Update on jobs_active" "$IT_DIR/after.log" >&2
    it_fail "$bad of $claims claims scanned jobs_active sequentially after it grew to $pages pages"
fi
it_ok "$claims claims after jobs_active grew to $pages pages: all by primary key"
