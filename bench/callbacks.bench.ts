/**
 * bench:callbacks — completion callbacks at line rate.
 *
 * N one-recipient messages over HTTP, each with a `callbackUrl` to a sink on
 * loopback (bench/callback-sink.ts, its own process; `callbacks.allow`
 * ["127.0.0.1/32"] — loopback is refused otherwise); the SMSC simulator
 * (its own process) answers every submit with a receipt after
 * BENCH_DLR_DELAY_MS (50 ms, as in issue 14's measurement). The gateway runs
 * in its own process (embedded LMDB queue, one bind × window 500).
 *
 * Measured in the same run:
 *   - completed/s:  N ÷ (first request → the last receipt the gateway made durable,
 *                   i.e. the last message complete), with callbacks
 *   - callbacks/s:  N ÷ (first request → the sink's N-th callback)
 *   - ratio callbacks/s ÷ completed/s (target ≥ 0.9), and count = distinct ids = N
 *   - baseline:     the same load without callbackUrl: completed/s, and the ratio
 *                   completed/s with callbacks ÷ without; gateway CPU per message with
 *                   and without callbacks (what the callbacks cost, less noisy than rates
 *                   on a shared machine)
 * Medians over BENCH_REPEATS rounds (baseline and callbacks interleaved).
 *
 *   BENCH_N=20000 BENCH_REPEATS=1 npm run bench:callbacks
 *
 * BENCH_MODE=events: the same with per-recipient status events instead
 * (`statusCallback: { url: sink, events: ["final"] }`, batched JSON arrays):
 * events delivered/s (N ÷ first request → the sink's N-th final event) vs
 * recipients completed/s, and count = distinct (message, recipient) = N.
 *
 *   BENCH_MODE=events BENCH_N=20000 BENCH_REPEATS=1 npm run bench:callbacks
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { cpuSeconds, startSink } from './lib/processes.js';
import { BENCH_KEY as KEY, startGatewayChild } from './lib/gateway-child.js';
import { envInt, median, table, wallNow, writeSummary, type Row } from './lib/report.js';
import { startSimChild } from './lib/sim-child.js';

const N = envInt('BENCH_N', 20_000);
const REPEATS = envInt('BENCH_REPEATS', 1);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 64);
const DLR_DELAY_MS = Number(process.env['BENCH_DLR_DELAY_MS'] ?? 50);
const ROOT = join(import.meta.dirname, '..');
const EVENTS = process.env['BENCH_MODE'] === 'events';
const TEXT = 'Duty notice: the 18:00 shift briefing moves to room 301. Reply 1 to confirm.';





async function startGateway(dir: string, simPort: number): Promise<{ url: string; pid: number | undefined; stop(): Promise<void> }> {
  const gw = await startGatewayChild({ dir, simPort, main: join(ROOT, 'src', 'cli', 'main.ts'), window: 500, readyTimeoutMs: 60_000 });
  return { url: gw.url, pid: gw.pid, stop: () => gw.stop() };
}

interface Run {
  accepted: number;
  /** POSTs the sink received (events mode: batches). */
  posts: number;
  completedPerSecond: number;
  callbacksPerSecond: number;
  callbacks: number;
  distinct: number;
  /** ms from the last message complete to its callback at the sink. */
  lagMs: number;
  /** Gateway process CPU (user + system) per accepted message, load start → all done. */
  cpuUsPerMessage: number;
}

