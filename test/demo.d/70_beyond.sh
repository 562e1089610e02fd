# test/demo part 70: a client waits for its job (jobq.wait), delay lists
# (backoff custom), and an external worker's one round trip per job
# (jobq.finish_and_claim).  Sourced by test/demo with run() and q().

# submit, commit, then block until the job is final: no polling
id=$(psql -X -q -A -t -d postgres -c "SET ROLE app; SELECT jobq.submit('emails', '{\"to\": \"waiter@example.com\"}')")
run "SET ROLE app; SELECT jobq.wait($id, '10 seconds') AS state, (SELECT result FROM jobq.jobs WHERE id = $id)"

# retry 1 waits 60 s, retry 2 180 s, every later one 600 s (jitter 0 here)
run "SELECT jobq.create_queue('partner_hooks', kind => 'external', backoff => 'custom', delays => '{60 s, 180 s, 600 s}', jitter => 0)"
run "SELECT n, jobq.backoff_delay('custom', '1 s', '1 s', 0, n, '{60 s, 180 s, 600 s}') FROM generate_series(1, 4) n"

# an external worker: each call reports the job in hand and takes the next
run "SELECT jobq.submit_batch('partner_hooks', '[{\"hook\": 1}, {\"hook\": 2}]')"
run "SELECT * FROM jobq.finish_and_claim('partner_hooks', NULL, NULL, worker => 'demo-worker')"
first=$(q "SELECT id || ',' || attempt FROM jobq.jobs WHERE queue = 'partner_hooks' AND state = 'running'")
run "SELECT * FROM jobq.finish_and_claim('partner_hooks', ${first%,*}, ${first#*,}, '{\"status\": 200}', worker => 'demo-worker')"
second=$(q "SELECT id || ',' || attempt FROM jobq.jobs WHERE queue = 'partner_hooks' AND state = 'running'")
run "SELECT * FROM jobq.finish_and_claim('partner_hooks', ${second%,*}, ${second#*,}, error => 'HTTP 503', error_class => 'transient')"
run "SELECT id, state, attempt, run_at - now() AS retry_in, result FROM jobq.jobs WHERE queue = 'partner_hooks' ORDER BY id"
