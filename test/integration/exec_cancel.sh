#!/usr/bin/env bash
# jobq.cancel of a running job interrupts its handler within a second; the
# job ends cancelled, is not retried, and its writes are rolled back.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.marks (n int);
CREATE FUNCTION public.long(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO public.marks VALUES (1); PERFORM pg_sleep(600); END \$\$;
SELECT jobq.create_queue('long', handler => 'public.long(jsonb)', max_attempts => 5);
"
id=$(q "SELECT jobq.submit('long')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id" running 10 || it_fail "job not running"
wait_for "SELECT count(*) FROM jobq.workers WHERE job_id = $id" 1 10 || it_fail "executor not on the job"
# A cancel that rolls back interrupts nothing.
q "BEGIN; SELECT jobq.cancel($id); ROLLBACK;" >/dev/null
sleep 1
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $id")" running "rolled-back cancel: job still running"
assert_eq "$(q "SELECT count(*) FROM jobq.workers WHERE job_id = $id AND state = 'running'")" 1 "rolled-back cancel: handler not interrupted"
start=$(date +%s%N)
assert_eq "$(q "SELECT jobq.cancel($id)")" t "cancel of a running job returns true"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND state = 'idle' AND job_id IS NULL" 1 60 \
    || it_fail "handler not interrupted"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
it_ok "handler interrupted ${ms} ms after cancel (long before it would have ended)"
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $id")" cancelled "job cancelled"
sleep 1
assert_eq "$(q "SELECT state || '/' || attempt FROM jobq.jobs WHERE id = $id")" "cancelled/1" "not retried"
assert_eq "$(q "SELECT count(*) FROM public.marks")" 0 "the interrupted attempt's writes rolled back"
assert_eq "$(q "SELECT count(*) FROM jobq.dead_letter WHERE job_id = $id")" 0 "a cancelled job is not dead-lettered"
assert_eq "$(q "SELECT jobq.cancel($id)")" f "cancelling a final job returns false"

# The executor is free for the next job.
id2=$(q "SELECT jobq.submit('long')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $id2" running 10 || it_fail "next job not started"
q "SELECT jobq.cancel($id2)" >/dev/null
it_ok "executor runs the next job"
