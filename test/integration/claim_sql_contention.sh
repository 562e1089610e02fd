#!/usr/bin/env bash
# With jobq.direct_access off (every change through SQL statements), four
# executors share one unlimited queue of no-op jobs: no job is given back.
# The SQL claim locks, in READ COMMITTED, the newest version of a row
# changed since its snapshot before rechecking it; a claim racing another
# one would keep the other's just-claimed (running) row locked until it
# commits, and the other executor, completing that job meanwhile, would
# find its own row held and release the job (its handler's work rolled
# back, the job run again).  Claims of a queue are serialised on its row
# in that mode; the direct claim never locks a row it skips.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

JOBS=${JOBS:-20000}

it_start_cluster "jobq.workers = 4"
export JOBQ_DB=sqlc
q "CREATE DATABASE sqlc" postgres
q "ALTER DATABASE sqlc SET jobq.direct_access = off" postgres
q "CREATE EXTENSION jobq
   ;CREATE FUNCTION public.noop(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT'
   ;SELECT jobq.create_queue('c', handler => 'public.noop(jsonb)')" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 4 60 || it_fail "4 executors"
assert_eq "$(q "SELECT current_setting('jobq.direct_access')")" off "the database has the fast paths off"

# in slices, so that executors are claiming while jobs arrive
for _ in 1 2 3 4; do
    q "SELECT count(*) FROM jobq.submit_batch('c', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $((JOBS / 4))) g))" >/dev/null
done
wait_for "SELECT count(*) FROM jobq.jobs_active WHERE queue = 'c'" 0 600 \
    || it_fail "jobs not finished: $(q "SELECT state || ' ' || count(*) FROM jobq.jobs_active GROUP BY state")"
assert_eq "$(q "SELECT count(DISTINCT worker) > 1 FROM jobq.jobs WHERE queue = 'c'")" t \
    "more than one executor ran jobs"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE queue = 'c' AND outcome <> 'completed'")" 0 \
    "no attempt but completed ones (none released)"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'c' AND state = 'completed' AND attempt = 1")" "$JOBS" \
    "every job completed at its first attempt"
