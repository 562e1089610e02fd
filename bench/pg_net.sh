#!/usr/bin/env bash
# bench/pg_net.sh — build and install pg_net (supabase/pg_net, an HTTP
# client extension) from its public source, so that `bench/run` measures it
# beside jobq's HTTP jobs against the same local server.
#
#   bench/pg_net.sh            # clone https://github.com/supabase/pg_net at $PG_NET_REF
#   PG_NET_SRC=DIR bench/pg_net.sh   # or build from a checkout / bare git dir
#
# Installs into the PostgreSQL tree that $PG_CONFIG (else pg_config) names.
set -euo pipefail
REF=${PG_NET_REF:-v0.20.4}
PG_CONFIG=${PG_CONFIG:-pg_config}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
if [ -n "${PG_NET_SRC:-}" ]; then
    if [ -d "$PG_NET_SRC/src" ]; then
        cp -r "$PG_NET_SRC/." "$build/"
    else
        # a bare repository (or .git dir): the ref if it has it, else HEAD
        ref=$REF; git -C "$PG_NET_SRC" rev-parse -q --verify "$ref^{commit}" >/dev/null || ref=HEAD
        git -C "$PG_NET_SRC" archive "$ref" | tar -x -C "$build"
    fi
else
    git clone -q --depth 1 --branch "$REF" https://github.com/supabase/pg_net "$build/src-clone" >&2
    cp -r "$build/src-clone/." "$build/"
fi
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || {
    [ "$(id -u)" = 0 ] || { echo "bench/pg_net.sh: libcurl4-openssl-dev is needed" >&2; exit 2; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcurl4-openssl-dev >/dev/null
}
# PG_CONFIG on the command line: pg_net's Makefile sets its own otherwise
make -s -C "$build" PG_CONFIG="$PG_CONFIG" >/dev/null
make -s -C "$build" install PG_CONFIG="$PG_CONFIG" >/dev/null
echo "pg_net installed into $("$PG_CONFIG" --pkglibdir)" >&2
