/**
 * A deleted unit's archive (issue 17): what the unit left under its id —
 * templates, meetings with their invitees, the MO inbox and subscription,
 * workflow cases, messages with their recipients — is readable by a global
 * admin at /v1/admin/archives/{unit}/…, refused to a delegated admin (even
 * of the unit's former parent) alike for a deleted id and an id never used,
 * and reaches no unit created later (the id is tombstoned; a new unit under
 * the same sender code sees nothing of it).
 */
import t from 'tap';
import { officeFixture, phone, eventually, OFFICE_SENDER } from '../support/office.js';
import { adminClient, ADMIN_KEY, mobileAt } from '../support/directory.js';
import type { ErrorBody } from '../support/api-types.js';

interface Items { readonly items: readonly unknown[] }

const CITY_ADMIN = 'archive-city-admin-key-0123456789';
const inHours = (h: number): string => new Date(Date.now() + h * 3600_000).toISOString();

t.test("a deleted unit's archive: global admins only, never a new unit", async (t) => {
  const { gw, admin, call } = await officeFixture(t, 1, {
    config: { admin: { keys: [{ key: ADMIN_KEY, name: 'root-admin' }, { key: CITY_ADMIN, name: 'city-admin', unit: 'city' }] } },
  });
  const cityAdmin = adminClient(gw, CITY_ADMIN);

  // ---- the office unit's data
  t.equal((await call('PUT', '/v1/templates/notice', { body: '请于{{time}}到会', params: { time: { type: 'string' } } })).status, 201);
  const meeting = await call<{ id: string }>('POST', '/v1/meetings', { title: '档案会议', time: inHours(48), place: '1号楼', attendees: { people: ['p0'] }, replyBy: inHours(24) });
  t.equal(meeting.status, 201, JSON.stringify(meeting.json));
  const wf = await call('POST', '/v1/workflow-events', { system: 'scjg', caseId: 'GS-77', seq: 1, stage: 'received', applicant: { name: '某公司', mobile: mobileAt(5) } });
  t.equal(wf.status, 202, JSON.stringify(wf.json));
  const sent = await call<{ id: string }>('POST', '/v1/messages', { to: [mobileAt(6)], text: '档案消息' });
  t.equal(sent.status, 202, JSON.stringify(sent.json));
  const messageId = sent.json.id;
  t.ok(await gw.simulator.injectMo({ source: phone(9), destination: OFFICE_SENDER, text: '一条无人认领的回复' }));
  await eventually(async () => ((await call<Items>('GET', '/v1/mo')).json.items.length === 1 ? true : undefined), 'the MO in the inbox');
  // Callbacks are signed: the unit needs a secret before it may subscribe.
  await admin.must('PATCH', '/v1/admin/units/office', { callbackSecret: 'archive-secret-0123456789abcdef0123' });
  t.equal((await call('PUT', '/v1/mo/subscription', { callbackUrl: 'http://127.0.0.1:9/mo' })).status, 200);

  // ---- the unit is deleted (its person removed and key revoked first)
  await admin.must('DELETE', '/v1/admin/people/p0');
  for (const k of (await admin.must<{ items: { id: string }[] }>('GET', '/v1/admin/units/office/keys')).items) await admin.must('DELETE', `/v1/admin/keys/${k.id}`);
  t.equal((await admin.call('DELETE', '/v1/admin/units/office')).status, 204);

  const paths = [
    '/v1/admin/archives/office',
    '/v1/admin/archives/office/templates',
    '/v1/admin/archives/office/meetings',
    `/v1/admin/archives/office/meetings/${meeting.json.id}`,
    '/v1/admin/archives/office/mo',
    '/v1/admin/archives/office/cases/scjg/GS-77',
    `/v1/admin/archives/office/messages/${messageId}`,
  ];

  await t.test('a global admin reads every part of it', async (t) => {
    const [unit, templates, meetings, one, mo, kase, msg] = await Promise.all(paths.map((p) => admin.call('GET', p)));
    t.match(unit, { status: 200, json: { unit: { id: 'office', parent: 'city', deletedBy: 'root-admin' }, subscription: { callbackUrl: 'http://127.0.0.1:9/mo' } } });
    t.match(templates, { status: 200, json: { items: [{ name: 'notice', body: '请于{{time}}到会' }] } });
    t.match(meetings, { status: 200, json: { items: [{ id: meeting.json.id, title: '档案会议' }] } });
    t.match(one, { status: 200, json: { title: '档案会议', tally: { invited: 1 }, people: [{ personId: 'p0', mobile: phone(0) }] } });
    t.match(mo, { status: 200, json: { items: [{ from: phone(9), text: '一条无人认领的回复' }] } });
    t.match(kase, { status: 200, json: { system: 'scjg', caseId: 'GS-77', stage: 'received' } });
    t.match(msg, { status: 200, json: { id: messageId, recipients: 1, items: [{ to: `86${mobileAt(6)}` }] } });
    // Not a deleted unit (a live one, or none): 404; nothing of it under that id: 404.
    t.match(await admin.call('GET', '/v1/admin/archives/city/templates'), { status: 404, json: { error: { code: 'NOT_FOUND' } } }, 'a live unit has no archive');
    t.match(await admin.call('GET', '/v1/admin/archives/zz-never/templates'), { status: 404, json: { error: { code: 'NOT_FOUND' } } });
    t.match(await admin.call('GET', '/v1/admin/archives/office/messages/M-none'), { status: 404 });
    t.match(await admin.call('GET', '/v1/admin/archives/office/cases/scjg/GS-none'), { status: 404 });
  });

  await t.test('a delegated admin (even of its former parent) is refused, alike for a deleted id and one never used', async (t) => {
    for (const p of paths) {
      const got = await cityAdmin.call<ErrorBody>('GET', p);
      const never = await cityAdmin.call<ErrorBody>('GET', p.replace('/archives/office', '/archives/zz-never'));
      t.match(got, { status: 403, json: { error: { code: 'FORBIDDEN' } } }, p);
      t.same([got.status, got.json.error.code, got.json.error.message], [never.status, never.json.error.code, never.json.error.message], `${p}: alike`);
    }
  });

  await t.test('no unit created later reaches it', async (t) => {
    t.match(await admin.call('POST', '/v1/admin/units', { id: 'office', name: 'again', parent: 'city' }), { status: 409, json: { error: { code: 'ALREADY_EXISTS' } } }, 'the id is tombstoned');
    // The sender code is free again: a new unit takes it, and sees nothing the old one left.
    await admin.must('POST', '/v1/admin/units', { id: 'office2', name: '综合处（新）', parent: 'city', extension: '11', grants: { tiers: ['*'], direct: true } });
    const key = (await admin.must<{ key: string }>('POST', '/v1/admin/units/office2/keys', {})).key;
    const as = (method: string, path: string) => gw.request<Items>(method, path, undefined, { authorization: `Bearer ${key}` });
    t.same((await as('GET', '/v1/templates')).json.items, []);
    t.same((await as('GET', '/v1/meetings')).json.items, []);
    t.same((await as('GET', '/v1/mo')).json.items, []);
    t.equal((await as('GET', '/v1/mo/subscription')).status, 404);
    t.equal((await as('GET', `/v1/meetings/${meeting.json.id}`)).status, 404);
    t.equal((await as('GET', '/v1/cases/scjg/GS-77')).status, 404);
    t.equal((await as('GET', `/v1/messages/${messageId}`)).status, 404);
    // …and the archive is unchanged.
    t.match(await admin.call('GET', '/v1/admin/archives/office/templates'), { status: 200, json: { items: [{ name: 'notice' }] } });
  });
});
