# test/demo part 30: HTTP jobs against a local scripted server, one of them
# retried (503 twice, then 200), one refused by the allowlist.
# Sourced by test/demo with run() and q() available.

source "$JOBQ_ROOT/test/lib/http.sh"
http_server_start DEMO_HTTP
DEMO_URL="http://127.0.0.1:$DEMO_HTTP_PORT"

# private and loopback addresses are reached only when named explicitly
q "ALTER SYSTEM SET jobq.http_allowed_hosts = '127.0.0.1, *.example.com'"
q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
# who may submit HTTP jobs: members of jobq_http (or jobq_admin)
run "GRANT jobq_http TO app"
run "SELECT jobq.create_queue('webhooks', kind => 'http', base_delay => '300 ms')"
run "SET ROLE app; SELECT jobq.submit_http('$DEMO_URL/echo', 'POST', '{\"Content-Type\": \"application/json\"}', '{\"event\": \"signup\"}', queue => 'webhooks')"
run "SET ROLE app; SELECT jobq.submit_http('$DEMO_URL/flaky/demo/2', queue => 'webhooks')"
run "SET ROLE app; SELECT jobq.submit_http('$DEMO_URL/status/404', queue => 'webhooks')"
# the cloud metadata service: refused at submit
run "SET ROLE app; SELECT jobq.submit_http('http://169.254.169.254/latest/meta-data/')" || true
wait_for "SELECT count(*) FROM jobq.jobs WHERE queue = 'webhooks' AND state IN ('completed', 'failed')" 3 30 || true
run "SELECT id, state, attempt, error_type, last_error, result->>'status' AS status, left(result->>'body', 60) AS body FROM jobq.jobs WHERE queue = 'webhooks' ORDER BY id"
run "SELECT a.job_id, a.attempt, a.outcome, a.error_class, a.http_status FROM jobq.job_attempts a JOIN jobq.jobs j ON j.id = a.job_id WHERE j.queue = 'webhooks' ORDER BY a.job_id, a.attempt"
http_servers_stop
