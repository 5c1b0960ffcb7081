/**
 * Completion callbacks: a message sent with `callbackUrl` gets one POST
 * there when every recipient has reached a final state:
 *
 *   { "id", "reference"?, "status": "complete", "recipients", "summary": { delivered, undeliverable, expired, rejected, failed, … }, "completedAt" }
 *
 * signed and sent through the outbound webhook client (src/outbound: target
 * policy, keep-alive pools, four tenant-visible failure reasons).
 *
 * On-disk layout (the gateway's LMDB environment):
 *
 *   receipts.callbacks      messageId → { state: waiting|failed, attempts, nextAt, completedAt?, lastError? }
 *                           written with the message row (store.putMessage), same transaction
 *   receipts.callbacks.due  [dueAt, messageId] → [0 | leaseOwner, origin]  (rows of older versions: 0 | leaseOwner)
 *                           exactly one key per message that is complete and not yet called back;
 *                           the value names the callback's origin, so the pump can pass over keys of
 *                           a host that has its share without reading their messages:
 *
 *     complete ──mark──▶ [now, id] ──claim──▶ [now + lease, id] ──2xx──▶ (row and key removed)
 *                            ▲                       │ error, attempts left
 *                            └── [now + back-off, id] ◀┘ error, last attempt ──▶ row `failed`, key removed
 *
 * Every move is one LMDB write transaction that first checks the key it
 * moves from is still there, so several processes of a host (roles sharing
 * the environment) never POST the same message twice; a process that dies
 * mid-POST leaves the lease key, which falls due again after the lease
 * (timeout + margin): a callback is never lost, at worst repeated after a crash.
 *
 * Completion is noticed as it happens: the store announces each recipient
 * turning final (onFinal, after commit); a one-recipient message is complete
 * at once, larger ones are counted in memory (bounded, MAX_COUNTED). A slow
 * sweep over the waiting rows (key order, bounded per tick) catches what the
 * counts cannot: finals from before a restart or committed by another
 * process, and messages beyond the count bound.
 *
 * The message is read once per callback, when it is seen complete: what
 * the POST needs (tenant, URL, reference, recipients, the summary — fixed
 * once every recipient is final; for one recipient, the final state that
 * completed it) is carried through the mark to the POST when the mark
 * leases at once, or when the mark makes it due and remembers it (its
 * host had its share of held POSTs; bounded, see `dueInMemory`), so
 * nothing is read between the mark and the outcome. Leases found by the
 * walk (retries, expired leases, keys of another process or of an older
 * version, completions beyond that bound) read the message and row before
 * the POST.
 *
 * Sending is bounded by `concurrency` POSTs in flight and `perHost` per
 * origin; the backlog waits in `receipts.callbacks.due` (scanned in key
 * order from a cursor); what memory keeps of it is bounded.
 */
