/**
 * One admission for every send path: each path is refused without the
 * grant its numbers need, and nothing it tried reaches the SMSC. A granted
 * control send on the same gateway arrives, so "nothing arrived" is not
 * just "nothing arrived yet". (Workflow events: office-workflow.test.ts.)
 */
import t from 'tap';
import type * as Tap from 'tap';
import { officeFixture, phone, receivedTexts, eventually } from '../support/office.js';
import type { ErrorBody } from '../support/api-types.js';

/** A refusal as the checks below read it (error and its details, when there). */
interface Refusal { readonly error?: { readonly code?: string; readonly details?: unknown } }

const MEETING_AT = '2030-01-15T09:30:00+08:00';
const inHours = (h: number): string => new Date(Date.now() + h * 3_600_000).toISOString();
/** Numbers the refused sends aim at; none may ever reach the simulator. */
const TARGETS = ['13900000011', '13900000012', '13900000013'];
const target86 = TARGETS.map((n) => `86${n}`);

t.test('every send path is refused without its grant; nothing reaches the SMSC', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 2);
  // A sub-unit of city granted groups only (direct false; workflow follows direct).
  await admin.must('POST', '/v1/admin/units', { id: 'groups-only', name: 'groups only', parent: 'city', grants: { tiers: ['*'], groups: ['*'], direct: false, police: false, dailyQuota: null, perMinuteQuota: null } });
  const key = (await admin.must<{ key: string }>('POST', '/v1/admin/units/groups-only/keys', { label: 'g' })).key;
  const as = <T = Refusal>(method: string, path: string, body?: unknown) => gw.request<T>(method, path, body, { authorization: `Bearer ${key}` });
  const refused = (r: { status: number; json: Refusal }, field: string, what: string): void => {
    t.equal(r.status, 403, `${what}: ${JSON.stringify(r.json)}`);
    t.equal(r.json.error?.code, 'FORBIDDEN', what);
    t.match(r.json.error?.details, [{ field }], what);
  };

  // HTTP single.
  refused(await as('POST', '/v1/messages', { to: TARGETS, text: '单条' }), '/to', 'POST /v1/messages to numbers');
  // HTTP batch: the item is refused, the request answers 207.
  const batch = await as<{ results: unknown }>('POST', '/v1/messages/batch', { messages: [{ to: TARGETS, text: '批量' }] });
  t.equal(batch.status, 207);
  t.match(batch.json.results, [{ index: 0, httpStatus: 403, error: { code: 'FORBIDDEN', details: [{ field: '/messages/0/to' }] } }], 'batch item to numbers');
  // Templates: a template does not change where the numbers came from.
  t.equal((await as('PUT', '/v1/templates/notice', { body: '模板通知' })).status, 201);
  refused(await as('POST', '/v1/messages', { to: TARGETS, template: 'notice' }), '/to', 'template to numbers');
  // Scheduled sending: refused when it comes in, not parked to be sent later.
  refused(await as('POST', '/v1/messages', { to: TARGETS, text: '定时', scheduleAt: new Date(Date.now() + 1500).toISOString() }), '/to', 'scheduled to numbers');
  // Meetings: inviting numbers needs direct.
  refused(await as('POST', '/v1/meetings', { title: '会', time: MEETING_AT, place: '室', attendees: { numbers: TARGETS }, replyBy: inHours(2) }), '/attendees/numbers', 'meeting invitees by number');
  // Workflow events: applicants' numbers need workflow.
  refused(await as('POST', '/v1/workflow-events', { system: 's', caseId: 'c', seq: 1, stage: 'received', applicant: { mobile: TARGETS[0] } }), '/applicant', 'workflow event');

  // Control: the office unit (direct granted) sends to a person's number, and it arrives.
  t.equal((await call('POST', '/v1/messages', { to: [phone(0)], text: '对照' })).status, 202);
  await eventually(() => ((receivedTexts(gw.simulator).get(phone(0)) ?? []).length > 0) || undefined, 'the control message');
  await new Promise((r) => setTimeout(r, 1500)); // past the refused scheduleAt
  t.equal((await call('POST', '/v1/messages', { to: [phone(1)], text: '对照2' })).status, 202);
  await eventually(() => ((receivedTexts(gw.simulator).get(phone(1)) ?? []).length > 0) || undefined, 'the second control message');
  const got = receivedTexts(gw.simulator);
  t.same(target86.filter((n) => got.has(n)), [], 'no refused send reached the SMSC');
});

