-- Included (\ir) by pgTAP files that act as other roles.
--
-- pg_temp.as_role(r, q): run q as role r; the first column of the result as
-- text, or 'ERROR <sqlstate>'.  The role is reset on both paths (the
-- exception block rolls SET LOCAL ROLE back).
CREATE FUNCTION pg_temp.as_role(r text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE res text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    EXECUTE q INTO res;
    RESET ROLE;
    RETURN res;
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE;
END $$;
