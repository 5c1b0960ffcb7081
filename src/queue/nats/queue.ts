/**
 * NATS JetStream adapter of the queue port (src/queue/port.ts).
 *
 * Layout (stream-setup.ts): one workqueue stream `<stream>` on
 * `<prefix>.work.>`, one durable pull consumer `work-<tier>` per tier on
 * `<prefix>.work.<tier>.>`, and a limits stream `<stream>_DEAD` on
 * `<prefix>.dead.>` for dead letters, and a limits stream `<stream>_KEYS`
 * on `<prefix>.keys.>` for Idempotency-Key claims (key-claims.ts). All
 * created or updated at connect and checked again after every reconnect.
 *
 * publish   js.publish(subject, data, { msgID }) for every message at once
 *           (bounded by a window), each retried on transient failures
 *           (timeout, no responders, JetStream temporarily unavailable) within
 *           a time budget. A publish that resolves is stored on the server; one
 *           that rejects with QUEUE_UNAVAILABLE may or may not be, and a retry
 *           with the same msgId is safe (the stream de-duplicates it inside
 *           duplicateWindowMs). A full stream rejects with OVERLOADED.
 * fetch     no-wait pull requests (pull-request.ts), never one that waits on
 *           the server until it expires: waitMs 0 answers at once.
 *           A tier whose last pull found it drained answers a no-wait fetch
 *           with [] and no round trip until work is announced on it
 *           (`<prefix>.ready.<tier>`, sent by every publish once stored), this
 *           process settles one of its deliveries, or `emptyTierRecheckMs`
 *           pass (empty-tiers.ts). A fetch that may wait pulls once, then
 *           again on each of those, until waitMs pass: work nobody announces
 *           (a redelivery after ackWait) is found within emptyTierRecheckMs.
 *           A pull the server parks (max_ack_pending reached) is served when
 *           a slot frees, often after its fetch answered: what it brings is
 *           held for the next fetch of the tier for up to lateHoldMs, then
 *           given back (late()).
 * maxDeliver  the consumers have no server-side limit (see stream-setup.ts);
 *           the adapter enforces it. A delivery with deliveryCount =
 *           maxDeliver is the last one: if it is naked, or not answered
 *           within ackWait (working() moves the deadline), the adapter
 *           dead-letters it: publish to `<prefix>.dead.<tier>...` (msgId
 *           `<stream>:<seq>`, so repeating it is harmless), `+TERM` it, call
 *           the handlers. As a backup (process restarted, timer lost, a
 *           step failed), a fetch that receives deliveryCount > maxDeliver
 *           does not hand it out but dead-letters it the same way; a failure
 *           leaves it un-acked, so the server delivers it again and the next
 *           fetch retries: nothing can be stranded. Should a consumer carry a
 *           finite max_deliver anyway (changed by an operator), the server's
 *           MAX_DELIVERIES advisory is handled as a third path: load the
 *           message by sequence, dead-letter it, delete it from the stream.
 *           All of this trusts the server's delivery count. nats-server
 *           before 2.10.14 (nats-io/nats-server#5305; Debian ships 2.9.10)
 *           resets it: a redelivery picked while the consumer's only waiting
 *           pull requests are expired or gone with their connection is lost,
 *           and the last message delivered as new is delivered again with
 *           count 1. Our own pulls never expire on the server (see fetch);
 *           a request the server parks (max_ack_pending reached) of a
 *           process that then dies, or another client's expiring pull, can
 *           still cause it. So the adapter also counts: a message it handed
 *           out n times (`handedOut`, per work sequence and msgId, until acked
 *           or dead-lettered) counts as delivery n+1 at least, whatever the
 *           server says. That covers what this process saw; a message another
 *           process had before is counted by the server alone (upgrade the
 *           server: connect() warns).
 * depth     consumer info: num_pending + num_ack_pending.
 * close     stops fetches (pending ones resolve []), lets deliveries in hand
 *           still ack, and drains the connection once they are settled or
 *           after `closeGraceMs`.
 *
 * onDeadLetter handlers are at-least-once: a crash between the dead-letter
 * publish and the term means the message is dead-lettered (and reported)
 * again on its next delivery. The dead stream keeps one copy per work
 * sequence inside the duplicate window.
 */
import { errors as natsErrors, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
} from '@nats-io/jetstream';
import { connectGateway } from './connection.js';
import { GatewayError } from '../../core/errors.js';
import { setNewest } from '../../core/bounded-map.js';
import type { DeadLetter, Delivery, DurableWrite, KeyClaim, KeyClaimAnswer, PublishResult, QueueMessage, QueueOptions, WorkQueue } from '../port.js';
import { claimKey, keysStreamConfig } from './key-claims.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { createLogger, type Logger } from '../../telemetry/logger.js';
import { deliveryCountMayReset, NatsDelivery, parseAckSubject, nakPayload, TERM, type AckInfo, type DeliveryHost } from './delivery.js';
import { PullChannel, type PullRequest } from './pull-request.js';
import { EmptyTiers } from './empty-tiers.js';
import {
  consumerName,
  deadStreamConfig,
  deadStreamName,
  deadSubject,
  DEFAULT_STREAM_LIMITS,
  ensureConsumer,
  ensureStream,
  tierConsumerConfig,
  validateLayoutNames,
  workStreamConfig,
  type NatsStreamLimits,
} from './stream-setup.js';

