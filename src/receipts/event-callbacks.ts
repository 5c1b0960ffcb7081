/**
 * Per-recipient status events (`statusCallback: { url, events }` on a send):
 * many events per signed POST, a JSON array (like Aliyun's SmsReport):
 *
 *   [ { "messageId", "reference"?, "index", "to", "event": "submitted"|"final",
 *       "state", "error"?, "at" }, … ]
 *
 * The receipt store writes each event in the transaction that changes the
 * recipient (store.ts emitEvents; layout in records.ts):
 *
 *   receipts.events        [dest, lane, seq] → event     one recipient: one lane, seq order = order of change
 *   receipts.events.lanes  [dest, lane]      → { attempts, nextAt, lease owner/until, lastError }
 *   receipts.events.failed messageId         → { events given up, lastError }
 *
 * A lane is sent strictly in key order, one batch at a time (ordered per
 * recipient): a batch is the lane's first ≤ maxBatch events, sent once the
 * lane holds maxBatch events or its oldest has waited lingerMs:
 *
 *   lane ──claim (lease, one txn)──▶ POST head batch ──2xx──▶ remove those keys (one txn) ─▶ next batch
 *                                         │ error, attempts left: lane waits back-off, same head again
 *                                         └ last attempt: keys removed, counted failed per message
 *
 * Durable: events are rows until acknowledged; a restart finds them again
 * (the tick's skip-scan over the lanes). A process that dies mid-POST leaves
 * its lease, which expires after timeout + margin: events are never lost,
 * at worst a batch is repeated once after a crash.
 *
 * Bounds: `concurrency` POSTs in flight (each one lane), MAX_TRACKED lanes
 * known in memory (beyond it the tick's scan finds the rest), maxBatch events
 * per POST; the backlog waits on disk.
 */
