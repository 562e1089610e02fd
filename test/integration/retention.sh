#!/usr/bin/env bash
# Retention (issue 14): the executors remove final jobs past their queue's
# retention every jobq.cleanup_interval, with their attempts; jobs within
# retention, pending and running jobs, and failed jobs whose dead letter is
# not resolved stay; a resolved dead letter goes with its failed job after
# jobq.dead_letter_retention; jobq.cleanup does the same by hand (jobq_admin
# only), bounded by max_jobs, in batches that each remove at most their
# bound (jobq._cleanup_batch).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 100ms" "jobq.cleanup_interval = 200ms" \
    "jobq.dead_letter_retention = 1s"
q "CREATE EXTENSION jobq"
q "
CREATE FUNCTION public.h(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF p ? 'fail' THEN PERFORM jobq.give_up('no'); END IF;
  RETURN p;
END \$\$;
SELECT jobq.create_queue('short', handler => 'public.h(jsonb)', retention => '1 second', max_attempts => 1);
SELECT jobq.create_queue('long', handler => 'public.h(jsonb)', retention => '1 hour');
SELECT jobq.create_queue('later', handler => 'public.h(jsonb)', retention => '0');
SELECT jobq.configure_breaker('short', failure_threshold => 100);
" >/dev/null

q "SELECT count(*) FROM jobq.submit_batch('short', (SELECT jsonb_agg(jsonb_build_object('i', i)) FROM generate_series(1, 300) i))" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('long', (SELECT jsonb_agg(jsonb_build_object('i', i)) FROM generate_series(1, 50) i))" >/dev/null
failed=$(q "SELECT jobq.submit('short', '{\"fail\": true}')")
kept_dlq=$(q "SELECT jobq.submit('short', '{\"fail\": true, \"k\": 2}')")
pending=$(q "SELECT jobq.submit('later', run_at => now() + interval '1 day')")
cancelled=$(q "SELECT jobq.submit('short', run_at => now() + interval '1 day')")
q "SELECT jobq.cancel($cancelled)" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs_active WHERE queue <> 'later'" 0 60 || it_fail "jobs not run"

# the short queue's completed and cancelled jobs go, with their attempts
wait_for "SELECT count(*) FROM jobq.jobs_final WHERE queue = 'short' AND state IN ('completed', 'cancelled')" 0 60 \
    || it_fail "short queue's final jobs not removed"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts a WHERE queue = 'short' AND NOT EXISTS (SELECT FROM jobq.jobs j WHERE j.id = a.job_id)")" 0 \
    "no attempt left without its job"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE queue = 'short'")" 2 "the failed jobs' attempts stay"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs_final WHERE queue = 'long'")" 50 "jobs within their queue's retention stay"
assert_eq "$(q "SELECT state FROM jobq.jobs WHERE id = $pending")" pending "pending jobs are never removed"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE id IN ($failed, $kept_dlq)")" 2 "failed jobs with an unresolved dead letter stay"
it_ok "the executors remove final jobs past retention, with their attempts"

# a resolved dead letter goes with its job after jobq.dead_letter_retention
q "SELECT jobq.resolve_dead(id, 'seen') FROM jobq.dead_letter WHERE job_id = $failed" >/dev/null
wait_for "SELECT count(*) FROM jobq.dead_letter WHERE job_id = $failed" 0 60 || it_fail "resolved dead letter not removed"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE id = $failed") $(q "SELECT count(*) FROM jobq.job_attempts WHERE job_id = $failed")" "0 0" \
    "its failed job and attempts went with it"
assert_eq "$(q "SELECT count(*) FROM jobq.dead_letter WHERE job_id = $kept_dlq")" 1 "an unresolved dead letter stays"
it_ok "resolved dead letters removed after jobq.dead_letter_retention"

# by hand: jobq_admin only; bounded; older_than
q "CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA jobq TO app" >/dev/null
err=$(psql -X -q -A -t -U app -d postgres -c "SELECT jobq.cleanup()" 2>&1) && it_fail "a plain role ran cleanup"
case "$err" in *"permission denied"*) ;; *) it_fail "unexpected: $err";; esac
assert_eq "$(q "SELECT jobq._cleanup_batch(7, '0')")" 7 "a batch removes at most its bound"
open_batch=$(q "SELECT jobq.create_batch()")
assert_eq "$(q "SELECT count(*) FROM jobq.job_batches WHERE finished_at IS NOT NULL")" 2 "the two submit_batch batches finished"
assert_eq "$(q "SELECT jobq.cleanup('0', max_jobs => 10)")" 10 "cleanup removes at most max_jobs"
assert_eq "$(q "SELECT jobq.cleanup('1 day')")" 0 "older_than: nothing that recent"
assert_eq "$(q "SELECT jobq.cleanup('0')")" 33 "older_than 0: every completed job"
assert_eq "$(q "SELECT string_agg(id::text, ',') FROM jobq.job_batches")" "$open_batch" \
    "finished batches go with the cleanup; an open one stays"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs_final WHERE state <> 'failed'")" 0 "none left"
err=$(q "SELECT jobq.cleanup('-1 day')" 2>&1) && it_fail "negative older_than taken"
case "$err" in *"older_than must not be negative"*) ;; *) it_fail "unexpected: $err";; esac
it_ok "jobq.cleanup: jobq_admin only, bounded, older_than"
