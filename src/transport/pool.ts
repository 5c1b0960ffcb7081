/**
 * SubmitPool: one operator account's delivery path (SmsTransport), whatever
 * the protocol. SMPP (src/smpp/bind-pool.ts) and CMPP (src/cmpp/account.ts)
 * each give it their links (connections) and a PoolProtocol; the queueing,
 * pacing, retries and back-pressure below are the same for both.
 *
 *   submit() ──▶ pending lanes (by priority, FIFO within one; bounded)
 *                   │  account TPS token bucket, throttle back-off
 *                   ▼
 *               the link with the most free window ──▶ submit ──▶ carrier
 *                   ▲                                      │
 *   retry (front of its lane) ◀── throttled / timeout / lost ◀┘
 *
 * Outcomes (SubmitOutcome):
 *  - accepted: the carrier's resp with its OK status and a message id;
 *  - rejected: any other status except throttling (status name as reason);
 *    also a protocol-level nack in place of the resp, and a request refused
 *    locally because it cannot be encoded (status LOCAL_REJECT_STATUS);
 *  - expired: the deadline passed before the carrier accepted it (waiting for
 *    a link, throttled, or no response after `maxTimeouts` tries);
 *  - unavailable: the pool is closing, the pending queue is full, or the
 *    connection was lost with it outstanding more than `maxConnectionLosses`
 *    times — the caller gives the work back to its durable queue.
 *
 * Retries and duplicates. A throttling status (SMPP ESME_RTHROTTLED 0x58 and
 * ESME_RMSGQFUL 0x14, CMPP SUBMIT_RESP Result 8) pauses the whole account for
 * throttleBackoffMs, doubling while throttling continues (capped at
 * reconnectMaxMs) and resetting on the next OK; the request goes back to the
 * front of its lane. A timeout or a lost connection re-sends the request,
 * preferring another link. The carrier may have accepted the first copy (its
 * resp was lost with the connection, or came too late), so the phone can get
 * the SMS twice: neither submit_sm nor CMPP_SUBMIT has an idempotency key.
 * It is bounded: only requests outstanding at that moment are re-sent, so per
 * connection loss at most `window` duplicates, and per timeout one.
 *
 * Back-pressure. At most `maxPending` requests wait for a window slot
 * (default max(10,000, 8 × links × window)); `pending`, `capacity` and
 * `waitForCapacity()` let the caller (the dispatcher, which also bounds its
 * in-flight segments) stay below it. A submit beyond the bound is not queued:
 * it resolves `unavailable` (reason OVERLOADED) at once, so no hidden queue
 * grows and the work stays in the durable queue.
 *
 * Receipts and MO: the protocol turns each inbound message into a receipt,
 * an MO or "bad" (`deliverInbound`); the returned promise resolves true only
 * after the handler's promise resolves (the write is durable), and false
 * (the carrier is told to retry later) when it rejects or no handler is set
 * yet. Unparseable receipts are acknowledged (a re-send would not parse
 * either) and logged, sampled.
 */
import { isGatewayError, isStorageFailure } from '../core/errors.js';
import type { DeliveryReceipt, MobileOriginated, SegmentProfile, SmsTransport, SubmitOutcome, SubmitRequest } from '../core/ports.js';
import { RingBuffer } from '../core/ring.js';
import { TokenBucket } from '../core/token-bucket.js';
import type { Logger } from '../telemetry/logger.js';
import { boundHistogram, type Metrics } from '../telemetry/metrics.js';

/** A link's state; SMPP calls `binding`/`bound` what CMPP calls connect sent / connected. */
export type LinkState = 'idle' | 'connecting' | 'binding' | 'bound' | 'unbinding' | 'disconnected' | 'closed';

/**
 * How an outstanding submit ended, from the link's point of view:
 *  - `resp`: the submit's response (status may be an error);
 *  - `nack`: a protocol-level negative answer with its sequence number (SMPP generic_nack);
 *  - `timeout`: no answer within the response timeout (the carrier may still have accepted it);
 *  - `lost`: the connection went with it outstanding (likewise).
 */
export type SubmitResultKind = 'resp' | 'nack' | 'timeout' | 'lost';

