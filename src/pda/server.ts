/**
 * The PDA channel on a uWS app of its own: its own LMDB environment, the
 * `/v1/pda` route and the admin API, on one port. The gateway wires the
 * channel into its own app and environment instead (see the report on issue
 * 6); this runner serves the benchmark's server process, the integration
 * tests, and a PDA front end deployed apart from the SMS gateway.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { assertLmdbFixed } from '../storage/lmdb-fix.js';
import { setBounded } from '../core/bounded-map.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { PdaConfig } from '../config/schema.js';
import { loadUws } from '../ingest/uws.js';
import type { Logger } from '../telemetry/logger.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { PDA_ADMIN_ROUTES, pdaAdminRealm } from './admin-routes.js';
import { mountTables } from '../http/mount.js';
import { bind } from '../http/route.js';
import { PdaChannel } from './channel.js';
import { PDA_DBS } from './store.js';
import type { PdaStatusSink, PdaStatusState, PdaStatusUpdate } from './types.js';
import { PDA_ROUTES } from './ws-route.js';

/**
 * Keeps what the channel reports, for a deployment without a receipt store
 * (and for tests): every update in order up to `maxUpdates` (older ones are
 * dropped first), and the latest state per recipient up to `maxRecipients`.
 */
export class MemoryStatusSink implements PdaStatusSink {
  readonly updates: PdaStatusUpdate[] = [];
  readonly latest = new Map<string, PdaStatusUpdate>();
  /** Make the next `n` calls fail (tests of the relay's retry). */
  failNext = 0;
  calls = 0;

  constructor(private readonly maxUpdates = 1_000_000, private readonly maxRecipients = 1_000_000) {}

  // eslint-disable-next-line @typescript-eslint/require-await -- implements the async PdaStatusSink in memory; async keeps a throw a rejection, as its callers expect (failNext)
  async recordPdaStates(updates: readonly PdaStatusUpdate[]): Promise<void> {
    this.calls++;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('receipt store unavailable (simulated)');
    }
    for (const u of updates) {
      this.updates.push(u);
      const k = `${u.messageId}#${u.index}`;
      setBounded(this.latest, k, u, this.maxRecipients);
    }
    if (this.updates.length > this.maxUpdates) this.updates.splice(0, this.updates.length - this.maxUpdates);
  }

  /** Updates of one recipient, in order. */
  of(messageId: string, index: number): PdaStatusUpdate[] {
    return this.updates.filter((u) => u.messageId === messageId && u.index === index);
  }

  count(state: PdaStatusState): number {
    let n = 0;
    for (const u of this.updates) if (u.state === state) n++;
    return n;
  }
}

export interface PdaServerOptions {
  readonly dataDir: string;
  readonly config: PdaConfig;
  readonly logger: Logger;
  readonly sink?: PdaStatusSink;
  readonly metrics?: Metrics;
  readonly host?: string;
  /** 0 for a free port. */
  readonly port?: number;
  readonly now?: () => number;
  readonly tickMs?: number;
  /** Existing environment (the caller closes it). */
  readonly env?: RootDatabase;
}

export interface RunningPdaServer {
  readonly port: number;
  /** ws://host:port/v1/pda */
  readonly url: string;
  /** http://host:port (admin API) */
  readonly httpUrl: string;
  readonly app: TemplatedApp;
  readonly channel: PdaChannel;
  readonly env: RootDatabase;
  readonly metrics: Metrics;
  readonly sink: PdaStatusSink;
  stop(): Promise<void>;
}

export async function startPdaServer(opts: PdaServerOptions): Promise<RunningPdaServer> {
  const uws = loadUws();
  const ownEnv = opts.env === undefined;
  let env = opts.env;
  if (!env) {
    mkdirSync(opts.dataDir, { recursive: true });
    assertLmdbFixed();
    env = open({ path: join(opts.dataDir, 'pda.lmdb'), maxDbs: PDA_DBS + 2, compression: false });
  }
  const metrics = opts.metrics ?? createMetrics({ defaultMetrics: false });
  const sink = opts.sink ?? new MemoryStatusSink();
  const channel = PdaChannel.open({
    env, config: opts.config, sink, metrics, logger: opts.logger,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.tickMs !== undefined ? { tickMs: opts.tickMs } : {}),
  });
  const app = uws.App();
  const pdaAdmin = pdaAdminRealm(opts.config.adminKey);
  mountTables(app, [bind(PDA_ROUTES, { channel }), bind(PDA_ADMIN_ROUTES, { channel, logger: opts.logger })], {
    realms: { ...(pdaAdmin ? { pdaAdmin } : {}) },
    accepting: () => !channel.isClosing,
    limits: { body: 16 * 1024, import: 0 },
    metrics,
    logger: opts.logger,
  });
  const host = opts.host ?? '127.0.0.1';
  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(host, opts.port ?? 0, (s) => (s ? resolve(s) : reject(new Error(`cannot listen on ${host}:${opts.port ?? 0}`))));
  });
  const port = uws.us_socket_local_port(listenSocket);
  let stopped: Promise<void> | undefined;
  return {
    port,
    url: `ws://${host}:${port}/v1/pda`,
    httpUrl: `http://${host}:${port}`,
    app,
    channel,
    env,
    metrics,
    sink,
    stop() {
      stopped ??= (async () => {
        uws.us_listen_socket_close(listenSocket);
        await channel.close();
        if (ownEnv) await (env).close();
      })();
      return stopped;
    },
  };
}
