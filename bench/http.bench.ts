/**
 * bench:http — the HTTP intake alone: POST /v1/messages on the compiled
 * gateway (dist/, embedded queue, --role all, an SMPP simulator and a
 * callback sink in their own processes, a callbackUrl per message, as in
 * bench:peer) against a bare uWebSockets.js 202 handler (bench/bare-uws.ts),
 * the same load (autocannon, this process), in one run.
 *
 * Per round, in alternating order: bare uWS, the gateway, and (with
 * BENCH_BEFORE_MAIN) a previous build as a third system; with three the order
 * rotates, so each system runs first, second and last equally often
 * (reversing alone left the gateway second in every round, and an A/A of one
 * build, 4 rounds, had the second slot 20% behind: most likely the previous
 * run's data still being written back). Each gateway run is a fresh process
 * on a fresh data directory.
 *
 * What is measured, per run (N requests, one recipient each):
 *   - accepted/s: 2xx answers ÷ (first request → last 2xx answer)
 *   - CPU per request while loading: user + system time of the server process
 *     from the first request to the last answer, ÷ 2xx answers (for the
 *     gateway this includes the dispatch that runs alongside, as in production)
 *   - CPU per message to the end: the gateway's time until the sink has every
 *     callback (bounded wait), ÷ 2xx answers
 *   - p99 latency (autocannon)
 *
 *   BENCH_N=10000 BENCH_REPEATS=3 npm run bench:http
 *   BENCH_BEFORE_MAIN=/tmp/prev/dist/cli/main.js npm run bench:http    (a previous build as a third system)
 *   BENCH_BEFORE_MAIN=dist/cli/main.js BENCH_BEFORE_NODE_ARGS='--import ./x.mjs' …   (the same build under other Node flags)
 *   BENCH_GATEWAY_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' BENCH_REPEATS=1 npm run bench:http
 *   BENCH_DISPATCH=0 …   (intake alone: the SMSC account points at a closed port, nothing is sent)
 *   BENCH_NO_BUILD=1 …   (use dist/ as it is)
 */
import { execSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { cpuSeconds, startBareUws, startSink, type ServerChild } from './lib/processes.js';
import { BENCH_KEY as KEY, startGatewayChild } from './lib/gateway-child.js';
import { envInt, freePort, median, table, wallNow, writeSummary, type Row, machineNote } from './lib/report.js';
import { startSimChild } from './lib/sim-child.js';
import { ASCII_NOTICE } from './lib/texts.js';

const N = envInt('BENCH_N', 10_000);
const REPEATS = envInt('BENCH_REPEATS', 3);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 100);
const WINDOW = envInt('BENCH_WINDOW', 500);
const GATEWAY_NODE_ARGS = (process.env['BENCH_GATEWAY_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
const BEFORE = process.env['BENCH_BEFORE_MAIN'];
/** Node flags of the `before` system instead of BENCH_GATEWAY_NODE_ARGS (an A/B of flags on one build). */
const BEFORE_NODE_ARGS = process.env['BENCH_BEFORE_NODE_ARGS']?.split(' ').filter((a) => a !== '');
/** BENCH_DISPATCH=0: the gateway's SMSC account points at a closed port, so nothing is dispatched and the CPU is the intake's alone. */
const DISPATCH = process.env['BENCH_DISPATCH'] !== '0';
const NUMBER = '13800138006';
const ROOT = join(import.meta.dirname, '..');

type System = 'bare' | 'gateway' | 'before';

interface Run {
  acceptedPerSecond: number;
  accepted: number;
  non2xx: number;
  cpuUsPerRequest: number;
  /** Gateway only: CPU until every callback arrived, per message. */
  cpuUsPerMessage?: number;
  callbacks?: number;
  p99Ms: number;
}

async function startGateway(dir: string, simPort: number, main: string, nodeArgs: readonly string[]): Promise<ServerChild> {
  const gw = await startGatewayChild({ dir, simPort, main, nodeArgs, window: WINDOW });
  return { url: gw.url, pid: gw.pid, stop: () => gw.stop() };
}

async function load(server: ServerChild, sinkPort: number): Promise<Omit<Run, 'callbacks' | 'cpuUsPerMessage'>> {
  const cpu0 = cpuSeconds(server.pid);
  const startedAt = wallNow();
  let lastAccepted = startedAt;
  const instance = autocannon({
    url: `${server.url}/v1/messages`,
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to: [NUMBER], text: `${ASCII_NOTICE} #[<id>]`, callbackUrl: `http://127.0.0.1:${sinkPort}/cb` }),
    connections: CONNECTIONS,
    amount: N,
    timeout: 60,
    idReplacement: true,
  }) as unknown as autocannon.Instance & Promise<autocannon.Result>;
  void instance.on('response', (_client, statusCode) => {
    if (statusCode >= 200 && statusCode < 300) lastAccepted = wallNow();
  });
  const result = await instance;
  const cpu1 = cpuSeconds(server.pid);
  const accepted = result['2xx'];
  return {
    acceptedPerSecond: (accepted * 1000) / (lastAccepted - startedAt),
    accepted,
    // Every request not answered 2xx: refused, failed, timed out or never answered.
    non2xx: Math.max(0, N - accepted),
    cpuUsPerRequest: ((cpu1 - cpu0) * 1e6) / accepted,
    p99Ms: result.latency.p99,
  };
}

