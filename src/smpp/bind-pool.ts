/**
 * BindPool: one operator account's delivery path (SmsTransport).
 *
 *   submit() ──▶ pending lanes (by priority, FIFO within one; bounded)
 *                   │  account TPS token bucket, throttle back-off
 *                   ▼
 *               the bind with the most free window ──▶ submit_sm ──▶ SMSC
 *                   ▲                                      │
 *   retry (front of its lane) ◀── throttled / timeout / lost ◀┘
 *
 * Outcomes (SubmitOutcome):
 *  - accepted: submit_sm_resp ESME_ROK with the SMSC's message id;
 *  - rejected: any other status except throttling (status name as reason);
 *    also a generic_nack in place of the resp, and a request refused locally
 *    because it cannot be encoded (status LOCAL_REJECT_STATUS);
 *  - expired: the deadline passed before an SMSC accepted it (waiting for a
 *    bind, throttled, or no response after `maxTimeouts` tries);
 *  - unavailable: the pool is closing, the pending queue is full, or the
 *    connection was lost with it outstanding more than `maxConnectionLosses`
 *    times — the caller gives the work back to its durable queue.
 *
 * Retries and duplicates. ESME_RTHROTTLED (0x58) and ESME_RMSGQFUL (0x14)
 * pause the whole account for throttleBackoffMs, doubling while throttling
 * continues (capped at reconnectMaxMs) and resetting on the next ESME_ROK;
 * the request goes back to the front of its lane. A timeout or a lost
 * connection re-sends the request, preferring another bind. The SMSC may
 * have accepted the first copy (its resp was lost with the connection, or
 * came too late), so the phone can get the SMS twice: this is inherent to
 * SMPP (no idempotency key in submit_sm). It is bounded: only requests
 * outstanding at that moment are re-sent, so per connection loss at most
 * `window` duplicates, and per timeout one.
 *
 * Back-pressure. At most `maxPending` requests wait for a window slot
 * (default max(10,000, 8 × binds × window)); `pending`, `capacity` and
 * `waitForCapacity()` let the caller (the dispatcher, which also bounds its
 * in-flight segments) stay below it. A submit beyond the bound is not queued:
 * it resolves `unavailable` (reason OVERLOADED) at once, so no hidden queue
 * grows and the work stays in the durable queue.
 *
 * Receipts and MO: a deliver_sm/data_sm with esm_class 0x04 or a
 * receipted_message_id TLV is a receipt (TLVs preferred, Appendix B text as
 * fallback); anything else is an MO (text decoded by data_coding). The
 * SMSC gets ESME_ROK only after the handler's promise resolves, and
 * ESME_RX_T_APPN (retry later) when it rejects or no handler is set yet.
 * Unparseable receipts are acknowledged (a re-send would not parse either)
 * and logged, sampled.
 *
 * Addresses. The source is sent TON 0 / NPI 1 when all digits — Chinese
 * service codes (10690000…) are neither international nor national numbers,
 * and 0/1 is what the operators' SMSCs expect — and TON 5 / NPI 0
 * (alphanumeric) otherwise. Destinations carry the country code: TON 1 / NPI 1.
 */
import type { SmppAccountConfig } from '../config/schema.js';
import { messageStateToState, parseDlrText, receiptOperatorId, statToState, type IdBase, type ReceiptIdBase, type ReceiptState } from '../core/dlr.js';
import { isGatewayError } from '../core/errors.js';
import { maskNumber } from '../core/phone.js';
import { partFromUdh, type MoPart } from '../core/mo.js';
import type { DeliveryReceipt, MobileOriginated, SmsTransport, SubmitOutcome, SubmitRequest } from '../core/ports.js';
import { RingBuffer } from '../core/ring.js';
import { TokenBucket } from '../core/token-bucket.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { Bind, type BindEvents, type BindState, type InboundMessagePdu, type SubmitResultKind } from './bind.js';
import { ESM_DELIVERY_RECEIPT, ESM_UDHI, STATUS, encodeMessagePdu, isThrottleStatus, messageText, receiptText, statusName, userData } from './wire.js';

/** `status` of a `rejected` outcome for a request refused before sending (it could not be encoded). */
export const LOCAL_REJECT_STATUS = -1;

