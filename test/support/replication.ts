/**
 * "Hosts" for replication tests: each its own LMDB environment in a temp dir
 * with a change log, a receipt store (whose applier also applies directory
 * and template rows) and the relay + applier over a test nats-server. Torn
 * down with the test.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import type { FinalState } from '../../src/core/message.js';
import { ReceiptReplication } from '../../src/queue/nats/receipt-replication.js';
import { ChangeLog } from '../../src/replication/change-log.js';
import { ReceiptStore } from '../../src/receipts/store.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { requireNatsServer, startNatsServer, type NatsServerHandle } from './nats-server.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * A JetStream nats-server for one replication test, stopped with it; undefined when there is no
 * nats-server binary (requireNatsServer has then failed the test under CI, or skipped it).
 */
export async function startReplicationNats(t: Teardown & Parameters<typeof requireNatsServer>[0]): Promise<NatsServerHandle | undefined> {
  if (!requireNatsServer(t)) return undefined;
  const nats = await startNatsServer({ jetstream: true });
  t.teardown(() => nats.destroy());
  return nats;
}

export interface ReplicaHost {
  readonly name: string;
  readonly env: RootDatabase;
  readonly log: ChangeLog;
  readonly store: ReceiptStore;
  readonly metrics: Metrics;
  /** Final states announced by this host's store, in order. */
  readonly finals: Array<{ id: string; index: number; state: FinalState; own: boolean }>;
  /** The running relay + applier (replace it after stopping to test a restart). */
  replication: ReceiptReplication | undefined;
}

const logger = createLogger({ level: 'silent' });

/** A relay + applier for `h` (the gateway's stream names, a fast idle relay). */
export function startReplication(h: Pick<ReplicaHost, 'store' | 'log' | 'metrics'>, nats: NatsServerHandle): Promise<ReceiptReplication> {
  return ReceiptReplication.start({
    servers: [nats.url],
    store: h.store,
    log: h.log,
    options: { prefix: 'smsgw', stream: 'SMSGW_WORK_RECEIPTS', replicas: 1, relayIdleMs: 50 },
    metrics: h.metrics,
    logger,
  });
}

export async function startReplicaHost(t: Teardown, name: string, nats: NatsServerHandle): Promise<ReplicaHost> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `smsgw-repl-${name}-`));
  const env = open({ path: dir, maxDbs: 64 });
  const log = new ChangeLog(env, name);
  const metrics = createMetrics({ defaultMetrics: false });
  const store = ReceiptStore.open({ env, metrics, logger, earlyReceiptTtlMs: 600_000, receiptGraceMs: 0, changeLog: log });
  const finals: ReplicaHost['finals'] = [];
  store.onFinal((id, index, state, own) => finals.push({ id, index, state, own }));
  const host: ReplicaHost = { name, env, log, store, metrics, finals, replication: undefined };
  host.replication = await startReplication(host, nats);
  t.teardown(async () => {
    await host.replication?.stop();
    await store.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return host;
}

/** A counter's value for one `outcome` label (0 when never counted). */
export async function outcomeCount(m: Metrics, name: string, outcome: string): Promise<number> {
  const metric = (await m.registry.getSingleMetric(name)?.get()) as { values: Array<{ labels: Record<string, string>; value: number }> } | undefined;
  return metric?.values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;
}
