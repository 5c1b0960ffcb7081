/**
 * The JetStream layout of the work queue, created or brought up to date at
 * connect (idempotent: info → add when missing, update when different).
 *
 *   <stream>       subjects <prefix>.work.>   retention workqueue, file, discard new
 *     consumer work-<tier>   filter <prefix>.work.<tier>.>   pull, explicit ack
 *   <stream>_DEAD  subjects <prefix>.dead.>   retention limits, file, discard old
 *
 * Why two streams: a workqueue stream removes a message on its first ack and
 * refuses overlapping consumer filters, so dead letters kept there would
 * either need a consumer that never acks or be invisible to depth. A limits
 * stream keeps them for inspection and replay by any number of readers, and
 * keeps them out of the work depth.
 *
 * Why `discard: new` on the work stream: `old` would silently drop accepted
 * work when the limit is hit (DESIGN invariant 1); `new` makes the publish
 * fail, which the adapter reports as OVERLOADED (HTTP 503, retry later).
 *
 * Why `max_deliver: -1` on the consumers: the adapter itself dead-letters a
 * delivery whose count passes `maxDeliver` when a fetch sees it (see
 * queue.ts). With a finite server-side max_deliver, nats-server 2.9 leaves an
 * exhausted message in a workqueue stream for good, counted neither in
 * num_pending nor num_ack_pending, and only a core-NATS advisory (lost while
 * disconnected) says it happened.
 */