export interface BindPoolOptions {
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
  /** Receipt dates are SMSC local time; its offset from UTC in minutes (China +480). Default 0. */
  readonly dlrUtcOffsetMinutes?: number;
  /** Clock in epoch ms; default Date.now. */
  readonly now?: () => number;
  /** [0, 1) for reconnect jitter; default Math.random. */
  readonly random?: () => number;
  /** Pool housekeeping period (deadline sweep, gauges); default 250. */
  readonly sweepMs?: number;
  /** Passed to every Bind (tests shorten them). */
  readonly bind?: { readonly sweepMs?: number; readonly stableAfterMs?: number; readonly connectTimeoutMs?: number };
  /** Extra TLS trust anchors (private CA). */
  readonly ca?: string | Buffer | (string | Buffer)[];
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

export interface BindPoolStats {
  readonly queued: number;
  readonly inWindow: number;
  readonly bound: number;
  readonly throttled: number;
  readonly timeouts: number;
  readonly retries: number;
  readonly receipts: number;
  readonly mobileOriginated: number;
  readonly badReceipts: number;
  /**
   * The base this account's submit_sm_resp ids have shown: `hex` once one had
   * a letter a–f, `digits` while all were digits (decimal, or hex that has not
   * shown a letter yet), undefined before the first.
   */
  readonly idFormatSeen: 'digits' | 'hex' | undefined;
}

const RE_DIGITS = /^[0-9]+$/;
const HEX_LETTER = /[a-fA-F]/;
const OK: Promise<number> = Promise.resolve(STATUS.ESME_ROK);
const RETRY_LATER: Promise<number> = Promise.resolve(STATUS.ESME_RX_T_APPN);

/** SMPP relative time (`YYMMDDhhmmss000R`) for a duration; days cap at 99. */
export function relativeValidity(ms: number): string {
  let s = Math.max(60, Math.ceil(ms / 1000)); // a minute at least: some SMSCs refuse shorter
  const days = Math.min(99, Math.floor(s / 86_400));
  if (days === 99) s = 99 * 86_400 + 86_399;
  s -= days * 86_400;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number): string => (n < 10 ? `0${n}` : String(n));
  return `0000${two(days)}${two(h)}${two(m)}${two(sec)}000R`;
}

export class BindPool implements SmsTransport {
  readonly account: string;
  private readonly cfg: SmppAccountConfig;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly binds: Bind<PoolItem>[] = [];
  private readonly lanes: Lane[] = [];
  private readonly laneByPriority = new Map<number, Lane>();
  private readonly bucket: TokenBucket;
  private readonly maxPending: number;
  private readonly laneCapacity: number;
  private readonly maxTimeouts: number;
  private readonly maxLosses: number;
  private readonly dlrOffset: number;
  private readonly sweepMs: number;
  private readonly accountLabel: { account: string };
  /** Base of this account's submit_sm_resp ids; undefined for `auto`. */
  private readonly idBase: IdBase | undefined;
  private readonly textIdBase: ReceiptIdBase;
  private readonly tlvIdBase: ReceiptIdBase;
  /** What the resp ids have shown so far: 'hex' once one had a letter a–f (reported, see idFormatSeen). */
  private seenBase: 'digits' | 'hex' | undefined;

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
  private receiptHandler: ((r: DeliveryReceipt) => Promise<void>) | undefined;
  private moHandler: ((mo: MobileOriginated) => Promise<void>) | undefined;
  private capacityWaiters: (() => void)[] = [];
  private boundWaiters: { count: number; wake: () => void }[] = [];
  private readonly counters = { throttled: 0, timeouts: 0, retries: 0, receipts: 0, mobileOriginated: 0, badReceipts: 0, handlerErrors: 0 };

