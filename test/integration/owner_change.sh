#!/usr/bin/env bash
# The entry points run as the extension's owner, which jobq keeps in a
# backend-local cache (owner_switch.c): after REASSIGN OWNED gives the extension
# to another role and the old owner is dropped, a session that already used
# jobq keeps working, as the new owner.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 0"
q "CREATE ROLE own1 SUPERUSER; CREATE ROLE own2 SUPERUSER"
q "SET ROLE own1; CREATE EXTENSION jobq; SELECT jobq.create_queue('ext', kind => 'external')" >/dev/null
assert_eq "$(q "SELECT extowner::regrole FROM pg_extension WHERE extname = 'jobq'")" own1 "installed by own1"

# one session throughout (unique_key: that submit runs SQL, whose privilege
# checks a stale, dropped owner would fail): submit and claim before and after the change
out=$(psql -X -q -A -t -v ON_ERROR_STOP=1 <<'SQL'
SELECT jobq.submit('ext', unique_key => 'a') > 0;
SELECT count(*) FROM jobq.claim('ext', 1);
REASSIGN OWNED BY own1 TO own2;
DROP ROLE own1;
SELECT extowner::regrole FROM pg_extension WHERE extname = 'jobq';
SELECT jobq.submit('ext', unique_key => 'b') > 0;
SELECT count(*) FROM jobq.claim('ext', 1);
SELECT jobq.complete(id, attempt) FROM jobq.jobs WHERE state = 'running' ORDER BY id LIMIT 1;
SELECT count(*) FROM jobq.jobs WHERE state = 'completed';
SQL
)
assert_eq "$(echo $out)" "t 1 own2 t 1 t 1" "the same session submits, claims and completes as the new owner"

# jobs_active given to another role, then the extension's owner changes
# again: the cache must not keep the old owner (only trusted while the
# table belongs to the extension's owner).
q "CREATE ROLE own3 SUPERUSER; CREATE ROLE own4 SUPERUSER"
out=$(psql -X -q -A -t -v ON_ERROR_STOP=1 <<'SQL'
ALTER TABLE jobq.jobs_active OWNER TO own3;
SELECT jobq.submit('ext', unique_key => 'c') > 0;
REASSIGN OWNED BY own2 TO own4;
DROP ROLE own2;
SELECT extowner::regrole FROM pg_extension WHERE extname = 'jobq';
SELECT jobq.submit('ext', unique_key => 'd') > 0;
SQL
)
assert_eq "$(echo $out)" "t own4 t" "with jobs_active owned by another role, a change of the extension's owner is seen"
