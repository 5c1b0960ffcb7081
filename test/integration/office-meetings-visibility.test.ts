/**
 * Meetings show invitees only to units that may read them (issue 17): the
 * inviting unit sees names and person ids of its own subtree's people; a
 * member of another subtree reached through a granted group is listed masked
 * with no name or id; a number the caller typed is never matched to a name
 * outside its subtree; and a person id of another subtree is refused exactly
 * like one that does not exist.
 */
import t from 'tap';
import { officeFixture, ALL_GRANTS } from '../support/office.js';
import { mobileAt } from '../support/directory.js';

interface Refusal { readonly error: { readonly code: string; readonly details: readonly [{ readonly field: string; readonly message: string }, ...{ readonly field: string; readonly message: string }[]] } }
interface MeetingView { readonly people: readonly Record<string, unknown>[] }

const inHours = (h: number): string => new Date(Date.now() + h * 3600_000).toISOString();

t.test('meeting invitees: names only within the subtree, others masked, no oracle', async (t) => {
  const { admin, call } = await officeFixture(t, 1);
  // A sibling bureau under the city with its own person; a city-owned group mixing both.
  await admin.must('POST', '/v1/admin/units', { id: 'other', name: '另一局', parent: 'city', extension: '12', grants: ALL_GRANTS });
  await admin.must('POST', '/v1/admin/people', { id: 'q0', name: '外单位人员', mobile: mobileAt(50), unit: 'other' });
  await admin.must('POST', '/v1/admin/groups', { id: 'mixed', name: 'mixed', unit: 'city', members: ['p0', 'q0'] });
  await admin.must('PUT', '/v1/admin/units/office/grants', { ...ALL_GRANTS, groups: ['mixed'] });

  const unknown = await call<Refusal>('POST', '/v1/meetings', { title: 'x', time: inHours(48), place: 'x', attendees: { people: ['nobody'] }, replyBy: inHours(24) });
  const foreign = await call<Refusal>('POST', '/v1/meetings', { title: 'x', time: inHours(48), place: 'x', attendees: { people: ['q0'] }, replyBy: inHours(24) });
  t.equal(unknown.status, 422);
  t.same([foreign.status, foreign.json.error.code, foreign.json.error.details.map((d: { field: string }) => d.field)], [unknown.status, unknown.json.error.code, unknown.json.error.details.map((d: { field: string }) => d.field)], 'another subtree\'s person id is refused like an unknown one');
  t.equal(foreign.json.error.details[0].message.replace('q0', 'ID'), unknown.json.error.details[0].message.replace('nobody', 'ID'), 'worded alike');

  const m = await call<{ id: string }>('POST', '/v1/meetings', { title: '联席会', time: inHours(48), place: '1号楼', attendees: { groups: ['mixed'] }, replyBy: inHours(24) });
  t.equal(m.status, 201, JSON.stringify(m.json));
  const view = await call<MeetingView>('GET', `/v1/meetings/${m.json.id}`);
  t.equal(view.status, 200);
  const people = view.json.people as { mobile: string; personId?: string; name?: string }[];
  t.equal(people.length, 2);
  t.match(people.find((p) => p.personId === 'p0'), { mobile: `86${mobileAt(0)}`, name: '人员0' }, 'own subtree: name and id');
  const other = people.find((p) => p.personId !== 'p0');
  t.same(Object.keys(other ?? {}).sort(), ['answer', 'mobile'], 'another subtree: no name, no id');
  t.not(other?.mobile, `86${mobileAt(50)}`, 'and the number masked');
  t.match(other?.mobile, /\*{4}/);
  t.notOk(JSON.stringify(view.json).includes('外单位人员') || JSON.stringify(view.json).includes('q0'), 'nothing of q0 anywhere in the answer');

  // A number the caller typed: kept as typed, but never matched to q0's name or id.
  const byNumber = await call<{ id: string }>('POST', '/v1/meetings', { title: '电话会', time: inHours(48), place: '线上', attendees: { numbers: [mobileAt(50)] }, replyBy: inHours(24) });
  t.equal(byNumber.status, 201, JSON.stringify(byNumber.json));
  const v2 = await call<MeetingView>('GET', `/v1/meetings/${byNumber.json.id}`);
  t.same(v2.json.people.map((p: Record<string, unknown>) => Object.keys(p).sort()), [['answer', 'mobile']]);
  t.notOk(JSON.stringify(v2.json).includes('外单位人员') || JSON.stringify(v2.json).includes('q0'));
});
