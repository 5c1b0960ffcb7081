/**
 * Reroute relay: publishes the second attempts' jobs (src/core/reroute.ts).
 *
 *   receipt UNDELIV/REJECTD ─▶ receipt store, one transaction:
 *                                the attempt kept, the recipient `queued`,
 *                                an entry in receipts.reroute   (durable)
 *                           ─▶ relay (after that commit, and every periodMs):
 *                                entries → jobs (one per message, ≤ batch recipients)
 *                                → queue.publish (durable) → entries removed
 *
 * The pending reroute is a row, not a timer: a crash between the receipt and
 * the publish leaves the entry, and the next relay run (at start, then every
 * `periodMs`) publishes it; a crash between the publish and the removal
 * publishes it again, with the same de-duplication id (a hash of the
 * recipients), and a job that still comes twice sends nothing twice for
 * parts that already have an operator id (the dispatcher's rule). Works the
 * same on the embedded and the NATS queue: it only publishes.
 */
import type { Logger } from 'pino';
import { encodeJob, workSubject, type Job } from '../core/job.js';
import type { QueueMessage, WorkQueue } from '../queue/port.js';
import type { RerouteEntry } from '../receipts/store.js';

export interface RerouteSource {
  pendingReroutes(limit: number): RerouteEntry[];
  clearReroutes(keys: readonly { readonly messageId: string; readonly index: number }[]): Promise<void>;
  onReroute(listener: () => void): void;
}

export interface RerouteRelayOptions {
  readonly store: RerouteSource;
  readonly queue: WorkQueue;
  /** Subject prefix (queue.prefix). */
  readonly prefix: string;
  readonly logger: Logger;
  /** Entries one run takes at most. Default 2,000. */
  readonly batch?: number;
  /** Recipients per job at most. Default 500. */
  readonly jobSize?: number;
  /** Runs without a kick this far apart (entries left by a crash, a failed publish). Default 1,000. */
  readonly periodMs?: number;
}

export class RerouteRelay {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly batch: number;
  private readonly jobSize: number;

  constructor(private readonly o: RerouteRelayOptions) {
    this.batch = Math.max(1, o.batch ?? 2000);
    this.jobSize = Math.max(1, o.jobSize ?? 500);
  }

  start(): void {
    this.o.store.onReroute(() => this.kick());
    this.timer = setInterval(() => this.kick(), this.o.periodMs ?? 1000);
    this.timer.unref();
    this.kick();
  }

  /** Publish what is pending now (coalesced with a run under way). */
  kick(): void {
    if (this.stopped) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves when no run is under way (tests). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.idle();
  }

  private async loop(): Promise<void> {
    // Bounded: each pass takes at most `batch` entries; a full pass goes round again, at most 100 in a row.
    for (let pass = 0; pass < 100 && !this.stopped; pass++) {
      this.again = false;
      let n: number;
      try {
        n = await this.runOnce();
      } catch (err) {
        this.o.logger.error({ err }, 'reroute relay: publishing second attempts failed; retried on the next run');
        return;
      }
      if (n < this.batch && !this.again) return;
    }
  }

  /** One pass: returns how many entries it took. */
  async runOnce(): Promise<number> {
    const entries = this.o.store.pendingReroutes(this.batch);
    if (entries.length === 0) return 0;
    const messages: QueueMessage[] = [];
    let group: RerouteEntry[] = [];
    const flush = (): void => {
      if (group.length > 0) messages.push(this.toMessage(group));
      group = [];
    };
    for (const e of entries) {
      if (e.job === undefined) continue;
      if (group.length > 0 && (group[0]!.messageId !== e.messageId || group.length >= this.jobSize)) flush();
      group.push(e);
    }
    flush();
    if (messages.length > 0) await this.o.queue.publish(messages);
    await this.o.store.clearReroutes(entries);
    return entries.length;
  }

  private toMessage(group: readonly RerouteEntry[]): QueueMessage {
    const first = group[0]!;
    const j = first.job!;
    const indices = group.map((e) => e.index);
    const id = `${first.messageId}.rr.${hashIndices(indices)}`;
    const job: Job = {
      v: 1,
      id,
      tier: j.tier,
      tenant: j.tenant,
      group: j.group || 'direct',
      createdAt: j.createdAt,
      reroute: 1,
      messages: [{
        id: first.messageId,
        text: j.text,
        encoding: j.encoding,
        sender: j.sender,
        expiresAt: j.expiresAt,
        recipients: group.map((e) => ({ i: e.index, to: e.job!.to })),
        ...(j.classification !== undefined ? { classification: j.classification } : {}),
      }],
    };
    return { subject: workSubject(this.o.prefix, j.tier, j.tenant, j.group || 'direct'), tier: j.tier, msgId: id, data: encodeJob(job) };
  }
}

/** FNV-1a of the indices: the same recipients give the same de-duplication id. */
function hashIndices(indices: readonly number[]): string {
  let h = 0x811c9dc5;
  for (const i of indices) {
    let x = i + 1;
    while (x > 0) {
      h ^= x & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
      x = Math.floor(x / 256);
    }
    h ^= 0x2c;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `${indices.length}-${indices[0] ?? 0}-${h.toString(36)}`;
}
