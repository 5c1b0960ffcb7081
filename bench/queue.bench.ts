/**
 * bench:queue — the NATS JetStream queue under the gateway, as processes.
 *
 * Part "publish": messages/s made durable in JetStream through the queue
 * adapter, in this process, for 1, 10 and 100 recipients a message, with
 * BENCH_QUEUE_INFLIGHT messages waiting at once (closed loop):
 *   - batched:   the ingest JobBatcher (the code behind queue.coalesce:
 *                one JetStream publish carries many messages, flushed by
 *                flushMs = 2 / 500 recipients, as config/default.json)
 *   - baseline:  one publish per message (queue.coalesce = false), same run
 *   Target: batched ≥ 5× baseline. No HTTP, no receipt store: this is the
 *   queue path alone.
 *
 * Part "ingest": the same comparison end to end — accepted messages/s
 * (HTTP 202) of an ingest-only process with queue.coalesce true vs false.
 * This includes HTTP, validation and the receipt-store writes, which on a
 * small machine cost more than the publish (see bench/RESULTS.md).
 *
 * Part "drain": a backlog of BENCH_DRAIN_N recipients queued by an ingest
 * process, then drained through the SMSC simulator (its own process) by 1
 * and by 2 dispatcher processes sharing the data dir; submit_sm/s measured
 * at the simulator from its first to its last submit, and the time until
 * every receipt is acknowledged. Baseline: 1 dispatcher.
 *
 * Every run gets its own nats-server (free port, temp store: never the
 * system NATS on 4222) and data dir. Medians over BENCH_REPEATS; quote the
 * ratios, the machine is shared and noisy.
 *
 *   BENCH_PARTS=publish,ingest,drain BENCH_REPEATS=3 BENCH_DURATION_S=5 BENCH_DRAIN_N=100000 npm run bench:queue
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { envInt, median, table, wallNow, writeSummary, type Row } from './lib/report.js';
import { startSimChild } from './lib/sim-child.js';
import { startNatsServer, type NatsServerHandle } from '../test/support/nats-server.js';
import { deploymentConfig, simulatorAccountConfig, startGatewayProcess, type GatewayProcess } from '../test/support/gateway-process.js';
import { TEST_KEY } from '../test/support/keys.js';
import { NatsQueue } from '../src/queue/nats/queue.js';
import { JobBatcher } from '../src/send/job-batcher.js';
import { encodeJob, workSubject, type JobMessage } from '../src/core/job.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { loadConfig } from '../src/config/load.js';

const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'publish,ingest,drain').split(',').map((s) => s.trim()));
const REPEATS = envInt('BENCH_REPEATS', 3);
const DURATION_S = envInt('BENCH_DURATION_S', 5);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 64);
const DRAIN_N = envInt('BENCH_DRAIN_N', 100_000);
const QUEUE_INFLIGHT = envInt('BENCH_QUEUE_INFLIGHT', 1024);
const DRAIN_PER_MESSAGE = 500;
const RECIPIENTS = [1, 10, 100] as const;
const KEY = TEST_KEY;
const TEXT = 'Duty notice: the 18:00 shift briefing moves to room 301. Reply 1 to confirm.';

/** Distinct valid numbers whose last digit (6) avoids the simulator's steered suffixes. */
/** A valid 11-digit mobile for any i (wraps after 10^8, so long runs never make 12-digit numbers). */
function numberAt(i: number): string {
  return `13${String((i % 100_000_000) * 10 + 6).padStart(9, '0')}`;
}

function log(s: string): void {
  process.stderr.write(s);
}

// ------------------------------------------------------------------ deployment pieces

interface Deployment {
  readonly nats: NatsServerHandle;
  readonly dataDir: string;
  readonly procs: GatewayProcess[];
}

async function deployment(): Promise<Deployment> {
  return { nats: await startNatsServer({ jetstream: true }), dataDir: mkdtempSync(join(tmpdir(), 'smsgw-qbench-')), procs: [] };
}

async function teardown(d: Deployment): Promise<void> {
  for (const p of d.procs) await p.destroy();
  await d.nats.destroy();
  rmSync(d.dataDir, { recursive: true, force: true });
}

function config(d: Deployment, overrides: Record<string, unknown>, account?: Record<string, unknown>): Record<string, unknown> {
  return deploymentConfig({
    dataDir: d.dataDir,
    natsUrls: [d.nats.url],
    ...(account ? { account } : {}),
    // info: start-up lines only (dispatch readiness is read from them); nothing per message
    overrides: { log: { level: 'info' }, server: { maxInflightRequests: 50_000 }, ...overrides },
  });
}

// ------------------------------------------------------------------ part 1: publish (queue path)