  constructor(account: SmppAccountConfig, options: BindPoolOptions) {
    this.cfg = account;
    this.account = account.name;
    this.metrics = options.metrics;
    this.log = options.logger.child({ account: account.name });
    this.now = options.now ?? Date.now;
    this.maxPending = options.maxPending ?? Math.max(10_000, 8 * account.binds * account.window);
    // Retries go back to the front even when new submits are refused, so lanes hold the window too.
    this.laneCapacity = this.maxPending + account.binds * account.window;
    this.maxTimeouts = options.maxTimeouts ?? 3;
    this.maxLosses = options.maxConnectionLosses ?? 8;
    this.dlrOffset = options.dlrUtcOffsetMinutes ?? 0;
    this.sweepMs = options.sweepMs ?? 250;
    this.accountLabel = { account: account.name };
    this.idBase = account.idFormat === 'decimal' || account.idFormat === 'hex' ? account.idFormat : undefined;
    this.textIdBase = account.receiptTextIdFormat ?? 'same';
    this.tlvIdBase = account.receiptTlvIdFormat ?? 'same';
    this.throttleBackoff = account.throttleBackoffMs;
    // A burst of 1/20 s of the rate: enough that coarse timers (a few ms late) do not cap the rate below tps.
    this.bucket = new TokenBucket(account.tps, Math.max(1, Math.ceil(account.tps / 20)), this.now);
    const events: BindEvents<PoolItem> = {
      submitDone: (item, kind, status, messageId, sentAt) => this.onSubmitDone(item, kind, status, messageId, sentAt),
      ready: () => this.pump(),
      deliver: (pdu) => this.onDeliver(pdu),
      stateChanged: (bind, state) => this.onBindState(bind, state),
    };
    for (let i = 0; i < account.binds; i++) {
      this.binds.push(
        new Bind<PoolItem>({
          account,
          index: i,
          events,
          logger: options.logger,
          metrics: options.metrics,
          ...(options.now !== undefined ? { now: options.now } : {}),
          ...(options.random !== undefined ? { random: options.random } : {}),
          ...(options.ca !== undefined ? { ca: options.ca } : {}),
          ...options.bind,
        }),
      );
    }
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

  stats(): BindPoolStats {
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
      idFormatSeen: this.seenBase,
    };
  }

