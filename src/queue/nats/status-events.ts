/**
 * Status events: every recipient that reaches a final state is announced on
 * `<prefix>.status.<tenant>` in a JetStream stream with limits retention, so
 * other services (a department's OA system, a dashboard, a callback
 * dispatcher, a receipts replica on another host) can follow the outcomes of
 * one tenant's messages without polling the status API.
 *
 *   ReceiptStore.onFinal ──▶ ring (bounded) ──▶ per-tenant batches ──▶ js.publish (bounded in flight)
 *        (after commit)        O(1) push         ≤ maxEventsPerMessage     <prefix>.status.<tenant>
 *
 * Wire format (one NATS message = one batch of one tenant, JSON):
 *
 *   subject  smsgw.status.<tenant>
 *   header   Nats-Msg-Id: <publisher id>:<batch number>
 *   body     {"v":1,"tenant":"city-oa","events":[
 *              {"messageId":"06H…","index":0,"state":"delivered","at":1767225600123}, …]}
 *
 * `index` is the recipient's position in the message (as in the status
 * API), `state` one of delivered, undeliverable, expired, rejected, failed,
 * `at` the epoch ms at which this process committed the final state. No
 * phone numbers, no text (DESIGN invariant 5 holds for whoever reads the
 * stream too).
 *
 * Why batches: a 500k broadcast finalises 500k recipients within minutes;
 * one JetStream message per recipient would cost the dispatcher process
 * 500k publishes (and the stream 500k headers) for data a follower reads in
 * bulk anyway. Batches form per event-loop turn (the receipt store commits
 * in groups), so latency stays one turn plus a publish round trip.
 *
 * Delivery is best effort, at most once, and never holds up dispatch:
 * - the listener only pushes to a bounded ring; when the ring is full the
 *   event is dropped and counted (`smsgw_status_events_total{outcome="dropped-full"}`);
 * - a batch whose publish fails `publishAttempts` times (same Nats-Msg-Id,
 *   so a retry after a lost PubAck is not stored twice) is dropped and
 *   counted (`outcome="dropped-failed"`);
 * - a crash between the store's commit and the publish loses the events of
 *   that moment.
 * The receipt store (status API) stays the source of truth; a follower that
 * must not miss anything reconciles through `GET /v1/messages/{id}`. Making
 * the stream complete (an outbox written in the same LMDB transaction as the
 * final state) is what multi-host receipt replication needs; see
 * docs/DEPLOY.md.
 *
 * Retention: `limits`, discard old, bounded by `maxAgeMs` and `maxBytes`:
 * the stream is a window of recent history, not an archive.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectGateway } from './connection.js';
import { jetstream, jetstreamManager, type JetStreamClient, type StreamConfig } from '@nats-io/jetstream';
import type { Counter, Gauge, Registry } from 'prom-client';
import { randomBytes } from 'node:crypto';
import { GatewayError } from '../../core/errors.js';
import { subjectToken } from '../../core/job.js';
import type { FinalState } from '../../core/message.js';
import { RingBuffer } from '../../core/ring.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { createLogger, type Logger } from '../../telemetry/logger.js';
import { ensureStream, historyStreamConfig } from './stream-setup.js';
import { catalogued } from '../../telemetry/metrics.js';

/** One recipient's final state, as published. */
export interface StatusEvent {
  readonly messageId: string;
  readonly index: number;
  readonly state: FinalState;
  /** Epoch ms at which the final state was committed (observed by this process). */
  readonly at: number;
}

/** Body of one status message. */
export interface StatusBatch {
  readonly v: 1;
  readonly tenant: string;
  readonly events: readonly StatusEvent[];
}

/** Where final states come from: the receipt store. */
export interface FinalStateSource {
  /** `own` false: the message belongs to another host (replicated here), which publishes its events. */
  onFinal(listener: (messageId: string, index: number, state: FinalState, own: boolean) => void): void;
}

export interface StatusEventOptions {
  /** Subject prefix (the queue's `queue.prefix`): events go to `<prefix>.status.<tenant>`. */
  readonly prefix: string;
  /** Stream name; the gateway uses `<queue.nats.stream>_STATUS`. */
  readonly stream: string;
  /** Stream replicas (1 on one node, 3 in a cluster): as the work stream. */
  readonly replicas: number;
  /** Events older than this are removed by the server. Default 7 days. */
  readonly maxAgeMs: number;
  /** Bytes kept at most; the oldest events go first. Default 1 GiB. */
  readonly maxBytes: number;
  /** Events waiting to be published; past it new events are dropped and counted. Default 100,000. */
  readonly maxBuffered: number;
  /** Events per NATS message. Default 256 (~25 KB). */
  readonly maxEventsPerMessage: number;
  /** Publishes awaiting their PubAck at once. Default 32. */
  readonly maxInflight: number;
  /** Attempts per batch before it is dropped. Default 3. */
  readonly publishAttempts: number;
  /** One attempt waits this long for its PubAck. Default 5,000. */
  readonly publishTimeoutMs: number;
  /** stop(): how long buffered events may still be published. Default 5,000. */
  readonly closeGraceMs: number;
}

