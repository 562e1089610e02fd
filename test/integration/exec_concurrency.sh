#!/usr/bin/env bash
# A queue's concurrency limit holds across all executors (and external
# workers): handlers record their start and end, and no instant has more
# than the limit running.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 4" "jobq.poll_interval = 100ms"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.span (job int, started timestamptz, ended timestamptz);
CREATE FUNCTION public.work(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  PERFORM pg_sleep(0.1);
  INSERT INTO public.span VALUES ((p->>'n')::int, t0, clock_timestamp());
END \$\$;
SELECT jobq.create_queue('limited', handler => 'public.work(jsonb)', concurrency => 2);
SELECT jobq.create_queue('free', handler => 'public.work(jsonb)');
"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 4 20 || it_fail "4 executors"
q "SELECT count(*) FROM jobq.submit_batch('limited', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 24) g))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'limited' AND state = 'completed'" 24 60 || it_fail "limited jobs did not finish"
overlap=$(q "
SELECT max(c) FROM (
  SELECT (SELECT count(*) FROM public.span s2 WHERE s2.started <= s.started AND s2.ended > s.started) AS c
    FROM public.span s) x")
[ "$overlap" -le 2 ] || it_fail "concurrency 2 exceeded: $overlap at once"
[ "$overlap" -eq 2 ] || it_fail "limit never reached (overlap $overlap): the test proves nothing"
it_ok "at most 2 of 24 jobs ran at once with 4 executors"

# Without a limit the same jobs do overlap beyond 2 (the test can tell).
q "TRUNCATE public.span"
q "SELECT count(*) FROM jobq.submit_batch('free', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 24) g))" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'free' AND state = 'completed'" 24 60 || it_fail "free jobs did not finish"
overlap=$(q "
SELECT max(c) FROM (
  SELECT (SELECT count(*) FROM public.span s2 WHERE s2.started <= s.started AND s2.ended > s.started) AS c
    FROM public.span s) x")
[ "$overlap" -gt 2 ] || it_fail "unlimited queue only reached $overlap"
it_ok "unlimited queue reached $overlap at once"

# rate_limit: at most N starts per second across executors (token bucket,
# capacity max(1, N)): 12 jobs at 4/s need at least ~2 s after the first 4.
q "TRUNCATE public.span"
q "SELECT jobq.create_queue('rated', handler => 'public.work(jsonb)', rate_limit => 4);
   SELECT jobq.pause_queue('rated');
   SELECT count(*) FROM jobq.submit_batch('rated', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 12) g));
   SELECT jobq.resume_queue('rated');" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'rated' AND state = 'completed'" 12 60 || it_fail "rated jobs did not finish"
spread=$(q "SELECT round(extract(epoch FROM max(started) - min(started)) * 1000) FROM public.span")
[ "$spread" -ge 1500 ] || it_fail "12 jobs at 4/s started within ${spread} ms"
per_s=$(q "SELECT max(c) FROM (SELECT count(*) AS c FROM public.span s1, LATERAL (SELECT 1 FROM public.span s2 WHERE s2.started >= s1.started AND s2.started < s1.started + interval '1 second') x GROUP BY s1.job) y")
[ "$per_s" -le 8 ] || it_fail "$per_s starts within one second (rate_limit 4, burst 4)"
it_ok "rate_limit 4/s: 12 starts spread over ${spread} ms, at most $per_s in any second"
