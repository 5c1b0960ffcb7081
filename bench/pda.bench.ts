/**
 * bench:pda — a broadcast to N simulated PDAs over loopback.
 *
 * Measured in one run, each variant in its own processes (server | devices):
 *   - bare uWS:  uWebSockets.js WebSockets, no auth, no outbox, no acks: the
 *                server sends the same frame bytes to every socket (ws.send
 *                per socket); done when every device has received it.
 *   - acked:     floor 1, bare uWS + acknowledgements: as bare, and every
 *                device answers the frame with an 8-byte one (the acks due
 *                sent by one setImmediate, as the PDA client does); done
 *                when the server has every answer. What any protocol that
 *                confirms delivery per device costs on this machine.
 *   - stored:    floor 2, acked + the least durable bookkeeping: one LMDB
 *                put per device before its send (chunks of 1,000, one
 *                transaction each, sent once flushed) and one removal per
 *                ack (one transaction per event-loop turn). No auth, no
 *                sequences, no status.
 *   - pda:       the PDA channel (LMDB outbox, HMAC handshake, per-device
 *                sequences, acks group-committed, status relay); the
 *                broadcast is one `deliver` of N recipients; done when every
 *                device's ack is committed and its delivered-to-device
 *                status reached the status sink.
 * Figures: completion time and rate (devices / s), p50 / p99 per device
 * (broadcast → message received; for pda also → ack recorded, and →
 * everything appended and flushed), peak RSS of the server process, CPU per
 * device of the server (user + system, all threads; from the broadcast
 * command to the last ack recorded, for bare the send loop) and
 * of the devices process (to the last message received), and the time to
 * connect (and authenticate) all devices. Each run sends one warm-up
 * broadcast first (not measured: JIT, LMDB map pages, socket buffers), in
 * every variant alike. Medians over BENCH_REPEATS runs; the ratio is what to
 * quote, with the same-run ratios (the variants of one repeat run back to
 * back) beside it; the floors' ratios say how much of the gap to bare is
 * the acknowledgement itself. On a shared machine completion times swing with the
 * load; CPU per device moves much less.
 *
 *   BENCH_DEVICES=5000 BENCH_REPEATS=3 npm run bench:pda
 *   BENCH_WARMUPS=3 …   three warm-up broadcasts instead of one (steadier JIT state; default 1)
 *   BENCH_CPU_PROF=1 …   also writes CPU profiles of the child processes to bench/out/prof-<role>-<variant>
 *   BENCH_PERF=1 …       perf record (on-CPU, kernel included) of the server over the measured broadcast:
 *                        bench/out/perf-<variant>.data
 *   BENCH_CPU_PROF=broadcast …   profiles the server and the devices process over the measured broadcast
 *                                only (bench/out/prof-pda-broadcast-<role>-<pid>.cpuprofile)
 *
 * File descriptors: each process holds N sockets; the bench refuses to start
 * when the soft limit (ulimit -n) is below N + 512 and says so.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { envInt, median, peakRssMiB, table, wallNow, writeSummary, type Row } from './lib/report.js';

const N = envInt('BENCH_DEVICES', 5000);
const REPEATS = envInt('BENCH_REPEATS', 3);
const CONNECT_CONCURRENCY = envInt('BENCH_CONNECT_CONCURRENCY', 200);
/** Broadcasts before the measured one (JIT, LMDB map pages, socket buffers); more than 1 measures a warmer steady state. */
const WARMUPS = envInt('BENCH_WARMUPS', 1);
const SELF = fileURLToPath(import.meta.url);
const BODY = '【市公安局指挥中心】全体值班警员：今晚22:00起全市开展夜间巡逻，请各单位按预案到岗，收到请确认。';

/** In the order each repeat runs them. */
const VARIANTS = ['bare', 'acked', 'stored', 'pda'] as const;
type Variant = (typeof VARIANTS)[number];

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

