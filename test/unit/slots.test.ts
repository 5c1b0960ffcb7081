import t from 'tap';
import { Slots } from '../../src/dispatch/slots.js';

t.test('slots bound concurrency and are shared round-robin between tenants', async (t) => {
  const slots = new Slots(2);
  t.equal(slots.acquire('big'), undefined, 'free slot: synchronous');
  t.equal(slots.acquire('big'), undefined);
  t.equal(slots.free, 0);
  const order: string[] = [];
  const wait = (tenant: string, tag: string) => (slots.acquire(tenant) as Promise<void>).then(() => order.push(tag));
  // The big tenant queued many first; the small one arrives later.
  const all = [wait('big', 'big1'), wait('big', 'big2'), wait('big', 'big3'), wait('small', 'small1'), wait('big', 'big4')];
  for (let i = 0; i < 5; i++) {
    slots.release();
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(all);
  t.same(order.slice(0, 2), ['big1', 'small1'], 'the small tenant is served second, not after the whole backlog');
  t.equal(order.length, 5);
  t.equal(slots.inUse, 2, 'slots handed over, never over capacity');
  slots.release();
  slots.release();
  t.equal(slots.free, 2);
  t.equal(slots.whenFree(), undefined, 'free now');
});
