/**
 * Meeting notices end to end: uWS front door → intake → queue → SMPP
 * simulator; replies injected as MO deliver_sm by the simulator and routed
 * back by sender extension and number.
 */
import t from 'tap';
import type { MessageStatus } from '../support/api-types.js';
import { officeFixture, phone, receivedTexts, inBatches, eventually, OFFICE_SENDER, SIGNATURE } from '../support/office.js';

const MEETING_AT = '2030-01-15T09:30:00+08:00';
const NOTICE = `${SIGNATURE}会议通知：全市防汛工作会议，时间1月15日 09:30，地点市政府3楼会议室。请回复1参加，回复2不参加（可附原因）。`;
/** POST /v1/meetings and its PATCH and cancel answers. */
interface Meeting {
  readonly id: string;
  readonly invited: number;
  readonly notices: string[];
  readonly state: string;
}
/** GET /v1/meetings/{id}: the tally and the people of one answer. */
interface MeetingView extends Meeting {
  readonly tally: { readonly invited: number; readonly attend: number; readonly absent: number; readonly noReply: number; readonly late: number };
  readonly people: { readonly mobile: string; readonly answer?: string; readonly reason?: string }[];
}
/** GET /v1/meetings. */
interface MeetingList {
  readonly items: { readonly id: string; readonly title: string }[];
  readonly next?: string;
}
/** GET /v1/mo and /v1/admin/mo. */
interface MoList {
  readonly items: { readonly to: string; readonly text: string }[];
}
/** A refusal whose details name the fields. */
interface Refusal {
  readonly error: { readonly code: string; readonly details: { readonly field: string }[] };
}

const inHours = (h: number): string => new Date(Date.now() + h * 3_600_000).toISOString();

t.test('a meeting to a 2,000-person group: every notice sent once, scripted replies tallied exactly', async (t) => {
  const N = 2000;
  const { gw, admin, key, call } = await officeFixture(t, N);
  await admin.must('POST', '/v1/admin/groups/import', ['group,name,unit,kind,member', ...Array.from({ length: N }, (_, i) => `staff,全体,office,person,p${i}`)].join('\n'));
  const created = await call<Meeting>('POST', '/v1/meetings', { title: '全市防汛工作会议', time: MEETING_AT, place: '市政府3楼会议室', attendees: { groups: ['staff'] }, replyBy: inHours(24) });
  t.equal(created.status, 201, JSON.stringify(created.json));
  t.equal(created.json.invited, N);
  for (const id of created.json.notices) {
    const done = await admin.waitCompleteAs(key, id, 60_000);
    t.equal(done.summary.delivered, done.recipients, `notice ${id} delivered to all`);
  }
  const texts = receivedTexts(gw.simulator);
  let exact = 0;
  for (let i = 0; i < N; i++) if (JSON.stringify(texts.get(phone(i))) === JSON.stringify([NOTICE])) exact++;
  t.equal(exact, N, 'each of the 2,000 phones received the notice text exactly once');
  t.equal(gw.simulator.recentSubmits()[0]?.sourceAddr, OFFICE_SENDER, 'sent from the office\'s sender code (city + extension 11)');

  // Scripted replies: i%4 = 0 attend, 1 absent, 2 absent with a reason, 3 silent;
  // every 40th first says 2 and then changes to 1; every 50th appends a digit to the address.
  const script: { from: string; to: string; text: string }[] = [];
  for (let i = 0; i < N; i++) {
    const to = i % 50 === 0 ? `${OFFICE_SENDER}9` : OFFICE_SENDER;
    if (i % 40 === 0) script.push({ from: phone(i), to, text: '2' });
    if (i % 4 === 0) script.push({ from: phone(i), to, text: '1' });
    else if (i % 4 === 1) script.push({ from: phone(i), to, text: '２' });
    else if (i % 4 === 2) script.push({ from: phone(i), to, text: `2 出差${i}` });
  }
  // Changed minds must arrive in order: the "2" before the "1" of the same phone.
  const first = script.filter((s, k) => script.findIndex((x) => x.from === s.from) === k);
  const second = script.filter((s, k) => script.findIndex((x) => x.from === s.from) !== k);
  for (const wave of [first, second]) {
    let acked = 0;
    await inBatches(wave, 100, async (s) => {
      if (await gw.simulator.injectMo({ source: s.from, destination: s.to, text: s.text })) acked++;
    });
    t.equal(acked, wave.length, 'every MO acknowledged');
  }
  const expected = { invited: N, attend: N / 4, absent: N / 2, noReply: N / 4, late: 0 };
  const view = await call<MeetingView>('GET', `/v1/meetings/${created.json.id}?limit=1000&answer=absent`);
  t.same(view.json.tally, expected, 'tally exact');
  const withReason = (view.json.people as { mobile: string; reason?: string }[]).filter((p) => p.reason !== undefined);
  t.equal(withReason.length, N / 4, 'every "2 出差…" kept its reason');
  t.equal(view.json.people.length, N / 2, 'absent: both forms of 2');
  const p2 = (view.json.people as { mobile: string; reason?: string }[]).find((p) => p.mobile === phone(2));
  t.equal(p2?.reason, '出差2', 'the reason of "2 出差2" is recorded for that person');
  const silent = await call<MeetingView>('GET', `/v1/meetings/${created.json.id}?limit=1000&answer=none`);
  const expectSilent = Array.from({ length: N }, (_, i) => i).filter((i) => i % 4 === 3).map(phone).sort();
  t.same((silent.json.people as { mobile: string }[]).map((p) => p.mobile).sort(), expectSilent, 'exactly the silent ones have no answer');
  const changed = await call<MeetingView>('GET', `/v1/meetings/${created.json.id}?limit=1000&answer=attend`);
  t.ok((changed.json.people as { mobile: string }[]).some((p) => p.mobile === phone(40)), 'a changed mind (2 then 1) counts as attend');
  const unmatched = await call<MoList>('GET', '/v1/mo?state=unmatched');
  t.same(unmatched.json.items, [], 'every reply was matched');
});

