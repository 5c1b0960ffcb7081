/**
 * JobBatcher: group commit for queue publishes.
 *
 * Accepted messages with few recipients are coalesced into one job per
 * subject (tier, tenant, group) — one queue entry, one JetStream publish,
 * one ack — flushed when it holds `maxRecipients` recipients or `flushMs`
 * after its first message, whichever comes first. With flushMs = 0 it
 * coalesces what arrives in the same event turn (setImmediate).
 *
 *   add(m1) ─┐
 *   add(m2) ─┼─▶ open job for smsgw.work.routine.oa.direct ──(size | timer)──▶ publish ──▶ every add() resolves
 *   add(m3) ─┘
 *
 * Bounded: at most `maxPendingRecipients` recipients wait across all open
 * jobs; past that everything is flushed at once.
 *
 * With flushMs = 0 one immediate per turn flushes every open job. The send
 * service arms it (`armTurn`) before it writes the turn's rows: the store's
 * plain puts schedule their commit with an immediate too, and an immediate
 * armed earlier runs first, so the jobs published by this flush land in the
 * same LMDB transaction as the rows (one commit and one fsync per turn for
 * the embedded queue, not two in a row).
 */
import { encodeJob, workSubject, type Job, type JobMessage } from '../core/job.js';
import type { QueueMessage, WorkQueue } from '../queue/port.js';
import type { Metrics } from '../telemetry/metrics.js';

interface OpenJob {
  readonly subject: string;
  readonly tier: string;
  readonly tenant: string;
  readonly group: string;
  readonly createdAt: number;
  readonly messages: JobMessage[];
  recipients: number;
  /** Resolves once the job is durable; every add() to the job gets this one promise. */
  readonly durable: Promise<void>;
  readonly settle: { resolve: () => void; reject: (e: unknown) => void };
  timer: NodeJS.Timeout | undefined;
}

export interface JobBatcherOptions {
  readonly queue: WorkQueue;
  readonly prefix: string;
  readonly flushMs: number;
  readonly maxRecipients: number;
  readonly maxPendingRecipients: number;
  readonly newJobId: () => string;
  readonly metrics: Metrics;
}

export class JobBatcher {
  private readonly open = new Map<string, OpenJob>();
  private pending = 0;
  /** flushMs = 0: the immediate that flushes every open job at the end of this turn. */
  private turn: NodeJS.Immediate | undefined;
  private readonly flushTurn = (): void => {
    this.turn = undefined;
    this.flushAll();
  };

  constructor(private readonly o: JobBatcherOptions) {}

  get pendingRecipients(): number {
    return this.pending;
  }

  /** Resolves once the job carrying `message` is durable in the queue. */
  add(tier: string, tenant: string, group: string, createdAt: number, message: JobMessage): Promise<void> {
    const subject = workSubject(this.o.prefix, tier, tenant, group);
    const n = message.recipients.length;
    let job = this.open.get(subject);
    if (job && job.recipients + n > this.o.maxRecipients) {
      this.flush(job);
      job = undefined;
    }
    if (!job) {
      let settle!: OpenJob['settle'];
      const durable = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
      job = { subject, tier, tenant, group, createdAt, messages: [], recipients: 0, durable, settle, timer: undefined };
      this.open.set(subject, job);
      if (this.o.flushMs > 0) {
        const j = job;
        job.timer = setTimeout(() => this.flush(j), this.o.flushMs);
      } else this.armTurn();
    }
    job.messages.push(message);
    job.recipients += n;
    this.pending += n;
    this.o.metrics.ingestCoalescePending.set(this.pending);
    const done = job.durable;
    if (job.recipients >= this.o.maxRecipients) this.flush(job);
    else if (this.pending > this.o.maxPendingRecipients) this.flushAll();
    return done;
  }

  /**
   * flushMs = 0: make sure this turn's flush is scheduled, now (a no-op
   * when it is, or with a linger). Called before the rows of the turn are
   * written, so that the flush runs ahead of their commit (see above).
   */
  armTurn(): void {
    if (this.o.flushMs === 0 && this.turn === undefined) this.turn = setImmediate(this.flushTurn);
  }

  flushAll(): void {
    if (this.open.size === 0) return;
    for (const job of [...this.open.values()]) this.flush(job);
  }

  private flush(job: OpenJob): void {
    if (this.open.get(job.subject) !== job) return; // already flushed
    this.open.delete(job.subject);
    if (job.timer) clearTimeout(job.timer);
    this.pending -= job.recipients;
    this.o.metrics.ingestCoalescePending.set(this.pending);
    const body: Job = { v: 1, id: this.o.newJobId(), tier: job.tier, tenant: job.tenant, group: job.group, createdAt: job.createdAt, messages: job.messages };
    const message: QueueMessage = { subject: job.subject, tier: job.tier, msgId: body.id, data: encodeJob(body) };
    this.o.metrics.coalescedJobSize.observe(job.recipients);
    this.o.queue.publish([message]).then(() => job.settle.resolve(), job.settle.reject);
  }
}