import type { Database, RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import type { Metrics } from '../telemetry/metrics.js';
import { Background } from './background.js';
import type { EventKey, LaneKey, StoredEvent, StoredEventFailure, StoredLane } from './records.js';
import type { WebhookPoster } from './status-callbacks.js';
import type { ReceiptStore } from './store.js';
import { entryCount } from '../storage/entry-count.js';

export interface EventCallbackOptions {
  readonly env: RootDatabase;
  readonly store: ReceiptStore;
  readonly webhooks: WebhookPoster;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** POST attempts of a batch before its events are given up (counted failed). */
  readonly attempts: number;
  /** One POST's timeout (the lease is this plus a margin). */
  readonly timeoutMs: number;
  /** POSTs (lanes) in flight at once. */
  readonly concurrency: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  /** Events per POST at most. */
  readonly maxBatch: number;
  /** How long the oldest event of a lane may wait for the batch to fill. */
  readonly lingerMs: number;
  /** Timer for the scan over lanes (restart, other processes, retries). Default 500 ms. */
  readonly tickMs?: number;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** Lanes known in memory at most (beyond it the tick's scan over the table finds them). */
export const MAX_TRACKED = 10_000;
/** Lanes one tick's scan visits at most (it continues from there on the next tick). */
const SCAN_LANES_PER_TICK = 5_000;
/** Lease margin beyond the POST timeout. */
const LEASE_MARGIN_MS = 30_000;

interface Lane {
  readonly dest: string;
  readonly lane: number;
  /** Events noticed since the last batch (approximate: another process's events are not counted). */
  count: number;
  /** Epoch ms of the oldest event not yet sent (as far as known). */
  firstAt: number;
  /** Not before (back-off, or another process's lease). */
  notBefore: number;
}

export class EventCallbacks {
  private readonly events: Database<StoredEvent, EventKey>;
  private readonly lanes: Database<StoredLane, LaneKey>;
  private readonly failures: Database<StoredEventFailure, string>;
  private readonly tracked = new Map<string, Lane>();
  private readonly busy = new Set<string>();
  private inflight = 0;
  private pumpScheduled = false;
  private wake: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private scanFrom: LaneKey | undefined;
  private closed = false;
  private readonly background: Background;
  private readonly owner = process.pid;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly eventsOut: Counter<'outcome'>;
  private readonly posts: Counter<'outcome'>;
  private readonly waitingGauge: Gauge;
  private readonly trackedGauge: Gauge;
  private readonly inflightGauge: Gauge;

  constructor(private readonly o: EventCallbackOptions) {
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.background = new Background(o.logger, 'status event step failed');
    this.events = o.store.events;
    this.failures = o.store.eventFailures;
    this.lanes = o.env.openDB<StoredLane, LaneKey>({ name: 'receipts.events.lanes', encoding: 'msgpack' });
    this.eventsOut = o.metrics.statusEventCallbacks;
    this.posts = o.metrics.statusEventPosts;
    this.waitingGauge = o.metrics.statusEventCallbacksWaiting;
    this.trackedGauge = o.metrics.statusEventLanesTracked;
    this.inflightGauge = o.metrics.statusEventPostsInflight;
    o.store.onEvents((lanes) => this.onEvents(lanes));
  }

  start(): void {
    if (this.closed) return;
    this.background.start(() => this.tick(), this.o.tickMs ?? 500);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.wake) clearTimeout(this.wake);
    this.wake = undefined;
    await this.background.stop();
  }

  /** The scan over the lanes on disk (finds lanes not tracked: restart, other processes), gauges, then a pump. */
  tick(): void {
    if (this.closed) return;
    try {
      this.scan();
      this.waitingGauge.set(entryCount(this.events));
      this.trackedGauge.set(this.tracked.size);
    } catch (e) {
      this.o.logger.error({ err: e }, 'status event scan failed');
    }
    this.schedulePump();
  }

  /** After a commit that wrote events: the lanes that got them (a hint; the table is the truth). */
  private onEvents(lanes: ReadonlyMap<string, readonly [string, number, number]>): void {
    if (this.closed) return;
    const now = this.now();
    for (const [lk, [dest, lane, n]] of lanes) {
      const t = this.tracked.get(lk);
      if (t !== undefined) {
        t.firstAt = Math.min(t.firstAt, now);
        t.count += n;
      } else if (this.tracked.size < MAX_TRACKED) {
        this.tracked.set(lk, { dest, lane, count: n, firstAt: now, notBefore: 0 });
      }
    }
    this.schedulePump();
  }

  /**
   * Skip-scan: the first key of every lane, from where the last scan stopped
   * (at most SCAN_LANES_PER_TICK lanes). Lanes not tracked are tracked with
   * their head event's time (sent once it has lingered).
   */
  private scan(): void {
    let from: EventKey | LaneKey | undefined = this.scanFrom;
    let visited = 0;
    for (;;) {
      if (visited >= SCAN_LANES_PER_TICK) {
        this.scanFrom = from;
        return;
      }
      let head: { key: EventKey; value: StoredEvent } | undefined;
      for (const e of this.events.getRange(from === undefined ? { limit: 1 } : { start: from, limit: 1 })) head = e;
      if (head === undefined) break;
      visited++;
      const [dest, lane] = head.key;
      const lk = laneId(dest, lane);
      const t = this.tracked.get(lk);
      if (t === undefined) {
        if (this.tracked.size < MAX_TRACKED) this.tracked.set(lk, { dest, lane, count: 0, firstAt: head.value.a, notBefore: 0 });
      } else if (t.count === 0 && !this.busy.has(lk)) {
        t.firstAt = Math.min(t.firstAt, head.value.a);
      }
      from = [dest, lane + 1];
    }
    this.scanFrom = undefined;
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Starts a batch on every lane that is ready (full, or lingered), while POSTs are free; arms the linger timer. */
  private pump(): void {
    if (this.closed) return;
    const now = this.now();
    let next = Infinity;
    for (const [lk, t] of this.tracked) {
      if (this.inflight >= this.o.concurrency) break;
      if (this.busy.has(lk)) continue;
      const due = Math.max(t.notBefore, t.count >= this.o.maxBatch ? 0 : t.firstAt + this.o.lingerMs);
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      this.busy.add(lk);
      this.inflight++;
      this.inflightGauge.set(this.inflight);
      this.track(this.send(lk, t));
    }
    if (next !== Infinity) this.armWake(next - now);
  }

  private armWake(ms: number): void {
    const at = this.now() + Math.max(1, ms);
    if (this.wake !== undefined && this.wakeAt <= at) return;
    if (this.wake !== undefined) clearTimeout(this.wake);
    this.wakeAt = at;
    this.wake = setTimeout(() => {
      this.wake = undefined;
      this.wakeAt = Infinity;
      this.schedulePump();
    }, Math.max(1, ms));
    this.wake.unref();
  }

  /** One batch of one lane: lease, POST, outcome. The lane stays busy in this process until the outcome commits. */
  private async send(lk: string, t: Lane): Promise<void> {
    const key: LaneKey = [t.dest, t.lane];
    let next: 'more' | 'empty' | 'later' = 'later';
    try {
      const now = this.now();
      const leaseUntil = now + this.o.timeoutMs + LEASE_MARGIN_MS;
      const claimed = await this.o.env.transaction(() => {
        const s = this.lanes.get(key);
        if (s !== undefined && s.o !== undefined && s.o !== this.owner && (s.l ?? 0) > now) return { ok: false as const, until: s.l ?? now };
        if (s !== undefined && s.x > now) return { ok: false as const, until: s.x };
        this.lanes.putSync(key, { a: s?.a ?? 0, x: s?.x ?? 0, o: this.owner, l: leaseUntil, ...(s?.e !== undefined ? { e: s.e } : {}) });
        return { ok: true as const, attempts: s?.a ?? 0 };
      });
      if (!claimed.ok) {
        t.notBefore = claimed.until;
        return;
      }
      const batch: Array<{ key: EventKey; value: StoredEvent }> = [];
      for (const e of this.events.getRange({ start: [t.dest, t.lane], end: [t.dest, t.lane + 1], limit: this.o.maxBatch })) batch.push(e);
      if (batch.length === 0) {
        await this.o.env.transaction(() => {
          const s = this.lanes.get(key);
          if (s?.o === this.owner && s.l === leaseUntil) this.lanes.removeSync(key);
        });
        next = 'empty';
        return;
      }
      const body = this.body(batch);
      const tenant = batch[0]!.value.t;
      const url = this.urlOf(batch[0]!.value.m);
      const error = url === undefined ? 'refused target' : await this.o.webhooks.post(tenant, url, body);
      const after = this.now();
      const outcome = await this.o.env.transaction(() => {
        const s = this.lanes.get(key);
        if (s === undefined || s.o !== this.owner || s.l !== leaseUntil) return 'lost' as const; // our lease expired and another process took the lane
        if (error === undefined) {
          for (const e of batch) this.events.removeSync(e.key);
          this.lanes.removeSync(key);
          return 'delivered' as const;
        }
        const attempts = claimed.attempts + 1;
        if (attempts >= this.o.attempts) {
          const byMessage = new Map<string, number>();
          for (const e of batch) {
            this.events.removeSync(e.key);
            byMessage.set(e.value.m, (byMessage.get(e.value.m) ?? 0) + 1);
          }
          for (const [m, n] of byMessage) {
            const f = this.failures.get(m);
            this.failures.putSync(m, { f: (f?.f ?? 0) + n, e: error, a: after });
          }
          this.lanes.removeSync(key);
          return 'failed' as const;
        }
        const base = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** (attempts - 1));
        const x = after + Math.round(base * (0.8 + 0.4 * this.random()));
        this.lanes.putSync(key, { a: attempts, x, e: error });
        t.notBefore = x;
        return 'retry' as const;
      });
      if (outcome === 'delivered' || outcome === 'failed') {
        this.posts.inc({ outcome });
        this.eventsOut.inc({ outcome }, batch.length);
        if (outcome === 'failed') this.o.logger.warn({ events: batch.length, attempts: this.o.attempts, error }, 'status events given up');
        t.count = Math.max(0, t.count - batch.length);
        next = batch.length >= this.o.maxBatch ? 'more' : 'later';
      } else if (outcome === 'retry') {
        this.posts.inc({ outcome });
      }
    } catch (e) {
      // The lease stays: the lane falls due again after it.
      this.o.logger.error({ err: e }, 'status event batch failed; retried after its lease');
      t.notBefore = this.now() + this.o.timeoutMs + LEASE_MARGIN_MS;
    } finally {
      this.busy.delete(lk);
      this.inflight--;
      this.inflightGauge.set(this.inflight);
      this.afterBatch(lk, t, next);
      this.schedulePump();
    }
  }

  /** After a batch: the lane's new head decides when it is next ready (a full backlog goes at once). */
  private afterBatch(lk: string, t: Lane, next: 'more' | 'empty' | 'later'): void {
    if (next === 'empty' && t.count === 0) {
      this.tracked.delete(lk);
      return;
    }
    let head: StoredEvent | undefined;
    for (const e of this.events.getRange({ start: [t.dest, t.lane], end: [t.dest, t.lane + 1], limit: 1 })) head = e.value;
    if (head === undefined) {
      if (t.count === 0) this.tracked.delete(lk);
      return;
    }
    t.firstAt = head.a;
    if (next === 'more') t.count = Math.max(t.count, this.o.maxBatch);
  }

  private urlOf(messageId: string): string | undefined {
    return this.o.store.getMessage(messageId)?.statusCallback?.url;
  }

  private body(batch: ReadonlyArray<{ value: StoredEvent }>): string {
    const refs = new Map<string, string | undefined>();
    const items = batch.map(({ value: e }) => {
      let ref = refs.get(e.m);
      if (!refs.has(e.m)) {
        ref = this.o.store.getMessage(e.m)?.reference;
        refs.set(e.m, ref);
      }
      return {
        messageId: e.m, ...(ref !== undefined ? { reference: ref } : {}), index: e.i, to: e.n, event: e.v, state: e.s,
        ...(e.e !== undefined ? { error: e.e } : {}), at: new Date(e.a).toISOString(),
      };
    });
    return JSON.stringify(items);
  }

  private track(p: Promise<unknown>): void {
    this.background.track(p);
  }
}

function laneId(dest: string, lane: number): string {
  return `${dest}\u0000${lane}`;
}
