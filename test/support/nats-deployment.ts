/**
 * A gateway deployment on NATS JetStream for multi-process integration and
 * fault tests, built in one call instead of by hand in every test:
 *
 *   startNatsDeployment(t, { nodes, overrides })
 *     ├─ nats-server -js (nodes = 1) or a routed cluster of `nodes` (work stream Rn)
 *     ├─ one data dir shared by every process (one LMDB environment per host)
 *     ├─ startIngest()              smsgw start --role ingest, ready on /readyz
 *     └─ startDispatcher(sim, …)    smsgw start --role dispatch, bound to `sim`,
 *                                   ready when the simulator has seen its binds
 *
 * Every piece is torn down with the test. Per-process overrides are merged
 * over the deployment's (objects key by key), so a test states only what
 * differs. Alongside: the SMSC simulator in the test process
 * (`startSimulator`), the recipients' numbers (`numberAt`), a bounded poll
 * (`until`), a burst of sends with a fault injected part-way
 * (`burstWithFault`) and per-recipient submit counts (`coverage`).
 */
import { deepMerge } from '../../src/config/load.js';
import type { GatewayProcess as KillableProcess } from './gateway-process.js';
import { SmscSimulator, type SmscSimulatorOptions } from '../../src/smpp/simulator.js';
import { startNatsCluster, startNatsServer, type NatsServerHandle } from './nats-server.js';
import {
  api,
  deploymentConfig,
  sharedDataDir,
  simulatorAccountConfig,
  startGatewayProcess,
  type GatewayProcess,
} from './gateway-process.js';

/** Anything with a teardown hook: a tap Test. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

/** What a dispatcher's readiness and the coverage counts read from a simulator. */
export interface SimulatorView {
  readonly port: number;
  stats(): { readonly binds: number; readonly submitsByDestination: ReadonlyMap<string, number> };
}

/** The n-th distinct valid China Mobile number, ending in 6 (no simulator-steered suffix). */
export function numberAt(n: number): string {
  return `138${String(10_000_000 + n * 10 + 6).slice(-8)}`;
}

/** Bounded polling (test/support/wait.ts), re-exported for the deployment tests that import it from here. */
export { until } from './wait.js';

/** An SMSC simulator on a free loopback port (receipts after 5 ms unless told otherwise), stopped on teardown. */
export async function startSimulator(t: Teardown, options: Partial<SmscSimulatorOptions> = {}): Promise<SmscSimulator> {
  const sim = new SmscSimulator({ port: 0, host: '127.0.0.1', dlrDelayMs: 5, ...options });
  await sim.start();
  t.teardown(() => sim.stop());
  return sim;
}

type ConfigObject = Record<string, unknown>;

/** `over` merged into `base`: objects key by key, arrays and scalars replaced (as config files merge). */
function mergeOverrides(base: ConfigObject, over: ConfigObject): ConfigObject {
  type Json = Parameters<typeof deepMerge>[0];
  return deepMerge(base as Json, over as Json);
}

export interface NatsDeploymentOptions {
  /** nats-server processes: 1 (default), or a routed cluster of this many with the work stream replicated on all. */
  readonly nodes?: number;
  /** Config of every process of the deployment (see deploymentConfig in gateway-process.ts). */
  readonly overrides?: ConfigObject;
}

export interface ProcessOptions {
  /** For diagnostics (default: the role). */
  readonly name?: string;
  /**
   * A separate host: the process gets that host's own data dir (one LMDB
   * environment per host, made on first use) and receipt replication with
   * this host id. Absent: the deployment's shared data dir, no replication.
   */
  readonly host?: string;
  /** Merged over the deployment's overrides for this process only. */
  readonly overrides?: ConfigObject;
}

export interface DispatcherOptions extends ProcessOptions {
  /** Changes to the simulator's SMPP account (binds, window, …). */
  readonly account?: ConfigObject;
}

export interface IngestProcess extends GatewayProcess {
  readonly url: string;
}