export const DEFAULT_STATUS_EVENT_OPTIONS: Omit<StatusEventOptions, 'prefix' | 'stream' | 'replicas'> = {
  maxAgeMs: 7 * 24 * 3_600_000,
  maxBytes: 1024 ** 3,
  maxBuffered: 100_000,
  maxEventsPerMessage: 256,
  maxInflight: 32,
  publishAttempts: 3,
  publishTimeoutMs: 5_000,
  closeGraceMs: 5_000,
};

export interface StatusEventPublisherConfig {
  /** An open connection to use (not closed by stop()), or… */
  readonly connection?: NatsConnection;
  /** …servers to connect to (the connection is owned and closed by stop()). */
  readonly servers?: readonly string[];
  readonly source: FinalStateSource;
  /** The tenant owning a message (the receipt store's message row); undefined when unknown. */
  readonly tenantOf: (messageId: string) => string | undefined;
  readonly options: Partial<StatusEventOptions> & Pick<StatusEventOptions, 'prefix' | 'stream' | 'replicas'>;
  readonly metrics?: Metrics;
  readonly logger?: Logger;
  /** Clock (epoch ms). */
  readonly now?: () => number;
}

export type StatusEventOutcome = 'published' | 'dropped-full' | 'dropped-failed' | 'dropped-closed' | 'no-tenant';

/** The stream that keeps status events: limits retention, oldest dropped first. */
export function statusStreamConfig(o: Pick<StatusEventOptions, 'prefix' | 'stream' | 'replicas' | 'maxAgeMs' | 'maxBytes'>): Partial<StreamConfig> & { name: string } {
  return historyStreamConfig({
    name: o.stream,
    description: 'smsgw status events: final recipient states by tenant, a bounded window for followers',
    subjects: [`${o.prefix}.status.>`],
    replicas: o.replicas,
    maxAgeMs: o.maxAgeMs,
    maxBytes: o.maxBytes,
    maxMsgBytes: 1024 * 1024,
  });
}

/** `<prefix>.status.<tenant>` */
export function statusSubject(prefix: string, tenant: string): string {
  return `${prefix}.status.${subjectToken(tenant)}`;
}

const encoder = new TextEncoder();

/** Metrics of this part, registered once per registry (several publishers in one process share them). */
interface StatusMetrics {
  readonly events: Counter<'outcome'>;
  readonly buffered: Gauge;
}

function statusMetrics(registry: Registry | undefined): StatusMetrics | undefined {
  if (!registry) return undefined;
  const name = 'smsgw_status_events_total';
  const gaugeName = 'smsgw_status_events_buffered';
  // Declared in the catalogue (src/telemetry/metrics.ts); looked up, never registered here.
  const events = catalogued<Counter<'outcome'>>(registry, name);
  const buffered = catalogued<Gauge>(registry, gaugeName);
  return { events, buffered };
}

interface Pending {
  readonly messageId: string;
  readonly index: number;
  readonly state: FinalState;
  readonly at: number;
}