import { asBinary, type Database, type RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import { FINAL_STATES, RECIPIENT_STATES, type FinalState, type RecipientState } from '../core/message.js';
import { StringMemo } from '../core/memo.js';
import { RingBuffer } from '../core/ring.js';
import type { DeliveryError } from '../outbound/webhook.js';
import type { Metrics } from '../telemetry/metrics.js';
import { Background } from './background.js';
import type { CallbackState, ReceiptStore } from './store.js';
import type { MessageRecord } from './types.js';
import { entryCount } from '../storage/entry-count.js';

/** What the callbacks need of the outbound client (tests pass a fake). */
export interface WebhookPoster {
  /** `timeoutMs`: this request's bound instead of the client's. */
  post(tenant: string, url: string, body: string, timeoutMs?: number): Promise<DeliveryError | undefined>;
  /** Whether the tenant has a signing secret (absent: not checked; the real client never sends unsigned either way). */
  canSign?(tenant: string): boolean;
}

export interface StatusCallbackOptions {
  readonly env: RootDatabase;
  readonly store: ReceiptStore;
  readonly webhooks: WebhookPoster;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** POST attempts before the callback is recorded failed. */
  readonly attempts: number;
  /** One POST's timeout (the lease is this plus a margin). */
  readonly timeoutMs: number;
  /** POSTs in flight at once. */
  readonly concurrency: number;
  /** POSTs in flight to one origin. */
  readonly perHost: number;
  /** Back-off before the second attempt, doubled per attempt up to maxBackoffMs (±20% jitter). */
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  /** Timer for due retries and the sweep. Default 250 ms. */
  readonly tickMs?: number;
  /** Between sweeps over every waiting row once the first (start-up) sweep is done. Default 30 s. */
  readonly sweepEveryMs?: number;
  readonly now?: () => number;
  readonly random?: () => number;
}

type DueKey = [number, string];
/** 0 (due) or the leasing process, with the callback's origin; a bare number in rows of older versions (origin read from the message). */
type DueValue = number | readonly [number, string];
/**
 * What a POST needs of its message, read once when the message was seen
 * complete and carried through mark to the POST, so a callback leased at
 * once reads no row between its mark and its outcome. Every recipient is
 * final then and a final state never changes: the summary cannot change
 * either (CallbackBody.summary is its JSON text).
 */
interface Carried {
  readonly tenant: string;
  readonly url: string;
  readonly reference: string | undefined;
  readonly recipients: number;
  readonly summary: string;
}
/** A claimed lease; `carried` and `row` (the row as its mark wrote it) when leased by the mark itself, else read before the POST. */
type Ready = { readonly lease: DueKey; readonly origin: string; readonly carried?: Carried; readonly row?: CallbackState };
type Marked = { readonly id: string; readonly at: number; readonly carried: Carried | undefined };
/** A key this process made due (not leased at once), kept with what its POST needs: see `dueInMemory`. */
type Remembered = { readonly key: DueKey; readonly carried: Carried; readonly row: CallbackState };
/** Keys a pump picked to claim: from the walk, or (with what their POST needs) from memory. */
type Picked = { readonly key: DueKey; readonly origin: string; readonly kept?: Remembered };
type Outcome = { readonly row: CallbackState; readonly error: DeliveryError | undefined; readonly origin: string };

/** Multi-recipient messages whose final recipients are counted in memory. */
const MAX_COUNTED = 100_000;
/** Waiting rows one sweep tick examines (each a summary: O(recipients)). */
const SWEEP_ROWS_PER_TICK = 2_000;
/** Recipient rows one sweep tick reads at most (a summary each message). */
const SWEEP_RECIPIENTS_PER_TICK = 200_000;
/** Ids held (POST on the wire or outcome not yet committed) at most, as a multiple of concurrency. */
const MAX_HELD_FACTOR = 4;
/**
 * Keys a pump not started by the timer passes over (their host has its share)
 * before it stops; the timer's pump may pass over the whole `maxExamined`.
 */
const SKIP_BUDGET = 128;
/** The timer sends the pump's cursor back to the head at most this often (unless a walk reached the end first). */
const LAP_RESET_MS = 2_000;
/** Origins whose due values are kept packed (cleared when full). */
const MAX_DUE_VALUES = 1024;
/**
 * Due keys this process remembers with what their POST needs (see
 * `dueInMemory`), as a multiple of concurrency; beyond it they wait on disk
 * only, and the walk finds them.
 */
const DUE_IN_MEMORY_FACTOR = 16;
/** Lease margin beyond the POST timeout. */
const LEASE_MARGIN_MS = 30_000;
/** The tenant-visible reasons (rows written by older versions may hold other text: not shown). */
const VISIBLE_ERROR = /^(refused target|timeout|connection failed|no signing secret|HTTP [1-5][0-9]{2})$/;

export class StatusCallbacks {
  private readonly callbacks: Database<CallbackState, string>;
  private readonly due: Database<DueValue, DueKey>;
  /** messageId → recipients seen turning final since start (multi-recipient messages only; bounded). */
  private readonly counts = new Map<string, number>();
  /** Ids whose `mark` transaction is queued and not yet committed (so two finals mark once). */
  private readonly marking = new Set<string>();
  private markQueue: Marked[] = [];
  private finishQueue: Array<{ lease: DueKey; outcome: Outcome | undefined; resolve: () => void; reject: (e: unknown) => void }> = [];
  /** Held ids (picked or marked, until the outcome commits) → origin; see canHold. */
  private readonly held = new Map<string, string>();
  private readonly heldPerOrigin = new Map<string, number>();
  private readonly maxHeld: number;
  private readonly maxHeldPerOrigin: number;
  /**
   * Claimed leases waiting for room on the wire (bounded by `held`), a FIFO
   * per origin, so starting a POST looks at each origin once instead of at
   * every waiting lease.
   */
  private readonly ready = new Map<string, RingBuffer<Ready>>();
  /**
   * Completions this process could not lease at once (their host had its
   * share of `held`): their key is due on disk, as before, and kept here too,
   * by origin in due order, with the message's fields and the row the mark
   * wrote. A pump takes them from here first, so a burst's overflow is
   * claimed without walking receipts.callbacks.due and POSTed without
   * reading its message, row and summary again. The key on disk decides:
   * the claim moves it only if it is still there (another process may have
   * taken it). Bounded (DUE_IN_MEMORY_FACTOR × concurrency); what does not
   * fit is found by the walk, like keys of another process or from before
   * a restart.
   */
  private readonly dueInMemory = new Map<string, Map<string, Remembered>>();
  private dueInMemoryCount = 0;
  private readonly maxDueInMemory: number;
  /** POSTs on the wire, in all and per origin. */
  private wireUsed = 0;
  private readonly wirePerOrigin = new Map<string, number>();
  /** Due values by origin, packed: see dueValue. */
  private readonly dueValues = new Map<string, readonly [DueValue, DueValue]>();
  private cursor: DueKey | undefined;
  /** When the cursor last went back to the head. */
  private lapStartedAt = 0;
  /**
   * The last walk passed over keys of a host that had its share: until a walk
   * passes none, a release starts a pump only once its host (or the whole
   * sender) has room for a refill batch, so a backlog to one busy host is not
   * walked again after every POST.
   */
  private blocked = false;
  /**
   * Due keys may be waiting that a pump could take now. False after a walk
   * from the head to the end of what is due that passed nothing over; true again
   * when this process makes a key due now (a completion it could not lease
   * at once). While false only the timer's pump walks: a release then does
   * not open a cursor to find nothing (completions are leased by their mark,
   * retries and expired leases fall due later, and keys made due by another
   * process are found by the timer's pump, as before at worst).
   */
  private dueMaybe = true;
  private readonly refill: number;
  private pumpScheduled = false;
  private pumpFromTimer = false;
  private sweepAfter: string | undefined;
  private sweepDone = false;
  private nextSweepAt = 0;
  private closed = false;
  private readonly background: Background;
  private readonly owner: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sent: Counter<'outcome'>;
  private readonly waitingGauge: Gauge;
  private readonly dueGauge: Gauge;
  private readonly inflightGauge: Gauge;
  private readonly countedGauge: Gauge;
  private readonly dueInMemoryGauge: Gauge;

  constructor(private readonly o: StatusCallbackOptions) {
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.background = new Background(o.logger, 'status callback step failed');
    this.owner = process.pid;
    this.maxHeld = MAX_HELD_FACTOR * o.concurrency;
    this.maxDueInMemory = DUE_IN_MEMORY_FACTOR * o.concurrency;
    // One origin may hold half of it (or its own share of the wire × the factor, if more): a slow host
    // with a large backlog leaves the other half to the rest.
    this.maxHeldPerOrigin = Math.max(MAX_HELD_FACTOR * o.perHost, Math.ceil(this.maxHeld / 2));
    this.callbacks = o.store.callbacks;
    this.refill = Math.max(1, Math.floor(this.maxHeldPerOrigin / 4));
    this.due = o.env.openDB<DueValue, DueKey>({ name: 'receipts.callbacks.due', encoding: 'msgpack' });
    this.sent = o.metrics.statusCallbacks;
    this.waitingGauge = o.metrics.statusCallbacksWaiting;
    this.dueGauge = o.metrics.statusCallbacksDue;
    this.inflightGauge = o.metrics.statusCallbacksInflight;
    this.countedGauge = o.metrics.statusCallbacksCounted;
    this.dueInMemoryGauge = o.metrics.statusCallbacksDueInMemory;
    o.store.onFinal((messageId, _index, state) => this.onFinal(messageId, state));
  }

  start(): void {
    if (this.closed) return;
    this.background.start(() => this.tick(), this.o.tickMs ?? 250);
  }

  /** Stops taking new work and waits for the POSTs in flight and their writes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.background.stop();
    // Leases claimed but not yet sent go back to due now (not after their lease) for whoever runs next.
    const unsent = [...this.ready.values()].flatMap((q) => [...q]);
    this.ready.clear();
    // Remembered keys are due on disk already: whoever runs next finds them there.
    this.dueInMemory.clear();
    this.dueInMemoryCount = 0;
    if (unsent.length > 0) {
      const now = this.now();
      await this.o.env.transaction(() => {
        for (const { lease, origin } of unsent) {
          if (!this.due.doesExist(lease)) continue;
          this.due.removeSync(lease);
          this.due.putSync([now, lease[1]], this.dueValue(origin, false));
        }
      }).catch((e: unknown) => this.o.logger.error({ err: e, count: unsent.length }, 'returning unsent callbacks failed; they fall due after their lease'));
    }
  }

  /** One timer round: due retries and leases, the sweep, gauges. Also runs the pump. */
  tick(): void {
    if (this.closed) return;
    try {
      this.sweep();
      this.waitingGauge.set(entryCount(this.callbacks));
      this.dueGauge.set(entryCount(this.due));
      this.countedGauge.set(this.counts.size);
      this.dueInMemoryGauge.set(this.dueInMemoryCount);
    } catch (e) {
      this.o.logger.error({ err: e }, 'status callback sweep failed');
    }
    // Keys passed over (their host had its share) and expired leases sort before the cursor: back to
    // the head now and then. Not every tick: a long backlog to one slow host would otherwise keep the
    // walk from ever reaching the keys of other hosts behind it.
    const now = this.now();
    if (now - this.lapStartedAt >= LAP_RESET_MS) this.restartLap(now);
    this.schedulePump(true);
  }

  private restartLap(now: number): void {
    this.cursor = undefined;
    this.lapStartedAt = now;
  }

  // ------------------------------------------------------------ completion

  /**
   * A recipient turned final. The message is read once, here; what its POST
   * needs is carried to it. A one-recipient message is complete with this
   * final, its summary that one state: the mark's transaction checks its row
   * (so no row is read here, only whether there is one: messages without a
   * callbackUrl have none).
   */
  private onFinal(messageId: string, state: FinalState): void {
    if (this.closed || this.marking.has(messageId)) return;
    if (!this.callbacks.doesExist(messageId)) return;
    const msg = this.o.store.acceptedMessage(messageId);
    if (!msg) return;
    if (msg.recipients <= 1) {
      // No recipient yet (a fan-out still expanding): nothing carried, the POST reads what is there then.
      const one = msg.recipients === 1 ? ONE_FINAL[state] : undefined;
      this.mark(messageId, one !== undefined ? carriedOf(msg, one) : undefined);
      return;
    }
    const row = this.callbacks.get(messageId);
    if (row === undefined || row.state !== 'waiting' || row.completedAt !== undefined) return;
    const seen = this.counts.get(messageId);
    if (seen === undefined && this.counts.size >= MAX_COUNTED) return; // the sweep finds it
    const n = (seen ?? 0) + 1;
    if (n < msg.recipients) {
      this.counts.set(messageId, n);
      return;
    }
    // Counted complete: confirm (a count seeded by the sweep may include a final announced after it read).
    const summary = this.o.store.summary(messageId);
    const final = finalCount(summary);
    if (final >= msg.recipients) this.mark(messageId, carriedOf(msg, summaryJson(summary)));
    else this.counts.set(messageId, final);
  }

  /** Queue `id` to be made due; one transaction per event-loop turn marks all of them. */
  private mark(id: string, carried: Carried | undefined): void {
    this.counts.delete(id);
    this.marking.add(id);
    this.markQueue.push({ id, at: this.now(), carried });
    if (this.markQueue.length === 1) setImmediate(() => this.track(this.flushMarks()));
  }

  /**
   * One transaction for the turn's completions: each becomes due, or — when
   * a slot is free — is leased at once and POSTed after the commit (one
   * commit on the way from "complete" to the POST, not two).
   */
  private async flushMarks(): Promise<void> {
    const batch = this.markQueue;
    this.markQueue = [];
    const at = this.now();
    const leaseAt = at + this.o.timeoutMs + LEASE_MARGIN_MS;
    // Slots taken now (before the commit), so a pump meanwhile cannot give them away.
    const origins: string[] = [];
    const direct: boolean[] = [];
    for (const { id, carried } of batch) {
      const origin = carried !== undefined ? originOf(carried.url) : this.messageOrigin(id);
      origins.push(origin);
      const now = !(this.held.size >= this.maxHeld || this.held.has(id) || !this.canHold(origin));
      if (now) this.hold(id, origin);
      direct.push(now);
    }
    const leased: Ready[] = [];
    const won: boolean[] = [];
    /** Keys made due now (not leased) with what their POST needs; `uncarried`: some were made due without it. */
    const dueNow: Remembered[] = [];
    let uncarried = false;
    try {
      await this.o.env.transaction(() => {
        leased.length = 0;
        won.length = 0;
        dueNow.length = 0;
        uncarried = false;
        for (let i = 0; i < batch.length; i++) {
          const { id, at: completedAt, carried } = batch[i] as Marked;
          won.push(false);
          const row = this.callbacks.get(id);
          if (row === undefined || row.state !== 'waiting' || row.completedAt !== undefined) continue; // done, or marked by another process
          const marked: CallbackState = { ...row, completedAt, nextAt: completedAt };
          this.callbacks.putSync(id, marked);
          const origin = origins[i] as string;
          if (direct[i] === true) {
            const lease: DueKey = [leaseAt, id];
            this.due.putSync(lease, this.dueValue(origin, true));
            leased.push(carried !== undefined ? { lease, origin, carried, row: marked } : { lease, origin });
            won[i] = true;
          } else {
            const key: DueKey = [completedAt, id];
            this.due.putSync(key, this.dueValue(origin, false));
            if (carried !== undefined) dueNow.push({ key, carried, row: marked });
            else uncarried = true;
          }
        }
      });
    } catch (e) {
      // Nothing is lost: the rows are still waiting and the sweep marks them.
      leased.length = 0;
      won.length = 0;
      dueNow.length = 0;
      this.o.logger.error({ err: e, count: batch.length }, 'marking completion callbacks due failed; the sweep retries');
    } finally {
      for (const { id } of batch) this.marking.delete(id);
    }
    for (let i = 0; i < batch.length; i++) if (direct[i] === true && won[i] !== true) this.release((batch[i] as Marked).id);
    this.enqueueReady(leased);
    this.drainReady();
    // What could not be held at once is due now (and remembered, while there is room); a pump takes
    // it unless its host has its share. What is not remembered only the walk finds.
    if (leased.length < batch.length) {
      let onDiskOnly = uncarried || dueNow.length === 0;
      for (const r of dueNow) if (!this.remember(r)) onDiskOnly = true;
      if (onDiskOnly) this.dueMaybe = true;
      this.requestPump();
    }
  }

  /**
   * Waiting rows in key order from where the last tick stopped: complete ones
   * are marked, incomplete ones seed the counts (so their remaining finals
   * complete them). The first pass runs right after start; later ones every
   * sweepEveryMs.
   */
  private sweep(): void {
    const now = this.now();
    if (this.sweepDone && now < this.nextSweepAt) return;
    let rows = 0;
    let read = 0;
    let last: string | undefined;
    let exhausted = true;
    for (const { key, value } of this.callbacks.getRange(this.sweepAfter === undefined ? {} : { start: this.sweepAfter })) {
      if (key === this.sweepAfter) continue;
      if (rows >= SWEEP_ROWS_PER_TICK || read >= SWEEP_RECIPIENTS_PER_TICK) {
        exhausted = false;
        break;
      }
      last = key;
      rows++;
      if (value.state !== 'waiting' || value.completedAt !== undefined || this.marking.has(key)) continue;
      const msg = this.o.store.getMessage(key);
      if (!msg) continue;
      read += msg.recipients;
      const summary = this.o.store.summary(key);
      const final = finalCount(summary);
      if (final >= msg.recipients) this.mark(key, msg.callbackUrl !== undefined ? carriedOf(msg, summaryJson(summary)) : undefined);
      else if (msg.recipients > 1 && (this.counts.has(key) || this.counts.size < MAX_COUNTED)) this.counts.set(key, Math.max(final, this.counts.get(key) ?? 0));
    }
    if (exhausted) {
      this.sweepAfter = undefined;
      this.sweepDone = true;
      this.nextSweepAt = now + (this.o.sweepEveryMs ?? 30_000);
    } else if (last !== undefined) {
      this.sweepAfter = last;
    }
  }

  // --------------------------------------------------------------- sending

  private schedulePump(fromTimer = false): void {
    if (!fromTimer && !this.dueMaybe && this.dueInMemoryCount === 0) return;
    if (fromTimer) this.pumpFromTimer = true;
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      const timer = this.pumpFromTimer;
      this.pumpFromTimer = false;
      this.pump(timer);
    });
  }

  /** A pump for new due keys, unless the last walk found their hosts full (then releases and the timer start it). */
  private requestPump(): void {
    if (!this.blocked) this.schedulePump();
  }

  /** After a release: a pump, unless the last walk was blocked and neither this host nor the sender has room for a refill batch. */
  private afterRelease(origin: string): void {
    if (!this.blocked || (this.heldPerOrigin.get(origin) ?? 0) <= this.maxHeldPerOrigin - this.refill || this.held.size <= this.maxHeld - this.refill) this.schedulePump();
  }

  /**
   * Takes due keys in key order from the cursor (so a large backlog is walked
   * once, not rescanned from its head each time) while there is room to hold
   * them, and claims them in one transaction; at the end of what is due the
   * cursor goes back to the start, where retries and expired leases sort.
   * A key whose host has its share is passed over (the cursor moves on, so
   * other hosts' keys behind a long backlog are reached): the origin is in
   * the key's value, so passing over reads no message. A pump the timer did
   * not start stops after SKIP_BUDGET such keys.
   */
  private pump(fromTimer: boolean): void {
    if (this.closed || this.held.size >= this.maxHeld) return;
    const now = this.now();
    const picked: Picked[] = [];
    const waiting = this.takeRemembered(picked);
    // Keys on disk only: due keys of others, retries, expired leases, overflow beyond the memory bound.
    if (!fromTimer && !this.dueMaybe) {
      this.blocked = waiting;
      if (picked.length > 0) this.track(this.claim(picked, now));
      return;
    }
    let examined = 0;
    let skipped = 0;
    const maxExamined = this.maxHeld + 1024;
    const maxSkipped = fromTimer ? maxExamined : SKIP_BUDGET;
    let reachedEnd = true;
    const fromHead = this.cursor === undefined;
    for (const { key, value } of this.due.getRange({ ...(this.cursor ? { start: this.cursor } : {}), end: [now, '\uffff'] })) {
      if (this.held.size >= this.maxHeld || examined++ >= maxExamined || skipped >= maxSkipped) {
        reachedEnd = false;
        break;
      }
      if (this.cursor && key[0] === this.cursor[0] && key[1] === this.cursor[1]) continue;
      this.cursor = key;
      const id = key[1];
      if (this.held.has(id)) continue;
      const origin = this.dueOrigin(id, value);
      if (!this.canHold(origin)) {
        skipped++; // that host has its share: walk on, others go first
        continue;
      }
      this.hold(id, origin);
      const kept = this.forget(origin, id);
      picked.push(kept !== undefined && kept.key[0] === key[0] ? { key, origin, kept } : { key, origin });
    }
    this.blocked = skipped > 0 || waiting;
    if (reachedEnd) {
      this.restartLap(now);
      // Every key due now was seen (held, or picked now): until one is made due, releases need not walk.
      if (fromHead && skipped === 0) this.dueMaybe = false;
    }
    if (picked.length > 0) this.track(this.claim(picked, now));
  }

  /** Keeps a key just made due with what its POST needs, if there is room; false when there is none. */
  private remember(r: Remembered): boolean {
    if (this.dueInMemoryCount >= this.maxDueInMemory) return false;
    const origin = originOf(r.carried.url);
    let q = this.dueInMemory.get(origin);
    if (q === undefined) {
      q = new Map();
      this.dueInMemory.set(origin, q);
    }
    if (q.has(r.key[1])) return true;
    q.set(r.key[1], r);
    this.dueInMemoryCount++;
    return true;
  }

  /** Drops a remembered key (picked by the walk, or taken); returns it. */
  private forget(origin: string, id: string): Remembered | undefined {
    const q = this.dueInMemory.get(origin);
    const r = q?.get(id);
    if (q === undefined || r === undefined) return undefined;
    q.delete(id);
    this.dueInMemoryCount--;
    if (q.size === 0) this.dueInMemory.delete(origin);
    return r;
  }

  /**
   * Remembered keys, oldest first per origin, while there is room to hold
   * them (origins take turns: one that gave keys goes to the back). True
   * when some were left because their host has its share.
   */
  private takeRemembered(picked: Picked[]): boolean {
    if (this.dueInMemoryCount === 0) return false;
    let waiting = false;
    for (const [origin, q] of [...this.dueInMemory]) {
      if (this.held.size >= this.maxHeld) return true;
      let took = false;
      for (const [id, kept] of q) {
        if (!this.canHold(origin)) {
          waiting = true;
          break;
        }
        q.delete(id);
        this.dueInMemoryCount--;
        if (this.held.has(id)) continue; // on its way already (a lease of the walk)
        this.hold(id, origin);
        picked.push({ key: kept.key, origin, kept });
        took = true;
      }
      if (q.size === 0) this.dueInMemory.delete(origin);
      else if (took) {
        // To the back: the next pump offers the others first.
        this.dueInMemory.delete(origin);
        this.dueInMemory.set(origin, q);
      }
    }
    return waiting;
  }

  /** The origin a due key's value names, or (a row of an older version) its message's. */
  private dueOrigin(id: string, value: DueValue): string {
    return typeof value !== 'number' ? value[1] : this.messageOrigin(id);
  }

  /** The origin of a message's callbackUrl ('' when the message or its URL is gone). */
  private messageOrigin(id: string): string {
    const url = this.o.store.getMessage(id)?.callbackUrl;
    return url !== undefined ? originOf(url) : '';
  }

  /**
   * Held: an id between being picked (or marked) and its outcome committed —
   * at most MAX_HELD_FACTOR × concurrency in all and half of that per origin, so
   * claims and outcome commits (each waits for an LMDB commit) overlap with
   * the POSTs instead of holding their slots. On the wire: `concurrency` POSTs
   * at most, `perHost` per origin.
   */
  private canHold(origin: string): boolean {
    return this.held.size < this.maxHeld && (this.heldPerOrigin.get(origin) ?? 0) < this.maxHeldPerOrigin;
  }

  private hold(id: string, origin: string): void {
    this.held.set(id, origin);
    this.heldPerOrigin.set(origin, (this.heldPerOrigin.get(origin) ?? 0) + 1);
  }

  private release(id: string): void {
    const origin = this.held.get(id);
    if (origin === undefined) return;
    this.held.delete(id);
    decrement(this.heldPerOrigin, origin);
  }

  private enqueueReady(leases: readonly Ready[]): void {
    for (const r of leases) {
      let q = this.ready.get(r.origin);
      if (q === undefined) {
        // Held bounds what waits here (a lease is held from its claim to its outcome).
        q = new RingBuffer<Ready>(this.maxHeld);
        this.ready.set(r.origin, q);
      }
      // Full only if held did not bound it (a bug): the lease stays on disk and falls due after it runs out.
      if (!q.push(r)) this.o.logger.error({ messageId: r.lease[1], bound: this.maxHeld }, 'completion callback ready queue full; sent after its lease');
    }
  }

  /**
   * Starts POSTs for claimed leases while the wire has room (global and per
   * origin). An origin that got a slot goes to the back of the order, so the
   * origins take turns. The leases are taken off the queues before any POST
   * starts (a POST that ends at once calls this again).
   */
  private drainReady(): void {
    // An origin's queue leaves the map when it empties: no entries, nothing waits.
    if (this.ready.size === 0 || this.closed) return;
    const start: Ready[] = [];
    for (const [origin, q] of [...this.ready]) {
      if (this.wireUsed >= this.o.concurrency) break;
      let taken = 0;
      let onWire = this.wirePerOrigin.get(origin) ?? 0;
      while (!q.isEmpty && this.wireUsed < this.o.concurrency && onWire < this.o.perHost) {
        start.push(q.shift() as Ready);
        taken++;
        this.wireUsed++;
        onWire++;
      }
      if (taken === 0) continue;
      this.wirePerOrigin.set(origin, onWire);
      this.ready.delete(origin);
      if (!q.isEmpty) this.ready.set(origin, q);
    }
    this.inflightGauge.set(this.wireUsed);
    for (const r of start) this.track(this.call(r));
  }

  /** Moves each key to its lease in one transaction (skipping keys another process moved first); the leases go to the wire. */
  private async claim(picked: readonly Picked[], now: number): Promise<void> {
    const leaseAt = now + this.o.timeoutMs + LEASE_MARGIN_MS;
    const won: Ready[] = [];
    try {
      await this.o.env.transaction(() => {
        won.length = 0;
        for (const { key, origin, kept } of picked) {
          if (!this.due.doesExist(key)) continue;
          this.due.removeSync(key);
          const lease: DueKey = [leaseAt, key[1]];
          this.due.putSync(lease, this.dueValue(origin, true));
          // A remembered key's message could have been purged since its mark: then the POST reads, finds nothing and drops the key.
          won.push(kept !== undefined && this.callbacks.doesExist(key[1]) ? { lease, origin, carried: kept.carried, row: kept.row } : { lease, origin });
        }
      });
    } catch (e) {
      won.length = 0;
      this.o.logger.error({ err: e, count: picked.length }, 'claiming completion callbacks failed; retried on the next tick');
    }
    const ids = new Set(won.map((r) => r.lease[1]));
    for (const { key } of picked) if (!ids.has(key[1])) this.release(key[1]);
    this.enqueueReady(won);
    this.drainReady();
    // Room may be left (the walk stopped at its budget, or another process won some keys).
    this.requestPump();
  }

  /**
   * One POST. A lease its mark made carries the message and its row (nothing
   * read here); any other (a retry, a key found by the walk: after a restart,
   * or marked by another process) reads them.
   */
  private async call(r: Ready): Promise<void> {
    const { lease, origin } = r;
    const id = lease[1];
    let onWire = true;
    try {
      let { carried, row } = r;
      if (carried === undefined || row === undefined) {
        const msg = this.o.store.getMessage(id);
        row = this.callbacks.get(id);
        if (!msg || !row || msg.callbackUrl === undefined || row.state !== 'waiting') {
          onWire = false;
          this.offWire(origin);
          await this.finish(lease, undefined);
          return;
        }
        carried = { tenant: msg.tenant, url: msg.callbackUrl, reference: msg.reference, recipients: msg.recipients, summary: summaryJson(this.o.store.summary(id)) };
      }
      const error = await this.o.webhooks.post(carried.tenant, carried.url, callbackBody(id, carried, row.completedAt ?? this.now()));
      onWire = false;
      this.offWire(origin);
      await this.finish(lease, { row, error, origin });
    } catch (e) {
      // The lease key stays: the callback falls due again after the lease.
      this.o.logger.error({ err: e, messageId: id }, 'completion callback step failed; retried after its lease');
    } finally {
      if (onWire) this.offWire(origin);
      this.release(id);
      this.afterRelease(origin);
    }
  }

  /** A POST left the wire: its slot goes to the next claimed lease. */
  private offWire(origin: string): void {
    this.wireUsed--;
    decrement(this.wirePerOrigin, origin);
    this.inflightGauge.set(this.wireUsed);
    this.drainReady();
  }

  /**
   * Records the outcome, if this process still holds the lease: done (row and
   * key removed), a retry at the back-off, or failed for good. `outcome`
   * undefined: the message or its row is gone; drop the key.
   */
  private finish(lease: DueKey, outcome: Outcome | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.finishQueue.push({ lease, outcome, resolve, reject });
      if (this.finishQueue.length === 1) setImmediate(() => void this.flushFinishes());
    });
  }

  /** The outcomes of one event-loop turn in one transaction (one commit for many POSTs). */
  private async flushFinishes(): Promise<void> {
    const batch = this.finishQueue;
    this.finishQueue = [];
    const now = this.now();
    const results: Array<'delivered' | 'retry' | 'failed' | 'dropped' | 'lost'> = [];
    try {
      await this.o.env.transaction(() => {
        results.length = 0;
        for (const { lease, outcome } of batch) results.push(this.applyOutcome(lease, outcome, now));
      });
    } catch (e) {
      for (const f of batch) f.reject(e);
      return;
    }
    batch.forEach((f, i) => {
      const result = results[i];
      if (result === 'delivered' || result === 'retry' || result === 'failed') this.sent.inc({ outcome: result });
      if (result === 'failed') this.o.logger.warn({ messageId: f.lease[1], attempts: this.o.attempts, error: f.outcome?.error }, 'completion callback failed for good');
      f.resolve();
    });
  }

  /** Inside the write transaction: one outcome, if this process still holds the lease. */
  private applyOutcome(lease: DueKey, outcome: Outcome | undefined, now: number): 'delivered' | 'retry' | 'failed' | 'dropped' | 'lost' {
    if (!this.due.doesExist(lease)) return 'lost';
    this.due.removeSync(lease);
    if (outcome === undefined) return 'dropped';
    const id = lease[1];
    const { row, error, origin } = outcome;
    if (error === undefined) {
      this.callbacks.removeSync(id);
      return 'delivered';
    }
    // The row as read (or as its mark wrote it) before the POST; gone since only with its message (retention purge).
    if (!this.callbacks.doesExist(id)) return 'dropped';
    const attempts = row.attempts + 1;
    if (attempts >= this.o.attempts) {
      this.callbacks.putSync(id, { ...row, state: 'failed', attempts, nextAt: 0, lastError: error });
      return 'failed';
    }
    const base = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** (attempts - 1));
    const nextAt = now + Math.round(base * (0.8 + 0.4 * this.random()));
    this.callbacks.putSync(id, { ...row, attempts, nextAt, lastError: error });
    this.due.putSync([nextAt, id], this.dueValue(origin, false));
    return 'retry';
  }

  /**
   * A due key's value, [0, origin] or (leased) [owner, origin], packed once
   * per origin: the bytes a put of the array packs (a test reads them back),
   * without packing them for every key.
   */
  private dueValue(origin: string, leased: boolean): DueValue {
    let v = this.dueValues.get(origin);
    if (v === undefined) {
      if (this.dueValues.size >= MAX_DUE_VALUES) this.dueValues.clear();
      const { encoder } = this.due as unknown as { encoder: { encode(v: unknown): Uint8Array } };
      v = [asBinary(Buffer.from(encoder.encode([0, origin]))) as unknown as DueValue, asBinary(Buffer.from(encoder.encode([this.owner, origin]))) as unknown as DueValue];
      this.dueValues.set(origin, v);
    }
    return leased ? v[1] : v[0];
  }

  private track(p: Promise<unknown>): void {
    this.background.track(p);
  }
}

