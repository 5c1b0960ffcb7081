/**
 * Receipt matching and the fate of every segment, on a real LMDB environment:
 * submit then DLR, DLR before submit (early, across a restart too), hex vs
 * decimal ids, multi-part recipients, duplicates, intermediate receipts,
 * dispatcher verdicts that must not override the SMSC, and the expiry and
 * early-receipt sweeps.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { open, type RootDatabase } from 'lmdb';
import type { DeliveryReceipt } from '../../src/core/ports.js';
import { EXPIRED_REASON, ReceiptStore, type ReceiptStoreOptions } from '../../src/receipts/store.js';
import type { MessageRecord, SegmentResult } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';

const T0 = 1_700_000_000_000;
const ACCOUNT = 'cmcc-1';
const TTL = 60_000;
const GRACE = 5_000;

interface Fixture {
  dir: string;
  env: RootDatabase;
  store: ReceiptStore;
  clock: { now: number };
  metrics: Metrics;
  logs: Array<{ level: number; msg: string; count?: number }>;
}

function openStore(dir: string, clock: { now: number }, extra: Partial<ReceiptStoreOptions> = {}): Omit<Fixture, 'dir' | 'clock'> {
  const env = open({ path: dir, maxDbs: 32 });
  const metrics = createMetrics({ defaultMetrics: false });
  const logs: Fixture['logs'] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Fixture['logs'][number]);
      cb();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  const store = ReceiptStore.open({
    env, metrics, logger, now: () => clock.now, earlyReceiptTtlMs: TTL, receiptGraceMs: GRACE, ...extra,
  });
  return { env, store, metrics, logs };
}

function setup(tt: Test, extra: Partial<ReceiptStoreOptions> = {}): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-receipts-'));
  const clock = { now: T0 };
  const f: Fixture = { dir, clock, ...openStore(dir, clock, extra) };
  tt.teardown(async () => {
    // The test may have reopened: close whatever the fixture holds now.
    await f.store.close();
    await f.env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return f;
}

function message(id: string, recipients: number, over: Partial<MessageRecord> = {}): MessageRecord {
  return {
    id, tenant: 'tax-bureau', tier: 'normal', channel: 'sms', encoding: 'ucs2', segments: 1, recipients,
    createdAt: T0, expiresAt: T0 + 3_600_000, ...over,
  };
}

function numbers(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `86139${String(i).padStart(8, '0')}`);
}

function submitted(messageId: string, index: number, opId: string, segment = 1, segments = 1, at = T0 + 1_000): SegmentResult {
  return { kind: 'submitted', messageId, index, segment, segments, account: ACCOUNT, opId, at };
}

function dlr(messageId: string, state: DeliveryReceipt['state'] = 'delivered', over: Partial<DeliveryReceipt> = {}): DeliveryReceipt {
  return { account: ACCOUNT, messageId, state, doneAt: T0 + 4_000, ...over };
}

async function metricValue(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const all = await m.registry.getMetricsAsJSON();
  let sum = 0;
  for (const metric of all) {
    for (const v of metric.values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>) {
      if ((v.metricName ?? metric.name) !== name) continue;
      if (Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x)) sum += v.value;
    }
  }
  return sum;
}

t.test('submit, then its receipt: delivered, with latency and counters', async (t) => {
  const { store, metrics, logs } = setup(t);
  store.putMessage(message('m1', 2), numbers(2));
  await store.flushed();
  await store.recordSegments([submitted('m1', 0, 'A1'), submitted('m1', 1, 'A2')]);
  t.match(store.getRecipient('m1', 0), { state: 'submitted', segs: [{ state: 'submitted', account: ACCOUNT, opId: 'A1', submittedAt: T0 + 1_000 }] });
  t.equal(store.getSegment('m1', 0, 1)?.opId, 'A1', 'the dispatcher sees the operator id (never submits it again)');

  t.equal(await store.applyReceipt(dlr('A1')), 'applied');
  t.equal(await store.applyReceipt(dlr('A2', 'undeliverable', { error: '0x0b' })), 'applied');
  t.match(store.getRecipient('m1', 0), { state: 'delivered', segs: [{ state: 'delivered', doneAt: T0 + 4_000 }] });
  t.equal(store.getRecipient('m1', 0)?.error, undefined);
  t.match(store.getRecipient('m1', 1), { state: 'undeliverable', error: '0x0b', segs: [{ state: 'undeliverable', error: '0x0b' }] });
  t.equal(await metricValue(metrics, 'smsgw_dlr_received_total', { state: 'delivered' }), 1);
  t.equal(await metricValue(metrics, 'smsgw_dlr_latency_seconds_count', { account: ACCOUNT }), 2);
  t.equal(await metricValue(metrics, 'smsgw_dlr_latency_seconds_sum', { account: ACCOUNT }), 6, 'submittedAt → doneAt, 3 s each');
  t.equal(await metricValue(metrics, 'smsgw_recipients_final_total'), 2);
  t.equal(logs.filter((l) => l.level >= 30).length, 0, 'nothing logged at info or above per receipt');
});

t.test('a receipt before its submit is kept early, then applied by the submit', async (t) => {
  const { store, metrics, clock } = setup(t);
  store.putMessage(message('m1', 1), numbers(1));
  await store.flushed();
  t.equal(await store.applyReceipt(dlr('E1')), 'early');
  t.equal(await store.applyReceipt(dlr('E1')), 'duplicate', 'the same early receipt twice');
  t.equal(await metricValue(metrics, 'smsgw_dlr_early_total', { account: ACCOUNT }), 1);
  t.equal(store.getRecipient('m1', 0)?.state, 'accepted');
  await store.recordSegments([submitted('m1', 0, 'E1')]);
  t.match(store.getRecipient('m1', 0), { state: 'delivered', segs: [{ state: 'delivered', opId: 'E1', doneAt: T0 + 4_000 }] });
  t.equal(await metricValue(metrics, 'smsgw_dlr_latency_seconds_count'), 1);
  clock.now += TTL + 1;
  t.equal(await store.sweepEarlyReceipts(), 0, 'the applied early receipt is gone from the early store');
  t.equal(await metricValue(metrics, 'smsgw_dlr_unknown_total'), 0);
});

t.test('submit and receipt in the same batch, in either order', async (t) => {
  const { store } = setup(t);
  store.putMessage(message('m1', 2), numbers(2));
  await store.flushed();
  const a = store.recordSegments([submitted('m1', 0, 'S0')]);
  const b = store.applyReceipt(dlr('S0'));
  const c = store.applyReceipt(dlr('S1', 'expired'));
  const d = store.recordSegments([submitted('m1', 1, 'S1')]);
  await a;
  await d;
  t.equal(await b, 'applied', 'submit first: the receipt finds it in the same transaction');
  t.equal(await c, 'early', 'receipt first: early, and applied by the submit after it');
  t.equal(store.getRecipient('m1', 0)?.state, 'delivered');
  t.equal(store.getRecipient('m1', 1)?.state, 'expired');
});

t.test('an early receipt survives closing and reopening the store and the environment', async (t) => {
  const f = setup(t);
  f.store.putMessage(message('m1', 1), numbers(1));
  await f.store.flushed();
  t.equal(await f.store.applyReceipt(dlr('R1', 'undeliverable', { error: '001' })), 'early');
  await f.store.close();
  await f.env.close();
  Object.assign(f, openStore(f.dir, f.clock));
  await f.store.recordSegments([submitted('m1', 0, 'R1')]);
  t.match(f.store.getRecipient('m1', 0), { state: 'undeliverable', error: '001' });
});

t.test('operator ids: one key — case and leading zeros match, another reading of the id never does', async (t) => {
  const { store } = setup(t);
  store.putMessage(message('m1', 6), numbers(6));
  await store.flushed();
  await store.recordSegments([
    submitted('m1', 0, '3039'),
    submitted('m1', 1, '12346'),
    submitted('m1', 2, '00ABCDEF'),
    submitted('m1', 3, '16'),
  ]);
  // 12345 is 0x3039 and 0x12346 is 74566: the former lookup gave these receipts to m1/0 and m1/1.
  t.equal(await store.applyReceipt(dlr('12345', 'undeliverable')), 'early', 'a decimal id is not the hex id of the same value');
  t.equal(await store.applyReceipt(dlr('74566', 'undeliverable')), 'early', 'nor the other way round');
  t.equal(await store.applyReceipt(dlr('abcdef')), 'applied', 'case and zero padding');
  t.equal(await store.applyReceipt(dlr('0000016', 'rejected')), 'applied', 'leading zeros');
  t.equal(await store.applyReceipt(dlr('10')), 'early', '10 is 0x16 read back: not submit 16');
  t.same([0, 1, 2, 3].map((i) => store.getRecipient('m1', i)?.state), ['submitted', 'submitted', 'delivered', 'rejected']);
  // Early receipts wait under their one key and meet exactly their own submit.
  await store.recordSegments([submitted('m1', 4, '10'), submitted('m1', 5, '0012345')]);
  t.same([0, 1, 2, 3, 4, 5].map((i) => store.getRecipient('m1', i)?.state), ['submitted', 'submitted', 'delivered', 'rejected', 'delivered', 'undeliverable']);
  await store.recordSegments([submitted('m1', 0, '3039')]);
  t.equal(store.getRecipient('m1', 0)?.state, 'submitted', 'a replayed submit finds no receipt of another id');
  t.equal(await store.applyReceipt(dlr('3039')), 'applied');
  t.equal(await store.applyReceipt(dlr('12346', 'expired')), 'applied');
  t.same([0, 1].map((i) => store.getRecipient('m1', i)?.state), ['delivered', 'expired']);
  t.equal(await store.applyReceipt(dlr('3039', 'delivered', { account: 'other-account' })), 'early', 'ids are per account');
});

t.test('multi-part: delivered only when every part is; the worst part otherwise', async (t) => {
  const { store, metrics } = setup(t);
  store.putMessage(message('m1', 3, { segments: 3 }), numbers(3));
  await store.flushed();
  const parts = (i: number): SegmentResult[] => [1, 2, 3].map((s) => submitted('m1', i, `p${i}-${s}`, s, 3));
  await store.recordSegments([...parts(0), ...parts(1)]);
  await store.recordSegments([submitted('m1', 2, 'p2-2', 2, 3), submitted('m1', 2, 'p2-3', 3, 3)]);
  t.equal(store.getRecipient('m1', 0)?.state, 'submitted');
  t.equal(store.getRecipient('m1', 2)?.state, 'accepted', 'a part not yet submitted keeps it open');

  await store.applyReceipt(dlr('p0-1'));
  await store.applyReceipt(dlr('p0-2'));
  t.equal(store.getRecipient('m1', 0)?.state, 'submitted', 'two of three delivered: still open');
  await store.applyReceipt(dlr('p0-3'));
  t.equal(store.getRecipient('m1', 0)?.state, 'delivered');

  await store.applyReceipt(dlr('p1-1', 'expired', { error: '004' }));
  await store.applyReceipt(dlr('p1-2'));
  await store.applyReceipt(dlr('p1-3', 'undeliverable', { error: '00b' }));
  t.match(store.getRecipient('m1', 1), { state: 'undeliverable', error: '00b' });
  t.same(store.getRecipient('m1', 1)?.segs.map((s) => s.state), ['expired', 'delivered', 'undeliverable']);

  await store.applyReceipt(dlr('p2-2'));
  await store.applyReceipt(dlr('p2-3'));
  t.equal(store.getRecipient('m1', 2)?.state, 'accepted', 'delivered parts but one never submitted: not final');
  t.equal(await metricValue(metrics, 'smsgw_recipients_final_total'), 2);
});

t.test('duplicate and intermediate receipts change nothing', async (t) => {
  const { store, metrics } = setup(t);
  const finals: number[] = [];
  store.onFinal((_id, index) => finals.push(index));
  store.putMessage(message('m1', 1), numbers(1));
  await store.flushed();
  await store.recordSegments([submitted('m1', 0, 'D1')]);
  t.equal(await store.applyReceipt(dlr('D1', 'enroute')), 'ignored');
  t.equal(await store.applyReceipt(dlr('D1', 'accepted')), 'ignored');
  t.equal(store.getRecipient('m1', 0)?.state, 'submitted', 'intermediate receipts leave it submitted');
  t.equal(await store.applyReceipt(dlr('D1')), 'applied');
  t.equal(await store.applyReceipt(dlr('D1')), 'duplicate');
  t.equal(await store.applyReceipt(dlr('D1', 'undeliverable')), 'duplicate', 'a final state never changes');
  t.equal(store.getRecipient('m1', 0)?.state, 'delivered');
  t.same(finals, [0], 'onFinal once');
  t.equal(await metricValue(metrics, 'smsgw_recipients_final_total'), 1);
  t.equal(store.stats().duplicateReceipts, 2);
  t.equal(await metricValue(metrics, 'smsgw_dlr_received_total'), 5, 'every receipt is counted as received');
  t.equal(await store.applyReceipt(dlr('x'.repeat(500))), 'ignored', 'an id that can never match');
  t.equal(await metricValue(metrics, 'smsgw_dlr_unknown_total'), 1);
});

t.test('a dispatcher verdict never overrides a segment the SMSC accepted', async (t) => {
  const { store } = setup(t);
  store.putMessage(message('m1', 2), numbers(2));
  await store.flushed();
  await store.recordSegments([submitted('m1', 0, 'V1')]);
  // e.g. a window timeout racing the submit_sm_resp
  await store.recordSegments([{ kind: 'final', messageId: 'm1', index: 0, segment: 1, segments: 1, state: 'failed', error: 'SMPP_TIMEOUT', at: T0 + 2_000 }]);
  t.equal(store.getRecipient('m1', 0)?.state, 'submitted', 'the receipt decides');
  t.equal(store.stats().ignoredFinalResults, 1);
  await store.applyReceipt(dlr('V1'));
  t.equal(store.getRecipient('m1', 0)?.state, 'delivered');
  // A verdict on a pending segment is final; a submit after it keeps the state and records the id.
  await store.recordSegments([{ kind: 'final', messageId: 'm1', index: 1, segment: 1, segments: 1, state: 'rejected', error: 'ESME_RINVDSTADR', at: T0 + 2_000 }]);
  await store.recordSegments([submitted('m1', 1, 'V2')]);
  t.match(store.getRecipient('m1', 1), { state: 'rejected', error: 'ESME_RINVDSTADR', segs: [{ state: 'rejected', opId: 'V2' }] });
  t.equal(await store.applyReceipt(dlr('V2')), 'duplicate');
});

t.test('a second submit of a segment keeps the first id and indexes both', async (t) => {
  const { store, logs } = setup(t);
  store.putMessage(message('m1', 1), numbers(1));
  await store.flushed();
  await store.recordSegments([submitted('m1', 0, 'first')]);
  await store.recordSegments([submitted('m1', 0, 'first')]);
  t.equal(store.stats().conflictingSubmits, 0, 'a replayed identical result is not a conflict');
  await store.recordSegments([submitted('m1', 0, 'second')]);
  t.equal(store.getSegment('m1', 0, 1)?.opId, 'first');
  t.equal(store.stats().conflictingSubmits, 1);
  t.equal(logs.filter((l) => l.level === 40).length, 1, 'logged once as a warning');
  t.equal(await store.applyReceipt(dlr('second')), 'applied', 'the receipt of either submission decides');
  t.equal(await store.applyReceipt(dlr('first')), 'duplicate');
  t.equal(store.getRecipient('m1', 0)?.state, 'delivered');
});

t.test('expireDue finalises what is open past validity + grace, and only that', async (t) => {
  const { store, clock, metrics } = setup(t);
  const expiresAt = T0 + 60_000;
  store.putMessage(message('due', 4, { segments: 2, expiresAt }), numbers(4));
  store.putMessage(message('later', 1, { expiresAt: expiresAt + 60_000 }), numbers(1));
  await store.flushed();
  await store.recordSegments([
    submitted('due', 0, 'd0-1', 1, 2), submitted('due', 0, 'd0-2', 2, 2), // will be delivered
    submitted('due', 1, 'd1-1', 1, 2), submitted('due', 1, 'd1-2', 2, 2), // submitted, no receipt
    // 2: never submitted
    submitted('due', 3, 'd3-1', 1, 2), // one part delivered, the other never submitted
  ]);
  for (const id of ['d0-1', 'd0-2', 'd3-1']) await store.applyReceipt(dlr(id));
  store.markQueued('due', [2]);

  clock.now = expiresAt + GRACE;
  t.equal(await store.expireDue(), 0, 'not before validity + grace has passed');
  clock.now = expiresAt + GRACE + 1;
  t.equal(await store.expireDue(), 3);
  t.equal(await store.expireDue(), 0, 'the expiry entry is gone once done');
  t.equal(store.getRecipient('due', 0)?.state, 'delivered', 'final recipients are left alone');
  t.match(store.getRecipient('due', 1), { state: 'expired', error: EXPIRED_REASON });
  t.same(store.getRecipient('due', 1)?.segs.map((s) => [s.state, s.opId]), [['expired', 'd1-1'], ['expired', 'd1-2']]);
  t.same(store.getRecipient('due', 2)?.segs.map((s) => s.state), ['expired', 'expired'], 'never-submitted parts expire too');
  t.equal(store.getRecipient('due', 2)?.state, 'expired');
  t.same(store.getRecipient('due', 3)?.segs.map((s) => s.state), ['delivered', 'expired']);
  t.equal(store.getRecipient('due', 3)?.state, 'expired');
  t.equal(store.getRecipient('later', 0)?.state, 'accepted', 'a message not yet due is untouched');
  t.equal(await metricValue(metrics, 'smsgw_recipients_final_total', { state: 'expired' }), 3);

  t.equal(await store.applyReceipt(dlr('d1-1')), 'duplicate', 'a receipt after the sweep changes nothing');
  t.equal(store.getRecipient('due', 1)?.state, 'expired');
  t.equal(store.stats().duplicateReceipts, 1);
});

t.test('expireDue does bounded work per call and resumes where it stopped', async (t) => {
  const { store, clock } = setup(t, { expiryRowsPerCall: 10 });
  store.putMessage(message('big', 25, { expiresAt: T0 }), numbers(25));
  store.putMessage(message('small', 3, { expiresAt: T0 + 1 }), numbers(3));
  await store.flushed();
  await store.recordSegments([{ kind: 'final', messageId: 'big', index: 12, segment: 1, segments: 1, state: 'rejected', error: 'x', at: T0 }]);
  clock.now = T0 + GRACE + 10;
  const counts: number[] = [];
  for (let i = 0; i < 5; i++) counts.push(await store.expireDue());
  t.same(counts, [10, 9, 8, 0, 0], 'ten rows per call across messages; the rejected one is examined, not counted');
  t.equal(store.summary('big').expired, 24);
  t.equal(store.summary('small').expired, 3);
});

t.test('early receipts past their TTL are dropped, counted unknown, logged once', async (t) => {
  const { store, clock, metrics, logs } = setup(t);
  store.putMessage(message('m1', 1), numbers(1));
  await store.flushed();
  t.equal(await store.applyReceipt(dlr('U1')), 'early');
  t.equal(await store.applyReceipt(dlr('U2', 'delivered', { account: 'unicom-1' })), 'early');
  clock.now += 10_000;
  t.equal(await store.applyReceipt(dlr('U3')), 'early');
  clock.now = T0 + TTL + 1;
  t.equal(await store.sweepEarlyReceipts(), 2, 'only those older than the TTL');
  t.equal(await metricValue(metrics, 'smsgw_dlr_unknown_total', { account: ACCOUNT }), 1);
  t.equal(await metricValue(metrics, 'smsgw_dlr_unknown_total', { account: 'unicom-1' }), 1);
  const warned = logs.filter((l) => l.level === 40);
  t.equal(warned.length, 1, 'one log line per sweep');
  t.equal(warned[0]?.count, 2);
  await store.recordSegments([submitted('m1', 0, 'U1')]);
  t.equal(store.getRecipient('m1', 0)?.state, 'submitted', 'a dropped receipt is not applied later');
  clock.now += 10_000;
  t.equal(await store.sweepEarlyReceipts(), 1);
  t.equal(await store.sweepEarlyReceipts(), 0);
});
