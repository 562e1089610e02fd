#!/usr/bin/env bash
# Lost-job recovery does not depend on clocks or start order: a running job
# whose executor token no live executor holds is recovered as worker_lost,
# whether the token is larger or smaller than any this server hands out (as
# in a row restored from another server, or left by a promoted standby's
# primary).  Jobs of live executors are left alone.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms"
q "CREATE EXTENSION jobq"
q "
CREATE FUNCTION public.h(p jsonb) RETURNS void LANGUAGE sql AS '';
SELECT jobq.create_queue('q', handler => 'public.h(jsonb)');
SELECT jobq.pause_queue('q');
"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor' AND state <> 'starting'" 2 30 || it_fail "executors not up"
big=$(q "SELECT jobq.submit('q', '{\"token\": \"big\"}')")
small=$(q "SELECT jobq.submit('q', '{\"token\": \"small\"}')")
# as a restore would leave them: running, held by executors of another server
q "UPDATE jobq.jobs_active SET state = 'running', attempt = 1, started_at = now(),
          last_heartbeat = now(), lease_expires_at = now() + interval '1 day',
          claimed_by = CASE WHEN id = $big THEN 9223372036854775000 ELSE 1 END
    WHERE id IN ($big, $small)" >/dev/null
wait_for "SELECT string_agg(state || ' ' || error_type, ',' ORDER BY id) FROM jobq.jobs WHERE id IN ($big, $small)" \
    "pending worker_lost,pending worker_lost" 30 || it_fail "foreign tokens not recovered"
assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE job_id IN ($big, $small) AND error_class = 'worker_lost'")" 2 \
    "each recovery recorded as a worker_lost attempt"
# tokens are random: the executors' (and the HTTP worker's) are neither of
# those, and differ
wait_for "SELECT count(DISTINCT t) FROM unnest(jobq._live_executor_tokens()) t WHERE t NOT IN (1, 9223372036854775000) AND t > 0" 3 30 \
    || it_fail "not three distinct random tokens"
it_ok "two live executors and the HTTP worker, three distinct random tokens"
q "SELECT jobq.resume_queue('q')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($big, $small) AND state = 'completed'" 2 30 || it_fail "recovered jobs did not run"
it_ok "recovered jobs ran"