/** One connection to the carrier with a bounded window (an SMPP Bind, a CMPP link). */
export interface PoolLink<T> {
  readonly index: number;
  readonly state: LinkState;
  /** Outstanding submits (window occupancy). */
  readonly inFlight: number;
  /** Window slots a submit can use now: 0 unless bound. */
  readonly freeWindow: number;
  readonly lastError: string | undefined;
  start(): void;
  /** Send one encoded submit (the link writes its sequence number); false, taking nothing, when it cannot. */
  submit(token: T, pdu: Buffer): boolean;
  close(): Promise<void>;
}

/** What a link tells its pool. */
export interface LinkEvents<T> {
  /** Exactly once per accepted `submit()` token; `status` and `messageId` are meaningful for `resp` and `nack`. */
  submitDone(token: T, kind: SubmitResultKind, status: number, messageId: string, sentAt: number): void;
  /** The link can take more: it just connected, or window slots were freed. */
  ready(link: PoolLink<T>): void;
  stateChanged?(link: PoolLink<T>, state: LinkState): void;
}

/** What differs between protocols, seen from the pool. */
export interface PoolProtocol {
  /** `SMPP` or `CMPP`, for reasons and log lines. */
  readonly name: string;
  /** How the dispatcher must encode and segment text for this account. */
  readonly segmentProfile: SegmentProfile;
  /** Which metrics of the catalogue the pool updates: smsgw_smpp_* or smsgw_cmpp_*. */
  readonly metricFamily: 'smpp' | 'cmpp';
  /** The submit PDU for a request (sequence number patched per send by the link); throws when it cannot be built. */
  encode(req: SubmitRequest, now: number): Buffer;
  isOk(status: number): boolean;
  isThrottle(status: number): boolean;
  statusName(status: number): string;
}

/** An inbound message, once the protocol has parsed it. */
export type Inbound =
  | { readonly kind: 'receipt'; readonly receipt: DeliveryReceipt }
  | { readonly kind: 'mo'; readonly mo: MobileOriginated }
  /** A receipt that cannot be parsed: acknowledged and counted. */
  | { readonly kind: 'bad'; readonly detail: string };

/** The account settings the pool itself uses. */
export interface PoolAccount {
  readonly name: string;
  /** Number of links (SMPP binds, CMPP connections). */
  readonly links: number;
  readonly window: number;
  readonly tps: number;
  readonly throttleBackoffMs: number;
  readonly reconnectMaxMs: number;
}

/** `status` of a `rejected` outcome for a request refused before sending (it could not be encoded). */
export const LOCAL_REJECT_STATUS = -1;

export interface SubmitPoolOptions {
  readonly metrics: Metrics;
  readonly logger: Logger;
  /**
   * Requests waiting for a window slot; default max(10,000, 8 × binds × window). Keep it at or
   * above the caller's own in-flight bound (dispatch.maxInflightSegments) so OVERLOADED never fires.
   */
  readonly maxPending?: number;
  /** Submits of one request that may time out before it ends `expired`; default 3. */
  readonly maxTimeouts?: number;
  /** Connection losses one request may suffer before it ends `unavailable`; default 8. */
  readonly maxConnectionLosses?: number;
  /** Clock in epoch ms; default Date.now. */
  readonly now?: () => number;
  /** [0, 1) for reconnect jitter; default Math.random. */
  readonly random?: () => number;
  /** Pool housekeeping period (deadline sweep, gauges); default 250. */
  readonly sweepMs?: number;
}

interface Lane {
  readonly priority: number;
  readonly ring: RingBuffer<PoolItem>;
}

interface PoolItem {
  readonly req: SubmitRequest;
  readonly resolve: (outcome: SubmitOutcome) => void;
  readonly lane: Lane;
  /** Encoded submit_sm (sequence number patched per send). */
  pdu: Buffer;
  encodedAt: number;
  /** The buffer was handed to a socket; a re-send encodes a fresh one. */
  written: boolean;
  timeouts: number;
  losses: number;
  throttles: number;
  /** Index of the bind of the last attempt (-1: none), to retry elsewhere. */
  lastBind: number;
}

export interface SubmitPoolStats {
  readonly queued: number;
  readonly inWindow: number;
  readonly bound: number;
  readonly throttled: number;
  readonly timeouts: number;
  readonly retries: number;
  readonly receipts: number;
  readonly mobileOriginated: number;
  readonly badReceipts: number;
}

/**
 * How an inbound message was handled, for the protocol's answer:
 *  - `ok`: durable (or acknowledged and dropped as unparseable);
 *  - `storage-full`: refused because storage cannot take writes (src/storage/health.ts), temporary;
 *  - `retry`: the handler failed otherwise, or none is set yet.
 */
