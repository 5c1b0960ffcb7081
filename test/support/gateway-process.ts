/**
 * Gateway child processes for multi-process tests and benchmarks: each one is
 * `node --import tsx src/cli/main.ts start --role R --config FILE`, exactly as
 * an operator runs it, with its config written as JSON to a temp dir.
 *
 *   ingest / all   ready when GET /readyz answers 200 on its (pinned) port
 *   dispatch       no HTTP listener today: ready when the log says the queue
 *                  is connected ("NATS queue ready"; on the embedded queue:
 *                  "gateway started"), plus an optional
 *                  `ready()` probe from the test (e.g. "the simulator sees
 *                  this process's binds")
 *
 * The HTTP port is picked once and kept, so a restarted process answers on
 * the same URL. The process logs JSON lines (pino) on stdout; the last lines
 * are kept for diagnostics and can be awaited (`waitForLog`). Every child is
 * killed with SIGKILL when the test process exits, and on teardown when a
 * tap Test is passed in.
 */
import type { MessageStatus } from './api-types.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort } from './nats-server.js';
import { responseBody } from './http.js';
import { killOnExit } from './children.js';
import { TEST_API_KEYS, TEST_KEY } from './keys.js';

export type GatewayRole = 'all' | 'ingest' | 'dispatch';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const MAIN = join(ROOT, 'src', 'cli', 'main.ts');
const LOG_LINES_KEPT = 300;
const DEFAULT_READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 20_000;

export interface GatewayProcessOptions {
  readonly role: GatewayRole;
  /** Config written to the file given with --config (merged over config/default.json by the gateway). */
  readonly config: Record<string, unknown>;
  /** Extra environment (SMSGW_* variables of the test process are never inherited). */
  readonly env?: Readonly<Record<string, string>>;
  /** Bound of the start-up wait. */
  readonly readyTimeoutMs?: number;
  /** Extra readiness probe, polled after the built-in one until it answers true. */
  readonly ready?: () => boolean | Promise<boolean>;
  /** A name for diagnostics (defaults to the role). */
  readonly name?: string;
}

/** One pino line as parsed from the child's stdout. */
export interface LogLine {
  readonly level?: number;
  readonly msg?: string;
  readonly [key: string]: unknown;
}

