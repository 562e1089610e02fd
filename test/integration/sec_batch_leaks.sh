#!/usr/bin/env bash
# Nothing a job opens outlives it, though the next job, of another owner,
# runs in the same executor transaction (a batch): alice's job leaves a
# cursor over her secret table and a large-object descriptor open; bob's
# job, right after hers in the same batch, can use neither, and does not
# see her sequence's value through lastval().
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

it_start_cluster "jobq.workers = 1" "jobq.poll_interval = 200ms"
q "CREATE EXTENSION jobq"
q "
CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
GRANT USAGE ON SCHEMA jobq TO alice, bob;
CREATE TABLE public.secret (s text);
INSERT INTO public.secret VALUES ('alice-top-secret');
ALTER TABLE public.secret OWNER TO alice;
CREATE SEQUENCE public.alice_seq START 4242;
ALTER SEQUENCE public.alice_seq OWNER TO alice;
CREATE TABLE public.seen (who text, what text);
GRANT INSERT ON public.seen TO PUBLIC;
-- alice: opens things and leaves them open
CREATE FUNCTION public.opener(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE fd int;
BEGIN
    EXECUTE 'DECLARE alice_cur CURSOR FOR SELECT s FROM public.secret';
    fd := lo_open((p->>'lo')::oid, x'40000'::int);   -- INV_READ
    INSERT INTO public.seen VALUES ('alice', 'fd ' || fd);
    PERFORM nextval('public.alice_seq');
END \$\$;
-- bob: tries to use what alice left
CREATE FUNCTION public.prober(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE r text; fd int;
BEGIN
    BEGIN
        EXECUTE 'FETCH alice_cur' INTO r;
        INSERT INTO public.seen VALUES ('bob', 'cursor: ' || coalesce(r, 'no row'));
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.seen VALUES ('bob', 'cursor: ' || SQLSTATE);
    END;
    FOR fd IN 0..3 LOOP
        BEGIN
            INSERT INTO public.seen VALUES ('bob', 'lo ' || fd || ': ' || encode(loread(fd, 100), 'escape'));
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO public.seen VALUES ('bob', 'lo ' || fd || ': ' || SQLSTATE);
        END;
    END LOOP;
    BEGIN
        INSERT INTO public.seen VALUES ('bob', 'lastval: ' || lastval());
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.seen VALUES ('bob', 'lastval: ' || SQLSTATE);
    END;
END \$\$;
-- one queue for both, so that one claim takes both jobs
CREATE FUNCTION public.both(p jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    IF p ? 'lo' THEN PERFORM public.opener(p); ELSIF p ? 'probe' THEN PERFORM public.prober(p); END IF;
END \$\$;
SELECT jobq.create_queue('q', handler => 'public.both(jsonb)', max_attempts => 1);
"
lo=$(psql -X -Atq -U alice -d postgres -c "SELECT lo_from_bytea(0, 'alice-lo-secret'::bytea)")
# quick jobs first: the executor then claims many jobs at once (its batch
# size follows recent job times)
q "SELECT count(jobq.submit('q')) FROM generate_series(1, 40)" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE state <> 'completed'" 0 60 || it_fail "warm-up"
# both jobs waiting when the queue resumes: one claim, one batch, alice first
q "SELECT jobq.pause_queue('q')" >/dev/null
a=$(psql -X -Atq -U alice -d postgres -c "SELECT jobq.submit('q', jsonb_build_object('lo', $lo))")
b=$(psql -X -Atq -U bob -d postgres -c "SELECT jobq.submit('q', '{\"probe\": true}')")
q "SELECT jobq.resume_queue('q')" >/dev/null
wait_for "SELECT count(*) FROM jobq.jobs WHERE id IN ($a, $b) AND state = 'completed'" 2 60 || it_fail "jobs did not complete"
assert_eq "$(q "SELECT count(*) FROM public.seen WHERE who = 'alice' AND what LIKE 'fd %'")" 1 "alice's job opened its large object"
assert_eq "$(q "SELECT what FROM public.seen WHERE who = 'bob' AND what LIKE 'cursor:%'")" "cursor: 34000" \
    "bob's job cannot fetch from alice's cursor (it was closed at the end of her job)"
assert_eq "$(q "SELECT count(*) FROM public.seen WHERE who = 'bob' AND what LIKE '%alice%'")" 0 \
    "nothing of alice's reached bob's job"
assert_eq "$(q "SELECT count(*) FROM public.seen WHERE who = 'bob' AND what ~ '^lo [0-3]: 42704$'")" 4 \
    "bob's job finds no open large-object descriptor"
assert_eq "$(q "SELECT what FROM public.seen WHERE who = 'bob' AND what LIKE 'lastval:%'")" "lastval: 55000" \
    "lastval() does not give bob alice's sequence value"
# they did share a batch (the leak needs it): one claim statement, one commit
assert_eq "$(q "SELECT count(DISTINCT xmin::text) FROM jobq.jobs_final WHERE id IN ($a, $b)")" 1 \
    "the two jobs completed in one transaction"
