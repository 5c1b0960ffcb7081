/**
 * Group fan-out on real LMDB (receipt store + embedded queue + directory):
 * routing by block list and channel preference, deterministic recipient
 * jobs, and a redelivered expansion job that changes nothing.
 */
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { ReceiptStore } from '../../src/receipts/store.js';
import { EmbeddedQueue } from '../../src/queue/embedded/queue.js';
import { GroupExpander } from '../../src/directory/expansion.js';
import { GroupFanout, NO_PDA, OPTED_OUT, POLICE_SMS_ONLY, type PdaDelivery } from '../../src/directory/fanout.js';
import { decodeJob, encodeJob, type Job } from '../../src/core/job.js';
import { mobileAt, ROOT, tempDirectory, TIERS } from '../support/directory.js';

async function setup(t: Test, opts: { pda?: boolean; batchSize?: number } = {}) {
  const { env, store: directory } = tempDirectory(t);
  const metrics = createMetrics({ defaultMetrics: false });
  const logger = pino({ level: 'silent' });
  const receipts = ReceiptStore.open({ env, metrics, logger, earlyReceiptTtlMs: 60_000, receiptGraceMs: 60_000 });
  const queue = await EmbeddedQueue.open({ env, options: { prefix: 'smsgw', tiers: TIERS, ackWaitMs: 60_000, maxDeliver: 5, maxAckPending: 1000, duplicateWindowMs: 86_400_000 }, metrics, logger });
  t.teardown(async () => {
    await queue.close();
    await receipts.close();
  });
  const handed: PdaDelivery[] = [];
  let pauses = 0;
  const fanout = new GroupFanout({
    env, directory, expander: new GroupExpander(directory, { chunk: 100, maxMembers: 1_000_000 }), receipts, queue,
    prefix: 'smsgw', batchSize: opts.batchSize ?? 50, tierPriority: new Map([['routine', 40], ['emergency', 100]]), metrics, logger,
    pause: async () => void pauses++, chunk: 100,
    ...(opts.pda ? { pda: { deliver: async (ms: readonly PdaDelivery[]) => void handed.push(...ms) } } : {}),
  });
  await directory.createUnit(ROOT, { id: 'city', name: '市政府' });
  let n = 0;
  const person = async (channel: 'sms' | 'pda' | 'both') => {
    const i = n++;
    await directory.putPerson(ROOT, { id: `p${i}`, name: `P${i}`, mobile: mobileAt(i), unit: 'city', channel }, 'create');
    return `p${i}`;
  };
  /** Accept a group message the way intake does: message row only, plus its expansion job. */
  const accept = async (id: string, group: string, extra: { classification?: string; channel?: 'sms' | 'pda' | 'auto'; tier?: string } = {}): Promise<Job> => {
    const now = Date.now();
    const tier = extra.tier ?? 'routine';
    receipts.putPendingMessage({ id, tenant: 'city', tier, channel: extra.channel ?? 'auto', encoding: 'gsm7', segments: 1, recipients: 1, createdAt: now, expiresAt: now + 3_600_000, group });
    await receipts.flushed();
    return {
      v: 1, id: `${id}.x`, tier, tenant: 'city', group, createdAt: now,
      messages: [{ id, text: 'hello', encoding: 'gsm7', sender: '10690001', expiresAt: now + 3_600_000, recipients: [], ...(extra.classification ? { classification: extra.classification } : {}) }],
      expand: { group, unit: 'city', channel: extra.channel ?? 'auto' },
    };
  };
  const drain = async (tier = 'routine'): Promise<Job[]> => {
    const jobs: Job[] = [];
    for (let k = 0; k < 100; k++) {
      const ds = await queue.fetch(tier, 100, 0);
      if (ds.length === 0) break;
      for (const d of ds) {
        jobs.push(decodeJob(d.data));
        await d.ack();
      }
    }
    return jobs;
  };
  return { directory, receipts, queue, fanout, person, accept, drain, handed, metrics, pauses: () => pauses };
}

