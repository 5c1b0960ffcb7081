/**
 * A 100,000-recipient broadcast through the receipt store: ingest rows,
 * submit results in batches, then a receipt for every recipient (1% arriving
 * before their submit; half of the receipts naming the operator id in
 * decimal where the submit gave hex, turned into the submit's key as the
 * bind does for such an account: receiptOperatorId, idFormat hex, receipt
 * ids decimal). Every row is checked afterwards.
 * Elapsed times are printed as comments; nothing asserts on them.
 */
import { performance } from 'node:perf_hooks';
import t from 'tap';
import { receiptOperatorId } from '../../src/core/dlr.js';
import type { FinalState } from '../../src/core/message.js';
import type { SegmentResult } from '../../src/receipts/types.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { tempReceiptStore } from '../support/receipt-store.js';

const N = 100_000;
const BATCH = 1_000;
const RECEIPT_CHUNK = 10_000;
const T0 = 1_700_000_000_000;
const BASE = 0x100000;

const hexId = (i: number): string => (BASE + i).toString(16).toUpperCase();
const decId = (i: number): string => String(BASE + i);
const isEarly = (i: number): boolean => i % 100 === 0;
const expected = (i: number): FinalState => (i % 10 === 1 ? 'undeliverable' : 'delivered');
const receiptId = (i: number): string =>
  i % 2 === 0 ? receiptOperatorId(decId(i), 'decimal', 'hex') : receiptOperatorId(hexId(i).toLowerCase(), 'same', 'hex');

t.test(`${N.toLocaleString('en')} recipients: ingest, submit, receipt, every row checked`, async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const { store } = tempReceiptStore(t, { metrics, now: () => T0 + 5_000 });
  let finals = 0;
  store.onFinal(() => finals++);
  const receipt = (i: number) =>
    store.applyReceipt({
      account: 'cmcc-1', messageId: receiptId(i), state: expected(i), doneAt: T0 + 4_000,
      ...(expected(i) === 'undeliverable' ? { error: '00b' } : {}),
    });
  const timings: string[] = [];
  const phase = async (name: string, fn: () => Promise<void>): Promise<void> => {
    const start = performance.now();
    await fn();
    timings.push(`${name}: ${(performance.now() - start).toFixed(0)} ms`);
  };

  await phase('putMessage + flushed', async () => {
    const numbers = Array.from({ length: N }, (_, i) => `86137${String(i).padStart(8, '0')}`);
    store.putMessage({
      id: 'broadcast', tenant: 'emergency', tier: 'urgent', channel: 'sms', encoding: 'ucs2', segments: 1, recipients: N,
      createdAt: T0, expiresAt: T0 + 3_600_000,
    }, numbers);
    await store.flushed();
  });

  const early: string[] = [];
  await phase('early receipts (1%)', async () => {
    const ps: Array<Promise<string>> = [];
    for (let i = 0; i < N; i++) if (isEarly(i)) ps.push(receipt(i));
    early.push(...(await Promise.all(ps)));
  });
  t.ok(early.every((o) => o === 'early'), `${early.length} receipts kept early`);

  await phase(`recordSegments in batches of ${BATCH}`, async () => {
    const ps: Array<Promise<void>> = [];
    for (let b = 0; b < N; b += BATCH) {
      const results: SegmentResult[] = [];
      for (let i = b; i < b + BATCH; i++) {
        results.push({ kind: 'submitted', messageId: 'broadcast', index: i, segment: 1, segments: 1, account: 'cmcc-1', opId: hexId(i), at: T0 + 1_000 });
      }
      ps.push(store.recordSegments(results));
    }
    await Promise.all(ps);
  });

  const outcomes = new Map<string, number>();
  await phase('applyReceipt for the other 99%', async () => {
    for (let c = 0; c < N; c += RECEIPT_CHUNK) {
      const ps: Array<Promise<string>> = [];
      for (let i = c; i < Math.min(N, c + RECEIPT_CHUNK); i++) if (!isEarly(i)) ps.push(receipt(i));
      for (const o of await Promise.all(ps)) outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
    }
  });
  t.same(Object.fromEntries(outcomes), { applied: N - early.length });

  let wrong = 0;
  let firstWrong = '';
  let seen = 0;
  await phase('read back every row (pages of 1000)', async () => {
    let cursor: number | undefined = 0;
    for (let page = 0; page <= N / 1000 && cursor !== undefined; page++) {
      const p = store.listRecipients('broadcast', { cursor, limit: 1000 });
      for (const r of p.items) {
        seen++;
        const i = r.index;
        const seg = r.segs[0];
        const ok = r.state === expected(i) && r.segs.length === 1 && seg?.state === expected(i) && seg.opId === hexId(i) &&
          seg.account === 'cmcc-1' && r.to === `86137${String(i).padStart(8, '0')}` &&
          (expected(i) === 'delivered' ? r.error === undefined : r.error === '00b');
        if (!ok && wrong++ === 0) firstWrong = JSON.stringify(r);
      }
      cursor = p.next;
    }
  });
  t.equal(seen, N, 'every recipient read back');
  t.equal(wrong, 0, `every row is right ${firstWrong}`);
  const undeliverable = N / 10;
  t.same(store.summary('broadcast'), {
    accepted: 0, queued: 0, submitted: 0, delivered: N - undeliverable, undeliverable, expired: 0, rejected: 0, failed: 0,
  });
  t.equal(finals, N, 'onFinal once per recipient');
  const final = await metrics.recipientsFinal.get();
  t.equal(final.values.reduce((a, v) => a + v.value, 0), N, 'recipientsFinal counts each recipient once');
  t.same(store.stats(), { duplicateReceipts: 0, orphanReceipts: 0, conflictingSubmits: 0, ignoredFinalResults: 0 });
  for (const line of timings) t.comment(line);
});