function openFileLimit(): number {
  try {
    const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m?.[1] === 'unlimited' ? Infinity : Number(m?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** BENCH_CPU_PROF=broadcast: a V8 CPU profile of this process over the measured broadcast only. */
async function broadcastProfiler(role: string): Promise<{ start(): void; stop(): void }> {
  if (process.env['BENCH_CPU_PROF'] !== 'broadcast') return { start: () => undefined, stop: () => undefined };
  const session = new (await import('node:inspector')).Session();
  session.connect();
  let on = false;
  return {
    start() {
      on = true;
      session.post('Profiler.enable');
      session.post('Profiler.setSamplingInterval', { interval: 100 });
      session.post('Profiler.start');
    },
    stop() {
      if (!on) return;
      on = false;
      session.post('Profiler.stop', (err, res) => {
        if (err) return;
        const dir = join(process.cwd(), 'bench', 'out');
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, `prof-pda-broadcast-${role}-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
      });
    },
  };
}

// ====================================================================== server process

async function serverMain(variant: Variant): Promise<void> {
  const { encodeFrame } = await import('../src/pda/codec.js');
  const frame = encodeFrame({
    type: 'message', seq: 1, redelivery: false, floor: 1, priority: 2, createdAt: Date.now(), expiresAt: Date.now() + 3_600_000,
    messageId: 'BCAST-0000000000000000000000', classification: 'police', senderUnit: '市公安局指挥中心', body: BODY,
  });
  if (variant === 'stored') return storedFloorServer(frame);
  if (variant === 'bare' || variant === 'acked') {
    const { loadUws } = await import('../src/ingest/uws.js');
    const uws = loadUws();
    const sockets = new Set<import('uWebSockets.js').WebSocket<unknown>>();
    const app = uws.App().ws('/bare', {
      compression: uws.DISABLED,
      maxPayloadLength: 64 * 1024,
      idleTimeout: 120,
      open: (ws) => void sockets.add(ws),
      close: (ws) => void sockets.delete(ws),
      // acked: every device answers each frame with a small one; done when all N answers are in.
      message: () => {
        if (acks >= N) return;
        ackedAt[acks++] = wallNow() - broadcastAt;
        if (acks === N) {
          reportDone(ackedAt, cpu0);
        }
      },
    });
    let acks = 0;
    let broadcastAt = 0;
    let cpu0 = process.cpuUsage();
    const ackedAt = new Array<number>(N).fill(0);
    await announceListening(uws, app, '/bare');
    process.on('message', (m: { cmd: string; at?: number }) => {
      if (m.cmd === 'broadcast') {
        broadcastAt = m.at ?? wallNow();
        acks = 0;
        cpu0 = process.cpuUsage();
        for (const ws of sockets) ws.send(frame, true);
        const cpu = process.cpuUsage(cpu0);
        process.send?.({ sent: true, sockets: sockets.size, cpuUs: cpu.user + cpu.system, sysUs: cpu.system });
      } else if (m.cmd === 'stop') process.exit(0);
    });
    return;
  }
  const { pino } = await import('pino');
  const { loadConfig } = await import('../src/config/load.js');
  const { startPdaServer } = await import('../src/pda/server.js');
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-bench-pda-'));
  const config = loadConfig({
    env: {},
    overrides: { pda: { enabled: true, keySecret: 'b'.repeat(40), maxSessions: N + 1000, helloTimeoutMs: 60_000, idleTimeoutSec: 120 } },
  }).pda;
  // The status sink stands in for the receipt store: it notes when each recipient's ack was recorded.
  const ackedAt = new Array<number>(N).fill(0);
  let acked = 0;
  let broadcastAt = 0;
  let cpu0 = process.cpuUsage();
  // Server profile: broadcast → last ack recorded.
  const profiler = await broadcastProfiler('server-pda');
  const sink = {
    recordPdaStates(updates: readonly { state: string; index: number }[]): Promise<void> {
      const now = wallNow();
      for (const u of updates) {
        if (u.state !== 'delivered-to-device' || ackedAt[u.index] !== 0) continue;
        ackedAt[u.index] = now;
        if (++acked === N) {
          // Server CPU from the broadcast command to the last ack recorded (user + system, this process's threads).
          reportDone(ackedAt.map((t) => t - broadcastAt), cpu0);
          profiler.stop();
        }
      }
      return Promise.resolve();
    },
  };
  const s = await startPdaServer({ dataDir, config, sink, logger: pino({ level: 'warn' }) });
  const keys: string[] = new Array<string>(N);
  for (let i = 0; i < N; i += 500) {
    const chunk = await Promise.all(Array.from({ length: Math.min(500, N - i) }, (_, k) =>
      s.channel.registry.register({ deviceId: `pda-${i + k}`, personId: `officer-${i + k}`, unit: '巡警支队' })));
    chunk.forEach((c, k) => {
      keys[i + k] = c.key;
    });
  }
  process.send?.({ ready: true, port: s.port, url: s.url, keys });
  process.on('message', (m: { cmd: string; at?: number; id?: string }) => {
    if (m.cmd === 'broadcast') {
      broadcastAt = m.at ?? wallNow();
      if (m.id === 'BCAST-MEASURED') profiler.start();
      cpu0 = process.cpuUsage();
      ackedAt.fill(0);
      acked = 0;
      const createdAt = Date.now();
      void s.channel.deliver(Array.from({ length: N }, (_, i) => ({
        messageId: m.id ?? 'BCAST', index: i, personId: `officer-${i}`, priority: 2 as const,
        createdAt, expiresAt: createdAt + 3_600_000, classification: 'police', senderUnit: '市公安局指挥中心', body: BODY,
      }))).then(() => process.send?.({ sent: true, sockets: s.channel.readyCount, appendedMs: wallNow() - broadcastAt }));
    } else if (m.cmd === 'stop') {
      void s.stop().then(() => {
        rmSync(dataDir, { recursive: true, force: true });
        process.exit(0);
      });
    }
  });
}

/** Every ack is in: tell the parent when each came (ms after the broadcast) and the CPU spent since `cpu0`. */
function reportDone(ackedAt: readonly number[], cpu0: NodeJS.CpuUsage): void {
  const cpu = process.cpuUsage(cpu0);
  process.send?.({ done: true, ackedAt, cpuUs: cpu.user + cpu.system, sysUs: cpu.system });
}

/** Listen on a free loopback port and tell the parent the URL of `path`. */
async function announceListening(uws: typeof import('uWebSockets.js'), app: import('uWebSockets.js').TemplatedApp, path: string): Promise<void> {
  const port = await new Promise<number>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(uws.us_socket_local_port(s)) : reject(new Error('listen')))),
  );
  process.send?.({ ready: true, port, url: `ws://127.0.0.1:${port}${path}` });
}

/**
 * The storage floor: bare uWS + acks + the least durable bookkeeping a store-and-forward channel needs,
 * one LMDB put per device at append (chunks of 1,000 in one transaction each, sent once flushed) and
 * one removal per ack (the acks of one event-loop turn in one transaction). No auth, no sequences,
 * no status rows.
 */
async function storedFloorServer(frame: Uint8Array): Promise<void> {
  const { loadUws } = await import('../src/ingest/uws.js');
  const { open } = await import('lmdb');
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-bench-pda-floor-'));
  const env = open({ path: dataDir, maxDbs: 2 });
  const outbox = env.openDB<Buffer, [number, number]>({ name: 'outbox', encoding: 'binary' });
  const entry = Buffer.alloc(40, 1);
  const uws = loadUws();
  const sockets: Array<import('uWebSockets.js').WebSocket<{ i: number }>> = [];
  let round = 0;
  let acks = 0;
  let broadcastAt = 0;
  let cpu0 = process.cpuUsage();
  const ackedAt = new Array<number>(N).fill(0);
  let pending: number[] = [];
  // A failed write ends the server: the parent reports that it exited before the broadcast was done.
  const fail = (e: unknown): void => {
    process.stderr.write(`floor server: LMDB write failed: ${String(e)}\n`);
    process.exit(1);
  };
  const commitAcks = (): void => {
    const items = pending;
    pending = [];
    const r = round;
    void env.childTransaction(() => {
      for (const i of items) outbox.removeSync([i, r]);
    }).then(() => {
      const now = wallNow() - broadcastAt;
      for (let k = 0; k < items.length && acks < N; k++) ackedAt[acks++] = now;
      if (acks === N) {
        reportDone(ackedAt, cpu0);
      }
    }, fail);
  };
  const app = uws.App().ws<{ i: number }>('/floor', {
    compression: uws.DISABLED,
    maxPayloadLength: 64 * 1024,
    idleTimeout: 120,
    open: (ws) => {
      ws.getUserData().i = sockets.length;
      sockets.push(ws);
    },
    message: (ws) => {
      if (pending.push(ws.getUserData().i) === 1) setImmediate(commitAcks);
    },
  });
  await announceListening(uws, app, '/floor');
  process.on('message', (m: { cmd: string; at?: number }) => {
    if (m.cmd === 'broadcast') {
      broadcastAt = m.at ?? wallNow();
      acks = 0;
      round++;
      cpu0 = process.cpuUsage();
      const r = round;
      let left = Math.ceil(sockets.length / 1000);
      const chunk = (from: number): void => {
        const to = Math.min(sockets.length, from + 1000);
        void env.childTransaction(() => {
          for (let i = from; i < to; i++) outbox.putSync([i, r], entry);
          if (to < sockets.length) setImmediate(() => chunk(to));
        }).then(() => env.flushed).then(() => {
          for (let i = from; i < to; i++) sockets[i]?.send(frame, true);
          if (--left === 0) process.send?.({ sent: true, sockets: sockets.length });
        }, fail);
      };
      chunk(0);
    } else if (m.cmd === 'stop') {
      void env.close().then(() => {
        rmSync(dataDir, { recursive: true, force: true });
        process.exit(0);
      });
    }
  });
}

// ====================================================================== devices process

async function clientsMain(variant: Variant, url: string): Promise<void> {
  const keys = await new Promise<string[]>((resolve) => process.once('message', (m: { keys: string[] }) => resolve(m.keys)));
  const receivedAt = new Array<number>(N).fill(0);
  let received = 0;
  let broadcastAt = 0;
  let cpu0 = process.cpuUsage();
  // Devices profile: broadcast → last message received.
  const profiler = await broadcastProfiler(`devices-${variant}`);
  const onReceive = (i: number): void => {
    if (receivedAt[i] !== 0) return;
    receivedAt[i] = wallNow();
    if (++received === N) {
      // For pda this stops before the last acks are written (they go out in the next turn): a slight undercount.
      const cpu = process.cpuUsage(cpu0);
      process.send?.({ received: true, receivedAt: receivedAt.map((t) => t - broadcastAt), cpuUs: cpu.user + cpu.system });
      profiler.stop();
    }
  };
  const connectStart = wallNow();
  let next = 0;
  if (variant !== 'pda') {
    const { default: WebSocket } = await import('ws');
    const ack = Buffer.from([0x04, 0, 0, 0, 0, 0, 0, 1]);
    // As the PDA client does: the acks due are sent by one setImmediate after the turn's reads.
    const due: Array<import('ws').WebSocket> = [];
    const flushAcks = (): void => {
      for (const ws of due) ws.send(ack);
      due.length = 0;
    };
    const worker = async (): Promise<void> => {
      while (next < N) {
        const i = next++;
        const ws = new WebSocket(url, { perMessageDeflate: false });
        ws.on('message', variant === 'bare' ? () => onReceive(i) : () => {
          onReceive(i);
          if (due.push(ws) === 1) setImmediate(flushAcks);
        });
        ws.on('error', () => undefined);
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
        });
      }
    };
    await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
  } else {
    const { PdaClient } = await import('../src/pda/client.js');
    const worker = async (): Promise<void> => {
      while (next < N) {
        const i = next++;
        const c = new PdaClient({ url, deviceId: `pda-${i}`, key: keys[i] as string, heartbeat: false, onMessage: () => onReceive(i) });
        await c.connect();
      }
    };
    await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
  }
  process.send?.({ connected: true, connectMs: wallNow() - connectStart });
  process.on('message', (m: { cmd: string; at?: number; round?: string }) => {
    if (m.cmd === 'armed') {
      if (m.round === 'MEASURED') profiler.start();
      broadcastAt = m.at ?? 0;
      cpu0 = process.cpuUsage();
      receivedAt.fill(0);
      received = 0;
      process.send?.({ armed: true });
    } else if (m.cmd === 'stop') process.exit(0);
  });
}

// ====================================================================== parent

interface Child {
  readonly proc: ChildProcess;
  next<T>(pred: (m: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<T>;
  stop(): Promise<void>;
}

function child(args: string[]): Child {
  // BENCH_CPU_PROF=1: V8 CPU profiles of the child processes, to see where the time goes.
  const prof = process.env['BENCH_CPU_PROF'] === '1' ? ['--cpu-prof', '--cpu-prof-dir', join(process.cwd(), 'bench', 'out', `prof-${args[0]}-${args[1]}`)] : [];
  // BENCH_PERF=1: JIT symbols for perf (see perfRecorder).
  if (PERF && args[0] === 'server') prof.push('--perf-basic-prof');
  const proc = fork(SELF, args, { execArgv: ['--import', 'tsx', ...prof], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  proc.on('message', (m: Record<string, unknown>) => {
    inbox.push(m);
    for (const w of waiters.splice(0)) w();
  });
  return {
    proc,
    async next<T>(pred: (m: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = inbox.findIndex(pred);
        if (i >= 0) return inbox.splice(i, 1)[0] as T;
        if (proc.exitCode !== null) throw new Error(`${args.join(' ')} exited (${proc.exitCode}) before ${what}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200).unref();
        });
      }
    },
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.send({ cmd: 'stop' });
      const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(kill);
    },
  };
}

/**
 * BENCH_PERF=1: `perf record -e cpu-clock -g` of the server process over the measured broadcast
 * (on-CPU samples, kernel included: the V8 profile samples wall time, so a thread waiting for a core
 * shows up in whatever it was running). Writes bench/out/perf-<variant>.data; read it with
 * `perf report -i bench/out/perf-pda.data --no-children --sort dso,sym`.
 */
const PERF = process.env['BENCH_PERF'] === '1';

async function perfRecorder(pid: number, variant: Variant): Promise<{ stop(): Promise<void> }> {
  if (!PERF) return { stop: () => Promise.resolve() };
  const dir = join(process.cwd(), 'bench', 'out');
  mkdirSync(dir, { recursive: true });
  const proc = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '5000', '-g', '-p', String(pid), '-o', join(dir, `perf-${variant}.data`)], { stdio: 'ignore' });
  await sleep(500); // attached
  return {
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGINT');
      await exited;
    },
  };
}

interface RunResult {
  readonly completionMs: number;
  readonly ratePerSec: number;
  readonly receiveP50: number;
  readonly receiveP99: number;
  readonly ackP50?: number;
  readonly ackP99?: number;
  /** pda: broadcast → every copy appended and flushed (`deliver` resolved). */
  readonly appendedMs?: number;
  readonly connectMs: number;
  readonly serverRssMiB: number;
  /** Server process CPU (user + system) per device for the measured broadcast: bare = the send loop; pda = broadcast → last ack recorded. */
  readonly serverCpuUsPerDevice: number;
  /** …of which in the kernel (socket writes and reads, loopback TCP). */
  readonly serverSysUsPerDevice: number;
  /** Devices process CPU per device, broadcast → last message received. */
  readonly clientCpuUsPerDevice: number;
}

async function runOnce(variant: Variant): Promise<RunResult> {
  const server = child(['server', variant]);
  try {
    const ready = await server.next<{ url: string; keys?: string[] }>((m) => m['ready'] === true, 300_000, 'server ready');
    const clients = child(['clients', variant, ready.url]);
    try {
      clients.proc.send({ keys: ready.keys ?? [] });
      const { connectMs } = await clients.next<{ connectMs: number }>((m) => m['connected'] === true, 600_000, `${N} devices connected`);
      // One warm-up broadcast, not measured (JIT, LMDB map pages, socket buffers), then the measured one.
      let rec: { receivedAt: number[]; cpuUs: number } | undefined;
      let sentCpuUs = NaN;
      let sentSysUs = NaN;
      let appendedMs = NaN;
      const rounds = [...Array.from({ length: WARMUPS }, (_, k) => (k === 0 ? 'WARMUP' : `WARMUP${k + 1}`)), 'MEASURED'];
      let perf: { stop(): Promise<void> } | undefined;
      for (const round of rounds) {
        if (round === 'MEASURED') perf = await perfRecorder(server.proc.pid as number, variant);
        await sleep(1000); // let both processes settle (after the connection storm, after the warm-up)
        const at = wallNow();
        clients.proc.send({ cmd: 'armed', at, round });
        await clients.next((m) => m['armed'] === true, 30_000, 'devices armed');
        server.proc.send({ cmd: 'broadcast', at, id: `BCAST-${round}` });
        const sent = await server.next<{ sockets: number; cpuUs?: number; sysUs?: number; appendedMs?: number }>((m) => m['sent'] === true, 120_000, 'broadcast sent');
        if (sent.sockets !== N) throw new Error(`${sent.sockets} sessions at broadcast, expected ${N}`);
        sentCpuUs = sent.cpuUs ?? NaN;
        sentSysUs = sent.sysUs ?? NaN;
        appendedMs = sent.appendedMs ?? NaN;
        rec = await clients.next<{ receivedAt: number[]; cpuUs: number }>((m) => m['received'] === true, 300_000, 'every device received');
        if (round !== 'MEASURED' && variant !== 'bare') await server.next((m) => m['done'] === true, 300_000, 'warm-up acked');
        if (round === 'MEASURED') break;
      }
      if (!rec) throw new Error('no measured round');
      const receive = [...rec.receivedAt].sort((a, b) => a - b);
      let completionMs = receive[receive.length - 1] as number;
      let ack: number[] | undefined;
      let serverCpuUs = sentCpuUs;
      let serverSysUs = sentSysUs;
      if (variant !== 'bare') {
        const done = await server.next<{ ackedAt: number[]; cpuUs: number; sysUs: number }>((m) => m['done'] === true, 300_000, 'every ack recorded');
        serverCpuUs = done.cpuUs;
        serverSysUs = done.sysUs;
        ack = [...done.ackedAt].sort((a, b) => a - b);
        completionMs = ack[ack.length - 1] as number;
      }
      await perf?.stop();
      const serverRssMiB = peakRssMiB(server.proc.pid as number);
      return {
        completionMs,
        ratePerSec: N / (completionMs / 1000),
        receiveP50: quantile(receive, 0.5),
        receiveP99: quantile(receive, 0.99),
        ...(ack ? { ackP50: quantile(ack, 0.5), ackP99: quantile(ack, 0.99) } : {}),
        connectMs,
        serverRssMiB,
        ...(variant === 'pda' ? { appendedMs } : {}),
        serverCpuUsPerDevice: serverCpuUs / N,
        serverSysUsPerDevice: serverSysUs / N,
        clientCpuUsPerDevice: rec.cpuUs / N,
      };
    } finally {
      await clients.stop();
    }
  } finally {
    await server.stop();
  }
}

async function parentMain(): Promise<void> {
  const limit = openFileLimit();
  if (limit < N + 512) {
    process.stderr.write(`bench:pda needs at least ${N + 512} open files per process (ulimit -n is ${limit}); raise it (ulimit -n ${N + 1024}) or lower BENCH_DEVICES\n`);
    process.exit(2);
  }
  const runs = Object.fromEntries(VARIANTS.map((v) => [v, [] as RunResult[]])) as Record<Variant, RunResult[]>;
  for (let r = 0; r < REPEATS; r++) {
    for (const v of VARIANTS) {
      const res = await runOnce(v);
      runs[v].push(res);
      process.stdout.write(`run ${r + 1}/${REPEATS} ${v}: ${JSON.stringify(res)}\n`);
    }
  }
  const med = (v: Variant, k: keyof RunResult): number => median(runs[v].map((x) => x[k] as number));
  const bareRate = med('bare', 'ratePerSec');
  const rows: Row[] = [
    { metric: 'broadcast completion rate (devices/s)', value: med('pda', 'ratePerSec'), unit: 'devices/s', baseline: bareRate, baselineName: 'bare uWS', target: 0.5 },
    { metric: 'floor: bare uWS + one ack frame per device (devices/s)', value: med('acked', 'ratePerSec'), unit: 'devices/s', baseline: bareRate, baselineName: 'bare uWS' },
    { metric: 'floor: + one durable LMDB put per device, one removal per ack', value: med('stored', 'ratePerSec'), unit: 'devices/s', baseline: bareRate, baselineName: 'bare uWS' },
    { metric: 'pda vs the acked floor (devices/s)', value: med('pda', 'ratePerSec'), unit: 'devices/s', baseline: med('acked', 'ratePerSec'), baselineName: 'bare uWS + acks' },
    { metric: 'completion time (all acked / all received)', value: med('pda', 'completionMs'), unit: 'ms', baseline: med('bare', 'completionMs'), baselineName: 'bare uWS' },
    { metric: 'per device p50: broadcast → received', value: med('pda', 'receiveP50'), unit: 'ms', baseline: med('bare', 'receiveP50'), baselineName: 'bare uWS' },
    { metric: 'per device p99: broadcast → received', value: med('pda', 'receiveP99'), unit: 'ms', baseline: med('bare', 'receiveP99'), baselineName: 'bare uWS' },
    { metric: 'broadcast → all copies appended and flushed', value: med('pda', 'appendedMs'), unit: 'ms' },
    { metric: 'per device p50: broadcast → ack recorded', value: med('pda', 'ackP50'), unit: 'ms' },
    { metric: 'per device p99: broadcast → ack recorded', value: med('pda', 'ackP99'), unit: 'ms' },
    { metric: 'server peak RSS', value: med('pda', 'serverRssMiB'), unit: 'MiB', baseline: med('bare', 'serverRssMiB'), baselineName: 'bare uWS' },
    { metric: 'server CPU per device (user + system)', value: med('pda', 'serverCpuUsPerDevice'), unit: 'µs', baseline: med('bare', 'serverCpuUsPerDevice'), baselineName: 'bare uWS send loop' },
    { metric: '…of which system (kernel: sockets)', value: med('pda', 'serverSysUsPerDevice'), unit: 'µs', baseline: med('bare', 'serverSysUsPerDevice'), baselineName: 'bare uWS send loop' },
    { metric: 'server CPU per device, floor acked', value: med('acked', 'serverCpuUsPerDevice'), unit: 'µs', baseline: med('bare', 'serverCpuUsPerDevice'), baselineName: 'bare uWS send loop' },
    { metric: 'server CPU per device, floor stored', value: med('stored', 'serverCpuUsPerDevice'), unit: 'µs', baseline: med('bare', 'serverCpuUsPerDevice'), baselineName: 'bare uWS send loop' },
    { metric: 'devices-process CPU per device', value: med('pda', 'clientCpuUsPerDevice'), unit: 'µs', baseline: med('bare', 'clientCpuUsPerDevice'), baselineName: 'bare uWS' },
    { metric: `connect${' + authenticate'} all devices`, value: med('pda', 'connectMs'), unit: 'ms', baseline: med('bare', 'connectMs'), baselineName: 'bare uWS (no auth)' },
  ];
  const out = table(`PDA broadcast: ${N.toLocaleString('en-US')} devices over loopback, median of ${REPEATS}, ${WARMUPS} warm-up broadcast(s)`, rows);
  // Each repeat runs the variants back to back: their ratios share the machine's load at that moment.
  const sameRunOf = (v: Variant): number[] => runs[v].map((p, i) => p.ratePerSec / (runs.bare[i] as RunResult).ratePerSec);
  const sameRun = sameRunOf('pda');
  const list = (rs: number[]): string => `${rs.map((r) => `${r.toFixed(2)}×`).join(' ')}; median ${median(rs).toFixed(2)}×`;
  process.stdout.write(`\n${out}\n\nsame-run ratios to bare, per repeat: pda ${list(sameRun)}; floor acked ${list(sameRunOf('acked'))}; floor stored ${list(sameRunOf('stored'))}\n\n`);
  const ratio = med('pda', 'ratePerSec') / bareRate;
  const summary = {
    bench: 'pda',
    devices: N,
    repeats: REPEATS,
    warmups: WARMUPS,
    node: process.version,
    target: { ratio: 0.5, met: ratio >= 0.5 },
    ratio,
    sameRunRatios: sameRun,
    floors: { acked: med('acked', 'ratePerSec') / bareRate, stored: med('stored', 'ratePerSec') / bareRate, pdaOfAcked: med('pda', 'ratePerSec') / med('acked', 'ratePerSec') },
    medians: Object.fromEntries((['pda', 'bare', 'acked', 'stored'] as const).map((v) =>
      [v, Object.fromEntries((Object.keys(runs[v][0] ?? {}) as Array<keyof RunResult>).map((k) => [k, med(v, k)]))])),
    runs,
  };
  const file = writeSummary('pda', summary);
  process.stdout.write(`JSON summary: ${file}\n${JSON.stringify({ ratio: summary.ratio, sameRunRatios: sameRun, target: summary.target, floors: summary.floors, medians: summary.medians })}\n`);
}

const [role, variant, url] = process.argv.slice(2);
if (role === 'server') await serverMain(variant as Variant);
else if (role === 'clients') await clientsMain(variant as Variant, url as string);
else await parentMain();
