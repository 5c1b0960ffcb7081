/**
 * Composition root: the one place that knows every adapter. Opens the LMDB
 * environment, the receipt store, the queue (embedded or NATS), the SMSC
 * simulator when no operator account is configured, one BindPool per
 * account, the dispatcher and the HTTP front door — and stops them in the
 * reverse order.
 *
 * Shutdown order (SIGTERM): stop accepting (503) → wait for requests that
 * are being made durable → close the listen socket → stop fetching and let
 * segments in the bind windows finish → close binds (unbind) → close the
 * queue → flush and close LMDB → stop the simulator.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/load.js';
import type { SmppAccountConfig } from '../config/schema.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { ReceiptStore } from '../receipts/store.js';
import { EmbeddedQueue } from '../queue/embedded/queue.js';
import type { QueueOptions, WorkQueue } from '../queue/port.js';
import { BindPool } from '../smpp/bind-pool.js';
import { SmscSimulator } from '../smpp/simulator.js';
import { Router } from '../dispatch/router.js';
import { Dispatcher } from '../dispatch/dispatcher.js';
import { Intake } from '../ingest/intake.js';
import { FrontDoor } from '../ingest/server.js';

export type GatewayRole = 'all' | 'ingest' | 'dispatch';

export interface GatewayOptions {
  logger: Logger;
  role?: GatewayRole;
  metrics?: Metrics;
}

export interface Gateway {
  readonly port: number;
  readonly config: ResolvedConfig;
  readonly metrics: Metrics;
  readonly store: ReceiptStore;
  readonly queue: WorkQueue;
  readonly simulator: SmscSimulator | undefined;
  stop(): Promise<void>;
}

/** The account the built-in simulator is reached through. */
export function simulatorAccount(config: ResolvedConfig, port: number): SmppAccountConfig {
  return {
    name: 'sim',
    host: config.simulator.host,
    port,
    systemId: config.simulator.systemId,
    password: config.simulator.password,
    systemType: '',
    tls: false,
    binds: 4,
    window: 64,
    tps: 0,
    responseTimeoutMs: 10_000,
    enquireLinkMs: 30_000,
    reconnectInitialMs: 100,
    reconnectMaxMs: 5_000,
    throttleBackoffMs: 100,
    operators: ['*'],
  };
}

export function queueOptions(config: ResolvedConfig): QueueOptions {
  return {
    prefix: config.queue.prefix,
    tiers: config.tierList.map((t) => t.name),
    ackWaitMs: config.queue.ackWaitMs,
    maxDeliver: config.queue.maxDeliver,
    maxAckPending: config.queue.maxAckPending,
    duplicateWindowMs: config.queue.duplicateWindowMs,
  };
}

async function openQueue(config: ResolvedConfig, env: RootDatabase, metrics: Metrics, logger: Logger): Promise<WorkQueue> {
  const options = queueOptions(config);
  if (config.queue.kind === 'embedded') return EmbeddedQueue.open({ env, options, metrics, logger });
  // Loaded only when configured, so the embedded default does not pull in the NATS client.
  const { NatsQueue } = await import('../queue/nats/queue.js');
  return NatsQueue.connect({
    servers: config.queue.nats.servers,
    stream: config.queue.nats.stream,
    replicas: config.queue.nats.replicas,
    options,
    metrics,
    logger,
  });
}

