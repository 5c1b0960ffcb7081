/**
 * Several hosts with the PDA channel on some of them
 * (`queue.nats.replication.pdaHandoff`): a process without the channel hands
 * the recipients it routed to PDAs to one that has it, through the work
 * queue. Each `deliver` call becomes one job of the internal tier
 * PDA_HANDOFF_TIER with a de-duplication id made from the message and the
 * recipients, so a redelivered job that routes the same recipients again
 * publishes nothing new; the channel's `deliver` ignores recipients it
 * already has as well. Resolves once the job is durable in the queue.
 */
import { createHash } from 'node:crypto';
import { GatewayError } from '../core/errors.js';
import { encodeJob, PDA_HANDOFF_TIER, workSubject, type Job, type JobPdaItem } from '../core/job.js';
import type { WorkQueue } from '../queue/port.js';

export class QueuePdaHandoff {
  constructor(private readonly deps: { readonly queue: WorkQueue; readonly prefix: string; readonly now?: () => number }) {}

  async deliver(items: readonly JobPdaItem[]): Promise<void> {
    if (items.length === 0) return;
    const first = items[0] as JobPdaItem;
    const ids = createHash('sha256');
    for (const it of items) ids.update(`${it.messageId}\u0000${it.index}\u0000`);
    const id = `${first.messageId}.pda.${ids.digest('base64url').slice(0, 16)}`;
    const job: Job = {
      v: 1, id, tier: PDA_HANDOFF_TIER, tenant: 'pda', group: 'pda', createdAt: (this.deps.now ?? Date.now)(), messages: [], pda: items,
    };
    const [result] = await this.deps.queue.publish([{ subject: workSubject(this.deps.prefix, PDA_HANDOFF_TIER, 'pda', 'pda'), tier: PDA_HANDOFF_TIER, msgId: id, data: encodeJob(job) }]);
    if (result === undefined) throw new GatewayError('QUEUE_UNAVAILABLE', `PDA hand-off of ${items.length} recipients was not stored`);
  }
}