/** The completion callback's state for the status API: lastError only in its four tenant-visible forms. */
export function callbackView(state: CallbackState | { readonly state: 'done' }): { state: string; attempts?: number; lastError?: string } {
  if (state.state === 'done') return { state: 'done' };
  const lastError = state.lastError === undefined ? undefined : VISIBLE_ERROR.test(state.lastError) ? state.lastError : 'connection failed';
  return { state: state.state, attempts: state.attempts, ...(lastError !== undefined ? { lastError } : {}) };
}

function decrement(m: Map<string, number>, key: string): void {
  const n = (m.get(key) ?? 1) - 1;
  if (n <= 0) m.delete(key);
  else m.set(key, n);
}

/** Origins of callback URLs by their authority part (scheme://host:port): a URL is parsed once per host, not per message. */
const ORIGINS = new StringMemo('callback_origins', 1024, (authority) => {
  try {
    return new URL(authority).origin;
  } catch {
    return '';
  }
});

function originOf(url: string): string {
  const start = url.indexOf('//');
  let end = url.length;
  if (start >= 0) {
    for (let i = start + 2; i < url.length; i++) {
      const c = url.charCodeAt(i);
      if (c === 0x2f || c === 0x3f || c === 0x23 || c === 0x5c) { // / ? # \
        end = i;
        break;
      }
    }
  }
  return ORIGINS.get(url.slice(0, end));
}