async function run(system: System): Promise<Run> {
  if (system === 'bare') {
    const bare = await startBareUws();
    try {
      return await load(bare, 9);
    } finally {
      await bare.stop();
    }
  }
  const sim = await startSimChild(4 * N, { dlrDelayMs: 50 });
  const sink = await startSink();
  const dir = mkdtempSync(join(tmpdir(), `smsgw-http-${system}-`));
  let gw: ServerChild | undefined;
  try {
    gw = await startGateway(dir, DISPATCH ? sim.port : await freePort(), system === 'before' ? (BEFORE as string) : join(ROOT, 'dist', 'cli', 'main.js'), system === 'before' ? (BEFORE_NODE_ARGS ?? GATEWAY_NODE_ARGS) : GATEWAY_NODE_ARGS);
    const cpu0 = cpuSeconds(gw.pid);
    const l = await load(gw, sink.port);
    const deadline = Date.now() + 300_000;
    let s = await sink.stats();
    while (DISPATCH && Date.now() < deadline && s.count < l.accepted) {
      await new Promise((r) => setTimeout(r, 100));
      s = await sink.stats();
    }
    const cpu1 = cpuSeconds(gw.pid);
    return DISPATCH ? { ...l, callbacks: s.count, cpuUsPerMessage: ((cpu1 - cpu0) * 1e6) / l.accepted } : l;
  } finally {
    await gw?.stop();
    await sink.stop();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env['BENCH_NO_BUILD'] !== '1') {
  process.stderr.write('building dist/ (npm run build)…\n');
  execSync('npm run --silent build', { stdio: 'inherit', cwd: ROOT });
}

const systems: System[] = BEFORE !== undefined ? ['bare', 'gateway', 'before'] : ['bare', 'gateway'];
const runs: Record<System, Run[]> = { bare: [], gateway: [], before: [] };
for (let r = 0; r < REPEATS; r++) {
  // Two systems alternate; three rotate (each position once every three rounds).
  const order = systems.length === 3 ? [...systems.slice(r % 3), ...systems.slice(0, r % 3)] : r % 2 === 0 ? systems : [...systems].reverse();
  process.stderr.write(`round ${r + 1}/${REPEATS}: `);
  for (const system of order) {
    process.stderr.write(`${system}… `);
    runs[system].push(await run(system));
  }
  process.stderr.write('done\n');
}
const med = (s: System, f: (x: Run) => number): number => median(runs[s].map(f));
const rows: Row[] = [
  { metric: 'gateway accepted/s vs bare uWS 202', value: med('gateway', (x) => x.acceptedPerSecond), unit: 'req/s', baseline: med('bare', (x) => x.acceptedPerSecond), baselineName: 'bare uWS', target: 0.5 },
  { metric: 'CPU per request while loading', value: med('gateway', (x) => x.cpuUsPerRequest), unit: 'µs', baseline: med('bare', (x) => x.cpuUsPerRequest), baselineName: 'bare uWS' },
  { metric: 'gateway p99 latency', value: med('gateway', (x) => x.p99Ms), unit: 'ms', baseline: med('bare', (x) => x.p99Ms), baselineName: 'bare uWS' },
  { metric: 'gateway refused or failed requests', value: med('gateway', (x) => x.non2xx), unit: 'count' },
  // Nothing is dispatched in the intake-alone mode: no callbacks to wait for.
  ...(DISPATCH
    ? [
        { metric: 'gateway CPU per message to the last callback', value: med('gateway', (x) => x.cpuUsPerMessage ?? NaN), unit: 'µs' },
        { metric: 'gateway callbacks received', value: med('gateway', (x) => x.callbacks ?? NaN), unit: 'count' },
      ]
    : []),
];
if (BEFORE !== undefined) {
  const prior = (metric: string, unit: string, f: (x: Run) => number): Row => ({ metric: `${metric} (vs the previous build)`, value: med('gateway', f), unit, baseline: med('before', f), baselineName: 'previous build' });
  rows.push(
    { metric: 'previous build accepted/s vs bare uWS 202', value: med('before', (x) => x.acceptedPerSecond), unit: 'req/s', baseline: med('bare', (x) => x.acceptedPerSecond), baselineName: 'bare uWS' },
    prior('accepted/s', 'req/s', (x) => x.acceptedPerSecond),
    prior('CPU per request while loading', 'µs', (x) => x.cpuUsPerRequest),
    ...(DISPATCH ? [prior('CPU per message to the last callback', 'µs', (x) => x.cpuUsPerMessage ?? NaN)] : []),
  );
}
const title = `POST /v1/messages: N = ${N.toLocaleString('en-US')} ASCII, one recipient and a callbackUrl each, ${CONNECTIONS} connections, ${DISPATCH ? 'dispatch to the SMSC alongside' : 'intake alone (nothing dispatched)'}, median of ${REPEATS}`;
process.stdout.write(`${table(title, rows)}\n\n`);
// bench/results-doc.ts writes this into bench/RESULTS.md (`http`, or `http-intake` for the intake alone).
const docName = DISPATCH ? 'http' : 'http-intake';
const doc = {
  title: DISPATCH ? 'bench:http — POST /v1/messages against a bare uWS 202 handler, dispatch alongside (issue 20)' : 'bench:http, intake alone — POST /v1/messages against a bare uWS 202 handler, nothing dispatched (issue 20)',
  command: `BENCH_N=${N} BENCH_REPEATS=${REPEATS}${DISPATCH ? '' : ' BENCH_DISPATCH=0'}${BEFORE !== undefined ? ' BENCH_BEFORE_MAIN=<previous build>/dist/cli/main.js' : ''}${BEFORE_NODE_ARGS !== undefined ? ` BENCH_BEFORE_NODE_ARGS='${BEFORE_NODE_ARGS.join(' ')}'` : ''} npm run bench:http`,
  about: [
    machineNote(),
    `The compiled gateway (embedded queue, --role all, an SMPP simulator and a callback sink in their own processes, a callbackUrl per message) and bench/bare-uws.ts under the same autocannon load (${CONNECTIONS} keep-alive connections), in alternating order each round${BEFORE !== undefined ? ' (with a previous build as a third system, the order rotates)' : ''}.`,
    DISPATCH
      ? 'Dispatch runs alongside, as in production: the gateway\'s CPU per request includes the submits, receipts and callbacks of what it accepted while loading.'
      : 'The SMSC account points at a closed port, so nothing is dispatched: the gateway\'s CPU per request is the intake\'s alone (202 once the rows and the job are committed).',
    ...(BEFORE !== undefined ? [`"Previous build": the gateway at ${process.env['BENCH_BEFORE_LABEL'] ?? BEFORE}${BEFORE_NODE_ARGS !== undefined ? ` run with Node flags \`${BEFORE_NODE_ARGS.join(' ') || '(none)'}\`` : ''}, run as a third system in every round.`] : []),
  ],
  tables: [table(title, rows)],
};
const file = writeSummary(docName, {
  doc,
  bench: 'http',
  n: N,
  repeats: REPEATS,
  connections: CONNECTIONS,
  dispatch: DISPATCH,
  node: process.version,
  at: new Date().toISOString(),
  ...(BEFORE !== undefined ? { before: BEFORE } : {}),
  runs,
  medians: Object.fromEntries(rows.map((x) => [x.metric, { value: x.value, baseline: x.baseline, ratio: x.baseline ? x.value / x.baseline : undefined }])),
});
process.stdout.write(`${JSON.stringify({ file })}\n`);