t.test('members are routed by block list and preference; rows, count and recipient jobs follow', async (t) => {
  const s = await setup(t);
  const ids: string[] = [];
  for (let i = 0; i < 120; i++) ids.push(await s.person(i % 10 === 3 ? 'pda' : i % 10 === 4 ? 'both' : 'sms'));
  await s.directory.putGroup(ROOT, { id: 'staff', name: 'Staff', unit: 'city', members: ids }, 'create');
  await s.directory.block(ROOT, { scope: 'city', number: mobileAt(7) });
  await s.directory.block(ROOT, { scope: '*', number: mobileAt(17) });
  const job = await s.accept('M1', 'staff');
  t.equal(await s.fanout.run(job), 'done');
  const msg = s.receipts.getMessage('M1');
  t.equal(msg?.recipients, 120, 'the message now counts its expanded recipients');
  const rows = s.receipts.listRecipients('M1', { limit: 1000 }).items;
  t.equal(rows.length, 120);
  const byState = (state: string, error?: string) => rows.filter((r) => r.state === state && (error === undefined || r.error === error)).length;
  t.equal(byState('rejected', OPTED_OUT), 2, 'blocked for the unit and globally');
  t.equal(byState('failed', NO_PDA), 12, 'PDA-only members fail clearly while the PDA channel is not wired');
  t.equal(byState('accepted'), 106, 'sms and both go by SMS');
  const jobs = await s.drain();
  t.same(jobs.map((j) => j.id).sort(), ['M1.0', 'M1.1', 'M1.2'], 'recipient jobs by index range: <id>.<index / batchSize>');
  const sent = jobs.flatMap((j) => j.messages.flatMap((m) => m.recipients.map((r) => r.to)));
  t.equal(sent.length, 106);
  t.equal(new Set(sent).size, 106);
  t.notOk(sent.includes(`86${mobileAt(7)}`), 'a blocked number is in no job');
  t.ok(s.pauses() >= 1, 'row writing yields between chunks');
  const routes = Object.fromEntries((await s.metrics.fanoutRecipients.get()).values.map((v) => [v.labels['route'], v.value])) as Record<string, number>;
  t.same(routes, { sms: 106, blocked: 2, 'no-pda': 12 }, 'counted by route');
});

t.test('a redelivered expansion job republishes the same job ids and rewrites nothing', async (t) => {
  const s = await setup(t);
  const ids: string[] = [];
  for (let i = 0; i < 75; i++) ids.push(await s.person('sms'));
  await s.directory.putGroup(ROOT, { id: 'g', name: 'G', unit: 'city', members: ids }, 'create');
  const job = await s.accept('M2', 'g');
  await s.fanout.run(job);
  const first = s.receipts.listRecipients('M2', { limit: 1000 }).items.map((r) => `${r.index}:${r.to}`);
  t.same((await s.drain()).map((j) => j.id).sort(), ['M2.0', 'M2.1']);
  // Members change before the redelivery: the recorded expansion stands.
  await s.directory.changeMembers(ROOT, 'g', { remove: ids.slice(0, 10) });
  await s.receipts.finalizeRecipients('M2', [{ index: 0, state: 'delivered', error: '' }]);
  await s.fanout.run(decodeJob(encodeJob(job)));
  const again = s.receipts.listRecipients('M2', { limit: 1000 }).items;
  t.same(again.map((r) => `${r.index}:${r.to}`), first, 'same rows, same order');
  t.equal(again[0]?.state, 'delivered', 'progress on a row is kept');
  t.same(await s.drain(), [], 'the republished ids were dropped by the queue as duplicates');
});