/** Timings and bounds of the client side. Defaults in DEFAULT_TUNING. */
export interface NatsQueueTuning {
  /** Initial connection, and each JetStream API request (info, create, get, delete). */
  readonly connectTimeoutMs: number;
  readonly apiTimeoutMs: number;
  /** One publish attempt waits this long for its PubAck. */
  readonly publishAttemptTimeoutMs: number;
  /** A message's publish retries stop after this long: QUEUE_UNAVAILABLE. */
  readonly publishBudgetMs: number;
  /** Publishes awaiting a PubAck at once, across all callers. */
  readonly maxPublishInflight: number;
  /** Attempts to get an ack / term confirmed before the ack() rejects. */
  readonly confirmAttempts: number;
  /** Wait between reconnect attempts. */
  readonly reconnectTimeWaitMs: number;
  /** After close(), deliveries in hand may still ack this long before the connection is drained. */
  readonly closeGraceMs: number;
  /** Advisories waiting to be handled; past it they are logged and dropped (the message stays in the stream). */
  readonly maxAdvisoryBacklog: number;
  /** Work sequences remembered as dead-lettered, so two paths racing on one message report it once. */
  readonly recentDeadMemory: number;
  /**
   * Work sequences handed out and not acked, remembered with how often this process handed each
   * out, to correct a delivery count the server reset (file comment, maxDeliver); oldest forgotten first.
   */
  readonly handedOutMemory: number;
  /**
   * A tier found drained is pulled again by a no-wait fetch after this long even without an
   * announcement: the bound on the extra wait for work nobody announces (delayed naks,
   * redeliveries after ackWait, announcements lost in a reconnect).
   */
  readonly emptyTierRecheckMs: number;
  /**
   * A delivery that came for no open pull (a request the server parked at max_ack_pending and
   * served once a slot freed) is held this long for the next fetch of its tier, then given back
   * (at most a quarter of ackWait).
   */
  readonly lateHoldMs: number;
}

export const DEFAULT_TUNING: NatsQueueTuning = {
  connectTimeoutMs: 10_000,
  apiTimeoutMs: 5_000,
  publishAttemptTimeoutMs: 5_000,
  publishBudgetMs: 20_000,
  maxPublishInflight: 1024,
  confirmAttempts: 3,
  reconnectTimeWaitMs: 250,
  closeGraceMs: 5_000,
  maxAdvisoryBacklog: 10_000,
  recentDeadMemory: 10_000,
  handedOutMemory: 50_000,
  emptyTierRecheckMs: 100,
  lateHoldMs: 1_000,
};

export interface NatsQueueConfig {
  readonly servers: readonly string[];
  readonly stream: string;
  readonly replicas: number;
  readonly options: QueueOptions;
  readonly metrics?: Metrics;
  readonly logger?: Logger;
  readonly limits?: Partial<NatsStreamLimits>;
  readonly tuning?: Partial<NatsQueueTuning>;
  /** Client name shown by the server's monitoring. */
  readonly name?: string;
  /** How long small jobs may wait to share one publish (default 0: one event turn). */
  readonly lingerMs?: number;
  /** The Idempotency-Key TTL (`server.idempotencyTtl`): claims in `<stream>_KEYS` are kept this long. Default 1 day. */
  readonly keyTtlMs?: number;
}

/** Dead-letter headers (the work message's own headers are not carried over). */
export const DEAD_HEADERS = {
  reason: 'Smsgw-Dead-Reason',
  tier: 'Smsgw-Tier',
  subject: 'Smsgw-Work-Subject',
  msgId: 'Smsgw-Msg-Id',
  seq: 'Smsgw-Work-Seq',
  deliveries: 'Smsgw-Deliveries',
} as const;

type PublishFailure = 'retry' | 'overloaded' | 'closed' | 'fatal';

/** Which publish failures are worth another attempt with the same msgId. */
function classifyPublishError(e: unknown): PublishFailure {
  if (e instanceof natsErrors.ClosedConnectionError || e instanceof natsErrors.DrainingConnectionError) return 'closed';
  if (e instanceof natsErrors.TimeoutError || e instanceof natsErrors.ConnectionError) return 'retry';
  if (e instanceof natsErrors.RequestError) return 'retry';
  // the client turns "no responders" into JetStreamNotEnabled (not exported from the package root):
  // no stream listening right now, e.g. the server is restarting
  if (e instanceof Error && e.name === 'JetStreamNotEnabled') return 'retry';
  if (e instanceof JetStreamApiError) {
    const text = e.message.toLowerCase();
    // 10077 "maximum messages/bytes exceeded", 10023 insufficient resources: the stream is full
    if (e.code === 10077 && (text.includes('maximum') || text.includes('exceed'))) return 'overloaded';
    if (e.code === 10023) return 'overloaded';
    // 503 family (10008 "JetStream system temporarily unavailable", leader elections)
    if (e.status === 503) return 'retry';
    return 'fatal';
  }
  return 'fatal';
}

/** Header values must be one line; reasons come from callers and errors. */
function headerValue(s: string): string {
  const one = s.replace(/[\r\n]+/g, ' ').trim();
  return one.length > 500 ? `${one.slice(0, 497)}...` : one;
}

/** Rounds of one fetch whose messages were all dead-lettered before it answers []. */
const MAX_DEAD_ROUNDS = 8;

/** Until `wakeAll(waiters)` or `ms` pass (at once when `ms` ≤ 0). */
function waitIn(waiters: Set<() => void>, ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      waiters.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    waiters.add(done);
  });
}