t.test('replies after the window, ambiguous replies and noise', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 3);
  const a = await call<Meeting>('POST', '/v1/meetings', { title: '会议A', time: MEETING_AT, place: '1号楼', attendees: { people: ['p0', 'p1'] }, replyBy: new Date(Date.now() + 1500).toISOString() });
  t.equal(a.status, 201, JSON.stringify(a.json));
  const b = await call<Meeting>('POST', '/v1/meetings', { title: '会议B', time: MEETING_AT, place: '2号楼', attendees: { people: ['p0', 'p2'] }, replyBy: inHours(5) });
  t.equal(b.status, 201, JSON.stringify(b.json));
  // p0 is invited to both open meetings: the most recent one (B) takes the reply.
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: OFFICE_SENDER, text: '1' }));
  // Not a reply at all, and a digit that is not an answer: kept as unmatched MO.
  t.ok(await gw.simulator.injectMo({ source: phone(2), destination: OFFICE_SENDER, text: '请问会议几点开始' }));
  t.ok(await gw.simulator.injectMo({ source: phone(2), destination: OFFICE_SENDER, text: '3' }));
  // A reply from a number nobody invited, and one to a sender code no tenant owns.
  t.ok(await gw.simulator.injectMo({ source: '8613312345676', destination: OFFICE_SENDER, text: '1' }));
  t.ok(await gw.simulator.injectMo({ source: phone(1), destination: '10691234', text: '1' }));
  await new Promise((r) => setTimeout(r, 1600));
  // After A's window: p1 (only in A) answers late — recorded, not counted.
  t.ok(await gw.simulator.injectMo({ source: phone(1), destination: OFFICE_SENDER, text: '2 路上堵车' }));
  const va = await call<MeetingView>('GET', `/v1/meetings/${a.json.id}`);
  t.same(va.json.tally, { invited: 2, attend: 0, absent: 0, noReply: 2, late: 1 });
  t.match(va.json.people.find((p: { mobile: string }) => p.mobile === phone(1)), { answer: 'none', lateReply: { answer: 'absent', reason: '路上堵车' } });
  const vb = await call<MeetingView>('GET', `/v1/meetings/${b.json.id}`);
  t.same(vb.json.tally, { invited: 2, attend: 1, absent: 0, noReply: 1, late: 0 });
  const unmatched = await call<MoList>('GET', '/v1/mo?state=unmatched');
  t.same((unmatched.json.items as { text: string }[]).map((m) => m.text).sort(), ['1', '3', '请问会议几点开始'].sort(), 'noise and the stranger\'s reply are kept, visible to the owning unit');
  const late = await call<MoList>('GET', '/v1/mo?state=late');
  t.equal(late.json.items.length, 1);
  t.match(late.json.items[0], { route: 'meeting-reply', ref: a.json.id, text: '2 路上堵车' });
  // The MO to a code nobody owns is not shown to this tenant, but is to a global admin.
  t.notOk((unmatched.json.items as { to: string }[]).some((m) => m.to === '10691234'));
  const orphan = await admin.must<MoList>('GET', '/v1/admin/mo?state=unmatched');
  t.match(orphan.items, [{ to: '10691234', text: '1', detail: /no tenant's sender code/ }]);
});

t.test('reminders go to non-responders; changes and cancellations to everyone invited', async (t) => {
  const { gw, admin, key, call } = await officeFixture(t, 4);
  const remindAt = new Date(Date.now() + 2500).toISOString();
  const m = await call<Meeting>('POST', '/v1/meetings', { title: '周例会', time: MEETING_AT, place: '会议室', attendees: { people: ['p0', 'p1', 'p2', 'p3'] }, replyBy: inHours(2), remindAt });
  t.equal(m.status, 201, JSON.stringify(m.json));
  await admin.waitCompleteAs(key, m.json.notices[0]!);
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: OFFICE_SENDER, text: '1' }));
  t.ok(await gw.simulator.injectMo({ source: phone(1), destination: OFFICE_SENDER, text: '2 请假' }));
  const reminder = `${SIGNATURE}会议提醒：周例会，1月15日 09:30，会议室。尚未收到您的回复，请回复1参加或2不参加。`;
  await eventually(() => (receivedTexts(gw.simulator).get(phone(3)) ?? []).includes(reminder) || undefined, 'the reminder');
  const texts = receivedTexts(gw.simulator);
  t.same(texts.get(phone(0))?.filter((x) => x === reminder), [], 'no reminder to who attends');
  t.same(texts.get(phone(1))?.filter((x) => x === reminder), [], 'no reminder to who declined');
  t.same(texts.get(phone(2))?.filter((x) => x === reminder), [reminder], 'one reminder to a non-responder');

  const changed = await call('PATCH', `/v1/meetings/${m.json.id}`, { place: '2号会议室', note: '请准时参加。' });
  t.equal(changed.status, 200, JSON.stringify(changed.json));
  const change = `${SIGNATURE}会议变更：周例会，改为1月15日 09:30，地点2号会议室。请准时参加。`;
  await eventually(() => [0, 1, 2, 3].every((i) => (receivedTexts(gw.simulator).get(phone(i)) ?? []).includes(change)) || undefined, 'change notices');
  const cancelled = await call<Meeting>('POST', `/v1/meetings/${m.json.id}/cancel`, { note: '另行通知。' });
  t.equal(cancelled.json.state, 'cancelled');
  const cancel = `${SIGNATURE}会议取消：周例会（原定1月15日 09:30）已取消。另行通知。`;
  await eventually(() => [0, 1, 2, 3].every((i) => (receivedTexts(gw.simulator).get(phone(i)) ?? []).includes(cancel)) || undefined, 'cancel notices');
  t.equal((await call('POST', `/v1/meetings/${m.json.id}/cancel`, {})).status, 409, 'cancelling twice: NOT_CANCELLABLE');
  // After cancellation a reply is no longer matched to it.
  t.ok(await gw.simulator.injectMo({ source: phone(3), destination: OFFICE_SENDER, text: '1' }));
  const after = await call<MeetingView>('GET', `/v1/meetings/${m.json.id}`);
  t.equal(after.json.tally.attend, 1);
  for (let i = 0; i < 4; i++) t.equal(receivedTexts(gw.simulator).get(phone(i))?.filter((x) => x === cancel).length, 1, `one cancel notice to p${i}`);
});