async function run(withCallbacks: boolean): Promise<Run> {
  const sim = await startSimChild(4 * N, { dlrDelayMs: DLR_DELAY_MS });
  const sink = await startSink();
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-bench-cb-'));
  let gw: { url: string; pid: number | undefined; stop(): Promise<void> } | undefined;
  try {
    gw = await startGateway(dir, sim.port);
    const cpuBefore = cpuSeconds(gw.pid);
    const startedAt = wallNow();
    const instance = autocannon({
      url: `${gw.url}/v1/messages`,
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: ['13800138006'], text: `${TEXT} #[<id>]`, ...(withCallbacks ? (EVENTS ? { statusCallback: { url: `http://127.0.0.1:${sink.port}/ev`, events: ['final'] } } : { callbackUrl: `http://127.0.0.1:${sink.port}/cb` }) : {}) }),
      connections: CONNECTIONS, amount: N, timeout: 60, idReplacement: true,
    }) as unknown as autocannon.Instance & Promise<autocannon.Result>;
    const result = await instance;
    const accepted = result['2xx'];
    // Done when every message is complete (the simulator has every receipt acknowledged) and, with
    // callbacks, the sink has one per message; bounded: stops when nothing moves for a minute.
    const deadline = Date.now() + 900_000;
    let lastProgress = Date.now();
    let seen = -1;
    for (;;) {
      const { stats } = await sim.ask<{ stats: { dlrsAcked: number } }>('stats');
      const s = withCallbacks ? await sink.stats() : { count: 0, lastAt: 0, distinct: 0, events: 0, distinctEvents: 0 };
      const got = EVENTS ? s.events : s.count;
      const done = stats.dlrsAcked >= accepted && (!withCallbacks || got >= accepted);
      if (done || Date.now() > deadline) break;
      const progress = stats.dlrsAcked + got;
      if (progress !== seen) {
        seen = progress;
        lastProgress = Date.now();
      } else if (Date.now() - lastProgress > 60_000) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const cpu = cpuSeconds(gw.pid) - cpuBefore;
    const { last } = await sim.ask<{ last: { dlrAckAt: number } }>('last');
    const raw = await sink.stats();
    const s = EVENTS ? { ...raw, count: raw.events, distinct: raw.distinctEvents } : raw;
    return {
      accepted,
      posts: raw.count,
      completedPerSecond: (accepted * 1000) / (last.dlrAckAt - startedAt),
      callbacksPerSecond: withCallbacks && s.count >= accepted ? (accepted * 1000) / (s.lastAt - startedAt) : 0,
      callbacks: s.count,
      distinct: s.distinct,
      lagMs: withCallbacks ? s.lastAt - last.dlrAckAt : 0,
      cpuUsPerMessage: (cpu * 1e6) / accepted,
    };
  } finally {
    await gw?.stop();
    await sink.stop();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const base: Run[] = [];
const cb: Run[] = [];
for (let i = 0; i < REPEATS; i++) {
  base.push(await run(false));
  cb.push(await run(true));
}
const m = (rs: Run[], f: (r: Run) => number): number => median(rs.map(f));
const completedBase = m(base, (r) => r.completedPerSecond);
const completed = m(cb, (r) => r.completedPerSecond);
const delivered = m(cb, (r) => r.callbacksPerSecond);
const ratio = m(cb, (r) => (r.completedPerSecond > 0 ? r.callbacksPerSecond / r.completedPerSecond : 0));
const allArrived = cb.every((r) => r.callbacks === r.accepted && r.distinct === r.accepted && r.accepted === N);
const rows: Row[] = EVENTS ? [
  { metric: 'recipients completed/s (with status events)', value: completed, unit: 'rcpt/s', baseline: completedBase, baselineName: 'no statusCallback' },
  { metric: 'final status events delivered/s', value: delivered, unit: 'event/s', baseline: completed, baselineName: 'completed/s', target: 0.9 },
  { metric: 'last complete → its event', value: m(cb, (r) => r.lagMs), unit: 'ms' },
  { metric: 'events per POST', value: m(cb, (r) => (r.posts > 0 ? r.callbacks / r.posts : 0)), unit: 'events' },
  { metric: 'gateway CPU per message (with status events)', value: m(cb, (r) => r.cpuUsPerMessage), unit: 'µs', baseline: m(base, (r) => r.cpuUsPerMessage), baselineName: 'no statusCallback' },
  { metric: 'final events received (all runs)', value: cb.reduce((a, r) => a + r.callbacks, 0), unit: 'events', baseline: N * REPEATS, baselineName: 'N', target: 1 },
  { metric: 'distinct recipients with a final event (all runs)', value: cb.reduce((a, r) => a + r.distinct, 0), unit: 'rcpts', baseline: N * REPEATS, baselineName: 'N', target: 1 },
] : [
  { metric: 'messages completed/s (with callbacks)', value: completed, unit: 'msg/s', baseline: completedBase, baselineName: 'no callbackUrl' },
  { metric: 'completion callbacks delivered/s', value: delivered, unit: 'POST/s', baseline: completed, baselineName: 'completed/s', target: 0.9 },
  { metric: 'last complete → its callback', value: m(cb, (r) => r.lagMs), unit: 'ms' },
  { metric: 'gateway CPU per message (with callbacks)', value: m(cb, (r) => r.cpuUsPerMessage), unit: 'µs', baseline: m(base, (r) => r.cpuUsPerMessage), baselineName: 'no callbackUrl' },
  { metric: 'callbacks received (all runs)', value: cb.reduce((a, r) => a + r.callbacks, 0), unit: 'POST', baseline: N * REPEATS, baselineName: 'N', target: 1 },
  { metric: 'distinct message ids called back (all runs)', value: cb.reduce((a, r) => a + r.distinct, 0), unit: 'ids', baseline: N * REPEATS, baselineName: 'N', target: 1 },
];
console.log(table(`bench:callbacks${EVENTS ? ' (BENCH_MODE=events)' : ''} — N=${N}, ${REPEATS} round(s), receipts after ${DLR_DELAY_MS} ms, ${CONNECTIONS} HTTP connections (shared machine: quote the ratios)`, rows));
console.log(writeSummary(EVENTS ? 'callbacks-events' : 'callbacks', { mode: EVENTS ? 'events' : 'completion', n: N, repeats: REPEATS, dlrDelayMs: DLR_DELAY_MS, completedPerSecondBaseline: completedBase, completedPerSecond: completed, callbacksPerSecond: delivered, ratio, target: 0.9, met: ratio >= 0.9 && allArrived, allArrived, runs: { baseline: base, callbacks: cb } }));
if (!allArrived) process.exitCode = 1;
