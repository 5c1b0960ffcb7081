/**
 * Starts real nats-server processes for integration and fault tests: own
 * port (never the system NATS on 4222), own temp store directory, bounded
 * start-up wait, and processes killed on teardown and on process exit.
 *
 * The binary is Debian's nats-server (/usr/sbin/nats-server) or one on PATH,
 * or NATS_SERVER_BIN. Under CI a missing binary is a failure, not a skip:
 * use `requireNatsServer(t)` at the top of a test file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { killOnExit } from './children.js';

export interface NatsClusterSpec {
  /** Cluster name shared by every member. */
  readonly name: string;
  /** Port for routes of this member. */
  readonly port: number;
  /** Route URLs of all members (self included is harmless). */
  readonly routes: readonly string[];
}

export interface NatsServerOptions {
  readonly jetstream?: boolean;
  /** Client port; a free one is picked when absent (and re-picked on EADDRINUSE). */
  readonly port?: number;
  /** JetStream store; a temp dir (removed by destroy()) when absent. */
  readonly storeDir?: string;
  /** Server name (-n); needed for clustering. */
  readonly name?: string;
  readonly cluster?: NatsClusterSpec;
  /** Bound of the wait for the server to accept connections (and JetStream to answer). */
  readonly startTimeoutMs?: number;
  /** Skip the JetStream readiness probe (cluster members are probed together). */
  readonly skipJetStreamProbe?: boolean;
}

export interface NatsServerHandle {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly name: string;
  /** Process id of the running server, undefined while stopped. */
  pid(): number | undefined;
  /** Send `signal` (default SIGKILL) and wait for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Graceful stop (SIGTERM), SIGKILL after a bound. */
  stop(): Promise<void>;
  /** Start again with the same port, name and store dir. */
  restart(): Promise<void>;
  /** Kill and remove the temp store dir if this launcher created it. */
  destroy(): Promise<void>;
  /** Last lines the server printed (diagnostics for failed tests). */
  logTail(): string;
}

const LOG_LINES_KEPT = 200;
const DEFAULT_START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const PORT_PICK_ATTEMPTS = 5;

/** Path of the nats-server binary, or undefined when none is installed. */
export function findNatsServer(): string | undefined {
  const env = process.env['NATS_SERVER_BIN'];
  if (env && existsSync(env)) return env;
  if (existsSync('/usr/sbin/nats-server')) return '/usr/sbin/nats-server';
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir.length === 0) continue;
    const p = join(dir, 'nats-server');
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Guard for test files: returns true when a server can be started. Without a
 * binary it fails the test under CI (CI=true) and skips it elsewhere.
 */
export function requireNatsServer(t: { fail(msg: string): unknown; comment(msg: string): unknown }): boolean {
  if (findNatsServer() !== undefined) return true;
  const msg = 'nats-server binary not found (apt-get install nats-server, or set NATS_SERVER_BIN)';
  if (process.env['CI']) {
    t.fail(msg);
  } else {
    t.comment(`SKIP: ${msg}`);
  }
  return false;
}

/** A port that was free a moment ago (listen on 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    // nats-server greets with INFO as soon as it accepts clients
    sock.once('data', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** `$JS.API.INFO` answers without error: JetStream is up (and, clustered, has a meta leader). */
export async function jetStreamReady(url: string, deadline: number): Promise<void> {
  let lastErr: unknown = new Error('no attempt made');
  while (Date.now() < deadline) {
    let nc: NatsConnection | undefined;
    try {
      nc = await connect({ servers: [url], reconnect: false, timeout: 1000 });
      const m = await nc.request('$JS.API.INFO', '', { timeout: 1000 });
      const body = JSON.parse(new TextDecoder().decode(m.data)) as { error?: { description?: string } };
      if (!body.error) return;
      lastErr = new Error(body.error.description ?? 'JetStream error');
    } catch (e) {
      lastErr = e;
    } finally {
      await nc?.close().catch(() => undefined);
    }
    await sleep(100);
  }
  throw new Error(`JetStream at ${url} not ready: ${String(lastErr)}`);
}

/** Wait until a throw-away stream with `replicas` replicas can be placed, then delete it. */
async function replicatedPlacementReady(urls: string[], replicas: number, deadline: number): Promise<void> {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let lastErr: unknown = new Error('no attempt made');
  while (Date.now() < deadline) {
    let nc: NatsConnection | undefined;
    try {
      nc = await connect({ servers: urls, reconnect: false, timeout: 1000 });
      const created = await nc.request(
        '$JS.API.STREAM.CREATE.__placement_probe',
        enc.encode(JSON.stringify({ name: '__placement_probe', subjects: ['__placement_probe.>'], num_replicas: replicas, storage: 'memory' })),
        { timeout: 2000 },
      );
      const body = JSON.parse(dec.decode(created.data)) as { error?: { description?: string } };
      if (!body.error) {
        await nc.request('$JS.API.STREAM.DELETE.__placement_probe', '', { timeout: 2000 });
        return;
      }
      lastErr = new Error(body.error.description ?? 'stream create failed');
    } catch (e) {
      lastErr = e;
    } finally {
      await nc?.close().catch(() => undefined);
    }
    await sleep(200);
  }
  throw new Error(`JetStream cluster cannot place R${replicas} streams: ${String(lastErr)}`);
}

class NatsServerProcess implements NatsServerHandle {
  readonly storeDir: string;
  readonly name: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly log: string[] = [];
  private readonly ownsStore: boolean;
  private currentPort: number;
  private readonly portFixed: boolean;
  /** After the first start the port is part of the server's identity (clients reconnect to it). */
  private startedOnce = false;

