/**
 * An SMSC that numbers its message ids from 1 reuses them after a restart.
 * The receipt of a newer submit that reuses an id can arrive before (or 0 ms
 * after) that submit's submit_sm_resp is recorded, while the id's key still
 * names the older part, already final. It used to be counted `duplicate` and
 * dropped: every such recipient stayed `submitted` until the expiry sweep
 * (an outside probe: 1,000 of 1,000 recipients after an SMSC restart with
 * receipts before the resp, 108 of 1,000 with receipts 0–30 ms after). It is
 * now kept (at most KEPT_PER_ID under a key) and the submit recorded under
 * that key takes the first kept receipt that arrived after the submit went
 * on the wire (its result's sentAt; without one, the newest kept within
 * REUSED_ID_WINDOW_MS); re-sends of the old receipt from before are dropped
 * when the id is reused, and one never reused is swept without counting as
 * unknown. receipts-smsc-restart.test.ts does the same through a real
 * gateway and simulator.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { open } from 'lmdb';
import type { DeliveryReceipt } from '../../src/core/ports.js';
import { KEPT_PER_ID, REUSED_ID_WINDOW_MS, ReceiptStore } from '../../src/receipts/store.js';
import type { MessageRecord, SegmentResult } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';

const T0 = 1_700_000_000_000;
const ACCOUNT = 'cmcc-1';
const TTL = 10 * 60_000;

function setup(tt: Test): { store: ReceiptStore; clock: { now: number }; metrics: Metrics } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-reused-'));
  const env = open({ path: dir, maxDbs: 32 });
  const clock = { now: T0 };
  const metrics = createMetrics({ defaultMetrics: false });
  const store = ReceiptStore.open({ env, metrics, logger: createLogger({ level: 'silent' }), now: () => clock.now, earlyReceiptTtlMs: TTL, receiptGraceMs: 5_000 });
  tt.teardown(async () => {
    await store.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { store, clock, metrics };
}

const message = (id: string, n: number): MessageRecord => ({
  id, tenant: 't', tier: 'normal', channel: 'sms', encoding: 'ucs2', segments: 1, recipients: n, createdAt: T0, expiresAt: T0 + 3_600_000,
});
const numbers = (n: number, base: number): string[] => Array.from({ length: n }, (_, i) => `86139${String(base + i).padStart(8, '0')}`);
const submitted = (messageId: string, index: number, opId: string, at: number): SegmentResult =>
  ({ kind: 'submitted', messageId, index, segment: 1, segments: 1, account: ACCOUNT, opId, at });
const dlr = (messageId: string, state: DeliveryReceipt['state'], doneAt: number): DeliveryReceipt => ({ account: ACCOUNT, messageId, state, doneAt });

/** One-recipient messages 'old' (submitted under `opId` and delivered) and 'new' (not yet submitted). */
async function oldDelivered(tt: Test, opId: string): Promise<ReturnType<typeof setup>> {
  const ctx = setup(tt);
  ctx.store.putMessage(message('old', 1), numbers(1, 0));
  ctx.store.putMessage(message('new', 1), numbers(1, 1000));
  await ctx.store.flushed();
  await ctx.store.recordSegments([submitted('old', 0, opId, T0 + 1_000)]);
  tt.equal(await ctx.store.applyReceipt(dlr(opId, 'delivered', T0 + 2_000)), 'applied', 'the old part delivered');
  return ctx;
}

async function metric(m: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  let sum = 0;
  for (const metricJson of await m.registry.getMetricsAsJSON()) {
    for (const v of metricJson.values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>) {
      if ((v.metricName ?? metricJson.name) === name && Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x)) sum += v.value;
    }
  }
  return sum;
}