interface PublishRun {
  readonly messagesPerSecond: number;
  readonly publishes: number;
}

let messageSeq = 0;

async function publishRun(batched: boolean, recipients: number): Promise<PublishRun> {
  const nats = await startNatsServer({ jetstream: true });
  const defaults = loadConfig({ env: {} });
  const metrics = createMetrics({ defaultMetrics: false });
  const queue = await NatsQueue.connect({
    servers: [nats.url],
    stream: 'BENCH_WORK',
    replicas: 1,
    options: { prefix: 'smsgw', tiers: ['routine'], ackWaitMs: 60_000, maxDeliver: 10, maxAckPending: 2_000, duplicateWindowMs: 120_000 },
    limits: { maxBytes: 8 * 1024 ** 3 },
  });
  const batcher = new JobBatcher({
    queue,
    prefix: 'smsgw',
    flushMs: defaults.queue.nats.flushMs,
    maxRecipients: Math.min(defaults.queue.batchSize, defaults.queue.nats.flushRecipients),
    maxPendingRecipients: Math.max(10 * defaults.queue.batchSize, 50_000),
    newJobId: () => `c.${++messageSeq}`,
    metrics,
  });
  const subject = workSubject('smsgw', 'routine', 'bench', 'direct');
  const expiresAt = Date.now() + 86_400_000;
  let publishes = 0;
  const one = (): Promise<void> => {
    const id = `m.${++messageSeq}`;
    const to = Array.from({ length: recipients }, (_, i) => ({ i, to: `86${numberAt(numberCursor++)}` }));
    const message: JobMessage = { id, text: TEXT, encoding: 'gsm7', sender: '10690001', expiresAt, recipients: to };
    if (batched) return batcher.add('routine', 'bench', 'direct', Date.now(), message);
    publishes++;
    const job = { v: 1 as const, id, tier: 'routine', tenant: 'bench', group: 'direct', createdAt: Date.now(), messages: [message] };
    return queue.publish([{ subject, tier: 'routine', msgId: id, data: encodeJob(job) }]).then(() => undefined);
  };
  const loop = async (seconds: number): Promise<number> => {
    const until = wallNow() + seconds * 1000;
    let done = 0;
    await Promise.all(
      Array.from({ length: QUEUE_INFLIGHT }, async () => {
        while (wallNow() < until) {
          await one();
          done++;
        }
      }),
    );
    return done;
  };
  try {
    await loop(1); // warm-up
    const before = publishes;
    const startedAt = wallNow();
    const done = await loop(DURATION_S);
    const elapsed = (wallNow() - startedAt) / 1000;
    const batches = batched ? metricCount(await metrics.registry.getSingleMetricAsString('smsgw_ingest_job_recipients')) : publishes - before;
    return { messagesPerSecond: done / elapsed, publishes: batches };
  } finally {
    await queue.close({ graceMs: 0 });
    await nats.destroy();
  }
}

/** `<name>_count N` of a histogram's text exposition. */
function metricCount(text: string): number {
  const m = /_count(?:\{[^}]*\})? (\d+)/.exec(text);
  return m ? Number(m[1]) : NaN;
}

// ------------------------------------------------------------------ part 2: ingest (HTTP)

interface IngestRun {
  readonly messagesPerSecond: number;
  readonly recipientsPerSecond: number;
  readonly non202: number;
}

let numberCursor = 0;

async function httpLoad(url: string, recipients: number, seconds: number): Promise<IngestRun> {
  const startedAt = wallNow();
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: seconds,
    timeout: 60,
    requests: [
      {
        method: 'POST',
        path: '/v1/messages',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        setupRequest: (req: autocannon.Request) => {
          const to: string[] = [];
          for (let i = 0; i < recipients; i++) to.push(numberAt(numberCursor++));
          return { ...req, body: JSON.stringify({ to, text: TEXT }) };
        },
      },
    ],
  });
  const elapsed = (wallNow() - startedAt) / 1000;
  const ok = result['2xx'];
  return { messagesPerSecond: ok / elapsed, recipientsPerSecond: (ok * recipients) / elapsed, non202: result.non2xx + result.errors + result.timeouts };
}

async function ingestRun(coalesce: boolean, recipients: number): Promise<IngestRun> {
  const d = await deployment();
  try {
    const ingest = await startGatewayProcess(undefined, { role: 'ingest', name: `ingest-${coalesce ? 'batched' : 'single'}`, config: config(d, { queue: { coalesce } }) });
    d.procs.push(ingest);
    const url = ingest.url as string;
    await httpLoad(url, recipients, 1); // warm-up: JIT, LMDB map, NATS connection
    return await httpLoad(url, recipients, DURATION_S);
  } finally {
    await teardown(d);
  }
}

