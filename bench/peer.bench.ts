/**
 * bench:peer — the gateway against Kannel 1.4.5 (Debian's package) on the
 * same SMSC simulator and the same load, in one run.
 *
 * Per round and variant (single-segment ASCII; 3-part UCS-2 Chinese), in
 * alternating order:
 *   - Kannel:  bearerbox + smsbox, one SMPP transceiver bind, max-pending-submits = WINDOW,
 *              store-type spool (durable, like the gateway's 202), DLR mask 3 (delivered or
 *              failed) with a dlr-url per message to the callback sink; load = GET
 *              /cgi-bin/sendsms (coding=2, charset=UTF-8 for Chinese; smsbox splits).
 *   - gateway: compiled (dist/), embedded queue, --role all, one bind × WINDOW, a callbackUrl
 *              per message to the same sink; load = POST /v1/messages.
 *   - bare uWS: a uWebSockets.js handler answering 202 with no work (baseline for accepted/s).
 * Every system runs in its own processes; the SMSC simulator, the callback
 * sink and the load generator (this process, autocannon) are separate too.
 *
 * What is measured, per run (N messages, one recipient each):
 *   - accepted/s: N ÷ (first request → last 2xx answer)
 *   - msgs/s at the SMSC: N ÷ (first request → the simulator's last submit_sm)
 *   - msgs/s with callbacks: N ÷ (first request → the sink's N-th callback)
 *   - CPU per message: user + system time of the system's processes (gateway; bearerbox +
 *     smsbox) from ready to done, ÷ N
 *   - CPU per message of the peers: the same for the load generator (this process), the
 *     simulator and the sink, which share the two cores with the system measured
 *   - peak RSS (VmHWM) of those processes; p99 HTTP latency (autocannon)
 * What "receipts" means differs, and the bench says so: Kannel asks for a
 * receipt on the first part of a multipart message only, and calls its
 * dlr-url once per message; the gateway asks for and records a receipt for
 * every part, and POSTs its callback once every part of the message is final.
 * The gateway is measured on its own, stricter terms.
 *
 * Memory in the backlog (BENCH_MEMORY=1): the gateway alone, 3-part Chinese,
 * at N and at 10 × N; its peak RSS at 10 × N ÷ at N (target ≤ 1.3).
 *
 *   BENCH_N=20000 BENCH_REPEATS=3 npm run bench:peer
 *   BENCH_N=20000 BENCH_REPEATS=1 BENCH_MEMORY=1 npm run bench:peer
 *   BENCH_N=5000 BENCH_VARIANTS=none BENCH_MEMORY=1 npm run bench:peer      (memory check alone)
 *   BENCH_VARIANTS=chinese BENCH_GATEWAY_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench:peer
 *   BENCH_BEFORE_MAIN=/tmp/prev/dist/cli/main.js BENCH_BEFORE_LABEL=<commit> npm run bench:peer   (previous build as a third system)
 *   BENCH_BEFORE_MAIN=dist/cli/main.js BENCH_BEFORE_NODE_ARGS='--max-semi-space-size=64' …   (the same build under other Node flags)
 *   BENCH_SIM_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/simprof' …   (node flags of the SMSC simulator's process, e.g. to profile it)
 *   BENCH_KEEP_DATA=1 …   (keep each run's data directory, e.g. to look at the LMDB file afterwards)
 *   BENCH_AB=1 BENCH_REPEATS=10 BENCH_BEFORE_MAIN=… npm run bench:peer   (A/B: the gateway and the previous build
 *              only, no Kannel and no bare uWS, so more rounds fit; prints each round's ratio and their median;
 *              JSON as peer-ab-*.json, which results-doc.ts does not take as a record run)
 *
 * Kannel missing: the bench says so and exits 0 without figures
 * (install with `apt-get install -y kannel`).
 */
import { execSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { countSegments } from '../src/core/segment.js';
import { cpuSeconds, startBareUws, startSink, stopChild, waitFor } from './lib/processes.js';
import { BENCH_KEY as KEY, startGatewayChild } from './lib/gateway-child.js';
import { envInt, freePort, median, peakRssMiB, sampleRss, table, wallNow, writeSummary, type Row, machineNote } from './lib/report.js';
import { startSimChild } from './lib/sim-child.js';
import { ASCII_NOTICE, CHINESE_3_PART } from './lib/texts.js';

const N = envInt('BENCH_N', 20_000);
const REPEATS = envInt('BENCH_REPEATS', 3);
const WINDOW = envInt('BENCH_WINDOW', 500);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 100);
const DLR_DELAY_MS = Number(process.env['BENCH_DLR_DELAY_MS'] ?? 50);
const MEMORY = process.env['BENCH_MEMORY'] === '1';
/** Extra node flags for the gateway process only, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` (profiling). */
const GATEWAY_NODE_ARGS = (process.env['BENCH_GATEWAY_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
/** Which side-by-side variants to run: `ascii`, `chinese` (comma-separated; `none` with BENCH_MEMORY=1 runs the memory check alone). */
const ONLY = (process.env['BENCH_VARIANTS'] ?? 'ascii,chinese').split(',');
const VARIANTS = [
  { key: 'ascii', name: 'ASCII', text: ASCII_NOTICE },
  { key: 'chinese', name: '3-part UCS-2 Chinese', text: CHINESE_3_PART },
] as const;
const VARIANTS_KEYS: readonly string[] = VARIANTS.map((v) => v.key);
/**
 * A previous build of the gateway (the path of its dist/cli/main.js, run with this checkout's
 * node_modules): run as a third system in every round, so what a change bought is a same-run ratio.
 */
const BEFORE = process.env['BENCH_BEFORE_MAIN'];
/** Node flags of the `before` system instead of BENCH_GATEWAY_NODE_ARGS (an A/B of flags on one build). */
const BEFORE_NODE_ARGS = process.env['BENCH_BEFORE_NODE_ARGS']?.split(' ').filter((a) => a !== '');
/**
 * A/B of two builds (BENCH_AB=1, with BENCH_BEFORE_MAIN): only the gateway and the previous build run, in
 * alternating order. This machine's speed moves ±13% within seconds (bench/RESULTS.md, session 12), so a
 * change of a few percent needs many rounds; without Kannel (13 s and more a round) they fit.
 */
const AB = process.env['BENCH_AB'] === '1';
/** No side-by-side variant asked for: only the memory check runs. */
const MEMORY_ONLY = MEMORY && !VARIANTS_KEYS.some((k) => ONLY.includes(k));
const NUMBER = '13800138006';
const ROOT = join(import.meta.dirname, '..');



/** `before`: the previous build of the gateway (BENCH_BEFORE_MAIN), same configuration. */
type System = 'kannel' | 'gateway' | 'before';

interface Run {
  acceptedPerSecond: number;
  smscPerSecond: number;
  callbacksPerSecond: number;
  callbacks: number;
  submits: number;
  cpuUsPerMessage: number;
  /** CPU per message of the peers the system shares the cores with: the load generator (this process), the SMSC simulator and the callback sink. */
  peersCpuUsPerMessage: number;
  peakRssMiB: number;
  /** Peaks of anonymous (heap) and file-backed (mapped LMDB pages) resident memory, sampled. */
  peakAnonMiB: number;
  peakFileMiB: number;
  /** Gateway only (its /metrics, sampled every second): peak V8 heap used, and peak memory outside the V8 heap (Buffers, lmdb's). */
  peakHeapUsedMiB: number;
  peakExternalMiB: number;
  p99HttpMs: number;
  non2xx: number;
  /**
   * Kannel only: the most receipts bearerbox held waiting (its status page, "DLR: N queued", sampled
   * every 250 ms); NaN for the gateway. Printed per round beside Kannel's rate, which moves from
   * round to round for reasons not known (bench/RESULTS.md).
   */
  peakDlrQueued: number;
}

// ------------------------------------------------------------------ processes

function kannelInstalled(): boolean {
  return spawnSync('sh', ['-c', 'command -v bearerbox && command -v smsbox'], { stdio: 'ignore', env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` } }).status === 0;
}





interface Started {
  readonly url: string;
  /** The gateway's Prometheus endpoint (its process memory figures); Kannel has none. */
  readonly metricsUrl?: string;
  readonly pids: () => (number | undefined)[];
  /** Kannel: receipts waiting in bearerbox's DLR store now. */
  readonly dlrQueued?: () => Promise<number>;
  stop(): Promise<void>;
}

async function startKannel(dir: string, simPort: number): Promise<Started> {
  const [admin, boxPort, sendsms] = [await freePort(), await freePort(), await freePort()];
  mkdirSync(join(dir, 'spool'), { recursive: true });
  const conf = join(dir, 'kannel.conf');
  writeFileSync(
    conf,
    [
      'group = core',
      `admin-port = ${admin}`,
      'admin-interface = 127.0.0.1',
      'admin-password = bench',
      'admin-allow-ip = "127.0.0.1"',
      `smsbox-port = ${boxPort}`,
      'smsbox-interface = 127.0.0.1',
      'box-allow-ip = "127.0.0.1"',
      'log-level = 4',
      `log-file = "${join(dir, 'bearerbox.log')}"`,
      'dlr-storage = internal',
      // Durable, like the gateway's 202: bearerbox writes each message to its spool before acking smsbox.
      'store-type = spool',
      `store-location = "${join(dir, 'spool')}"`,
      '',
      'group = smsc',
      'smsc = smpp',
      'smsc-id = sim',
      'host = 127.0.0.1',
      `port = ${simPort}`,
      'transceiver-mode = true',
      'smsc-username = smsgw',
      'smsc-password = secret',
      'system-type = ""',
      `max-pending-submits = ${WINDOW}`,
      // The simulator writes decimal ids in submit_sm_resp and in receipts.
      'msg-id-type = 0x00',
      'enquire-link-interval = 30',
      '',
      'group = smsbox',
      'bearerbox-host = 127.0.0.1',
      `bearerbox-port = ${boxPort}`,
      `sendsms-port = ${sendsms}`,
      'sendsms-interface = 127.0.0.1',
      'log-level = 4',
      `log-file = "${join(dir, 'smsbox.log')}"`,
      // Outstanding dlr-url requests smsbox keeps (its default, stated).
      'max-pending-requests = 512',
      '',
      'group = sendsms-user',
      'username = bench',
      'password = bench',
      'max-messages = 5',
      'concatenation = true',
      'default-sender = 10690001',
      '',
    ].join('\n'),
  );
  const env = { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` };
  const bearerbox = spawn('bearerbox', ['-v', '4', conf], { stdio: ['ignore', 'ignore', 'inherit'], env });
  await waitFor('bearerbox', async () => (await fetch(`http://127.0.0.1:${admin}/status.txt?password=bench`)).ok, 20_000);
  const smsbox = spawn('smsbox', ['-v', '4', conf], { stdio: ['ignore', 'ignore', 'inherit'], env });
  // Ready when the SMPP bind is online and smsbox is connected.
  await waitFor(
    'Kannel bind and smsbox',
    async () => {
      const s = await (await fetch(`http://127.0.0.1:${admin}/status.txt?password=bench`)).text();
      return /online/.test(s.split('SMSC connections:')[1] ?? '') && /Box connections:[\s\S]*smsbox/.test(s);
    },
    30_000,
  );
  return {
    url: `http://127.0.0.1:${sendsms}`,
    pids: () => [bearerbox.pid, smsbox.pid],
    async dlrQueued() {
      const s = await (await fetch(`http://127.0.0.1:${admin}/status.txt?password=bench`)).text();
      const m = /DLR: (\d+) queued/.exec(s);
      return m ? Number(m[1]) : NaN;
    },
    async stop() {
      await stopChild(smsbox);
      await stopChild(bearerbox);
    },
  };
}

async function startGateway(dir: string, simPort: number, main = join(ROOT, 'dist', 'cli', 'main.js'), nodeArgs = GATEWAY_NODE_ARGS): Promise<Started> {
  const gw = await startGatewayChild({ dir, simPort, main, nodeArgs, window: WINDOW });
  return { url: gw.url, metricsUrl: gw.metricsUrl, pids: () => [gw.pid], stop: () => gw.stop() };
}


// ------------------------------------------------------------------ load

interface Load {
  readonly startedAt: number;
  readonly perSecond: number;
  readonly accepted: number;
  readonly non2xx: number;
  readonly p99Ms: number;
}

async function load(system: System | 'bare', url: string, text: string, sinkPort: number, n: number): Promise<Load> {
  const startedAt = wallNow();
  let lastAccepted = startedAt;
  const options: autocannon.Options =
    system === 'kannel'
      ? {
          url: `${url}/cgi-bin/sendsms?${new URLSearchParams({ username: 'bench', password: 'bench', to: NUMBER, text, ...(/^[\x20-\x7e]*$/.test(text) ? {} : { coding: '2', charset: 'UTF-8' }), 'dlr-mask': '3', 'dlr-url': `http://127.0.0.1:${sinkPort}/dlr?s=%d&id=ID` })
            .toString()
            // autocannon replaces [<id>] itself; URLSearchParams would escape the brackets.
            .replace('id%3DID', 'id%3D[<id>]')}`,
          method: 'GET',
        }
      : {
          url: `${url}/v1/messages`,
          method: 'POST',
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ to: [NUMBER], text: `${text} #[<id>]`, ...(system !== 'bare' ? { callbackUrl: `http://127.0.0.1:${sinkPort}/cb` } : {}) }),
        };
  const instance = autocannon({ ...options, connections: CONNECTIONS, amount: n, timeout: 60, idReplacement: true }) as unknown as autocannon.Instance & Promise<autocannon.Result>;
  void instance.on('response', (_client, statusCode) => {
    if (statusCode >= 200 && statusCode < 300) lastAccepted = wallNow();
  });
  const result = await instance;
  return {
    startedAt,
    perSecond: (result['2xx'] * 1000) / (lastAccepted - startedAt),
    accepted: result['2xx'],
    non2xx: result.non2xx + result.errors + result.timeouts,
    p99Ms: result.latency.p99,
  };
}

async function bareUws(text: string): Promise<number> {
  const bare = await startBareUws();
  try {
    return (await load('bare', bare.url, text, 0, N)).perSecond;
  } finally {
    await bare.stop();
  }
}

// ------------------------------------------------------------------ one run

/**
 * The peak of each figure `read` gives, read every `everyMs` until stop() (and once more then, with
 * `readAtStop`); a read that fails is skipped. A figure never read has no peak.
 */
function samplePeaks<K extends string>(read: () => Promise<Record<K, number>>, everyMs: number, readAtStop: boolean): { stop(): Promise<Partial<Record<K, number>>> } {
  const peaks: Partial<Record<K, number>> = {};
  let busy: Promise<void> = Promise.resolve();
  const sample = (): void => {
    busy = read()
      .then((figures) => {
        for (const k in figures) peaks[k] = Math.max(peaks[k] ?? 0, figures[k]);
      })
      .catch(() => undefined);
  };
  const timer = setInterval(sample, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      if (readAtStop) sample();
      await busy;
      return peaks;
    },
  };
}

/** Peaks of the gateway's V8 heap used and external memory, from its /metrics every second (zeros without a URL). */
function sampleHeap(url: string | undefined): { stop(): Promise<{ usedMiB: number; externalMiB: number }> } {
  if (url === undefined) return { stop: () => Promise.resolve({ usedMiB: 0, externalMiB: 0 }) };
  const gauge = (text: string, name: string): number => Number(new RegExp(`^smsgw_${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text)?.[1] ?? 0);
  const sampler = samplePeaks(async () => {
    const text = await (await fetch(url)).text();
    return { used: gauge(text, 'nodejs_heap_size_used_bytes'), external: gauge(text, 'nodejs_external_memory_bytes') };
  }, 1000, true);
  return {
    async stop() {
      const peaks = await sampler.stop();
      return { usedMiB: (peaks.used ?? 0) / 2 ** 20, externalMiB: (peaks.external ?? 0) / 2 ** 20 };
    },
  };
}

/** The most receipts Kannel held waiting, read from its status page every 250 ms; NaN without a reader (the gateway). */
function sampleDlrQueued(read: (() => Promise<number>) | undefined): { stop(): Promise<number> } {
  if (read === undefined) return { stop: () => Promise.resolve(NaN) };
  const sampler = samplePeaks(async () => ({ queued: await read() }), 250, false);
  return {
    async stop() {
      return (await sampler.stop()).queued ?? 0;
    },
  };
}

/** CPU seconds so far of the load generator (this process: autocannon runs here), the simulator and the sink. */
function peersCpuSeconds(simPid: number | undefined, sinkPid: number | undefined): number {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1e6 + cpuSeconds(simPid) + cpuSeconds(sinkPid);
}

async function run(system: System, text: string, n: number): Promise<Run> {
  const segments = countSegments(text).count;
  const sim = await startSimChild(4 * n * segments, { dlrDelayMs: DLR_DELAY_MS });
  const sink = await startSink();
  const dir = mkdtempSync(join(tmpdir(), `smsgw-peer-${system}-`));
  let started: Started | undefined;
  try {
    started = system === 'kannel' ? await startKannel(dir, sim.port) : await startGateway(dir, sim.port, system === 'before' ? BEFORE : undefined, system === 'before' ? BEFORE_NODE_ARGS : undefined);
    const cpuBefore = started.pids().reduce<number>((a, p) => a + cpuSeconds(p), 0);
    const peersBefore = peersCpuSeconds(sim.pid, sink.pid);
    const sampler = sampleRss(started.pids);
    const heap = sampleHeap(started.metricsUrl);
    const dlr = sampleDlrQueued(started.dlrQueued);
    const l = await load(system, started.url, text, sink.port, n);
    // Done when the sink has one callback per accepted message (bounded wait).
    const deadline = Date.now() + 900_000;
    let s = await sink.stats();
    let lastCount = -1;
    let stableSince = Date.now();
    while (Date.now() < deadline && s.count < l.accepted) {
      await new Promise((r) => setTimeout(r, 100));
      s = await sink.stats();
      if (s.count !== lastCount) {
        lastCount = s.count;
        stableSince = Date.now();
      } else if (Date.now() - stableSince > 60_000) break; // nothing arrived for a minute: report what came
    }
    const cpuAfter = started.pids().reduce<number>((a, p) => a + cpuSeconds(p), 0);
    const peersAfter = peersCpuSeconds(sim.pid, sink.pid);
    const rss = started.pids().reduce<number>((a, p) => a + peakRssMiB(p ?? 0), 0);
    const split = sampler.stop();
    const heapPeak = await heap.stop();
    const peakDlrQueued = await dlr.stop();
    const { last } = await sim.ask<{ last: { submitAt: number } }>('last');
    const { stats } = await sim.ask<{ stats: { submits: number } }>('stats');
    return {
      acceptedPerSecond: l.perSecond,
      smscPerSecond: (l.accepted * 1000) / (last.submitAt - l.startedAt),
      callbacksPerSecond: s.count >= l.accepted ? (l.accepted * 1000) / (s.lastAt - l.startedAt) : 0,
      callbacks: s.count,
      submits: stats.submits,
      cpuUsPerMessage: ((cpuAfter - cpuBefore) * 1e6) / l.accepted,
      peersCpuUsPerMessage: ((peersAfter - peersBefore) * 1e6) / l.accepted,
      peakRssMiB: rss,
      peakAnonMiB: split.anonMiB,
      peakFileMiB: split.fileMiB,
      peakHeapUsedMiB: heapPeak.usedMiB,
      peakExternalMiB: heapPeak.externalMiB,
      p99HttpMs: l.p99Ms,
      non2xx: l.non2xx + (n - l.accepted),
      peakDlrQueued,
    };
  } finally {
    await started?.stop();
    await sink.stop();
    await sim.stop();
    if (process.env['BENCH_KEEP_DATA'] === '1') process.stderr.write(`kept ${dir}\n`); else rmSync(dir, { recursive: true, force: true });
  }
}

/** A figure rounded, with thousands separators (the rounds tables). */
const fmt = (v: number): string => Math.round(v).toLocaleString('en-US');

/** The median over a system's runs of one figure. */
type Median = (s: System, f: (x: Run) => number) => number;

/** The gateway against the previous build (medians); `suffix` tells these rows from Kannel's in a shared table. */
function previousBuildRows(med: Median, suffix: string): Row[] {
  const prior = (metric: string, unit: string, f: (x: Run) => number): Row => ({ metric: `${metric}${suffix}`, value: med('gateway', f), unit, baseline: med('before', f), baselineName: 'previous build' });
  return [
    prior('msgs/s at the SMSC', 'msg/s', (x) => x.smscPerSecond),
    prior('msgs/s with callbacks', 'msg/s', (x) => x.callbacksPerSecond),
    prior('HTTP accepted/s', 'msg/s', (x) => x.acceptedPerSecond),
    prior('CPU per message', 'µs', (x) => x.cpuUsPerMessage),
    prior('peak RSS', 'MiB', (x) => x.peakRssMiB),
    prior('peak V8 heap used', 'MiB', (x) => x.peakHeapUsedMiB),
    prior('callbacks received', 'count', (x) => x.callbacks),
    prior('refused or failed requests', 'count', (x) => x.non2xx),
  ];
}

/**
 * BENCH_AB: the previous build's rows and every round's ratio (gateway ÷ previous build, same round), with
 * the median and range of those ratios: a round's two runs share the machine's state of the moment.
 */
function abTables(name: string, segments: number, runs: Record<System, Run[]>, med: Median): void {
  const rows = previousBuildRows(med, '');
  tables.push(table(`A/B, ${name}: N = ${N.toLocaleString('en-US')} messages × ${segments} part(s), 1 bind × window ${WINDOW}, ${CONNECTIONS} connections, median of ${REPEATS} (gateway vs previous build)`, rows));
  const ratios = (f: (x: Run) => number): number[] => runs.gateway.map((g, i) => f(g) / f(runs.before[i]!));
  const spread = (xs: number[]): string => `${median(xs).toFixed(3)}× (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
  tables.push([
    `Rounds (A/B, ${name}; odd rounds the gateway first):`,
    '',
    '| round | gateway msgs/s at the SMSC | previous build | ratio | CPU per message, gateway / previous build (µs) | ratio |',
    '| --- | --- | --- | --- | --- | --- |',
    ...runs.gateway.map((g, i) => {
      const b = runs.before[i]!;
      return `| ${i + 1} | ${fmt(g.smscPerSecond)} | ${fmt(b.smscPerSecond)} | ${(g.smscPerSecond / b.smscPerSecond).toFixed(2)}× | ${fmt(g.cpuUsPerMessage)} / ${fmt(b.cpuUsPerMessage)} | ${(g.cpuUsPerMessage / b.cpuUsPerMessage).toFixed(2)}× |`;
    }),
    '',
    `Per-round ratios, median (range): msgs/s at the SMSC ${spread(ratios((x) => x.smscPerSecond))}; CPU per message ${spread(ratios((x) => x.cpuUsPerMessage))}.`,
  ].join('\n'));
  (summary['variants'] as Record<string, unknown>)[name] = {
    segments,
    runs: { gateway: runs.gateway, before: runs.before },
    medians: Object.fromEntries(rows.map((x) => [x.metric, { gateway: x.value, baseline: x.baseline, ratio: x.baseline ? x.value / x.baseline : undefined }])),
    pairedRatios: { smscPerSecond: ratios((x) => x.smscPerSecond), cpuUsPerMessage: ratios((x) => x.cpuUsPerMessage) },
  };
}

// ------------------------------------------------------------------ main

if (AB && (BEFORE === undefined || MEMORY)) {
  process.stderr.write('BENCH_AB=1 compares two builds: set BENCH_BEFORE_MAIN to the previous build (and leave BENCH_MEMORY unset).\n');
  process.exit(2);
}
if (!AB && !kannelInstalled()) {
  process.stdout.write('bench:peer skipped: Kannel is not installed (bearerbox and smsbox not found). Install it with `apt-get install -y kannel`.\n');
  process.exit(0);
}
process.stderr.write('building dist/ (npm run build)…\n');
execSync('npm run --silent build', { stdio: 'inherit', cwd: ROOT });

const summary: Record<string, unknown> = {
  bench: 'peer',
  n: N,
  repeats: REPEATS,
  window: WINDOW,
  binds: 1,
  connections: CONNECTIONS,
  dlrDelayMs: DLR_DELAY_MS,
  receipts: { kannel: 'first part of each message; one dlr-url GET per message', gateway: 'every part recorded; one callback POST per message once every part is final' },
  node: process.version,
  at: new Date().toISOString(),
  variants: {},
  ...(AB ? { ab: true, before: BEFORE } : {}),
};
const tables: string[] = [];
const TARGETS: Record<string, number> = { ASCII: 2.5, '3-part UCS-2 Chinese': 2 };
for (const variant of VARIANTS.filter((v) => ONLY.includes(v.key))) {
  const segments = countSegments(variant.text).count;
  const runs: Record<System, Run[]> = { kannel: [], gateway: [], before: [] };
  const bare: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const systems: System[] = AB ? ['gateway', 'before'] : BEFORE !== undefined ? ['kannel', 'gateway', 'before'] : ['kannel', 'gateway'];
    const order = r % 2 === 0 ? systems : [...systems].reverse();
    process.stderr.write(`[${variant.name}] round ${r + 1}/${REPEATS}: `);
    if (!AB) {
      process.stderr.write('bare uWS… ');
      bare.push(await bareUws(variant.text));
    }
    for (const system of order) {
      process.stderr.write(`${system}… `);
      runs[system].push(await run(system, variant.text, N));
    }
    process.stderr.write('done\n');
  }
  const med = (s: System, f: (x: Run) => number): number => median(runs[s].map(f));
  if (AB) {
    abTables(variant.name, segments, runs, med);
    continue;
  }
  const vs = (metric: string, unit: string, f: (x: Run) => number, target?: number): Row => ({
    metric,
    value: med('gateway', f),
    unit,
    baseline: med('kannel', f),
    baselineName: 'Kannel 1.4.5',
    ...(target !== undefined ? { target } : {}),
  });
  const rows: Row[] = [
    vs('msgs/s at the SMSC', 'msg/s', (x) => x.smscPerSecond, TARGETS[variant.name]),
    vs('msgs/s with callbacks', 'msg/s', (x) => x.callbacksPerSecond),
    vs('HTTP accepted/s', 'msg/s', (x) => x.acceptedPerSecond),
    { metric: 'gateway HTTP accepted/s vs bare uWS 202', value: med('gateway', (x) => x.acceptedPerSecond), unit: 'msg/s', baseline: median(bare), baselineName: 'bare uWS 202', target: 0.5 },
    vs('CPU per message', 'µs', (x) => x.cpuUsPerMessage),
    vs('CPU per message of the peers (load, simulator, sink)', 'µs', (x) => x.peersCpuUsPerMessage),
    vs('peak RSS', 'MiB', (x) => x.peakRssMiB),
    vs('peak anonymous RSS (heap)', 'MiB', (x) => x.peakAnonMiB),
    vs('peak file-backed RSS (mapped files)', 'MiB', (x) => x.peakFileMiB),
    { metric: 'gateway peak V8 heap used', value: med('gateway', (x) => x.peakHeapUsedMiB), unit: 'MiB' },
    { metric: 'gateway peak external memory (Buffers, lmdb)', value: med('gateway', (x) => x.peakExternalMiB), unit: 'MiB' },
    vs('p99 HTTP latency', 'ms', (x) => x.p99HttpMs),
    vs('callbacks received', 'count', (x) => x.callbacks),
    vs('submit_sm at the SMSC', 'count', (x) => x.submits),
    vs('refused or failed requests', 'count', (x) => x.non2xx),
  ];
  if (BEFORE !== undefined) rows.push(...previousBuildRows(med, ' (vs the previous build)'));
  tables.push(table(`${variant.name}: N = ${N.toLocaleString('en-US')} messages × ${segments} part(s), 1 bind × window ${WINDOW}, ${CONNECTIONS} connections, receipts ${DLR_DELAY_MS} ms after the resp, median of ${REPEATS} (gateway vs Kannel)`, rows));
  if (REPEATS > 1) {
    // Every round, so the spread behind each median is visible (Kannel's own rate varies from round to round).
    const lines = [
      `Rounds (${variant.name}; odd rounds Kannel first, even rounds the gateway first):`,
      '',
      `| round | gateway msgs/s at the SMSC | Kannel msgs/s at the SMSC | ratio | CPU per message, gateway / Kannel (µs) | Kannel's receipts waiting, peak |${BEFORE !== undefined ? ' previous build msgs/s |' : ''}`,
      `| --- | --- | --- | --- | --- | --- |${BEFORE !== undefined ? ' --- |' : ''}`,
      ...runs.gateway.map((g, i) => {
        const k = runs.kannel[i]!;
        const b = runs.before[i];
        return `| ${i + 1} | ${fmt(g.smscPerSecond)} | ${fmt(k.smscPerSecond)} | ${(g.smscPerSecond / k.smscPerSecond).toFixed(2)}× | ${fmt(g.cpuUsPerMessage)} / ${fmt(k.cpuUsPerMessage)} | ${Number.isFinite(k.peakDlrQueued) ? fmt(k.peakDlrQueued) : 'n/a'} |${b !== undefined ? ` ${fmt(b.smscPerSecond)} |` : ''}`;
      }),
    ];
    tables.push(lines.join('\n'));
  }
  (summary['variants'] as Record<string, unknown>)[variant.name] = {
    segments,
    runs,
    bareUwsPerSecond: bare,
    medians: Object.fromEntries(rows.map((x) => [x.metric, { gateway: x.value, baseline: x.baseline, ratio: x.baseline ? x.value / x.baseline : undefined, ...(x.target !== undefined ? { target: x.target } : {}) }])),
  };
}

if (MEMORY) {
  // Memory in the backlog: the gateway alone, 3-part, at N and 10 × N.
  const text = VARIANTS[1].text;
  const small: Run[] = [];
  const large: Run[] = [];
  for (let r = 0; r < REPEATS; r++) {
    process.stderr.write(`[memory] round ${r + 1}/${REPEATS}: N… `);
    small.push(await run('gateway', text, N));
    process.stderr.write('10 × N… ');
    large.push(await run('gateway', text, 10 * N));
    process.stderr.write('done\n');
  }
  const rows: Row[] = [
    { metric: `gateway peak RSS at ${(10 * N).toLocaleString('en-US')}`, value: median(large.map((x) => x.peakRssMiB)), unit: 'MiB', baseline: median(small.map((x) => x.peakRssMiB)), baselineName: `at ${N.toLocaleString('en-US')}` },
    { metric: `peak anonymous RSS at ${(10 * N).toLocaleString('en-US')}`, value: median(large.map((x) => x.peakAnonMiB)), unit: 'MiB', baseline: median(small.map((x) => x.peakAnonMiB)), baselineName: `at ${N.toLocaleString('en-US')}` },
    { metric: `peak file-backed RSS at ${(10 * N).toLocaleString('en-US')}`, value: median(large.map((x) => x.peakFileMiB)), unit: 'MiB', baseline: median(small.map((x) => x.peakFileMiB)), baselineName: `at ${N.toLocaleString('en-US')}` },
    { metric: `peak V8 heap used at ${(10 * N).toLocaleString('en-US')}`, value: median(large.map((x) => x.peakHeapUsedMiB)), unit: 'MiB', baseline: median(small.map((x) => x.peakHeapUsedMiB)), baselineName: `at ${N.toLocaleString('en-US')}` },
    { metric: `peak external memory at ${(10 * N).toLocaleString('en-US')}`, value: median(large.map((x) => x.peakExternalMiB)), unit: 'MiB', baseline: median(small.map((x) => x.peakExternalMiB)), baselineName: `at ${N.toLocaleString('en-US')}` },
    { metric: 'callbacks received (10 × N)', value: median(large.map((x) => x.callbacks)), unit: 'count' },
    { metric: 'msgs/s with callbacks (10 × N)', value: median(large.map((x) => x.callbacksPerSecond)), unit: 'msg/s', baseline: median(small.map((x) => x.callbacksPerSecond)), baselineName: `at ${N.toLocaleString('en-US')}` },
  ];
  tables.push(table(`Memory in the backlog: 3-part UCS-2 Chinese, gateway alone, median of ${REPEATS} (target: RSS ratio ≤ 1.3)`, rows));
  summary['memory'] = { small, large, rssRatio: median(large.map((x) => x.peakRssMiB)) / median(small.map((x) => x.peakRssMiB)) };
}

process.stdout.write(`\n${tables.join('\n\n')}\n\n`);
// What bench/results-doc.ts writes into bench/RESULTS.md (the doc is regenerated from this JSON, never by hand).
summary['doc'] = {
  title: AB ? 'bench:peer, A/B — the gateway against a previous build, no Kannel (not a record run)' : MEMORY_ONLY ? 'bench:peer, memory in the backlog — the gateway alone at N and 10 × N (issue 20)' : 'bench:peer — the gateway against Kannel 1.4.5 (issue 20)',
  command: `${AB ? 'BENCH_AB=1 ' : ''}BENCH_N=${N} BENCH_REPEATS=${REPEATS}${MEMORY ? ' BENCH_MEMORY=1' : ''}${process.env['BENCH_VARIANTS'] ? ` BENCH_VARIANTS=${process.env['BENCH_VARIANTS']}` : ''}${BEFORE !== undefined ? ' BENCH_BEFORE_MAIN=<previous build>/dist/cli/main.js' : ''}${BEFORE_NODE_ARGS !== undefined ? ` BENCH_BEFORE_NODE_ARGS='${BEFORE_NODE_ARGS.join(' ')}'` : ''} npm run bench:peer`,
  about: [
    machineNote(),
    `Same SMSC simulator (own process, receipts ${DLR_DELAY_MS} ms after the resp), same load (autocannon, ${CONNECTIONS} keep-alive connections, own process), same callback sink (own process).`,
    ...(AB
      ? [`A/B: the gateway (compiled, embedded queue, --role all, 1 bind × window ${WINDOW}, a callbackUrl per message) and the previous build alone, in alternating order; no Kannel, no bare uWS.`]
      : [
          `Kannel: bearerbox + smsbox, 1 transceiver bind, max-pending-submits ${WINDOW}, spool store, DLR mask 3 with a dlr-url per message. Gateway: compiled, embedded queue, --role all, 1 bind × window ${WINDOW}, a callbackUrl per message.`,
          'Receipts: Kannel asks for one on the first part of a message and calls its dlr-url once per message; the gateway records a receipt for every part and POSTs its callback once every part is final (stricter).',
        ]),
    'Peak RSS is VmHWM summed over the system\'s processes; anonymous (heap) and file-backed (mapped LMDB pages) peaks are sampled every 200 ms.',
    ...(BEFORE !== undefined ? [`"Previous build": the gateway at ${process.env['BENCH_BEFORE_LABEL'] ?? BEFORE}${BEFORE_NODE_ARGS !== undefined ? ` run with Node flags \`${BEFORE_NODE_ARGS.join(' ') || '(none)'}\`` : ''}, built separately and run in every round too with the same configuration, so its rows are same-run ratios of what the changes since then bought.`] : []),
  ],
  tables,
};
// The memory check alone has its own name (and its own section of RESULTS.md: `results-doc.ts peer-memory`).
const file = writeSummary(AB ? 'peer-ab' : MEMORY_ONLY ? 'peer-memory' : 'peer', summary);
process.stdout.write(`JSON summary: ${file}\n${JSON.stringify(Object.fromEntries(Object.entries(summary['variants'] as Record<string, { medians: unknown }>).map(([k, v]) => [k, v.medians])))}\n`);