t.test('ids from 1 again after an SMSC restart, receipts before the resp: each reaches the newer submit', async (t) => {
  const { store, clock, metrics } = setup(t);
  const N = 50;
  store.putMessage(message('old', N), numbers(N, 0));
  store.putMessage(message('new', N), numbers(N, 1000));
  await store.flushed();
  // The SMSC's first life: ids 1..N, each delivered.
  await store.recordSegments(Array.from({ length: N }, (_, i) => submitted('old', i, String(i + 1), T0 + 1_000)));
  for (let i = 0; i < N; i++) t.equal(await store.applyReceipt(dlr(String(i + 1), 'delivered', T0 + 2_000)), 'applied');
  // It restarts and numbers from 1 again; each receipt comes before its submit_sm_resp is recorded.
  clock.now = T0 + 30_000;
  const states: DeliveryReceipt['state'][] = ['undeliverable', 'expired', 'rejected', 'failed', 'delivered'];
  for (let i = 0; i < N; i++) {
    t.equal(await store.applyReceipt(dlr(String(i + 1), states[i % states.length]!, T0 + 31_000)), 'duplicate', 'its key still names the old, final part');
  }
  clock.now = T0 + 30_050;
  await store.recordSegments(Array.from({ length: N }, (_, i) => submitted('new', i, String(i + 1), T0 + 30_050)));
  for (let i = 0; i < N; i++) {
    t.equal(store.getRecipient('old', i)?.state, 'delivered', `old ${i} keeps its final state`);
    t.equal(store.getRecipient('new', i)?.state, states[i % states.length], `new ${i} has the state its receipt said`);
  }
  // A receipt after the resp of the newer submit goes there too, and a repeat is a duplicate.
  t.equal(await store.applyReceipt(dlr('1', 'delivered', T0 + 32_000)), 'duplicate');
  t.equal(store.getRecipient('new', 0)?.state, 'undeliverable');
  t.equal(await metric(metrics, 'smsgw_dlr_outcome_total', { outcome: 'early' }), 0, 'none counted early');
});

t.test('an old re-send kept after a final is not given to a submit that reuses the id much later, and is swept as no unknown', async (t) => {
  const { store, clock, metrics } = setup(t);
  store.putMessage(message('old', 2), numbers(2, 0));
  store.putMessage(message('new', 1), numbers(1, 1000));
  await store.flushed();
  await store.recordSegments([submitted('old', 0, '7', T0 + 1_000), submitted('old', 1, '8', T0 + 1_000)]);
  t.equal(await store.applyReceipt(dlr('7', 'delivered', T0 + 2_000)), 'applied');
  t.equal(await store.applyReceipt(dlr('8', 'delivered', T0 + 2_000)), 'applied');
  // The SMSC re-sends both receipts (say it missed our deliver_sm_resp).
  t.equal(await store.applyReceipt(dlr('7', 'undeliverable', T0 + 2_000)), 'duplicate');
  t.equal(await store.applyReceipt(dlr('8', 'undeliverable', T0 + 2_000)), 'duplicate');
  // Id 7 reused by a submit recorded well after the window: the re-send is not its receipt.
  clock.now = T0 + 2_000 + REUSED_ID_WINDOW_MS + 1_000;
  await store.recordSegments([submitted('new', 0, '7', clock.now)]);
  t.equal(store.getRecipient('new', 0)?.state, 'submitted', 'waits for its own receipt');
  t.equal(await store.applyReceipt(dlr('7', 'expired', clock.now + 1_000)), 'applied');
  t.equal(store.getRecipient('new', 0)?.state, 'expired');
  t.equal(store.getRecipient('old', 0)?.state, 'delivered');
  t.equal(store.getRecipient('old', 1)?.state, 'delivered');
  // Id 8 is never reused: its kept re-send is swept, not counted unknown.
  clock.now = T0 + TTL + 10_000;
  t.equal(await store.sweepEarlyReceipts(), 0, 'nothing counted as dropped unknown');
  t.equal(await metric(metrics, 'smsgw_dlr_reused_id_total', { outcome: 'expired' }), 1, "id 8's kept re-send expired");
  t.equal(await metric(metrics, 'smsgw_dlr_reused_id_total', { outcome: 'resend' }), 1, "id 7's, dropped when the id was reused");
  t.equal(await metric(metrics, 'smsgw_dlr_unknown_total', {}), 0);
  t.equal(await metric(metrics, 'smsgw_dlr_outcome_total', { outcome: 'duplicate' }), 2);
});

t.test('without a send time (a result of an older version): the reused id gets the newest receipt kept under its key', async (t) => {
  const { store, clock } = await oldDelivered(t, '3');
  t.equal(await store.applyReceipt(dlr('3', 'delivered', T0 + 2_000)), 'duplicate', 'an SMSC re-send');
  // The SMSC restarts, id 3 is reused; its receipt comes before the resp is recorded.
  clock.now = T0 + 5_000;
  t.equal(await store.applyReceipt(dlr('3', 'rejected', T0 + 5_000)), 'duplicate');
  clock.now = T0 + 5_020;
  await store.recordSegments([submitted('new', 0, '3', clock.now)]);
  t.equal(store.getRecipient('new', 0)?.state, 'rejected', 'the later receipt, not the old re-send');
  t.equal(store.getRecipient('old', 0)?.state, 'delivered');
});

