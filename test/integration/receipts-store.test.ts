/**
 * The receipt store on a real LMDB environment: ingest rows, status queries,
 * idempotency, recipient finalising, final-state listeners, and the
 * group-commit write queue (ordering, batching, bounds, abort, close).
 * Receipt matching and expiry: receipts-dlr.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { open, type RootDatabase } from 'lmdb';
import { GatewayError } from '../../src/core/errors.js';
import type { FinalState } from '../../src/core/message.js';
import { CommitQueue, type TxnEffects } from '../../src/receipts/commit-queue.js';
import { ReceiptStore, type CallbackState, type ReceiptStoreOptions } from '../../src/receipts/store.js';
import { CALLBACK_ROW, openRowDatabase } from '../../src/receipts/row-codec.js';
import type { MessageRecord, SegmentResult } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';

const T0 = 1_700_000_000_000;

interface Fixture {
  env: RootDatabase;
  store: ReceiptStore;
  clock: { now: number };
  metrics: Metrics;
  logs: Array<{ level: number; msg: string }>;
}

function setup(tt: Test, extra: Partial<ReceiptStoreOptions> = {}): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-receipts-'));
  const env = open({ path: dir, maxDbs: 32 });
  const clock = { now: T0 };
  const metrics = createMetrics({ defaultMetrics: false });
  const logs: Array<{ level: number; msg: string }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as { level: number; msg: string });
      cb();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  const store = ReceiptStore.open({
    env, metrics, logger, now: () => clock.now, earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000, ...extra,
  });
  tt.teardown(async () => {
    await store.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { env, store, clock, metrics, logs };
}

function message(id: string, recipients: number, over: Partial<MessageRecord> = {}): MessageRecord {
  return {
    id, tenant: 'tax-bureau', tier: 'normal', channel: 'sms', encoding: 'ucs2', segments: 1, recipients,
    createdAt: T0, expiresAt: T0 + 3_600_000, ...over,
  };
}

function numbers(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `86138${String(i).padStart(8, '0')}`);
}

function submitted(messageId: string, index: number, opId: string, segment = 1, segments = 1): SegmentResult {
  return { kind: 'submitted', messageId, index, segment, segments, account: 'cmcc-1', opId, at: T0 + 1_000 };
}

async function metricValue(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const all = await m.registry.getMetricsAsJSON();
  let sum = 0;
  for (const metric of all) {
    for (const v of metric.values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>) {
      const vName = v.metricName ?? metric.name;
      if (vName !== name) continue;
      if (Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x)) sum += v.value;
    }
  }
  return sum;
}

t.test('a message and its recipients read back once flushed', async (t) => {
  const { store } = setup(t);
  const msg = message('m1', 3, { group: 'all-staff', reference: 'ref-7', idempotencyKey: 'k1', callbackUrl: 'https://cb.example/x', segments: 2 });
  store.putMessage(msg, numbers(3));
  await store.flushed();
  t.same(store.getMessage('m1'), msg, 'message row round-trips every field');
  t.equal(store.getMessage('nope'), undefined);
  const r = store.getRecipient('m1', 2);
  t.match(r, { to: '8613800000002', state: 'accepted', acceptedAt: T0, updatedAt: T0, segs: [] });
  t.equal(r?.error, undefined);
  t.equal(store.getRecipient('m1', 3), undefined, 'no row past the recipient count');
  t.equal(store.getSegment('m1', 0, 1), undefined, 'nothing recorded yet reads as undefined (pending)');
  t.same(store.summary('m1'), {
    accepted: 3, queued: 0, submitted: 0, delivered: 0, undeliverable: 0, expired: 0, rejected: 0, failed: 0,
  });
  t.equal(Object.values(store.summary('unknown')).reduce((a, b) => a + b, 0), 0, 'unknown id: all zero');
  t.throws(() => store.putMessage(message('bad', 2), numbers(3)), { code: 'INTERNAL' }, 'numbers must match the recipient count');
});

t.test('recipients page in index order with a cursor', async (t) => {
  const { store } = setup(t);
  store.putMessage(message('m1', 25), numbers(25));
  store.putMessage(message('m0', 3), numbers(3)); // a neighbour in key order must not leak in
  store.putMessage(message('m2', 3), numbers(3));
  await store.flushed();
  const seen: number[] = [];
  let cursor: number | undefined;
  const nexts: Array<number | undefined> = [];
  for (let page = 0; page < 10; page++) {
    const p = store.listRecipients('m1', cursor === undefined ? { limit: 10 } : { cursor, limit: 10 });
    for (const it of p.items) {
      seen.push(it.index);
      t.equal(it.to, `86138${String(it.index).padStart(8, '0')}`);
    }
    nexts.push(p.next);
    if (p.next === undefined) break;
    cursor = p.next;
  }
  t.same(nexts, [10, 20, undefined]);
  t.same(seen, Array.from({ length: 25 }, (_, i) => i), 'every recipient exactly once, in order');
  const last = store.listRecipients('m1', { cursor: 20, limit: 5 });
  t.equal(last.items.length, 5);
  t.equal(last.next, undefined, 'an exactly full last page has no next');
  t.same(store.listRecipients('m1', { cursor: 99, limit: 5 }).items, []);
  t.same(store.listRecipients('nope', { limit: 5 }).items, []);
  t.equal(store.listRecipients('m1', { limit: 0 }).items.length, 1, 'limit is at least 1');
});

t.test('markQueued moves accepted to queued and never backwards', async (t) => {
  const { store } = setup(t);
  store.putMessage(message('m1', 3), numbers(3));
  await store.flushed();
  await store.recordSegments([submitted('m1', 2, 'a2')]);
  store.markQueued('m1', [0, 1, 2]);
  await store.flushed(); // hands the queued operation over and waits for it
  t.equal(store.getRecipient('m1', 0)?.state, 'queued');
  t.equal(store.getRecipient('m1', 1)?.state, 'queued');
  t.equal(store.getRecipient('m1', 2)?.state, 'submitted', 'submitted is not moved back to queued');
});

t.test('idempotency entries: read back, expire, swept without losing a newer put', async (t) => {
  const { store, clock } = setup(t);
  store.putIdempotency('tax-bureau', 'key-1', { id: 'm1', recipients: 3 }, T0 + 1_000);
  store.putIdempotency('police', 'key-1', 'other tenant', T0 + 1_000);
  await store.flushed();
  t.same(store.getIdempotency('tax-bureau', 'key-1'), { id: 'm1', recipients: 3 });
  t.equal(store.getIdempotency('police', 'key-1'), 'other tenant', 'keys are per tenant');
  t.equal(store.getIdempotency('tax-bureau', 'key-2'), undefined);
  clock.now = T0 + 1_000;
  t.equal(store.getIdempotency('tax-bureau', 'key-1'), undefined, 'expired entries read as absent before any sweep');
  clock.now = T0 + 1_001;
  t.equal(await store.sweepIdempotency(), 2);
  t.equal(await store.sweepIdempotency(), 0);

  // Re-put with a later expiry: the first expiry entry is stale and must not remove the new value.
  store.putIdempotency('tax-bureau', 'key-3', 'v1', clock.now + 10);
  await store.flushed();
  store.putIdempotency('tax-bureau', 'key-3', 'v2', clock.now + 100);
  await store.flushed();
  clock.now += 50;
  t.equal(await store.sweepIdempotency(), 0, 'stale index entry removed, value kept');
  t.equal(store.getIdempotency('tax-bureau', 'key-3'), 'v2');
  t.throws(() => store.putIdempotency('t', 'x'.repeat(600), 1, clock.now + 1), { code: 'VALIDATION' });
});

t.test('finalizeRecipients never overwrites a final state; submitted segments keep waiting', async (t) => {
  const { store, metrics } = setup(t);
  store.putMessage(message('m1', 3, { segments: 2 }), numbers(3));
  await store.flushed();
  await store.recordSegments([
    submitted('m1', 0, 'a1', 1, 2), submitted('m1', 0, 'a2', 2, 2),
    submitted('m1', 1, 'b1', 1, 2),
  ]);
  for (const id of ['a1', 'a2']) {
    t.equal(await store.applyReceipt({ account: 'cmcc-1', messageId: id, state: 'delivered', doneAt: T0 + 2_000 }), 'applied');
  }
  t.equal(store.getRecipient('m1', 0)?.state, 'delivered');

  await store.finalizeRecipients('m1', [0, 1, 2].map((index) => ({ index, state: 'failed', error: 'dead-lettered' })));
  t.equal(store.getRecipient('m1', 0)?.state, 'delivered', 'final recipient untouched');
  const r1 = store.getRecipient('m1', 1);
  t.equal(r1?.state, 'submitted', 'a segment the SMSC accepted still waits for its receipt');
  t.same(r1?.segs.map((s) => s.state), ['submitted', 'failed']);
  const r2 = store.getRecipient('m1', 2);
  t.equal(r2?.state, 'failed');
  t.equal(r2?.error, 'dead-lettered');
  t.same(r2?.segs.map((s) => [s.state, s.error]), [['failed', 'dead-lettered'], ['failed', 'dead-lettered']], 'never-submitted segments take the state');

  await store.applyReceipt({ account: 'cmcc-1', messageId: 'b1', state: 'delivered', doneAt: T0 + 3_000 });
  t.equal(store.getRecipient('m1', 1)?.state, 'failed', 'once every segment is final: the worst wins');

  await store.finalizeRecipients('m1', [{ index: 2, state: 'rejected', error: 'police channel' }]);
  t.equal(store.getRecipient('m1', 2)?.state, 'failed', 'a second verdict changes nothing');
  t.equal(await metricValue(metrics, 'smsgw_recipients_final_total', { state: 'failed' }), 2);
  t.equal(await metricValue(metrics, 'smsgw_recipients_final_total', { state: 'delivered' }), 1);
  await t.rejects(store.finalizeRecipients('nope', [{ index: 0, state: 'failed', error: 'x' }]), { code: 'INTERNAL' });
});

t.test('onFinal: once per recipient, after commit', async (t) => {
  const { store, clock } = setup(t);
  const calls: Array<[string, number, FinalState]> = [];
  const seenCommitted: boolean[] = [];
  store.onFinal((id, index, state) => {
    calls.push([id, index, state]);
    seenCommitted.push(store.getRecipient(id, index)?.state === state);
  });
  store.putMessage(message('m1', 3, { expiresAt: T0 + 10_000 }), numbers(3));
  await store.flushed();
  await store.recordSegments([submitted('m1', 0, 'x0'), submitted('m1', 1, 'x1')]);
  await store.applyReceipt({ account: 'cmcc-1', messageId: 'x0', state: 'delivered', doneAt: T0 + 2_000 });
  await store.applyReceipt({ account: 'cmcc-1', messageId: 'x0', state: 'delivered', doneAt: T0 + 2_000 });
  clock.now = T0 + 10_000 + 5_001;
  t.equal(await store.expireDue(), 2);
  t.equal(await store.expireDue(), 0);
  await store.finalizeRecipients('m1', [0, 1, 2].map((index) => ({ index, state: 'failed', error: 'x' })));
  t.same(calls, [['m1', 0, 'delivered'], ['m1', 1, 'expired'], ['m1', 2, 'expired']]);
  t.same(seenCommitted, [true, true, true], 'listeners read the committed state');

  for (let i = 0; i < 7; i++) store.onFinal(() => undefined);
  t.throws(() => store.onFinal(() => undefined), { code: 'INTERNAL' }, 'the listener list is bounded');
});

t.test('a throwing listener is logged and does not disturb the store', async (t) => {
  const { store, logs } = setup(t);
  store.onFinal(() => {
    throw new Error('listener bug');
  });
  store.putMessage(message('m1', 1), numbers(1));
  await store.flushed();
  await store.recordSegments([{ kind: 'final', messageId: 'm1', index: 0, segment: 1, segments: 1, state: 'rejected', error: 'ESME_RINVDSTADR', at: T0 }]);
  t.equal(store.getRecipient('m1', 0)?.state, 'rejected');
  t.equal(logs.filter((l) => l.level === 50 && l.msg === 'final-state listeners threw').length, 1);
});

t.test('an operation that fails validation rejects alone and writes nothing', async (t) => {
  const { store } = setup(t);
  store.putMessage(message('m1', 2), numbers(2));
  await store.flushed();
  // Same turn, so both operations share one transaction.
  const bad = store.recordSegments([submitted('m1', 0, 'ok-0'), submitted('m1', 99, 'no-such-recipient')]);
  const good = store.recordSegments([submitted('m1', 1, 'ok-1')]);
  await t.rejects(bad, { code: 'INTERNAL' });
  await good;
  t.equal(store.getSegment('m1', 0, 1), undefined, 'nothing of the failed call was written');
  t.equal(store.getSegment('m1', 1, 1)?.opId, 'ok-1', 'its batch neighbour committed');
  t.equal(await store.applyReceipt({ account: 'cmcc-1', messageId: 'ok-0', state: 'delivered', doneAt: T0 }), 'early', 'the failed call indexed no operator id');
  await t.rejects(store.recordSegments([submitted('m1', 0, 'x', 2, 1)]), { code: 'INTERNAL' }, 'segment out of range');
  await t.rejects(store.recordSegments([submitted('m1', 0, 'x', 1, 2), submitted('m1', 1, 'y', 1, 2)]), { code: 'INTERNAL' }, 'segment count disagreeing with what is recorded');
});

t.test('one batch, one row: a failed operation between two receipts of the same recipient leaves no trace on it', async (t) => {
  const { store, metrics } = setup(t);
  store.putMessage(message('m1', 2, { segments: 3 }), numbers(2));
  await store.flushed();
  await store.recordSegments([submitted('m1', 0, 'p1', 1, 3), submitted('m1', 0, 'p2', 2, 3)]);
  const stateBefore = store.getRecipient('m1', 0)?.state;
  const before = await metricValue(metrics, 'smsgw_receipts_write_batch_size_count');
  // One turn, one transaction: receipt for part 1; then a call that changes the same row (part 3
  // submitted) before failing on a recipient that does not exist; then receipt for part 2.
  const r1 = store.applyReceipt({ account: 'cmcc-1', messageId: 'p1', state: 'delivered', doneAt: T0 + 10 });
  const bad = store.recordSegments([submitted('m1', 0, 'p3', 3, 3), submitted('m1', 7, 'nobody', 1, 3)]);
  const r2 = store.applyReceipt({ account: 'cmcc-1', messageId: 'p2', state: 'delivered', doneAt: T0 + 20 });
  t.equal(await r1, 'applied');
  await t.rejects(bad, { code: 'INTERNAL' });
  t.equal(await r2, 'applied');
  t.equal((await metricValue(metrics, 'smsgw_receipts_write_batch_size_count')) - before, 1, 'one transaction');
  const segs = store.getSegments('m1', 0);
  t.same(segs.map((s) => s.state), ['delivered', 'delivered', 'pending'], 'both receipts kept; the failed call changed nothing');
  t.equal(segs[2]?.opId, undefined, 'part 3 has no operator id');
  t.equal(store.getRecipient('m1', 0)?.state, stateBefore, 'not final, as before the batch: part 3 was never submitted');
  t.equal(await store.applyReceipt({ account: 'cmcc-1', messageId: 'p3', state: 'delivered', doneAt: T0 }), 'early', 'the failed call indexed no operator id');
});

t.test('one batch: a sweep that reads rows by range sees what earlier operations of the batch changed', async (t) => {
  const { store, clock } = setup(t);
  store.putMessage(message('m1', 1, { segments: 3, expiresAt: T0 + 1_000 }), numbers(1));
  await store.flushed();
  await store.recordSegments([submitted('m1', 0, 'q1', 1, 3), submitted('m1', 0, 'q2', 2, 3), submitted('m1', 0, 'q3', 3, 3)]);
  clock.now = T0 + 60_000;
  // Same turn: receipts for parts 1 and 2, the expiry sweep (a range read), then a receipt for part 3.
  const r1 = store.applyReceipt({ account: 'cmcc-1', messageId: 'q1', state: 'delivered', doneAt: T0 + 10 });
  const r2 = store.applyReceipt({ account: 'cmcc-1', messageId: 'q2', state: 'delivered', doneAt: T0 + 20 });
  const swept = store.expireDue();
  const r3 = store.applyReceipt({ account: 'cmcc-1', messageId: 'q3', state: 'delivered', doneAt: T0 + 30 });
  t.same(await Promise.all([r1, r2]), ['applied', 'applied']);
  await swept;
  t.equal(await r3, 'duplicate', 'part 3 was final (expired) when its receipt came');
  t.same(store.getSegments('m1', 0).map((s) => s.state), ['delivered', 'delivered', 'expired'], 'the sweep kept both receipts');
  t.equal(store.getRecipient('m1', 0)?.state, 'expired');
});

t.test('group commit: operations of one turn share a transaction and run in order', async (t) => {
  const { store, metrics } = setup(t);
  store.putMessage(message('m1', 50), numbers(50));
  await store.flushed();
  const before = await metricValue(metrics, 'smsgw_receipts_write_batch_size_count');
  // Receipts first, then the submits they belong to, all in one turn: each
  // receipt is early when it runs, and its submit (later in the same
  // transaction) sees it and applies it.
  const receipts = Array.from({ length: 50 }, (_, i) => store.applyReceipt({ account: 'cmcc-1', messageId: `op-${i}`, state: 'delivered', doneAt: T0 }));
  const submits = Array.from({ length: 50 }, (_, i) => store.recordSegments([submitted('m1', i, `op-${i}`)]));
  t.same(await Promise.all(receipts), Array(50).fill('early'));
  await Promise.all(submits);
  t.equal(store.summary('m1').delivered, 50);
  t.equal((await metricValue(metrics, 'smsgw_receipts_write_batch_size_count')) - before, 1, 'one transaction');
  t.equal(await metricValue(metrics, 'smsgw_receipts_write_batch_size_sum'), 100, 'of 100 items');
});

t.test('bounded: writers beyond maxPendingWrites wait, beyond maxWaitingWrites are refused', async (t) => {
  const { store } = setup(t, { maxPendingWrites: 2, maxWaitingWrites: 2, flushAt: 100 });
  store.putMessage(message('m1', 5), numbers(5));
  await store.flushed();
  const settled: string[] = [];
  const ps = Array.from({ length: 5 }, (_, i) =>
    store.recordSegments([submitted('m1', i, `o${i}`)]).then(
      () => settled.push(`ok${i}`),
      (e: unknown) => settled.push(`${i}:${(e as GatewayError).code}`),
    ));
  t.equal(store.pendingWrites, 2, 'two admitted, the rest wait');
  await Promise.all(ps);
  t.same(settled.slice().sort(), ['4:OVERLOADED', 'ok0', 'ok1', 'ok2', 'ok3']);
  t.equal(settled[0], '4:OVERLOADED', 'refused at once, not after waiting');
  t.equal(store.summary('m1').submitted, 4);
  t.equal(store.pendingWrites, 0);
});

t.test('close commits what was accepted, then refuses writes', async (t) => {
  const { store } = setup(t);
  store.putMessage(message('m1', 2), numbers(2));
  await store.flushed();
  const pending = store.recordSegments([submitted('m1', 0, 'c0')]);
  await store.close();
  await pending;
  t.equal(store.getSegment('m1', 0, 1)?.state, 'submitted', 'readable after close while the env is open');
  await t.rejects(store.recordSegments([submitted('m1', 1, 'c1')]), GatewayError);
  await t.rejects(store.applyReceipt({ account: 'cmcc-1', messageId: 'c0', state: 'delivered', doneAt: T0 }), { code: 'STORE_CLOSED' });
  t.throws(() => store.putMessage(message('m2', 1), numbers(1)), { code: 'STORE_CLOSED' });
  await store.close(); // idempotent
});

t.test('a message and its results may be written in the same turn', async (t) => {
  const { store } = setup(t, { flushAt: 1 }); // hand over at once, into the batch of the plain puts
  store.putMessage(message('m1', 1), numbers(1));
  await store.recordSegments([submitted('m1', 0, 'same-turn')]);
  t.equal(store.getRecipient('m1', 0)?.state, 'submitted', 'the transaction ran after the puts of its turn and saw them');
});

t.test('a failure while writing aborts the whole batch: nothing half applied', async (t) => {
  const { env } = setup(t);
  const db = env.openDB<string, string>({ name: 'test.commit-queue', encoding: 'msgpack' });
  const batches: number[] = [];
  const queue = new CommitQueue<TxnEffects>({
    env, flushAt: 100, maxPending: 100, maxWaiting: 10,
    newEffects: () => ({ begin: () => undefined, discard: () => undefined }),
    afterCommit: () => undefined,
    onBatch: (n) => batches.push(n),
  });
  const first = queue.enqueue(1, (_fx, w) => w.put(db, 'a', 'written by the first operation'));
  const bad = queue.enqueue(1, (_fx, w) => w.put(db, 'k'.repeat(4_000), 'a key LMDB refuses'));
  const invalid = queue.enqueue(1, () => {
    throw new GatewayError('INTERNAL', 'validation');
  });
  await t.rejects(first, { code: 'INTERNAL', message: /nothing in it was written/ });
  await t.rejects(bad, { code: 'INTERNAL' });
  await t.rejects(invalid, { code: 'INTERNAL' });
  t.equal(db.get('a'), undefined, 'the first operation was rolled back with the batch');
  t.same(batches, [3]);
  // The environment keeps working, and a validation error alone rejects only its operation.
  const ok = queue.enqueue(1, (_fx, w) => w.put(db, 'b', 'later'));
  const alone = queue.enqueue(1, () => {
    throw new GatewayError('INTERNAL', 'validation');
  });
  await ok;
  await t.rejects(alone, { message: 'validation' });
  t.equal(db.get('b'), 'later');
  await queue.drain();
  await t.rejects(queue.enqueue(1, () => 1), { code: 'STORE_CLOSED' });
});

t.test('a message with a callbackUrl: its callback row is the bytes a put of the waiting state writes (packed once, not per message)', async (t) => {
  const { env, store } = setup(t);
  store.putMessage(message('m-cb', 1, { callbackUrl: 'https://example.org/cb' }), ['8613800138000']);
  store.putMessage(message('m-cb2', 1, { callbackUrl: 'https://example.org/cb' }), ['8613800138001']);
  await store.flushed();
  // A put of the waiting state through the callback rows' encoding (positional, row-codec.ts).
  const plain = openRowDatabase<CallbackState, string>(env, 'receipts.callbacks.check', CALLBACK_ROW);
  await plain.put('x', { attempts: 0, nextAt: 0, state: 'waiting' });
  const expected = Buffer.from(plain.getBinary('x') as Uint8Array).toString('hex');
  for (const id of ['m-cb', 'm-cb2']) {
    t.equal(Buffer.from(store.callbacks.getBinary(id) as Uint8Array).toString('hex'), expected, `${id}: same bytes`);
    t.same(store.callbacks.get(id), { attempts: 0, nextAt: 0, state: 'waiting' }, `${id}: reads back`);
  }
});
