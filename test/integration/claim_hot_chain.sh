#!/usr/bin/env bash
# A pending job whose row was updated in place (a HOT update: no indexed
# column changed, so the claim index still points at the first version) is
# claimed: the claim locks the version it found, not the chain's root.
# (Such updates are rare: the update to 0.2.0 makes one for every waiting
# job, pinning its handler.)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms"
q "CREATE EXTENSION jobq"
q "CREATE FUNCTION public.h(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT p';
   SELECT jobq.create_queue('q', handler => 'public.h(jsonb)');
   SELECT jobq.pause_queue('q');" >/dev/null
id=$(q "SELECT jobq.submit('q', '{\"v\": 1}')")
q "UPDATE jobq.jobs_active SET payload = '{\"v\": 2}' WHERE id = $id" >/dev/null
wait_for "SELECT n_tup_hot_upd > 0 FROM pg_stat_user_tables WHERE relname = 'jobs_active'" t 60 || it_fail "the update was not HOT"
q "SELECT jobq.resume_queue('q')" >/dev/null
wait_for "SELECT state || ' ' || result::text FROM jobq.jobs WHERE id = $id" 'completed {"v": 2}' 60 \
    || it_fail "a job whose row was HOT-updated was not claimed"
it_ok "the HOT-updated job was claimed and ran its new version"