import type { JetStreamManager, StreamConfig, ConsumerConfig, StreamInfo, ConsumerInfo } from '@nats-io/jetstream';
import { AckPolicy, DeliverPolicy, DiscardPolicy, JetStreamApiCodes, JetStreamApiError, ReplayPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { GatewayError } from '../../core/errors.js';
import type { QueueOptions } from '../port.js';

/** Bounds of the two streams. Every one is a hard limit enforced by the server. */
export interface NatsStreamLimits {
  /** Work stream: most messages stored (default 10,000,000). */
  readonly maxMsgs: number;
  /** Work stream: most bytes stored (default 4 GiB). A full stream refuses publishes (OVERLOADED). */
  readonly maxBytes: number;
  /** Largest single message, both streams (default 1 MiB, nats-server's default max_payload). */
  readonly maxMsgSize: number;
  /** Dead-letter stream: most messages kept (default 1,000,000); the oldest go first. */
  readonly deadMaxMsgs: number;
  /** Dead-letter stream: most bytes kept (default 512 MiB); the oldest go first. */
  readonly deadMaxBytes: number;
  /** Dead-letter stream: age after which dead letters are dropped (default 14 days). */
  readonly deadMaxAgeMs: number;
}

export const DEFAULT_STREAM_LIMITS: NatsStreamLimits = {
  maxMsgs: 10_000_000,
  maxBytes: 4 * 1024 ** 3,
  maxMsgSize: 1024 * 1024,
  deadMaxMsgs: 1_000_000,
  deadMaxBytes: 512 * 1024 ** 2,
  deadMaxAgeMs: 14 * 24 * 3_600_000,
};

export interface QueueLayout {
  readonly stream: string;
  readonly deadStream: string;
  readonly prefix: string;
  /** tier → durable consumer name */
  readonly consumers: ReadonlyMap<string, string>;
}

export function deadStreamName(stream: string): string {
  return `${stream}_DEAD`;
}

export function consumerName(tier: string): string {
  return `work-${tier}`;
}

/** `<prefix>.work.<tier>.<tenant>.<group>` → `<prefix>.dead.<tier>.<tenant>.<group>` */
export function deadSubject(prefix: string, workSubject: string): string {
  const head = `${prefix}.work.`;
  return workSubject.startsWith(head) ? `${prefix}.dead.${workSubject.slice(head.length)}` : `${prefix}.dead._.${workSubject}`;
}

/** Names that are safe as a subject token and a durable name: no `.`, `*`, `>`, `/`, `\` or white space. */
const TOKEN = /^[^.*>/\\\s]+$/;

export function validateLayoutNames(stream: string, options: QueueOptions): void {
  const bad: string[] = [];
  if (!TOKEN.test(stream)) bad.push(`stream name ${JSON.stringify(stream)}`);
  if (!TOKEN.test(options.prefix)) bad.push(`prefix ${JSON.stringify(options.prefix)}`);
  for (const t of options.tiers) if (!TOKEN.test(t)) bad.push(`tier ${JSON.stringify(t)}`);
  if (options.tiers.length === 0) bad.push('no tiers');
  if (new Set(options.tiers).size !== options.tiers.length) bad.push('duplicate tiers');
  if (bad.length > 0) throw new GatewayError('CONFIG_INVALID', `NATS queue: invalid ${bad.join(', ')}`);
}

export function workStreamConfig(stream: string, replicas: number, options: QueueOptions, limits: NatsStreamLimits): Partial<StreamConfig> & { name: string } {
  return {
    name: stream,
    description: 'smsgw work queue: jobs by tier, removed on ack',
    subjects: [`${options.prefix}.work.>`],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: replicas,
    duplicate_window: nanos(options.duplicateWindowMs),
    discard: DiscardPolicy.New,
    max_msgs: limits.maxMsgs,
    max_bytes: limits.maxBytes,
    max_msg_size: limits.maxMsgSize,
    max_age: 0,
    max_consumers: -1,
    max_msgs_per_subject: -1,
  };
}

export function deadStreamConfig(stream: string, replicas: number, options: QueueOptions, limits: NatsStreamLimits): Partial<StreamConfig> & { name: string } {
  return {
    name: deadStreamName(stream),
    description: 'smsgw dead letters: jobs given up on (maxDeliver or term), kept for inspection and replay',
    subjects: [`${options.prefix}.dead.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
    duplicate_window: nanos(options.duplicateWindowMs),
    discard: DiscardPolicy.Old,
    max_msgs: limits.deadMaxMsgs,
    max_bytes: limits.deadMaxBytes,
    max_msg_size: limits.maxMsgSize,
    max_age: nanos(limits.deadMaxAgeMs),
    max_consumers: -1,
    max_msgs_per_subject: -1,
  };
}

export function tierConsumerConfig(tier: string, options: QueueOptions): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: consumerName(tier),
    description: `smsgw dispatch of tier ${tier}`,
    filter_subject: `${options.prefix}.work.${tier}.>`,
    deliver_policy: DeliverPolicy.All,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: options.maxAckPending,
    replay_policy: ReplayPolicy.Instant,
  };
}

function isNotFound(e: unknown, code: number): boolean {
  return e instanceof JetStreamApiError && e.code === code;
}

/** Keys we set, compared against what the server reports (it fills in the rest). */
function differs(want: Record<string, unknown>, have: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(want)) {
    const h = have[k];
    const same = Array.isArray(v) && Array.isArray(h) ? v.length === h.length && v.every((x, i) => x === h[i]) : v === h;
    // the server omits empty descriptions and reports num_replicas 0 for "inherit" on consumers
    if (!same && !(k === 'description' && (h === undefined || h === ''))) out.push(k);
  }
  return out;
}

function setupError(what: string, e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  if (e instanceof JetStreamApiError) {
    // 10052/10058 and friends: the existing stream cannot take this config (e.g. retention change)
    return new GatewayError('CONFIG_INVALID', `NATS queue: cannot set up ${what}: ${e.message} (code ${e.code})`, { cause: e });
  }
  return new GatewayError('QUEUE_UNAVAILABLE', `NATS queue: cannot set up ${what}: ${String(e)}`, { cause: e });
}

export async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<StreamInfo> {
  try {
    let info: StreamInfo | undefined;
    try {
      info = await jsm.streams.info(cfg.name);
    } catch (e) {
      if (!isNotFound(e, JetStreamApiCodes.StreamNotFound)) throw e;
    }
    if (!info) return await jsm.streams.add(cfg);
    const changed = differs(cfg, info.config);
    if (changed.length === 0) return info;
    // the client merges this into the current config; the server refuses what may not change (retention, storage)
    const { name, ...update } = cfg;
    return await jsm.streams.update(name, update);
  } catch (e) {
    throw setupError(`stream ${cfg.name}`, e);
  }
}

export async function ensureConsumer(jsm: JetStreamManager, stream: string, cfg: Partial<ConsumerConfig> & { durable_name: string }): Promise<ConsumerInfo> {
  try {
    let info: ConsumerInfo | undefined;
    try {
      info = await jsm.consumers.info(stream, cfg.durable_name);
    } catch (e) {
      if (!isNotFound(e, JetStreamApiCodes.ConsumerNotFound)) throw e;
    }
    if (!info) return await jsm.consumers.add(stream, cfg);
    const changed = differs(cfg, info.config);
    if (changed.length === 0) return info;
    const fixed = changed.filter((k) => k === 'ack_policy' || k === 'deliver_policy' || k === 'replay_policy');
    if (fixed.length > 0) {
      throw new GatewayError('CONFIG_INVALID', `NATS queue: consumer ${cfg.durable_name} on ${stream} exists with a different ${fixed.join(', ')}; delete it to recreate`);
    }
    // only the updatable fields; a changed ack/deliver/replay policy is refused by the server (CONFIG_INVALID)
    const { durable_name, ack_policy: _a, deliver_policy: _d, replay_policy: _r, ...update } = cfg;
    return await jsm.consumers.update(stream, durable_name, update);
  } catch (e) {
    throw setupError(`consumer ${cfg.durable_name} on ${stream}`, e);
  }
}

/**
 * A stream that keeps a bounded window of history (limits retention, file
 * storage, oldest dropped first): the status events and the replication
 * stream. Repeats of one publisher's message id are dropped within
 * min(2 min, maxAge).
 */
export function historyStreamConfig(o: {
  readonly name: string;
  readonly description: string;
  readonly subjects: readonly string[];
  readonly replicas: number;
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly maxMsgBytes: number;
}): Partial<StreamConfig> & { name: string } {
  return {
    name: o.name,
    description: o.description,
    subjects: [...o.subjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: o.replicas,
    discard: DiscardPolicy.Old,
    max_age: nanos(o.maxAgeMs),
    max_bytes: o.maxBytes,
    max_msgs: -1,
    max_msg_size: o.maxMsgBytes,
    max_consumers: -1,
    max_msgs_per_subject: -1,
    duplicate_window: nanos(Math.min(120_000, o.maxAgeMs)),
  };
}
