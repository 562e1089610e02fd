# test/lib.sh — shared shell helpers for test/run, test/demo, bench/run and
# the integration tests in test/integration/.  Source it; it defines
# functions and a few variables and starts nothing by itself.
#
# Clusters started here are throwaway: a data directory under a temp dir, a
# free port, the unix socket inside the temp dir, listen_addresses=''.  They
# are stopped by the pid in their postmaster.pid, never by pg_ctlcluster or
# a service manager, so no other cluster on the machine is touched.

JOBQ_ROOT=${JOBQ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BIN=${PG_BIN:-$(dirname "$PG_CONFIG")}
export PG_CONFIG PG_BIN JOBQ_ROOT

JOBQ_DEB_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libcurl4-openssl-dev build-essential python3 python3-prometheus-client python3-yaml iproute2 procps python3-psycopg pgbouncer nodejs"

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# Run a command as the OS user that owns clusters: initdb and postgres refuse
# to run as root, so root runs them as "postgres".
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Install the Debian packages jobq needs, when something is missing.
jobq_ensure_deps() {
    local missing=() p
    for p in $JOBQ_DEB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        die "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postgresql-common creates and starts a "main" cluster on
    # install.  We never use it, and a test run must not leave a server
    # running that was not running before: when postgresql-common is not
    # installed yet, tell it not to create one.
    if ! dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null | grep -q "install ok installed" &&
       [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef \
        "${missing[@]}" >/dev/null \
        || die "apt-get install failed: ${missing[*]}"
    # pgbouncer's package may start its own service: tests start theirs
    if [[ " ${missing[*]} " == *" pgbouncer "* ]]; then
        if command -v systemctl >/dev/null && systemctl is-active --quiet pgbouncer 2>/dev/null; then
            systemctl disable --now pgbouncer >/dev/null 2>&1 || true
        elif [ -x /etc/init.d/pgbouncer ]; then
            /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
        fi
    fi
}

# Build and install the extension.  Our own Asserts run in tests (pgvector's
# trick: the Debian server is not built with assertions, the extension is).
jobq_build_install() {
    local cflags=${JOBQ_CFLAGS--DUSE_ASSERT_CHECKING}
    ( cd "$JOBQ_ROOT" &&
      make -s clean PG_CONFIG="$PG_CONFIG" >/dev/null 2>&1
      make -s PG_CONFIG="$PG_CONFIG" JOBQ_CFLAGS="$cflags" >"${JOBQ_BUILD_LOG:-/dev/null}" 2>&1 ||
          { make PG_CONFIG="$PG_CONFIG" JOBQ_CFLAGS="$cflags" 2>&1 | grep -E 'error|warning' | head -30 >&2; exit 1; }
      if [ -w "$($PG_CONFIG --pkglibdir)" ]; then
          make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
      else
          sudo make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
      fi ) || die "build failed"
}

# A temp dir the cluster user can write.
jobq_mktemp() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/jobq-${1:-test}.XXXXXX")
    chmod 755 "$d"
    [ "$(id -u)" = 0 ] && chown postgres: "$d"
    echo "$d"
}

# A TCP port nobody listens on (we listen on none, but the socket file name
# and any later TCP use stay unique).
jobq_free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( (RANDOM % 30000) + 20000 ))
        ss -Hltn "sport = :$p" 2>/dev/null | grep -q . && continue
        ls /tmp/.s.PGSQL."$p" >/dev/null 2>&1 && continue
        echo "$p"; return 0
    done
    die "no free port"
}

# cluster_init DIR: initdb into DIR/data (copying $JOBQ_TEMPLATE when set,
# which is much faster than initdb).
cluster_init() {
    local dir=$1
    mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ -n "${JOBQ_TEMPLATE:-}" ] && [ -d "$JOBQ_TEMPLATE" ]; then
        as_pg cp -a "$JOBQ_TEMPLATE" "$dir/data"
    else
        as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
            --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
}

