#!/usr/bin/env bash
# A job's handler cannot reach beyond its own job and its owner's rights:
# - deferred triggers (which would fire at the batch's commit, as the
#   executor's superuser) are refused: handlers run as a security-restricted
#   operation, so no escalation to superuser;
# - settings a handler changes (plain SET included) do not outlive it;
# - session advisory locks do not outlive the job; PREPARE is refused;
# - a handler dropped while jobs wait fails them (permanent) without
#   killing the executor;
# - external workers cannot claim jobs of SQL queues, nor complete, fail or
#   heartbeat a job an executor holds.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE w LOGIN IN ROLE jobq_worker;
GRANT USAGE ON SCHEMA jobq TO alice, bob;
CREATE SCHEMA app AUTHORIZATION alice;
CREATE FUNCTION public.run(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
    EXECUTE p->>'sql';
    RETURN jsonb_build_object('lock_timeout', current_setting('lock_timeout'),
                              'TimeZone', current_setting('TimeZone'),
                              'user', current_user);
END \$\$;
SELECT jobq.create_queue('q', handler => 'public.run(jsonb)', max_attempts => 1);
"
wait_for "SELECT count(*) FROM jobq.workers WHERE kind = 'executor'" 1 20 || it_fail "executor"
pid0=$(q "SELECT pid FROM jobq.workers WHERE kind = 'executor'")

as() { local who=$1; shift; psql -X -Atq -v ON_ERROR_STOP=1 -U "$who" -d postgres -c "$*"; }
submit() { as "$1" "SELECT jobq.submit('q', jsonb_build_object('sql', \$s\$$2\$s\$))"; }
final() { wait_for "SELECT state FROM jobq.jobs WHERE id = $1 AND state IN ('completed','failed')" "$2" 20 ||
              it_fail "job $1 not $2: $(q "SELECT state || ' ' || coalesce(last_error, '') FROM jobq.jobs WHERE id = $1")"; }

# 1. a deferred trigger queued by alice's job may not fire at commit as superuser
as alice "CREATE TABLE app.t (x int);
          CREATE FUNCTION app.f() RETURNS trigger LANGUAGE plpgsql AS
            'BEGIN ALTER ROLE alice SUPERUSER; RETURN NULL; END';
          CREATE CONSTRAINT TRIGGER tr AFTER INSERT ON app.t DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION app.f()"
id=$(submit alice "INSERT INTO app.t VALUES (1)")
final "$id" failed
assert_eq "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'")" "f" "alice did not become superuser"
assert_eq "$(q "SELECT sqlstate FROM jobq.job_attempts WHERE job_id = $id")" "42501" \
    "the deferred trigger is refused (security-restricted operation)"
# deferring it again does not help: the trigger may not be queued
id=$(submit alice "SET CONSTRAINTS ALL DEFERRED; INSERT INTO app.t VALUES (2)")
final "$id" failed
assert_eq "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'")" "f" "alice is still not superuser"
case "$(q "SELECT last_error FROM jobq.jobs WHERE id = $id")" in
    *"cannot fire deferred trigger within security-restricted operation"*) it_ok "SET CONSTRAINTS ALL DEFERRED: refused";;
    *) it_fail "deferred again: $(q "SELECT last_error FROM jobq.jobs WHERE id = $id")";; esac
# nor a temp table (whose triggers would meet later jobs)
id=$(submit alice "CREATE TEMP TABLE audit (x int)")
final "$id" failed
it_ok "temp table refused in a handler"

# 2. settings do not leak into the next job (of another owner)
id=$(submit alice "SET lock_timeout = '1ms'; SET TimeZone = 'Asia/Tokyo'; SET synchronous_commit = off")
final "$id" completed
id=$(submit bob "SELECT 1")
final "$id" completed
assert_eq "$(q "SELECT result->>'lock_timeout' || ' ' || (result->>'TimeZone') || ' ' || (result->>'user') FROM jobq.jobs WHERE id = $id")" \
    "0 $(q "SHOW TimeZone") bob" "bob's job sees the default settings, not alice's"

# 3. session advisory locks end with the job; PREPARE is refused
id=$(submit alice "SELECT pg_advisory_lock(4242)")
final "$id" completed
assert_eq "$(q "SELECT pg_try_advisory_lock(4242)")" "t" "the job's session advisory lock was released"
id=$(submit alice "PREPARE leak AS SELECT 1")
final "$id" failed
it_ok "PREPARE refused in a handler (it would outlive the job)"

# 4. a handler dropped while jobs wait: they fail, the executor lives on
q "CREATE FUNCTION public.gone(p jsonb) RETURNS void LANGUAGE sql AS 'SELECT'"
q "SELECT jobq.create_queue('g', handler => 'public.gone(jsonb)', max_attempts => 1)" >/dev/null
sleep 1.2   # the executor's queue list (refreshed each second) now has the handler
q "SELECT jobq.pause_queue('g')" >/dev/null
gid=$(q "SELECT jobq.submit('g')")
q "DROP FUNCTION public.gone(jsonb)"
q "SELECT jobq.resume_queue('g')" >/dev/null
final "$gid" failed
assert_eq "$(q "SELECT error_type FROM jobq.jobs WHERE id = $gid")" "permanent" "dropped handler: permanent failure"
assert_eq "$(q "SELECT pid FROM jobq.workers WHERE kind = 'executor'")" "$pid0" "the executor did not restart"

# 5. external workers and the executors' jobs
err=$(as w "SELECT * FROM jobq.claim('q')" 2>&1 >/dev/null || true)
case "$err" in *"is not for external workers"*) it_ok "jobq.claim refuses a SQL queue";;
    *) it_fail "jobq.claim on a SQL queue: $err";; esac
q "CREATE FUNCTION public.slow(p jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT pg_sleep(3); SELECT ''{\"by\": \"handler\"}''::jsonb'"
q "SELECT jobq.create_queue('s', handler => 'public.slow(jsonb)')" >/dev/null
sid=$(q "SELECT jobq.submit('s')")
wait_for "SELECT state FROM jobq.jobs WHERE id = $sid" running 10 || it_fail "slow job not running"
assert_eq "$(as w "SELECT jobq.complete($sid, 1, '{\"by\": \"w\"}')")" "f" "an external complete of an executor's job changes nothing"
assert_eq "$(as w "SELECT coalesce(jobq.fail($sid, 1, 'no'), 'null')")" "null" "nor does an external fail"
assert_eq "$(as w "SELECT jobq.heartbeat($sid, 1)")" "f" "nor a heartbeat"
final "$sid" completed
assert_eq "$(q "SELECT result->>'by' FROM jobq.jobs WHERE id = $sid")" "handler" "the executor completed it with its handler's result"
