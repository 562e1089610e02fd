#!/usr/bin/env bash
# Alerts (sql/install/78_alerts.sql, src/alerts.c): the recommended rules
# are installed; a rule fires when its metric is above the threshold and
# not again within its cooldown (two evaluations); a listening session
# receives the NOTIFY jobq_alerts JSON payload (name, severity, metric,
# value, threshold, message); the log channel writes a server log line; a
# resolved alert is recorded and notified once; a webhook is delivered as
# an HTTP job (Slack's text field), a failed delivery is retried, the
# outcome (delivered, or delivery_error) is written back to the history
# row; the executors' duty evaluates by itself every jobq.alert_interval;
# failure_rate per queue from jobq.metrics; only jobq_admin changes rules,
# and webhook URLs obey jobq.http_allowed_hosts.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib/http.sh"

it_start_cluster "jobq.workers = 1" "jobq.alert_interval = 0" "jobq.poll_interval = 100ms" \
    "jobq.metrics_flush_interval = 200ms" "jobq.http_allowed_hosts = '127.0.0.1'"
trap 'rc=$?; http_servers_stop; [ -n "${LPID:-}" ] && kill "$LPID" 2>/dev/null; (exit $rc); it_cleanup' EXIT
http_server_start S
U="http://127.0.0.1:$S_PORT"
TMPD=$(jobq_mktemp alerts)
q "CREATE EXTENSION jobq"
q "
SELECT jobq.create_queue('ext', kind => 'external', max_attempts => 1);
-- the webhook deliveries retry fast here, and fail on purpose below
SELECT jobq.alter_queue('jobq_alerts', base_delay => '100 ms', max_attempts => 3);
SELECT jobq.configure_breaker('http:127.0.0.1', failure_threshold => 100);
-- the built-in rules stay out of the way of the test's own
UPDATE jobq.alert_config SET enabled = false WHERE builtin;
" >/dev/null

# the recommended rules
assert_eq "$(q "SELECT string_agg(format('%s:%s:%s>%s:%s', name, metric, coalesce(queue, 'all'), threshold, severity), ' ' ORDER BY id)
                  FROM jobq.alert_config WHERE builtin")" \
    "failure_rate_warning:failure_rate:*>20:warning failure_rate_error:failure_rate:*>50:error breaker_open:breaker_open:all>0:critical dlq_error:dlq_size:all>50:error dlq_critical:dlq_size:all>100:critical stuck_jobs:stuck_jobs:all>0:warning oldest_pending:oldest_pending_seconds:*>300:warning" \
    "the recommended rules are installed"

# a listener: every jobq_alerts payload, one JSON per line
cat >"$TMPD/listen.py" <<'EOF'
import sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("LISTEN jobq_alerts")
with open(sys.argv[2], "a") as out:
    out.write("listening\n"); out.flush()
    for n in conn.notifies():
        out.write(n.payload + "\n"); out.flush()
EOF
/usr/bin/python3 "$TMPD/listen.py" "host=$PGHOST port=$PGPORT user=postgres dbname=postgres" "$TMPD/notes" &
LPID=$!
for _ in $(seq 1 100); do grep -q listening "$TMPD/notes" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$TMPD/notes" || it_fail "the listener did not start"
notes() { grep -c "\"alert\": \"$1\"" "$TMPD/notes" || true; }
# wait_notes ALERT N: N payloads of ALERT received
wait_notes() {
    local i
    for i in $(seq 1 300); do [ "$(notes "$1")" -ge "$2" ] && return 0; sleep 0.1; done
    return 1
}

# ---- fire, cooldown, resolve -------------------------------------------------
q "INSERT INTO jobq.alert_config (name, metric, queue, threshold, severity, cooldown, channels)
   VALUES ('deep', 'queue_depth', 'ext', 2, 'error', '1 hour', '{notify,log}')" >/dev/null