// ------------------------------------------------------------------ part 3: drain

interface DrainRun {
  readonly dispatchers: number;
  readonly submitsPerSecond: number;
  readonly receiptsDoneSeconds: number;
  readonly resubmissions: number;
}

async function drainRun(dispatchers: number): Promise<DrainRun> {
  const d = await deployment();
  const sim = await startSimChild(4 * DRAIN_N);
  try {
    const ingest = await startGatewayProcess(undefined, { role: 'ingest', config: config(d, {}) });
    d.procs.push(ingest);
    const url = ingest.url as string;
    // The backlog: DRAIN_N recipients in messages of 500, 8 requests at a time.
    const messages = Math.ceil(DRAIN_N / DRAIN_PER_MESSAGE);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let m = next++; m < messages; m = next++) {
          const n = Math.min(DRAIN_PER_MESSAGE, DRAIN_N - m * DRAIN_PER_MESSAGE);
          const to = Array.from({ length: n }, (_, i) => numberAt(m * DRAIN_PER_MESSAGE + i));
          const res = await fetch(`${url}/v1/messages`, {
            method: 'POST',
            headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
            body: JSON.stringify({ to, text: TEXT }),
          });
          if (res.status !== 202) throw new Error(`backlog request ${m}: HTTP ${res.status} ${await res.text()}`);
          await res.arrayBuffer();
        }
      }),
    );
    const account = simulatorAccountConfig(sim.port, { binds: 4, window: 64 });
    const procs = await Promise.all(
      Array.from({ length: dispatchers }, (_, i) => startGatewayProcess(undefined, { role: 'dispatch', name: `dispatch-${i}`, config: config(d, {}, account) })),
    );
    d.procs.push(...procs);
    const deadline = Date.now() + 600_000;
    let receiptsDoneAt = 0;
    let submits = 0;
    for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
      const { stats } = await sim.ask<{ stats: { submits: number; dlrsAcked: number } }>('stats');
      submits = stats.submits;
      if (stats.dlrsAcked >= DRAIN_N) {
        receiptsDoneAt = wallNow();
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (receiptsDoneAt === 0) throw new Error(`drain with ${dispatchers} dispatcher(s) did not finish in 600 s`);
    const { first } = await sim.ask<{ first: [string, number][] }>('first');
    let t0 = Infinity;
    let t1 = 0;
    for (const [, at] of first) {
      if (at < t0) t0 = at;
      if (at > t1) t1 = at;
    }
    return {
      dispatchers,
      submitsPerSecond: (first.length * 1000) / Math.max(1, t1 - t0),
      // from the first submit, so process start-up is not counted
      receiptsDoneSeconds: (receiptsDoneAt - t0) / 1000,
      resubmissions: Math.max(0, submits - DRAIN_N),
    };
  } finally {
    await teardown(d);
    await sim.stop();
  }
}

// ------------------------------------------------------------------ main

const summary: Record<string, unknown> = {
  bench: 'queue',
  repeats: REPEATS,
  durationSeconds: DURATION_S,
  connections: CONNECTIONS,
  drainRecipients: DRAIN_N,
  queueInflight: QUEUE_INFLIGHT,
  node: process.version,
  at: new Date().toISOString(),
};
const tables: string[] = [];

if (PARTS.has('publish')) {
  const rows: Row[] = [];
  const runs: Record<string, { batched: PublishRun[]; single: PublishRun[] }> = {};
  for (const n of RECIPIENTS) {
    const batched: PublishRun[] = [];
    const single: PublishRun[] = [];
    for (let r = 0; r < REPEATS; r++) {
      for (const b of r % 2 === 0 ? [false, true] : [true, false]) {
        log(`[publish ${n} rcpt/msg] round ${r + 1}/${REPEATS} ${b ? 'batched' : 'one publish per message'}… `);
        const run = await publishRun(b, n);
        (b ? batched : single).push(run);
        log(`${Math.round(run.messagesPerSecond)} msg/s in ${run.publishes} publishes\n`);
      }
    }
    runs[`${n}`] = { batched, single };
    rows.push({
      metric: `msg/s into JetStream, ${n} rcpt/msg`,
      value: median(batched.map((x) => x.messagesPerSecond)),
      unit: 'msg/s',
      baseline: median(single.map((x) => x.messagesPerSecond)),
      baselineName: 'one publish per message',
      target: 5,
    });
  }
  tables.push(table(`queue path: JobBatcher vs one publish per message, ${QUEUE_INFLIGHT} messages in flight × ${DURATION_S} s, median of ${REPEATS}`, rows));
  summary['publish'] = { inflight: QUEUE_INFLIGHT, runs, medians: Object.fromEntries(rows.map((r) => [r.metric, { value: r.value, baseline: r.baseline, ratio: r.baseline ? r.value / r.baseline : undefined }])) };
}

