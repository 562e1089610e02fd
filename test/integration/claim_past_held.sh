#!/usr/bin/env bash
# A claim walks past the jobs another transaction's claim holds (claimed,
# not committed yet) without trying to update each one: it reads each of
# their pages once, as it would skip them, instead of locking the page once
# per job for an update bound to fail.  Skipped is not lost: the held jobs
# are claimed once that other claim rolls back.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 0"
q "CREATE EXTENSION jobq"
q "SELECT jobq.create_queue('ext', kind => 'external')" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('ext', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 300) g))" >/dev/null
first=$(q "SELECT min(id) FROM jobq.jobs WHERE queue = 'ext'")

HOLD_PID=""
stop_holder() { [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null; HOLD_PID=""; return 0; }
trap 'rc=$?; set +e; stop_holder; (exit $rc); it_cleanup' EXIT
# another worker's claim of the first 200 jobs, not committed
PGAPPNAME=held_claim psql -X -q -c "BEGIN; SELECT count(*) FROM jobq.claim('ext', 200); SELECT pg_sleep(600)" >/dev/null 2>&1 &
HOLD_PID=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'held_claim' AND wait_event = 'PgSleep'" 1 30 \
    || it_fail "the holding claim did not start"

# jobs_active's heap pages this transaction read (pgstat counts each buffer
# read, and the claim's update reads its row's page again)
out=$(q "BEGIN;
   CREATE TEMP TABLE before ON COMMIT DROP AS
     SELECT pg_stat_get_xact_blocks_fetched('jobq.jobs_active'::regclass) AS n;
   SELECT id FROM jobq.claim('ext', 1);
   SELECT pg_stat_get_xact_blocks_fetched('jobq.jobs_active'::regclass) - n FROM before;
   ROLLBACK")
got=$(echo "$out" | sed -n 1p)
pages=$(echo "$out" | sed -n 2p)
assert_eq "$got" "$((first + 200))" "the claim skips the 200 held jobs and takes the next"
held_pages=$(q "SELECT count(DISTINCT (ctid::text::point)[0]) FROM jobq.jobs_active WHERE id < $first + 200")
log "the claim past 200 held jobs (on $held_pages pages) read $pages heap pages"
[ "$pages" -lt 100 ] || it_fail "the claim read $pages heap pages walking past 200 held jobs: one update attempt per held job"
it_ok "walking past 200 held jobs reads $pages heap pages, not one per job"

# the holder's transaction ends in a rollback: its jobs are claimable again
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'held_claim'" >/dev/null
wait "$HOLD_PID" 2>/dev/null || true
HOLD_PID=""
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'held_claim'" 0 30 || it_fail "the holder did not end"
assert_eq "$(q "SELECT id FROM jobq.claim('ext', 1)")" "$first" \
    "the first job, held by the claim that rolled back, is claimed at once"
assert_eq "$(q "SELECT count(*) FROM jobq.claim('ext', 1000)")" 299 "every other job is claimable"
it_ok "jobs skipped while held are claimed after their claim rolls back"