q "SELECT jobq.submit('ext') FROM generate_series(1, 3)" >/dev/null
assert_eq "$(q "SELECT string_agg(name || ' ' || status || ' ' || value || ' ' || delivered, ',') FROM jobq.evaluate_alerts()")" \
    "deep firing 3 true" "above the threshold: fired (notify and log: delivered)"
assert_eq "$(q "SELECT count(*) FROM jobq.evaluate_alerts()")" 0 "a second evaluation within the cooldown: nothing"
assert_eq "$(q "SELECT count(*) FROM jobq.alert_history WHERE name = 'deep'")" 1 "one history row for the firing"
wait_notes deep 1 || it_fail "no NOTIFY payload for the firing"
/usr/bin/python3 - "$TMPD/notes" <<'EOF' || it_fail "NOTIFY payload: $(grep deep "$TMPD/notes")"
import json, sys
p = [json.loads(l) for l in open(sys.argv[1]) if '"deep"' in l][0]
assert p["alert"] == "deep" and p["severity"] == "error" and p["metric"] == "queue_depth", p
assert p["value"] == 3 and p["threshold"] == 2 and p["status"] == "firing" and p["queue"] == "ext", p
assert "queue_depth is 3, above 2" in p["message"], p
EOF
it_ok "the listening session got the JSON payload: alert, severity, metric, value, threshold, message"
grep -q 'jobq alert deep: firing (error): queue_depth is 3, above 2' "$IT_DIR/server.log" \
    || it_fail "no server log line for the log channel"
it_ok "the log channel wrote the server log line"

q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE queue = 'ext' AND state = 'pending'" >/dev/null
assert_eq "$(q "SELECT string_agg(name || ' ' || status || ' ' || value, ',') FROM jobq.evaluate_alerts()")" \
    "deep resolved 0" "back under the threshold: resolved"
assert_eq "$(q "SELECT count(*) FROM jobq.evaluate_alerts()")" 0 "resolved once, not again"
wait_notes deep 2 || it_fail "no NOTIFY payload for the resolution"
sleep 0.5
assert_eq "$(notes deep)" 2 "two payloads in all: firing, resolved"
grep '"alert": "deep"' "$TMPD/notes" | tail -1 | grep -q '"status": "resolved"' || it_fail "the second payload is not the resolution"
# above again within the cooldown of the last firing: not fired again
q "SELECT jobq.submit('ext') FROM generate_series(1, 3)" >/dev/null
assert_eq "$(q "SELECT count(*) FROM jobq.evaluate_alerts()")" 0 "above again within the cooldown: not fired"
q "UPDATE jobq.alert_config SET cooldown = '0' WHERE name = 'deep'" >/dev/null
assert_eq "$(q "SELECT string_agg(status, ',') FROM jobq.evaluate_alerts()")" firing "after the cooldown: fired again"
# a disabled rule's firing alert is resolved
q "UPDATE jobq.alert_config SET enabled = false WHERE name = 'deep'" >/dev/null
assert_eq "$(q "SELECT string_agg(status || ': ' || message, ',') FROM jobq.evaluate_alerts()")" \
    "resolved: queue_depth is unknown, back at or under 2 (queue ext): the rule was disabled" "disabling a firing rule resolves it"
q "SELECT jobq.cancel(id) FROM jobq.jobs WHERE queue = 'ext' AND state = 'pending'" >/dev/null

# ---- webhooks ------------------------------------------------------------------
# the first delivery gets 503, its retry succeeds
q "INSERT INTO jobq.alert_config (name, metric, threshold, severity, channels, webhook_url)
   VALUES ('hook', 'dlq_size', 0, 'critical', '{webhook}', '$U/flaky/hook/1'),
          ('hook_echo', 'dlq_size', 0, 'critical', '{webhook,notify}', '$U/echo'),
          ('hook_dead', 'dlq_size', 0, 'warning', '{webhook}', '$U/status/404')" >/dev/null
