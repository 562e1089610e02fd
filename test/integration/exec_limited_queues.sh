#!/usr/bin/env bash
# Several executors claiming from several limited queues at once never
# deadlock: a claim round takes at most one queue-row lock, so no two
# executors can wait on each other's queue rows.  Every job runs exactly
# once, on its first attempt, and the server log has no deadlock.
# Also: an executor waiting for a rate limit's next token sleeps until then
# instead of polling the queue row (no churn of dead queue tuples).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 4" "jobq.poll_interval = 1s"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.ran (job int, queue text);
CREATE FUNCTION public.work(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO public.ran VALUES ((p->>'n')::int, p->>'q');
END \$\$;
SELECT jobq.create_queue('lim' || i, handler => 'public.work(jsonb)', concurrency => 100)
  FROM generate_series(1, 6) i;
SELECT jobq.create_queue('rat' || i, handler => 'public.work(jsonb)', rate_limit => 100000)
  FROM generate_series(1, 2) i;
"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 4 20 || it_fail "4 executors"

# 8 queues x 600 quick jobs, submitted while the executors already run so
# their claim rounds overlap over and over.
for round in 1 2 3; do
    q "SELECT count(*) FROM (SELECT jobq.submit_batch(qn, (SELECT jsonb_agg(jsonb_build_object('n', g, 'q', qn))
                                                 FROM generate_series(($round - 1) * 200 + 1, $round * 200) g))
                             FROM unnest(ARRAY['lim1','lim2','lim3','lim4','lim5','lim6','rat1','rat2']) qn) x" >/dev/null
done
wait_for "SELECT count(*) FROM jobq.jobs WHERE state = 'completed'" 4800 120 \
    || it_fail "jobs did not all complete: $(q "SELECT state, count(*) FROM jobq.jobs GROUP BY 1")"
assert_eq "$(q "SELECT count(*) FROM (SELECT DISTINCT job, queue FROM public.ran) x")" 4800 "4800 distinct jobs ran"
assert_eq "$(q "SELECT count(*) FROM public.ran")" 4800 "each exactly once"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE attempt > 1 OR outcome <> 'completed'")" 0 \
    "every job completed on its first attempt"
[ -s "$IT_DIR/server.log" ] || it_fail "no server log at $IT_DIR/server.log"
if grep -q "deadlock detected" "$IT_DIR/server.log"; then
    grep -B2 -A12 "deadlock detected" "$IT_DIR/server.log" | head -40 >&2
    it_fail "the server log shows a deadlock"
fi
it_ok "no deadlock between executors over limited queues"

# Out of tokens: 3 jobs at 0.5/s take ~4 s; meanwhile the executors must
# sleep until the next token, not poll the queue (a due job they may not
# take yet would otherwise wake them every millisecond), and a claim that
# finds nothing must not rewrite the queue row.
q "SELECT jobq.create_queue('slow', handler => 'public.work(jsonb)', rate_limit => 0.5)" >/dev/null
sleep 1.2   # let every executor flush its statistics (at most once a second)
q "SELECT pg_stat_reset_single_table_counters('jobq.queues'::regclass)" >/dev/null
xacts0=$(q "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
q "SELECT count(*) FROM jobq.submit_batch('slow', '[{\"n\":1,\"q\":\"slow\"},{\"n\":2,\"q\":\"slow\"},{\"n\":3,\"q\":\"slow\"}]')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'slow' AND state = 'completed'" 3 30 || it_fail "rate-limited jobs did not finish"
spread=$(q "SELECT round(extract(epoch FROM max(started_at) - min(started_at))) FROM jobq.job_attempts WHERE job_id IN (SELECT id FROM jobq.jobs WHERE queue = 'slow')")
[ "$spread" -ge 3 ] || it_fail "3 jobs at 0.5/s started within ${spread} s"
sleep 1.2
xacts=$(( $(q "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()") - xacts0 ))
updates=$(q "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'jobq.queues'::regclass")
# 4 executors polling every millisecond would commit thousands; sleeping to
# the next token: a few per token and executor, plus this script's polls
[ "$xacts" -le 600 ] || it_fail "$xacts transactions while 3 jobs waited for tokens over ~4 s"
[ "$updates" -le 6 ] || it_fail "the queue row was updated $updates times for 3 starts"
it_ok "waiting for rate-limit tokens: $xacts transactions, $updates queue-row updates over ${spread} s"

# At its concurrency limit a queue is not due: the idle executors sleep
# (the one finishing a job claims the next), they do not poll for it.
q "CREATE FUNCTION public.nap(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(0.5)';
   SELECT jobq.create_queue('single', handler => 'public.nap(jsonb)', concurrency => 1)" >/dev/null
sleep 1.2
xacts0=$(q "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
q "SELECT count(*) FROM jobq.submit_batch('single', '[{},{},{},{},{},{}]')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'single' AND state = 'completed'" 6 30 || it_fail "single-file jobs did not finish"
sleep 1.2
xacts=$(( $(q "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()") - xacts0 ))
[ "$xacts" -le 600 ] || it_fail "$xacts transactions while 6 jobs of a concurrency-1 queue ran one by one"
it_ok "concurrency 1, 6 jobs of 0.5 s: $xacts transactions in all"