export type InboundAnswer = 'ok' | 'storage-full' | 'retry';

/** The pool's metrics, in the protocol's family of the catalogue. */
interface PoolMeters {
  pending(n: number): void;
  latency(seconds: number): void;
  /** `n` responses with this status name (OK ones counted locally, added once a sweep). */
  response(status: string, n?: number): void;
  throttled(status: string): void;
  /** A throttle pause begun or doubled. */
  backoff(): void;
}

function poolMeters(metrics: Metrics, family: 'smpp' | 'cmpp', account: string): PoolMeters {
  const label = { account };
  if (family === 'cmpp') {
    // Bound once: an observe with labels hashes them on every call (one per accepted submit).
    const cmppLatency = boundHistogram(metrics.cmppSubmitLatencySeconds, label);
    const flow = metrics.cmppFlowControl.labels(account);
    const backoffs = metrics.cmppFlowControlBackoffs.labels(account);
    return {
      pending: (n) => metrics.cmppPendingQueue.set(label, n),
      latency: (s) => cmppLatency.observe(s),
      // A 3.0 Result is 4 octets: unnamed ones above a byte share one series (bounded label values).
      response: (result, n = 1) => metrics.cmppSubmitResponses.inc({ account, result: /^CMPP_RESULT_\d{4,}$/.test(result) ? 'CMPP_RESULT_OTHER' : result }, n),
      throttled: () => flow.inc(),
      backoff: () => backoffs.inc(),
    };
  }
  const latency = boundHistogram(metrics.submitLatencySeconds, label);
  return {
    pending: (n) => metrics.bindPendingQueue.set(label, n),
    latency: (s) => latency.observe(s),
    response: (status, n = 1) => metrics.submitResponses.inc({ account, status }, n),
    throttled: (status) => metrics.throttled.inc({ account, status }),
    backoff: () => undefined,
  };
}

const OK: Promise<InboundAnswer> = Promise.resolve('ok');
const RETRY: Promise<InboundAnswer> = Promise.resolve('retry');
const isOk = (a: InboundAnswer): boolean => a === 'ok';
const answerOk = (): InboundAnswer => 'ok';

export class SubmitPool implements SmsTransport {
  readonly account: string;
  readonly segmentProfile: SegmentProfile;
  private readonly cfg: PoolAccount;
  private readonly protocol: PoolProtocol;
  protected readonly log: Logger;
  protected readonly now: () => number;
  private readonly binds: PoolLink<PoolItem>[] = [];
  private readonly lanes: Lane[] = [];
  private readonly laneByPriority = new Map<number, Lane>();
  private readonly bucket: TokenBucket;
  private readonly maxPending: number;
  private readonly laneCapacity: number;
  private readonly maxTimeouts: number;
  private readonly maxLosses: number;
  private readonly sweepMs: number;
  private readonly meters: PoolMeters;
  /** Status name of an OK response, for the counter flushed once a sweep. */
  private readonly okName: string;

  private queued = 0;
  private inWindow = 0;
  private minDeadline = Infinity;
  private pumping = false;
  private pumpAgain = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private sweepTimer: NodeJS.Timeout | undefined;
  private throttleUntil = 0;
  private throttleSetAt = 0;
  private throttleBackoff: number;
  private throttleStreak = false;
  private okResponses = 0;
  private started = false;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private receiptHandler: ((r: DeliveryReceipt) => Promise<unknown>) | undefined;
  private moHandler: ((mo: MobileOriginated) => Promise<void>) | undefined;
  private capacityWaiters: (() => void)[] = [];
  private boundWaiters: { count: number; wake: () => void }[] = [];
  private readonly counters = { throttled: 0, timeouts: 0, retries: 0, receipts: 0, mobileOriginated: 0, badReceipts: 0, handlerErrors: 0 };