/** Final recipients in a summary. */
function finalCount(s: Readonly<Record<RecipientState, number>>): number {
  let final = 0;
  for (const st of FINAL_STATES) final += s[st];
  return final;
}

/** A summary's JSON text, states in RECIPIENT_STATES order: what JSON.stringify of the object gives. */
export function summaryJson(s: Readonly<Record<RecipientState, number>>): string {
  let out = '{';
  for (let i = 0; i < RECIPIENT_STATES.length; i++) {
    const st = RECIPIENT_STATES[i] as RecipientState;
    out += `${i === 0 ? '' : ','}"${st}":${JSON.stringify(s[st])}`;
  }
  return `${out}}`;
}

/** The summary of a one-recipient message by the final state that completed it (packed once). */
const ONE_FINAL: Readonly<Partial<Record<string, string>>> = Object.fromEntries(
  FINAL_STATES.map((f) => [f, summaryJson(Object.fromEntries(RECIPIENT_STATES.map((s) => [s, s === f ? 1 : 0])) as Record<RecipientState, number>)]),
);

function carriedOf(msg: MessageRecord, summary: string): Carried | undefined {
  return msg.callbackUrl === undefined ? undefined : { tenant: msg.tenant, url: msg.callbackUrl, reference: msg.reference, recipients: msg.recipients, summary };
}

let isoAt = Number.NaN;
let isoText = '';

/** `new Date(at).toISOString()`, the last one kept (a turn's completions share their millisecond). */
function isoOf(at: number): string {
  if (at !== isoAt) {
    isoText = new Date(at).toISOString();
    isoAt = at;
  }
  return isoText;
}

/**
 * The callback's JSON text, written out: the same text as
 * JSON.stringify({ id, reference?, status: 'complete', recipients, summary, completedAt })
 * (a test compares them), without building the object.
 */
export function callbackBody(id: string, c: Omit<Carried, 'tenant' | 'url'>, completedAt: number): string {
  const ref = c.reference !== undefined ? `,"reference":${JSON.stringify(c.reference)}` : '';
  return `{"id":${JSON.stringify(id)}${ref},"status":"complete","recipients":${JSON.stringify(c.recipients)},"summary":${c.summary},"completedAt":"${isoOf(completedAt)}"}`;
}
