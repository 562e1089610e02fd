#!/usr/bin/env bash
# A concurrency-limited SQL queue whose running job is finished by an
# external worker: the idle executors do not watch a full queue, so the
# completion (or failure) must wake one.  With a 10-minute poll interval the
# next job would otherwise wait 10 minutes.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 10min"
q "CREATE EXTENSION jobq"
q "CREATE TABLE public.ran (n int);
   CREATE FUNCTION public.work(p jsonb) RETURNS void LANGUAGE sql AS 'INSERT INTO public.ran VALUES ((p->>''n'')::int)';
   SELECT jobq.create_queue('single', handler => 'public.work(jsonb)', concurrency => 1, max_attempts => 1)" >/dev/null
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 2 20 || it_fail "2 executors"

# n=1 is taken by an external worker in the submitting transaction, so the
# executors woken by the submit find the queue full and go back to sleep
ids=$(q "BEGIN;
         SELECT jobq.submit('single', '{\"n\": 1}');
         SELECT jobq.submit('single', '{\"n\": 2}');
         SELECT id || ' ' || attempt FROM jobq.claim('single', 1);
         COMMIT;" | tail -1)
set -- $ids
sleep 1
assert_eq "$(q "SELECT count(*) FROM public.ran")" 0 "the queue is full: job 2 waits"
q "SELECT jobq.complete($1, $2)" >/dev/null
wait_for "SELECT count(*) FROM public.ran WHERE n = 2" 1 5 || it_fail "job 2 did not start within 5 s of the external completion"
it_ok "an external completion frees the slot and wakes an executor"

ids=$(q "BEGIN;
         SELECT jobq.submit('single', '{\"n\": 3}');
         SELECT jobq.submit('single', '{\"n\": 4}');
         SELECT id || ' ' || attempt FROM jobq.claim('single', 1);
         COMMIT;" | tail -1)
set -- $ids
sleep 1
assert_eq "$(q "SELECT count(*) FROM public.ran WHERE n = 4")" 0 "full again: job 4 waits"
assert_eq "$(q "SELECT jobq.fail($1, $2, 'boom', 'permanent')")" failed "the external worker fails job 3"
wait_for "SELECT count(*) FROM public.ran WHERE n = 4" 1 5 || it_fail "job 4 did not start within 5 s of the external failure"
it_ok "an external failure frees the slot and wakes an executor"