  constructor(
    account: PoolAccount,
    protocol: PoolProtocol,
    createLink: (index: number, events: LinkEvents<PoolItem>) => PoolLink<PoolItem>,
    options: SubmitPoolOptions,
  ) {
    this.cfg = account;
    this.protocol = protocol;
    this.segmentProfile = protocol.segmentProfile;
    this.account = account.name;
    this.log = options.logger.child({ account: account.name });
    this.now = options.now ?? Date.now;
    this.maxPending = options.maxPending ?? Math.max(10_000, 8 * account.links * account.window);
    // Retries go back to the front even when new submits are refused, so lanes hold the window too.
    this.laneCapacity = this.maxPending + account.links * account.window;
    this.maxTimeouts = options.maxTimeouts ?? 3;
    this.maxLosses = options.maxConnectionLosses ?? 8;
    this.sweepMs = options.sweepMs ?? 250;
    this.meters = poolMeters(options.metrics, protocol.metricFamily, account.name);
    this.okName = protocol.metricFamily === 'cmpp' ? protocol.statusName(0) : 'ESME_ROK';
    this.throttleBackoff = account.throttleBackoffMs;
    // A burst of 1/20 s of the rate: enough that coarse timers (a few ms late) do not cap the rate below tps.
    this.bucket = new TokenBucket(account.tps, Math.max(1, Math.ceil(account.tps / 20)), this.now);
    const events: LinkEvents<PoolItem> = {
      submitDone: (item, kind, status, messageId, sentAt) => this.onSubmitDone(item, kind, status, messageId, sentAt),
      ready: () => this.pump(),
      stateChanged: (link, state) => this.onBindState(link, state),
    };
    for (let i = 0; i < account.links; i++) this.binds.push(createLink(i, events));
  }

