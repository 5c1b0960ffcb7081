/**
 * Completion callbacks: a message sent with `callbackUrl` gets one POST
 * there when every recipient has reached a final state:
 *
 *   { "id", "reference"?, "status": "complete", "recipients", "summary": { delivered, undeliverable, expired, rejected, failed, … }, "completedAt" }
 *
 * The waiting row (`receipts.callbacks`) is written with the message row, in
 * the same transaction, so a callback survives any crash: a message is
 * checked when the recipients seen turning final (counted from the store's
 * onFinal, bounded) reach its recipient count, and by a slow round-robin
 * scan of the waiting rows (after a restart, when the counts are gone).
 * A POST that fails (non-2xx, timeout) is retried with back-off, at most
 * `attempts` times; then the row stays as `failed` with the last error
 * (shown by GET /v1/messages/{id}) — a final state, not a silent drop.
 */
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { FINAL_STATES, RECIPIENT_STATES, type RecipientState } from '../core/message.js';
import { maskNumber } from '../core/phone.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ReceiptStore } from './store.js';
import { postCallback } from './callback-post.js';

export interface StatusCallbackOptions {
  readonly store: ReceiptStore;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** POST attempts before the callback is recorded failed. */
  readonly attempts: number;
  readonly timeoutMs: number;
  readonly tickMs?: number;
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
}

/** Messages whose final recipients are counted in memory. */
const MAX_COUNTED = 10_000;
/** Rows the slow round-robin scan checks (a full summary each) per pass. */
const SCAN_PER_PASS = 200;
/** Ticks between passes of the slow scan. */
const SCAN_EVERY_TICKS = 40;
/** POSTs at once. */
const CONCURRENCY = 16;

export class StatusCallbacks {
  /** messageId → recipients seen turning final since start (cheap completion check; bounded). */
  private readonly finals = new Map<string, number>();
  private ticks = 0;
  private readonly inflight = new Set<string>();
  private scanAfter = '';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly now: () => number;
  private readonly fetch: typeof fetch;
  private readonly sent: Counter<'outcome'>;
  private readonly waiting: Gauge;

  constructor(private readonly o: StatusCallbackOptions) {
    this.now = o.now ?? Date.now;
    this.fetch = o.fetch ?? fetch;
    const r = o.metrics.registry;
    this.sent = new Counter({ name: 'smsgw_status_callbacks_total', help: 'Completion callbacks by outcome (delivered, retry, failed)', labelNames: ['outcome'], registers: [r] });
    this.waiting = new Gauge({ name: 'smsgw_status_callbacks_waiting', help: 'Messages with a callbackUrl not yet called back', registers: [r] });
    o.store.onFinal((messageId) => {
      const n = this.finals.get(messageId);
      if (n !== undefined) this.finals.set(messageId, n + 1);
      else if (this.finals.size < MAX_COUNTED && o.store.callbacks.get(messageId) !== undefined) this.finals.set(messageId, 1);
    });
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.o.tickMs ?? 250);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One round (also run by the timer); never two at once. */
  tick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.running ??= this.round().catch((e: unknown) => this.o.logger.error({ err: e }, 'status callback round failed')).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Candidates: messages whose counted finals reached their recipient count
   * (cheap), and — every SCAN_EVERY_TICKS ticks — a slice of the waiting rows
   * (after a restart the counts are gone; a full summary each, bounded).
   * A candidate is called back only when its summary says every recipient is final.
   */
  private async round(): Promise<void> {
    const db = this.o.store.callbacks;
    const candidates = new Set<string>();
    for (const [id, n] of this.finals) {
      const msg = this.o.store.getMessage(id);
      if (!msg) this.finals.delete(id);
      else if (n >= msg.recipients) candidates.add(id);
    }
    if (this.ticks++ % SCAN_EVERY_TICKS === 0) {
      let scanned = 0;
      for (const key of db.getKeys({ ...(this.scanAfter === '' ? {} : { start: `${this.scanAfter}\u0000` }), limit: SCAN_PER_PASS })) {
        if (!this.finals.has(key)) candidates.add(key);
        this.scanAfter = key;
        scanned++;
      }
      if (scanned < SCAN_PER_PASS) this.scanAfter = '';
      this.waiting.set(db.getCount());
    }
    const now = this.now();
    const ready: string[] = [];
    for (const id of candidates) {
      if (ready.length >= CONCURRENCY) break;
      const row = db.get(id);
      if (!row || row.state !== 'waiting') {
        this.finals.delete(id);
        continue;
      }
      if (row.nextAt > now || this.inflight.has(id)) continue;
      if (this.complete(id) !== undefined) ready.push(id);
    }
    await Promise.all(ready.map((id) => this.call(id)));
  }

  /** The summary when every recipient is final, else undefined. */
  private complete(id: string): Record<RecipientState, number> | undefined {
    const msg = this.o.store.getMessage(id);
    if (!msg) return undefined;
    const summary = this.o.store.summary(id);
    let final = 0;
    for (const s of FINAL_STATES) final += summary[s];
    return final >= msg.recipients ? summary : undefined;
  }

  private async call(id: string): Promise<void> {
    const db = this.o.store.callbacks;
    const msg = this.o.store.getMessage(id);
    const row = db.get(id);
    const summary = this.complete(id);
    if (!msg || !row || summary === undefined || msg.callbackUrl === undefined) {
      if (!msg) await db.remove(id);
      return;
    }
    this.inflight.add(id);
    try {
      const error = await postCallback(this.fetch, msg.callbackUrl, {
        id, ...(msg.reference !== undefined ? { reference: msg.reference } : {}), status: 'complete', recipients: msg.recipients,
        summary: Object.fromEntries(RECIPIENT_STATES.map((s) => [s, summary[s]])), completedAt: new Date(this.now()).toISOString(),
      }, this.o.timeoutMs);
      if (error === undefined) {
        await db.remove(id);
        this.finals.delete(id);
        this.sent.inc({ outcome: 'delivered' });
        return;
      }
      const attempts = row.attempts + 1;
      if (attempts >= this.o.attempts) {
        await db.put(id, { state: 'failed', attempts, nextAt: 0, lastError: error });
        this.finals.delete(id);
        this.sent.inc({ outcome: 'failed' });
        this.o.logger.warn({ messageId: id, attempts, error: error.replace(/\d{11,}/g, (n) => maskNumber(n)) }, 'completion callback failed for good');
        return;
      }
      await db.put(id, { state: 'waiting', attempts, nextAt: this.now() + Math.min(60_000, 500 * 2 ** attempts), lastError: error });
      this.sent.inc({ outcome: 'retry' });
    } finally {
      this.inflight.delete(id);
    }
  }
}
