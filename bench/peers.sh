#!/usr/bin/env bash
# bench/peers.sh — install the peer job queues that `bench/run --peers` runs
# side by side with jobq: graphile-worker and pg-boss from npm, into
# bench/peers/ (git-ignored).  Versions are pinned for Node 20 (Debian's
# nodejs may be older; newer graphile-worker/pg-boss releases need Node 22).
set -euo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)/peers
GRAPHILE=${GRAPHILE_WORKER_VERSION:-0.17.3}
PGBOSS=${PGBOSS_VERSION:-10.4.2}
PG=${NODE_PG_VERSION:-8}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    else
        echo "bench/peers.sh: node and npm are needed (apt-get install nodejs npm)" >&2; exit 2
    fi
fi
major=$(node -e 'console.log(process.versions.node.split(".")[0])')
[ "$major" -ge 20 ] || { echo "bench/peers.sh: Node >= 20 needed (have $(node --version))" >&2; exit 2; }
mkdir -p "$DIR"
[ -f "$DIR/package.json" ] || echo '{"name": "jobq-bench-peers", "private": true}' >"$DIR/package.json"
have() { node -e "process.exit(require('$DIR/node_modules/$1/package.json').version === '$2' ? 0 : 1)" 2>/dev/null; }
if have graphile-worker "$GRAPHILE" && have pg-boss "$PGBOSS" && [ -d "$DIR/node_modules/pg" ]; then
    exit 0
fi
echo "installing graphile-worker@$GRAPHILE pg-boss@$PGBOSS into $DIR" >&2
( cd "$DIR" && npm install --no-audit --no-fund --loglevel=error \
    "graphile-worker@$GRAPHILE" "pg-boss@$PGBOSS" "pg@$PG" >&2 )