export interface NatsDeployment {
  /** The nats-server processes; `server` is the first (the only one when nodes = 1). */
  readonly servers: readonly NatsServerHandle[];
  readonly server: NatsServerHandle;
  /** Client URLs of every node. */
  readonly urls: string[];
  /** The data dir every process shares (processes without a `host`). */
  readonly dataDir: string;
  /** The data dir of a host (processes started with `host`). */
  hostDataDir(host: string): string;
  /** The config file content of one process: the deployment's, then `overrides`, with `account` as its SMPP account (and `host`'s data dir and replication). */
  config(p?: { account?: ConfigObject; overrides?: ConfigObject; host?: string }): ConfigObject;
  /** An ingest process, ready when /readyz answers. */
  startIngest(p?: ProcessOptions): Promise<IngestProcess>;
  /**
   * A dispatch process bound to `sim` with simulatorAccountConfig's account
   * (plus `p.account`), ready when the simulator has counted that many more
   * binds than it had before the start.
   */
  startDispatcher(sim: SimulatorView, p?: DispatcherOptions): Promise<GatewayProcess>;
  /**
   * A process of role `all` (API and dispatch in one, as `smsgw start` runs by
   * default) bound to `sim`: ready when /readyz answers and the simulator has
   * counted its binds.
   */
  startAll(sim: SimulatorView, p?: DispatcherOptions): Promise<IngestProcess>;
}

export async function startNatsDeployment(t: Teardown, opts: NatsDeploymentOptions = {}): Promise<NatsDeployment> {
  const nodes = opts.nodes ?? 1;
  let servers: readonly NatsServerHandle[];
  let urls: string[];
  if (nodes === 1) {
    const nats = await startNatsServer({ jetstream: true });
    t.teardown(() => nats.destroy());
    servers = [nats];
    urls = [nats.url];
  } else {
    const cluster = await startNatsCluster(nodes);
    t.teardown(() => cluster.destroy());
    servers = cluster.servers;
    urls = cluster.urls;
  }
  const dataDir = sharedDataDir(t);
  const hostDirs = new Map<string, string>();
  const hostDataDir = (host: string): string => {
    let dir = hostDirs.get(host);
    if (dir === undefined) {
      dir = sharedDataDir(t);
      hostDirs.set(host, dir);
    }
    return dir;
  };
  const base = opts.overrides ?? {};
  const config = (p: { account?: ConfigObject; overrides?: ConfigObject; host?: string } = {}): ConfigObject =>
    deploymentConfig({
      dataDir: p.host === undefined ? dataDir : hostDataDir(p.host),
      natsUrls: urls,
      replicas: nodes,
      ...(p.account ? { account: p.account } : {}),
      overrides: mergeOverrides(
        p.host === undefined ? base : mergeOverrides(base, { queue: { nats: { replication: { enabled: true, host: p.host, catchUpMs: 5_000 } } } }),
        p.overrides ?? {},
      ),
    });
  return {
    servers,
    server: servers[0] as NatsServerHandle,
    urls,
    dataDir,
    hostDataDir,
    config,
    async startIngest(p = {}) {
      const proc = await startGatewayProcess(t, {
        role: 'ingest',
        ...(p.name ? { name: p.name } : {}),
        config: config({ ...(p.overrides ? { overrides: p.overrides } : {}), ...(p.host !== undefined ? { host: p.host } : {}) }),
      });
      const url = proc.url;
      if (url === undefined) throw new Error('an ingest process has a URL');
      return Object.assign(proc, { url });
    },
    startDispatcher(sim, p = {}) {
      const account = simulatorAccountConfig(sim.port, p.account);
      const want = sim.stats().binds + (account['binds'] as number);
      return startGatewayProcess(t, {
        role: 'dispatch',
        ...(p.name ? { name: p.name } : {}),
        config: config({ account, ...(p.overrides ? { overrides: p.overrides } : {}), ...(p.host !== undefined ? { host: p.host } : {}) }),
        ready: () => sim.stats().binds >= want,
      });
    },
    async startAll(sim, p = {}) {
      const account = simulatorAccountConfig(sim.port, p.account);
      const want = sim.stats().binds + (account['binds'] as number);
      const proc = await startGatewayProcess(t, {
        role: 'all',
        ...(p.name ? { name: p.name } : {}),
        config: config({ account, ...(p.overrides ? { overrides: p.overrides } : {}), ...(p.host !== undefined ? { host: p.host } : {}) }),
        ready: () => sim.stats().binds >= want,
      });
      const url = proc.url;
      if (url === undefined) throw new Error('a process of role all has a URL');
      return Object.assign(proc, { url });
    },
  };
}

export interface BurstOptions {
  readonly requests: number;
  /** Recipients a request: request k goes to numberAt(k × perRequest + j). */
  readonly perRequest: number;
  /** Requests in flight at once. */
  readonly concurrency: number;
  readonly text: (k: number) => string;
  /** When this many requests have been answered, `fault` starts (once; the burst goes on meanwhile). */
  readonly faultAfter: number;
  readonly fault: () => Promise<void>;
}

