#!/usr/bin/env bash
# docs/workers-external.md: its Python (psycopg, Debian) and Node
# (node-postgres, npm) worker loops, extracted from the page and run
# against a live cluster, directly and through pgbouncer (Debian) in
# transaction pooling mode: every job ends completed with the worker's
# result, or failed (dead letter) with class permanent; heartbeats were
# sent with progress, which the jobs kept; both jobq.finish_and_claim and the last job's complete/fail ran.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3     # Debian's python3, which python3-psycopg is for
"$PY" -c 'import psycopg' 2>/dev/null || it_fail "python3-psycopg is not installed (apt-get install python3-psycopg)"
command -v node >/dev/null && command -v npm >/dev/null || it_fail "node and npm are needed (Debian: apt-get install nodejs npm)"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || it_fail "pgbouncer is not installed (apt-get install pgbouncer)"

# node-postgres from npm, into a git-ignored directory of the checkout
NODE_DIR=$JOBQ_ROOT/test/clients/node
if [ ! -d "$NODE_DIR/node_modules/pg" ]; then
    mkdir -p "$NODE_DIR"
    [ -f "$NODE_DIR/package.json" ] || echo '{"name": "jobq-test-clients", "private": true}' >"$NODE_DIR/package.json"
    ( cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error "pg@${NODE_PG_VERSION:-8}" >&2 ) \
        || it_fail "npm install pg failed"
fi

it_start_cluster "jobq.workers = 0"
q "CREATE EXTENSION jobq"
q "CREATE ROLE mailer LOGIN IN ROLE jobq_worker"

W=$(jobq_mktemp workers)
chmod 755 "$W"
# the two programs, as the page shows them
awk '/^```python$/{p=1; next} /^```$/{p=0} p' "$JOBQ_ROOT/docs/workers-external.md" >"$W/worker.py"
awk '/^```js$/{p=1; next} /^```$/{p=0} p' "$JOBQ_ROOT/docs/workers-external.md" >"$W/worker.js"
[ -s "$W/worker.py" ] && [ -s "$W/worker.js" ] || it_fail "no worker code found in docs/workers-external.md"
chmod 644 "$W"/worker.*

# pgbouncer, transaction pooling, on a free port in the cluster's socket dir
BPORT=$(jobq_free_port)
cat >"$W/pgbouncer.ini" <<INI
[databases]
postgres = host=$PGHOST port=$PGPORT dbname=postgres
[pgbouncer]
listen_addr =
listen_port = $BPORT
unix_socket_dir = $W
auth_type = trust
auth_file = $W/users.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 50
logfile = $W/pgbouncer.log
pidfile = $W/pgbouncer.pid
INI
echo '"mailer" ""' >"$W/users.txt"
chown -R postgres: "$W" 2>/dev/null || true
as_pg "$PGBOUNCER" -d "$W/pgbouncer.ini" || it_fail "pgbouncer did not start"
for _ in $(seq 1 50); do [ -s "$W/pgbouncer.pid" ] && break; sleep 0.1; done
BPID=$(cat "$W/pgbouncer.pid")
[ -n "${JOBQ_PIDFILE:-}" ] && echo "$BPID $W" >>"$JOBQ_PIDFILE"
stop_bouncer() { kill "$BPID" 2>/dev/null || true; rm -rf "$W"; }
trap 'stop_bouncer; it_cleanup' EXIT

DIRECT="host=$PGHOST port=$PGPORT dbname=postgres user=mailer"
BOUNCED="host=$W port=$BPORT dbname=postgres user=mailer"
DIRECT_URL="postgresql://mailer@/postgres?host=$PGHOST&port=$PGPORT"
BOUNCED_URL="postgresql://mailer@/postgres?host=$W&port=$BPORT"

# run_case NAME CMD...: 20 jobs (every 5th fails permanently) in queue NAME,
# two workers at once, each stopping after 7 jobs, then one draining the rest
run_case() {
    local name=$1; shift
    q "SELECT jobq.create_queue('$name', kind => 'external', max_attempts => 3)" >/dev/null
    q "SELECT count(*) FROM jobq.submit_batch('$name',
         (SELECT jsonb_agg(CASE WHEN i % 5 = 0 THEN jsonb_build_object('n', i, 'fail', 'permanent')
                                ELSE jsonb_build_object('n', i) END)
            FROM generate_series(1, 20) i))" >/dev/null
    "$@" "$name" --max-jobs 7 --worker "$name-a" >"$W/$name.a.log" 2>&1 & local a=$!
    "$@" "$name" --max-jobs 7 --worker "$name-b" >"$W/$name.b.log" 2>&1 & local b=$!
    wait "$a" || it_fail "$name: worker a failed: $(cat "$W/$name.a.log")"
    wait "$b" || it_fail "$name: worker b failed: $(cat "$W/$name.b.log")"
    timeout 60 "$@" "$name" --drain --worker "$name-c" >"$W/$name.c.log" 2>&1 \
        || it_fail "$name: draining worker failed: $(cat "$W/$name.c.log")"
    assert_eq "$(q "SELECT count(*) FILTER (WHERE state = 'completed' AND (result->>'double')::int = 2 * (payload->>'n')::int)
                           || '/' || count(*) FILTER (WHERE state = 'failed')
                      FROM jobq.jobs WHERE queue = '$name'")" "16/4" \
        "$name: 16 jobs completed with the worker's result, 4 failed"
    assert_eq "$(q "SELECT count(*) FROM jobq.job_attempts WHERE queue = '$name' AND outcome = 'failed' AND error_class = 'permanent'")" 4 \
        "$name: failures recorded with class permanent, not retried"
    assert_eq "$(q "SELECT count(*) FROM jobq.dead_letter WHERE queue = '$name'")" 4 "$name: dead-lettered"
    assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = '$name' AND state = 'completed' AND last_heartbeat > started_at")" 16 \
        "$name: every completed job sent heartbeats"
    assert_eq "$(q "SELECT count(DISTINCT worker) FROM jobq.jobs WHERE queue = '$name'")" 3 "$name: the three workers took jobs"
    assert_eq "$(q "SELECT count(*) FROM jobq.jobs WHERE queue = '$name' AND state = 'completed' AND progress = 0.5 AND progress_note = 'halfway'")" 16 \
        "$name: every completed job kept the progress its worker reported with heartbeat"
}

run_case py_direct "$PY" "$W/worker.py" "$DIRECT"
run_case py_bouncer "$PY" "$W/worker.py" "$BOUNCED"
run_case node_direct env NODE_PATH="$NODE_DIR/node_modules" node "$W/worker.js" "$DIRECT_URL"
run_case node_bouncer env NODE_PATH="$NODE_DIR/node_modules" node "$W/worker.js" "$BOUNCED_URL"
[ "$(grep -c 'login attempt: db=postgres user=mailer' "$W/pgbouncer.log")" -ge 6 ] \
    || it_fail "the bouncer cases did not go through pgbouncer: $(tail -5 "$W/pgbouncer.log")"
it_ok "the bouncer cases went through pgbouncer (pool_mode = transaction)"
