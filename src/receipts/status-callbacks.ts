/**
 * Completion callbacks: a message sent with `callbackUrl` gets one POST
 * there when every recipient has reached a final state:
 *
 *   { "id", "reference"?, "status": "complete", "recipients", "summary": { delivered, undeliverable, expired, rejected, failed, … }, "completedAt" }
 *
 * The waiting row (`receipts.callbacks`) is written with the message row, in
 * the same transaction, so a callback survives any crash: rows are checked
 * when a recipient of theirs turns final (a bounded "dirty" set fed by the
 * store's onFinal) and by a slow round-robin scan (restarts, expiry sweeps).
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

/** Messages remembered as "a recipient turned final" between ticks. */
const MAX_DIRTY = 10_000;
/** Rows the round-robin scan looks at per tick. */
const SCAN_PER_TICK = 200;
/** POSTs at once. */
const CONCURRENCY = 16;

export class StatusCallbacks {
  private readonly dirty = new Set<string>();
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
      if (this.dirty.size < MAX_DIRTY) this.dirty.add(messageId);
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

  /** One round: dirty messages first, then a slice of the waiting rows. */
  tick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.running ??= this.round().catch((e: unknown) => this.o.logger.error({ err: e }, 'status callback round failed')).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async round(): Promise<void> {
    const db = this.o.store.callbacks;
    const candidates = new Set<string>();
    for (const id of this.dirty) {
      candidates.add(id);
      if (candidates.size >= CONCURRENCY * 4) break;
    }
    for (const id of candidates) this.dirty.delete(id);
    let scanned = 0;
    for (const key of db.getKeys({ start: this.scanAfter === '' ? undefined : `${this.scanAfter}\u0000`, limit: SCAN_PER_TICK })) {
      candidates.add(key);
      this.scanAfter = key;
      scanned++;
    }
    if (scanned < SCAN_PER_TICK) this.scanAfter = '';
    this.waiting.set(db.getCount());
    const now = this.now();
    const due: string[] = [];
    for (const id of candidates) {
      const row = db.get(id);
      if (!row || row.state !== 'waiting' || row.nextAt > now || this.inflight.has(id)) continue;
      due.push(id);
    }
    const ready = due.filter((id) => this.complete(id) !== undefined).slice(0, CONCURRENCY);
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
      let error: string | undefined;
      try {
        const res = await this.fetch(msg.callbackUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            id, ...(msg.reference !== undefined ? { reference: msg.reference } : {}), status: 'complete', recipients: msg.recipients,
            summary: Object.fromEntries(RECIPIENT_STATES.map((s) => [s, summary[s]])), completedAt: new Date(this.now()).toISOString(),
          }),
          signal: AbortSignal.timeout(this.o.timeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status < 200 || res.status >= 300) error = `callback answered HTTP ${res.status}`;
      } catch (e) {
        error = `callback failed: ${e instanceof Error ? e.message : String(e)}`;
      }
      if (error === undefined) {
        await db.remove(id);
        this.sent.inc({ outcome: 'delivered' });
        return;
      }
      const attempts = row.attempts + 1;
      if (attempts >= this.o.attempts) {
        await db.put(id, { state: 'failed', attempts, nextAt: 0, lastError: error });
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