export interface BurstOutcome {
  /** Message id → its recipients, for every 202. */
  readonly accepted: Map<string, string[]>;
  /** Refusal code (or `transport: <error>`) → count. */
  readonly refused: Map<string, number>;
  /** Whether the fault was started (and has finished: the burst awaits it). */
  readonly faulted: boolean;
  /** Requests sent and not yet answered when the fault started. */
  readonly inFlightAtFault: number;
}

/** POST /v1/messages `requests` times against `url`, `concurrency` at a time, with `fault` injected part-way. */
export async function burstWithFault(url: string, o: BurstOptions): Promise<BurstOutcome> {
  const accepted = new Map<string, string[]>();
  const refused = new Map<string, number>();
  const refuse = (why: string): void => {
    refused.set(why, (refused.get(why) ?? 0) + 1);
  };
  let started = 0;
  let done = 0;
  let inFlightAtFault = 0;
  let fault: Promise<void> | undefined;
  const sendOne = async (k: number): Promise<void> => {
    started++;
    const to = Array.from({ length: o.perRequest }, (_, j) => numberAt(k * o.perRequest + j));
    try {
      const r = await api<{ id: string; code?: string }>(url, 'POST', '/v1/messages', { to, text: o.text(k) });
      if (r.status === 202) accepted.set(r.json.id, to);
      else refuse(String(r.json?.code ?? r.status));
    } catch (e) {
      refuse(`transport: ${String(e)}`);
    }
    done++;
    if (done === o.faultAfter && !fault) {
      inFlightAtFault = started - done;
      fault = o.fault();
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      for (let k = next++; k < o.requests; k = next++) await sendOne(k);
    }),
  );
  await fault;
  return { accepted, refused, faulted: fault !== undefined, inFlightAtFault };
}

/** Over a set of destinations: how many the simulator never saw, how many more than once, how many in all. */
export function coverage(sim: SimulatorView, numbers: Iterable<string>): { missing: number; twice: number; total: number } {
  const by = sim.stats().submitsByDestination;
  let missing = 0;
  let twice = 0;
  let total = 0;
  for (const n of numbers) {
    total++;
    const c = by.get(`86${n}`) ?? 0;
    if (c === 0) missing++;
    else if (c > 1) twice++;
  }
  return { missing, twice, total };
}

/** A simulator that SIGKILLs `victim` at its `killAt`-th submit_sm, for "kill a dispatcher mid-batch" tests. */
export interface KillingSimulator {
  readonly sim: SmscSimulator;
  /** The process to kill; set it once started (submits before that only count). */
  victim: KillableProcess | undefined;
  /** Whether the kill was sent. */
  killed(): boolean;
}

export async function startKillingSimulator(t: Teardown, killAt: number): Promise<KillingSimulator> {
  let submits = 0;
  let sent = false;
  const k: KillingSimulator = {
    sim: undefined as unknown as SmscSimulator,
    victim: undefined,
    killed: () => sent,
  };
  const sim = await startSimulator(t, {
    // slow answers keep the victim's small window full: it is always mid-batch
    responseDelayMs: 20,
    // receipts for the dead process's submits wait for the next process's binds
    dlrRetryMs: 300,
    dlrMaxAttempts: 50,
    observeSubmit: () => {
      submits++;
      if (submits === killAt && k.victim !== undefined) {
        const pid = k.victim.pid();
        if (pid !== undefined) process.kill(pid, 'SIGKILL');
        sent = true;
      }
    },
  });
  return Object.assign(k, { sim });
}

/**
 * After a kill: over recipients 0 … n-1 (numberAt), how many were never
 * submitted, how many more than once, and how many of those the dead
 * process had submitted (`before`: the simulator's counts at its death).
 */
export function resends(sim: SimulatorView, n: number, before: ReadonlyMap<string, number>): { missing: number; twice: number; resentOfFirst: number } {
  const all = sim.stats().submitsByDestination;
  let missing = 0;
  let twice = 0;
  let resentOfFirst = 0;
  for (let i = 0; i < n; i++) {
    const dest = `86${numberAt(i)}`;
    const c = all.get(dest) ?? 0;
    if (c === 0) missing++;
    if (c > 1) twice++;
    if ((before.get(dest) ?? 0) > 0 && c > 1) resentOfFirst++;
  }
  return { missing, twice, resentOfFirst };
}
