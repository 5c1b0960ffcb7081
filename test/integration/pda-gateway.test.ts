/**
 * The PDA channel inside the whole gateway (HTTP → directory → dispatch →
 * PDA outbox → device; SMSC simulator beside it):
 *  - a police message to a person with an SMS-only preference is refused,
 *    and nothing reaches the SMSC simulator;
 *  - a police message to a group of officers with PDAs reaches their
 *    devices, ends `delivered` in the status API, and nothing reaches the
 *    SMSC simulator either.
 *
 * The wiring under test (src/app/gateway.ts): the gateway exposes its
 * PdaChannel as `gateway.pda`, serves `/v1/pda` and `/v1/admin/pda/devices`
 * on its port when `pda.enabled`, and hands the directory's PDA recipients
 * to `PdaChannel.deliver`.
 *
 * "Nothing reached the SMSC" is asserted without waiting for a time to
 * pass: after the refused / PDA-only sends, a control SMS is sent and
 * awaited to completion; the simulator must then have seen exactly that one
 * submit.
 */
import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { PdaClient } from '../../src/pda/client.js';
import { numberAt, startTestGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, ADMIN_CONFIG, type AdminClient } from '../support/directory.js';

const PDA_ADMIN = 'pda-admin-key-0123456789';
const CONFIG = { ...ADMIN_CONFIG, pda: { enabled: true, keySecret: 'g'.repeat(40), adminKey: PDA_ADMIN } };

interface Setup {
  readonly gw: TestGateway;
  readonly admin: AdminClient;
  readonly key: string;
}

async function setup(t: Test): Promise<Setup> {
  const gw = await startTestGateway(t, { config: CONFIG });
  t.ok(gw.gateway.pda, 'the gateway wires the PDA channel (pda.enabled)');
  const admin = adminClient(gw);
  await admin.must('POST', '/v1/admin/units', {
    id: 'psb', name: '市公安局', sender: '10690110', signature: '【市公安局】',
    grants: { tiers: ['*'], groups: ['*'], direct: true, police: true, dailyQuota: null, perMinuteQuota: null },
  });
  const { key } = await admin.must<{ key: string }>('POST', '/v1/admin/units/psb/keys', { label: 'command-centre' });
  return { gw, admin, key };
}

/** The control SMS: once it is complete, everything sent before it has been dispatched. */
async function onlyControlReachedSmsc(t: Test, s: Setup): Promise<void> {
  const control = await s.gw.send<{ id: string }>({ to: [numberAt(900)], text: 'control' });
  t.equal(control.status, 202);
  await s.gw.waitComplete(control.json.id);
  const stats = s.gw.simulator.stats();
  t.equal(stats.submits, 1, 'the SMSC simulator saw exactly one submit_sm: the control message');
  t.same([...stats.submitsByDestination.keys()], [`86${numberAt(900)}`], 'and to the control number only');
}

t.test('a police message to a person with an SMS-only preference is refused; nothing reaches the SMSC', async (t) => {
  const s = await setup(t);
  await s.admin.must('POST', '/v1/admin/people', { id: 'clerk', name: '文员', mobile: numberAt(1), unit: 'psb', channel: 'sms' });
  const direct = await s.admin.sendAs<{ error: { details?: Array<{ field?: string }> } }>(s.key, { to: [numberAt(1)], text: '紧急集合', classification: 'police' });
  t.equal(direct.status, 422, JSON.stringify(direct.json));
  t.match(direct.json.error.details?.[0]?.field, /\/to\/0/);
  const stranger = await s.admin.sendAs(s.key, { to: [numberAt(2)], text: '紧急集合', classification: 'police' });
  t.equal(stranger.status, 422, 'a number that is nobody in the directory cannot get a police message either');
  await s.admin.must('POST', '/v1/admin/groups', { id: 'mixed', name: '混合', unit: 'psb', members: ['clerk'] });
  const group = await s.admin.sendAs(s.key, { group: 'mixed', text: '紧急集合', classification: 'police' });
  t.equal(group.status, 422, 'a group with an SMS-only member is refused at the door');
  await onlyControlReachedSmsc(t, s);
});

t.test('a police message to officers with PDAs reaches their devices, is delivered, and never goes by SMS', async (t) => {
  const s = await setup(t);
  const officers = ['cop-1', 'cop-2', 'cop-3'];
  for (const [i, id] of officers.entries()) {
    await s.admin.must('POST', '/v1/admin/people', { id, name: `警员${i}`, mobile: numberAt(10 + i), unit: 'psb', channel: i === 2 ? 'both' : 'pda' });
  }
  await s.admin.must('POST', '/v1/admin/groups', { id: 'night-shift', name: '夜班', unit: 'psb', members: officers });
  const clients: PdaClient[] = [];
  const got = new Map<string, string[]>();
  for (const id of officers) {
    const res = await fetch(`${s.gw.url}/v1/admin/pda/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PDA_ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ deviceId: `pda-${id}`, personId: id, unit: '市公安局' }),
    });
    t.equal(res.status, 201);
    const { key } = (await res.json()) as { key: string };
    const bodies: string[] = [];
    got.set(id, bodies);
    const c = new PdaClient({ url: `${s.gw.url.replace('http', 'ws')}/v1/pda`, deviceId: `pda-${id}`, key, onMessage: (m) => bodies.push(m.body) });
    await c.connect();
    clients.push(c);
  }
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const r = await s.admin.sendAs<{ id: string }>(s.key, { group: 'night-shift', text: '今晚22:00人民广场集合', classification: 'police' });
  t.equal(r.status, 202, JSON.stringify(r.json));
  const deadline = Date.now() + 30_000;
  while ([...got.values()].some((b) => b.length === 0) && Date.now() < deadline) await sleep(20);
  for (const [id, bodies] of got) t.match(bodies, [/今晚22:00人民广场集合/], `${id}'s PDA got it once`);
  const done = await s.admin.waitCompleteAs(s.key, r.json.id);
  t.equal(done.summary.delivered, 3, 'every officer delivered (delivered-to-device)');
  await onlyControlReachedSmsc(t, s);
});
