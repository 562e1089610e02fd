# test/demo part 70: a client waits for its job (jobq.wait), a batch with
# its summary callback (jobq.batches), delay lists
# (backoff custom), and an external worker's one round trip per job
# (jobq.finish_and_claim).  Sourced by test/demo with run() and q().

# submit, commit, then block until the job is final: no polling
id=$(psql -X -q -A -t -d postgres -c "SET ROLE app; SELECT jobq.submit('emails', '{\"to\": \"waiter@example.com\"}')")
run "SET ROLE app; SELECT jobq.wait($id, '10 seconds') AS state, (SELECT result FROM jobq.jobs WHERE id = $id)"

# a batch: three emails, and one summary job submitted (once, as app) when
# all three are final; the callback goes to an external queue here, so that
# its payload stays to be seen
run "SELECT jobq.create_queue('campaign_reports', kind => 'external')"
ids=$(psql -X -q -A -t -d postgres -c "SET ROLE app; SELECT string_agg(id::text, ',') FROM jobq.submit_batch('emails', '[{\"to\": \"ann@example.com\"}, {\"to\": \"bo@example.com\"}, {\"to\": \"cy@example.com\"}]', on_complete_queue => 'campaign_reports', on_complete_payload => '{\"campaign\": \"december\"}') s(id)")
run "SET ROLE app; SELECT i AS job, jobq.wait(i, '10 seconds') AS state FROM unnest(ARRAY[$ids]) i"
batch=$(q "SELECT DISTINCT batch_id FROM jobq.jobs WHERE id IN ($ids)")
# an executor judges the batch right after the commit of its last job
for _ in $(seq 1 100); do
    [ "$(q "SELECT finished_at IS NOT NULL FROM jobq.batches WHERE id = $batch")" = t ] && break
    sleep 0.1
done
run "SET ROLE app; SELECT id, total, pending, running, completed, failed, cancelled, success_rate, finished_at IS NOT NULL AS final, callback_job_id FROM jobq.batches WHERE id = $batch"
run "SELECT id, queue, owner, state, payload FROM jobq.jobs WHERE id = (SELECT callback_job_id FROM jobq.batches WHERE id = $batch)"

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