t.test('a scheduled meeting cancelled before its notice goes out sends nothing', async (t) => {
  const { gw, call } = await officeFixture(t, 2);
  const m = await call<Meeting>('POST', '/v1/meetings', { title: '专题会', time: MEETING_AT, place: '会议室', attendees: { people: ['p0', 'p1'] }, replyBy: inHours(2), scheduleAt: inHours(1) });
  t.equal(m.status, 201, JSON.stringify(m.json));
  const status = await call<MessageStatus>('GET', `/v1/messages/${m.json.notices[0]}`);
  t.equal(status.json.status, 'scheduled');
  const c = await call('POST', `/v1/meetings/${m.json.id}/cancel`);
  t.equal(c.status, 200, JSON.stringify(c.json));
  const done = await call('GET', `/v1/messages/${m.json.notices[0]}`);
  t.match(done.json, { status: 'complete', summary: { rejected: 2 } });
  await new Promise((r) => setTimeout(r, 300));
  t.equal(gw.simulator.recentSubmits().length, 0, 'nothing reached the SMSC');
});

t.test('meeting input is checked at the door', async (t) => {
  const { call } = await officeFixture(t, 1);
  const bad = await call<Refusal>('POST', '/v1/meetings', { title: '', time: 'tomorrow', place: 'x', attendees: {} });
  t.equal(bad.status, 422);
  t.match(bad.json.error.details[0]!.field, /title|time/);
  const past = await call<Refusal>('POST', '/v1/meetings', { title: 'x', time: '2020-01-01T09:00:00+08:00', place: 'x', attendees: { people: ['p0'] } });
  t.equal(past.status, 422);
  t.match(past.json.error.details, [{ field: '/time' }]);
  const nobody = await call<Refusal>('POST', '/v1/meetings', { title: 'x', time: MEETING_AT, place: 'x', attendees: { people: ['nobody'] } });
  t.equal(nobody.status, 422);
  t.match(nobody.json.error.details, [{ field: '/attendees/people/0' }]);
  const group = await call('POST', '/v1/meetings', { title: 'x', time: MEETING_AT, place: 'x', attendees: { groups: ['none'] } });
  t.equal(group.status, 403, 'an unknown group answers like one not granted (no probing for group ids)');
  const replay1 = await call<Meeting>('POST', '/v1/meetings', { title: 'x', time: MEETING_AT, place: 'x', attendees: { people: ['p0'] } }, { 'idempotency-key': 'm-1' });
  const replay2 = await call<Meeting>('POST', '/v1/meetings', { title: 'x', time: MEETING_AT, place: 'x', attendees: { people: ['p0'] } }, { 'idempotency-key': 'm-1' });
  t.equal(replay1.status, 201);
  t.equal(replay2.status, 200);
  t.equal(replay2.json.id, replay1.json.id, 'the same meeting');
  t.same(replay2.json.notices, replay1.json.notices, 'and the same notice: nothing sent twice');
  // The same key with a changed body is a conflict, as for messages; the key order of the body does not matter.
  const changed = await call<Refusal>('POST', '/v1/meetings', { title: 'x', time: MEETING_AT, place: '另一个会议室', attendees: { people: ['p0'] } }, { 'idempotency-key': 'm-1' });
  t.equal(changed.status, 409, JSON.stringify(changed.json));
  t.equal(changed.json.error.code, 'IDEMPOTENCY_CONFLICT');
  const more = await call('POST', '/v1/meetings', { title: 'x', time: MEETING_AT, place: 'x', attendees: { people: ['p0', 'p1'] } }, { 'idempotency-key': 'm-1' });
  t.equal(more.status, 409, 'another attendee list is another body');
  const reordered = await call<Meeting>('POST', '/v1/meetings', { attendees: { people: ['p0'] }, place: 'x', time: MEETING_AT, title: 'x' }, { 'idempotency-key': 'm-1' });
  t.equal(reordered.status, 200, 'the same body with keys in another order replays');
  t.equal(reordered.json.id, replay1.json.id);
  t.equal((await call<MeetingList>('GET', '/v1/meetings')).json.items.filter((m) => m.id === replay1.json.id).length, 1, 'one meeting');
});