export interface GatewayProcess {
  readonly name: string;
  readonly role: GatewayRole;
  /** HTTP base URL (ingest and all), undefined for dispatch. */
  readonly url: string | undefined;
  readonly configFile: string;
  pid(): number | undefined;
  /** Whether the child is running. */
  alive(): boolean;
  /** Send `signal` (default SIGKILL) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM (graceful shutdown), SIGKILL after a bound. */
  stop(): Promise<void>;
  /** Start again with the same config file and port; resolves when ready. */
  restart(): Promise<void>;
  /** stop(), then remove the config dir (done on teardown when started with a Test). */
  destroy(): Promise<void>;
  /** Resolves with the first log line (past or future) matching; rejects after `timeoutMs` or if the child exits. */
  waitForLog(match: RegExp | ((line: LogLine) => boolean), timeoutMs?: number): Promise<LogLine>;
  /** Last lines the child printed (for failure messages). */
  logTail(): string;
  /** Exit code / signal of the last run, once it ended. */
  lastExit(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

/** The environment of a child: the test's own, minus every SMSGW_* (they would override the config file). */
function childEnv(extra: Readonly<Record<string, string>> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SMSGW_') && !k.startsWith('TAP')) env[k] = v;
  return { ...env, ...extra };
}

interface Waiter {
  readonly test: (line: LogLine) => boolean;
  readonly resolve: (line: LogLine) => void;
  readonly reject: (e: Error) => void;
}

class GatewayChild implements GatewayProcess {
  readonly url: string | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly lines: string[] = [];
  private readonly parsed: LogLine[] = [];
  private readonly waiters = new Set<Waiter>();
  private partial = '';

  constructor(
    readonly name: string,
    readonly role: GatewayRole,
    readonly configFile: string,
    private readonly configDir: string,
    private readonly port: number | undefined,
    private readonly opts: GatewayProcessOptions,
  ) {
    this.url = port !== undefined ? `http://127.0.0.1:${port}` : undefined;
  }

  pid(): number | undefined {
    return this.child?.pid;
  }

  alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  lastExit(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exit;
  }

  logTail(): string {
    return this.lines.join('\n');
  }

  private onOutput(chunk: Buffer): void {
    const text = this.partial + chunk.toString('utf8');
    const parts = text.split('\n');
    this.partial = parts.pop() ?? '';
    // a line without newline for very long output is still bounded: cut it
    if (this.partial.length > 64 * 1024) this.partial = this.partial.slice(-64 * 1024);
    for (const line of parts) {
      if (line.length === 0) continue;
      this.lines.push(line);
      if (this.lines.length > LOG_LINES_KEPT) this.lines.shift();
      let entry: LogLine;
      try {
        const v = JSON.parse(line) as unknown;
        entry = typeof v === 'object' && v !== null ? (v as LogLine) : { msg: line };
      } catch {
        entry = { msg: line };
      }
      this.parsed.push(entry);
      if (this.parsed.length > LOG_LINES_KEPT) this.parsed.shift();
      for (const w of [...this.waiters]) {
        if (w.test(entry)) {
          this.waiters.delete(w);
          w.resolve(entry);
        }
      }
    }
  }

  private spawnOnce(): void {
    const args = ['--import', 'tsx', MAIN, 'start', '--role', this.role, '--config', this.configFile];
    const child = spawn(process.execPath, args, { cwd: ROOT, env: childEnv(this.opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exit = undefined;
    this.parsed.length = 0;
    killOnExit(child);
    this.exited = new Promise<void>((done) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        for (const w of [...this.waiters]) {
          this.waiters.delete(w);
          w.reject(new Error(`${this.name} exited (code ${String(code)}, signal ${String(signal)}):\n${this.logTail()}`));
        }
        done();
      });
    });
    child.once('error', (e) => this.lines.push(`spawn error: ${String(e)}`));
    // Read both pipes continuously: a full pipe would block the child's (synchronous) logger.
    child.stdout?.on('data', (b: Buffer) => this.onOutput(b));
    child.stderr?.on('data', (b: Buffer) => this.onOutput(b));
  }

  waitForLog(match: RegExp | ((line: LogLine) => boolean), timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<LogLine> {
    const test = typeof match === 'function' ? match : (l: LogLine): boolean => match.test(typeof l.msg === 'string' ? l.msg : '');
    const past = this.parsed.find(test);
    if (past) return Promise.resolve(past);
    if (!this.alive()) return Promise.reject(new Error(`${this.name} is not running:\n${this.logTail()}`));
    return new Promise<LogLine>((resolvePromise, rejectPromise) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        rejectPromise(new Error(`${this.name}: no log line ${String(match)} within ${timeoutMs} ms:\n${this.logTail()}`));
      }, timeoutMs);
      const w: Waiter = {
        test,
        resolve: (l) => {
          clearTimeout(timer);
          resolvePromise(l);
        },
        reject: (e) => {
          clearTimeout(timer);
          rejectPromise(e);
        },
      };
      this.waiters.add(w);
    });
  }

  async start(): Promise<void> {
    const timeoutMs = this.opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    this.spawnOnce();
    try {
      if (this.url !== undefined) await this.untilHttpReady(deadline);
      // a dispatch-only process on NATS: the queue is connected; on the embedded queue (one
      // dispatcher draining what an ingest process published earlier): the gateway has started
      else await this.waitForLog(embeddedQueue(this.opts.config) ? /gateway started/ : /NATS queue ready/, Math.max(1, deadline - Date.now()));
      if (this.opts.ready) {
        for (let i = 0; i < 10_000; i++) {
          if (await this.opts.ready()) break;
          if (Date.now() >= deadline) throw new Error(`${this.name}: readiness probe still false after ${timeoutMs} ms`);
          if (!this.alive()) throw new Error(`${this.name} exited while starting`);
          await sleep(25);
        }
      }
    } catch (e) {
      await this.kill('SIGKILL');
      throw new Error(`${this.name} did not become ready: ${(e as Error).message}\n--- log tail ---\n${this.logTail()}`);
    }
  }

  private async untilHttpReady(deadline: number): Promise<void> {
    let last = 'no attempt';
    for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
      if (!this.alive()) throw new Error(`exited (${JSON.stringify(this.exit)})`);
      try {
        const r = await fetch(`${this.url ?? ''}/readyz`, { signal: AbortSignal.timeout(1_000) });
        if (r.status === 200) return;
        last = `status ${r.status}`;
      } catch (e) {
        last = String(e);
      }
      await sleep(50);
    }
    throw new Error(`/readyz not 200 in time (${last})`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.alive()) {
      await this.exited;
      return;
    }
    child.kill(signal);
    await this.exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.alive()) {
      await this.exited;
      return;
    }
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.configDir, { recursive: true, force: true });
  }
}

/** Anything with a teardown hook: a tap Test. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Whether a process config runs on the embedded queue (the default kind). */
function embeddedQueue(config: Record<string, unknown>): boolean {
  return ((config['queue'] as { kind?: string } | undefined)?.kind ?? 'embedded') === 'embedded';
}

