#!/usr/bin/env bash
# Extreme values that the API accepts must work when the executors use them,
# or be refused where they are given (22023).  pgtap/90_hostile_inputs calls
# every function with such values; this test runs the jobs, which only an
# executor does:
#   * an attempt timeout (a queue's, a job's own) longer than
#     statement_timeout can hold (INT_MAX ms, about 24.8 days) must not fail
#     every attempt: the job completes;
#   * one shorter than a millisecond must not turn into "no limit": a 0.5 s
#     handler ends as a timeout;
#   * a tiny rate_limit (claims of its queue must not fail, which makes
#     executors exit and restart), and backoff delays that reach past the end of
#     timestamptz, must not stop the executors: after such a queue's job
#     ran, a job of another queue still completes, and the job's retry is
#     not before its delay;
#   * an explicit retry delay (jobq.retry_later) past the end of timestamptz
#     is still a minimum: the job does not run again at once.
# Every case runs (failures are counted, and the test fails at the end), so
# one run reports them all; a case starts once the executors are at work.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 100ms"
q "CREATE EXTENSION jobq"
q "CREATE FUNCTION public.quick(p jsonb) RETURNS void LANGUAGE sql AS '';
   CREATE FUNCTION public.slow(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(0.5)';
   CREATE FUNCTION public.transient(p jsonb) RETURNS void LANGUAGE plpgsql AS
     \$\$ BEGIN RAISE EXCEPTION 'try again' USING ERRCODE = '40001'; END \$\$;
   CREATE FUNCTION public.later(p jsonb) RETURNS void LANGUAGE plpgsql AS
     \$\$ BEGIN PERFORM jobq.retry_later('later', (p->>'after')::interval); END \$\$;
   SELECT jobq.create_queue('canary', 'public.quick(jsonb)');"

FAILS=0
bad() { log "FAIL: $*"; FAILS=$((FAILS + 1)); }

# try SQL: prints the value, or ERROR <sqlstate>
try() {
    { psql -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -d postgres -c "$1" 2>&1 || true; } |
        sed -E 's/^(psql:[^:]*:[0-9]+: )?ERROR: +([0-9A-Z]{5}).*/ERROR \2/'
}

# refused RESULT WHAT: true when RESULT is a 22023 refusal (ok), false when it
# is a value; another error is a failure.
refused() {
    case "$1" in
        "ERROR 22023") it_ok "$2: refused (22023)"; return 0 ;;
        ERROR*) bad "$2: refused with $1, not 22023"; return 0 ;;
    esac
    return 1
}

# a job of another queue completes: the executors are still at work
canary() {
    local id; id=$(q "SELECT jobq.submit('canary')")
    if wait_for "SELECT state FROM jobq.jobs WHERE id = $id" completed 30; then
        it_ok "$1: a job of another queue still completes"
    else
        bad "$1: the executors stopped: a job of another queue did not complete ($(q "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'") executors; log: $(grep -E 'executor ERROR' "$IT_DIR/server.log" | tail -1))"
    fi
}

# queue_job QUEUE_NAME HANDLER 'OPTIONS' ['PAYLOAD']: create the queue with the
# options and submit one job: the job id, or ERROR <sqlstate> from either
queue_job() {
    local r
    r=$(try "SELECT jobq.create_queue('$1', 'public.$2(jsonb)' $3)")
    case "$r" in ERROR*) echo "$r"; return ;; esac
    try "SELECT jobq.submit('$1', '${4:-{\}}')"
}

final_state() {
    wait_for "SELECT state IN ('completed', 'failed') FROM jobq.jobs WHERE id = $1" t 30 >/dev/null 2>&1 || true
    q "SELECT state || coalesce(' ' || error_type || ': ' || last_error, '') FROM jobq.jobs WHERE id = $1"
}

# ---- attempt timeouts ------------------------------------------------------
n=0
for t in '25 days' '1000 years' '178000000 years'; do
    n=$((n + 1))
    r=$(queue_job "long_$n" quick ", timeout => '$t', max_attempts => 1")
    if ! refused "$r" "queue timeout $t"; then
        s=$(final_state "$r")
        [ "$s" = completed ] && it_ok "queue timeout $t: the job completes" || bad "queue timeout $t: $s"
    fi
    r=$(try "SELECT jobq.submit('canary', timeout => '$t')")
    if ! refused "$r" "job timeout $t"; then
        s=$(final_state "$r")
        [ "$s" = completed ] && it_ok "job timeout $t: the job completes" || bad "job timeout $t: $s"
    fi
