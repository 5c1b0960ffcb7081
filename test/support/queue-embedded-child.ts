/**
 * Child process for test/faults/queue-embedded-kill.test.ts: publishes and
 * acks against an embedded queue in <dir> until the parent kills it with
 * SIGKILL. It reports on stdout, one line per event, so the parent knows what
 * it may assert afterwards:
 *
 *   R                 the queue is open
 *   p <ids…>          about to publish these msgIds
 *   P <ids…>          publish resolved (durable)
 *   F <ids…>          fetch resolved with these deliveries (delivery counts committed)
 *   I <ids…>          about to ack these
 *   A <ids…>          these acks resolved (removal durable)
 *   D                 the bounded work is done; waiting to be killed
 *
 * Writes to a pipe are synchronous on Linux, so a line is in the pipe before
 * the next step starts; a line cut by the kill has no newline and is ignored.
 *
 * usage: node --import tsx test/support/queue-embedded-child.ts <dir> <round> <seed>
 */
import { pathToFileURL } from 'node:url';
import { open } from 'lmdb';
import { EmbeddedQueue } from '../../src/queue/embedded/queue.js';
import type { QueueOptions } from '../../src/queue/port.js';
import { seededRandom } from './seeded-random.js';

export const KILL_TEST_OPTIONS: QueueOptions = {
  prefix: 'kill',
  tiers: ['urgent', 'bulk'],
  ackWaitMs: 60_000,
  // Parent checks fetch every entry each round; nothing may be dead-lettered meanwhile.
  maxDeliver: 1_000_000,
  maxAckPending: 1_000_000,
  duplicateWindowMs: 600_000,
};

const BATCHES = 120;
const BATCH_SIZE = 20;

async function main(): Promise<void> {
  const [dir, roundArg, seedArg] = process.argv.slice(2);
  if (dir === undefined || roundArg === undefined || seedArg === undefined) throw new Error('usage: <dir> <round> <seed>');
  const round = Number(roundArg);
  const rand = seededRandom(Number(seedArg));
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  // Never outlive the parent's bound if it fails to kill us.
  setTimeout(() => process.exit(3), 60_000).unref();

  const env = open({ path: dir, maxDbs: 16 });
  const queue = await EmbeddedQueue.open({ env, options: KILL_TEST_OPTIONS });
  out('R');

  let publishing = true;
  const publisher = async (): Promise<void> => {
    for (let b = 0; b < BATCHES; b++) {
      const ids = Array.from({ length: BATCH_SIZE }, (_, i) => `${round}.${b}.${i}`);
      out(`p ${ids.join(' ')}`);
      await queue.publish(
        ids.map((id, i) => {
          const tier = i % 3 === 0 ? 'urgent' : 'bulk';
          return { subject: `kill.work.${tier}.t.g`, tier, msgId: id, data: new TextEncoder().encode(id) };
        }),
      );
      out(`P ${ids.join(' ')}`);
    }
    publishing = false;
  };

  const consumer = async (tier: string): Promise<void> => {
    for (let i = 0; i < 10_000; i++) {
      const got = await queue.fetch(tier, 16, 50);
      if (got.length === 0) {
        if (!publishing) return;
        continue;
      }
      out(`F ${got.map((d) => d.msgId).join(' ')}`);
      // Leave about a third unacked: they stay in flight until the kill and must come back.
      const acking = got.filter(() => rand() < 0.65);
      if (acking.length === 0) continue;
      const ids = acking.map((d) => d.msgId).join(' ');
      out(`I ${ids}`);
      await Promise.all(acking.map((d) => d.ack()));
      out(`A ${ids}`);
    }
  };

  await Promise.all([publisher(), consumer('urgent'), consumer('bulk')]);
  out('D');
  // Wait for the kill with the queue and environment still open, as a crashed process would be.
  setInterval(() => undefined, 1_000);
}

// Only when run as a script: the parent test imports KILL_TEST_OPTIONS from here.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`child failed: ${String(e instanceof Error ? e.stack : e)}\n`);
    process.exit(2);
  });
}
