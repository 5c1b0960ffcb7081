/**
 * The embedded queue: JetStream work-queue semantics on one node, stored in
 * named databases of the LMDB environment the caller opened (the same one the
 * receipt store uses, so that a message's receipt rows and its jobs written in
 * the same event turn commit in the same LMDB transaction).
 *
 * Storage (all plain async puts/removes, so lmdb batches everything issued in
 * one event turn into one transaction; never `transactionSync`, which would
 * split that batch):
 *
 *   queue.entries.<tier>   seq → { s: subject, m: msgId, d: data, t: publishedAt }
 *   queue.delivered        seq → deliveries so far (written on every delivery, removed with the entry)
 *   queue.dedupe           msgId → [seq, publishedAt]
 *   queue.dedupe.expiry    [publishedAt, seq] → msgId     (lets the sweep expire the window in order)
 *   queue.dead             seq → dead letter, kept for inspection, oldest trimmed beyond a bound
 *   queue.meta             'seq' → highest sequence handed out
 *
 * Memory is bounded independently of the backlog: per tier, a cursor (the
 * highest seq ever handed out by this process), the entries at or below it
 * that are not yet acked (at most `maxAckPending`), a heap of those ready for
 * redelivery, and one heap of ack/nak deadlines. Opening reads O(tiers) rows.
 *
 * Why this layout:
 * - one database per tier, keyed by the stream-wide seq, so a tier's depth is
 *   LMDB's O(1) entry count at open and a counter afterwards;
 * - delivery counts live apart from the entries, so counting a delivery
 *   writes a few bytes instead of rewriting the job body; they are written for
 *   every delivery (one batched write per fetch, awaited to commit, not to
 *   flush) so that a job which crashes its process every time still reaches
 *   maxDeliver and is dead-lettered instead of crash-looping the gateway;
 * - fetch hands out only entries whose publish has been flushed, so nothing is
 *   sent for a publish that could still be lost.
 */
import type { Database, RootDatabase } from 'lmdb';
import { GatewayError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import type { DeadLetter, Delivery, DurableWrite, KeyClaim, KeyClaimAnswer, PublishResult, QueueMessage, QueueOptions, WorkQueue } from '../port.js';
import { MinHeap } from './min-heap.js';
import { envFlushed } from '../../storage/health.js';
import { entryCount } from '../../storage/entry-count.js';

export interface EmbeddedQueueConfig {
  /** The gateway's LMDB environment; the queue opens its named databases in it and never closes it. */
  readonly env: RootDatabase;
  readonly options: QueueOptions;
  readonly metrics?: Metrics;
  readonly logger?: Logger;
  /** Clock for deadlines and the duplicates window (epoch ms). */
  readonly now?: () => number;
  /** Dead letters kept in `queue.dead`; the oldest beyond this are trimmed by the sweep. Default 100,000. */
  readonly deadLetterRetention?: number;
}

/** Reason given to dead letters removed by the adapter after `maxDeliver` deliveries. */
export const MAX_DELIVER_REASON = 'maxDeliver';

/** Named databases the queue opens besides one per tier (size `maxDbs` accordingly). */
export const EMBEDDED_QUEUE_FIXED_DBS = 5;

/** LMDB keys are limited to ~2 KB; msgIds are job ids, far shorter. */
const MAX_MSG_ID_LENGTH = 512;
/** Rows one sweep run may touch, so a sweep never holds the event loop for long. */
const SWEEP_BATCH = 5_000;
const DEFAULT_DEAD_LETTER_RETENTION = 100_000;

interface StoredEntry {
  readonly s: string;
  readonly m: string;
  readonly d: Uint8Array;
  readonly t: number;
}

interface StoredDeadLetter extends DeadLetter {
  readonly seq: number;
  readonly at: number;
}

type DedupeRow = readonly [seq: number, publishedAt: number];

/**
 * An entry at or below its tier's cursor that is not acked yet.
 * `gen` changes on every state change; heap items carrying an older `gen` are stale.
 */
interface Pending {
  readonly seq: number;
  deliveryCount: number;
  state: 'inflight' | 'delayed' | 'ready' | 'dead';
  gen: number;
}

interface DeadlineItem {
  readonly at: number;
  readonly tier: TierState;
  readonly seq: number;
  readonly gen: number;
}

interface Waiter {
  readonly max: number;
  readonly resolve: (deliveries: Delivery[] | Promise<Delivery[]>) => void;
  timer: NodeJS.Timeout | undefined;
}

/** An accepted, not yet durable publish, so a repeat of its msgId is a duplicate before it commits. */
interface Publishing {
  readonly seq: number;
  durable: Promise<void>;
}

class TierState {
  /** Entries with seq ≤ cursor that are still stored; bounded by maxAckPending. */
  readonly pending = new Map<number, Pending>();
  /** Seqs of pending entries in state 'ready', lowest first (redelivered in stream order). */
  readonly ready = new MinHeap<number>((a, b) => a < b);
  /** Pending fetches, served first come first served (Set keeps insertion order). */
  readonly waiters = new Set<Waiter>();
  /** Highest seq this process has read from the tier; everything above it has never been delivered here. */
  cursor = 0;

  constructor(
    readonly name: string,
    readonly entries: Database<StoredEntry, number>,
    public depth: number,
  ) {}
}

const noop = (): void => undefined;

function lastKey(db: Database<unknown, number>): number {
  for (const key of db.getKeys({ reverse: true, limit: 1 })) return typeof key === 'number' ? key : 0;
  return 0;
}

function validateOptions(o: QueueOptions): void {
  const problems: string[] = [];
  if (o.tiers.length === 0) problems.push('tiers must not be empty');
  if (new Set(o.tiers).size !== o.tiers.length) problems.push('tiers must be unique');
  if (o.tiers.some((t) => t.length === 0 || t.length > 200)) problems.push('tier names must be 1..200 characters');
  if (!Number.isInteger(o.ackWaitMs) || o.ackWaitMs < 1) problems.push('ackWaitMs must be a positive integer');
  if (!Number.isInteger(o.maxDeliver) || o.maxDeliver < 1) problems.push('maxDeliver must be a positive integer');
  if (!Number.isInteger(o.maxAckPending) || o.maxAckPending < 1) problems.push('maxAckPending must be a positive integer');
  if (!Number.isFinite(o.duplicateWindowMs) || o.duplicateWindowMs < 0) problems.push('duplicateWindowMs must be ≥ 0');
  if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `embedded queue: ${problems.join('; ')}`);
}

