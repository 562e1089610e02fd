#!/usr/bin/env bash
# unique_key under concurrency: sessions submitting the same key at once get
# the same id (one job per key); a session whose key is being inserted by an
# uncommitted transaction waits and gets that job's id once it commits, or
# inserts its own job if it rolls back; a key is free again once final.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster
export JOBQ_DB=uk
q "CREATE DATABASE uk" postgres
q "CREATE EXTENSION jobq"
q "SELECT jobq.create_queue('uk'); SELECT jobq.create_queue('uk2');
   CREATE TABLE public.subs (k int, id bigint)" >/dev/null

dir=$(jobq_mktemp uk)
cat >"$dir/submit.sql" <<'SQL'
\set k random(1, 40)
INSERT INTO public.subs SELECT :k, jobq.submit('uk', '{}', unique_key => 'key-' || :k);
SQL
chmod 644 "$dir/submit.sql"
"$PG_BIN/pgbench" -n -d uk -c 4 -j 4 -t 300 -f "$dir/submit.sql" >"$dir/pgbench.out" 2>&1 \
    || { cat "$dir/pgbench.out" >&2; it_fail "pgbench failed"; }
assert_eq "$(q "SELECT count(*) FROM public.subs")" 1200 "1200 concurrent submits of 40 keys"
assert_eq "$(q "SELECT count(*) FROM (SELECT k FROM public.subs GROUP BY k HAVING count(DISTINCT id) > 1) x")" 0 \
    "every submit of a key returned the same id"
assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = 'uk'")" \
    "$(q "SELECT count(DISTINCT k) FROM public.subs")" "one job per key"

# A holds the key in an open transaction; B submits the same key meanwhile.
psql -X -q -A -t -d uk -c "BEGIN; SELECT jobq.submit('uk2', '{\"who\": \"A\"}', unique_key => 'x'); SELECT pg_sleep(2); COMMIT;" \
    >"$dir/a.out" 2>&1 &
a_pid=$!
sleep 0.5
start=$(date +%s%N)
b_id=$(q "SELECT jobq.submit('uk2', '{\"who\": \"B\"}', unique_key => 'x')")
waited=$(( ($(date +%s%N) - start) / 1000000 ))
wait "$a_pid"
a_id=$(head -1 "$dir/a.out")
assert_eq "$b_id" "$a_id" "B got A's job id once A committed"
[ "$waited" -ge 1000 ] || it_fail "B did not wait for A (${waited} ms)"
it_ok "B waited ${waited} ms for A's transaction"
assert_eq "$(q "SELECT payload->>'who' FROM jobq.jobs WHERE queue = 'uk2'")" "A" "only A's job exists"

# A rolls back: B's own job is inserted.
psql -X -q -A -t -d uk -c "BEGIN; SELECT jobq.submit('uk2', '{\"who\": \"A\"}', unique_key => 'y'); SELECT pg_sleep(1.5); ROLLBACK;" \
    >"$dir/a2.out" 2>&1 &
a_pid=$!
sleep 0.5
b_id=$(q "SELECT jobq.submit('uk2', '{\"who\": \"B\"}', unique_key => 'y')")
wait "$a_pid"
assert_eq "$(q "SELECT payload->>'who' FROM jobq.jobs WHERE id = $b_id")" "B" "after A rolled back, B inserted its own job"

# Final frees the key.
q "SELECT jobq.cancel($a_id)" >/dev/null
new_id=$(q "SELECT jobq.submit('uk2', '{\"who\": \"C\"}', unique_key => 'x')")
[ "$new_id" != "$a_id" ] || it_fail "a final job's key was not freed"
it_ok "once final, the key names a new job ($a_id -> $new_id)"