if (PARTS.has('ingest')) {
  const rows: Row[] = [];
  const runs: Record<string, { batched: IngestRun[]; single: IngestRun[] }> = {};
  for (const n of RECIPIENTS) {
    const batched: IngestRun[] = [];
    const single: IngestRun[] = [];
    for (let r = 0; r < REPEATS; r++) {
      // alternate the order so a drifting machine does not favour one side
      const order = r % 2 === 0 ? [false, true] : [true, false];
      for (const coalesce of order) {
        log(`[ingest ${n} rcpt/msg] round ${r + 1}/${REPEATS} ${coalesce ? 'batched' : 'one publish per message'}… `);
        const run = await ingestRun(coalesce, n);
        (coalesce ? batched : single).push(run);
        log(`${Math.round(run.messagesPerSecond)} msg/s\n`);
      }
    }
    runs[`${n}`] = { batched, single };
    rows.push({
      metric: `accepted msg/s, ${n} rcpt/msg`,
      value: median(batched.map((x) => x.messagesPerSecond)),
      unit: 'msg/s',
      baseline: median(single.map((x) => x.messagesPerSecond)),
      baselineName: 'one publish per message',
      target: 5,
    });
    rows.push({
      metric: `accepted rcpt/s, ${n} rcpt/msg`,
      value: median(batched.map((x) => x.recipientsPerSecond)),
      unit: 'rcpt/s',
      baseline: median(single.map((x) => x.recipientsPerSecond)),
      baselineName: 'one publish per message',
    });
    rows.push({ metric: `non-202 answers, ${n} rcpt/msg (batched / single)`, value: median(batched.map((x) => x.non202)), unit: 'count', baseline: median(single.map((x) => x.non202)), baselineName: 'single' });
  }
  tables.push(table(`ingest into JetStream: HTTP ${CONNECTIONS} connections × ${DURATION_S} s, ingest-only process, median of ${REPEATS}`, rows));
  summary['ingest'] = { runs, medians: Object.fromEntries(rows.map((r) => [r.metric, { value: r.value, baseline: r.baseline, ratio: r.baseline ? r.value / r.baseline : undefined }])) };
}

if (PARTS.has('drain')) {
  const byK: Record<number, DrainRun[]> = { 1: [], 2: [] };
  for (let r = 0; r < REPEATS; r++) {
    for (const k of r % 2 === 0 ? [1, 2] : [2, 1]) {
      log(`[drain ${DRAIN_N} rcpt] round ${r + 1}/${REPEATS} with ${k} dispatcher(s)… `);
      const run = await drainRun(k);
      byK[k]?.push(run);
      log(`${Math.round(run.submitsPerSecond)} submit_sm/s, receipts done after ${run.receiptsDoneSeconds.toFixed(1)} s\n`);
    }
  }
  const one = byK[1] ?? [];
  const two = byK[2] ?? [];
  const rows: Row[] = [
    { metric: 'submit_sm/s, 2 dispatcher processes', value: median(two.map((x) => x.submitsPerSecond)), unit: 'PDU/s', baseline: median(one.map((x) => x.submitsPerSecond)), baselineName: '1 dispatcher' },
    { metric: 'first submit → all receipts recorded, 2 dispatchers', value: median(two.map((x) => x.receiptsDoneSeconds)), unit: 's', baseline: median(one.map((x) => x.receiptsDoneSeconds)), baselineName: '1 dispatcher' },
    { metric: 'resubmissions at SMSC (1 / 2)', value: median(one.map((x) => x.resubmissions)), unit: 'count', baseline: median(two.map((x) => x.resubmissions)), baselineName: '2 dispatchers' },
  ];
  tables.push(table(`drain: ${DRAIN_N.toLocaleString('en-US')} queued recipients → simulator (own process), 4 binds × window 64 per dispatcher, median of ${REPEATS}`, rows));
  summary['drain'] = { runs: byK, medians: Object.fromEntries(rows.map((r) => [r.metric, { value: r.value, baseline: r.baseline, ratio: r.baseline ? r.value / r.baseline : undefined }])) };
}

const out = tables.join('\n\n');
process.stdout.write(`\n${out}\n\n`);
const file = writeSummary('queue', summary);
const medians = (k: string): unknown => (summary[k] as { medians?: unknown } | undefined)?.medians;
process.stdout.write(`JSON summary: ${file}\n${JSON.stringify({ publish: medians('publish'), ingest: medians('ingest'), drain: medians('drain') })}\n`);