# cluster_conf DIR PORT [extra lines...]: write the settings every test
# cluster uses; extra arguments are appended as lines.
cluster_conf() {
    local dir=$1 port=$2; shift 2
    {
        echo "port = $port"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = 'jobq,pg_cron'"
        echo "cron.database_name = 'postgres'"
        echo "max_worker_processes = 40"
        echo "jobq.max_total_workers = 32"
        # tests submit as the bootstrap superuser; the refusal of superuser
        # jobs (the default) is tested where it is set back off
        echo "jobq.allow_superuser_jobs = on"
        echo "fsync = ${JOBQ_FSYNC:-off}"
        echo "logging_collector = off"
        echo "log_line_prefix = '%m [%p] %b '"
        echo "log_min_messages = ${JOBQ_LOG_MIN_MESSAGES:-warning}"
        for line in "$@"; do echo "$line"; done
    } | as_pg tee "$dir/data/jobq_test.conf" >/dev/null
    grep -q "include_if_exists = 'jobq_test.conf'" "$dir/data/postgresql.conf" ||
        echo "include_if_exists = 'jobq_test.conf'" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

# cluster_start DIR: start and wait until it accepts connections.  Records
# the postmaster pid in $JOBQ_PIDFILE so test/run can always stop it.
cluster_start() {
    local dir=$1 port
    port=$(sed -n 's/^port = //p' "$dir/data/jobq_test.conf")
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -30 "$dir/server.log" >&2; die "server did not start"; }
    local pid; pid=$(head -1 "$dir/data/postmaster.pid")
    [ -n "${JOBQ_PIDFILE:-}" ] && echo "$pid $dir" >>"$JOBQ_PIDFILE"
    export PGHOST=$dir PGPORT=$port PGUSER=postgres
}

# cluster_pid DIR: the postmaster pid, empty when not running.
cluster_pid() {
    local f=$1/data/postmaster.pid pid
    [ -f "$f" ] || return 0
    pid=$(head -1 "$f")
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# stop_pid PID: fast shutdown (SIGINT), then immediate (SIGQUIT), then KILL.
stop_pid() {
    local pid=$1 sig i
    for sig in INT QUIT KILL; do
        kill -"$sig" "$pid" 2>/dev/null || return 0
        for i in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.1
        done
    done
}

cluster_stop() {
    local pid; pid=$(cluster_pid "$1")
    [ -n "$pid" ] && stop_pid "$pid"
    return 0
}

# cluster_restart_immediate DIR: crash-like stop (-m immediate) and start.
cluster_stop_immediate() {
    local pid; pid=$(cluster_pid "$1")
    [ -n "$pid" ] || return 0
    kill -QUIT "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null; return 0
}

# q SQL [db]: run SQL, print unaligned tuples only; fail on error.
q() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "${2:-${JOBQ_DB:-postgres}}" -c "$1"
}

# wait_for SQL EXPECTED [TIMEOUT_S [DB]]: poll until SQL prints EXPECTED.
wait_for() {
    local sql=$1 want=$2 timeout=${3:-30} db=${4:-${JOBQ_DB:-postgres}} got="" deadline
    deadline=$(( $(date +%s%N) / 1000000 + timeout * 1000 ))
    while [ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ]; do
        got=$(q "$sql" "$db" 2>/dev/null) || got="<error>"
        [ "$got" = "$want" ] && return 0
        sleep 0.05
    done
    log "wait_for timed out after ${timeout}s: $sql"
    log "  wanted: $want"
    log "  got:    $got"
    return 1
}

# Integration-test conveniences: a test calls it_start_cluster [conf lines],
# uses q/wait_for, and it_fail/it_ok; the cluster stops on exit.
it_start_cluster() {
    IT_DIR=$(jobq_mktemp it)
    cluster_init "$IT_DIR"
    cluster_conf "$IT_DIR" "$(jobq_free_port)" "$@"
    cluster_start "$IT_DIR"
    trap 'it_cleanup' EXIT
}

it_cleanup() {
    local rc=$?
    if [ -n "${IT_DIR:-}" ]; then
        cluster_stop "$IT_DIR"
        if [ $rc -ne 0 ] && [ -f "$IT_DIR/server.log" ]; then
            log "---- server log (last 40 lines) ----"
            tail -40 "$IT_DIR/server.log" >&2
        fi
        [ -z "${JOBQ_KEEP:-}" ] && rm -rf "$IT_DIR"
    fi
    exit $rc
}

it_fail() { log "FAIL: $*"; exit 1; }
it_ok() { log "ok: $*"; }

# assert_eq GOT WANT MESSAGE
assert_eq() {
    [ "$1" = "$2" ] || it_fail "$3 (got '$1', wanted '$2')"
    it_ok "$3"
}