x=$(q "SELECT jobq.submit('ext')")
q "SELECT jobq.fail(c.id, c.attempt, 'boom', 'permanent') FROM jobq.claim('ext') c" >/dev/null
assert_eq "$(q "SELECT string_agg(name || ' ' || coalesce(delivered::text, 'pending'), ',' ORDER BY name) FROM jobq.evaluate_alerts()")" \
    "hook pending,hook_dead pending,hook_echo pending" "webhook deliveries are pending HTTP jobs"
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'jobq_alerts' AND state IN ('completed', 'failed')" 3 60 \
    || it_fail "webhook jobs did not end: $(q "SELECT string_agg(state || '/' || attempt, ' ') FROM jobq.jobs WHERE queue = 'jobq_alerts'")"
assert_eq "$(q "SELECT count(*) FROM jobq.evaluate_alerts()")" 0 "no new firing (cooldown)"
assert_eq "$(q "SELECT string_agg(name || ' ' || delivered || ' ' || coalesce(delivery_error, '-'), ',' ORDER BY name) FROM jobq.alert_history WHERE name LIKE 'hook%'")" \
    "hook true -,hook_dead false HTTP 404 from $U/status/404,hook_echo true -" "the outcomes are written back to the history rows"
assert_eq "$(q "SELECT string_agg(a.outcome || '/' || coalesce(a.error_class, '-'), ' ' ORDER BY a.attempt)
                  FROM jobq.alert_history h JOIN jobq.job_attempts a ON a.job_id = h.delivery_job_id
                 WHERE h.name = 'hook'")" "failed/transient completed/-" "the 503 delivery was retried, then completed"
body=$(q "SELECT j.result->>'body' FROM jobq.alert_history h JOIN jobq.jobs j ON j.id = h.delivery_job_id WHERE h.name = 'hook_echo'")
/usr/bin/python3 - "$body" <<'EOF' || it_fail "webhook request: $body"
import json, sys
req = json.loads(sys.argv[1])
assert req["method"] == "POST", req
b = json.loads(req["body"])
assert b["text"].startswith("[critical] jobq alert hook_echo firing: dlq_size is 1, above 0"), b
assert b["alert"] == "hook_echo" and b["severity"] == "critical" and b["metric"] == "dlq_size", b
assert b["value"] == 1 and b["threshold"] == 0 and "message" in b, b
EOF
it_ok "the webhook POSTs JSON with Slack's text field and the alert's fields"