class EmbeddedDelivery implements Delivery {
  private acked: Promise<void> | undefined;

  constructor(
    private readonly queue: EmbeddedQueue,
    private readonly state: TierState,
    readonly seq: number,
    readonly subject: string,
    readonly msgId: string,
    readonly data: Uint8Array,
    readonly deliveryCount: number,
  ) {}

  get tier(): string {
    return this.state.name;
  }

  ack(): Promise<void> {
    // A repeated ack returns the first one's promise: it resolves only when the removal is durable.
    this.acked ??= this.queue.ackEntry(this.state, this.seq);
    return this.acked;
  }

  nak(delayMs?: number): void {
    this.queue.nakEntry(this.state, this.seq, this.deliveryCount, delayMs ?? 0);
  }

  working(): void {
    this.queue.extendEntry(this.state, this.seq, this.deliveryCount);
  }

  term(reason: string): Promise<void> {
    return this.queue.termEntry(this.state, this.seq, reason);
  }
}

export class EmbeddedQueue implements WorkQueue {
  readonly kind = 'embedded' as const;
  /** One event turn: the writes of a turn share one LMDB commit anyway. */
  readonly lingerMs = 0;

  /** Rows, `after` records and jobs: same event turn, same LMDB environment → one transaction. */
  persistTogether(write: DurableWrite): Promise<void> {
    // Not async (one promise less per send); a throw is still a rejection.
    try {
      write.after();
      return Promise.all([write.rowsDurable(), write.publish()]).then(noop);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** One process per data dir: the send service's in-memory claims order a key's requests; nothing to share. */
  claimKey(_claim: KeyClaim): Promise<KeyClaimAnswer> {
    return Promise.resolve({ won: true });
  }

  private readonly tiers = new Map<string, TierState>();
  private readonly handlers: Array<(dl: DeadLetter) => void | Promise<void>> = [];
  /** Ack/nak deadlines of every tier; stale items are skipped lazily and shed when they dominate. */
  private readonly deadlines = new MinHeap<DeadlineItem>((a, b) => a.at < b.at);
  private readonly publishing = new Map<string, Publishing>();
  /** Removals (ack, dead letter) issued and not yet durable, by seq, so a second ack waits for the first. */
  private readonly removing = new Map<number, Promise<void>>();
  /** Writes close() waits for. */
  private readonly outstanding = new Set<Promise<unknown>>();

  private seq: number;
  private readonly seqAtOpen: number;
  /** Highest seq known flushed to disk; fetch never hands out anything above it. */
  private durableSeq: number;
  private closed = false;
  private closing: Promise<void> | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineTimerAt = Infinity;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private pendingTotal = 0;

  private constructor(
    private readonly env: RootDatabase,
    private readonly options: QueueOptions,
    private readonly delivered: Database<number, number>,
    private readonly dedupe: Database<DedupeRow, string>,
    private readonly dedupeExpiry: Database<string, [number, number]>,
    private readonly dead: Database<StoredDeadLetter, number>,
    private readonly meta: Database<number, string>,
    tierStates: readonly TierState[],
    seq: number,
    private readonly metrics: Metrics | undefined,
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly deadLetterRetention: number,
  ) {
    for (const ts of tierStates) {
      this.tiers.set(ts.name, ts);
      this.metrics?.queueDepth.set({ tier: ts.name }, ts.depth);
    }
    this.seq = seq;
    this.seqAtOpen = seq;
    this.durableSeq = seq;
    const sweepEvery = Math.min(Math.max(Math.floor(options.duplicateWindowMs / 10), 1_000), 60_000);
    this.sweepTimer = setInterval(() => this.sweep(), sweepEvery);
    this.sweepTimer.unref();
  }

  /**
   * Opens the queue's databases in `env` and restores its state in O(tiers)
   * reads: the highest sequence (meta row and the last key of each tier), and
   * depths from LMDB's per-database entry counts. Nothing is scanned.
   */
  // eslint-disable-next-line @typescript-eslint/require-await -- async like every queue's open(); async keeps a throw a rejection, as its callers expect
  static async open(config: EmbeddedQueueConfig): Promise<EmbeddedQueue> {
    const { env, options } = config;
    validateOptions(options);
    const retention = config.deadLetterRetention ?? DEFAULT_DEAD_LETTER_RETENTION;
    if (!Number.isInteger(retention) || retention < 0) {
      throw new GatewayError('CONFIG_INVALID', 'embedded queue: deadLetterRetention must be a non-negative integer');
    }
    try {
      const delivered = env.openDB<number, number>({ name: 'queue.delivered' });
      const dedupe = env.openDB<DedupeRow, string>({ name: 'queue.dedupe' });
      const dedupeExpiry = env.openDB<string, [number, number]>({ name: 'queue.dedupe.expiry' });
      const dead = env.openDB<StoredDeadLetter, number>({ name: 'queue.dead' });
      const meta = env.openDB<number, string>({ name: 'queue.meta' });
      let seq = meta.get('seq') ?? 0;
      const tiers = options.tiers.map((name) => {
        const entries = env.openDB<StoredEntry, number>({ name: `queue.entries.${name}` });
        seq = Math.max(seq, lastKey(entries));
        return new TierState(name, entries, entryCount(entries));
      });
      seq = Math.max(seq, lastKey(dead));
      return new EmbeddedQueue(
        env, options, delivered, dedupe, dedupeExpiry, dead, meta, tiers, seq,
        config.metrics, config.logger ?? createLogger({ level: 'silent' }), config.now ?? Date.now, retention,
      );
    } catch (e) {
      if (e instanceof GatewayError) throw e;
      const hint = String(e).includes('MDB_DBS_FULL')
        ? ` (the environment needs maxDbs ≥ ${options.tiers.length + EMBEDDED_QUEUE_FIXED_DBS} for the queue alone)`
        : '';
      throw new GatewayError('QUEUE_UNAVAILABLE', `embedded queue: cannot open its databases${hint}`, { cause: e });
    }
  }

  // ------------------------------------------------------------------ publish

  async publish(messages: readonly QueueMessage[]): Promise<PublishResult[]> {
    if (this.closed) throw new GatewayError('QUEUE_CLOSED');
    if (messages.length === 0) return [];
    this.assertWritable('publish');
    // Validate the whole call first, so a bad message fails it before anything is written.
    for (const m of messages) {
      this.tierOf(m.tier);
      if (typeof m.msgId !== 'string' || m.msgId.length === 0 || m.msgId.length > MAX_MSG_ID_LENGTH) {
        throw new GatewayError('VALIDATION', `queue msgId must be 1..${MAX_MSG_ID_LENGTH} characters`);
      }
    }
    const now = this.now();
    const cutoff = now - this.options.duplicateWindowMs;
    const results: PublishResult[] = [];
    const writes: Promise<boolean>[] = [];
    const mine: Array<[string, Publishing]> = [];
    const mineSet = new Set<Publishing>();
    const waitFor: Promise<void>[] = [];
    /** New entries per tier, to undo the depth counts if the write fails. */
    const touched = new Map<TierState, number>();
    try {
      // Everything below is issued synchronously, so it lands in one LMDB
      // transaction together with whatever else the caller writes this turn.
      for (const m of messages) {
        const ts = this.tierOf(m.tier);
        const inFlight = this.publishing.get(m.msgId);
        if (inFlight !== undefined) {
          results.push({ msgId: m.msgId, seq: inFlight.seq, duplicate: true });
          if (!mineSet.has(inFlight)) waitFor.push(inFlight.durable);
          continue;
        }
        const row = this.dedupe.get(m.msgId);
        if (row !== undefined && row[1] > cutoff) {
          results.push({ msgId: m.msgId, seq: row[0], duplicate: true });
          continue;
        }
        const seq = ++this.seq;
        writes.push(ts.entries.put(seq, { s: m.subject, m: m.msgId, d: m.data, t: now }));
        writes.push(this.dedupe.put(m.msgId, [seq, now]));
        writes.push(this.dedupeExpiry.put([now, seq], m.msgId));
        const p: Publishing = { seq, durable: Promise.resolve() };
        this.publishing.set(m.msgId, p);
        mine.push([m.msgId, p]);
        mineSet.add(p);
        ts.depth++;
        touched.set(ts, (touched.get(ts) ?? 0) + 1);
        results.push({ msgId: m.msgId, seq, duplicate: false });
      }
      if (mine.length > 0) writes.push(this.meta.put('seq', this.seq));
    } catch (e) {
      // lmdb throws synchronously only when the environment is closed, in which case nothing issued commits.
      this.abandonPublish(mine, touched);
      throw new GatewayError('QUEUE_UNAVAILABLE', 'queue publish could not be written', { cause: e });
    }
    // Commit promises resolve when the transaction is visible; with overlappingSync
    // the fsync comes later, and `flushed` (taken now, for this transaction) covers
    // it. One flush serves every publish that shares the transaction.
    // (Unconditional puts of one transaction share one promise: wait for each once.)
    const durable = Promise.all([...new Set(writes), this.flushed()]).then(noop);
    for (const [, p] of mine) p.durable = durable;
    this.track(durable);
    const lastSeq = this.seq;
    for (const ts of touched.keys()) this.metrics?.queueDepth.set({ tier: ts.name }, ts.depth);
    try {
      await durable;
    } catch (e) {
      this.abandonPublish(mine, touched);
      throw new GatewayError('QUEUE_UNAVAILABLE', 'queue publish failed to commit', { cause: e });
    } finally {
      for (const [msgId, p] of mine) if (this.publishing.get(msgId) === p) this.publishing.delete(msgId);
    }
    // Transactions commit and flush in order, so everything up to lastSeq is durable now.
    if (lastSeq > this.durableSeq) this.durableSeq = lastSeq;
    for (const ts of touched.keys()) this.wake(ts);
    if (waitFor.length > 0) {
      try {
        await Promise.all(waitFor);
      } catch (e) {
        throw new GatewayError('QUEUE_UNAVAILABLE', 'the original of a duplicate msgId failed to commit', { cause: e });
      }
    }
    return results;
  }

  /** A failed transaction commits none of its writes: forget the msgIds and the depth counted for them. */
  private abandonPublish(mine: ReadonlyArray<[string, Publishing]>, touched: ReadonlyMap<TierState, number>): void {
    for (const [msgId, p] of mine) if (this.publishing.get(msgId) === p) this.publishing.delete(msgId);
    for (const [ts, n] of touched) {
      ts.depth -= n;
      this.metrics?.queueDepth.set({ tier: ts.name }, ts.depth);
    }
  }

  // ------------------------------------------------------------------ fetch

  async fetch(tier: string, max: number, waitMs: number): Promise<Delivery[]> {
    const ts = this.tierOf(tier);
    if (this.closed) return [];
    const n = Math.floor(max);
    if (!(n >= 1)) return [];
    const taken = this.take(ts, n);
    if (taken !== undefined) return taken;
    if (!(waitMs > 0)) return [];
    return new Promise<Delivery[]>((resolve) => {
      const waiter: Waiter = { max: n, resolve, timer: undefined };
      waiter.timer = setTimeout(() => {
        ts.waiters.delete(waiter);
        resolve([]);
      }, waitMs);
      ts.waiters.add(waiter);
    });
  }

  /**
   * Reserves up to `max` deliveries synchronously (redeliveries first, then new
   * entries after the cursor), records their delivery counts in one batched
   * write, and hands them out once that write commits, so a count survives a
   * crash of this process while a consumer works on the entry (that is what
   * dead-letters a message that crashes its consumer every time). Returns
   * undefined when nothing is available.
   */
  private take(ts: TierState, max: number): Promise<Delivery[]> | undefined {
    const out: EmbeddedDelivery[] = [];
    while (out.length < max) {
      const seq = ts.ready.pop();
      if (seq === undefined) break;
      const p = ts.pending.get(seq);
      if (p === undefined || p.state !== 'ready') continue;
      if (p.deliveryCount >= this.options.maxDeliver) {
        // Only after a failed ack put it back; there is no delivery left for it.
        this.deadLetter(ts, p, undefined, MAX_DELIVER_REASON).catch(noop);
        continue;
      }
      const value = ts.entries.get(seq);
      if (value === undefined) {
        // Cannot happen while this process is the only writer; do not hold a slot for it.
        this.logger.error({ tier: ts.name, seq }, 'pending queue entry missing from storage; dropped');
        this.dropPending(ts, seq);
        continue;
      }
      p.deliveryCount++;
      this.toInflight(ts, p);
      out.push(new EmbeddedDelivery(this, ts, seq, value.s, value.m, value.d, p.deliveryCount));
    }
    const room = Math.min(max - out.length, this.options.maxAckPending - ts.pending.size);
    if (room > 0 && ts.cursor < this.durableSeq) {
      for (const { key, value } of ts.entries.getRange({ start: ts.cursor + 1, end: this.durableSeq + 1, limit: room })) {
        ts.cursor = key;
        // Only entries older than this process can have been delivered before.
        const prior = key <= this.seqAtOpen ? (this.delivered.get(key) ?? 0) : 0;
        const p: Pending = { seq: key, deliveryCount: prior, state: 'ready', gen: 0 };
        ts.pending.set(key, p);
        this.pendingTotal++;
        if (prior >= this.options.maxDeliver) {
          // Delivered maxDeliver times by an earlier process that never acked (it crashed each time).
          this.deadLetter(ts, p, value, MAX_DELIVER_REASON).catch(noop);
          continue;
        }
        p.deliveryCount = prior + 1;
        this.toInflight(ts, p);
        out.push(new EmbeddedDelivery(this, ts, key, value.s, value.m, value.d, p.deliveryCount));
      }
    }
    if (out.length === 0) return undefined;
    let committed: Promise<boolean> = Promise.resolve(true);
    try {
      this.assertWritable('delivery count');
      for (const d of out) committed = this.delivered.put(d.seq, d.deliveryCount);
    } catch (e) {
      committed = Promise.reject(e);
    }
    this.armDeadlineTimer();
    return committed.then(
      () => (this.closed ? [] : out),
      (e: unknown) => {
        // Work goes on without a persisted count; only the crash-loop protection is weaker.
        this.logger.error({ err: e, tier: ts.name }, 'queue delivery counts could not be written');
        return this.closed ? [] : out;
      },
    );
  }

  /** Serves waiting fetches of a tier, oldest first, while there is something to hand out. */
  private wake(ts: TierState): void {
    if (this.closed) return;
    for (const w of ts.waiters) {
      const taken = this.take(ts, w.max);
      if (taken === undefined) break;
      ts.waiters.delete(w);
      clearTimeout(w.timer);
      w.resolve(taken);
    }
  }

  // ------------------------------------------------------------------ delivery answers

  /** @internal Delivery.ack */
  ackEntry(ts: TierState, seq: number): Promise<void> {
    const inProgress = this.removing.get(seq);
    if (inProgress !== undefined) return inProgress;
    const p = ts.pending.get(seq);
    // Not pending: already removed durably (acked, or dead-lettered) — nothing left to do.
    if (p === undefined) return Promise.resolve();
    let written: Promise<unknown>;
    try {
      this.assertWritable('ack');
      written = Promise.all([ts.entries.remove(seq), this.delivered.remove(seq), this.flushed()]);
    } catch (e) {
      return Promise.reject(e instanceof GatewayError ? e : new GatewayError(this.closed ? 'QUEUE_CLOSED' : 'QUEUE_UNAVAILABLE', 'queue ack could not be written', { cause: e }));
    }
    this.dropPending(ts, seq);
    ts.depth--;
    this.metrics?.queueDepth.set({ tier: ts.name }, ts.depth);
    const done = written.then(
      () => {
        this.removing.delete(seq);
      },
      (e: unknown) => {
        this.removing.delete(seq);
        // Still stored: take it back so this process redelivers it.
        this.logger.error({ err: e, tier: ts.name, seq }, 'queue ack failed to commit; entry will be redelivered');
        ts.depth++;
        this.metrics?.queueDepth.set({ tier: ts.name }, ts.depth);
        if (!ts.pending.has(seq)) {
          ts.pending.set(seq, { seq, deliveryCount: p.deliveryCount, state: 'ready', gen: p.gen + 1 });
          this.pendingTotal++;
          ts.ready.push(seq);
          this.wake(ts);
        }
        throw new GatewayError('QUEUE_UNAVAILABLE', 'queue ack failed to commit', { cause: e });
      },
    );
    this.removing.set(seq, done);
    this.track(done);
    this.wake(ts); // a slot under maxAckPending is free
    return done;
  }

  /** @internal Delivery.nak — acts on the current delivery only. */
  nakEntry(ts: TierState, seq: number, deliveryCount: number, delayMs: number): void {
    if (this.closed) return;
    const p = ts.pending.get(seq);
    if (p === undefined || p.deliveryCount !== deliveryCount || p.state !== 'inflight') return;
    if (p.deliveryCount >= this.options.maxDeliver) {
      // There will be no further delivery: dead-letter now rather than after the delay.
      this.deadLetter(ts, p, undefined, MAX_DELIVER_REASON).catch(noop);
      return;
    }
    const delay = Number.isFinite(delayMs) && delayMs > 0 ? delayMs : 0;
    p.gen++;
    if (delay === 0) {
      p.state = 'ready';
      ts.ready.push(seq);
      this.wake(ts);
    } else {
      p.state = 'delayed';
      this.pushDeadline({ at: this.now() + delay, tier: ts, seq, gen: p.gen });
      this.armDeadlineTimer();
    }
  }

  /** @internal Delivery.working — acts on the current delivery only. */
  extendEntry(ts: TierState, seq: number, deliveryCount: number): void {
    if (this.closed) return;
    const p = ts.pending.get(seq);
    if (p === undefined || p.deliveryCount !== deliveryCount || p.state !== 'inflight') return;
    this.toInflight(ts, p);
    this.armDeadlineTimer();
  }

  /** @internal Delivery.term */
  termEntry(ts: TierState, seq: number, reason: string): Promise<void> {
    const inProgress = this.removing.get(seq);
    if (inProgress !== undefined) return inProgress;
    const p = ts.pending.get(seq);
    if (p === undefined) return Promise.resolve();
    return this.deadLetter(ts, p, undefined, reason);
  }

  onDeadLetter(handler: (dl: DeadLetter) => void | Promise<void>): void {
    this.handlers.push(handler);
  }

  /**
   * Hands the entry to the dead-letter handlers first, then removes it and
   * keeps a copy in `queue.dead`, durably. A crash in between redelivers it
   * (its persisted count makes the next process dead-letter it again), so the
   * handlers see every dead letter at least once. A handler failure is logged
   * and the entry still moves to `queue.dead`, where it stays for inspection.
   */
  private deadLetter(ts: TierState, p: Pending, stored: StoredEntry | undefined, reason: string): Promise<void> {
    const seq = p.seq;
    try {
      this.assertWritable('dead letter');
    } catch (e) {
      return Promise.reject(e);
    }
    p.state = 'dead';
    p.gen++;
    const value = stored ?? ts.entries.get(seq);
    const work = (async () => {
      // Handlers never run inside the caller's stack (a fetch, a nak, a timer sweep).
      await Promise.resolve();
      if (value === undefined) throw new Error(`entry ${seq} missing from queue.entries.${ts.name}`);
      const dl: DeadLetter = { subject: value.s, tier: ts.name, msgId: value.m, data: value.d, deliveryCount: p.deliveryCount, reason };
      for (const handler of this.handlers) {
        try {
          await handler(dl);
        } catch (e) {
          this.logger.error({ err: e, tier: ts.name, msgId: dl.msgId, seq }, 'dead-letter handler failed; the entry is kept in queue.dead');
        }
      }
      await Promise.all([
        ts.entries.remove(seq),
        this.delivered.remove(seq),
        this.dead.put(seq, { ...dl, seq, at: this.now() }),
        this.flushed(),
      ]);
      return dl;
    })();
    const done = work.then(
      (dl) => {
        this.removing.delete(seq);
        this.dropPending(ts, seq);
        ts.depth--;
        this.metrics?.queueDepth.set({ tier: ts.name }, ts.depth);
        this.metrics?.queueDeadLetters.inc({ tier: ts.name });
        this.logger.warn({ tier: ts.name, msgId: dl.msgId, seq, deliveryCount: dl.deliveryCount, reason }, 'queue entry dead-lettered');
        this.wake(ts);
      },
      (e: unknown) => {
        this.removing.delete(seq);
        // It keeps its slot in state 'dead': not redelivered by this process; an ack
        // still removes it, and a restart dead-letters it again.
        this.logger.error({ err: e, tier: ts.name, seq, reason }, 'queue dead letter could not be written');
        throw new GatewayError(this.closed ? 'QUEUE_CLOSED' : 'QUEUE_UNAVAILABLE', 'queue dead letter could not be written', { cause: e });
      },
    );
    this.removing.set(seq, done);
    this.track(done);
    return done;
  }

  // ------------------------------------------------------------------ deadlines

  private toInflight(ts: TierState, p: Pending): void {
    p.state = 'inflight';
    p.gen++;
    this.pushDeadline({ at: this.now() + this.options.ackWaitMs, tier: ts, seq: p.seq, gen: p.gen });
  }

  private pushDeadline(item: DeadlineItem): void {
    this.deadlines.push(item);
    // working() and nak() leave stale items behind; shed them before they dominate.
    if (this.deadlines.size > 2 * this.pendingTotal + 1024) {
      this.deadlines.retain((d) => d.tier.pending.get(d.seq)?.gen === d.gen);
      this.deadlineTimerAt = Infinity;
      if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
      this.deadlineTimer = undefined;
    }
  }

  private armDeadlineTimer(): void {
    const top = this.deadlines.peek();
    if (top === undefined || this.closed) return;
    if (this.deadlineTimer !== undefined && this.deadlineTimerAt <= top.at) return;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineTimerAt = top.at;
    this.deadlineTimer = setTimeout(() => this.onDeadlines(), Math.max(1, top.at - this.now()));
    this.deadlineTimer.unref();
  }

  private onDeadlines(): void {
    this.deadlineTimer = undefined;
    this.deadlineTimerAt = Infinity;
    if (this.closed) return;
    const now = this.now();
    const woken = new Set<TierState>();
    for (let top = this.deadlines.peek(); top !== undefined && top.at <= now; top = this.deadlines.peek()) {
      this.deadlines.pop();
      const ts = top.tier;
      const p = ts.pending.get(top.seq);
      if (p === undefined || p.gen !== top.gen) continue;
      if (p.state === 'inflight' && p.deliveryCount >= this.options.maxDeliver) {
        this.deadLetter(ts, p, undefined, MAX_DELIVER_REASON).catch(noop);
        continue;
      }
      if (p.state !== 'inflight' && p.state !== 'delayed') continue;
      p.state = 'ready';
      p.gen++;
      ts.ready.push(p.seq);
      woken.add(ts);
    }
    this.armDeadlineTimer();
    for (const ts of woken) this.wake(ts);
  }

  private dropPending(ts: TierState, seq: number): void {
    if (ts.pending.delete(seq)) this.pendingTotal--;
  }

  // ------------------------------------------------------------------ sweep

  /**
   * Bounded housekeeping: expires de-duplication rows older than the window
   * (in publish order, via queue.dedupe.expiry) and trims queue.dead beyond
   * its retention. At most SWEEP_BATCH rows a run; when a run is full the
   * next follows right after its commit. Losing a sweep in a crash only
   * delays expiry, so it waits for the commit, not the flush.
   */
  private sweep(): void {
    if (this.sweeping || this.closed) return;
    this.sweeping = true;
    let full = false;
    let run: Promise<unknown>;
    try {
      this.assertWritable('sweep');
      const writes: Promise<boolean>[] = [];
      const cutoff = this.now() - this.options.duplicateWindowMs;
      let n = 0;
      for (const { key, value: msgId } of this.dedupeExpiry.getRange({ end: [cutoff], limit: SWEEP_BATCH })) {
        n++;
        writes.push(this.dedupeExpiry.remove(key));
        // A re-publish after expiry owns the row now (or will once it commits): leave it.
        if (this.publishing.has(msgId)) continue;
        const row = this.dedupe.get(msgId);
        if (row !== undefined && row[0] === key[1]) writes.push(this.dedupe.remove(msgId));
      }
      full = n === SWEEP_BATCH;
      const excess = entryCount(this.dead) - this.deadLetterRetention;
      if (excess > 0) {
        for (const key of this.dead.getKeys({ limit: Math.min(excess, SWEEP_BATCH) })) writes.push(this.dead.remove(key));
        full ||= excess > SWEEP_BATCH;
      }
      run = Promise.all(writes);
    } catch (e) {
      run = Promise.reject(e);
    }
    const done = run.then(
      () => {
        this.sweeping = false;
        if (full && !this.closed) setImmediate(() => this.sweep());
      },
      (e: unknown) => {
        this.sweeping = false;
        this.logger.error({ err: e }, 'queue sweep failed; retried at the next interval');
      },
    );
    this.track(done);
  }

  // ------------------------------------------------------------------ the rest

  // eslint-disable-next-line @typescript-eslint/require-await -- implements the async Queue interface; async keeps a throw a rejection, as its callers expect (unknown tier)
  async depth(tier: string): Promise<number> {
    return this.tierOf(tier).depth;
  }

  /** Deliveries of a tier handed out and not acked, including those waiting for redelivery (≤ maxAckPending). */
  ackPending(tier: string): number {
    return this.tierOf(tier).pending.size;
  }

  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const ts of this.tiers.values()) {
      for (const w of ts.waiters) {
        clearTimeout(w.timer);
        w.resolve([]);
      }
      ts.waiters.clear();
    }
    this.deadlines.clear();
    // Let issued writes (publishes, acks, dead letters) finish before the owner closes the environment.
    this.closing = Promise.allSettled([...this.outstanding]).then(noop);
    return this.closing;
  }

  /**
   * Resolves when everything written so far is on disk. Taken right after the
   * writes are issued: lmdb's `flushed` thenable follows the latest
   * transaction, so taking it later could only wait for a later flush.
   */
  private flushed(): Promise<void> {
    return envFlushed(this.env);
  }

  /**
   * lmdb fails a write to a named database of a closed environment only later,
   * as an uncaught exception on its write thread callback; refuse it here instead.
   */
  private assertWritable(what: string): void {
    const status = (this.env as { status?: unknown }).status;
    if (status === 'closing' || status === 'closed') {
      throw new GatewayError(this.closed ? 'QUEUE_CLOSED' : 'QUEUE_UNAVAILABLE', `queue ${what}: the LMDB environment is closed`);
    }
  }

  private tierOf(tier: string): TierState {
    const ts = this.tiers.get(tier);
    if (ts === undefined) throw new GatewayError('VALIDATION', `unknown queue tier "${tier}"`);
    return ts;
  }

  private track(p: Promise<unknown>): void {
    const settled = p.then(noop, noop);
    this.outstanding.add(settled);
    void settled.then(() => this.outstanding.delete(settled));
  }
}