t.test('meetings: invitees named by number need direct on every later send (change, cancel); people still get theirs', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 1);
  const m = await call<{ id: string }>('POST', '/v1/meetings', { title: '周例会', time: MEETING_AT, place: '会议室', attendees: { people: ['p0'], numbers: [TARGETS[0]] }, replyBy: inHours(2) });
  t.equal(m.status, 201, JSON.stringify(m.json));
  await eventually(() => ((receivedTexts(gw.simulator).get(target86[0] as string) ?? []).length > 0) || undefined, 'the notice to the number (granted then)');
  // The unit loses direct: the number it named is its own choice, not the directory's.
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: false } });
  const changed = await call<ErrorBody>('PATCH', `/v1/meetings/${m.json.id}`, { place: '2号会议室' });
  t.equal(changed.status, 403, JSON.stringify(changed.json));
  t.equal(changed.json.error.code, 'FORBIDDEN');
  await eventually(() => (receivedTexts(gw.simulator).get(phone(0)) ?? []).some((x) => x.includes('会议变更')) || undefined, 'the change to the directory person');
  await new Promise((r) => setTimeout(r, 500));
  t.same((receivedTexts(gw.simulator).get(target86[0] as string) ?? []).filter((x) => x.includes('会议变更')), [], 'no change notice to the number');
});

t.test('scheduled release: a message whose grant was withdrawn before its time is not sent; its recipients end rejected', async (t) => {
  const { gw, admin, key, call } = await officeFixture(t, 1);
  const r = await call<{ id: string; status: string }>('POST', '/v1/messages', { to: [TARGETS[1]], text: '定时通知', scheduleAt: new Date(Date.now() + 1500).toISOString() });
  t.equal(r.status, 202, JSON.stringify(r.json));
  t.equal(r.json.status, 'scheduled');
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: false } });
  const done = await admin.waitCompleteAs(key, r.json.id);
  t.match(done.items, [{ state: 'rejected', error: /refused when due: FORBIDDEN/ }]);
  // Control: a group-free directory send still goes (office keeps its tiers), and it arrives.
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: true } });
  t.equal((await call('POST', '/v1/messages', { to: [phone(0)], text: '对照' })).status, 202);
  await eventually(() => ((receivedTexts(gw.simulator).get(phone(0)) ?? []).length > 0) || undefined, 'the control message');
  t.same(receivedTexts(gw.simulator).get(target86[1] as string) ?? [], [], 'the scheduled message never reached the SMSC');
});

t.test('held release is admitted again: grant revoked meanwhile, or quota now used up → refused, it stays held, nothing reaches the SMSC', async (t) => {
  const HOLD = { content: { words: ['罢工'], wordListFile: '', onMatch: 'hold', ignoreChars: '' } };
  const { gw, admin, key, call } = await officeFixture(t, 2, { config: HOLD });
  await admin.must('POST', '/v1/admin/groups', { id: 'g-all', name: 'All', unit: 'office', members: ['p0'] });
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { dailyQuota: 1 } });
  // Held messages: to a caller-chosen number (needs direct) and to a directory group (needs the group).
  const toNumber = await call<{ id: string }>('POST', '/v1/messages', { to: [TARGETS[0]], text: '关于罢工的通知' });
  t.match(toNumber, { status: 202, json: { status: 'held' } });
  const toGroup = await call<{ id: string }>('POST', '/v1/messages', { group: 'g-all', text: '罢工 group' });
  t.match(toGroup, { status: 202, json: { status: 'held' } });
  // Held messages cost no quota while they wait (two held, quota 1: both were accepted).
  t.equal((await admin.must<{ usage: { daily: number } }>('GET', '/v1/admin/units/office')).usage.daily, 0, 'nothing charged while held');

  // The unit loses direct and its groups before the review.
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: false, groups: [] } });
  const r1 = await admin.call<ErrorBody>('POST', `/v1/admin/held/${toNumber.json.id}/release`);
  t.equal(r1.status, 403, JSON.stringify(r1.json));
  t.match(r1.json.error, { code: 'FORBIDDEN', details: [{ field: '/to' }] });
  const r2 = await admin.call<ErrorBody>('POST', `/v1/admin/held/${toGroup.json.id}/release`);
  t.equal(r2.status, 403, JSON.stringify(r2.json));
  t.match(r2.json.error, { code: 'FORBIDDEN', details: [{ field: '/group' }] });
  const still = (await admin.must<{ items: Array<{ id: string }> }>('GET', '/v1/admin/held')).items.map((h) => h.id).sort();
  t.same(still, [toNumber.json.id, toGroup.json.id].sort(), 'refused releases stay held');

  // Grants back: the group message is released and charged now (1 of 1).
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: true, groups: ['*'] } });
  await admin.must('POST', `/v1/admin/held/${toGroup.json.id}/release`);
  t.equal((await admin.must<{ usage: { daily: number } }>('GET', '/v1/admin/units/office')).usage.daily, 1, 'charged at release');
  await eventually(() => (receivedTexts(gw.simulator).get(phone(0)) ?? []).some((x) => x.includes('罢工 group')) || undefined, 'the released group message');
  // The quota is used up: releasing the other is a send the quota refuses.
  const r3 = await admin.call<ErrorBody>('POST', `/v1/admin/held/${toNumber.json.id}/release`);
  t.equal(r3.status, 403, JSON.stringify(r3.json));
  t.equal(r3.json.error.code, 'QUOTA_EXCEEDED');
  // The reviewer rejects it; it never reaches the SMSC.
  await admin.must('POST', `/v1/admin/held/${toNumber.json.id}/reject`, { reason: 'refused' });
  const done = await admin.waitCompleteAs(key, toNumber.json.id);
  t.match(done.summary, { rejected: 1 });
  await new Promise((r) => setTimeout(r, 300));
  t.equal((receivedTexts(gw.simulator).get(target86[0] as string) ?? []).length, 0, 'the refused release never reached the SMSC');
});