  constructor(
    private readonly bin: string,
    private readonly opts: NatsServerOptions,
    port: number,
  ) {
    this.portFixed = opts.port !== undefined;
    this.currentPort = port;
    this.ownsStore = opts.storeDir === undefined;
    this.storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), 'smsgw-nats-'));
    this.name = opts.name ?? `smsgw-test-${process.pid}-${port}`;
  }

  get port(): number {
    return this.currentPort;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.currentPort}`;
  }

  pid(): number | undefined {
    return this.child?.pid;
  }

  logTail(): string {
    return this.log.join('\n');
  }

  private args(): string[] {
    const a = ['-a', '127.0.0.1', '-p', String(this.currentPort), '-n', this.name];
    if (this.opts.jetstream ?? true) a.push('-js', '-sd', this.storeDir);
    const c = this.opts.cluster;
    if (c) {
      a.push('--cluster_name', c.name, '--cluster', `nats://127.0.0.1:${c.port}`, '--routes', c.routes.join(','));
    }
    return a;
  }

  private pushLog(chunk: Buffer): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.length === 0) continue;
      this.log.push(line);
      if (this.log.length > LOG_LINES_KEPT) this.log.shift();
    }
  }

  /** Spawn once; resolves when the client port accepts, rejects if the process exits first. */
  private async spawnOnce(deadline: number): Promise<void> {
    const child = spawn(this.bin, this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    killOnExit(child);
    let exitCode: number | null | undefined;
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code) => {
        exitCode = code;
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    child.once('error', (e) => this.log.push(`spawn error: ${String(e)}`));
    child.stdout?.on('data', (b: Buffer) => this.pushLog(b));
    child.stderr?.on('data', (b: Buffer) => this.pushLog(b));
    while (Date.now() < deadline) {
      if (exitCode !== undefined) {
        throw new Error(`nats-server exited (code ${String(exitCode)}) before accepting connections:\n${this.logTail()}`);
      }
      if (await tcpAccepts(this.currentPort)) return;
      await sleep(50);
    }
    await this.kill('SIGKILL');
    throw new Error(`nats-server on ${this.currentPort} did not accept connections in time:\n${this.logTail()}`);
  }

  async start(): Promise<void> {
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spawnOnce(deadline);
        this.startedOnce = true;
        break;
      } catch (e) {
        const inUse = this.logTail().includes('address already in use');
        if (!inUse || attempt >= PORT_PICK_ATTEMPTS || Date.now() >= deadline) throw e;
        // a fixed port (restart) may still be held briefly; a picked one is re-picked
        if (!this.portFixed && !this.startedOnce && !this.opts.cluster) this.currentPort = await freePort();
        await sleep(200);
      }
    }
    if ((this.opts.jetstream ?? true) && !this.opts.skipJetStreamProbe) {
      await jetStreamReady(this.url, deadline);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      await this.exited;
      return;
    }
    child.kill(signal);
    await this.exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    if (this.child) await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.kill('SIGKILL');
    if (this.ownsStore) rmSync(this.storeDir, { recursive: true, force: true });
  }
}

function binaryOrThrow(): string {
  const bin = findNatsServer();
  if (!bin) throw new Error('nats-server binary not found (apt-get install nats-server, or set NATS_SERVER_BIN)');
  return bin;
}

/** One server, JetStream on by default, bound to 127.0.0.1 on a free port. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const server = new NatsServerProcess(binaryOrThrow(), opts, opts.port ?? (await freePort()));
  try {
    await server.start();
  } catch (e) {
    await server.destroy();
    throw e;
  }
  return server;
}

export interface NatsClusterHandle {
  readonly servers: readonly NatsServerHandle[];
  /** Client URLs of every member. */
  readonly urls: string[];
  destroy(): Promise<void>;
}

/**
 * `size` JetStream servers routed into one cluster; resolves when every
 * member answers `$JS.API.INFO` (so the meta group has a leader).
 */
export async function startNatsCluster(size = 3, opts: { startTimeoutMs?: number } = {}): Promise<NatsClusterHandle> {
  const bin = binaryOrThrow();
  const timeout = opts.startTimeoutMs ?? 30_000;
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await freePort());
    routePorts.push(await freePort());
  }
  const clusterName = `smsgw-test-${process.pid}-${clientPorts[0] ?? 0}`;
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`);
  const servers: NatsServerProcess[] = [];
  try {
    for (let i = 0; i < size; i++) {
      servers.push(
        new NatsServerProcess(bin, {
          jetstream: true,
          port: clientPorts[i],
          name: `n${i + 1}`,
          cluster: { name: clusterName, port: routePorts[i] ?? 0, routes },
          startTimeoutMs: timeout,
          skipJetStreamProbe: true,
        }, clientPorts[i] ?? 0),
      );
    }
    await Promise.all(servers.map((s) => s.start()));
    const deadline = Date.now() + timeout;
    for (const s of servers) await jetStreamReady(s.url, deadline);
    // A meta leader is not enough: under load the peers join a moment later,
    // and an R<n> stream then fails with "no suitable peers for placement".
    await replicatedPlacementReady(servers.map((s) => s.url), size, deadline);
  } catch (e) {
    await Promise.all(servers.map((s) => s.destroy()));
    throw e;
  }
  return {
    servers,
    urls: servers.map((s) => s.url),
    destroy: async () => {
      await Promise.all(servers.map((s) => s.destroy()));
    },
  };
}
