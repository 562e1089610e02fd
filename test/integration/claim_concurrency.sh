#!/usr/bin/env bash
# Several external workers (pgbench clients, as a role in jobq_worker) claim
# and complete 20,000 jobs concurrently: every job is claimed exactly once,
# completed exactly once, none is lost, and no job needs a second attempt.
# Each claim is recorded in a side table by the worker script, without a
# unique constraint, so a double claim would show as a duplicate row.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

JOBS=${JOBS:-20000}
CLIENTS=${CLIENTS:-4}
BATCH=${BATCH:-10}

it_start_cluster
export JOBQ_DB=cc
q "CREATE DATABASE cc" postgres
q "CREATE EXTENSION jobq"
q "CREATE ROLE cc_worker LOGIN IN ROLE jobq_worker;
   GRANT USAGE ON SCHEMA jobq TO cc_worker;
   CREATE TABLE public.claims (job_id bigint NOT NULL, attempt int NOT NULL, client int NOT NULL,
                               completed boolean);
   CREATE INDEX ON public.claims (client) WHERE completed IS NULL;
   GRANT SELECT, INSERT, UPDATE ON public.claims TO cc_worker;
   SELECT jobq.create_queue('cc', max_attempts => 3)" >/dev/null
q "SELECT count(*) FROM jobq.submit_batch('cc', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $JOBS) g))" >/dev/null
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'cc' AND state = 'pending'")" "$JOBS" "$JOBS jobs pending"

# One pgbench transaction = claim a batch (committed), then complete it in a
# second transaction, as an external worker would.
script=$(jobq_mktemp cc)/worker.sql
cat >"$script" <<SQL
BEGIN;
INSERT INTO public.claims (job_id, attempt, client)
SELECT c.id, c.attempt, :client_id FROM jobq.claim('cc', $BATCH, '10 minutes', 'client-' || :client_id) c;
COMMIT;
UPDATE public.claims SET completed = jobq.complete(job_id, attempt, '{"ok": true}')
 WHERE client = :client_id AND completed IS NULL;
SQL
chmod 644 "$script"

# Enough transactions for every job, with margin: the surplus claims find nothing.
per_client=$(( JOBS / BATCH / CLIENTS * 3 / 2 + 10 ))
start=$(date +%s%N)
"$PG_BIN/pgbench" -n -U cc_worker -d cc -c "$CLIENTS" -j "$CLIENTS" -t "$per_client" -f "$script" \
    >"$(dirname "$script")/pgbench.out" 2>&1 || { cat "$(dirname "$script")/pgbench.out" >&2; it_fail "pgbench failed"; }
ms=$(( ($(date +%s%N) - start) / 1000000 ))
it_ok "$CLIENTS workers ran $per_client claim/complete rounds each in ${ms} ms"
grep -E "number of failed|tps" "$(dirname "$script")/pgbench.out" >&2 || true

assert_eq "$(q "SELECT count(*) FROM public.claims")" "$JOBS" "exactly $JOBS claims recorded"
assert_eq "$(q "SELECT count(DISTINCT job_id) FROM public.claims")" "$JOBS" "every job claimed, none twice"
assert_eq "$(q "SELECT count(*) FROM public.claims WHERE completed IS DISTINCT FROM true")" 0 "every claim completed"
assert_eq "$(q "SELECT max(attempt) FROM public.claims")" 1 "no job needed a second attempt"
assert_eq "$(q "SELECT count(DISTINCT client) FROM public.claims")" "$CLIENTS" "all $CLIENTS workers got jobs"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'cc' AND state = 'completed' AND attempt = 1 AND result = '{\"ok\": true}'")" \
    "$JOBS" "all jobs completed with their result"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs_active WHERE queue = 'cc'")" 0 "nothing left in jobs_active"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE queue = 'cc' AND outcome = 'completed'")" "$JOBS" \
    "one attempt row per job"
assert_eq "$(q "SELECT count(*) FROM (SELECT job_id FROM jobq.job_attempts WHERE queue = 'cc' GROUP BY job_id HAVING count(*) > 1) d")" \
    0 "no job has two attempt rows"
assert_eq "$(q "SELECT count(*) FROM public.claims c JOIN jobq.jobs j ON j.id = c.job_id AND j.worker = 'client-' || c.client")" \
    "$JOBS" "each job was completed by the worker that claimed it"
