/**
 * MailAlertStore on a real LMDB environment: the latest state is readable at
 * once (overlay) and after the commit; the due index follows every change;
 * the pending count survives a reopen; de-duplication marks expire.
 */
import t from 'tap';
import { MailAlertStore } from '../../src/office/mail/store.js';
import { tempEnv } from '../support/temp-env.js';

const pending = (dueAt: number, count = 1) => ({ id: `d${dueAt}`, count, sender: 's', subject: 'x', dueAt, attempts: 0 });

t.test('states, the due index and the pending count', async (t) => {
  const env = tempEnv(t);
  const store = new MailAlertStore(env);
  const w1 = store.write('a', { lastSentAt: 10, pending: pending(100) });
  t.same(store.state('a'), { lastSentAt: 10, pending: pending(100) }, 'visible before the commit');
  const w2 = store.write('b', { pending: pending(50) });
  const w3 = store.write('a', { lastSentAt: 10, pending: pending(200, 2) });
  t.equal(store.pending, 2);
  await Promise.all([w1, w2, w3, store.flushed()]);
  await store.settle();
  t.same(store.dueAt(150, 10), ['b'], 'a moved to 200');
  t.same(store.dueAt(1000, 10), ['b', 'a'], 'earliest first');
  t.equal(store.nextDue(), 50);
  await store.write('b', { lastSentAt: 60 });
  t.same(store.dueAt(1000, 10), ['a']);
  t.equal(store.pending, 1);
  await store.write('a', undefined);
  t.equal(store.state('a'), undefined);
  t.same(store.dueAt(1000, 10), []);
  await store.write('c', { pending: pending(5) });
  await store.settle();
  t.equal(new MailAlertStore(env).pending, 1, 'counted again when opened');
});

t.test('de-duplication marks until swept', async (t) => {
  const store = new MailAlertStore(tempEnv(t));
  await store.markSeen('k1', 'a', 1000);
  await store.markSeen('k2', 'a', 2000);
  await store.markSeen('k1', 'b', 3000);
  t.ok(store.wasSeen('k1', 'a'));
  t.notOk(store.wasSeen('k2', 'b'));
  t.equal(await store.sweepSeen(2500, 10), 2);
  t.notOk(store.wasSeen('k1', 'a'));
  t.notOk(store.wasSeen('k2', 'a'));
  t.ok(store.wasSeen('k1', 'b'));
  t.equal(await store.sweepSeen(2500, 10), 0);
});
