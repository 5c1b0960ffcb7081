/**
 * Opening the configured queue adapter: the one place outside the adapters
 * themselves that looks at `queue.kind`. Everything else asks the port
 * (WorkQueue: persistTogether, lingerMs) and never which adapter it is.
 */
import type { RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/load.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ReceiptStore } from '../receipts/store.js';
import { EmbeddedQueue } from './embedded/queue.js';
import type { QueueOptions, WorkQueue } from './port.js';
import type { StatusEventPublisher } from './nats/status-events.js';

/** The configured adapter, open. NATS is loaded only when configured (the embedded default does not pull in the client). */
export async function openQueue(config: ResolvedConfig, options: QueueOptions, env: RootDatabase, metrics: Metrics, logger: Logger): Promise<WorkQueue> {
  if (config.queue.kind === 'embedded') return EmbeddedQueue.open({ env, options, metrics, logger });
  const { NatsQueue } = await import('./nats/queue.js');
  return NatsQueue.connect({
    servers: config.queue.nats.servers,
    stream: config.queue.nats.stream,
    replicas: config.queue.nats.replicas,
    options,
    metrics,
    logger,
    // Small messages linger to share one publish.
    lingerMs: config.queue.nats.flushMs,
    // Idempotency-Key claims shared by every process live as long as the key.
    keyTtlMs: config.idempotencyTtlMs,
  });
}

/**
 * Final states as events on <prefix>.status.<tenant> for other services:
 * only with NATS (undefined for the embedded queue, which has no one to tell).
 */
export async function startStatusEvents(config: ResolvedConfig, store: ReceiptStore, metrics: Metrics, logger: Logger): Promise<StatusEventPublisher | undefined> {
  if (config.queue.kind !== 'nats') return undefined;
  const { StatusEventPublisher } = await import('./nats/status-events.js');
  return StatusEventPublisher.start({
    servers: config.queue.nats.servers,
    source: store,
    tenantOf: (id) => store.getMessage(id)?.tenant,
    options: { prefix: config.queue.prefix, stream: `${config.queue.nats.stream}_STATUS`, replicas: config.queue.nats.replicas },
    metrics,
    logger,
  });
}
