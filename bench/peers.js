// bench/peers.js — no-op execution throughput of graphile-worker and pg-boss
// against the cluster bench/run started (PGHOST/PGPORT/PGUSER/PGDATABASE from
// the environment).  Prints result rows for bench/run: key \t value \t unit \t note.
//
//   node bench/peers.js N
//
// Modules come from bench/peers/node_modules (bench/peers.sh installs them).
'use strict';
const path = require('path');
const peerDir = path.join(__dirname, 'peers', 'node_modules');
const req = (m) => require(path.join(peerDir, m));

const N = parseInt(process.argv[2] || '50000', 10);
const DEADLINE_MS = parseInt(process.env.PEERS_DEADLINE_MS || '120000', 10);
const conn = {
  host: process.env.PGHOST, port: parseInt(process.env.PGPORT, 10),
  user: process.env.PGUSER || 'postgres', database: process.env.PGDATABASE || 'bench',
};
const out = (key, value, unit, note) => process.stdout.write(`${key}\t${value}\t${unit}\t${note || ''}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const silentLogger = () => {};

async function pollUntil(pool, sql, want, t0) {
  for (;;) {
    const { rows } = await pool.query(sql);
    const n = Number(rows[0].n);
    if (n >= want) return { n, ms: Date.now() - t0 };
    if (Date.now() - t0 > DEADLINE_MS) return { n, ms: Date.now() - t0, timeout: true };
    await sleep(50);
  }
}

async function graphile(pool, key, label, extra) {
  const { run, runMigrations, Logger } = req('graphile-worker');
  const logger = new Logger(() => silentLogger);
  await runMigrations({ pgPool: pool, logger });
  await pool.query('DELETE FROM graphile_worker._private_jobs');
  await pool.query('CHECKPOINT');
  let done = 0;
  // add_jobs with job_spec built by name, so the field order does not matter
  const t_add = Date.now();
  await pool.query(`SELECT graphile_worker.add_jobs((SELECT array_agg(json_populate_record(NULL::graphile_worker.job_spec, '{"identifier":"noop"}')) FROM generate_series(1, $1)))`, [N]);
  const addMs = Date.now() - t_add;
  const t0 = Date.now();
  const runner = await run({
    pgPool: pool, logger, concurrency: extra.concurrency, noHandleSignals: true, pollInterval: 1000,
    taskList: { noop: async () => { done++; } },
    ...(extra.preset ? { preset: { worker: extra.preset } } : {}),
  });
  const r = await pollUntil(pool, `SELECT ${N} - count(*) AS n FROM graphile_worker._private_jobs`, N, t0);
  await runner.stop();
  const rate = Math.round(r.n / (r.ms / 1000));
  out(key, rate, 'jobs/s', `${label}; ${r.n} of ${N} jobs in ${(r.ms / 1000).toFixed(1)} s (wall, from runner start until the jobs table is empty)${r.timeout ? ' INCOMPLETE' : ''}; add_jobs of ${N}: ${Math.round(N / (addMs / 1000))}/s`);
}

async function pgboss(key, label, opts) {
  const PgBoss = req('pg-boss');
  const boss = new PgBoss({ ...conn, max: 10, supervise: false, schedule: false, migrate: true });
  boss.on('error', () => {});
  await boss.start();
  const pool = new (req('pg').Pool)({ ...conn, max: 2 });
  await boss.createQueue('noop').catch(() => {});
  await pool.query(`DELETE FROM pgboss.job WHERE name = 'noop'`);
  await pool.query('CHECKPOINT');
  const t_add = Date.now();
  for (let left = N; left > 0; left -= 10000) {
    const n = Math.min(10000, left);
    await boss.insert(Array.from({ length: n }, () => ({ name: 'noop', data: {} })));
  }
  const addMs = Date.now() - t_add;
  const t0 = Date.now();
  for (let i = 0; i < opts.workers; i++) {
    await boss.work('noop', { batchSize: opts.batchSize, pollingIntervalSeconds: 0.5 }, async () => {});
  }
  const r = await pollUntil(pool, `SELECT count(*) AS n FROM pgboss.job WHERE name = 'noop' AND state = 'completed'`, N, t0);
  await boss.stop({ graceful: false, wait: true }).catch(() => {});
  await pool.end();
  const rate = Math.round(r.n / (r.ms / 1000));
  out(key, rate, 'jobs/s', `${label}; ${r.n} of ${N} jobs in ${(r.ms / 1000).toFixed(1)} s (wall, from work() until all completed)${r.timeout ? ' INCOMPLETE' : ''}; insert of ${N}: ${Math.round(N / (addMs / 1000))}/s`);
}

(async () => {
  const { Pool } = req('pg');
  const versions = ['graphile-worker', 'pg-boss'].map((m) => `${m} ${req(m + '/package.json').version}`).join(', ');
  out('peers.versions', 'na', '', versions);
  const pool = new Pool({ ...conn, max: 30 });
  const step = async (name, fn) => {
    try { await fn(); } catch (e) { out(name, 'na', '', `failed: ${String(e.message || e).split('\n')[0].slice(0, 150)}`); }
  };
  await step('peer.graphile.plain', () => graphile(pool, 'peer.graphile.plain', 'graphile-worker, concurrency 10, no batching', { concurrency: 10 }));
  await step('peer.graphile.batched', () => graphile(pool, 'peer.graphile.batched', 'graphile-worker, concurrency 24, localQueue 500, completeJobBatchDelay 0', {
    concurrency: 24, preset: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
  }));
  await pool.end();
  await step('peer.pgboss', () => pgboss('peer.pgboss', 'pg-boss, 4 work() loops, batchSize 500', { workers: 4, batchSize: 500 }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
