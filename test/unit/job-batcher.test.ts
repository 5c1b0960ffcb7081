import t from 'tap';
import { JobBatcher } from '../../src/send/job-batcher.js';
import { decodeJob, type JobMessage } from '../../src/core/job.js';
import type { QueueMessage, WorkQueue } from '../../src/queue/port.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

function fakeQueue(fail = false): WorkQueue & { published: QueueMessage[][] } {
  const published: QueueMessage[][] = [];
  return {
    kind: 'nats',
    lingerMs: 0,
    published,
    async publish(ms) {
      published.push([...ms]);
      if (fail) throw new Error('queue down');
      return ms.map((m, i) => ({ msgId: m.msgId, seq: i, duplicate: false }));
    },
    async persistTogether(w) {
      await w.rowsDurable();
      await w.publish();
      w.after();
    },
    claimKey: async () => ({ won: true }),
    fetch: async () => [],
    depth: async () => 0,
    onDeadLetter: () => undefined,
    close: async () => undefined,
  };
}

const msg = (id: string, n: number): JobMessage => ({
  id,
  text: 'x',
  encoding: 'gsm7',
  sender: '1069',
  expiresAt: 0,
  recipients: Array.from({ length: n }, (_, i) => ({ i, to: `86138${String(i).padStart(8, '0')}` })),
});

let ids = 0;
const make = (queue: WorkQueue, flushMs: number, maxRecipients = 10) =>
  new JobBatcher({ queue, prefix: 'smsgw', flushMs, maxRecipients, maxPendingRecipients: 25, newJobId: () => `j${ids++}`, metrics: createMetrics({ defaultMetrics: false }) });

t.test('messages of one subject in one turn share a job; subjects stay apart', async (t) => {
  const q = fakeQueue();
  const b = make(q, 0);
  await Promise.all([b.add('routine', 'oa', 'direct', 1, msg('a', 1)), b.add('routine', 'oa', 'direct', 2, msg('b', 2)), b.add('emergency', 'oa', 'direct', 3, msg('c', 1))]);
  t.equal(q.published.length, 2, 'two publishes');
  const jobs = q.published.map((p) => decodeJob((p[0] as QueueMessage).data));
  const routine = jobs.find((j) => j.tier === 'routine');
  t.same(routine?.messages.map((m) => m.id), ['a', 'b'], 'coalesced in order');
  t.equal(routine?.createdAt, 1, 'the job carries its first message time');
  t.equal(q.published.find((p) => p[0]?.tier === 'routine')?.[0]?.subject, 'smsgw.work.routine.oa.direct');
  t.equal(b.pendingRecipients, 0);
});

t.test('a job is flushed as soon as it reaches maxRecipients, never over it', async (t) => {
  const q = fakeQueue();
  const b = make(q, 10_000, 10);
  const adds = [b.add('routine', 'oa', 'g', 0, msg('a', 6)), b.add('routine', 'oa', 'g', 0, msg('b', 6)), b.add('routine', 'oa', 'g', 0, msg('c', 4))];
  await Promise.all(adds);
  const sizes = q.published.map((p) => decodeJob((p[0] as QueueMessage).data).messages.reduce((n, m) => n + m.recipients.length, 0));
  t.same(sizes, [6, 10], 'a (6) alone since b would pass 10; then b+c = 10 flushed at once without waiting 10 s');
});

t.test('flushMs bounds the wait; the pending bound flushes everything', async (t) => {
  const q = fakeQueue();
  const b = make(q, 20, 100);
  const started = Date.now();
  await b.add('routine', 'oa', 'g', 0, msg('a', 1));
  t.ok(Date.now() - started >= 15, 'waited for the timer');
  const q2 = fakeQueue();
  const b2 = make(q2, 60_000, 100);
  const p = Promise.all([b2.add('routine', 't1', 'g', 0, msg('a', 13)), b2.add('routine', 't2', 'g', 0, msg('b', 13))]);
  await p;
  t.equal(q2.published.length, 2, 'past maxPendingRecipients (25) both open jobs were flushed');
});

t.test('a failed publish rejects every message in the job', async (t) => {
  const b = make(fakeQueue(true), 0);
  const r = await Promise.allSettled([b.add('routine', 'oa', 'g', 0, msg('a', 1)), b.add('routine', 'oa', 'g', 0, msg('b', 1))]);
  t.same(r.map((x) => x.status), ['rejected', 'rejected']);
});

t.test('flushMs 0: armTurn schedules the turn\'s flush ahead of immediates set after it, so jobs join what those commit', async (t) => {
  const q = fakeQueue();
  const b = make(q, 0);
  const order: string[] = [];
  b.armTurn();
  // Stands for the store's commit immediate, scheduled by the rows written after armTurn.
  const committed = new Promise<void>((resolve) => setImmediate(() => {
    order.push(`commit after ${q.published.length} publish(es)`);
    resolve();
  }));
  const added = b.add('routine', 'oa', 'direct', 1, msg('a', 1));
  await Promise.all([added, committed]);
  t.same(order, ['commit after 1 publish(es)'], 'the job was published before the immediate armed after it');
  b.armTurn();
  await new Promise((r) => setImmediate(r));
  t.equal(q.published.length, 1, 'an armed turn with nothing added publishes nothing');
});
