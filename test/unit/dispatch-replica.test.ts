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

t.test('still missing after catching up, or the wait timed out: given back', async (t) => {
  t.equal(await replicaReady(replica(new Set(), () => true), job('m1'), 1), false, 'caught up but the row never came');
  t.equal(await replicaReady(replica(new Set(['m1']), () => false), job('m1'), 2), false, 'redelivered and the catch-up timed out');
});

t.test('a redelivered job always waits for the other hosts first', async (t) => {
  const r = replica(new Set(['m1']), () => true);
  t.equal(await replicaReady(r, job('m1'), 2), true);
  t.equal(r.waits, 1, 'caught up before its segments are checked');
});
