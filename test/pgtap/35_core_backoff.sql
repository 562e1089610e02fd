-- Backoff delays: each strategy exactly without jitter, within bounds with
-- jitter, capped by max_delay; bad arguments refused.
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(20);

-- exact values without jitter: retries 1..7, base 2 s, cap 1 hour
SELECT results_eq($$SELECT extract(epoch FROM jobq.backoff_delay('exponential', '2 s', '1 hour', 0, n))::numeric FROM generate_series(1, 7) n$$,
                  $$VALUES (2::numeric), (4), (8), (16), (32), (64), (128)$$, 'exponential: base*2^(n-1)');
SELECT results_eq($$SELECT extract(epoch FROM jobq.backoff_delay('linear', '2 s', '1 hour', 0, n))::numeric FROM generate_series(1, 5) n$$,
                  $$VALUES (2::numeric), (4), (6), (8), (10)$$, 'linear: base*n');
SELECT results_eq($$SELECT extract(epoch FROM jobq.backoff_delay('fibonacci', '2 s', '1 hour', 0, n))::numeric FROM generate_series(1, 8) n$$,
                  $$VALUES (2::numeric), (2), (4), (6), (10), (16), (26), (42)$$, 'fibonacci: base*fib(n), fib = 1,1,2,3,5,8,13,21');
SELECT results_eq($$SELECT extract(epoch FROM jobq.backoff_delay('aggressive', '2 s', '1 hour', 0, n))::numeric FROM generate_series(1, 5) n$$,
                  $$VALUES (2::numeric), (6), (18), (54), (162)$$, 'aggressive: base*3^(n-1)');
SELECT results_eq($$SELECT extract(epoch FROM jobq.backoff_delay('fixed', '2 s', '1 hour', 0, n))::numeric FROM generate_series(1, 4) n$$,
                  $$VALUES (2::numeric), (2), (2), (2)$$, 'fixed: base');

-- the cap
SELECT is(jobq.backoff_delay('exponential', '1 s', '1 minute', 0, 20), interval '1 minute', 'exponential capped at max_delay');
SELECT is(jobq.backoff_delay('aggressive', '1 s', '10 s', 0, 1000), interval '10 s', 'no overflow for a huge n: capped');
SELECT is(jobq.backoff_delay('fibonacci', '1 s', '1 hour', 0, 5000), interval '1 hour', 'fibonacci of a huge n: capped');
SELECT is(jobq.backoff_delay('linear', '1 s', '5 s', 0, 10), interval '5 s', 'linear capped');

-- jitter: 500 samples per strategy stay within [d*(1-j), min(d*(1+j), cap)]
-- and are not all equal
CREATE TEMP TABLE s AS
SELECT st, n, extract(epoch FROM jobq.backoff_delay(st, '10 s', '1 hour', 0.2, n))::float8 AS d
  FROM unnest(ARRAY['exponential', 'linear', 'fibonacci', 'aggressive', 'fixed']) st,
       generate_series(1, 4) n, generate_series(1, 100) i;
SELECT is_empty($$SELECT st, n, d FROM s WHERE NOT (
    d BETWEEN 0.8 * (10 * CASE st WHEN 'exponential' THEN 2 ^ (n - 1) WHEN 'linear' THEN n
                                  WHEN 'fibonacci' THEN (ARRAY[1, 1, 2, 3])[n] WHEN 'aggressive' THEN 3 ^ (n - 1)
                                  ELSE 1 END) - 1e-6
          AND 1.2 * (10 * CASE st WHEN 'exponential' THEN 2 ^ (n - 1) WHEN 'linear' THEN n
                                  WHEN 'fibonacci' THEN (ARRAY[1, 1, 2, 3])[n] WHEN 'aggressive' THEN 3 ^ (n - 1)
                                  ELSE 1 END) + 1e-6)$$,
    'every strategy with jitter 0.2: delay within +/- 20% of the exact value');
SELECT ok((SELECT bool_and(cnt > 50) FROM (SELECT count(DISTINCT d) cnt FROM s GROUP BY st, n) x),
          'jitter spreads the delays');
SELECT ok((SELECT min(d) < 9 AND max(d) > 11 FROM s WHERE st = 'fixed'), 'jitter goes both ways');
-- jitter at the cap: never above max_delay, spread below it
CREATE TEMP TABLE capped AS
SELECT extract(epoch FROM jobq.backoff_delay('exponential', '1 s', '100 s', 0.5, 30))::float8 AS d
  FROM generate_series(1, 300);
SELECT ok((SELECT max(d) <= 100 AND min(d) >= 50 FROM capped), 'at the cap: within [cap*(1-j), cap]');
SELECT ok((SELECT count(DISTINCT d) > 100 FROM capped), 'at the cap: still spread (no retry herd)');
SELECT is(jobq.backoff_delay('fixed', '0', '1 hour', 0.5, 3), interval '0', 'zero base: zero delay');

-- refused arguments
SELECT throws_ok($$SELECT jobq.backoff_delay('quadratic', '1 s', '1 h', 0, 1)$$, '22023', NULL, 'unknown strategy');
SELECT throws_ok($$SELECT jobq.backoff_delay('fixed', '1 s', '1 h', 0, 0)$$, '22023', NULL, 'n must be >= 1');
SELECT throws_ok($$SELECT jobq.backoff_delay('fixed', '1 s', '1 h', -0.1, 1)$$, '22023', NULL, 'negative jitter');
SELECT throws_ok($$SELECT jobq.backoff_delay('fixed', '1 s', '1 h', 'NaN', 1)$$, '22023', NULL, 'NaN jitter');
SELECT throws_ok($$SELECT jobq.backoff_delay('fixed', '-1 s', '1 h', 0, 1)$$, '22023', NULL, 'negative base');

SELECT * FROM finish();
ROLLBACK;
