/**
 * Messages held for review (content.onMatch = hold): accepted (202, status
 * `held`), their receipt rows written as usual, but their queue jobs parked
 * here instead of published. An admin releases them (the jobs are published
 * as they were; the validity keeps running from acceptance) or rejects them
 * (every recipient ends `rejected` with the reviewer's reason). A held
 * message nobody reviews expires like any other: the receipt store's expiry
 * sweep gives its recipients `expired`, and a later release sends nothing.
 *
 *   dir.held   messageId → HeldRecord (the jobs as they would have been published)
 *
 * The record is a plain put made in the same event turn as the message's
 * receipt rows, so it commits in the same transaction (embedded queue) and
 * is durable before the 202.
 */
import type { Database, RootDatabase } from 'lmdb';
import { GatewayError } from '../core/errors.js';
import { decodeJob, encodeJob, type Job } from '../core/job.js';
import type { FinalState } from '../core/message.js';
import type { QueueMessage, WorkQueue } from '../queue/port.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { DirectoryStore, Page } from './store.js';
import type { Actor } from './types.js';
import { trackWrite } from '../storage/health.js';
import type { SendShape } from '../core/send.js';
import type { Reservation } from './quota.js';
import { entryCount } from '../storage/entry-count.js';

export interface HeldRecord {
  readonly id: string;
  readonly tenant: string;
  readonly tier: string;
  readonly heldAt: number;
  readonly expiresAt: number;
  /** The listed word that matched. */
  readonly word: string;
  readonly recipients: number;
  readonly group?: string;
  readonly jobs: readonly QueueMessage[];
  /** The send's shape, admitted again at release (records held before it was kept have none). */
  readonly shape?: SendShape;
  /** The body before the unit's signature, screened again at release. */
  readonly body?: string;
  readonly segments?: number;
}

/**
 * Admission again at release (the send service's readmit): grants, content
 * rules, quota. Throws the refusal; resolves with the quota reservation.
 */
export type Readmit = (tenant: string, held: { readonly shape: SendShape; readonly body: string; readonly recipients: number; readonly segments?: number }) => Promise<Reservation | undefined>;

export interface HeldSummary {
  readonly id: string;
  readonly tenant: string;
  readonly tier: string;
  readonly heldAt: number;
  readonly expiresAt: number;
  readonly word: string;
  readonly recipients: number;
  readonly group?: string;
  /** The text to review (with its signature). */
  readonly text: string;
}

export interface HeldReceipts {
  getMessage(id: string): { readonly recipients: number; readonly expiresAt: number } | undefined;
  finalizeRecipients(messageId: string, items: readonly { index: number; state: FinalState; error: string }[]): Promise<void>;
}

/** Recipients finalised per store call when a parked message is rejected. */
const REJECT_CHUNK = 5_000;

/** Held rows read at most per list call (a delegated admin's page skips other subtrees' rows). */
export const MAX_HELD_SCAN = 10_000;

/**
 * A message whose jobs were parked (held for review, or scheduled) ends
 * without being sent: every recipient `rejected` with `error`. A group
 * message's expansion job is published with `reject` set, so its members are
 * still listed (each rejected) and nothing is sent.
 */
export async function rejectUnsent(
  deps: { queue: WorkQueue; receipts: Pick<HeldReceipts, 'finalizeRecipients'> },
  parked: { id: string; jobs: readonly QueueMessage[]; recipients: number; group?: string },
  error: string,
): Promise<void> {
  if (parked.group !== undefined) {
    const jobs = parked.jobs.map((j): QueueMessage => {
      const job = decodeJob(j.data);
      const rejected: Job = job.expand ? { ...job, expand: { ...job.expand, reject: error } } : job;
      return { ...j, data: encodeJob(rejected) };
    });
    await deps.queue.publish(jobs);
    return;
  }
  for (let from = 0; from < parked.recipients; from += REJECT_CHUNK) {
    const items: { index: number; state: FinalState; error: string }[] = [];
    for (let i = from; i < Math.min(parked.recipients, from + REJECT_CHUNK); i++) items.push({ index: i, state: 'rejected', error });
    await deps.receipts.finalizeRecipients(parked.id, items);
  }
}

export class HeldMessages {
  private readonly db: Database<HeldRecord, string>;

  constructor(
    private readonly env: RootDatabase,
    private readonly deps: { queue: WorkQueue; receipts: HeldReceipts; directory: DirectoryStore; metrics: Metrics },
  ) {
    this.db = env.openDB<HeldRecord, string>({ name: 'dir.held', encoding: 'msgpack' });
    deps.metrics.heldMessages.set(entryCount(this.db));
  }

  /** Park a message's jobs (plain put: commits with the rows written in the same turn). */
  hold(record: HeldRecord): void {
    trackWrite(this.env, this.db.put(record.id, record), 'held messages');
    this.deps.metrics.heldMessages.inc();
  }

  get(id: string): HeldRecord | undefined {
    return this.db.get(id);
  }