t.test('people by id: numbers from the directory (no direct grant), only the sender\'s subtree; unknown and foreign ids answer alike', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 3);
  // Without direct: people are the directory's numbers, not the caller's.
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: false } });
  refusedOk(t, await call('POST', '/v1/messages', { to: [TARGETS[0]], text: 'to numbers' }), 403, 'numbers still need direct');
  const ok = await call<{ recipients: number }>('POST', '/v1/messages', { people: ['p0', 'p1', 'p0'], text: '人员通知' });
  t.equal(ok.status, 202, JSON.stringify(ok.json));
  t.equal(ok.json.recipients, 2, 'a person named twice is sent once');
  await eventually(() => ((receivedTexts(gw.simulator).get(phone(1)) ?? []).some((x) => x.includes('人员通知'))) || undefined, 'the people message');
  t.ok((receivedTexts(gw.simulator).get(phone(0)) ?? []).some((x) => x.includes('人员通知')));

  // A sibling unit: office's people are outside its subtree; they answer like ids that do not exist.
  await admin.must('POST', '/v1/admin/units', { id: 'sibling', name: '兄弟处', parent: 'city', extension: '12', grants: { tiers: ['*'], groups: ['*'], direct: true, police: false, dailyQuota: null, perMinuteQuota: null } });
  const sKey = (await admin.must<{ key: string }>('POST', '/v1/admin/units/sibling/keys', { label: 's' })).key;
  const asSibling = (body: unknown) => gw.request<ErrorBody>('POST', '/v1/messages', body, { authorization: `Bearer ${sKey}` });
  const foreign = await asSibling({ people: ['p2'], text: '越权' });
  const unknown = await asSibling({ people: ['nobody'], text: '越权' });
  t.equal(foreign.status, 422);
  t.equal(unknown.status, 422);
  const shape = (r: { json: unknown }, id: string) => JSON.stringify(r.json).replaceAll(id, '<id>');
  t.equal(shape(foreign, 'p2'), shape(unknown, 'nobody'), 'a foreign id and an unknown id answer alike');
  t.match(foreign.json.error, { code: 'VALIDATION', details: [{ field: '/people/0', message: 'no person p2' }] });
  // In a batch: the same per item.
  const batch = await gw.request<{ results: unknown }>('POST', '/v1/messages/batch', { messages: [{ people: ['p2'], text: '越权' }] }, { authorization: `Bearer ${sKey}` });
  t.match(batch.json.results, [{ index: 0, httpStatus: 422, error: { details: [{ field: '/messages/0/people/0' }] } }]);
  // A bootstrap key without every group granted may not address people at all.
  refusedOk(t, await gw.send({ people: ['p2'], text: '越权' }), 403, 'bootstrap key');
  // Not together with `to` or `group`.
  t.match(await call('POST', '/v1/messages', { people: ['p0'], group: 'x', text: 'x' }), { status: 422, json: { error: { code: 'VALIDATION' } } });

  await new Promise((r) => setTimeout(r, 300));
  t.same(receivedTexts(gw.simulator).get(phone(2)) ?? [], [], 'nothing reached the person outside the sender\'s subtree');
  t.same(receivedTexts(gw.simulator).get(target86[0] as string) ?? [], [], 'nor the number');
});

function refusedOk(t: Tap.Test, r: { status: number; json: unknown }, status: number, what: string): void {
  t.equal(r.status, status, `${what}: ${JSON.stringify(r.json)}`);
}
