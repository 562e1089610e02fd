-- The extension installs into schema jobq, at the control file's version,
-- not relocatable, and can be dropped and created again.
SELECT e.extname, e.extversion, e.extrelocatable, n.nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'jobq';

-- The settings of API.md, with their defaults, units, contexts and ranges.
SELECT name, setting, unit, context, vartype, min_val, max_val
  FROM pg_settings WHERE name LIKE 'jobq.%' ORDER BY name;

-- Placeholders under the reserved prefix are refused.
SET jobq.no_such_setting = 1;

DROP EXTENSION jobq;
SELECT count(*) AS jobq_schemas FROM pg_namespace WHERE nspname = 'jobq';
CREATE EXTENSION jobq;
SELECT extversion FROM pg_extension WHERE extname = 'jobq';
