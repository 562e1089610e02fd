#!/usr/bin/env bash
# Claim floors (src/claim_floor.c): while an old snapshot keeps VACUUM from
# removing the claim-index entries of claimed jobs, a claim starts past them
# instead of fetching every one; and no job is ever skipped by it: a job that
# lands before the floor (higher priority, earlier run_at, a retry,
# retry_now, requeue_dead) lowers it at once, and a claim that rolls back
# gives its jobs back to later claims.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2"
q "CREATE EXTENSION jobq"
q "SELECT jobq.create_queue('ext', kind => 'external', base_delay => '1 millisecond',
                            max_delay => '1 millisecond', jitter => 0)" >/dev/null

HOLD_PID=""
stop_holder() { [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null; HOLD_PID=""; return 0; }
trap 'rc=$?; set +e; stop_holder; (exit $rc); it_cleanup' EXIT
# the old snapshot: nothing claimed from now on can be vacuumed away
PGAPPNAME=floor_hold psql -X -q -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1; SELECT pg_sleep(600)" >/dev/null 2>&1 &
HOLD_PID=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'floor_hold' AND backend_xmin IS NOT NULL" 1 10 || it_fail "snapshot holder"

# is the floor of ext at or before job $1 in claim order (priority DESC, run_at, id)?
floor_before() {
    q "SELECT coalesce(f.priority > j.priority OR (f.priority = j.priority AND (f.run_at, f.id) <= (j.run_at, j.id)), true)
         FROM jobq.jobs j LEFT JOIN jobq._claim_floor('ext') f ON true WHERE j.id = $1"
}
# a claim that finds nothing raises the floor past every gone entry
raise_floor() { assert_eq "$(claim_one)" "" "${1:-nothing to claim}: the floor moves to the end"; }
claim_one() { q "SELECT id FROM jobq.claim('ext', 1)"; }
complete() { q "SELECT jobq.complete(id, attempt) FROM jobq.jobs WHERE id = $1" >/dev/null; }

# An external worker drains 3,000 jobs, one claim transaction each.
q "CREATE PROCEDURE public.drain(n int) LANGUAGE plpgsql AS \$\$
   DECLARE r record;
   BEGIN
     FOR i IN 1..n LOOP
       FOR r IN SELECT id, attempt FROM jobq.claim('ext', 10) LOOP
         PERFORM jobq.complete(r.id, r.attempt);
       END LOOP;
       COMMIT;
     END LOOP;
   END \$\$" >/dev/null
first=$(q "SELECT min(b) FROM jobq.submit_batch('ext', (SELECT jsonb_agg(i) FROM generate_series(1, 3000) i)) b")
last=$(( first + 2999 ))
q "CALL public.drain(300)"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'ext' AND state = 'completed'")" 3000 "3000 jobs claimed and completed under the old snapshot"
# their pending versions are still in the claim index, gone for any new snapshot
at=$(q "SELECT id FROM jobq._claim_floor('ext')")
[ -n "$at" ] && [ "$at" -ge $(( last - 10 )) ] || it_fail "the floor did not move past the claimed jobs (floor id '$at', last job $last)"
it_ok "the floor moved past the 3000 gone entries (floor at id $at)"

# A higher priority sorts before the floor: the submit lowers it.
raise_floor
id=$(q "SELECT jobq.submit('ext', priority => 5)")
assert_eq "$(floor_before "$id")" t "a higher-priority submit lowers the floor to its key"
assert_eq "$(claim_one)" "$id" "the claim takes the higher-priority job"
complete "$id"

# run_at before the floor's.
raise_floor
id=$(q "SELECT jobq.submit('ext', run_at => now() - interval '1 hour')")
assert_eq "$(floor_before "$id")" t "a submit with an earlier run_at lowers the floor"
assert_eq "$(claim_one)" "$id" "the claim takes the job with the earlier run_at"

# A retry puts the job back (new run_at): the fail notes it.
raise_floor "the job is claimed"
assert_eq "$(q "SELECT jobq.fail($id, 1, 'try again', 'transient')")" pending "failed attempt retried"
assert_eq "$(floor_before "$id")" t "the retry lowers the floor to the job's new key"
# due 1 ms later
wait_for "SELECT coalesce((SELECT id FROM jobq.claim('ext', 1))::text, 'none')" "$id" 5 || it_fail "the retried job was not claimed again"
it_ok "the retried job is claimed again"
complete "$id"

# retry_now moves a scheduled job's run_at back to now.
id=$(q "SELECT jobq.submit('ext', run_at => now() + interval '1 hour')")
assert_eq "$(claim_one)" "" "a job scheduled in an hour is not claimed"
q "SELECT jobq.retry_now($id)" >/dev/null
assert_eq "$(floor_before "$id")" t "retry_now lowers the floor to the job's new key"
assert_eq "$(claim_one)" "$id" "after retry_now the claim takes it"
complete "$id"

# requeue_dead submits a dead letter again.
id=$(q "SELECT jobq.submit('ext', priority => 7)")
assert_eq "$(claim_one)" "$id" "claimed the job that will die"
assert_eq "$(q "SELECT jobq.fail($id, 1, 'no', 'permanent')")" failed "a permanent failure dead-letters the job"
raise_floor "the dead job is gone"
new=$(q "SELECT jobq.requeue_dead(d.id) FROM jobq.dead_letter d WHERE d.job_id = $id")
assert_eq "$(floor_before "$new")" t "requeue_dead lowers the floor to the new job's key"
assert_eq "$(claim_one)" "$new" "the requeued job is claimed"
complete "$new"

# A claim still in progress is not gone: the floor stays before it, and when
# that claim rolls back its job is claimed by the next one.
raise_floor
id=$(q "SELECT jobq.submit('ext', priority => 9)")
PGAPPNAME=floor_claimer psql -X -q -c "BEGIN; SELECT jobq.claim('ext', 1); SELECT pg_sleep(1.5); ROLLBACK" >/dev/null &
claimer=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'floor_claimer' AND wait_event = 'PgSleep'" 1 10 || it_fail "claimer"
other=$(q "SELECT jobq.submit('ext')")
assert_eq "$(claim_one)" "$other" "a claim skips the job another claim holds"
complete "$other"
wait "$claimer"
assert_eq "$(claim_one)" "$id" "the job of the rolled-back claim is claimed afterwards"
complete "$id"

# A job whose submit has not committed is not gone either: a claim that
# raises the floor meanwhile stops before it, even with gone entries after it.
raise_floor
PGAPPNAME=floor_submitter psql -X -q -c "BEGIN; SELECT jobq.submit('ext', priority => 9); SELECT pg_sleep(1.5); COMMIT" >/dev/null &
submitter=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'floor_submitter' AND wait_event = 'PgSleep'" 1 10 || it_fail "submitter"
assert_eq "$(claim_one)" "" "nothing to claim while the submit is uncommitted"
wait "$submitter"
id=$(q "SELECT max(id) FROM jobq.jobs WHERE queue = 'ext'")
assert_eq "$(claim_one)" "$id" "the job is claimed once its submit commits"
complete "$id"

# A job not due yet (scheduled, or a retry in backoff) does not hold the
# floor back while the stream behind it is claimed: the floor passes it and
# comes back to it when it is due.
raise_floor
sid=$(q "SELECT jobq.submit('ext', priority => 8, run_at => clock_timestamp() + interval '3 seconds')")
q "SELECT count(*) FROM jobq.submit_batch('ext', (SELECT jsonb_agg(i) FROM generate_series(1, 500) i))" >/dev/null
q "CALL public.drain(60)"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'ext' AND id >= $sid AND state <> 'completed'")" 1 "only the scheduled job is left"
assert_eq "$(floor_before "$sid")" f "the floor passed the job that is not due yet"
wait_for "SELECT coalesce((SELECT id FROM jobq.claim('ext', 1))::text, 'none')" "$sid" 60 || it_fail "the passed job was not claimed once due"
lag=$(q "SELECT round(extract(epoch FROM started_at - run_at)::numeric, 2) FROM jobq.jobs WHERE id = $sid")
it_ok "the passed job is claimed once due (${lag}s after its run_at)"
complete "$sid"

# A submit made with jobq.direct_access off (through SQL) notes its key
# too: the job before the raised floor is claimed.
raise_floor
id=$(q "SET jobq.direct_access = off; SELECT jobq.submit('ext', priority => 10)" | tail -1)
assert_eq "$(claim_one)" "$id" "a job submitted through SQL before the floor is claimed"
complete "$id"

# The executors of a SQL queue use floors too.
q "CREATE FUNCTION public.noop(p jsonb) RETURNS void LANGUAGE sql AS '';
   SELECT jobq.create_queue('f', handler => 'public.noop(jsonb)')" >/dev/null
first=$(q "SELECT min(b) FROM jobq.submit_batch('f', (SELECT jsonb_agg(i) FROM generate_series(1, 3000) i)) b")
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'f' AND state = 'completed'" 3000 60 || it_fail "3000 jobs of f not run"
at=$(q "SELECT id FROM jobq._claim_floor('f')")
[ -n "$at" ] && [ "$at" -ge $(( first + 2900 )) ] || it_fail "the executors' floor did not move (floor id '$at', first job $first)"
it_ok "the executors' floor moved past the gone entries (floor at id $at)"
id=$(q "SELECT jobq.submit('f', priority => 3)")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 5 || it_fail "a higher-priority job of f waited"
it_ok "a higher-priority job of f ran at once"

stop_holder
