/**
 * bench:e2e — HTTP → queue → dispatch → SMPP (4 binds) → simulator → DLR → receipts.
 *
 * Measured in one run, per variant (single-segment GSM; 3-part Chinese UCS-2):
 *   - bare uWS:  a uWebSockets.js handler that answers 202 without work (baseline for accepted/s)
 *   - raw smpp:  the `smpp` client pushing the same PDUs straight to the simulator
 *                with the same binds × window (baseline for submit_sm/s)
 *   - gateway:   accepted/s over HTTP (start of the load → its last 202); submit_sm/s
 *                (start → the simulator's last submit_sm); DLRs recorded/s (start → the last
 *                deliver_sm_resp the simulator got, sent once the receipt is durable);
 *                p50/p99 202 → first submit_sm; peak RSS of the gateway process
 * The gateway runs on the queue(s) named by BENCH_QUEUE:
 *   - embedded:  the LMDB queue in the gateway's data dir (the default deployment)
 *   - nats:      NATS JetStream — a nats-server -js of the benchmark's own
 *                (free loopback port, temp store, killed after the run; never
 *                the system NATS on 4222), queue.kind nats, default flushMs /
 *                flushRecipients / fetchBatch, and final states published as
 *                status events on <prefix>.status.<tenant>, as in production
 *   - both (default): both in every round, and a comparison table with the
 *                NATS/embedded ratio of every metric (target: throughput
 *                ≥ 0.8× — "no regression by more than 20%").
 *   - replicated: NATS, and NATS with receipt replication on (host A:
 *                every receipt-store change also written to the outbox and
 *                published to <stream>_RECEIPTS), with their ratio: what
 *                replication costs the host doing the work. After each
 *                replicated run a second host (a gateway process with its
 *                own data dir) starts and applies the whole stream: its
 *                catch-up rate (messages' changes applied per second) is
 *                how fast another host keeps up.
 *   - all:       embedded, nats and replicated.
 * Receipts exact (issue 12), after the rounds of each variant, embedded queue:
 *   the SMSC numbers ids from 1 (sequential decimal, as many SMSCs do) and
 *   sends every receipt at 0 ms right after the resp, one bind × window 500,
 *   deliver window 1000, a mix with failures (numbers ending 0005/0003 fail
 *   too): recipients that reached a final state (of those accepted),
 *   duplicate receipts (the SMSC's re-sends: its count in the same run is the
 *   baseline) and unknown receipts. BENCH_EXACT=0 skips it.
 * Each phase runs in its own processes (gateway, simulator, load generator,
 * nats-server), as in production. Medians over BENCH_REPEATS runs; the ratios
 * are what to quote.
 *
 * Protocol dimension (BENCH_PROTOCOL): smpp (default), cmpp3, or both — with
 * both, every queue runs once over SMPP (4 binds × window 64 to the SMSC
 * simulator) and once over CMPP 3.0 (4 links × window 64 to the ISMG
 * simulator, bench/cmpp-sim-process.ts), in the same rounds, and a table
 * gives CMPP ÷ SMPP of messages/s end to end (target ≥ 0.9).
 *
 *   BENCH_N=100000 BENCH_REPEATS=3 BENCH_QUEUE=both npm run bench:e2e
 *   BENCH_N=20000 BENCH_REPEATS=3 BENCH_QUEUE=embedded BENCH_PROTOCOL=both npm run bench:e2e
 *   BENCH_N=50000 BENCH_REPEATS=3 BENCH_QUEUE=replicated npm run bench:e2e
 */
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import * as hdr from 'hdr-histogram-js';
import { buildSegments, countSegments } from '../src/core/segment.js';
import { envInt, freePort, median, peakRssMiB, table, wallNow, writeSummary, type Row } from './lib/report.js';
import { rawSmppCeiling } from './lib/raw-smpp.js';
import { startCmppSimChild, startSimChild } from './lib/sim-child.js';
import { ASCII_NOTICE, CHINESE_3_PART } from './lib/texts.js';
import { open as openLmdb } from 'lmdb';
import { connect as natsConnect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer, type NatsServerHandle } from '../test/support/nats-server.js';