# ---- failure_rate per queue, evaluated by the executors' duty ------------------
q "UPDATE jobq.alert_config SET enabled = false WHERE name LIKE 'hook%'" >/dev/null
q "
CREATE FUNCTION public.flaky(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN IF (p->>'fail')::boolean THEN PERFORM jobq.give_up('no'); END IF; RETURN p; END \$\$;
SELECT jobq.create_queue('work', handler => 'public.flaky(jsonb)', max_attempts => 1);
UPDATE jobq.alert_config SET enabled = true, min_samples = 10 WHERE name = 'failure_rate_error';
SELECT jobq.submit_batch('work', (SELECT jsonb_agg(jsonb_build_object('fail', i <= 6)) FROM generate_series(1, 10) i));
" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'work' AND state IN ('completed', 'failed')" 10 60 \
    || it_fail "work jobs not finished"
q "ALTER SYSTEM SET jobq.alert_interval = '1s'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
wait_for "SELECT count(*) FROM jobq.alert_history WHERE name = 'failure_rate_error' AND queue = 'work'" 1 60 \
    || it_fail "the duty did not fire failure_rate_error: $(q "SELECT * FROM jobq._alert_values('failure_rate', 'work', '15 minutes', 10)")"
assert_eq "$(q "SELECT severity || ' ' || round(value) || ' ' || message FROM jobq.alert_history WHERE name = 'failure_rate_error'")" \
    "error 60 failure_rate is 60, above 50 (queue work): 6 of 10 attempts failed in the last 00:15:00" \
    "failure_rate of queue work fired by the duty"
wait_notes failure_rate_error 1 || it_fail "the duty's NOTIFY did not arrive"
sleep 2.5
assert_eq "$(q "SELECT count(*) FROM jobq.alert_history WHERE name = 'failure_rate_error'")" 1 \
    "the duty's later evaluations stay within the cooldown"
q "ALTER SYSTEM RESET jobq.alert_interval" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
it_ok "the executors evaluate the rules every jobq.alert_interval"

# ---- privileges and checks -------------------------------------------------------
q "CREATE ROLE al_user LOGIN; CREATE ROLE al_admin LOGIN IN ROLE jobq_admin;
   GRANT USAGE ON SCHEMA jobq TO al_user, al_admin;" >/dev/null
as() { psql -X -q -A -t -U "$1" -d postgres -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$2" 2>&1 || true; }
out=$(as al_user "INSERT INTO jobq.alert_config (name, metric, threshold) VALUES ('mine', 'dlq_size', 1)")
[[ "$out" == *42501* ]] || it_fail "a plain role inserted a rule: $out"
out=$(as al_user "UPDATE jobq.alert_config SET webhook_url = 'https://evil.example/' WHERE name = 'dlq_error'")
[[ "$out" == *42501* ]] || it_fail "a plain role changed a rule: $out"
out=$(as al_user "SELECT count(*) FROM jobq.evaluate_alerts()")
[[ "$out" == *42501* ]] || it_fail "a plain role evaluated: $out"
out=$(as al_user "SELECT count(*) FROM jobq.alert_history")
[[ "$out" == *42501* ]] || it_fail "a plain role read the history: $out"
it_ok "a role outside jobq_admin can neither change nor read alerts (42501)"
out=$(as al_admin "INSERT INTO jobq.alert_config (name, metric, threshold, channels, webhook_url) VALUES ('adm', 'dlq_size', 1, '{webhook}', '$U/echo') RETURNING name")
[ "$out" = adm ] || it_fail "jobq_admin could not add a rule: $out"
out=$(as al_admin "SELECT count(*) >= 0 FROM jobq.evaluate_alerts()")
[ "$out" = t ] || it_fail "jobq_admin could not evaluate: $out"
it_ok "jobq_admin adds rules and evaluates"
out=$(as al_admin "INSERT INTO jobq.alert_config (name, metric, threshold, channels, webhook_url) VALUES ('far', 'dlq_size', 1, '{webhook}', 'https://hooks.example.com/x')")
[[ "$out" == *22023* && "$out" == *"not allowed by jobq.http_allowed_hosts"* ]] || it_fail "a host not allowed: $out"
out=$(as al_admin "INSERT INTO jobq.alert_config (name, metric, threshold, channels, webhook_url) VALUES ('meta', 'dlq_size', 1, '{webhook}', 'http://169.254.169.254/latest')")
[[ "$out" == *22023* ]] || it_fail "the metadata address: $out"
out=$(as al_admin "INSERT INTO jobq.alert_config (name, metric, threshold, channels) VALUES ('nourl', 'dlq_size', 1, '{webhook}')")
[[ "$out" == *23514* && "$out" == *alert_config_webhook_needs_url* ]] || it_fail "webhook without URL: $out"
out=$(as al_admin "INSERT INTO jobq.alert_config (name, metric, threshold) VALUES ('odd', 'queue_size', 1)")
[[ "$out" == *23514* && "$out" == *alert_config_metric_known* ]] || it_fail "an unknown metric: $out"
out=$(as al_admin "INSERT INTO jobq.alert_config (name, metric, threshold, queue) VALUES ('gone', 'dlq_size', 1, 'no_such_queue')")
[[ "$out" == *42704* ]] || it_fail "an unknown queue: $out"
it_ok "webhook URLs obey jobq.http_allowed_hosts (22023); bad rules are refused with their SQLSTATE"
rm -rf "$TMPD"
