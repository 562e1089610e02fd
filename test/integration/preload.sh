#!/usr/bin/env bash
# Without shared_preload_libraries, CREATE EXTENSION fails with a clear
# error and hint, and nothing is created.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "shared_preload_libraries = ''"
out=$(psql -X -d postgres -c "CREATE EXTENSION jobq" 2>&1 || true)
echo "$out"
echo "$out" | grep -q 'ERROR:  jobq must be loaded via shared_preload_libraries' || it_fail "no clear error"
echo "$out" | grep -q 'HINT:  Add jobq to shared_preload_libraries' || it_fail "no hint"
assert_eq "$(q "SELECT count(*) FROM pg_extension WHERE extname = 'jobq'")" 0 "nothing installed"