const sentSubmit = (messageId: string, index: number, opId: string, sentAt: number, at: number): SegmentResult =>
  ({ kind: 'submitted', messageId, index, segment: 1, segments: 1, account: ACCOUNT, opId, at, sentAt });

t.test('with the send time: re-sends that came before the submit went out are not its receipt; the first after it is', async (t) => {
  const { store, clock, metrics } = setup(t);
  store.putMessage(message('old', 3), numbers(3, 0));
  store.putMessage(message('new', 3), numbers(3, 1000));
  await store.flushed();
  await store.recordSegments(['1', '2', '3'].map((id, i) => submitted('old', i, id, T0 + 1_000)));
  for (const id of ['1', '2', '3']) t.equal(await store.applyReceipt(dlr(id, 'delivered', T0 + 2_000)), 'applied');
  // The SMSC restarts and re-sends the old receipts (it never saw our deliver_sm_resp) a few times.
  for (let k = 0; k < 6; k++) {
    clock.now = T0 + 10_000 + k;
    for (const id of ['1', '2', '3']) t.equal(await store.applyReceipt(dlr(id, 'undeliverable', T0 + 2_000)), 'duplicate');
  }
  // Then the new submits go out (ids from 1 again) at T0 + 20 s.
  const sentAt = T0 + 20_000;
  // Id 1: its receipt, then a second final receipt of it that says otherwise, both before the resp.
  clock.now = sentAt + 2;
  t.equal(await store.applyReceipt(dlr('1', 'rejected', sentAt + 2)), 'duplicate');
  clock.now = sentAt + 3;
  t.equal(await store.applyReceipt(dlr('1', 'delivered', sentAt + 3)), 'duplicate');
  // Id 2: its receipt in the same millisecond as the send.
  clock.now = sentAt;
  t.equal(await store.applyReceipt(dlr('2', 'expired', sentAt)), 'duplicate');
  // Id 3: nothing of its own before the resp: only the old re-sends wait under its key.
  clock.now = sentAt + 10;
  await store.recordSegments(['1', '2', '3'].map((id, i) => sentSubmit('new', i, id, sentAt, sentAt + 10)));
  t.equal(store.getRecipient('new', 0)?.state, 'rejected', 'the first final receipt after the send, not a later one nor a re-send');
  t.equal(store.getRecipient('new', 1)?.state, 'expired', 'a receipt in the millisecond of the send is its own');
  t.equal(store.getRecipient('new', 2)?.state, 'submitted', 're-sends from before the send are not its receipt');
  t.equal(await store.applyReceipt(dlr('3', 'delivered', sentAt + 50)), 'applied', 'its own receipt after the resp');
  t.equal(store.getRecipient('new', 2)?.state, 'delivered');
  for (let i = 0; i < 3; i++) t.equal(store.getRecipient('old', i)?.state, 'delivered', `old ${i} keeps its final state`);
  // Accounted: 6 re-sends × 3 ids + 3 receipts of the new submits kept; ids 1 and 2 taken (each with 4 kept, one applied),
  // id 3's four kept all re-sends; at most KEPT_PER_ID wait under each key, the older ones counted overflow.
  const reused = async (outcome: string): Promise<number> => metric(metrics, 'smsgw_dlr_reused_id_total', { outcome });
  t.equal(await reused('kept'), 21);
  t.equal(await reused('applied'), 2);
  t.equal(await reused('resend'), 3 * KEPT_PER_ID - 2);
  t.equal(await reused('overflow'), 21 - 3 * KEPT_PER_ID, 'kept = applied + resend + overflow (none waits)');
});

t.test('at most KEPT_PER_ID receipts wait under one key: the oldest go first', async (t) => {
  const { store, clock } = await oldDelivered(t, '9');
  const sentAt = T0 + 5_000;
  // The new submit's own receipt first, then more re-sends than are kept: its receipt is pushed out.
  const states: DeliveryReceipt['state'][] = ['rejected', 'expired', 'failed', 'undeliverable', 'delivered', 'expired'];
  for (let k = 0; k < KEPT_PER_ID + 2; k++) {
    clock.now = sentAt + 1 + k;
    t.equal(await store.applyReceipt(dlr('9', states[k]!, clock.now)), 'duplicate');
  }
  clock.now = sentAt + 100;
  await store.recordSegments([sentSubmit('new', 0, '9', sentAt, clock.now)]);
  t.equal(store.getRecipient('new', 0)?.state, states[2], 'the oldest of those still kept (the first two were dropped)');
});