/**
 * Write the config, spawn the process and wait until it is ready. With `t`,
 * the process is stopped (SIGTERM, then SIGKILL) and its config dir removed
 * on teardown; without, the caller calls destroy(). For ingest/all processes `server.port` is replaced by a
 * pinned free port and `server.host` by 127.0.0.1.
 */
export async function startGatewayProcess(t: Teardown | undefined, opts: GatewayProcessOptions): Promise<GatewayProcess> {
  const http = opts.role !== 'dispatch';
  const level = (opts.config['log'] as { level?: string } | undefined)?.level ?? 'info';
  if (!http && !['info', 'debug', 'trace'].includes(level)) {
    // a dispatch-only process has no /readyz: its start-up log line is the readiness signal
    throw new Error(`dispatch process ${opts.name ?? ''}: log.level must be info or lower to detect readiness (got ${level})`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-proc-'));
  const port = http ? await freePort() : undefined;
  const server = { ...((opts.config['server'] as Record<string, unknown> | undefined) ?? {}), host: '127.0.0.1', port: port ?? 0 };
  const configFile = join(dir, 'config.json');
  // The test key unless the test names its own (the development key is refused beside an SMPP account).
  const auth = opts.config['auth'] ?? { apiKeys: TEST_API_KEYS };
  writeFileSync(configFile, `${JSON.stringify({ ...opts.config, server, auth }, null, 2)}\n`);
  const child = new GatewayChild(opts.name ?? opts.role, opts.role, configFile, dir, port, opts);
  if (t) t.teardown(() => child.destroy());
  try {
    await child.start();
  } catch (e) {
    if (!t) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return child;
}

/**
 * The config of one deployment's processes: shared dataDir (one LMDB
 * environment for every process on this host), the NATS queue, one SMPP
 * account, quiet logs (info: start-up lines only, no per-message lines).
 */
export function deploymentConfig(p: {
  dataDir: string;
  natsUrls: readonly string[];
  stream?: string;
  replicas?: number;
  account?: Record<string, unknown>;
  overrides?: Record<string, unknown>;
}): Record<string, unknown> {
  const o = p.overrides ?? {};
  const pick = (k: string): Record<string, unknown> => (o[k] as Record<string, unknown> | undefined) ?? {};
  const queue = pick('queue');
  return {
    ...o,
    dataDir: p.dataDir,
    log: { level: 'info', ...pick('log') },
    simulator: { enabled: false, ...pick('simulator') },
    smpp: { accounts: p.account ? [p.account] : [] },
    dispatch: { expirySweepMs: 500, ...pick('dispatch') },
    queue: {
      ...queue,
      kind: 'nats',
      nats: {
        stream: p.stream ?? 'SMSGW_WORK',
        replicas: p.replicas ?? 1,
        ...((queue['nats'] as Record<string, unknown> | undefined) ?? {}),
        servers: [...p.natsUrls],
      },
    },
  };
}

/** The SMPP account of a simulator on `port` (fast reconnects for tests). */
export function simulatorAccountConfig(port: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'sim',
    host: '127.0.0.1',
    port,
    systemId: 'smsgw',
    password: 'secret',
    systemType: '',
    tls: false,
    binds: 2,
    window: 64,
    tps: 0,
    responseTimeoutMs: 10_000,
    enquireLinkMs: 30_000,
    reconnectInitialMs: 20,
    reconnectMaxMs: 500,
    throttleBackoffMs: 50,
    operators: ['*'],
    ...overrides,
  };
}

/** Temp data dir shared by a deployment's processes; removed on teardown. */
export function sharedDataDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-deploy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** HTTP helper against a process's URL with the test key. */
export async function api<T = unknown>(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: T; headers: Headers }> {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${TEST_KEY}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(60_000),
  });
  const json = (await responseBody(res)) as T;
  return { status: res.status, json, headers: res.headers };
}

/** Poll GET /v1/messages/{id} until complete; bounded in time and rounds (the summary scans every recipient: poll big messages slowly). */
export async function waitComplete(url: string, id: string, timeoutMs: number, pollMs = 100): Promise<MessageStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: MessageStatus | undefined;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    const r = await api<MessageStatus>(url, 'GET', `/v1/messages/${encodeURIComponent(id)}?limit=1`);
    last = r.json;
    if (r.status === 200 && last.status === 'complete') return last;
    await sleep(pollMs);
  }
  throw new Error(`message ${id} not complete after ${timeoutMs} ms: ${JSON.stringify(last?.summary ?? last)}`);
}
