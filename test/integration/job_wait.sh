#!/usr/bin/env bash
# jobq.wait(id, timeout): returns the final state once the job is final,
# woken by the commit that made it final (executor completion, external
# complete and fail, cancel, the SQL twins with jobq.direct_access off,
# COMMIT PREPARED of a prepared completion), not by a rolled-back one; returns pending/running at the timeout; a cancel of
# the waiting query ends it at once; only the owner or jobq_admin may wait
# (42704 otherwise); REPEATABLE READ refused.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "max_prepared_transactions = 4"
q "CREATE EXTENSION jobq"
q "
CREATE FUNCTION public.nap(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN PERFORM pg_sleep((p->>'s')::float8); RETURN p; END \$\$;
SELECT jobq.create_queue('nap', handler => 'public.nap(jsonb)');
SELECT jobq.create_queue('ext', kind => 'external', max_attempts => 1);
CREATE ROLE waiter_a LOGIN; CREATE ROLE waiter_b LOGIN; CREATE ROLE waiter_admin LOGIN IN ROLE jobq_admin;
GRANT USAGE ON SCHEMA jobq TO waiter_a, waiter_b;
"
TMPD=$(jobq_mktemp wait)
ms_now() { echo $(( $(date +%s%N) / 1000000 )); }

# bg_wait NAME SQL [ROLE]: run SQL in the background (application_name NAME),
# output in $TMPD/NAME.out, status in $TMPD/NAME.rc
bg_wait() {
    local name=$1 sql=$2 role=${3:-}
    ( rc=0; PGAPPNAME=$name psql -X -q -A -t ${role:+-U "$role"} -d postgres -c "$sql" >"$TMPD/$name.out" 2>&1 || rc=$?
      echo $rc >"$TMPD/$name.rc" ) &
    wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$name' AND wait_event = 'Extension'" 1 20 \
        || it_fail "$name: not waiting"
}
# done_within NAME SECONDS: the background wait ended within SECONDS
done_within() {
    local d=$(( $(ms_now) + $2 * 1000 ))
    while [ ! -s "$TMPD/$1.rc" ] && [ "$(ms_now)" -lt "$d" ]; do sleep 0.02; done
    [ -s "$TMPD/$1.rc" ]
}

# executor: a job that takes a second; the wait returns with the commit
id=$(q "SELECT jobq.submit('nap', '{\"s\": 1}')")
t0=$(ms_now)
assert_eq "$(q "SELECT jobq.wait($id, '60 seconds')")" completed "wait returns completed when the executor's job ends"
el=$(( $(ms_now) - t0 ))
[ "$el" -lt 30000 ] || it_fail "wait took ${el} ms: not woken before its timeout"
it_ok "returned after ${el} ms (timeout 60 s)"
assert_eq "$(q "SELECT jobq.wait($id, '0 seconds')")" completed "a final job: at once"

# timeout: nothing runs external jobs
e1=$(q "SELECT jobq.submit('ext')")
t0=$(ms_now)
assert_eq "$(q "SELECT jobq.wait($e1, '300 milliseconds')")" pending "at the timeout: the state then (pending)"
el=$(( $(ms_now) - t0 ))
[ "$el" -ge 250 ] || it_fail "returned after ${el} ms, before its timeout"

# external complete wakes the waiter, a rolled-back complete does not
bg_wait w1 "SELECT jobq.wait($e1, '120 seconds')"
q "SELECT id, attempt FROM jobq.claim('ext')" >/dev/null
q "BEGIN; SELECT jobq.complete($e1, 1); ROLLBACK;" >/dev/null
sleep 1
[ ! -s "$TMPD/w1.rc" ] || it_fail "a rolled-back completion ended the wait: $(cat "$TMPD/w1.out")"
it_ok "a rolled-back completion does not end the wait"
q "SELECT jobq.complete($e1, 1)" >/dev/null
done_within w1 20 || it_fail "external completion did not end the wait"
assert_eq "$(cat "$TMPD/w1.out")" completed "external completion wakes the waiter"

# external fail (max_attempts 1: failed), through jobq.finish_and_claim
e2=$(q "SELECT jobq.submit('ext')")
bg_wait w2 "SELECT jobq.wait($e2, '120 seconds')"
q "SELECT jobq.claim('ext')" >/dev/null
q "SELECT finished FROM jobq.finish_and_claim(NULL, $e2, 1, error => 'no', error_class => 'permanent')" >/dev/null
done_within w2 20 || it_fail "fail did not end the wait"
assert_eq "$(cat "$TMPD/w2.out")" failed "fail (dead letter) wakes the waiter"

# cancel, with jobq.direct_access off in the cancelling session
e3=$(q "SELECT jobq.submit('ext')")
bg_wait w3 "SELECT jobq.wait($e3, '120 seconds')"
q "SET jobq.direct_access = off; SELECT jobq.cancel($e3)" >/dev/null
done_within w3 20 || it_fail "cancel did not end the wait"
assert_eq "$(cat "$TMPD/w3.out")" cancelled "cancel wakes the waiter"

# completion through the SQL twin (jobq.direct_access off)
e4=$(q "SELECT jobq.submit('ext')")
bg_wait w4 "SELECT jobq.wait($e4, '120 seconds')"
q "SELECT jobq.claim('ext')" >/dev/null
q "SET jobq.direct_access = off; SELECT jobq.complete($e4, 1)" >/dev/null
done_within w4 20 || it_fail "SQL completion did not end the wait"
assert_eq "$(cat "$TMPD/w4.out")" completed "completion with jobq.direct_access off wakes the waiter"

# a prepared transaction's completion wakes the waiter at COMMIT PREPARED
e6=$(q "SELECT jobq.submit('ext')")
bg_wait w6 "SELECT jobq.wait($e6, '120 seconds')"
q "SELECT jobq.claim('ext')" >/dev/null
q "BEGIN; SELECT jobq.complete($e6, 1); PREPARE TRANSACTION 'wait_p1';" >/dev/null
sleep 1
[ ! -s "$TMPD/w6.rc" ] || it_fail "a prepared, not committed completion ended the wait: $(cat "$TMPD/w6.out")"
q "COMMIT PREPARED 'wait_p1'" >/dev/null
done_within w6 20 || it_fail "COMMIT PREPARED did not end the wait"
assert_eq "$(cat "$TMPD/w6.out")" completed "COMMIT PREPARED wakes the waiter"

# cancel of the waiting query: at once
e5=$(q "SELECT jobq.submit('ext')")
bg_wait w5 "SELECT jobq.wait($e5, '600 seconds')"
t0=$(ms_now)
q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'w5'" >/dev/null
done_within w5 10 || it_fail "cancelled wait still running"
it_ok "cancelled wait ended $(( $(ms_now) - t0 )) ms after pg_cancel_backend"
grep -q "canceling statement due to user request" "$TMPD/w5.out" || it_fail "cancelled wait: $(cat "$TMPD/w5.out")"

# who may wait: owner, jobq_admin; others and unknown ids: 42704
own=$(psql -X -q -A -t -U waiter_a -d postgres -c "SELECT jobq.submit('ext')")
assert_eq "$(psql -X -q -A -t -U waiter_a -d postgres -c "SELECT jobq.wait($own, '0 s')")" pending "the owner may wait"
assert_eq "$(psql -X -q -A -t -U waiter_admin -d postgres -c "SELECT jobq.wait($own, '0 s')")" pending "jobq_admin may wait"
out=$(psql -X -q -A -t -U waiter_b -d postgres -v VERBOSITY=verbose -c "SELECT jobq.wait($own, '0 s')" 2>&1 || true)
[[ "$out" == *42704* ]] || it_fail "another role: $out"
it_ok "another role gets 42704"
out=$(q "SELECT jobq.wait(999999999, '0 s')" 2>&1 || true)
[[ "$out" == *"does not exist"* ]] || it_fail "unknown id: $out"
it_ok "an unknown id: does not exist"
out=$(psql -X -q -A -t -d postgres -v VERBOSITY=verbose -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT jobq.wait($own, '1 s');" 2>&1 || true)
[[ "$out" == *0A000* ]] || it_fail "REPEATABLE READ: $out"
it_ok "REPEATABLE READ refused (0A000)"
out=$(q "SELECT jobq.wait($own, '30 days')" 2>&1 || true)
[[ "$out" == *"out of range"* ]] || it_fail "30 days: $out"
it_ok "a timeout over 24 days refused"
rm -rf "$TMPD"
