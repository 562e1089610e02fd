#!/usr/bin/env bash
# The ready-made monitoring files of docs/grafana/: every panel of the
# Grafana dashboard (its SQL, with Grafana's time macros filled in) and
# every query of the postgres_exporter file runs against a live cluster
# with jobs in it, as a plain role such as a dashboard would use, and
# returns the columns the file declares.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 2" "jobq.poll_interval = 200ms"

q "CREATE EXTENSION jobq"
q "
CREATE FUNCTION public.h(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF p->>'do' = 'fail' THEN PERFORM jobq.give_up('broken'); END IF;
  RETURN p;
END \$\$;
SELECT jobq.create_queue('s', handler => 'public.h(jsonb)', max_attempts => 1);
SELECT jobq.submit('s', jsonb_build_object('do', CASE WHEN i % 4 = 0 THEN 'fail' ELSE 'ok' END)) FROM generate_series(1, 20) i;
CREATE ROLE grafana LOGIN;
GRANT USAGE ON SCHEMA jobq TO grafana;
" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs_active" 0 60 || it_fail "jobs not done"
q "SELECT jobq.flush_metrics()" >/dev/null

PGUSER=grafana /usr/bin/python3 - "$JOBQ_ROOT/docs/grafana/jobq-dashboard.json" "$JOBQ_ROOT/docs/grafana/postgres_exporter.yml" <<'PY' || it_fail "dashboard files"
import json, re, subprocess, sys, yaml

def run(sql):
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "--csv", "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("query failed: %s\n%s" % (sql, r.stderr))
    lines = r.stdout.splitlines()
    return lines[0].split(","), lines[1:]

dash = json.load(open(sys.argv[1]))
assert dash["panels"], "no panels"
for p in dash["panels"]:
    assert p.get("gridPos") and p.get("datasource"), p["title"]
    for t in p["targets"]:
        sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '6 hours' AND now()", t["rawSql"])
        assert "$" not in sql, "unknown macro in " + p["title"]
        cols, rows = run(sql)
        if t["format"] == "time_series":
            assert cols[0] == "time", p["title"] + ": the first column of a time series is time"
            assert rows, p["title"] + ": no rows after a workload"
        print("ok: panel %s (%d rows)" % (p["title"], len(rows)), file=sys.stderr)

exp = yaml.safe_load(open(sys.argv[2]))
for name, spec in exp.items():
    cols, rows = run(spec["query"])
    declared = [list(m.keys())[0] for m in spec["metrics"]]
    assert cols == declared, "%s: columns %s, declared %s" % (name, cols, declared)
    assert rows or name == "jobq_metrics_last_minute", name + ": no rows"
    for m in spec["metrics"]:
        assert list(m.values())[0]["usage"] in ("LABEL", "GAUGE", "COUNTER"), name
    print("ok: exporter query %s" % name, file=sys.stderr)
PY
it_ok "every Grafana panel and postgres_exporter query runs as a plain role and returns what it declares"
