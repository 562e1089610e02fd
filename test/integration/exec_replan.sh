#!/usr/bin/env bash
# An executor's kept (generic) plans are made again when jobs_active has
# grown: a statement planned while the table was nearly empty (the lost-job
# recovery, the next-due query) would otherwise keep scanning it
# sequentially as it grows to thousands of pages.  auto_explain logs the
# executor's plans.  (The claim itself is no statement: store_claim_direct.c.)
# jobq.vacuum_after is set out of reach: the executor's own VACUUM also gets
# plans made again (its statistics update invalidates them), which would
# hide a missing replan here.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "autovacuum = off" "jobq.vacuum_after = 1000000" \
    "shared_preload_libraries = 'jobq,pg_cron,auto_explain'" \
    "auto_explain.log_min_duration = 0" "auto_explain.log_nested_statements = on"
q "CREATE EXTENSION jobq"
q "CREATE FUNCTION public.noop(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb';
   SELECT jobq.create_queue('grow', handler => 'public.noop(jsonb)')" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 1 20 || it_fail "executor"

# plans made while jobs_active is (nearly) empty
q "SELECT jobq.submit('grow', '{}')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE state = 'completed'" 1 20 || it_fail "first job"
# plans logged by the executor that read jobq.jobs_active; with SEQ=1, only
# those that scan it sequentially (auto_explain: a "duration: ... plan:"
# line with the log prefix, then the plan)
executor_plans() {
    awk -v seq="${2:-0}" '
        / LOG:  duration: .* plan:/ { flush(); blk = ""; ex = ($0 ~ /jobq executor/) }
        { blk = blk "\n" $0 }
        function flush() { if (ex && blk ~ /on jobs_active/ && (!seq || blk ~ /Seq Scan on jobs_active/)) n++ }
        END { flush(); print n + 0 }' "$1"
}
small=$(executor_plans "$IT_DIR/server.log")
[ "$small" -ge 1 ] || it_fail "auto_explain logged no executor plan on jobs_active"

# grow jobs_active ~100x, then let the executor drain it.  The log up to
# here holds only plans made while the table was small (the submit below
# wakes the executor, which may plan again before this script reads on).
q "SELECT jobq.pause_queue('grow')" >/dev/null
lines_small=$(wc -l <"$IT_DIR/server.log")
cp "$IT_DIR/server.log" "$IT_DIR/server.log.before"
q "SELECT count(*) FROM jobq.submit_batch('grow', (SELECT jsonb_agg(jsonb_build_object('pad', repeat('x', 200))) FROM generate_series(1, 20000)))" >/dev/null
pages=$(q "SELECT pg_relation_size('jobq.jobs_active') / 8192")
[ "$pages" -ge 100 ] || it_fail "jobs_active has only $pages pages"
lines_before=$(wc -l <"$IT_DIR/server.log")
q "SELECT jobq.resume_queue('grow')" >/dev/null
# the lost-job recovery runs every 2 s: let it run while the table is big
sleep 3
wait_for "SELECT count(*) FROM jobq.jobs_active" 0 120 || it_fail "the backlog did not drain"

tail -n +"$((lines_before + 1))" "$IT_DIR/server.log" >"$IT_DIR/after.log"
plans=$(executor_plans "$IT_DIR/after.log")
[ "$plans" -ge 1 ] || it_fail "no executor plan on jobs_active logged while draining"
bad=$(executor_plans "$IT_DIR/after.log" 1)
if [ "$bad" -gt 0 ]; then
    grep -m1 -B8 -A6 "Seq Scan on jobs_active" "$IT_DIR/after.log" >&2
    it_fail "$bad of $plans executor plans scanned jobs_active sequentially after it grew to $pages pages"
fi
it_ok "$plans executor plans on jobs_active after it grew to $pages pages: none scans it sequentially"

# The plans were made again: the lost-job recovery statement (run every 2 s)
# was planned for a nearly empty table at first; after the growth its plan's
# estimated cost must be that of a big one.  Kept as first planned, the
# estimate would not change.
recovery_cost() {
    awk '/ LOG:  duration: .* plan:/ { blk = ($0 ~ /jobq executor/) ? 1 : 0; first = 1; rec = 0; next }
         blk && /jobq._fail\(j.id/ { rec = 1; next }
         blk && rec && first && /cost=/ { match($0, /cost=[0-9.]+\.\.[0-9.]+/); c = substr($0, RSTART, RLENGTH); sub(/.*\.\./, "", c); if (c + 0 > m) m = c + 0; first = 0 }
         END { print m + 0 }' "$1"
}
before_cost=$(recovery_cost "$IT_DIR/server.log.before")
tail -n +"$((lines_small + 1))" "$IT_DIR/server.log" >"$IT_DIR/grown.log"
after_cost=$(recovery_cost "$IT_DIR/grown.log")
# a fast drain may end before the recovery's next run (every 2 s): wait for it
for _ in $(seq 1 40); do
    [ "$(awk "BEGIN{print ($after_cost > 0)}")" = 1 ] && break
    sleep 0.25
    tail -n +"$((lines_small + 1))" "$IT_DIR/server.log" >"$IT_DIR/grown.log"
    after_cost=$(recovery_cost "$IT_DIR/grown.log")
done
[ "$(awk "BEGIN{print ($before_cost > 0 && $after_cost > 4 * $before_cost)}")" = 1 ] ||
    it_fail "the recovery statement was not planned again: estimated cost $before_cost before the growth, $after_cost after"
it_ok "the recovery statement was planned again after the growth (estimated cost $before_cost, then $after_cost)"
