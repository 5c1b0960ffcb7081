/**
 * Scheduled sending: messages with `scheduleAt` and timed tasks of the
 * office services (meeting reminders, workflow re-ordering flushes).
 *
 *   office.sched      [dueAt, id] → entry        (what is due, in time order)
 *   office.sched.ids  id → dueAt                  (cancel / status by id)
 *
 * A scheduled message is accepted like any other — its receipt rows are
 * written and it is durable before the 202 — but its queue jobs are parked
 * here instead of published (a plain put in the same event turn as the rows,
 * so the same LMDB transaction). When due, the jobs are published with their
 * own deterministic ids (the queue de-duplicates a republish after a crash)
 * and only then is the entry removed: a restart at any point sends once.
 * When due it is admitted again (its shape: tier, group or where the numbers
 * came from, classification): a unit that lost the grant meanwhile sends
 * nothing, and its recipients end `rejected` ("refused when due: …").
 * Cancelled before that, every recipient ends `rejected` ("cancelled"); a
 * group message's expansion job is published with `reject`, so its members
 * are listed, each rejected, and nothing is sent.
 *
 * Tasks run their handler, then are removed; a handler that fails is
 * retried on the next poll, at most MAX_ATTEMPTS times (then logged, counted
 * and dropped). Handlers must be idempotent (they send with idempotency keys).
 */
