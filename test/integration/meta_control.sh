#!/usr/bin/env bash
# META.json and jobq.control agree on the version; META.json is valid PGXN
# metadata with the prerequisites the project documents.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 - <<'PY'
import json, re, sys
meta = json.load(open("META.json"))
ctl = open("jobq.control").read()
ver = re.search(r"^default_version\s*=\s*'([^']+)'", ctl, re.M).group(1)
errors = []
for key in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
    if key not in meta:
        errors.append("META.json lacks " + key)
if meta.get("version") != ver:
    errors.append("META.json version %s != control default_version %s" % (meta.get("version"), ver))
if meta["provides"]["jobq"]["version"] != ver:
    errors.append("provides.jobq.version differs from the control file")
if not re.fullmatch(r"\d+\.\d+\.\d+", ver):
    errors.append("version is not semver: " + ver)
req = meta["prereqs"]["runtime"]["requires"]
if not req.get("PostgreSQL", "").startswith("15"):
    errors.append("PostgreSQL >= 15 not required")
if "libcurl" not in req:
    errors.append("libcurl not required")
if "pg_cron" not in meta["prereqs"]["runtime"].get("recommends", {}):
    errors.append("pg_cron not recommended")
if meta["meta-spec"]["version"] != "1.0.0":
    errors.append("meta-spec must be 1.0.0")
if "schema = jobq" not in ctl or "relocatable = false" not in ctl:
    errors.append("control: schema jobq, not relocatable")
for e in errors:
    print("FAIL:", e)
sys.exit(1 if errors else 0)
PY
echo "ok: META.json and jobq.control agree"
