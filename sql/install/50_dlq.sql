-- jobq install script, part 50: the dead letter queue (jobq_admin).
-- Rows are written by jobq._fail when a job is exhausted or not retryable.

CREATE FUNCTION jobq._no_dead_letter(id bigint) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'undefined_object',
        MESSAGE = format('dead letter %s does not exist', coalesce(id::text, 'NULL')),
        DETAIL = 'The id of a dead letter is jobq.dead_letter.id, not the id of its job.',
        HINT = 'SELECT id FROM jobq.dead_letter WHERE job_id = ... finds it.';
END
$fn$;
COMMENT ON FUNCTION jobq._no_dead_letter(bigint) IS 'Internal: raises 42704 for an unknown dead letter.';

CREATE FUNCTION jobq.requeue_dead(dead_letter_id bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    dl      jobq.dead_letter;
    new_id  bigint;
BEGIN
    SELECT * INTO dl FROM jobq.dead_letter d WHERE d.id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._no_dead_letter(dead_letter_id);
    END IF;
    IF dl.requeued_job_id IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('dead letter %s was already requeued', dl.id),
            DETAIL = format('It was requeued as job %s.', dl.requeued_job_id),
            HINT = 'Look at that job, or requeue its own dead letter if it failed again.';
    END IF;
    IF dl.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('dead letter %s is already resolved', dl.id),
            DETAIL = format('It was resolved at %s: %s.', dl.resolved_at, coalesce(dl.resolution_note, 'no note')),
            HINT = 'Submit a new job with its payload instead.';
    END IF;
    PERFORM FROM jobq.queues q WHERE q.name = dl.queue;
    IF NOT FOUND THEN
        PERFORM jobq._no_queue(dl.queue);
    END IF;

    INSERT INTO jobq.jobs_active (queue, payload, state, priority, run_at,
                                  max_attempts, timeout, owner, handler)
    VALUES (dl.queue, dl.payload, 'pending', dl.priority, now(),
            dl.max_attempts, dl.timeout, dl.owner, dl.handler)
    RETURNING jobs_active.id INTO new_id;
    PERFORM jobq._claim_floor_note(dl.queue, dl.priority, now(), new_id);
    PERFORM jobq._job_event('submitted', dl.queue, new_id, 0, dl.owner, NULL, NULL, NULL, NULL);

    UPDATE jobq.dead_letter d
       SET resolved_at = now(), requeued_job_id = new_id,
           resolution_note = format('requeued as job %s', new_id)
     WHERE d.id = dl.id;
    PERFORM jobq._wake_at_commit();
    RETURN new_id;
END
$fn$;
COMMENT ON FUNCTION jobq.requeue_dead(bigint) IS
    'jobq: submits the dead letter''s payload again (same queue, owner, handler, priority and overrides; fresh attempts; no unique_key) and marks the dead letter resolved; returns the new job id';

CREATE FUNCTION jobq.resolve_dead(dead_letter_id bigint, note text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    dl      jobq.dead_letter;
BEGIN
    SELECT * INTO dl FROM jobq.dead_letter d WHERE d.id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._no_dead_letter(dead_letter_id);
    END IF;
    IF dl.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('dead letter %s is already resolved', dl.id),
            DETAIL = format('It was resolved at %s: %s.', dl.resolved_at, coalesce(dl.resolution_note, 'no note')),
            HINT = 'A dead letter is resolved once; its note stays.';
    END IF;
    UPDATE jobq.dead_letter d SET resolved_at = now(), resolution_note = note
     WHERE d.id = dl.id;
END
$fn$;
COMMENT ON FUNCTION jobq.resolve_dead(bigint, text) IS
    'jobq: marks a dead letter as handled, with a note, without running the job again';
