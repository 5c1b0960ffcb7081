/**
 * The PDA channel: police messages to officers' PDAs, store and forward.
 *
 *   deliver(batch) ──one LMDB txn──▶ per-device outboxes ──▶ live sessions pump
 *   device ACK/READ ──group commit (one txn per event turn)──▶ outbox shrinks,
 *                                                             status rows
 *   status rows ──StatusRelay──▶ PdaStatusSink (the receipt store)
 *   expiry sweep ──▶ expired copies out, recipients with no copy left: expired
 *   registry (lost / revoked / reassigned) ──▶ session closed, outbox withdrawn
 *
 * The channel owns the sessions (one ready session per device: a newer one
 * replaces the older, REPLACED), the acknowledgement queue and the timers.
 * The uWS route (ws-route.ts) only adapts sockets and forwards events.
 */
import type { RootDatabase } from 'lmdb';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { parseIsoDuration } from '../core/duration.js';
import type { PdaConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import {
  CLASSIFICATION_PATTERN,
  CLOSE_REASON,
  DEVICE_ID_PATTERN,
  LONE_SURROGATE,
  MAX_PRIORITY,
  MAX_SENDER_UNIT_BYTES,
  MESSAGE_ID_PATTERN,
  MessageTemplate,
  reasonName,
  type CloseReason,
} from './codec.js';
import { DeviceRegistry } from './device-registry.js';
import { KeyVault } from './keys.js';
import { PdaSession, type SessionLimits, type SessionSocket } from './session.js';
import { StatusRelay } from './status-relay.js';
import { PdaStore, type PdaTx, type StoredBody, type StoredCursor, type TxEffects, type UnsentEntry } from './store.js';
import type { PdaMessage, PdaStatusSink } from './types.js';

/** Recipients in one `deliver` call. */
export const MAX_DELIVER_BATCH = 20_000;
/**
 * Recipients per transaction within a `deliver` call. A 10,000-recipient
 * call in one transaction would hold the event loop (shared with the HTTP
 * front door) for a couple of hundred ms and send nothing until the end;
 * in chunks, the first devices receive while the rest is appended. Safe
 * because `deliver` is idempotent per recipient: after a crash between two
 * chunks the caller's retry appends only what is missing.
 */
export const DELIVER_TXN_RECIPIENTS = 1000;
/** Devices named in one recipient's `deviceIds`. */
export const MAX_DEVICES_PER_RECIPIENT = 64;
/** Acknowledgement work items waiting for the next commit, all sessions. */
export const MAX_QUEUED_WORK = 200_000;
/** Encoded MESSAGE frames kept per body (one per createdAt × priority seen; a broadcast needs one). */
const TEMPLATES_PER_BODY = 4;
/** Expiry rows handled per transaction, and transactions per sweep. */
const EXPIRY_ROWS_PER_TXN = 5_000;
const EXPIRY_TXNS_PER_SWEEP = 20;

export interface PdaChannelOptions {
  readonly env: RootDatabase;
  readonly config: PdaConfig;
  readonly sink: PdaStatusSink;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Session housekeeping period (handshake deadlines, stalled acks). Default 1000 ms. */
  readonly tickMs?: number;
}

export interface DeliverResult {
  /** Recipients in the call. */
  readonly recipients: number;
  /** Recipients appended before (a redelivered job): nothing written for them. */
  readonly duplicates: number;
  /** Device copies appended. */
  readonly copies: number;
  /** Recipients with no copy taken (no active device, outboxes full): reported undeliverable. */
  readonly undeliverable: number;
  /** Recipients already past their expiry: reported expired. */
  readonly expired: number;
}

type Work =
  | { readonly kind: 'ack'; readonly session: PdaSession; readonly deviceId: string; readonly cumulative: number; readonly selective: readonly number[]; readonly from: number }
  | { readonly kind: 'read'; readonly session: PdaSession; readonly deviceId: string; readonly seqs: readonly number[] }
  | { readonly kind: 'sent'; readonly deviceId: string; readonly high: number };

export class PdaChannel {
  readonly store: PdaStore;
  readonly registry: DeviceRegistry;
  readonly limits: SessionLimits;
  private readonly relay: StatusRelay;
  private readonly metrics: Metrics;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly all = new Set<PdaSession>();
  private readonly ready = new Map<string, PdaSession>();
  private work: Work[] = [];
  private flushing: Promise<void> | undefined;
  private flushScheduled = false;
  private inflightTotal = 0;
  private readonly tickTimer: NodeJS.Timeout;
  private readonly sweepTimer: NodeJS.Timeout;
  private sweeping: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** Counts not yet published to the metrics (see countsChanged). Keys: frame types, at most a dozen. */
  private readonly frameCounts = new Map<string, { readonly counter: { inc(n: number): void }; n: number }>();
  private readonly sentFirst: { inc(n: number): void };
  private readonly sentRedelivery: { inc(n: number): void };
  private sentFirstN = 0;
  private sentRedeliveryN = 0;
  private countsPending = false;
  /** Encoded MESSAGE frames by body object (WeakMap: they go when the store's body cache lets the body go). */
  private readonly templates = new WeakMap<StoredBody, Array<{ createdAt: number; lane: number; messageId: string; expiresAt: number; template: MessageTemplate }>>();
  /** Devices with appends committed and not yet flushed (at most one entry per device being appended to). */
  private readonly unflushed = new Map<string, { through: number; pending: number }>();

  private constructor(private readonly opts: PdaChannelOptions) {
    const c = opts.config;
    this.metrics = opts.metrics;
    this.sentFirst = opts.metrics.pdaMessagesSent.labels({ kind: 'first' });
    this.sentRedelivery = opts.metrics.pdaMessagesSent.labels({ kind: 'redelivery' });
    this.logger = opts.logger.child({ component: 'pda' });
    this.now = opts.now ?? Date.now;
    const keyTtlMs = parseIsoDuration(c.keyTtl);
    if (keyTtlMs === undefined) throw new GatewayError('CONFIG_INVALID', `pda.keyTtl ${c.keyTtl} is not an ISO-8601 duration`);
    this.store = new PdaStore(opts.env, opts.metrics);
    this.registry = new DeviceRegistry({
      store: this.store,
      vault: new KeyVault(c.keySecret),
      keyTtlMs,
      maxDevicesPerPerson: c.maxDevicesPerPerson,
      logger: this.logger,
      now: this.now,
    });
    this.registry.onChange((deviceId, reason) => this.disconnect(deviceId, reason, `device ${reasonName(reason)}`));
    this.limits = {
      maxInboundFrameBytes: c.maxInboundFrameBytes,
      helloTimeoutMs: c.helloTimeoutMs,
      window: c.window,
      highWaterBytes: Math.max(16 * 1024, Math.floor(c.maxBackpressureBytes / 4)),
      ackTimeoutMs: c.idleTimeoutSec * 1000,
      heartbeatSec: Math.max(1, Math.floor(c.idleTimeoutSec / 2)),
      maxQueuedAcks: c.window * 4 + 16,
    };
    this.relay = new StatusRelay(this.store, opts.sink, opts.metrics, this.logger);
    this.store.onCommitted((fx) => this.afterCommit(fx));
    this.tickTimer = setInterval(() => this.tick(), opts.tickMs ?? 1000);
    this.tickTimer.unref();
    this.sweepTimer = setInterval(() => void this.sweepExpired(), c.expirySweepMs);
    this.sweepTimer.unref();
    this.setSessionGauges();
    // Updates committed before a restart and not yet relayed.
    this.relay.kick();
  }

  /** Opens the channel's databases in `env` (PDA_DBS of them) and starts its timers. */
  static open(opts: PdaChannelOptions): PdaChannel {
    return new PdaChannel(opts);
  }

  get config(): PdaConfig {
    return this.opts.config;
  }

  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  /** Sessions open (any phase) / authenticated. */
  get sessionCount(): number {
    return this.all.size;
  }

  get readyCount(): number {
    return this.ready.size;
  }

  isConnected(deviceId: string): boolean {
    return this.ready.has(deviceId);
  }

  /** For the intake check "police messages only to people with a PDA". */
  hasActiveDevice(personId: string): boolean {
    return this.registry.hasActiveDevice(personId);
  }

  // ---------------------------------------------------------------- deliver

  /**
   * Append recipients to their devices' outboxes and push to connected
   * devices: one transaction per DELIVER_TXN_RECIPIENTS recipients (a call
   * of up to 1,000 is one transaction). Resolves once all of it is durable.
   * Idempotent per (messageId, index) until the message expires. Throws
   * VALIDATION (nothing written) if any item is malformed, OVERLOADED if the
   * status backlog is over `pda.maxStatusBacklog`, PDA_CLOSED when shutting
   * down.
   */
  async deliver(messages: readonly PdaMessage[]): Promise<DeliverResult> {
    if (this.closing) throw new GatewayError('PDA_CLOSED');
    if (messages.length > MAX_DELIVER_BATCH) {
      throw new GatewayError('VALIDATION', `at most ${MAX_DELIVER_BATCH} recipients per deliver call`, { details: [{ field: '/', message: `has ${messages.length}` }] });
    }
    const problems: FieldProblem[] = [];
    const checked: CheckedText = { messageId: undefined, classification: undefined, body: undefined, senderUnit: undefined };
    messages.forEach((m, i) => checkMessage(m, i, this.opts.config.maxBodyBytes, problems, checked));
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems.slice(0, 20) });
    if (this.store.statusBacklog > this.opts.config.maxStatusBacklog) {
      throw new GatewayError('OVERLOADED', `${this.store.statusBacklog} PDA status updates wait for the receipt store`);
    }
    if (messages.length === 0) return { recipients: 0, duplicates: 0, copies: 0, undeliverable: 0, expired: 0 };
    const cap = this.opts.config.outboxMaxPerDevice;
    const total = { duplicates: 0, expired: 0, undeliverable: 0, copies: 0 };
    const chunks: PdaMessage[][] = [];
    for (let from = 0; from < messages.length; from += DELIVER_TXN_RECIPIENTS) chunks.push(messages.slice(from, from + DELIVER_TXN_RECIPIENTS));
    const now = this.now();
    const append = (chunk: readonly PdaMessage[], tx: PdaTx): void => {
      // A chunk of one message (a broadcast): its idempotency check is one key range read.
      const first = chunk[0] as PdaMessage;
      let lo = first.index;
      let hi = first.index;
      let one = true;
      for (const m of chunk) {
        if (m.messageId !== first.messageId) {
          one = false;
          break;
        }
        if (m.index < lo) lo = m.index;
        if (m.index > hi) hi = m.index;
      }
      if (one) this.store.prefetchRecipients(tx, first.messageId, lo, hi, chunk.length);
      for (const m of chunk) {
        const devices = m.personId !== undefined
          ? this.store.activeDevicesIn(tx, m.personId)
          : this.registry.activeAmong([...new Set(m.deviceIds ?? [])]);
        // Only spelled out for a recipient nobody can take (not for each of 5,000 that are appended).
        const reason = devices.length > 0 ? '' : m.personId !== undefined ? `officer ${m.personId} has no active PDA device` : 'none of the named PDA devices is active';
        const before = tx.fx.outboxDelta;
        if (!this.store.append(tx, m, devices, cap, reason)) total.duplicates++;
        else if (m.expiresAt <= now) total.expired++;
        else if (tx.fx.outboxDelta === before) total.undeliverable++;
      }
    };
    // Pipelined: chunk k+1 is handed to LMDB once chunk k's writes are done, so it runs while chunk k
    // commits and flushes and its devices are being sent to (one commit per chunk, never two in one).
    await new Promise<void>((resolve, reject) => {
      let left = chunks.length;
      const start = (k: number): void => {
        let held: string[] = [];
        this.store.write('deliver', (tx) => {
          append(chunks[k] as PdaMessage[], tx);
          // Not to be sent before the flush (store.write explains why); released in afterCommit.
          held = [...tx.fx.appended.keys()];
          for (const [dev, fresh] of tx.fx.appended) this.hold(dev, (fresh[0] as UnsentEntry).seq - 1);
          if (k + 1 < chunks.length) setImmediate(() => start(k + 1));
        }, now, true).then(({ fx }) => {
          total.copies += fx.outboxDelta;
          if (--left === 0) resolve();
        }, (e: unknown) => {
          for (const dev of held) this.release(dev);
          reject(e);
        });
      };
      start(0);
    });
    return { recipients: messages.length, ...total };
  }

  // ---------------------------------------------------------------- sessions (called by the route and the sessions)

  /** A new WebSocket; undefined when over `pda.maxSessions` or shutting down (answer 503). */
  newSession(socket: SessionSocket): PdaSession | undefined {
    if (this.closing || this.all.size >= this.opts.config.maxSessions) return undefined;
    const s = new PdaSession(socket, this, this.limits, this.logger, this.now);
    this.all.add(s);
    this.setSessionGauges();
    return s;
  }

  /** Close the device's session at once (lost, revoked, reassigned, key changed). */
  disconnect(deviceId: string, reason: CloseReason, text: string): void {
    this.ready.get(deviceId)?.close(reason, text);
  }

  sessionReady(s: PdaSession): void {
    if (this.closing) {
      s.close(CLOSE_REASON.SERVER_SHUTDOWN, 'server shutting down');
      return;
    }
    const dev = s.deviceId as string;
    const old = this.ready.get(dev);
    if (old && old !== s) old.close(CLOSE_REASON.REPLACED, 'a newer session of this device authenticated');
    this.ready.set(dev, s);
    this.setSessionGauges();
  }

  sessionEnded(s: PdaSession, reason: string): void {
    this.all.delete(s);
    const dev = s.deviceId;
    if (dev !== undefined && this.ready.get(dev) === s) this.ready.delete(dev);
    this.inflightChanged(-s.inflight.size);
    s.inflight.clear();
    if (dev !== undefined && s.sentHigh > 0) this.enqueue({ kind: 'sent', deviceId: dev, high: s.sentHigh });
    this.metrics.pdaSessionsClosed.inc({ reason });
    this.setSessionGauges();
  }

  /** `from`: every sequence ≤ it is already gone (or removed by an ack queued before this one). */
  queueAck(s: PdaSession, cumulative: number, selective: readonly number[], from: number): boolean {
    if (s.queuedAcks >= this.limits.maxQueuedAcks || this.work.length >= MAX_QUEUED_WORK) return false;
    s.queuedAcks++;
    this.enqueue({ kind: 'ack', session: s, deviceId: s.deviceId as string, cumulative, selective, from });
    return true;
  }

  queueRead(s: PdaSession, seqs: readonly number[]): boolean {
    if (s.queuedAcks >= this.limits.maxQueuedAcks || this.work.length >= MAX_QUEUED_WORK) return false;
    s.queuedAcks++;
    this.enqueue({ kind: 'read', session: s, deviceId: s.deviceId as string, seqs });
    return true;
  }

  countFrame(type: string): void {
    let c = this.frameCounts.get(type);
    if (!c) {
      c = { counter: this.metrics.pdaFramesIn.labels({ type }), n: 0 };
      this.frameCounts.set(type, c);
    }
    c.n++;
    this.countsChanged();
  }

  countHandshake(outcome: string): void {
    this.metrics.pdaHandshakes.inc({ outcome });
  }

  countSent(redelivery: boolean): void {
    if (redelivery) this.sentRedeliveryN++;
    else this.sentFirstN++;
    this.countsChanged();
  }

  /**
   * The MESSAGE frame of an entry, encoded once per (body, createdAt, lane)
   * and re-stamped per device (codec.ts MessageTemplate). Kept with the body
   * object (the store caches those, bounded), at most TEMPLATES_PER_BODY.
   */
  messageTemplate(u: UnsentEntry, body: StoredBody): MessageTemplate {
    const e = u.entry;
    const list = this.templates.get(body);
    if (list !== undefined) for (const t of list) if (t.createdAt === e.t && t.lane === u.lane && t.messageId === e.m && t.expiresAt === e.x) return t.template;
    return this.newTemplate(u, body);
  }

  /** The cold half of `messageTemplate` (once per text): encodes the frame. */
  private newTemplate(u: UnsentEntry, body: StoredBody): MessageTemplate {
    const e = u.entry;
    let list = this.templates.get(body);
    if (!list) {
      list = [];
      this.templates.set(body, list);
    }
    const template = new MessageTemplate({
      type: 'message', priority: u.lane, createdAt: e.t, expiresAt: e.x, messageId: e.m, classification: body.c, senderUnit: body.u, body: body.b,
    });
    if (list.length >= TEMPLATES_PER_BODY) list.shift();
    list.push({ createdAt: e.t, lane: u.lane, messageId: e.m, expiresAt: e.x, template });
    return template;
  }

  inflightChanged(delta: number): void {
    if (delta === 0) return;
    this.inflightTotal += delta;
    this.countsChanged();
  }

  /**
   * Per-frame counts go to the metrics once per event-loop turn (setImmediate),
   * not once per frame: a prom-client inc hashes its labels every call
   * (~1 µs), and a broadcast counts 10,000 frames, each ACK arriving in its
   * own uWS callback. A scrape sees them at most one loop turn late.
   */
  private countsChanged(): void {
    if (this.countsPending) return;
    this.countsPending = true;
    setImmediate(this.publishCounts);
  }

  private readonly publishCounts = (): void => {
    this.countsPending = false;
    for (const c of this.frameCounts.values()) {
      if (c.n > 0) c.counter.inc(c.n);
      c.n = 0;
    }
    if (this.sentFirstN > 0) this.sentFirst.inc(this.sentFirstN);
    if (this.sentRedeliveryN > 0) this.sentRedelivery.inc(this.sentRedeliveryN);
    this.sentFirstN = 0;
    this.sentRedeliveryN = 0;
    this.metrics.pdaInflight.set(this.inflightTotal);
  };

  // ---------------------------------------------------------------- shutdown

  /**
   * Close every session (SERVER_SHUTDOWN), commit the acknowledgements
   * already received, relay the status updates committed so far, stop the
   * timers. The environment stays open (its owner closes it).
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.tickTimer);
      clearInterval(this.sweepTimer);
      for (const s of [...this.all]) s.close(CLOSE_REASON.SERVER_SHUTDOWN, 'server shutting down');
      await this.sweeping;
      for (let i = 0; i < 100 && (this.work.length > 0 || this.flushing); i++) {
        this.flush();
        await this.flushing;
      }
      await this.relay.close();
      this.store.close();
    })();
    return this.closing;
  }

  /** Test and benchmark aid: resolves when queued acknowledgements are committed and statuses relayed (or failed). */
  async settled(): Promise<void> {
    for (let i = 0; i < 100 && (this.work.length > 0 || this.flushing); i++) {
      this.flush();
      await this.flushing;
    }
    await this.relay.idle();
  }

  /** Run one expiry sweep now (the timer runs it every `pda.expirySweepMs`). */
  sweepExpired(): Promise<void> {
    if (this.sweeping || this.closing) return this.sweeping ?? Promise.resolve();
    this.sweeping = (async () => {
      try {
        for (let i = 0; i < EXPIRY_TXNS_PER_SWEEP; i++) {
          const { value } = await this.store.write('expire', (tx) => this.store.expireDue(tx, EXPIRY_ROWS_PER_TXN), this.now());
          if (value < EXPIRY_ROWS_PER_TXN) break;
        }
      } catch (e) {
        // Retried at the next sweep; nothing was half-applied (the transaction rolled back).
        if (!this.closing) this.logger.error({ err: e }, 'PDA expiry sweep failed');
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }

  // ---------------------------------------------------------------- internals

  private enqueue(w: Work): void {
    this.work.push(w);
    if (!this.flushScheduled && !this.flushing) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  /** One transaction for everything queued; the next batch gathers while it commits. */
  private flush(): void {
    if (this.flushing || this.work.length === 0) return;
    const items = this.work;
    this.work = [];
    this.flushing = this.store
      .write('ack', (tx) => {
        for (const w of items) {
          if (w.kind === 'ack') {
            const s = w.session;
            this.store.ack(tx, { deviceId: w.deviceId, cumulative: w.cumulative, selective: w.selective, settledThrough: w.from, sent: s });
          } else if (w.kind === 'read') this.store.read(tx, w.deviceId, w.seqs);
          else this.store.noteSent(tx, w.deviceId, w.high);
        }
      }, this.now())
      .then(
        () => applied(items),
        (e: unknown) => {
          // Not recorded: close those sessions so their devices resend the acks on reconnect (nothing is lost,
          // the entries are still in the outbox).
          if (!this.closing) this.logger.error({ err: e, items: items.length }, 'PDA acknowledgements could not be committed');
          for (const w of items) {
            if (w.kind === 'sent') continue;
            w.session.queuedAcks--;
            w.session.close(CLOSE_REASON.INTERNAL, 'acknowledgements could not be recorded');
          }
        },
      )
      .finally(() => {
        this.flushing = undefined;
        if (this.work.length > 0 && !this.flushScheduled) {
          this.flushScheduled = true;
          setImmediate(() => {
            this.flushScheduled = false;
            this.flush();
          });
        }
      });
  }

  /**
   * Sequences above `through` of this device were appended by a transaction
   * that is committed but maybe not flushed: sessions do not send them yet.
   */
  sendableThrough(deviceId: string): number {
    return this.unflushed.get(deviceId)?.through ?? Number.MAX_SAFE_INTEGER;
  }

  private hold(dev: string, through: number): void {
    const u = this.unflushed.get(dev);
    if (u) u.pending++;
    else this.unflushed.set(dev, { through, pending: 1 });
  }

  private release(dev: string): void {
    const u = this.unflushed.get(dev);
    if (u && --u.pending <= 0) this.unflushed.delete(dev);
  }

  private afterCommit(fx: TxEffects): void {
    // Small steps, each its own function: an append commit and an ack commit take different ones, and the
    // JIT compiles (and, when a new path shows up, recompiles) each step alone instead of one large body.
    if (fx.appended.size > 0) this.releaseAppended(fx.appended);
    this.countEffects(fx);
    if (fx.statuses > 0) this.relay.kick();
    if (fx.cursors.size > 0) this.cursorsChanged(fx.cursors);
    if (fx.expiredSeqs.size > 0) this.expiredCopies(fx.expiredSeqs);
    if (fx.appended.size > 0) this.pushAppended(fx.appended);
  }

  private releaseAppended(appended: ReadonlyMap<string, readonly UnsentEntry[]>): void {
    for (const dev of appended.keys()) this.release(dev);
  }

  private countEffects(fx: TxEffects): void {
    if (fx.acked > 0) this.metrics.pdaCopies.inc({ outcome: 'acked' }, fx.acked);
    if (fx.expired > 0) this.metrics.pdaCopies.inc({ outcome: 'expired' }, fx.expired);
    if (fx.withdrawn > 0) this.metrics.pdaCopies.inc({ outcome: 'withdrawn' }, fx.withdrawn);
    if (fx.refusedFull > 0) this.metrics.pdaOutboxRefused.inc({ reason: 'outbox-full' }, fx.refusedFull);
    if (fx.refusedNoDevice > 0) this.metrics.pdaOutboxRefused.inc({ reason: 'no-device' }, fx.refusedNoDevice);
    const h = this.metrics.pdaAppendToAckSeconds;
    for (const s of fx.latencies) h.observe(s);
  }

  private cursorsChanged(cursors: ReadonlyMap<string, StoredCursor>): void {
    for (const [dev, cur] of cursors) this.ready.get(dev)?.outboxChanged(cur.c);
  }

  private expiredCopies(expired: ReadonlyMap<string, number[]>): void {
    for (const [dev, seqs] of expired) this.ready.get(dev)?.expired(seqs);
  }

  private pushAppended(appended: ReadonlyMap<string, readonly UnsentEntry[]>): void {
    for (const [dev, fresh] of appended) this.ready.get(dev)?.appended(fresh);
  }

  private tick(): void {
    const now = this.now();
    for (const s of this.all) s.tick(now);
    // Another process of this data dir (the dispatch process appending police messages) wrote: its
    // commits wake no session here, so every ready session re-reads its outbox count (one get each).
    if (this.ready.size > 0 && this.store.takeForeignWrites()) for (const s of this.ready.values()) s.outboxFromStore();
  }

  private setSessionGauges(): void {
    this.metrics.pdaSessions.set({ state: 'ready' }, this.ready.size);
    this.metrics.pdaSessions.set({ state: 'handshake' }, this.all.size - this.ready.size);
  }
}

/** Acknowledgements committed: their sessions free window slots and send on. */
function applied(items: readonly Work[]): void {
  for (const w of items) {
    if (w.kind === 'sent') continue;
    w.session.queuedAcks--;
    if (w.kind === 'ack' && w.session.phase === 'ready') w.session.acknowledged(w.cumulative, w.selective);
  }
}

function problem(out: FieldProblem[], i: number, field: string, message: string): void {
  out.push({ field: `/${i}/${field}`, message });
}

/** The last texts found valid in a `deliver` call: the recipients of a message share them (not checked 5,000 times). */
interface CheckedText {
  messageId: string | undefined;
  classification: string | undefined;
  body: string | undefined;
  senderUnit: string | undefined;
}

function checkMessage(m: PdaMessage, i: number, maxBodyBytes: number, out: FieldProblem[], checked: CheckedText): void {
  if (m.messageId !== checked.messageId) {
    if (typeof m.messageId !== 'string' || !MESSAGE_ID_PATTERN.test(m.messageId)) problem(out, i, 'messageId', '1-64 printable ASCII characters');
    else checked.messageId = m.messageId;
  }
  if (!Number.isInteger(m.index) || m.index < 0 || m.index > 0x7fff_ffff) problem(out, i, 'index', 'a non-negative integer');
  if ((m.personId === undefined) === (m.deviceIds === undefined)) problem(out, i, 'personId', 'give exactly one of personId and deviceIds');
  if (m.personId !== undefined && (typeof m.personId !== 'string' || m.personId.length === 0 || m.personId.length > 128)) problem(out, i, 'personId', '1-128 characters');
  if (m.deviceIds !== undefined) {
    if (!Array.isArray(m.deviceIds) || m.deviceIds.length === 0 || m.deviceIds.length > MAX_DEVICES_PER_RECIPIENT) problem(out, i, 'deviceIds', `1-${MAX_DEVICES_PER_RECIPIENT} device ids`);
    else if (!m.deviceIds.every((d) => typeof d === 'string' && DEVICE_ID_PATTERN.test(d))) problem(out, i, 'deviceIds', 'device ids are 1-64 of A-Z a-z 0-9 . _ : -');
  }
  if (!Number.isInteger(m.priority) || m.priority < 0 || m.priority > MAX_PRIORITY) problem(out, i, 'priority', '0 (routine), 1 (urgent) or 2 (flash)');
  if (!Number.isSafeInteger(m.expiresAt) || m.expiresAt < 0) problem(out, i, 'expiresAt', 'epoch milliseconds');
  if (m.createdAt !== undefined && (!Number.isSafeInteger(m.createdAt) || m.createdAt < 0)) problem(out, i, 'createdAt', 'epoch milliseconds');
  if (m.classification !== checked.classification) {
    if (typeof m.classification !== 'string' || !CLASSIFICATION_PATTERN.test(m.classification)) problem(out, i, 'classification', '0-32 of a-z 0-9 -');
    else checked.classification = m.classification;
  }
  if (m.senderUnit !== checked.senderUnit) {
    if (typeof m.senderUnit !== 'string' || Buffer.byteLength(m.senderUnit, 'utf8') > MAX_SENDER_UNIT_BYTES || LONE_SURROGATE.test(m.senderUnit)) {
      problem(out, i, 'senderUnit', `well-formed text of at most ${MAX_SENDER_UNIT_BYTES} UTF-8 bytes`);
    } else checked.senderUnit = m.senderUnit;
  }
  if (m.body !== checked.body) {
    if (typeof m.body !== 'string' || Buffer.byteLength(m.body, 'utf8') > maxBodyBytes || LONE_SURROGATE.test(m.body)) {
      problem(out, i, 'body', `well-formed text of at most ${maxBodyBytes} UTF-8 bytes (pda.maxBodyBytes)`);
    } else checked.body = m.body;
  }
}