import type { Database, RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import { GatewayError } from '../core/errors.js';
import type { FinalState } from '../core/message.js';
import type { QueueMessage, WorkQueue } from '../queue/port.js';
import { rejectUnsent } from '../directory/held.js';
import type { SendShape } from '../core/send.js';
import type { Metrics } from '../telemetry/metrics.js';
import { trackWrite } from '../storage/health.js';
import { entryCount } from '../storage/entry-count.js';

export type ScheduledEntry =
  | {
    readonly kind: 'message';
    readonly id: string;
    readonly tenant: string;
    readonly dueAt: number;
    readonly recipients: number;
    /** Set for a group send (the jobs are one expansion job). */
    readonly group?: string;
    readonly jobs: readonly QueueMessage[];
    /** The send's shape, admitted again when it is due (entries parked before it was kept have none). */
    readonly shape?: SendShape;
    readonly attempts?: number;
  }
  | {
    readonly kind: 'task';
    readonly id: string;
    readonly task: string;
    readonly dueAt: number;
    readonly payload: unknown;
    readonly attempts?: number;
  };

export interface ScheduleReceipts {
  getMessage(id: string): { readonly tenant: string; readonly recipients: number } | undefined;
  /** Recipients by state (used to order a case's stages). */
  summary(id: string): Readonly<Record<'accepted' | 'queued', number>>;
  finalizeRecipients(messageId: string, items: readonly { index: number; state: FinalState; error: string }[]): Promise<void>;
}

export interface ScheduleDeps {
  readonly env: RootDatabase;
  readonly queue: WorkQueue;
  readonly receipts: ScheduleReceipts;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly pollMs: number;
  /**
   * The grant checks for a send of this shape by `tenant`, now (throws the
   * refusal): a scheduled message is admitted again when it is due, so one
   * whose grant was withdrawn meanwhile is not sent.
   */
  readonly admitAgain: (tenant: string, shape: SendShape) => void;
  readonly now?: () => number;
}

/** Entries taken per poll. */
const BATCH = 200;
const MAX_ATTEMPTS = 10;

export class Schedule {
  private readonly due: Database<ScheduledEntry, [number, string]>;
  private readonly ids: Database<number, string>;
  private readonly handlers = new Map<string, (payload: unknown, id: string) => Promise<void>>();
  private readonly now: () => number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly pending: Gauge;
  private readonly fired: Counter<'kind' | 'outcome'>;

  constructor(private readonly deps: ScheduleDeps) {
    this.due = deps.env.openDB<ScheduledEntry, [number, string]>({ name: 'office.sched', encoding: 'msgpack' });
    this.ids = deps.env.openDB<number, string>({ name: 'office.sched.ids', encoding: 'msgpack' });
    this.now = deps.now ?? Date.now;
    this.log = deps.logger;
    this.pending = deps.metrics.scheduledPending;
    this.fired = deps.metrics.scheduledFired;
    this.pending.set(entryCount(this.ids));
  }

  /** Start polling for due entries. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.poll(), this.deps.pollMs);
    this.timer.unref();
    void this.poll();
  }

  /** A task kind's handler (register before start). */
  onTask(task: string, handler: (payload: unknown, id: string) => Promise<void>): void {
    this.handlers.set(task, handler);
  }

  /** Park a scheduled message's jobs. A plain put: it commits with the receipt rows written in the same turn. */
  park(entry: Omit<Extract<ScheduledEntry, { kind: 'message' }>, 'kind'>): void {
    const e: ScheduledEntry = { kind: 'message', ...entry };
    trackWrite(this.deps.env, this.due.put([e.dueAt, e.id], e), 'schedule');
    trackWrite(this.deps.env, this.ids.put(e.id, e.dueAt), 'schedule');
    this.pending.inc();
  }

  /** Add (or move) a task; resolves when durable. */
  async addTask(id: string, task: string, dueAt: number, payload: unknown): Promise<void> {
    await this.deps.env.transaction(() => {
      const before = this.ids.get(id);
      if (before !== undefined) this.due.removeSync([before, id]);
      else this.pending.inc();
      this.due.putSync([dueAt, id], { kind: 'task', id, task, dueAt, payload });
      this.ids.putSync(id, dueAt);
    });
  }

  /** Remove a task that has not run; false when there was none. */
  async removeTask(id: string): Promise<boolean> {
    return this.deps.env.transaction(() => {
      const at = this.ids.get(id);
      if (at === undefined) return false;
      this.due.removeSync([at, id]);
      this.ids.removeSync(id);
      this.pending.dec();
      return true;
    });
  }

  /** When a parked message or task is due, or undefined when it is not (or no longer) scheduled. */
  dueAt(id: string): number | undefined {
    return this.ids.get(id);
  }

  /**
   * Cancel a scheduled message of `tenant`. NOT_FOUND when no such message;
   * NOT_CANCELLABLE when it exists but was already released (or cancelled).
   */
  async cancel(id: string, tenant: string, reason = 'cancelled by the sender before its scheduled time'): Promise<{ recipients: number }> {
    const taken = await this.deps.env.transaction(() => {
      const at = this.ids.get(id);
      const entry = at === undefined ? undefined : this.due.get([at, id]);
      if (entry === undefined || entry.kind !== 'message' || entry.tenant !== tenant) return undefined;
      this.due.removeSync([entry.dueAt, id]);
      this.ids.removeSync(id);
      return entry;
    });
    if (taken === undefined) {
      const msg = this.deps.receipts.getMessage(id);
      if (!msg || msg.tenant !== tenant) throw new GatewayError('NOT_FOUND', `no message ${id}`);
      throw new GatewayError('NOT_CANCELLABLE', `message ${id} is not scheduled (already released to sending, or cancelled)`);
    }
    this.pending.dec();
    this.fired.inc({ kind: 'message', outcome: 'cancelled' });
    await rejectUnsent(this.deps, taken, reason);
    return { recipients: taken.recipients };
  }

  /** Run what is due now (also called by the timer). Never runs twice at once. */
  poll(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.running ??= this.runDue().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async runDue(): Promise<void> {
    const now = this.now();
    const batch: ScheduledEntry[] = [];
    for (const { value } of this.due.getRange({ start: [0, ''], end: [now + 1, ''], limit: BATCH })) batch.push(value);
    if (batch.length === 0) return;
    // Messages: one publish for all that are due (ids are deterministic: a republish is de-duplicated).
    const due = batch.filter((e): e is Extract<ScheduledEntry, { kind: 'message' }> => e.kind === 'message');
    const messages: typeof due = [];
    for (const m of due) {
      const refusal = m.shape === undefined ? undefined : this.refusal(m.tenant, m.shape);
      if (refusal === undefined) messages.push(m);
      else await this.refuse(m, refusal);
    }
    if (messages.length > 0) {
      try {
        await this.deps.queue.publish(messages.flatMap((m) => m.jobs));
        await this.deps.env.transaction(() => {
          for (const m of messages) {
            // A cancel may have won the race: only remove what is still there.
            if (this.ids.get(m.id) !== m.dueAt) continue;
            this.due.removeSync([m.dueAt, m.id]);
            this.ids.removeSync(m.id);
            this.pending.dec();
          }
        });
        this.fired.inc({ kind: 'message', outcome: 'released' }, messages.length);
      } catch (e) {
        this.log.error({ err: e, messages: messages.length }, 'publishing due scheduled messages failed; retried on the next poll');
        this.fired.inc({ kind: 'message', outcome: 'retry' }, messages.length);
      }
    }
    for (const entry of batch) {
      if (entry.kind !== 'task' || this.closed) continue;
      const handler = this.handlers.get(entry.task);
      let ok = false;
      try {
        if (!handler) throw new Error(`no handler for scheduled task ${entry.task}`);
        await handler(entry.payload, entry.id);
        ok = true;
      } catch (e) {
        const attempts = (entry.attempts ?? 0) + 1;
        if (attempts < MAX_ATTEMPTS) {
          // Retry later: bump the attempt count and push it back a little.
          await this.moveTask(entry, { ...entry, attempts, dueAt: this.now() + Math.min(60_000, 500 * 2 ** attempts) });
          this.fired.inc({ kind: entry.task, outcome: 'retry' });
          continue;
        }
        this.log.error({ err: e, task: entry.task, id: entry.id, attempts }, 'scheduled task failed too often; dropped');
        this.fired.inc({ kind: entry.task, outcome: 'failed' });
      }
      await this.deps.env.transaction(() => {
        if (this.ids.get(entry.id) !== entry.dueAt) return; // moved or removed by the handler
        this.due.removeSync([entry.dueAt, entry.id]);
        this.ids.removeSync(entry.id);
        this.pending.dec();
      });
      if (ok) this.fired.inc({ kind: entry.task, outcome: 'done' });
    }
  }

  /** Why the send may not go now (its grants were withdrawn since it was accepted), or undefined. */
  private refusal(tenant: string, shape: SendShape): string | undefined {
    try {
      this.deps.admitAgain(tenant, shape);
      return undefined;
    } catch (e) {
      if (!(e instanceof GatewayError)) throw e;
      return `refused when due: ${e.code}: ${e.message}`;
    }
  }

  /** Remove a due message that may not go and reject its recipients (like a cancel). */
  private async refuse(m: Extract<ScheduledEntry, { kind: 'message' }>, reason: string): Promise<void> {
    const taken = await this.deps.env.transaction(() => {
      if (this.ids.get(m.id) !== m.dueAt) return false;
      this.due.removeSync([m.dueAt, m.id]);
      this.ids.removeSync(m.id);
      return true;
    });
    if (!taken) return;
    this.pending.dec();
    this.fired.inc({ kind: 'message', outcome: 'refused' });
    await rejectUnsent(this.deps, m, reason);
  }

  private async moveTask(before: ScheduledEntry, after: ScheduledEntry): Promise<void> {
    await this.deps.env.transaction(() => {
      if (this.ids.get(before.id) !== before.dueAt) return;
      this.due.removeSync([before.dueAt, before.id]);
      this.due.putSync([after.dueAt, after.id], after);
      this.ids.putSync(after.id, after.dueAt);
    });
  }
}
