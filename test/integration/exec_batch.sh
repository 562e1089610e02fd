#!/usr/bin/env bash
# Quick jobs share commits (batches), but each job stays atomic: a failing
# job in a batch loses only its own writes, and a job that violates a
# deferred constraint fails alone (deferred constraints are checked at the
# end of each handler statement) while the rest of its batch completes.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1"
q "CREATE EXTENSION jobq"
q "
CREATE TABLE public.out (n int PRIMARY KEY);
CREATE TABLE public.parent (id int PRIMARY KEY);
CREATE TABLE public.child (pid int REFERENCES public.parent DEFERRABLE INITIALLY DEFERRED);
CREATE FUNCTION public.work(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO public.out VALUES ((p->>'n')::int);
  IF (p->>'n')::int % 7 = 0 THEN
    RAISE EXCEPTION 'multiple of 7' USING ERRCODE = '22000';
  END IF;
  IF (p->>'n')::int = 50 THEN
    -- violates a deferred foreign key: checked at once inside a handler
    INSERT INTO public.child VALUES (12345);
  END IF;
END \$\$;
SELECT jobq.create_queue('w', handler => 'public.work(jsonb)', max_attempts => 1);
SELECT jobq.pause_queue('w');
SELECT count(*) FROM jobq.submit_batch('w', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 300) g));
SELECT jobq.resume_queue('w');
" >/dev/null
q "SELECT jobq.submit('w', '{\"n\": 1000}')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'w' AND state IN ('completed', 'failed')" 301 60 || it_fail "jobs did not finish"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'w' AND state = 'failed'")" 43 "42 multiples of 7 and the deferred violation failed"
assert_eq "$(q "SELECT count(*) FROM public.out WHERE n % 7 = 0")" 0 "failed jobs left no writes"
assert_eq "$(q "SELECT count(*) FROM public.out")" 258 "every completed job's writes are there, once"
assert_eq "$(q "SELECT count(*) FROM public.out WHERE n = 50")" 0 "the job that violated the deferred key left no writes"
assert_eq "$(q "SELECT j.error_type || '/' || a.sqlstate FROM jobq.jobs j JOIN jobq.job_attempts a ON a.job_id = j.id WHERE j.payload->>'n' = '50'")" \
    "validation/23503" "the deferred violation is that job's failure (foreign_key_violation)"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id WHERE j.queue = 'w'")" 301 "one attempt per job"
assert_eq "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobq executor'")" 1 "the executor survived"
