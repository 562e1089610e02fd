#!/usr/bin/env bash
# An executor never loses a batch of finished work to a user's statement:
# a transaction cancelling several jobs holds the row of one (J2) while the
# executor finishes it, and then waits for another (J1) that the executor
# completed in the same, not yet committed, batch.  Before, the executor
# waited for the user's lock on J2 and the two deadlocked (the executor,
# waiting first, could be the one aborted, losing J1's completion).  Now the
# executor skips J2's row, commits the batch, and settles J2 once the user
# ends: cancelled if the user commits; run again if the user rolls back.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms" "deadlock_timeout = 100ms"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.gate (x int);
CREATE TABLE public.done (n int);
CREATE FUNCTION public.h(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    IF p ? 'gate' THEN PERFORM count(*) FROM public.gate; END IF;
    INSERT INTO public.done VALUES ((p->>'n')::int);
END \$\$;
SELECT jobq.create_queue('q', handler => 'public.h(jsonb)', max_attempts => 3);
"

# Sessions driven line by line through a FIFO; their output goes to a file.
session_start() {   # NAME
    mkfifo "$IT_DIR/$1.in"
    psql -X -q -A -t -d postgres <"$IT_DIR/$1.in" >"$IT_DIR/$1.out" 2>&1 &
    eval "exec {fd_$1}>\"$IT_DIR/$1.in\""
}
session_send() {    # NAME SQL
    local fd_var="fd_$1"
    printf '%s\n' "$2" >&"${!fd_var}"
}
session_wait() {    # NAME TEXT: wait until the session printed TEXT
    local deadline=$(( $(date +%s) + 60 ))
    while ! grep -qF -- "$2" "$IT_DIR/$1.out"; do
        [ "$(date +%s)" -lt "$deadline" ] || { cat "$IT_DIR/$1.out" >&2; it_fail "session $1 never printed $2"; }
        sleep 0.05
    done
}

executor_waits_for() {  # LOCKTYPES: the executor waits for a lock of these types
    wait_for "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
               WHERE a.backend_type = 'jobq executor' AND NOT l.granted AND l.locktype IN ($1)" t 60 \
        || it_fail "executor not waiting for a lock ($1)"
}

round() {   # FIRST SECOND END(COMMIT|ROLLBACK); sets RJ1, RJ2 (the job ids)
    local a=$1 b=$2 end=$3 j1 j2
    # quick jobs first: the executor then claims many jobs at once (its
    # batch size follows the recent job times), so that J1 and J2 share one
    # batch transaction
    q "SELECT count(jobq.submit('q', jsonb_build_object('n', 1000 * $a + g))) FROM generate_series(1, 40) g" >/dev/null
    wait_for "SELECT count(*) FROM jobq.jobs WHERE state <> 'completed' AND queue = 'q' AND (payload->>'n')::int > 999" 0 60 \
        || it_fail "warm-up jobs not done"
    session_start "gate$a"
    session_send "gate$a" "BEGIN; LOCK TABLE public.gate IN ACCESS EXCLUSIVE MODE; SELECT 'gate locked';"
    session_wait "gate$a" "gate locked"
    # one claim takes both (committed before they run): J1 finishes, J2 waits at the gate
    read -r j1 j2 < <(q "SELECT jobq.submit('q', jsonb_build_object('n', $a)), jobq.submit('q', jsonb_build_object('n', $b, 'gate', true))" | tr '|' ' ')
    wait_for "SELECT job_id FROM jobq.workers WHERE kind = 'executor'" "$j2" 60 || it_fail "J2 not running"
    executor_waits_for "'relation'"

    session_start "user$a"
    session_send "user$a" "BEGIN; SELECT 'cancel2:' || jobq.cancel($j2);"
    session_wait "user$a" "cancel2:t"
    session_send "gate$a" "ROLLBACK; SELECT 'gate open';"  # J2's handler returns; its row is the user's
    session_wait "gate$a" "gate open"
    # the executor either waits for the user's lock on J2 (the old way) or
    # has committed the batch and waits to settle J2
    executor_waits_for "'transactionid', 'tuple'"
    session_send "user$a" "SELECT 'cancel1:' || jobq.cancel($j1);"
    session_wait "user$a" "cancel1:"
    session_send "user$a" "$end;"
    eval "exec {fd_user$a}>&- {fd_gate$a}>&-"
    assert_eq "$(grep -c 'cancel1:f' "$IT_DIR/user$a.out")" 1 "round $a: J1 was already completed when the user reached it"
    assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE job_id = $j1")" 1 "round $a: J1 ran once (its batch was not lost)"
    wait_for "SELECT state FROM jobq.jobs WHERE id = $j1" completed 30 || it_fail "J1 not completed"
    assert_eq "$(q "SELECT count(*) FROM public.done WHERE n = $a")" 1 "round $a: J1's work committed once"
    RJ1=$j1 RJ2=$j2
}

# 1. the user commits: J2 ends cancelled, its handler's writes undone
round 1 2 COMMIT; j2=$RJ2
wait_for "SELECT state FROM jobq.jobs WHERE id = $j2" cancelled 30 || it_fail "J2 not cancelled"
assert_eq "$(q "SELECT count(*) FROM public.done WHERE n = 2")" 0 "a cancelled job's writes are rolled back"

# 2. the user rolls back: J2 is released and runs again, once
round 3 4 ROLLBACK; j4=$RJ2
wait_for "SELECT state FROM jobq.jobs WHERE id = $j4" completed 30 || it_fail "J4 not completed after the user's rollback"
assert_eq "$(q "SELECT count(*) FROM public.done WHERE n = 4")" 1 "J4's work committed exactly once"
assert_eq "$(q "SELECT string_agg(outcome, ',' ORDER BY attempt) FROM jobq.job_attempts WHERE job_id = $j4")" \
    "released,completed" "J4: released without using an attempt, then completed"

if grep -q "deadlock detected" "$IT_DIR/server.log"; then
    grep -B2 -A6 "deadlock detected" "$IT_DIR/server.log" >&2
    it_fail "a deadlock was detected"
fi
it_ok "no deadlock, no batch lost"