  /**
   * A page of held messages in id order. `keep` (a delegated admin's subtree)
   * is applied while paging, so a page is full unless the store is exhausted
   * or `maxScan` rows were read in this call (then `next` resumes after the
   * last row read, so foreign rows are not read again). `next` is set only
   * when a further kept row exists or the scan stopped at its bound.
   */
  list(q: { cursor?: string; limit: number; keep?: (rec: HeldRecord) => boolean; maxScan?: number }): Page<HeldSummary> {
    const limit = Math.max(1, Math.min(1000, Math.floor(q.limit)));
    const maxScan = Math.max(limit + 1, q.maxScan ?? MAX_HELD_SCAN);
    const items: HeldSummary[] = [];
    const start = q.cursor === undefined ? '' : `${q.cursor}\u0000`;
    let scanned = 0;
    let lastRead: string | undefined;
    for (const { key, value } of this.db.getRange({ start })) {
      if (scanned >= maxScan) {
        // Bound reached: resume after the last row read (every row read since the last item was foreign).
        return lastRead !== undefined ? { items, next: lastRead } : { items };
      }
      scanned++;
      if (q.keep !== undefined && !q.keep(value)) {
        lastRead = key;
        continue;
      }
      // A kept row past a full page: there is more; resume after the last row read before it.
      if (items.length >= limit) return { items, next: lastRead };
      items.push(summarize(value));
      lastRead = key;
    }
    return { items };
  }

  /**
   * Admit the message again as it stands now (`readmit`: the tenant's
   * grants, the content rules, the quota — a release is a send), then publish
   * the held jobs and forget the record. Refused: the refusal is the answer
   * (403 FORBIDDEN / QUOTA_EXCEEDED, 422 CONTENT_REJECTED…) and the message
   * stays held, to be rejected or released later. The quota is given back
   * if the publish fails.
   */
  async release(actor: Actor, id: string, readmit: Readmit): Promise<HeldSummary> {
    const rec = this.db.get(id);
    if (rec === undefined) throw new GatewayError('NOT_FOUND', `no held message ${id}`);
    this.assertScope(actor, rec);
    const summary = summarize(rec);
    // Held before the shape was kept: numbers count as the caller's (the strictest grant), the channel auto.
    const shape: SendShape = rec.shape ?? { tier: rec.tier, channel: 'auto', ...(rec.group !== undefined ? { group: rec.group } : { origin: 'caller' as const }) };
    const reservation = await readmit(rec.tenant, { shape, body: rec.body ?? summary.text, recipients: rec.recipients, ...(rec.segments !== undefined ? { segments: rec.segments } : {}) });
    try {
      await this.deps.queue.publish(rec.jobs);
    } catch (e) {
      await reservation?.release();
      throw e;
    }
    await this.forget(actor, rec, 'held.release', undefined);
    return summary;
  }

  /**
   * Every recipient ends `rejected` with the reason. A group message's
   * expansion job is published with `reject` set, so its members are still
   * listed (each rejected) and nothing is sent.
   */
  async reject(actor: Actor, id: string, reason: string): Promise<HeldSummary> {
    const rec = this.db.get(id);
    if (rec === undefined) throw new GatewayError('NOT_FOUND', `no held message ${id}`);
    this.assertScope(actor, rec);
    const error = `rejected on review by ${actor.name}: ${reason}`;
    await rejectUnsent(this.deps, { id, jobs: rec.jobs, recipients: this.deps.receipts.getMessage(id)?.recipients ?? 0, ...(rec.group !== undefined ? { group: rec.group } : {}) }, error);
    await this.forget(actor, rec, 'held.reject', { reason });
    return summarize(rec);
  }

  private async forget(actor: Actor, rec: HeldRecord, action: string, detail: unknown): Promise<void> {
    await this.db.remove(rec.id);
    this.deps.metrics.heldMessages.dec();
    await this.deps.directory.recordAudit(actor, action, 'message', rec.id, { before: summarize(rec), detail });
  }

  private assertScope(actor: Actor, rec: HeldRecord): void {
    if (actor.unit !== undefined && !this.deps.directory.isWithin(rec.tenant, actor.unit)) {
      // Another subtree's held message answers like one that does not exist.
      throw new GatewayError('NOT_FOUND', `no held message ${rec.id}`);
    }
  }
}

function summarize(rec: HeldRecord): HeldSummary {
  // The jobs were encoded by intake in this process's format; a record that cannot be decoded
  // is shown with an empty text (the reviewer still sees id, tenant, word) rather than
  // breaking the whole list — releasing it would then fail loudly at the dispatcher.
  let text = '';
  const first = rec.jobs[0];
  if (first !== undefined) {
    try {
      text = decodeJob(first.data).messages.find((m) => m.id === rec.id)?.text ?? '';
    } catch {
      text = '';
    }
  }
  return {
    id: rec.id, tenant: rec.tenant, tier: rec.tier, heldAt: rec.heldAt, expiresAt: rec.expiresAt, word: rec.word, recipients: rec.recipients, text,
    ...(rec.group !== undefined ? { group: rec.group } : {}),
  };
}
