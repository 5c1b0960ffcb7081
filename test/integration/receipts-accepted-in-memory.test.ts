/**
 * The message rows a store keeps in memory for the messages it accepted
 * (ReceiptStore.acceptedMessage, and the rows its receipts and submits read
 * for their status events): the same answers as reading the row, from this
 * store and from another one on the same environment (another process of
 * the host, which did not accept them); no row read on the way from submit
 * to final for a message accepted here; gone with the purge; bounded.
 */
import t, { type Test } from 'tap';
import type { Database } from 'lmdb';
import { createMetrics } from '../../src/telemetry/metrics.js';
import type { ReceiptStore } from '../../src/receipts/store.js';
import type { MessageRecord, SegmentResult } from '../../src/receipts/types.js';
import { storeOn, tempReceiptStore } from '../support/receipt-store.js';

const T0 = Date.now();
const BOUND = 16_384;

/** A message with every optional field the row keeps, or none of them. */
function message(id: string, full: boolean, recipients = 1): MessageRecord {
  const base: MessageRecord = { id, tenant: 'oa', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 2, recipients, createdAt: T0, expiresAt: T0 + 3_600_000 };
  if (!full) return base;
  return {
    ...base, reference: `ref ${id} 通知`, idempotencyKey: `k-${id}`, fingerprint: `fp-${id}`, callbackUrl: `https://hooks.example/done?m=${id}`,
    statusCallback: { url: 'https://hooks.example/events', events: ['submitted', 'final'] },
  };
}

/** Counts reads of the store's message rows (its `messages` database handle). */
function countRowReads(t: Test, s: ReceiptStore): { n: number } {
  const db = (s as unknown as { messages: Database<unknown, string> }).messages;
  const get = db.get.bind(db);
  const count = { n: 0 };
  db.get = ((id: string) => {
    count.n++;
    return get(id);
  });
  t.teardown(() => {
    db.get = get;
  });
  return count;
}

const submitted = (id: string, n: number): SegmentResult[] =>
  Array.from({ length: n }, (_, index) => [1, 2].map((segment) => ({ kind: 'submitted', messageId: id, index, segment, segments: 2, account: 'acc', opId: `${id}-${index}-${segment}`, at: T0 + 100 }) as const)).flat();

async function receipts(s: ReceiptStore, id: string, n: number): Promise<void> {
  for (let index = 0; index < n; index++) {
    for (const segment of [1, 2]) await s.applyReceipt({ account: 'acc', messageId: `${id}-${index}-${segment}`, state: 'delivered', doneAt: T0 + 200 });
  }
}

/** Status events written per lane, as the store announces them after commit. */
function eventCounter(s: ReceiptStore): { n: number } {
  const c = { n: 0 };
  s.onEvents((lanes) => {
    for (const [, , k] of lanes.values()) c.n += k;
  });
  return c;
}

t.test('acceptedMessage gives what getMessage gives, here and in another store on the environment', async (t) => {
  const { store: a, temp } = tempReceiptStore(t);
  const b = storeOn(temp);
  for (const [id, full] of [['full', true], ['bare', false]] as const) a.putMessage(message(id, full, 3), ['8613800000001', '8613800000002', '8613800000003']);
  await a.flushed();
  for (const id of ['full', 'bare']) {
    t.same(a.acceptedMessage(id), a.getMessage(id), `${id}: from memory, as read`);
    t.same(b.acceptedMessage(id), a.getMessage(id), `${id}: another store reads it`);
  }
  t.equal(a.acceptedMessage('nope'), undefined);
});

t.test('submit to final of a message accepted here reads no message row and writes the same events as a store that reads it', async (t) => {
  const { store: a, temp } = tempReceiptStore(t);
  const b = storeOn(temp);
  a.putMessage(message('here', true, 2), ['8613800000001', '8613800000002']);
  a.putMessage(message('there', true, 2), ['8613800000003', '8613800000004']);
  await a.flushed();
  const readsA = countRowReads(t, a);
  const readsB = countRowReads(t, b);
  const eventsA = eventCounter(a);
  const eventsB = eventCounter(b);
  await a.recordSegments(submitted('here', 2));
  await receipts(a, 'here', 2);
  // The same changes made by a store that did not accept the message: it reads the row.
  await b.recordSegments(submitted('there', 2));
  await receipts(b, 'there', 2);
  t.equal(readsA.n, 0, 'no message row read by the store that accepted it');
  t.ok(readsB.n > 0, `the other store read it (${readsB.n})`);
  t.equal(eventsA.n, 4, 'submitted and final for each of two recipients');
  t.equal(eventsB.n, eventsA.n, 'the same events either way');
  t.same(a.summary('here'), a.summary('there'));
  t.equal(a.summary('here').delivered, 2);
});

t.test('a purged message leaves memory with its row', async (t) => {
  const { store: a } = tempReceiptStore(t);
  a.putMessage({ ...message('old', true), createdAt: T0 - 20_000, expiresAt: T0 - 10_000 }, ['8613800000001']);
  await a.flushed();
  await a.recordSegments([1, 2].map((segment) => ({ kind: 'final', messageId: 'old', index: 0, segment, segments: 2, state: 'failed', error: 'test', at: T0 }) as const));
  t.ok(a.acceptedMessage('old'), 'kept');
  for (let k = 0; k < 10 && (await a.expireDue()) > 0; k++);
  const purged = await a.purgeFinalMessages(T0, { scan: 100, batchRows: 100, maxRows: 100 });
  t.equal(purged.messages, 1);
  t.equal(a.acceptedMessage('old'), undefined, 'gone from memory too');
  t.equal(a.getMessage('old'), undefined);
});

t.test(`bounded: ${BOUND} messages kept at most, the oldest dropped first and read again`, async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const { store: a } = tempReceiptStore(t, { metrics });
  const n = BOUND + 100;
  for (let i = 0; i < n; i++) a.putMessage(message(`m${i}`, i % 2 === 0), ['8613800000001']);
  await a.flushed();
  const gauge = (await metrics.registry.getSingleMetric('smsgw_receipts_messages_in_memory')?.get())?.values[0]?.value;
  t.equal(gauge, BOUND, 'the gauge shows the bound');
  const reads = countRowReads(t, a);
  t.same(a.acceptedMessage('m0'), a.getMessage('m0'), 'the oldest, read from its row');
  t.equal(reads.n, 2, 'acceptedMessage read it (and getMessage)');
  reads.n = 0;
  t.same(a.acceptedMessage(`m${n - 1}`), message(`m${n - 1}`, (n - 1) % 2 === 0), 'the newest, from memory');
  t.equal(reads.n, 0);
  // An id written again (allowed: it overwrites) takes a second place in the order; the bound still holds.
  for (let i = 0; i < 300; i++) a.putMessage(message(`m${n - 1 - (i % 3)}`, i % 2 === 0), ['8613800000001']);
  await a.flushed();
  const after = (await metrics.registry.getSingleMetric('smsgw_receipts_messages_in_memory')?.get())?.values[0]?.value;
  t.equal(after, BOUND, 'still the bound after ids written again');
  t.same(a.acceptedMessage(`m${n - 1}`), a.getMessage(`m${n - 1}`), 'an id written again reads as its last write');
});