interface ReadyBatch {
  readonly tenant: string;
  readonly events: Pending[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class StatusEventPublisher {
  private readonly opts: StatusEventOptions;
  private readonly log: Logger;
  private readonly metrics: StatusMetrics | undefined;
  private readonly now: () => number;
  /** Events as the store announced them; bounded by maxBuffered together with `ready`. */
  private readonly incoming: RingBuffer<Pending>;
  /** Batches formed and waiting for a publish slot. */
  private readonly ready: RingBuffer<ReadyBatch>;
  /** Events in `incoming`, in `ready` and in flight: what maxBuffered bounds. */
  private held = 0;
  private inflight = 0;
  private scheduled = false;
  private stopping = false;
  private batchSeq = 0;
  /** Distinguishes this process's Nats-Msg-Ids from every other publisher's. */
  private readonly publisherId = randomBytes(6).toString('hex');
  private readonly counts: Record<StatusEventOutcome, number> = { published: 0, 'dropped-full': 0, 'dropped-failed': 0, 'dropped-closed': 0, 'no-tenant': 0 };
  private lastWarn = 0;
  private suppressedWarnings = 0;
  private settledWaiters: Array<() => void> = [];
  /** Last lookup: a batch of finals is mostly one message's recipients. */
  private lastMessage = '';
  private lastTenant: string | undefined;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly ownsConnection: boolean,
    private readonly tenantOf: (messageId: string) => string | undefined,
    opts: StatusEventOptions,
    metrics: Metrics | undefined,
    logger: Logger | undefined,
    now: (() => number) | undefined,
  ) {
    this.opts = opts;
    this.log = (logger ?? createLogger({ level: 'silent' })).child({ part: 'status-events' });
    this.metrics = statusMetrics(metrics?.registry);
    this.now = now ?? Date.now;
    this.incoming = new RingBuffer<Pending>(opts.maxBuffered, 1024);
    this.ready = new RingBuffer<ReadyBatch>(opts.maxBuffered, 64);
  }

  /**
   * Connect (unless given a connection), create or update the status
   * stream, and start listening to `source`. Rejects with QUEUE_UNAVAILABLE
   * when NATS does not answer, CONFIG_INVALID for bad options.
   */
  static async start(config: StatusEventPublisherConfig): Promise<StatusEventPublisher> {
    const opts: StatusEventOptions = { ...DEFAULT_STATUS_EVENT_OPTIONS, ...config.options };
    validate(opts);
    let nc = config.connection;
    const owns = nc === undefined;
    if (!nc) {
      const servers = config.servers ?? [];
      if (servers.length === 0) throw new GatewayError('CONFIG_INVALID', 'status events: no NATS connection and no servers');
      nc = await connectGateway('status events', servers, { name: 'smsgw-status-events', timeoutMs: 10_000, reconnectTimeWaitMs: 250 });
    }
    try {
      const jsm = await jetstreamManager(nc, { timeout: 5_000 });
      await ensureStream(jsm, statusStreamConfig(opts));
      const js = jetstream(nc, { timeout: opts.publishTimeoutMs });
      const p = new StatusEventPublisher(nc, js, owns, config.tenantOf, opts, config.metrics, config.logger, config.now);
      config.source.onFinal((messageId, index, state, own) => {
        if (own) p.offer(messageId, index, state);
      });
      p.log.info({ stream: opts.stream, subjects: `${opts.prefix}.status.>`, replicas: opts.replicas }, 'status events ready');
      return p;
    } catch (e) {
      if (owns) await nc.close().catch(() => undefined);
      if (e instanceof GatewayError) throw e;
      throw new GatewayError('QUEUE_UNAVAILABLE', `status events: JetStream not available: ${String(e)}`, { cause: e });
    }
  }

  /** Counts by outcome since start (the metric, without a registry). */
  stats(): Readonly<Record<StatusEventOutcome, number> & { buffered: number; inflight: number }> {
    return { ...this.counts, buffered: this.held, inflight: this.inflight };
  }

  /**
   * The store's listener: O(1), never throws, never waits. Public so that
   * other sources of final states (a PDA outbox, say) can feed it too.
   */
  offer(messageId: string, index: number, state: FinalState): void {
    if (this.stopping) {
      this.count('dropped-closed', 1);
      return;
    }
    if (this.held >= this.opts.maxBuffered || !this.incoming.push({ messageId, index, state, at: this.now() })) {
      this.count('dropped-full', 1);
      this.warn('status event buffer full: events dropped (the status API still has them)');
      return;
    }
    this.held++;
    this.schedule();
  }

  /** Stop listening, publish what is buffered for at most `closeGraceMs`, close an owned connection. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.schedule();
    const deadline = this.now() + this.opts.closeGraceMs;
    while (this.held > 0 && this.now() < deadline) {
      await Promise.race([new Promise<void>((r) => this.settledWaiters.push(r)), sleep(Math.max(1, Math.min(100, deadline - this.now())))]);
    }
    if (this.held > 0) {
      // still waiting for a publish slot or a PubAck: counted as dropped; in-flight ones may still land
      const left = this.discardBuffered();
      if (left > 0) this.log.warn({ events: left }, 'status events not published before shutdown');
    }
    if (this.ownsConnection) await this.nc.drain().catch(() => this.nc.close().catch(() => undefined));
    this.setGauge();
  }

  // ---------------------------------------------------------------- internal

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // After the current turn: everything the store commits in one batch lands in the same NATS messages.
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    this.formBatches();
    while (this.inflight < this.opts.maxInflight) {
      const batch = this.ready.shift();
      if (batch === undefined) break;
      this.inflight++;
      void this.publish(batch).finally(() => {
        this.inflight--;
        this.held -= batch.events.length;
        this.setGauge();
        for (const w of this.settledWaiters.splice(0)) w();
        if (!this.ready.isEmpty || !this.incoming.isEmpty) this.schedule();
      });
    }
    this.setGauge();
  }

  /** incoming → one open batch per tenant, cut at maxEventsPerMessage, all closed at the end of the turn. */
  private formBatches(): void {
    if (this.incoming.isEmpty) return;
    const open = new Map<string, Pending[]>();
    for (let e = this.incoming.shift(); e !== undefined; e = this.incoming.shift()) {
      const tenant = this.tenant(e.messageId);
      if (tenant === undefined) {
        this.held--;
        this.count('no-tenant', 1);
        this.warn('final state for a message without a stored tenant: event not published');
        continue;
      }
      let b = open.get(tenant);
      if (!b) {
        b = [];
        open.set(tenant, b);
      }
      b.push(e);
      if (b.length >= this.opts.maxEventsPerMessage) {
        this.ready.push({ tenant, events: b }); // room: batches ≤ events ≤ maxBuffered
        open.delete(tenant);
      }
    }
    for (const [tenant, events] of open) this.ready.push({ tenant, events });
  }

  private tenant(messageId: string): string | undefined {
    if (messageId === this.lastMessage) return this.lastTenant;
    let t: string | undefined;
    try {
      t = this.tenantOf(messageId);
    } catch (e) {
      this.log.error({ err: e, messageId }, 'tenant lookup failed');
      t = undefined;
    }
    this.lastMessage = messageId;
    this.lastTenant = t;
    return t;
  }

  private async publish(batch: ReadyBatch): Promise<void> {
    const body: StatusBatch = { v: 1, tenant: batch.tenant, events: batch.events };
    const data = encoder.encode(JSON.stringify(body));
    const subject = statusSubject(this.opts.prefix, batch.tenant);
    const msgID = `${this.publisherId}:${++this.batchSeq}`;
    let last: unknown;
    for (let attempt = 1; attempt <= this.opts.publishAttempts; attempt++) {
      try {
        await this.js.publish(subject, data, { msgID, expect: { streamName: this.opts.stream }, timeout: this.opts.publishTimeoutMs });
        this.count('published', batch.events.length);
        return;
      } catch (e) {
        last = e;
        if (this.nc.isClosed()) break;
        if (attempt < this.opts.publishAttempts) await sleep(100 * 2 ** attempt);
      }
    }
    this.count('dropped-failed', batch.events.length);
    this.warn(`status events not published after ${this.opts.publishAttempts} attempts: ${String(last)}`);
  }

  private discardBuffered(): number {
    let n = 0;
    for (let e = this.incoming.shift(); e !== undefined; e = this.incoming.shift()) n++;
    for (let b = this.ready.shift(); b !== undefined; b = this.ready.shift()) n += b.events.length;
    this.held -= n;
    this.count('dropped-closed', n);
    return n;
  }

  private count(outcome: StatusEventOutcome, n: number): void {
    if (n <= 0) return;
    this.counts[outcome] += n;
    this.metrics?.events.inc({ outcome }, n);
  }

  private setGauge(): void {
    this.metrics?.buffered.set(this.held);
  }

  /** At most one warning per 10 s, with how many were folded into it: a broken NATS must not flood the log. */
  private warn(msg: string): void {
    const now = this.now();
    if (now - this.lastWarn < 10_000) {
      this.suppressedWarnings++;
      return;
    }
    this.log.warn({ suppressed: this.suppressedWarnings, counts: this.counts }, msg);
    this.lastWarn = now;
    this.suppressedWarnings = 0;
  }
}

function validate(o: StatusEventOptions): void {
  const bad: string[] = [];
  if (!/^[^.*>/\\\s]+$/.test(o.stream)) bad.push(`stream ${JSON.stringify(o.stream)}`);
  if (!/^[^.*>/\\\s]+$/.test(o.prefix)) bad.push(`prefix ${JSON.stringify(o.prefix)}`);
  if (!Number.isInteger(o.replicas) || o.replicas < 1 || o.replicas > 5) bad.push('replicas (1..5)');
  for (const k of ['maxAgeMs', 'maxBytes', 'maxBuffered', 'maxEventsPerMessage', 'maxInflight', 'publishAttempts', 'publishTimeoutMs'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) bad.push(`${k} (a positive integer)`);
  }
  if (!Number.isInteger(o.closeGraceMs) || o.closeGraceMs < 0) bad.push('closeGraceMs (≥ 0)');
  if (bad.length > 0) throw new GatewayError('CONFIG_INVALID', `status events: invalid ${bad.join(', ')}`);
}