function wakeAll(waiters: Set<() => void>): void {
  for (const wake of [...waiters]) wake();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Counting semaphore over in-flight publishes. */
class PublishWindow {
  private used = 0;
  private readonly waiters: Array<() => void> = [];
  constructor(private readonly size: number) {}
  acquire(): Promise<void> {
    if (this.used < this.size) {
      this.used++;
      return Promise.resolve();
    }
    // waiters are bounded by the callers: each holds one publish() call's messages
    return new Promise((r) => this.waiters.push(r));
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.used--;
  }
}

interface DeadSource {
  readonly subject: string;
  readonly tier: string;
  readonly msgId: string;
  readonly seq: number;
  readonly data: Uint8Array;
  readonly deliveryCount: number;
}

interface MaxDeliveriesAdvisory {
  readonly stream?: string;
  readonly consumer?: string;
  readonly stream_seq?: number;
  readonly deliveries?: number;
}

export class NatsQueue implements WorkQueue, DeliveryHost {
  readonly kind = 'nats' as const;
  /** Small jobs linger this long to share one publish (config queue.nats.flushMs). */
  readonly lingerMs: number;

  /** Rows durable before any job can refer to them; `after` records once the jobs are durable. */
  async persistTogether(write: DurableWrite): Promise<void> {
    await write.rowsDurable();
    await write.publish();
    write.after();
  }

  /** Shared by every process and host on this stream (key-claims.ts). */
  claimKey(claim: KeyClaim): Promise<KeyClaimAnswer> {
    if (this.closing) return Promise.reject(new GatewayError('QUEUE_CLOSED'));
    return claimKey(this.js, this.jsm, { stream: this.stream, prefix: this.options.prefix, timeoutMs: this.tuning.publishAttemptTimeoutMs }, claim);
  }

  private readonly handlers: Array<(dl: DeadLetter) => void | Promise<void>> = [];
  private readonly pulls = new Set<PullRequest>();
  /** Deliveries handed out and not settled; bounded by maxAckPending per tier on the server. */
  private readonly outstanding = new Set<NatsDelivery>();
  /** Dead-letterings started in the background, awaited by close(). Bounded like `outstanding`. */
  private readonly deadLettering = new Set<Promise<void>>();
  /** In progress, by work sequence: a second path waits for the first instead of reporting again. */
  private readonly deadBySeq = new Map<number, Promise<void>>();
  /** Recently dead-lettered work sequences, oldest first (Set keeps insertion order). */
  private readonly recentDead = new Set<number>();
  /**
   * Per work sequence: its msgId and how often this process handed it out; dropped once acked or
   * dead-lettered, oldest first past tuning.handedOutMemory (Map keeps insertion order).
   */
  private readonly handedOut = new Map<number, { readonly msgId: string; readonly count: number }>();
  /** Deadlines of last allowed deliveries (deliveryCount = maxDeliver). */
  private readonly lastDeadlines = new Map<NatsDelivery, NodeJS.Timeout>();
  private readonly window: PublishWindow;
  /** Every pull of this connection answers to one inbox subscription. */
  private readonly pullChannel: PullChannel;
  private readonly emptyTiers: EmptyTiers;
  /** Follows `<prefix>.ready.*` once this instance fetches (ingest-only processes never do). */
  private readySub: Subscription | undefined;
  private readonly deadStream: string;
  private readonly consumers: ReadonlyMap<string, string>;
  private readonly tierByConsumer: ReadonlyMap<string, string>;
  private closing = false;
  private drained: Promise<void> | undefined;
  private advisorySub: Subscription | undefined;
  private advisoryBacklog = 0;
  private advisoryChain: Promise<void> = Promise.resolve();
  private lastPrune = 0;
  private layoutCheck: Promise<void> | undefined;
  /** False between a disconnect and the reconnect: pulls are not sent (the client would buffer them). */
  private connected = true;
  /** Fetches waiting out a disconnect; woken by reconnect or close. Bounded by the callers' fetches. */
  private readonly reconnectWaiters = new Set<() => void>();
  /** Fetches waiting for work, by tier (configured tiers only); bounded by the callers' fetches. */
  private readonly tierWaiters = new Map<string, Set<() => void>>();
  /**
   * Deliveries that came for no open pull, by tier, oldest first, held for the next fetch (see
   * late()). Each is an unacked delivery, so at most maxAckPending per tier.
   */
  private readonly held = new Map<string, Array<{ readonly m: Msg; readonly at: number }>>();
  private heldTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    private readonly stream: string,
    private readonly replicas: number,
    private readonly options: QueueOptions,
    private readonly limits: NatsStreamLimits,
    private readonly tuning: NatsQueueTuning,
    private readonly log: Logger,
    private readonly metrics: Metrics | undefined,
    lingerMs: number,
    private readonly keyTtlMs: number,
  ) {
    this.lingerMs = lingerMs;
    this.window = new PublishWindow(tuning.maxPublishInflight);
    this.pullChannel = new PullChannel(nc, (m) => this.late(m));
    this.emptyTiers = new EmptyTiers(new Set(options.tiers), tuning.emptyTierRecheckMs);
    this.deadStream = deadStreamName(stream);
    this.consumers = new Map(options.tiers.map((t) => [t, consumerName(t)]));
    this.tierByConsumer = new Map(options.tiers.map((t) => [consumerName(t), t]));
  }

  /**
   * Connect, create or update the streams and the tier consumers, and start
   * listening for MAX_DELIVERIES advisories. Rejects with QUEUE_UNAVAILABLE
   * when no server answers in time, CONFIG_INVALID when the existing stream
   * or consumers cannot take this configuration.
   */
  static async connect(config: NatsQueueConfig): Promise<NatsQueue> {
    validateLayoutNames(config.stream, config.options);
    if (config.servers.length === 0) throw new GatewayError('CONFIG_INVALID', 'NATS queue: no servers configured');
    const tuning = { ...DEFAULT_TUNING, ...config.tuning };
    const limits = { ...DEFAULT_STREAM_LIMITS, ...config.limits };
    const log = (config.logger ?? createLogger({ level: 'silent' })).child({ part: 'queue-nats' });
    const nc = await connectGateway('NATS queue', config.servers, {
      name: config.name ?? 'smsgw-queue',
      timeoutMs: tuning.connectTimeoutMs,
      reconnectTimeWaitMs: tuning.reconnectTimeWaitMs,
      reconnectJitterMs: 100,
    });
    try {
      const jsm = await jetstreamManager(nc, { timeout: tuning.apiTimeoutMs });
      const js = jetstream(nc, { timeout: tuning.publishAttemptTimeoutMs });
      const q = new NatsQueue(nc, jsm, js, config.stream, config.replicas, config.options, limits, tuning, log, config.metrics, config.lingerMs ?? 0, config.keyTtlMs ?? 86_400_000);
      await q.ensureLayout();
      q.listenForAdvisories();
      q.watchConnection();
      const version = nc.info?.version ?? '';
      if (deliveryCountMayReset(version)) {
        log.warn(
          { version },
          'nats-server before 2.10.14 can deliver a message again with its delivery count reset to 1 (nats-io/nats-server#5305): maxDeliver then holds only for deliveries this process handed out; upgrade the server',
        );
      }
      log.info({ stream: config.stream, tiers: config.options.tiers, replicas: config.replicas }, 'NATS queue ready');
      return q;
    } catch (e) {
      await nc.close().catch(() => undefined);
      if (e instanceof GatewayError) throw e;
      throw new GatewayError('QUEUE_UNAVAILABLE', `NATS queue: JetStream not available: ${String(e)}`, { cause: e });
    }
  }

  /** Resolves when the connection is closed (after close() and the drain). */
  closed(): Promise<void> {
    return this.nc.closed().then(() => undefined);
  }

  private async ensureLayout(): Promise<void> {
    await ensureStream(this.jsm, workStreamConfig(this.stream, this.replicas, this.options, this.limits));
    await ensureStream(this.jsm, deadStreamConfig(this.stream, this.replicas, this.options, this.limits));
    await ensureStream(this.jsm, keysStreamConfig(this.stream, this.options.prefix, this.replicas, this.keyTtlMs, this.limits.maxMsgSize));
    for (const tier of this.options.tiers) {
      await ensureConsumer(this.jsm, this.stream, tierConsumerConfig(tier, this.options));
    }
  }

  /** After a reconnect the server may be a fresh one (or lost its store): check the layout again. */
  private recheckLayout(why: string): void {
    if (this.layoutCheck || this.closing) return;
    this.layoutCheck = this.ensureLayout()
      .catch((e: unknown) => this.log.error({ err: e, why }, 'NATS queue layout check failed; will retry on next reconnect or fetch error'))
      .finally(() => {
        this.layoutCheck = undefined;
      });
  }

  private watchConnection(): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect') {
          this.connected = false;
          this.forgetTiers();
          this.log.warn({ server: s.server }, 'NATS disconnected');
        } else if (s.type === 'reconnect') {
          this.connected = true;
          // announcements made while we were away were not seen
          this.forgetTiers();
          this.wakeReconnectWaiters();
          this.log.info({ server: s.server }, 'NATS reconnected');
          this.recheckLayout('reconnect');
        } else if (s.type === 'error') this.log.error({ err: s.error }, 'NATS connection error');
        else if (s.type === 'slowConsumer') this.log.warn({ pending: s.pending }, 'NATS slow consumer');
      }
    })().catch((e: unknown) => this.log.error({ err: e }, 'NATS status watch ended'));
  }

  // ---------------------------------------------------------------- publish

  async publish(messages: readonly QueueMessage[]): Promise<PublishResult[]> {
    if (this.closing) throw new GatewayError('QUEUE_CLOSED');
    for (const m of messages) this.checkMessage(m);
    // All at once: the window, not this loop, bounds what is in flight.
    const results = await Promise.all(
      messages.map(async (m): Promise<PublishResult> => {
        const ack = await this.publishOne(m.subject, m.data, m.msgId, this.stream);
        return { msgId: m.msgId, seq: ack.seq, duplicate: ack.duplicate };
      }),
    );
    // Stored: tell the fetching queues of every process (this one included) that these tiers have work.
    for (const tier of new Set(messages.map((m) => m.tier))) this.announce(tier);
    return results;
  }

  private readySubject(tier: string): string {
    return `${this.options.prefix}.ready.${tier}`;
  }

  private announce(tier: string): void {
    this.workMayBeThere(tier);
    try {
      this.nc.publish(this.readySubject(tier));
    } catch {
      // closed or draining: other processes find the work within emptyTierRecheckMs anyway
    }
  }

  private followAnnouncements(): void {
    if (this.readySub) return;
    const head = `${this.options.prefix}.ready.`;
    this.readySub = this.nc.subscribe(`${head}*`, {
      callback: (err, m) => {
        if (!err) this.workMayBeThere(m.subject.slice(head.length));
      },
    });
  }

  private checkMessage(m: QueueMessage): void {
    const prefix = `${this.options.prefix}.work.${m.tier}.`;
    if (!this.consumers.has(m.tier) || !m.subject.startsWith(prefix) || m.subject.length === prefix.length) {
      // a subject outside every tier consumer would sit in the workqueue stream for ever
      throw new GatewayError('INTERNAL', `queue message for unknown tier or subject outside it: tier ${m.tier}, subject ${m.subject}`);
    }
    if (m.msgId.length === 0) throw new GatewayError('INTERNAL', 'queue message without msgId');
  }

  /**
   * One message, retried on transient failures until `publishBudgetMs`.
   * A retry after a timeout may find the first attempt stored: the server
   * then answers `duplicate: true` with the original sequence.
   */
  private async publishOne(subject: string, data: Uint8Array, msgId: string, stream: string, hdrs?: MsgHdrs): Promise<PubAck> {
    await this.window.acquire();
    try {
      const deadline = Date.now() + this.tuning.publishBudgetMs;
      for (let attempt = 1; ; attempt++) {
        const left = deadline - Date.now();
        try {
          return await this.js.publish(subject, data, {
            msgID: msgId,
            expect: { streamName: stream },
            timeout: Math.max(100, Math.min(this.tuning.publishAttemptTimeoutMs, left)),
            ...(hdrs ? { headers: hdrs } : {}),
          });
        } catch (e) {
          const kind = classifyPublishError(e);
          if (kind === 'overloaded') throw new GatewayError('OVERLOADED', `queue stream ${stream} is full: ${(e as Error).message}`, { cause: e });
          if (kind === 'closed') throw new GatewayError('QUEUE_CLOSED', undefined, { cause: e });
          if (kind === 'fatal') throw new GatewayError('QUEUE_UNAVAILABLE', `publish to ${stream} refused: ${String(e)}`, { cause: e });
          const pause = Math.min(1_000, 50 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2);
          if (Date.now() + pause >= deadline) {
            throw new GatewayError('QUEUE_UNAVAILABLE', `publish to ${stream} not acknowledged after ${attempt} attempts: ${String(e)}`, { cause: e });
          }
          await sleep(pause);
        }
      }
    } finally {
      this.window.release();
    }
  }

  // ---------------------------------------------------------------- fetch

  async fetch(tier: string, max: number, waitMs: number): Promise<Delivery[]> {
    const durable = this.consumers.get(tier);
    if (durable === undefined) throw new GatewayError('INTERNAL', `fetch from unknown tier ${tier}`);
    if (this.closing || max < 1) return [];
    const batch = Math.floor(max);
    const wait = Math.max(0, Math.floor(waitMs));
    this.followAnnouncements();
    if (wait === 0 && this.emptyTiers.knownEmpty(tier) && !this.held.get(tier)?.length) return [];
    const deadline = Date.now() + wait;
    this.pruneAbandoned();
    // Every pull is a no-wait pull; the wait is spent here, never on the server (pull-request.ts).
    let deadRounds = 0;
    for (let round = 0; ; round++) {
      if (!this.connected) {
        // A pull sent now would be buffered and reach the server after the reconnect, when
        // nobody listens for its answer any more: the messages would wait out ackWait.
        await this.untilReconnected(deadline - Date.now());
        if (this.closing || !this.connected) return [];
      }
      const held = this.takeHeld(tier, batch);
      if (held.length > 0) {
        const deliveries = this.handOut(tier, held);
        if (deliveries.length > 0) return deliveries;
        if (++deadRounds >= MAX_DEAD_ROUNDS) return [];
        continue;
      }
      // A fetch asks the server at least once; after that, only when work may be there.
      if (round > 0 && this.emptyTiers.knownEmpty(tier)) {
        const left = deadline - Date.now();
        if (left <= 0) return [];
        await this.untilWorkMayBeThere(tier, Math.min(left, this.tuning.emptyTierRecheckMs));
        if (this.closing) return [];
        continue;
      }
      const mark = this.emptyTiers.mark(tier);
      const pull = this.pullChannel.start(this.stream, durable, batch);
      this.pulls.add(pull);
      const out = await pull.done;
      this.pulls.delete(pull);
      // 404: nothing to deliver; 408: fewer than asked: either way drained just now
      const drained = out.status === 404 || out.status === 408;
      if (drained) this.emptyTiers.drained(tier, mark);
      if (this.closing) {
        for (const m of out.messages) this.giveBack(m);
        return [];
      }
      if (out.status === 503 || (out.status === 409 && (out.description ?? '').toLowerCase().includes('deleted'))) {
        // no responders / consumer deleted: JetStream restarting, or the consumer is gone
        this.recheckLayout(`pull status ${out.status} ${out.description ?? ''}`);
      }
      const deliveries = this.handOut(tier, out.messages);
      if (deliveries.length > 0 || Date.now() >= deadline) return deliveries;
      if (out.messages.length > 0) {
        // everything received was dead-lettered instead of handed out: look again at once, a few times
        if (++deadRounds >= MAX_DEAD_ROUNDS) return [];
        continue;
      }
      // no answer, or an error status: not known drained, but not worth a pull at once either
      if (!drained) await this.untilWorkMayBeThere(tier, Math.min(deadline - Date.now(), this.tuning.emptyTierRecheckMs));
    }
  }

  /** Deliveries for the caller; those past maxDeliver are dead-lettered instead. */
  private handOut(tier: string, messages: readonly Msg[]): NatsDelivery[] {
    const deliveries: NatsDelivery[] = [];
    const now = Date.now();
    for (const m of messages) {
      const info = parseAckSubject(m.reply ?? '');
      if (!info) {
        this.log.error({ subject: m.subject }, 'pull returned a message without a JetStream ack subject; ignored');
        continue;
      }
      const d = new NatsDelivery(this, tier, m, this.countedOn(info, m), now);
      if (d.deliveryCount > this.options.maxDeliver) {
        // the caller had maxDeliver deliveries; this extra one only came to the adapter
        this.inBackground(this.deadLetter(d, this.maxDeliverReason(), this.options.maxDeliver), d);
        continue;
      }
      this.outstanding.add(d);
      this.rememberHandout(d);
      if (d.deliveryCount === this.options.maxDeliver) this.armLastDeadline(d);
      deliveries.push(d);
    }
    return deliveries;
  }

  /**
   * The delivery count to go by: the server's, or one more than this process has handed the
   * message out if that is higher — the server's count went back (file comment, maxDeliver).
   */
  private countedOn(info: AckInfo, m: Msg): AckInfo {
    const seen = this.handedOut.get(info.streamSeq);
    if (!seen || seen.msgId !== (m.headers?.get('Nats-Msg-Id') ?? '') || seen.count < info.deliveryCount) return info;
    const deliveryCount = seen.count + 1;
    this.log.warn(
      { seq: info.streamSeq, job: seen.msgId, serverCount: info.deliveryCount, deliveryCount },
      'the server delivered a message again with a lower delivery count (nats-server before 2.10.14, or its consumer re-created); counting on from the deliveries this process handed out',
    );
    return { ...info, deliveryCount };
  }

  private rememberHandout(d: NatsDelivery): void {
    setNewest(this.handedOut, d.seq, { msgId: d.msgId, count: d.deliveryCount }, this.tuning.handedOutMemory);
  }

  /** Work may be on `tier` now: a pull is worth it, and fetches waiting for it look. */
  private workMayBeThere(tier: string): void {
    this.emptyTiers.maybeWork(tier);
    const waiting = this.tierWaiters.get(tier);
    if (waiting) wakeAll(waiting);
  }

  /** Nothing is known about any tier any more (disconnect, reconnect). */
  private forgetTiers(): void {
    this.emptyTiers.forget();
    this.wakeTierWaiters();
  }

  private wakeTierWaiters(): void {
    for (const waiting of this.tierWaiters.values()) wakeAll(waiting);
  }

  /** Until workMayBeThere(tier), forgetTiers(), close(), or `ms` pass. */
  private untilWorkMayBeThere(tier: string, ms: number): Promise<void> {
    let waiting = this.tierWaiters.get(tier);
    if (!waiting) {
      waiting = new Set();
      this.tierWaiters.set(tier, waiting);
    }
    return waitIn(waiting, ms);
  }

  private untilReconnected(ms: number): Promise<void> {
    return waitIn(this.reconnectWaiters, ms);
  }

  private wakeReconnectWaiters(): void {
    wakeAll(this.reconnectWaiters);
  }

  /**
   * A message that arrived for no open pull. Usually a delivery to a request the server parked
   * (no-wait, nothing deliverable while max_ack_pending was reached) and served when a slot
   * freed, after the fetch that sent it had given up: held for the next fetch of its tier for
   * up to lateHoldMs. Giving it back at once would count a delivery nobody saw, and the server
   * would send it straight to the next parked request, as often as there are.
   */
  private late(m: Msg): void {
    const consumer = parseAckSubject(m.reply ?? '')?.consumer;
    const tier = consumer === undefined ? undefined : this.tierByConsumer.get(consumer);
    const held = tier === undefined || this.closing ? undefined : this.held.get(tier) ?? [];
    if (tier === undefined || held === undefined || held.length >= this.options.maxAckPending) {
      this.giveBack(m);
      return;
    }
    held.push({ m, at: Date.now() });
    this.held.set(tier, held);
    this.expireHeldLater();
    this.workMayBeThere(tier);
  }

  private takeHeld(tier: string, max: number): Msg[] {
    const held = this.held.get(tier);
    return held && held.length > 0 ? held.splice(0, max).map((h) => h.m) : [];
  }

  private heldMs(): number {
    return Math.max(1, Math.min(this.tuning.lateHoldMs, Math.floor(this.options.ackWaitMs / 4)));
  }

  /** Gives back what was held longer than heldMs(); one timer while anything is held. */
  private expireHeldLater(): void {
    if (this.heldTimer) return;
    this.heldTimer = setTimeout(() => {
      this.heldTimer = undefined;
      const horizon = Date.now() - this.heldMs();
      let left = 0;
      for (const held of this.held.values()) {
        const fresh = held.findIndex((h) => h.at > horizon);
        for (const h of held.splice(0, fresh < 0 ? held.length : fresh)) this.giveBack(h.m);
        left += held.length;
      }
      if (left > 0) this.expireHeldLater();
    }, this.heldMs());
    this.heldTimer.unref();
  }

  private giveBackHeld(): void {
    for (const held of this.held.values()) for (const h of held.splice(0)) this.giveBack(h.m);
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
  }

  /** A message that arrived for a pull nobody waits for any more: back to the stream now. */
  private giveBack(m: Msg): void {
    if (!m.reply) return;
    this.send(m.reply, nakPayload(0));
    const consumer = parseAckSubject(m.reply)?.consumer;
    const tier = consumer === undefined ? undefined : this.tierByConsumer.get(consumer);
    if (tier !== undefined) this.workMayBeThere(tier);
  }

  /**
   * Forget deliveries nobody settled within ackWait: the server has taken
   * them back already. Keeps `outstanding` bounded when a caller drops one.
   */
  private pruneAbandoned(): void {
    const now = Date.now();
    if (now - this.lastPrune < 1_000) return;
    this.lastPrune = now;
    const horizon = now - this.options.ackWaitMs;
    for (const d of this.outstanding) if (d.lastTouch < horizon) this.outstanding.delete(d);
  }

  // ---------------------------------------------------------------- DeliveryHost

  async confirm(reply: string, payload: string): Promise<void> {
    let last: unknown;
    for (let attempt = 1; attempt <= this.tuning.confirmAttempts; attempt++) {
      try {
        await this.nc.request(reply, payload, { timeout: this.tuning.apiTimeoutMs });
        return;
      } catch (e) {
        if (e instanceof natsErrors.ClosedConnectionError || e instanceof natsErrors.DrainingConnectionError) {
          throw new GatewayError('QUEUE_CLOSED', `cannot send ${payload.split(' ')[0] ?? payload}: connection closed`, { cause: e });
        }
        last = e;
        if (attempt < this.tuning.confirmAttempts) await sleep(100 * attempt);
      }
    }
    throw new GatewayError('QUEUE_UNAVAILABLE', `${payload.split(' ')[0] ?? payload} not confirmed by the server after ${this.tuning.confirmAttempts} attempts: ${String(last)}`, { cause: last });
  }

  send(reply: string, payload: string): void {
    try {
      this.nc.publish(reply, payload);
    } catch (e) {
      // closed connection: the server redelivers after ackWait, which is what a lost nak means anyway
      this.log.warn({ err: e }, 'ack-protocol message not sent; the server will redeliver after ackWait');
    }
  }

  nak(d: NatsDelivery, delayMs: number | undefined): void {
    if (d.deliveryCount >= this.options.maxDeliver) {
      // a redelivery would exceed maxDeliver: dead-letter now rather than after one more round trip
      this.inBackground(this.deadLetter(d, this.maxDeliverReason(), d.deliveryCount), d);
      return;
    }
    this.send(d.reply, nakPayload(delayMs));
  }

  settled(d: NatsDelivery): void {
    this.outstanding.delete(d);
    // acked: gone from the work stream, never delivered again
    if (d.isAcked) this.handedOut.delete(d.seq);
    // an ack frees a max_ack_pending slot, a nak puts work back: the tier may have work again
    this.workMayBeThere(d.tier);
    const t = this.lastDeadlines.get(d);
    if (t) {
      clearTimeout(t);
      this.lastDeadlines.delete(d);
    }
    if (this.closing && this.outstanding.size === 0) void this.drain();
  }

  touched(d: NatsDelivery): void {
    d.lastTouch = Date.now();
    if (this.lastDeadlines.has(d)) this.armLastDeadline(d);
  }

  terminate(d: NatsDelivery, reason: string): Promise<void> {
    return this.deadLetter(d, reason, d.deliveryCount);
  }

  /**
   * The last allowed delivery: when ackWait passes without an answer (the
   * server would redeliver it now), dead-letter it without waiting for a
   * fetch to see the redelivery.
   */
  private armLastDeadline(d: NatsDelivery): void {
    const old = this.lastDeadlines.get(d);
    if (old) clearTimeout(old);
    const t = setTimeout(() => {
      this.lastDeadlines.delete(d);
      if (this.nc.isClosed() || !d.expire()) return;
      this.inBackground(this.deadLetter(d, this.maxDeliverReason(), d.deliveryCount), d);
    }, this.options.ackWaitMs);
    this.lastDeadlines.set(d, t);
  }

  /** Track a background dead-lettering for close(); on failure the message stays and comes back. */
  private inBackground(p: Promise<void>, d: NatsDelivery): void {
    const tracked = p
      .catch((e: unknown) => {
        // left un-acked: the server delivers it again after ackWait and the next fetch retries
        this.log.error({ err: e, seq: d.seq, job: d.msgId, tier: d.tier }, 'dead-lettering failed; will retry on redelivery');
      })
      .finally(() => this.deadLettering.delete(tracked));
    this.deadLettering.add(tracked);
  }

  // ---------------------------------------------------------------- dead letters

  onDeadLetter(handler: (dl: DeadLetter) => void | Promise<void>): void {
    this.handlers.push(handler);
  }

  /** Publish to the dead stream (durable when this resolves). Deduplicated per work sequence. */
  private async moveToDead(src: DeadSource, reason: string, deliveryCount: number): Promise<DeadLetter> {
    const h = natsHeaders();
    h.set(DEAD_HEADERS.reason, headerValue(reason));
    h.set(DEAD_HEADERS.tier, src.tier);
    h.set(DEAD_HEADERS.subject, src.subject);
    if (src.msgId) h.set(DEAD_HEADERS.msgId, headerValue(src.msgId));
    h.set(DEAD_HEADERS.seq, String(src.seq));
    h.set(DEAD_HEADERS.deliveries, String(deliveryCount));
    await this.publishOne(deadSubject(this.options.prefix, src.subject), src.data, `${this.stream}:${src.seq}`, this.deadStream, h);
    return { subject: src.subject, tier: src.tier, msgId: src.msgId, data: src.data, deliveryCount, reason };
  }

  private maxDeliverReason(): string {
    return `maxDeliver ${this.options.maxDeliver} reached without an ack`;
  }

  /**
   * Dead-letter the message behind `d`: dead stream (durable), `+TERM` on
   * d's ack subject, count, handlers. Once per work sequence in this
   * process: a second path (the deadline and a fetch of the redelivery, say)
   * waits for the first and then only terminates its own delivery.
   */
  private deadLetter(d: NatsDelivery, reason: string, deliveryCount: number): Promise<void> {
    const seq = d.seq;
    const running = this.deadBySeq.get(seq);
    if (running) return running.then(() => this.confirm(d.reply, TERM));
    if (this.recentDead.has(seq)) return this.confirm(d.reply, TERM);
    const p = (async () => {
      const dl = await this.moveToDead(d, reason, deliveryCount);
      await this.confirm(d.reply, TERM);
      this.metrics?.queueDeadLetters.inc({ tier: d.tier });
      this.rememberDead(seq);
      await this.notifyDeadLetter(dl);
    })().finally(() => this.deadBySeq.delete(seq));
    this.deadBySeq.set(seq, p);
    return p;
  }

  private rememberDead(seq: number): void {
    this.handedOut.delete(seq);
    this.recentDead.add(seq);
    if (this.recentDead.size > this.tuning.recentDeadMemory) {
      const oldest = this.recentDead.values().next();
      if (!oldest.done) this.recentDead.delete(oldest.value);
    }
  }

  /**
   * Handlers run after the dead letter is durable and gone from the work
   * stream. A handler's failure is logged, not retried: the dead stream
   * keeps the record for reconciliation.
   */
  private async notifyDeadLetter(dl: DeadLetter): Promise<void> {
    for (const h of this.handlers) {
      try {
        await h(dl);
      } catch (e) {
        this.log.error({ err: e, job: dl.msgId, tier: dl.tier, reason: dl.reason }, 'dead-letter handler failed; the record stays in the dead-letter stream');
      }
    }
  }

  /** Backup path for consumers with a finite server-side max_deliver (see file comment). */
  private listenForAdvisories(): void {
    this.advisorySub = this.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${this.stream}.*`, {
      // one gateway instance per advisory, not all of them
      queue: `${this.stream}-dead-letter`,
      callback: (err, m) => {
        if (err) {
          this.log.error({ err }, 'MAX_DELIVERIES advisory subscription failed');
          return;
        }
        if (this.advisoryBacklog >= this.tuning.maxAdvisoryBacklog) {
          this.log.error({ subject: m.subject }, 'MAX_DELIVERIES advisory backlog full; advisory dropped, its message stays in the work stream');
          return;
        }
        this.advisoryBacklog++;
        this.advisoryChain = this.advisoryChain
          .then(() => this.onMaxDeliveries(m))
          .catch((e: unknown) => this.log.error({ err: e }, 'MAX_DELIVERIES advisory not handled; its message stays in the work stream'))
          .finally(() => {
            this.advisoryBacklog--;
          });
      },
    });
  }

  private async onMaxDeliveries(m: Msg): Promise<void> {
    const adv = JSON.parse(new TextDecoder().decode(m.data)) as MaxDeliveriesAdvisory;
    const tier = adv.consumer === undefined ? undefined : this.tierByConsumer.get(adv.consumer);
    const seq = adv.stream_seq;
    if (adv.stream !== this.stream || tier === undefined || seq === undefined) return;
    if (this.recentDead.has(seq) || this.deadBySeq.has(seq)) return;
    let stored;
    try {
      stored = await this.jsm.streams.getMessage(this.stream, { seq });
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.NoMessageFound) return;
      throw e;
    }
    if (!stored) return; // acked or dead-lettered meanwhile
    const src: DeadSource = {
      subject: stored.subject,
      tier,
      msgId: stored.header?.get('Nats-Msg-Id') ?? '',
      seq,
      data: stored.data,
      deliveryCount: adv.deliveries ?? this.options.maxDeliver,
    };
    const dl = await this.moveToDead(src, this.maxDeliverReason(), src.deliveryCount);
    await this.jsm.streams.deleteMessage(this.stream, seq, false);
    this.metrics?.queueDeadLetters.inc({ tier });
    this.rememberDead(seq);
    await this.notifyDeadLetter(dl);
  }

  // ---------------------------------------------------------------- depth, close

  async depth(tier: string): Promise<number> {
    const durable = this.consumers.get(tier);
    if (durable === undefined) throw new GatewayError('INTERNAL', `depth of unknown tier ${tier}`);
    if (this.nc.isClosed()) throw new GatewayError('QUEUE_CLOSED');
    try {
      const ci = await this.jsm.consumers.info(this.stream, durable);
      const n = ci.num_pending + ci.num_ack_pending;
      this.metrics?.queueDepth.set({ tier }, n);
      return n;
    } catch (e) {
      throw new GatewayError('QUEUE_UNAVAILABLE', `depth of ${tier}: ${String(e)}`, { cause: e });
    }
  }

  /**
   * Stop handing out work; pending fetches resolve []. Deliveries in hand may
   * still ack: the connection is drained when the last is settled, or after
   * `graceMs` (default tuning.closeGraceMs; 0 = now, as a process exit would).
   * Resolves at once when deliveries are still out, else after the drain.
   */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    const grace = options.graceMs ?? this.tuning.closeGraceMs;
    if (!this.closing) {
      this.closing = true;
      for (const p of this.pulls) for (const m of p.cancel()) this.giveBack(m);
      this.pulls.clear();
      this.giveBackHeld();
      this.wakeReconnectWaiters();
      this.wakeTierWaiters();
      this.advisorySub?.unsubscribe();
      this.readySub?.unsubscribe();
      if (grace > 0) await Promise.allSettled([...this.deadLettering]);
    }
    if (this.outstanding.size === 0 || grace <= 0) {
      await this.drain();
      return;
    }
    const t = setTimeout(() => void this.drain(), grace);
    t.unref();
  }

  private drain(): Promise<void> {
    if (!this.drained) {
      this.drained = (async () => {
        // deliveries still out after this are redelivered by the server; a restart's fetch dead-letters the exhausted ones
        for (const t of this.lastDeadlines.values()) clearTimeout(t);
        this.lastDeadlines.clear();
        await this.advisoryChain.catch(() => undefined);
        if (this.nc.isClosed()) return;
        try {
          await this.nc.drain();
        } catch (e) {
          // drain on a connection that is down: close it instead
          this.log.warn({ err: e }, 'NATS drain failed; closing');
          await this.nc.close().catch(() => undefined);
        }
      })();
    }
    return this.drained;
  }
}
