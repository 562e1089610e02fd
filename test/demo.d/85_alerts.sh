# test/demo part 85: alerts (docs/alerts.md).  The recommended rules, one
# rule of our own with every channel, an evaluation that fires it (the
# NOTIFY arrives in the listening session, the webhook at a local server,
# the log line in the server log), and the delivery written back.
# Sourced by test/demo with run() and q() available.

source "$JOBQ_ROOT/test/lib/http.sh"
http_server_start DEMO_ALERT_HTTP
DEMO_ALERT_URL="http://127.0.0.1:$DEMO_ALERT_HTTP_PORT"
q "ALTER SYSTEM SET jobq.http_allowed_hosts = '127.0.0.1, *.example.com'"
q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

run "SELECT name, metric, coalesce(queue, 'all') AS queue, threshold, severity, cooldown, channels FROM jobq.alert_config ORDER BY id"
run "INSERT INTO jobq.alert_config (name, metric, threshold, severity, channels, webhook_url) VALUES ('demo_dead_letters', 'dlq_size', 0, 'critical', '{notify,log,webhook}', '$DEMO_ALERT_URL/echo') RETURNING id, name"
# a listening session sees its own evaluation's NOTIFY when it commits
run "LISTEN jobq_alerts; SELECT name, status, severity, value, message FROM jobq.evaluate_alerts()"
run "SELECT count(*) AS fired_again FROM jobq.evaluate_alerts()  -- within the cooldown: nothing"
wait_for "SELECT count(*) FROM jobq.alert_history h JOIN jobq.jobs j ON j.id = h.delivery_job_id WHERE h.name = 'demo_dead_letters' AND j.state = 'completed'" 1 30 || true
q "SELECT count(*) FROM jobq.evaluate_alerts()" >/dev/null   # writes the webhook's outcome back
run "SELECT id, name, status, delivered, delivery_error, delivery_job_id FROM jobq.alert_history WHERE name = 'demo_dead_letters'"
printf '\n\033[1m%s\033[0m\n' "the webhook's request body (Slack's text field and the alert's fields)"
q "SELECT (j.result->>'body')::jsonb->>'body' FROM jobq.alert_history h JOIN jobq.jobs j ON j.id = h.delivery_job_id WHERE h.name = 'demo_dead_letters'"
printf '\n\033[1m%s\033[0m\n' "the log channel's line in the server log"
grep "jobq alert demo_dead_letters" "$DEMO_DIR/server.log" | tail -1 || true
http_servers_stop