t.test('police: SMS-only members are refused, the others go to the PDA channel; never a recipient job', async (t) => {
  const s = await setup(t, { pda: true });
  const ids = [await s.person('sms'), await s.person('pda'), await s.person('both'), await s.person('sms')];
  await s.directory.putGroup(ROOT, { id: 'duty', name: 'Duty', unit: 'city', members: ids }, 'create');
  await s.fanout.run(await s.accept('M3', 'duty', { classification: 'police', tier: 'emergency' }));
  const rows = s.receipts.listRecipients('M3', { limit: 10 }).items;
  t.same(rows.map((r) => r.state), ['rejected', 'accepted', 'accepted', 'rejected']);
  t.equal(rows[0]?.error, POLICE_SMS_ONLY);
  t.same(s.handed.map((h) => [h.index, h.personId, h.classification, h.priority, h.senderUnit]), [[1, 'p1', 'police', 2, '市政府'], [2, 'p2', 'police', 2, '市政府']]);
  t.same(await s.drain('emergency'), [], 'nothing for SMS');
  // An ordinary message: preference pda goes to the PDA, sms and both by SMS.
  s.handed.length = 0;
  await s.fanout.run(await s.accept('M4', 'duty'));
  t.same(s.handed.map((h) => h.index), [1]);
  t.same((await s.drain()).flatMap((j) => j.messages[0]?.recipients.map((r) => r.i) ?? []), [0, 2, 3]);
});

t.test('rejected on review: every member is recorded rejected, nothing is published', async (t) => {
  const s = await setup(t);
  const ids = [await s.person('sms'), await s.person('sms')];
  await s.directory.putGroup(ROOT, { id: 'g', name: 'G', unit: 'city', members: ids }, 'create');
  const job = await s.accept('M5', 'g');
  await s.fanout.run({ ...job, expand: { ...(job.expand as NonNullable<Job['expand']>), reject: 'rejected on review by ops: wording' } });
  t.same(s.receipts.summary('M5').rejected, 2);
  t.same(await s.drain(), []);
});

t.test('a dead-lettered expansion ends the message with no recipients instead of leaving it open', async (t) => {
  const s = await setup(t);
  await s.directory.putGroup(ROOT, { id: 'g', name: 'G', unit: 'city', members: [await s.person('sms')] }, 'create');
  const job = await s.accept('M6', 'g');
  t.equal(s.receipts.getMessage('M6')?.recipients, 1, 'counted at the door');
  await s.fanout.deadLettered(job, 'maxDeliver');
  t.equal(s.receipts.getMessage('M6')?.recipients, 0);
});

t.test('a police message to numbers: PDA people handed over, the others rejected; without the PDA channel all rejected', async (t) => {
  for (const wired of [true, false]) {
    const s = await setup(t, { pda: wired });
    await s.person('pda');
    await s.person('sms');
    const now = Date.now();
    const id = wired ? 'P1' : 'P2';
    s.receipts.putMessage({ id, tenant: 'city', tier: 'emergency', channel: 'auto', encoding: 'gsm7', segments: 1, recipients: 3, createdAt: now, expiresAt: now + 60_000 }, [`86${mobileAt(0)}`, `86${mobileAt(1)}`, '8613500135000']);
    await s.receipts.flushed();
    const m = { id, text: '出警', encoding: 'ucs2' as const, sender: '1069', expiresAt: now + 60_000, classification: 'police', recipients: [{ i: 0, to: `86${mobileAt(0)}` }, { i: 1, to: `86${mobileAt(1)}` }, { i: 2, to: '8613500135000' }] };
    await s.fanout.routePolice({ v: 1, id: `${id}.0`, tier: 'emergency', tenant: 'city', group: 'direct', createdAt: now, messages: [m] }, m);
    const states = s.receipts.listRecipients(id, { limit: 10 }).items.map((r) => r.state);
    if (wired) {
      t.same(states, ['accepted', 'rejected', 'rejected'], 'wired: the officer waits for the PDA, the others are refused');
      t.same(s.handed.map((h) => [h.index, h.personId]), [[0, 'p0']]);
    } else {
      t.same(states, ['rejected', 'rejected', 'rejected'], 'not wired: nobody, and never by SMS');
    }
  }
});