done
q "SELECT jobq.create_queue('slow', 'public.slow(jsonb)', max_attempts => 1)" >/dev/null
n=0
for t in '500 microseconds' '1 microsecond'; do
    n=$((n + 1))
    r=$(queue_job "short_$n" slow ", timeout => '$t', max_attempts => 1")
    if ! refused "$r" "queue timeout $t"; then
        s=$(final_state "$r")
        case "$s" in "failed timeout"*) it_ok "queue timeout $t: a 0.5 s handler times out" ;;
                     *) bad "queue timeout $t: a 0.5 s handler ends '$s', not as a timeout" ;; esac
    fi
    r=$(try "SELECT jobq.submit('slow', timeout => '$t')")
    if ! refused "$r" "job timeout $t"; then
        s=$(final_state "$r")
        case "$s" in "failed timeout"*) it_ok "job timeout $t: a 0.5 s handler times out" ;;
                     *) bad "job timeout $t: a 0.5 s handler ends '$s', not as a timeout" ;; esac
    fi
done
canary "after the timeouts"

# ---- an explicit retry delay past the end of timestamptz ---------------------
q "SELECT jobq.create_queue('later', 'public.later(jsonb)', max_attempts => 5)" >/dev/null
for a in '1000 years' '300000 years'; do
    id=$(q "SELECT jobq.submit('later', jsonb_build_object('after', '$a'))")
    if wait_for "SELECT count(*) > 0 FROM jobq.job_attempts WHERE job_id = $id" t 30 >/dev/null; then
        s=$(q "SELECT state || ' attempt ' || attempt || CASE WHEN run_at > now() + interval '100 years' THEN ' far' ELSE ' soon' END FROM jobq.jobs WHERE id = $id")
        case "$s" in "pending attempt 1 far"|"failed"*) it_ok "retry_later after $a: $s" ;;
                     *) bad "retry_later after $a: after the first attempt the job is '$s' (the delay is a minimum)" ;; esac
    else
        bad "retry_later after $a: the attempt was never recorded"
    fi
    q "SELECT jobq.cancel($id)" >/dev/null 2>&1 || true
done
canary "after retry_later"

# executors at work again (a failing case may have left them in their
# restart backoff, up to 60 s), so that one case does not fail the next
wait_for "SELECT state FROM jobq.jobs WHERE id = $(q "SELECT jobq.submit('canary')")" completed 90 >/dev/null \
    || bad "the executors did not come back after the previous case"

# ---- backoff delays past the end of timestamptz ------------------------------
r=$(queue_job far_backoff transient ", base_delay => '178000000 years', max_delay => '178000000 years', max_attempts => 3")
if ! refused "$r" "base_delay and max_delay 178000000 years"; then
    if wait_for "SELECT count(*) FROM jobq.job_attempts WHERE job_id = $r" 1 30 >/dev/null; then
        s=$(q "SELECT state || ' attempt ' || attempt || CASE WHEN run_at > now() + interval '100 years' THEN ' far' ELSE ' soon' END FROM jobq.jobs WHERE id = $r")
        case "$s" in "pending attempt 1 far"|"failed"*) it_ok "backoff past timestamptz: $s" ;;
                     *) bad "backoff past timestamptz: after the first attempt the job is '$s'" ;; esac
    else
        bad "backoff past timestamptz: the failed attempt was never recorded (job: $(q "SELECT state || ' attempt ' || attempt FROM jobq.jobs WHERE id = $r"); log: $(grep -E 'executor ERROR' "$IT_DIR/server.log" | tail -1))"
    fi
    canary "backoff past timestamptz"
    q "SELECT jobq.cancel($r)" >/dev/null 2>&1 || true
fi

# executors at work again (a failing case may have left them in their
# restart backoff, up to 60 s), so that one case does not fail the next
wait_for "SELECT state FROM jobq.jobs WHERE id = $(q "SELECT jobq.submit('canary')")" completed 90 >/dev/null \
    || bad "the executors did not come back after the previous case"

# ---- tiny rate limits (the smallest is a denormal float8) -------------------
n=0
for rl in 1e-300 4.9e-324; do
    n=$((n + 1))
    errs0=$(grep -cE 'executor ERROR' "$IT_DIR/server.log" || true)
    r=$(queue_job "rl_tiny_$n" quick ", rate_limit => $rl")
    if ! refused "$r" "rate_limit $rl"; then
        q "SELECT jobq.submit('rl_tiny_$n') FROM generate_series(1, 2)" >/dev/null
        wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'rl_tiny_$n' AND state = 'completed'" 1 30 >/dev/null \
            || bad "rate_limit $rl: the first job did not run"
        canary "rate_limit $rl"
        errs=$(grep -cE 'executor ERROR' "$IT_DIR/server.log" || true)
        [ "$errs" = "$errs0" ] || bad "rate_limit $rl: executors fail: $(grep -E 'executor ERROR' "$IT_DIR/server.log" | tail -1)"
        q "SELECT jobq.pause_queue('rl_tiny_$n')" >/dev/null
    fi
done

[ "$FAILS" = 0 ] || it_fail "$FAILS checks failed (above)"