t.test('a meeting whose notice is refused (quota) is not kept', async (t) => {
  const { admin, call } = await officeFixture(t, 3);
  await admin.must('PUT', '/v1/admin/units/office/grants', { tiers: ['*'], groups: ['*'], direct: true, dailyQuota: 2 });
  const r = await call<Meeting & Refusal>('POST', '/v1/meetings', { title: 'x', time: MEETING_AT, place: 'x', attendees: { people: ['p0', 'p1', 'p2'] } });
  t.equal(r.status, 403, JSON.stringify(r.json));
  t.equal(r.json.error.code, 'QUOTA_EXCEEDED');
  t.same((await call<MeetingList>('GET', '/v1/meetings')).json.items, [], 'no meeting left behind');
});

t.test('GET /v1/meetings lists the tenant\'s meetings, newest first, paged', async (t) => {
  const { call } = await officeFixture(t, 1);
  const ids: string[] = [];
  for (const title of ['一', '二', '三']) {
    const r = await call<Meeting & Refusal>('POST', '/v1/meetings', { title, time: MEETING_AT, place: 'x', attendees: { people: ['p0'] } });
    ids.push(r.json.id);
  }
  const p1 = await call<MeetingList>('GET', '/v1/meetings?limit=2');
  t.same(p1.json.items.map((m: { title: string }) => m.title), ['三', '二']);
  t.equal(p1.json.next, ids[1]);
  const p2 = await call<MeetingList>('GET', `/v1/meetings?limit=2&cursor=${p1.json.next}`);
  t.same(p2.json.items.map((m: { title: string }) => m.title), ['一']);
  t.notOk('next' in p2.json);
});