  /** Per-bind view (state, window use, last error) for readiness and tests. */
  bindStates(): { index: number; state: BindState; inFlight: number; lastError: string | undefined }[] {
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

  onReceipt(handler: (receipt: DeliveryReceipt) => Promise<void>): void {
    this.receiptHandler = handler;
  }

  onMobileOriginated(handler: (mo: MobileOriginated) => Promise<void>): void {
    this.moHandler = handler;
  }

  submit(req: SubmitRequest): Promise<SubmitOutcome> {
    if (this.closing) return Promise.resolve({ kind: 'unavailable', reason: 'SMPP_POOL_CLOSED: the bind pool is closing' });
    const now = this.now();
    if (req.deadline <= now) return Promise.resolve({ kind: 'expired', reason: 'deadline passed before submit' });
    if (this.queued >= this.maxPending) {
      return Promise.resolve({ kind: 'unavailable', reason: `OVERLOADED: ${this.queued} requests already wait for account ${this.account}` });
    }
    let pdu: Buffer;
    try {
      pdu = this.encode(req, now);
    } catch (err) {
      const reason = isGatewayError(err) ? `${err.code}: ${err.message}` : `SMPP_PDU_INVALID: ${String(err)}`;
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
    this.metrics.bindPendingQueue.set(this.accountLabel, this.queued);
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

  private encode(req: SubmitRequest, now: number): Buffer {
    const numeric = RE_DIGITS.test(req.source);
    return encodeMessagePdu(0x04, 0, {
      source_addr_ton: numeric ? 0 : 5,
      source_addr_npi: numeric ? 1 : 0,
      source_addr: req.source,
      dest_addr_ton: 1,
      dest_addr_npi: 1,
      destination_addr: req.destination,
      esm_class: req.esmClass,
      registered_delivery: req.registeredDelivery ? 1 : 0,
      data_coding: req.dataCoding,
      validity_period: relativeValidity(req.deadline - now),
      short_message: req.payload,
    });
  }

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
        pdu = this.encode(item.req, now);
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

  private pickBind(avoid: number): Bind<PoolItem> | undefined {
    let best: Bind<PoolItem> | undefined;
    let bestFree = 0;
    let fallback: Bind<PoolItem> | undefined;
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
      if (status === STATUS.ESME_ROK) {
        this.okResponses++;
        this.throttleStreak = false;
        this.metrics.submitLatencySeconds.observe(this.accountLabel, (now - sentAt) / 1000);
        if (this.seenBase !== 'hex') this.learnIdBase(messageId);
        item.resolve({ kind: 'accepted', account: this.account, messageId });
        return;
      }
      this.metrics.submitResponses.inc({ account: this.account, status: statusName(status) });
      if (isThrottleStatus(status)) {
        this.onThrottled(item, status, sentAt, now);
        return;
      }
      item.resolve({ kind: 'rejected', account: this.account, status, reason: statusName(status) });
      return;
    }
    if (kind === 'nack') {
      this.metrics.submitResponses.inc({ account: this.account, status: `generic_nack:${statusName(status)}` });
      if (isThrottleStatus(status)) {
        // Some SMSCs throttle with a generic_nack.
        this.onThrottled(item, status, sentAt, now);
        return;
      }
      item.resolve({ kind: 'rejected', account: this.account, status, reason: `generic_nack ${statusName(status)}` });
      return;
    }
    if (kind === 'timeout') {
      this.counters.timeouts++;
      item.timeouts++;
      if (item.timeouts >= this.maxTimeouts) {
        item.resolve({ kind: 'expired', reason: `SMPP_TIMEOUT: no submit_sm_resp after ${item.timeouts} attempts` });
        return;
      }
      this.retry(item, now);
      return;
    }
    // lost
    if (this.closing) {
      item.resolve({ kind: 'unavailable', reason: 'SMPP_CONNECTION_LOST: connection closed while the pool was closing' });
      return;
    }
    item.losses++;
    if (item.losses > this.maxLosses) {
      item.resolve({ kind: 'unavailable', reason: `SMPP_CONNECTION_LOST: connection lost ${item.losses} times with this request outstanding` });
      return;
    }
    this.retry(item, now);
  }

  /** `auto` learns (and a configured decimal account checks) the base of the resp ids: a letter a–f means hex. */
  private learnIdBase(messageId: string): void {
    if (!HEX_LETTER.test(messageId)) {
      this.seenBase ??= 'digits';
      return;
    }
    this.seenBase = 'hex';
    if (this.idBase === 'decimal') {
      this.log.warn({ messageId }, 'idFormat is decimal but the SMSC answered a hexadecimal message id; receipts with letters will not match: check idFormat');
    } else if (this.idBase === undefined) {
      this.log.info('submit_sm_resp ids are hexadecimal (learned; idFormat auto matches receipts by the id as written)');
    }
  }

  private onThrottled(item: PoolItem, status: number, sentAt: number, now: number): void {
    this.counters.throttled++;
    item.throttles++;
    this.metrics.throttled.inc({ account: this.account, status: statusName(status) });
    // Answers to requests sent before the current pause began are echoes of the same congestion: they do not double it.
    if (sentAt >= this.throttleSetAt) {
      this.throttleBackoff = this.throttleStreak ? Math.min(this.throttleBackoff * 2, this.cfg.reconnectMaxMs) : this.cfg.throttleBackoffMs;
      this.throttleStreak = true;
      this.throttleSetAt = now;
      this.throttleUntil = now + this.throttleBackoff;
      this.log.debug({ backoffMs: this.throttleBackoff, status: statusName(status) }, 'SMSC throttling: pausing submits');
    }
    this.retry(item, now);
  }

  private retry(item: PoolItem, now: number): void {
    if (this.closing) {
      item.resolve({ kind: 'unavailable', reason: 'SMPP_POOL_CLOSED: the bind pool is closing' });
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
    if (this.boundCount === 0) return `deadline passed with no bound SMPP session (${this.binds[0]?.lastError ?? 'connecting'})`;
    return 'deadline passed while waiting for a window slot';
  }

  // ---------------------------------------------------------------- inbound

  private onDeliver(pdu: InboundMessagePdu): Promise<number> {
    const now = this.now();
    const esm = pdu.esm_class ?? 0;
    if ((esm & ESM_DELIVERY_RECEIPT) !== 0 || pdu.receipted_message_id !== undefined) {
      const receipt = this.toReceipt(pdu, now);
      if (receipt === undefined) {
        if (this.counters.badReceipts++ % 1000 === 0) {
          this.log.warn({ total: this.counters.badReceipts, esmClass: esm }, 'unparseable delivery receipt acknowledged and dropped (sampled)');
        }
        return OK;
      }
      this.counters.receipts++;
      const h = this.receiptHandler;
      if (h === undefined) return RETRY_LATER;
      return this.settle(() => h(receipt));
    }
    const ud = userData(pdu);
    // A long MO arrives in parts: UDH (esm_class 0x40, IEI 0x00/0x08) or sar_* TLVs.
    const part: MoPart | undefined = (esm & ESM_UDHI) !== 0
      ? partFromUdh(ud)?.part
      : pdu.sar_msg_ref_num !== undefined && pdu.sar_total_segments !== undefined && pdu.sar_segment_seqnum !== undefined && pdu.sar_total_segments > 1
        ? { ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum }
        : undefined;
    const mo: MobileOriginated = {
      account: this.account,
      source: pdu.source_addr ?? '',
      destination: pdu.destination_addr ?? '',
      text: messageText(ud, pdu.data_coding ?? 0, esm),
      receivedAt: now,
      ...(part !== undefined && part.total > 1 ? { part } : {}),
    };
    this.counters.mobileOriginated++;
    this.log.debug({ from: maskNumber(mo.source), dataCoding: pdu.data_coding ?? 0 }, 'MO received');
    const h = this.moHandler;
    if (h === undefined) return RETRY_LATER;
    return this.settle(() => h(mo));
  }

  private settle(run: () => Promise<void>): Promise<number> {
    let p: Promise<void>;
    try {
      p = run();
    } catch (err) {
      p = Promise.reject(err);
    }
    return p.then(
      () => STATUS.ESME_ROK,
      (err: unknown) => {
        if (this.counters.handlerErrors++ % 100 === 0) {
          this.log.warn({ err: err instanceof Error ? err.message : String(err), total: this.counters.handlerErrors }, 'receipt/MO handler failed; SMSC told to retry (sampled)');
        }
        return STATUS.ESME_RX_T_APPN;
      },
    );
  }

  private toReceipt(pdu: InboundMessagePdu, now: number): DeliveryReceipt | undefined {
    const text = receiptText(userData(pdu), pdu.data_coding ?? 0);
    const parsed = text.length > 0 ? parseDlrText(text, this.dlrOffset) : undefined;
    const tlvId = pdu.receipted_message_id?.trim();
    const fromTlv = tlvId !== undefined && tlvId.length > 0;
    const written = fromTlv ? tlvId : parsed?.id;
    if (written === undefined) return undefined;
    // The one key this receipt is matched under, in the account's base (no second reading anywhere).
    const messageId = receiptOperatorId(written, fromTlv ? this.tlvIdBase : this.textIdBase, this.idBase);
    if (messageId.length === 0) return undefined;
    let state: ReceiptState | undefined = pdu.message_state !== undefined ? messageStateToState(pdu.message_state) : undefined;
    if (state === undefined && parsed?.stat !== undefined) state = statToState(parsed.stat);
    if (state === undefined) return undefined;
    let error = parsed?.err;
    if (error === undefined && pdu.network_error_code !== undefined && pdu.network_error_code.length > 0) {
      error = `network:${pdu.network_error_code.toString('hex')}`;
    }
    return error === undefined
      ? { account: this.account, messageId, state, doneAt: parsed?.doneDate ?? now }
      : { account: this.account, messageId, state, error, doneAt: parsed?.doneDate ?? now };
  }

  // ---------------------------------------------------------------- housekeeping

  private onBindState(bind: Bind<PoolItem>, state: BindState): void {
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
    this.metrics.bindPendingQueue.set(this.accountLabel, this.queued);
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
      this.metrics.submitResponses.inc({ account: this.account, status: 'ESME_ROK' }, this.okResponses);
      this.okResponses = 0;
    }
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    for (const lane of this.lanes) {
      for (let item = lane.ring.shift(); item !== undefined; item = lane.ring.shift()) {
        item.resolve({ kind: 'unavailable', reason: 'SMPP_POOL_CLOSED: the bind pool is closing' });
      }
    }
    this.queued = 0;
    for (const w of this.capacityWaiters) w();
    this.capacityWaiters = [];
    await Promise.all(this.binds.map((b) => b.close()));
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.flushCounters();
    this.metrics.bindPendingQueue.set(this.accountLabel, 0);
    this.log.info({ ...this.counters }, 'bind pool closed');
  }
}
