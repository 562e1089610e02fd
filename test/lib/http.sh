# Helpers for tests of HTTP jobs: a scripted server on 127.0.0.1 (plain and
# TLS with a self-signed certificate made here), started and stopped by the
# test, killed by pid.  Source after lib.sh.

HTTP_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# http_server_start VAR_PREFIX [tls]: sets ${PREFIX}_PORT and ${PREFIX}_PID
http_server_start() {
    local prefix=$1 tls=${2:-} dir portfile pid i
    dir=$(jobq_mktemp)
    portfile=$dir/port
    if [ "$tls" = tls ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
            -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 || die "openssl failed"
        python3 "$HTTP_LIB_DIR/http_server.py" "$portfile" --tls "$dir/cert.pem" "$dir/key.pem" &
    else
        python3 "$HTTP_LIB_DIR/http_server.py" "$portfile" &
    fi
    pid=$!
    for i in $(seq 1 100); do
        [ -s "$portfile" ] && break
        sleep 0.1
    done
    [ -s "$portfile" ] || die "http server did not start"
    HTTP_SERVER_PIDS="${HTTP_SERVER_PIDS:-} $pid"
    printf -v "${prefix}_PORT" '%s' "$(cat "$portfile")"
    printf -v "${prefix}_PID" '%s' "$pid"
}

http_servers_stop() {
    local pid
    for pid in ${HTTP_SERVER_PIDS:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    HTTP_SERVER_PIDS=
}

# http_stats PORT: the server's counters as JSON
http_stats() {
    python3 - "$1" <<'PY'
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/stats" % sys.argv[1], timeout=10).read().decode())
PY
}
