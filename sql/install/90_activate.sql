-- jobq install script, last part: start executors in this database once the
-- CREATE EXTENSION commits.
SELECT jobq._activate_database();
