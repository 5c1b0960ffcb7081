/**
 * The dispatcher's gate for several hosts (replicaReady): which jobs wait
 * for other hosts' receipt changes before they are worked on.
 */
import t from 'tap';
import { replicaReady, type DispatchReplica } from '../../src/dispatch/dispatcher.js';

function replica(have: Set<string>, catchUp: () => boolean): DispatchReplica & { waits: number } {
  const r = {
    waits: 0,
    has: (id: string) => have.has(id),
    caughtUp: async () => {
      r.waits++;
      return catchUp();
    },
  };
  return r;
}

const job = (...ids: string[]) => ({ messages: ids.map((id) => ({ id })) as never[] });

t.test('a first delivery whose messages are here goes at once', async (t) => {
  const r = replica(new Set(['m1', 'm2']), () => true);
  t.equal(await replicaReady(r, job('m1', 'm2'), 1), true);
  t.equal(r.waits, 0, 'no catch-up asked');
});

t.test('a message not here yet: wait for the other hosts, then go if it arrived', async (t) => {
  const have = new Set(['m1']);
  const r = replica(have, () => {
    have.add('m2'); // applied while waiting
    return true;
  });
  t.equal(await replicaReady(r, job('m1', 'm2'), 1), true);
  t.equal(r.waits, 1);
});

t.test('rows published just after the catch-up (the accepting host\'s relay was late) are waited for, bounded', async (t) => {
  const have = new Set<string>();
  setTimeout(() => have.add('m1'), 30);
  const started = Date.now();
  t.equal(await replicaReady(replica(have, () => true), job('m1'), 1, 50, 5), true, 'arrived while polling');
  t.ok(Date.now() - started < 1_000, 'and went as soon as it did');
});

t.test('still missing after catching up, or the wait timed out: given back', async (t) => {
  const started = Date.now();
  t.equal(await replicaReady(replica(new Set(), () => true), job('m1'), 1, 10, 5), false, 'caught up but the row never came');
  t.ok(Date.now() - started >= 45, 'after looking again for the bounded time');
  t.equal(await replicaReady(replica(new Set(['m1']), () => false), job('m1'), 2), false, 'redelivered and the catch-up timed out');
});

t.test('a redelivered job always waits for the other hosts first', async (t) => {
  const r = replica(new Set(['m1']), () => true);
  t.equal(await replicaReady(r, job('m1'), 2), true);
  t.equal(r.waits, 1, 'caught up before its segments are checked');
});