const N = envInt('BENCH_N', 100_000);
const REPEATS = envInt('BENCH_REPEATS', 3);
const BINDS = 4;
const WINDOW = 64;
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 64);
/** Upper bound of latency probes per run (one in flight at a time). */
const PROBES = envInt('BENCH_PROBES', 2000);
let samples = 0;
const KEY = 'bench-key-0123456789';

type QueueKind = 'embedded' | 'nats' | 'replicated';
const QUEUES: readonly QueueKind[] = ((): QueueKind[] => {
  const v = process.env['BENCH_QUEUE'] ?? 'both';
  if (v === 'both') return ['embedded', 'nats'];
  if (v === 'replicated') return ['nats', 'replicated'];
  if (v === 'all') return ['embedded', 'nats', 'replicated'];
  if (v === 'embedded' || v === 'nats') return [v];
  throw new Error('BENCH_QUEUE must be embedded, nats, both, replicated or all');
})();

type Protocol = 'smpp' | 'cmpp3';
const PROTOCOLS: readonly Protocol[] = ((): Protocol[] => {
  const v = process.env['BENCH_PROTOCOL'] ?? 'smpp';
  if (v === 'both') return ['smpp', 'cmpp3'];
  if (v === 'smpp' || v === 'cmpp3') return [v];
  throw new Error('BENCH_PROTOCOL must be smpp, cmpp3 or both');
})();
/** Result key of a (queue, protocol) run: the queue name alone for SMPP, as before. */
type RunKey = string;
const runKey = (q: QueueKind, p: Protocol): RunKey => (p === 'smpp' ? q : `${q}/${p}`);

const VARIANTS = [
  { name: 'single-segment GSM', text: ASCII_NOTICE },
  { name: '3-part Chinese UCS-2', text: CHINESE_3_PART },
] as const;

/** Distinct valid numbers (raw baseline) whose last digit (6) avoids the simulator's steered suffixes. */
function numberAt(i: number): string {
  return `13${String(i * 10 + 6).padStart(9, '0')}`;
}

// ------------------------------------------------------------------ processes

async function waitHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(t);
}

// ------------------------------------------------------------------ load

interface Load {
  readonly perSecond: number;
  readonly accepted: number;
  readonly non202: number;
  /** Probe messages: normalised number → wall ms of their 202. */
  readonly probes: Map<string, number>;
  readonly startedAt: number;
}

/**
 * The load: autocannon with one static request whose text carries a unique
 * id per request (`[<id>]`, replaced natively by autocannon — no JS per
 * request but a timestamp per response, so the client is not the
 * bottleneck), plus a probe that sends
 * one tracked message at a time to a distinct number during the load, to
 * sample 202 → submit_sm latency under full load.
 */