  /** Connect every bind (they reconnect on their own until close()). Idempotent. */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.sweepTimer = setInterval(this.sweep, this.sweepMs);
    this.sweepTimer.unref();
    for (const b of this.binds) b.start();
  }

  /** Requests waiting for or holding a window slot. */
  get pending(): number {
    return this.queued + this.inWindow;
  }

  /** Bound binds right now. */
  get boundCount(): number {
    let n = 0;
    for (const b of this.binds) if (b.state === 'bound') n++;
    return n;
  }

  /** Room left in the pending queue before submit() answers `unavailable`. */
  get capacity(): number {
    return Math.max(0, this.maxPending - this.queued);
  }

  stats(): SubmitPoolStats {
    const c = this.counters;
    return {
      queued: this.queued,
      inWindow: this.inWindow,
      bound: this.boundCount,
      throttled: c.throttled,
      timeouts: c.timeouts,
      retries: c.retries,
      receipts: c.receipts,
      mobileOriginated: c.mobileOriginated,
      badReceipts: c.badReceipts,
    };
  }

  /** Per-bind view (state, window use, last error) for readiness and tests. */
  bindStates(): { index: number; state: LinkState; inFlight: number; lastError: string | undefined }[] {
    return this.binds.map((b) => ({ index: b.index, state: b.state, inFlight: b.inFlight, lastError: b.lastError }));
  }

  /** Resolves once the pending queue has room (immediately when it has). */
  waitForCapacity(): Promise<void> {
    if (this.queued < this.maxPending || this.closing) return Promise.resolve();
    return new Promise<void>((resolve) => this.capacityWaiters.push(resolve));
  }

  /** Resolves true once `count` binds are bound, false after `timeoutMs`. */
  waitBound(count = 1, timeoutMs = 10_000): Promise<boolean> {
    if (this.boundCount >= count) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const waiter = {
        count,
        wake: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        this.boundWaiters = this.boundWaiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      this.boundWaiters.push(waiter);
    });
  }

  onReceipt(handler: (receipt: DeliveryReceipt) => Promise<unknown>): void {
    this.receiptHandler = handler;
  }

  onMobileOriginated(handler: (mo: MobileOriginated) => Promise<void>): void {
    this.moHandler = handler;
  }

  submit(req: SubmitRequest): Promise<SubmitOutcome> {
    if (this.closing) return Promise.resolve({ kind: 'unavailable', reason: `${this.protocol.name}_POOL_CLOSED: the account's pool is closing` });
    const now = this.now();
    if (req.deadline <= now) return Promise.resolve({ kind: 'expired', reason: 'deadline passed before submit' });
    if (this.queued >= this.maxPending) {
      return Promise.resolve({ kind: 'unavailable', reason: `OVERLOADED: ${this.queued} requests already wait for account ${this.account}` });
    }
    let pdu: Buffer;
    try {
      pdu = this.protocol.encode(req, now);
    } catch (err) {
      const reason = isGatewayError(err) ? `${err.code}: ${err.message}` : `${this.protocol.name}_PDU_INVALID: ${String(err)}`;
      return Promise.resolve({ kind: 'rejected', account: this.account, status: LOCAL_REJECT_STATUS, reason });
    }
    const lane = this.laneFor(req.priority);
    return new Promise<SubmitOutcome>((resolve) => {
      const item: PoolItem = { req, resolve, lane, pdu, encodedAt: now, written: false, timeouts: 0, losses: 0, throttles: 0, lastBind: -1 };
      lane.ring.push(item); // cannot fail: queued < maxPending ≤ lane capacity
      this.queued++;
      if (req.deadline < this.minDeadline) this.minDeadline = req.deadline;
      this.pump();
    });
  }

  /**
   * Give back every queued request (waiting for a window slot, not on the
   * wire) as `unavailable` with `reason`: the router calls it when the
   * account goes down, so the work returns to the durable queue and is
   * routed to another account instead of waiting here for a link that is
   * gone. Requests in a window keep their own timeout and loss handling.
   */
  shed(reason: string): number {
    let n = 0;
    for (const lane of this.lanes) {
      for (let item = lane.ring.shift(); item !== undefined; item = lane.ring.shift()) {
        item.resolve({ kind: 'unavailable', reason });
        n++;
      }
    }
    this.queued -= n;
    this.minDeadline = Infinity;
    for (const w of this.capacityWaiters) w();
    this.capacityWaiters = [];
    this.meters.pending(this.queued);
    return n;
  }

  /**
   * Stop: queued requests resolve `unavailable` at once; requests in a
   * window get their responses (each bind waits up to responseTimeoutMs,
   * then unbinds); any still outstanding then resolve `unavailable`.
   */
  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  // ---------------------------------------------------------------- sending

  private laneFor(priority: number): Lane {
    let lane = this.laneByPriority.get(priority);
    if (lane === undefined) {
      lane = { priority, ring: new RingBuffer<PoolItem>(this.laneCapacity, 64) };
      this.laneByPriority.set(priority, lane);
      this.lanes.push(lane);
      this.lanes.sort((a, b) => b.priority - a.priority);
    }
    return lane;
  }

  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.drain();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
    if (this.capacityWaiters.length > 0 && this.queued < this.maxPending) {
      const waiters = this.capacityWaiters;
      this.capacityWaiters = [];
      for (const w of waiters) w();
    }
  }

  private drain(): void {
    while (this.queued > 0) {
      const now = this.now();
      if (now < this.throttleUntil) {
        this.armWake(this.throttleUntil - now);
        return;
      }
      let lane: Lane | undefined;
      for (const l of this.lanes) {
        if (l.ring.length > 0) {
          lane = l;
          break;
        }
      }
      if (lane === undefined) return; // unreachable while queued > 0
      const item = lane.ring.peek() as PoolItem;
      if (item.req.deadline <= now) {
        lane.ring.shift();
        this.queued--;
        item.resolve({ kind: 'expired', reason: this.expiryReason(item) });
        continue;
      }
      const bind = this.pickBind(item.lastBind);
      if (bind === undefined) return; // a bind's `ready` pumps again
      const wait = this.bucket.tryTake();
      if (wait > 0) {
        this.armWake(wait);
        return;
      }
      lane.ring.shift();
      this.queued--;
      let pdu = item.pdu;
      if (item.written || now - item.encodedAt >= 1000) {
        // A fresh buffer: the old one may still sit in a dead socket's queue, and validity is relative to now.
        pdu = this.protocol.encode(item.req, now);
        item.pdu = pdu;
        item.encodedAt = now;
      }
      item.written = true;
      item.lastBind = bind.index;
      if (!bind.submit(item, pdu)) {
        // The socket went away under a bound bind; its close event follows and pumps again.
        lane.ring.unshift(item);
        this.queued++;
        this.armWake(10);
        return;
      }
      this.inWindow++;
    }
  }

  private pickBind(avoid: number): PoolLink<PoolItem> | undefined {
    let best: PoolLink<PoolItem> | undefined;
    let bestFree = 0;
    let fallback: PoolLink<PoolItem> | undefined;
    for (const b of this.binds) {
      const free = b.freeWindow;
      if (free <= 0) continue;
      if (b.index === avoid) {
        fallback = b;
        continue;
      }
      if (free > bestFree) {
        best = b;
        bestFree = free;
      }
    }
    return best ?? fallback;
  }

  private armWake(ms: number): void {
    const at = this.now() + ms;
    if (this.wakeTimer !== undefined && this.wakeAt <= at) return;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(this.onWake, Math.max(1, ms));
  }

  private readonly onWake = (): void => {
    this.wakeTimer = undefined;
    this.wakeAt = Infinity;
    this.pump();
  };

  // ---------------------------------------------------------------- results

  private onSubmitDone(item: PoolItem, kind: SubmitResultKind, status: number, messageId: string, sentAt: number): void {
    this.inWindow--;
    const now = this.now();
    if (kind === 'resp') {
      if (this.protocol.isOk(status)) {
        this.okResponses++;
        this.throttleStreak = false;
        this.meters.latency((now - sentAt) / 1000);
        this.accepted(messageId);
        item.resolve({ kind: 'accepted', account: this.account, messageId, sentAt });
        return;
      }
      this.meters.response(this.protocol.statusName(status));
      if (this.protocol.isThrottle(status)) {
        this.onThrottled(item, status, sentAt, now);
        return;
      }
      item.resolve({ kind: 'rejected', account: this.account, status, reason: this.protocol.statusName(status) });
      return;
    }
    if (kind === 'nack') {
      this.meters.response(`generic_nack:${this.protocol.statusName(status)}`);
      if (this.protocol.isThrottle(status)) {
        // Some SMSCs throttle with a generic_nack.
        this.onThrottled(item, status, sentAt, now);
        return;
      }
      item.resolve({ kind: 'rejected', account: this.account, status, reason: `generic_nack ${this.protocol.statusName(status)}` });
      return;
    }
    if (kind === 'timeout') {
      this.counters.timeouts++;
      item.timeouts++;
      if (item.timeouts >= this.maxTimeouts) {
        item.resolve({ kind: 'expired', reason: `${this.protocol.name}_TIMEOUT: no response to the submit after ${item.timeouts} attempts` });
        return;
      }
      this.retry(item, now);
      return;
    }
    // lost
    if (this.closing) {
      item.resolve({ kind: 'unavailable', reason: `${this.protocol.name}_CONNECTION_LOST: connection closed while the pool was closing` });
      return;
    }
    item.losses++;
    if (item.losses > this.maxLosses) {
      item.resolve({ kind: 'unavailable', reason: `${this.protocol.name}_CONNECTION_LOST: connection lost ${item.losses} times with this request outstanding` });
      return;
    }
    this.retry(item, now);
  }

  /** Every accepted submit's carrier id (a protocol adapter may learn from them); nothing by default. */
  protected accepted(messageId: string): void {
    void messageId;
  }

  private onThrottled(item: PoolItem, status: number, sentAt: number, now: number): void {
    this.counters.throttled++;
    item.throttles++;
    this.meters.throttled(this.protocol.statusName(status));
    // Answers to requests sent before the current pause began are echoes of the same congestion: they do not double it.
    if (sentAt >= this.throttleSetAt) {
      this.throttleBackoff = this.throttleStreak ? Math.min(this.throttleBackoff * 2, this.cfg.reconnectMaxMs) : this.cfg.throttleBackoffMs;
      this.throttleStreak = true;
      this.throttleSetAt = now;
      this.throttleUntil = now + this.throttleBackoff;
      this.meters.backoff();
      this.log.debug({ backoffMs: this.throttleBackoff, status: this.protocol.statusName(status) }, 'carrier throttling: pausing submits');
    }
    this.retry(item, now);
  }

  private retry(item: PoolItem, now: number): void {
    if (this.closing) {
      item.resolve({ kind: 'unavailable', reason: `${this.protocol.name}_POOL_CLOSED: the account's pool is closing` });
      return;
    }
    if (item.req.deadline <= now) {
      item.resolve({ kind: 'expired', reason: this.expiryReason(item) });
      return;
    }
    if (!item.lane.ring.unshift(item)) {
      item.resolve({ kind: 'unavailable', reason: 'OVERLOADED: pending queue full on retry' });
      return;
    }
    this.counters.retries++;
    this.queued++;
    if (item.req.deadline < this.minDeadline) this.minDeadline = item.req.deadline;
    this.pump();
  }

  private expiryReason(item: PoolItem): string {
    if (item.timeouts > 0) return `deadline passed after ${item.timeouts} submit timeouts`;
    if (item.throttles > 0) return `deadline passed while throttled (${item.throttles} throttling answers)`;
    if (this.boundCount === 0) return `deadline passed with no bound ${this.protocol.name} session (${this.binds[0]?.lastError ?? 'connecting'})`;
    return 'deadline passed while waiting for a window slot';
  }

  // ---------------------------------------------------------------- inbound

  /**
   * An inbound message the protocol has parsed. Resolves true once the
   * handler's write is durable (answer OK), false when the carrier should
   * send it again later.
   */
  protected deliverInbound(inbound: Inbound): Promise<boolean> {
    return this.answerInbound(inbound).then(isOk);
  }

  /**
   * As deliverInbound, telling a refusal because storage is full (the
   * handler threw STORAGE_FULL or a storage failure) from other failures, for
   * a protocol that answers them differently (CMPP DELIVER_RESP).
   */
  protected answerInbound(inbound: Inbound): Promise<InboundAnswer> {
    if (inbound.kind === 'bad') {
      if (this.counters.badReceipts++ % 1000 === 0) {
        this.log.warn({ total: this.counters.badReceipts, detail: inbound.detail }, 'unparseable delivery receipt acknowledged and dropped (sampled)');
      }
      return OK;
    }
    if (inbound.kind === 'receipt') {
      this.counters.receipts++;
      const h = this.receiptHandler;
      if (h === undefined) return RETRY;
      return this.settle(h, inbound.receipt);
    }
    this.counters.mobileOriginated++;
    const h = this.moHandler;
    if (h === undefined) return RETRY;
    return this.settle(h, inbound.mo);
  }

  /** The handler's promise as an answer (the two answer functions are made once, not per message). */
  private settle<M>(handler: (message: M) => Promise<unknown>, message: M): Promise<InboundAnswer> {
    let p: Promise<unknown>;
    try {
      p = handler(message);
    } catch (err) {
      p = Promise.reject(err);
    }
    return p.then(answerOk, this.answerFailed);
  }

  private readonly answerFailed = (err: unknown): InboundAnswer => {
    // Storage full is a state, not a fault: the carrier keeps the message and offers it again.
    if (isStorageFailure(err)) return 'storage-full';
    if (this.counters.handlerErrors++ % 100 === 0) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err), total: this.counters.handlerErrors }, 'receipt/MO handler failed; carrier told to retry (sampled)');
    }
    return 'retry';
  };

  // ---------------------------------------------------------------- housekeeping

  private onBindState(bind: PoolLink<PoolItem>, state: LinkState): void {
    if (state === 'bound') {
      if (this.boundWaiters.length > 0) {
        const n = this.boundCount;
        const keep: { count: number; wake: () => void }[] = [];
        for (const w of this.boundWaiters) {
          if (n >= w.count) w.wake();
          else keep.push(w);
        }
        this.boundWaiters = keep;
      }
      this.pump();
    } else if (state === 'disconnected' && bind.lastError !== undefined) {
      this.log.debug({ bind: bind.index, error: bind.lastError }, 'bind down');
    }
  }

  private readonly sweep = (): void => {
    const now = this.now();
    this.flushCounters();
    this.meters.pending(this.queued);
    if (this.queued > 0 && now >= this.minDeadline) this.expireQueued(now);
    // Safety net: whatever wake-up was missed (work, or a waitForCapacity caller), nothing waits longer than one sweep.
    this.pump();
  };

  private expireQueued(now: number): void {
    let min = Infinity;
    for (const lane of this.lanes) {
      if (lane.ring.length === 0) continue;
      const expired = lane.ring.removeWhere((item) => {
        if (item.req.deadline <= now) return true;
        if (item.req.deadline < min) min = item.req.deadline;
        return false;
      });
      this.queued -= expired.length;
      for (const item of expired) item.resolve({ kind: 'expired', reason: this.expiryReason(item) });
    }
    this.minDeadline = min;
  }

  private flushCounters(): void {
    if (this.okResponses > 0) {
      // ESME_ROK is the hot path: counted locally, added to the metric once a sweep.
      this.meters.response(this.okName, this.okResponses);
      this.okResponses = 0;
    }
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    for (const lane of this.lanes) {
      for (let item = lane.ring.shift(); item !== undefined; item = lane.ring.shift()) {
        item.resolve({ kind: 'unavailable', reason: `${this.protocol.name}_POOL_CLOSED: the account's pool is closing` });
      }
    }
    this.queued = 0;
    for (const w of this.capacityWaiters) w();
    this.capacityWaiters = [];
    await Promise.all(this.binds.map((b) => b.close()));
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.flushCounters();
    this.meters.pending(0);
    this.log.info({ ...this.counters }, 'account pool closed');
  }
}