export async function startGateway(config: ResolvedConfig, options: GatewayOptions): Promise<Gateway> {
  const role = options.role ?? 'all';
  const logger = options.logger;
  const metrics = options.metrics ?? createMetrics();
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const env = open({ path: join(dataDir, 'gateway.lmdb'), maxDbs: 32, compression: false });
  const store = ReceiptStore.open({
    env,
    metrics,
    logger,
    earlyReceiptTtlMs: 10 * 60_000,
    receiptGraceMs: config.dispatch.receiptGraceMs,
  });
  const queue = await openQueue(config, env, metrics, logger);

  const runDispatch = role === 'all' || role === 'dispatch';
  const runIngest = role === 'all' || role === 'ingest';

  let simulator: SmscSimulator | undefined;
  const accounts: SmppAccountConfig[] = [...config.smpp.accounts];
  const wantSim = config.simulator.enabled === true || (config.simulator.enabled === 'auto' && accounts.length === 0);
  if (runDispatch && wantSim) {
    simulator = new SmscSimulator(config.simulator, logger.child({ part: 'smsc-sim' }));
    const { port } = await simulator.start();
    if (accounts.length === 0) accounts.push(simulatorAccount(config, port));
    logger.info({ port }, 'built-in SMSC simulator listening (no SMPP account configured)');
  }

  const pools: BindPool[] = [];
  let dispatcher: Dispatcher | undefined;
  if (runDispatch) {
    for (const account of accounts) {
      // The pool's pending queue must hold everything the dispatcher may have in flight.
      const pool = new BindPool(account, { metrics, logger, maxPending: Math.max(10_000, 2 * config.dispatch.maxInflightSegments) });
      pool.onReceipt(async (r) => {
        await store.applyReceipt(r);
      });
      pool.onMobileOriginated(async () => {
        // Two-way SMS routing arrives with the mobile-office services; until
        // then an MO is acknowledged and counted, not stored.
        metrics.dispatchSegments.inc({ outcome: 'mo-received' });
      });
      pool.start();
      pools.push(pool);
    }
    const router = new Router(accounts.map((a, i) => ({ name: a.name, operators: a.operators, transport: pools[i] as BindPool })));
    dispatcher = new Dispatcher({
      queue,
      store,
      router,
      tiers: config.tierList,
      options: {
        fetchBatch: config.dispatch.fetchBatch,
        maxInflightSegments: config.dispatch.maxInflightSegments,
        maxInflightJobs: Math.max(4, Math.min(config.queue.maxAckPending, 2 * config.dispatch.fetchBatch)),
        idleWaitMs: 50,
        ackWaitMs: config.queue.ackWaitMs,
        nakDelayMs: 1000,
      },
      metrics,
      logger,
    });
    dispatcher.start();
  }

  let frontDoor: FrontDoor | undefined;
  let intake: Intake | undefined;
  if (runIngest) {
    const d = dispatcher;
    // Same process: poke the dispatcher so new work does not wait for its idle poll.
    intake = new Intake({ config, store, queue, metrics, logger, ...(d ? { onAccepted: () => d.wake() } : {}) });
    frontDoor = new FrontDoor({
      config,
      intake,
      status: store,
      metrics,
      logger,
      readiness: {
        ready: () => ({
          ready: true,
          detail: { role, queue: queue.kind, binds: pools.map((p) => ({ account: p.account, bound: p.boundCount })) },
        }),
      },
    });
    await frontDoor.listen(config.server.host, config.server.port);
    logger.info({ port: frontDoor.port, role, queue: queue.kind }, 'gateway listening');
  }

  // Housekeeping: expire open recipients past validity, drop stale early receipts, export queue depth.
  const sweeps = setInterval(() => {
    store.expireDue().catch((e: unknown) => logger.error({ err: e }, 'expiry sweep failed'));
    store.sweepEarlyReceipts().catch((e: unknown) => logger.error({ err: e }, 'early receipt sweep failed'));
    for (const t of config.tierList) {
      queue.depth(t.name).then(
        (n) => metrics.queueDepth.set({ tier: t.name }, n),
        () => undefined,
      );
    }
  }, config.dispatch.expirySweepMs);
  sweeps.unref();

  let stopped: Promise<void> | undefined;
  return {
    port: frontDoor?.port ?? 0,
    config,
    metrics,
    store,
    queue,
    simulator,
    stop(): Promise<void> {
      stopped ??= (async () => {
        clearInterval(sweeps);
        frontDoor?.drain();
        const deadline = Date.now() + 10_000;
        while (intake && intake.inflightRequests > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        frontDoor?.close();
        await dispatcher?.stop(15_000);
        await Promise.all(pools.map((p) => p.close()));
        await queue.close();
        await store.flushed();
        await store.close();
        await env.close();
        await simulator?.stop();
        logger.info('gateway stopped');
      })();
      return stopped;
    },
  };
}