async function httpLoad(url: string, text: string, probe: boolean): Promise<Load> {
  const probes = new Map<string, number>();
  const startedAt = wallNow();
  let running = true;
  const body = JSON.stringify({ to: ['13800138006'], text: `${text} #[<id>]` });
  // Without a callback autocannon returns its Instance (an EventEmitter) made thenable; the types only say Promise.
  const load = autocannon({
    url: `${url}/v1/messages`,
    connections: CONNECTIONS,
    amount: N,
    timeout: 60,
    idReplacement: true,
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body,
  }) as unknown as autocannon.Instance & Promise<autocannon.Result>;
  // autocannon resolves on its next 1-second tick after the last response, so its own end
  // overstates the elapsed time by up to a second (10% at 10 s): the last 2xx is timed here,
  // and the probe stops with the last response, not with that tick (its messages count in the
  // submit and DLR windows, which would otherwise end on the tick too).
  let lastAccepted = startedAt;
  let responses = 0;
  void load.on('response', (_client, statusCode) => {
    if (statusCode >= 200 && statusCode < 300) lastAccepted = wallNow();
    if (++responses >= N) running = false;
  });
  const prober = (async () => {
    for (let i = 0; probe && running && i < PROBES; i++) {
      const to = `139${String(i * 10 + 6).padStart(8, '0')}`;
      try {
        const res = await fetch(`${url}/v1/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ to: [to], text: `${text} probe ${i}` }),
        });
        if (res.status === 202) probes.set(`86${to}`, wallNow());
        await res.arrayBuffer();
      } catch {
        /* counted as missing from the sample */
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  const result = await load;
  running = false;
  await prober;
  const elapsed = (lastAccepted - startedAt) / 1000;
  return { perSecond: result['2xx'] / elapsed, accepted: result['2xx'] + probes.size, non202: result.non2xx + result.errors + result.timeouts, probes, startedAt };
}

async function bareUws(text: string): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'bare-uws.ts'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
    child.once('exit', (c) => reject(new Error(`bare uws exited ${c}`)));
  });
  try {
    return (await httpLoad(`http://127.0.0.1:${port}`, text, false)).perSecond;
  } finally {
    await stopChild(child);
  }
}

function metricSum(metrics: string, name: string): number {
  let sum = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === '{' || line[name.length] === ' ')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface GatewayRun {
  acceptedPerSecond: number;
  submitsPerSecond: number;
  dlrsPerSecond: number;
  p50ms: number;
  p99ms: number;
  peakRssMiB: number;
  latencySamples: number;
  non202: number;
  duplicates: number;
  /** Peak RSS of the nats-server process (NATS runs only). */
  natsPeakRssMiB?: number;
  /** Replicated runs: a second host applying the whole replication stream, messages' changes per second. */
  replicaCatchUpPerSecond?: number;
  /** Replicated runs: replication stream messages (outbox entries) the run produced. */
  replicationEntries?: number;
  /** Exact runs: recipients final (smsgw_recipients_final_total), receipts by outcome, the SMSC's re-sends. */
  exact?: { accepted: number; recipientsFinal: number; duplicateReceipts: number; unknownReceipts: number; smscResends: number };
}

/** The receipts-exact case (issue 12): one bind × window 500, ids from 1, receipts at 0 ms with failures in the mix. */
const EXACT = process.env['BENCH_EXACT'] !== '0';
const EXACT_SIM = { firstMessageId: 1, dlrDelayMs: 0, deliverWindow: 1000, dlrMix: { DELIVRD: 6, UNDELIV: 1, EXPIRED: 1, REJECTD: 1 } };

async function gatewayRun(text: string, segments: number, queue: QueueKind, protocol: Protocol = 'smpp', exact = false): Promise<GatewayRun> {
  const sim = protocol === 'smpp' ? await startSimChild(4 * N, exact ? EXACT_SIM : { firstMessageId: 1 }) : await startCmppSimChild(4 * N);
  let nats: NatsServerHandle | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-bench-'));
  const port = await freePort();
  const configFile = join(dataDir, 'bench.json');
  if (queue !== 'embedded') nats = await startNatsServer({ jetstream: true, storeDir: join(dataDir, 'nats') });
  const replication = queue === 'replicated' ? { replication: { enabled: true, host: 'bench-a' } } : {};
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: join(dataDir, 'data'),
      log: { level: 'warn' },
      server: { host: '127.0.0.1', port },
      auth: { apiKeys: [{ key: KEY, tenant: 'bench', tiers: ['*'] }] },
      simulator: { enabled: false },
      // Only the queue differs between the two runs; NATS keeps config/default.json's flushMs, flushRecipients, stream and replicas.
      ...(nats ? { queue: { kind: 'nats', nats: { servers: [nats.url], ...replication } } } : {}),
      smpp: {
        accounts: [
          protocol === 'smpp'
            ? { name: 'sim', host: '127.0.0.1', port: sim.port, systemId: 'smsgw', password: 'secret', systemType: '', tls: false, binds: exact ? 1 : BINDS, window: exact ? 500 : WINDOW, tps: 0, responseTimeoutMs: 10000, enquireLinkMs: 30000, reconnectInitialMs: 100, reconnectMaxMs: 2000, throttleBackoffMs: 50, operators: ['*'] }
            // The same links, window and pacing over CMPP 3.0.
            : { name: 'sim', protocol: 'cmpp3', host: '127.0.0.1', port: sim.port, spId: '901234', sharedSecret: 'secret', serviceId: 'MGOV', accessCode: '1065700', links: BINDS, window: WINDOW, tps: 0, responseTimeoutMs: 10000, activeTestMs: 30000, reconnectInitialMs: 100, reconnectMaxMs: 2000, throttleBackoffMs: 50, operators: ['*'] },
        ],
      },
    }),
  );
  // The gateway runs compiled, as in production (tsx adds ~10% CPU per request).
  const gw = spawn(process.execPath, [join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'), 'start', '--config', configFile], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env },
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${url}/readyz`, 30_000);
    const load = await httpLoad(url, text, true);
    const expected = load.accepted * segments;
    const deadline = Date.now() + 600_000;
    let dlrsDoneAt = 0;
    let submitsDoneAt = 0;
    while (Date.now() < deadline && (dlrsDoneAt === 0 || submitsDoneAt === 0)) {
      const m = await (await fetch(`${url}/metrics`)).text();
      const now = wallNow();
      if (submitsDoneAt === 0 && metricSum(m, 'smsgw_dispatch_segments_total{outcome="accepted"}') >= expected) submitsDoneAt = now;
      if (dlrsDoneAt === 0 && metricSum(m, 'smsgw_dlr_received_total') >= expected) dlrsDoneAt = now;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (dlrsDoneAt === 0 || submitsDoneAt === 0) throw new Error('gateway did not finish in 600 s');
    // The gateway counts a receipt before its deliver_sm_resp reaches the simulator: wait for the simulator too.
    let stats = { submits: 0, dlrsAcked: 0 };
    for (let i = 0; i < 3_000; i++) {
      stats = (await sim.ask<{ stats: { submits: number; dlrsAcked: number } }>('stats')).stats;
      if (stats.submits >= expected && stats.dlrsAcked >= expected) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    let exactResult: GatewayRun['exact'];
    if (exact) {
      // Every recipient final (bounded): a receipt given to the wrong part leaves its own recipient submitted.
      let m = '';
      for (let i = 0; i < 600; i++) {
        m = await (await fetch(`${url}/metrics`)).text();
        if (metricSum(m, 'smsgw_recipients_final_total') >= load.accepted) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const full = (await sim.ask<{ stats: { deliveryRetries: number } }>('stats')).stats;
      exactResult = {
        accepted: load.accepted,
        recipientsFinal: metricSum(m, 'smsgw_recipients_final_total'),
        duplicateReceipts: metricSum(m, 'smsgw_dlr_outcome_total{account="sim",outcome="duplicate"}') + metricSum(m, 'smsgw_dlr_early_resolved_total{account="sim",outcome="duplicate"}'),
        unknownReceipts: metricSum(m, 'smsgw_dlr_outcome_total{account="sim",outcome="unknown"}') + metricSum(m, 'smsgw_dlr_early_resolved_total{account="sim",outcome="unknown"}'),
        smscResends: full.deliveryRetries,
      };
    }
    const { first } = await sim.ask<{ first: [string, number][] }>('first');
    // Window ends as the simulator saw them (last submit_sm, last receipt acknowledged by the
    // gateway once durable); the metrics polls above only say that everything is done.
    const { last } = await sim.ask<{ last: { submitAt: number; dlrAckAt: number } }>('last');
    const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
    for (const [dest, at] of first) {
      const acceptedAt = load.probes.get(dest);
      if (acceptedAt !== undefined) h.recordValue(Math.max(1, Math.round((at - acceptedAt) * 1000)));
    }
    samples = h.totalCount;
    const rss = peakRssMiB(gw.pid ?? 0);
    const natsPid = nats?.pid();
    const replica = queue === 'replicated' && nats ? await replicaCatchUp(nats, dataDir, load.accepted) : undefined;
    return {
      acceptedPerSecond: load.perSecond,
      submitsPerSecond: (expected * 1000) / (last.submitAt - load.startedAt),
      dlrsPerSecond: (expected * 1000) / (last.dlrAckAt - load.startedAt),
      p50ms: h.getValueAtPercentile(50) / 1000,
      p99ms: h.getValueAtPercentile(99) / 1000,
      peakRssMiB: rss,
      latencySamples: samples,
      non202: load.non202,
      // Every submit beyond the segments needed was a resubmission (the load reuses one number, so the
      // simulator's content-hash duplicate counter would also count look-alike parts of different messages).
      duplicates: Math.max(0, stats.submits - expected),
      ...(natsPid !== undefined ? { natsPeakRssMiB: peakRssMiB(natsPid) } : {}),
      ...(replica ? { replicaCatchUpPerSecond: replica.perSecond, replicationEntries: replica.entries } : {}),
      ...(exactResult ? { exact: exactResult } : {}),
    };
  } finally {
    await stopChild(gw);
    await sim.stop();
    await nats?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * A second host catching up: a gateway process (role ingest, its own data
 * dir, replication host bench-b) started once host A has published
 * everything; timed from its start to its stored position reaching the
 * stream's last sequence (read from its LMDB, read-only).
 */
async function replicaCatchUp(nats: NatsServerHandle, dataDir: string, messages: number): Promise<{ perSecond: number; entries: number }> {
  const nc = await natsConnect({ servers: [nats.url] });
  let entries = 0;
  try {
    const jsm = await jetstreamManager(nc);
    // Host A's relay may still be publishing the last receipts' changes: wait until the stream stops growing.
    let last = -1;
    for (let i = 0; i < 600; i++) {
      const seq = (await jsm.streams.info('SMSGW_WORK_RECEIPTS')).state.last_seq;
      if (seq === last) break;
      last = seq;
      await new Promise((r) => setTimeout(r, 250));
    }
    entries = last;
  } finally {
    await nc.close();
  }
  const dir = join(dataDir, 'replica');
  const port = await freePort();
  const configFile = join(dataDir, 'replica.json');
  writeFileSync(configFile, JSON.stringify({
    dataDir: dir,
    log: { level: 'warn' },
    server: { host: '127.0.0.1', port },
    auth: { apiKeys: [{ key: KEY, tenant: 'bench', tiers: ['*'] }] },
    simulator: { enabled: false },
    queue: { kind: 'nats', nats: { servers: [nats.url], replication: { enabled: true, host: 'bench-b' } } },
  }));
  const startedAt = wallNow();
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'), 'start', '--role', 'ingest', '--config', configFile], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env },
  });
  try {
    await waitHttp(`http://127.0.0.1:${port}/readyz`, 30_000);
    const env = openLmdb({ path: join(dir, 'gateway.lmdb'), maxDbs: 128, compression: false, readOnly: true });
    try {
      const positions = env.openDB<[number, number], string>({ name: 'receipts.replica.position', encoding: 'msgpack' });
      const deadline = Date.now() + 600_000;
      while (Date.now() < deadline) {
        const at = positions.get('stream');
        if (at !== undefined && at[0] >= entries) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const at = positions.get('stream');
      if (at === undefined || at[0] < entries) throw new Error(`replica applied through ${at?.[0] ?? 0} of ${entries} in 600 s`);
    } finally {
      await env.close();
    }
    return { perSecond: (messages * 1000) / (wallNow() - startedAt), entries };
  } finally {
    await stopChild(child);
  }
}

async function rawRun(text: string): Promise<number> {
  const sim = await startSimChild(4 * N);
  try {
    const enc = countSegments(text).encoding;
    const pdus = [];
    for (let i = 0; i < N; i++) {
      const destination = `86${numberAt(i)}`;
      for (const s of buildSegments(text, enc, i & 0xff)) pdus.push({ destination, payload: Buffer.from(s.payload), dataCoding: s.dataCoding, esmClass: s.esmClass });
    }
    const r = await rawSmppCeiling({ host: '127.0.0.1', port: sim.port, binds: BINDS, window: WINDOW, pdus, timeoutMs: 600_000 });
    return r.perSecond;
  } finally {
    await sim.stop();
  }
}

// ------------------------------------------------------------------ main

process.stderr.write('building dist/ (npm run build)…\n');
execSync('npm run --silent build', { stdio: 'inherit', cwd: join(import.meta.dirname, '..') });
const summary: Record<string, unknown> = { bench: 'e2e', n: N, repeats: REPEATS, binds: BINDS, window: WINDOW, connections: CONNECTIONS, queues: QUEUES, protocols: PROTOCOLS, node: process.version, at: new Date().toISOString(), variants: {} };
const tables: string[] = [];
const ratioSummary: Record<string, unknown> = {};
for (const variant of VARIANTS) {
  const segments = countSegments(variant.text).count;
  const segmentsOf = (p: Protocol): number => countSegments(variant.text, p === 'smpp' ? 'smpp' : 'cmpp').count;
  const bare: number[] = [];
  const raw: number[] = [];
  const runs: Record<RunKey, GatewayRun[]> = {};
  for (const q of QUEUES) for (const p of PROTOCOLS) runs[runKey(q, p)] = [];
  for (let r = 0; r < REPEATS; r++) {
    process.stderr.write(`[${variant.name}] round ${r + 1}/${REPEATS}: bare uWS… `);
    bare.push(await bareUws(variant.text));
    process.stderr.write('raw smpp… ');
    raw.push(await rawRun(variant.text));
    // Alternate which queue goes first, so a slow drift of the machine does not favour one of them.
    const order = r % 2 === 0 ? QUEUES : [...QUEUES].reverse();
    for (const q of order) {
      // Alternate the protocol order too.
      for (const p of r % 2 === 0 ? PROTOCOLS : [...PROTOCOLS].reverse()) {
        process.stderr.write(`gateway (${q}, ${p})… `);
        (runs[runKey(q, p)] as GatewayRun[]).push(await gatewayRun(variant.text, segmentsOf(p), q, p));
      }
    }
    process.stderr.write('done\n');
  }
  const bareM = median(bare);
  const rawM = median(raw);
  const medianOf = (q: RunKey, f: (g: GatewayRun) => number): number => median((runs[q] ?? []).map(f));
  const rowsFor = (q: QueueKind): Row[] => {
    const med = (f: (g: GatewayRun) => number): number => medianOf(q, f);
    const rows: Row[] = [
      { metric: 'HTTP accepted/s', value: med((g) => g.acceptedPerSecond), unit: 'msg/s', baseline: bareM, baselineName: 'bare uWS 202', target: 0.5 },
      { metric: 'submit_sm/s end to end', value: med((g) => g.submitsPerSecond), unit: 'PDU/s', baseline: rawM, baselineName: 'raw smpp client', target: 0.6 },
      { metric: 'DLRs recorded/s', value: med((g) => g.dlrsPerSecond), unit: 'DLR/s', baseline: rawM, baselineName: 'raw smpp client' },
      { metric: 'p50 202 → submit_sm', value: med((g) => g.p50ms), unit: 'ms' },
      { metric: 'p99 202 → submit_sm', value: med((g) => g.p99ms), unit: 'ms' },
      { metric: 'latency samples (probes)', value: med((g) => g.latencySamples), unit: 'count' },
      { metric: 'gateway peak RSS', value: med((g) => g.peakRssMiB), unit: 'MiB' },
    ];
    if (q !== 'embedded') rows.push({ metric: 'nats-server peak RSS', value: med((g) => g.natsPeakRssMiB ?? NaN), unit: 'MiB' });
    if (q === 'replicated') {
      rows.push(
        { metric: 'replication stream messages', value: med((g) => g.replicationEntries ?? NaN), unit: 'count' },
        { metric: 'second host catch-up (from its process start)', value: med((g) => g.replicaCatchUpPerSecond ?? NaN), unit: 'msg/s', baseline: med((g) => g.submitsPerSecond / segments), baselineName: 'messages/s end to end (this run)' },
      );
    }
    rows.push(
      { metric: 'non-202 answers', value: med((g) => g.non202), unit: 'count' },
      { metric: 'resubmissions at SMSC', value: med((g) => g.duplicates), unit: 'count' },
    );
    return rows;
  };
  const entry: Record<string, unknown> = { segments, bareUwsPerSecond: bare, rawSmppPerSecond: raw };
  if (PROTOCOLS.includes('cmpp3')) {
    // CMPP 3.0 against SMPP, same rounds, same links × window, same load: messages/s end to end.
    for (const q of QUEUES) {
      const k = runKey(q, 'cmpp3');
      const cs = segmentsOf('cmpp3');
      const msgs = (key: RunKey, segs: number, f: (g: GatewayRun) => number): number => medianOf(key, f) / segs;
      const cmp: Row[] = [
        { metric: 'messages/s end to end (all parts submitted)', value: msgs(k, cs, (g) => g.submitsPerSecond), unit: 'msg/s', baseline: PROTOCOLS.includes('smpp') ? msgs(q, segments, (g) => g.submitsPerSecond) : NaN, baselineName: 'SMPP, same run', target: 0.9 },
        { metric: 'receipts recorded/s', value: medianOf(k, (g) => g.dlrsPerSecond), unit: 'DLR/s', ...(PROTOCOLS.includes('smpp') ? { baseline: medianOf(q, (g) => g.dlrsPerSecond), baselineName: 'SMPP, same run' } : {}) },
        { metric: 'HTTP accepted/s', value: medianOf(k, (g) => g.acceptedPerSecond), unit: 'msg/s', ...(PROTOCOLS.includes('smpp') ? { baseline: medianOf(q, (g) => g.acceptedPerSecond), baselineName: 'SMPP, same run' } : {}) },
        { metric: 'p50 202 → first submit', value: medianOf(k, (g) => g.p50ms), unit: 'ms' },
        { metric: 'p99 202 → first submit', value: medianOf(k, (g) => g.p99ms), unit: 'ms' },
        { metric: 'gateway peak RSS', value: medianOf(k, (g) => g.peakRssMiB), unit: 'MiB' },
        { metric: 'non-202 answers', value: medianOf(k, (g) => g.non202), unit: 'count' },
        { metric: 'resubmissions at ISMG', value: medianOf(k, (g) => g.duplicates), unit: 'count' },
      ];
      tables.push(table(`${variant.name}, ${q} queue: CMPP 3.0 (${BINDS} links × window ${WINDOW}, ${cs} part(s)) vs SMPP (${segments} part(s)), median of ${REPEATS}`, cmp));
    }
  }
  for (const q of PROTOCOLS.includes('smpp') ? QUEUES : []) {
    const rows = rowsFor(q);
    tables.push(table(`${variant.name}, ${q} queue: N = ${N.toLocaleString('en-US')} messages × ${segments} segment(s), ${BINDS} binds × window ${WINDOW}, median of ${REPEATS}`, rows));
    entry[q] = { runs: runs[q], medians: Object.fromEntries(rows.map((r) => [r.metric, { value: r.value, baseline: r.baseline, ratio: r.baseline ? r.value / r.baseline : undefined }])) };
  }
  for (const q of PROTOCOLS.includes('cmpp3') ? QUEUES : []) {
    const k = runKey(q, 'cmpp3');
    const cs = segmentsOf('cmpp3');
    const cm = medianOf(k, (g) => g.submitsPerSecond) / cs;
    const sm = PROTOCOLS.includes('smpp') ? medianOf(q, (g) => g.submitsPerSecond) / segments : NaN;
    entry[k] = { runs: runs[k], medians: { 'messages/s end to end': { value: cm, baseline: sm, ratio: sm ? cm / sm : undefined, target: 0.9 }, 'receipts recorded/s': { value: medianOf(k, (g) => g.dlrsPerSecond) } } };
  }
  if (PROTOCOLS.includes('smpp') && QUEUES.includes('embedded') && QUEUES.includes('nats')) {
    // NATS against embedded, same rounds: throughput ratios ≥ 0.8 mean "no regression by more than 20%";
    // for latencies and memory the ratio is NATS ÷ embedded (lower is better, no target).
    const vs = (metric: string, unit: string, f: (g: GatewayRun) => number, target?: number): Row => ({
      metric,
      value: medianOf('nats', f),
      unit,
      baseline: medianOf('embedded', f),
      baselineName: 'embedded queue',
      ...(target !== undefined ? { target } : {}),
    });
    const cmp: Row[] = [
      vs('HTTP accepted/s', 'msg/s', (g) => g.acceptedPerSecond, 0.8),
      vs('submit_sm/s end to end', 'PDU/s', (g) => g.submitsPerSecond, 0.8),
      vs('DLRs recorded/s', 'DLR/s', (g) => g.dlrsPerSecond, 0.8),
      vs('p50 202 → submit_sm', 'ms', (g) => g.p50ms),
      vs('p99 202 → submit_sm', 'ms', (g) => g.p99ms),
      vs('gateway peak RSS', 'MiB', (g) => g.peakRssMiB),
    ];
    tables.push(table(`${variant.name}: NATS JetStream vs embedded queue (same rounds), median of ${REPEATS}`, cmp));
    const ratios = Object.fromEntries(cmp.map((r) => [r.metric, { nats: r.value, embedded: r.baseline, ratio: r.baseline ? r.value / r.baseline : undefined, ...(r.target !== undefined ? { target: r.target } : {}) }]));
    entry['natsVsEmbedded'] = ratios;
    ratioSummary[variant.name] = ratios;
  }
  if (PROTOCOLS.includes('smpp') && QUEUES.includes('replicated') && QUEUES.includes('nats')) {
    // Replication on against off, same rounds: what the outbox and its relay cost the working host.
    const vs = (metric: string, unit: string, f: (g: GatewayRun) => number): Row => ({
      metric, value: medianOf('replicated', f), unit, baseline: medianOf('nats', f), baselineName: 'NATS, no replication',
    });
    const cmp: Row[] = [
      vs('HTTP accepted/s', 'msg/s', (g) => g.acceptedPerSecond),
      vs('submit_sm/s end to end', 'PDU/s', (g) => g.submitsPerSecond),
      vs('DLRs recorded/s', 'DLR/s', (g) => g.dlrsPerSecond),
      vs('p99 202 → submit_sm', 'ms', (g) => g.p99ms),
      vs('gateway peak RSS', 'MiB', (g) => g.peakRssMiB),
    ];
    tables.push(table(`${variant.name}: NATS with receipt replication vs without (same rounds), median of ${REPEATS}`, cmp));
    entry['replicatedVsNats'] = Object.fromEntries(cmp.map((r) => [r.metric, { replicated: r.value, nats: r.baseline, ratio: r.baseline ? r.value / r.baseline : undefined }]));
  }
  if (EXACT && PROTOCOLS.includes('smpp')) {
    const exactRuns: GatewayRun[] = [];
    for (let r = 0; r < REPEATS; r++) {
      process.stderr.write(`[${variant.name}] receipts exact ${r + 1}/${REPEATS}… `);
      exactRuns.push(await gatewayRun(variant.text, segments, 'embedded', 'smpp', true));
      process.stderr.write('done\n');
    }
    const med = (f: (e: NonNullable<GatewayRun['exact']>) => number): number => median(exactRuns.map((g) => f(g.exact!)));
    tables.push(table(`${variant.name}, receipts exact: ids from 1, receipts 0 ms after the resp, 1 bind × window 500, embedded queue, median of ${REPEATS}`, [
      { metric: 'recipients final', value: med((e) => e.recipientsFinal), unit: 'count', baseline: med((e) => e.accepted), baselineName: 'accepted', target: 1 },
      { metric: 'duplicate receipts', value: med((e) => e.duplicateReceipts), unit: 'count', baseline: med((e) => e.smscResends), baselineName: 'SMSC re-sends, same run' },
      { metric: 'unknown receipts', value: med((e) => e.unknownReceipts), unit: 'count' },
      { metric: 'DLRs recorded/s', value: median(exactRuns.map((g) => g.dlrsPerSecond)), unit: 'DLR/s' },
    ]));
    entry['receiptsExact'] = exactRuns.map((g) => ({ ...g.exact, dlrsPerSecond: g.dlrsPerSecond }));
  }
  (summary['variants'] as Record<string, unknown>)[variant.name] = entry;
}
if (PROTOCOLS.includes('smpp') && QUEUES.includes('embedded') && QUEUES.includes('nats')) summary['natsVsEmbedded'] = ratioSummary;
const out = tables.join('\n\n');
process.stdout.write(`\n${out}\n\n`);
const file = writeSummary('e2e', summary);
const mediansOnly = Object.fromEntries(
  Object.entries(summary['variants'] as Record<string, Record<string, unknown>>).map(([k, v]) => [
    k,
    {
      ...Object.fromEntries(QUEUES.flatMap((q) => PROTOCOLS.map((p) => runKey(q, p))).filter((key) => v[key] !== undefined).map((key) => [key, (v[key] as { medians: unknown }).medians])),
      ...(v['natsVsEmbedded'] ? { natsVsEmbedded: v['natsVsEmbedded'] } : {}),
      ...(v['replicatedVsNats'] ? { replicatedVsNats: v['replicatedVsNats'] } : {}),
    },
  ]),
);
process.stdout.write(`JSON summary: ${file}\n${JSON.stringify(mediansOnly)}\n`);
