/**
 * The directory through the real gateway (uWS, LMDB, embedded queue, SMPP
 * simulator): group sends reaching every member, signatures, block list,
 * police messages that never reach SMPP, the sensitive-word filter (reject
 * and hold for review), quotas and grants at the door.
 */
import t, { type Test } from 'tap';
import { startTestGateway, TEST_KEY, type TestGateway } from '../support/gateway.js';
import fc from 'fast-check';
import { adminClient, ADMIN_CONFIG, ADMIN_KEY, mobileAt, type AdminClient } from '../support/directory.js';
import { encodeJob, workSubject, type Job } from '../../src/core/job.js';
import type { RecipientView } from '../support/api-types.js';

/** POST /v1/messages accepted (or held): what these tests read of it. */
interface Accepted {
  id: string;
  status: string;
}
/** A refusal whose details name each field. */
interface Refusal {
  error: { code: string; details: unknown[] };
}
/** POST /v1/admin/units/{id}/keys */
interface UnitKey {
  key: string;
}
/** A page of an admin list. */
interface Page<T> {
  items: T[];
  next?: string;
}
/** GET /v1/admin/held: one held message. */
interface HeldRow {
  id: string;
  tenant: string;
}

const ALL = { tiers: ['*'], groups: ['*'], direct: true, police: true, dailyQuota: null, perMinuteQuota: null };

async function cityWithPeople(t: Test, n: number, config: Record<string, unknown> = {}): Promise<{ gw: TestGateway; admin: AdminClient; key: string }> {
  const gw = await startTestGateway(t, { config: { ...ADMIN_CONFIG, ...config } });
  const admin = adminClient(gw);
  await admin.must('POST', '/v1/admin/units', { id: 'city', name: '市政府办公厅', sender: '10690002', signature: '【市政府办公厅】', grants: ALL });
  const csv = ['id,name,mobile,unit,roles', ...Array.from({ length: n }, (_, i) => `p${i},人员${i},${mobileAt(i)},city,${i < 20 ? 'chief' : ''}`)].join('\n');
  if (n > 0) await admin.must('POST', '/v1/admin/people/import', csv);
  const key = (await admin.must<UnitKey>('POST', '/v1/admin/units/city/keys', { label: 'test' })).key;
  return { gw, admin, key };
}

t.test('a group send reaches every member once, signed, and the status API lists them', async (t) => {
  const { gw, admin, key } = await cityWithPeople(t, 300);
  const rows = ['group,name,unit,kind,member'];
  for (let i = 0; i < 200; i++) rows.push(`dept-a,Dept A,city,person,p${i}`);
  for (let i = 150; i < 300; i++) rows.push(`dept-b,Dept B,city,person,p${i}`);
  rows.push('all-staff,All staff,city,group,dept-a', 'all-staff,,,group,dept-b', 'all-staff,,,role,chief');
  await admin.must('POST', '/v1/admin/groups/import', rows.join('\n'));
  const text = ('关于召开全市防汛工作紧急会议的通知：' + '请各单位主要负责同志明日上午九时准时参加。'.repeat(3)).slice(0, 65);
  t.ok(text.length <= 70 && text.length + '【市政府办公厅】'.length > 70, 'one part alone, two with the signature');
  const r = await admin.sendAs<Accepted>(key, { group: 'all-staff', text });
  t.equal(r.status, 202, JSON.stringify(r.json));
  t.match(r.json, { recipients: 300, segments: 2, totalSegments: 600, encoding: 'ucs2', status: 'accepted' }, 'the 202 counts members and the signed text\'s parts');
  const done = await admin.waitCompleteAs(key, r.json.id, 60_000);
  t.equal(done.recipients, 300);
  t.equal(done.summary.delivered, 300, 'every member delivered');
  const listed = new Set<string>(done.items.map((i) => i.to));
  let cursor = done.next;
  for (let pages = 0; cursor !== undefined && pages < 5; pages++) {
    const page = await admin.statusAs(key, r.json.id, `cursor=${cursor}&limit=1000`);
    for (const i of page.json.items) listed.add(i.to);
    cursor = page.json.next;
  }
  t.equal(listed.size, 300, 'the status API shows the actual recipients');
  t.ok([...listed].every((n) => /^86139\d{8}$/.test(n)));
  const byDest = gw.simulator.stats().submitsByDestination;
  t.ok(Array.from({ length: 300 }, (_, i) => byDest.get(`86${mobileAt(i)}`)).every((c) => c === 2), 'two parts per member, each submitted once');
  const parts = gw.simulator.recentSubmits().filter((s) => s.destinationAddr === `86${mobileAt(0)}`);
  t.ok(parts.map((p) => p.text).join('').startsWith('【市政府办公厅】'), 'the signature is in front (carriers\' rule)');
  t.equal(parts[0]?.sourceAddr, '10690002', 'sent from the unit\'s sender code');
});

t.test('block list and channel preferences are honoured at fan-out', async (t) => {
  const { gw, admin, key } = await cityWithPeople(t, 10);
  await admin.must('PUT', '/v1/admin/people/p3', { name: 'PDA only', mobile: mobileAt(3), unit: 'city', channel: 'pda' });
  await admin.must('POST', '/v1/admin/blocks', { scope: 'city', number: mobileAt(5), reason: '退订' });
  await admin.must('POST', '/v1/admin/groups', { id: 'ten', name: 'Ten', unit: 'city', members: Array.from({ length: 10 }, (_, i) => `p${i}`) });
  const r = await admin.sendAs<Accepted>(key, { group: 'ten', text: 'Notice' });
  t.equal(r.status, 202);
  const done = await admin.waitCompleteAs(key, r.json.id);
  t.match(done.summary, { delivered: 8, rejected: 1, failed: 1 });
  const byTo = new Map(done.items.map((i): [string, RecipientView] => [i.to, i]));
  t.match(byTo.get(`86${mobileAt(5)}`), { state: 'rejected', error: /opted out/ });
  t.match(byTo.get(`86${mobileAt(3)}`), { state: 'failed', error: /PDA channel is not enabled/ });
  t.equal(gw.simulator.stats().submitsByDestination.get(`86${mobileAt(5)}`), undefined, 'nothing sent to the blocked number');
  const direct = await admin.sendAs<Accepted>(key, { to: [mobileAt(5), mobileAt(6)], text: 'Direct' });
  const d = await admin.waitCompleteAs(key, direct.json.id);
  t.match(d.summary, { delivered: 1, rejected: 1 }, 'the block list applies to numbers sent directly too');
});

t.test('police messages never reach SMPP', async (t) => {
  const { gw, admin, key } = await cityWithPeople(t, 4);
  await admin.must('PUT', '/v1/admin/people/p1', { name: 'Officer', mobile: mobileAt(1), unit: 'city', channel: 'pda' });
  await admin.must('POST', '/v1/admin/groups', { id: 'duty', name: 'Duty', unit: 'city', members: ['p0', 'p1'] });
  const before = gw.simulator.stats().submits;
  const toSmsOnly = await admin.sendAs<Refusal>(key, { to: [mobileAt(0)], text: '出警', classification: 'police' });
  t.equal(toSmsOnly.status, 422);
  t.equal(toSmsOnly.json.error.code, 'CHANNEL_REFUSED');
  t.match(toSmsOnly.json.error.details[0], { field: '/to/0', message: /no PDA recipient/ });
  t.notMatch(JSON.stringify(toSmsOnly.json), /p0/, 'the refusal names the index, not the person');
  const unknown = await admin.sendAs<Refusal>(key, { to: ['13500135000'], text: '出警', classification: 'police' });
  t.same(unknown.json.error.details, toSmsOnly.json.error.details, 'an unknown number and an SMS-only person answer alike');
  const toGroup = await admin.sendAs<Refusal>(key, { group: 'duty', text: '出警', classification: 'police' });
  t.equal(toGroup.status, 422);
  t.match(toGroup.json.error.details[0], { field: '/group', message: /1 member\(s\) with preference sms/ });
  t.notMatch(JSON.stringify(toGroup.json), /p0/, 'no member named');
  const forced = await admin.sendAs<Refusal>(key, { to: [mobileAt(1)], text: '出警', classification: 'police', channel: 'sms' });
  t.match(forced.json.error, { code: 'CHANNEL_REFUSED', details: [{ field: '/channel' }] });
  const pdaPerson = await admin.sendAs<Refusal>(key, { to: [mobileAt(1)], text: '出警', classification: 'police' });
  t.match(pdaPerson.json.error, { code: 'CHANNEL_REFUSED', details: [{ field: '/classification', message: /PDA channel is not enabled/ }] }, 'a PDA person is fine, but this gateway has no PDA channel');

  // Past the door (a job put on the queue by hand): the dispatcher refuses it too.
  const now = Date.now();
  gw.gateway.store.putMessage({ id: 'POLICE1', tenant: 'dev', tier: 'emergency', channel: 'auto', encoding: 'ucs2', segments: 1, recipients: 1, createdAt: now, expiresAt: now + 600_000 }, [`86${mobileAt(0)}`]);
  await gw.gateway.store.flushed();
  const job: Job = { v: 1, id: 'POLICE1.0', tier: 'emergency', tenant: 'dev', group: 'direct', createdAt: now, messages: [{ id: 'POLICE1', text: '出警', encoding: 'ucs2', sender: '1069', expiresAt: now + 600_000, recipients: [{ i: 0, to: `86${mobileAt(0)}` }], classification: 'police' }] };
  await gw.gateway.queue.publish([{ subject: workSubject('smsgw', 'emergency', 'dev', 'direct'), tier: 'emergency', msgId: job.id, data: encodeJob(job) }]);
  const done = await gw.waitComplete('POLICE1');
  t.match(done.items[0], { state: 'rejected', error: /never go by SMS/ });
  t.equal(gw.simulator.stats().submits, before, 'the simulator received no submit_sm at all');
});

t.test('grants and quotas at the door: 403 naming what is missing', async (t) => {
  const { gw, admin, key } = await cityWithPeople(t, 3);
  await admin.must('POST', '/v1/admin/groups', { id: 'g1', name: 'G1', unit: 'city', members: ['p0'] });
  await admin.must('POST', '/v1/admin/groups', { id: 'g2', name: 'G2', unit: 'city', members: ['p1'] });
  await admin.must('POST', '/v1/admin/units', { id: 'section', name: '科室', parent: 'city', grants: { tiers: ['routine'], groups: ['g1'], direct: true, dailyQuota: 3 } });
  const sectionKey = (await admin.must<UnitKey>('POST', '/v1/admin/units/section/keys', {})).key;
  const tier = await admin.sendAs(sectionKey, { to: [mobileAt(0)], text: 'x', tier: 'emergency' });
  t.match(tier, { status: 403, json: { error: { code: 'FORBIDDEN', details: [{ field: '/tier' }] } } });
  const group = await admin.sendAs(sectionKey, { group: 'g2', text: 'x' });
  t.match(group, { status: 403, json: { error: { code: 'FORBIDDEN', details: [{ field: '/group' }] } } });
  t.equal((await admin.sendAs(sectionKey, { group: 'g1', text: 'one' })).status, 202);
  // The same keyed request twice at once: one write, one quota charge, the same answer.
  const keyed = (): Promise<Response> => fetch(`${gw.url}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${sectionKey}`, 'content-type': 'application/json', 'idempotency-key': 'twice' },
    body: JSON.stringify({ to: [mobileAt(1), mobileAt(2)], text: 'two' }),
  });
  const [k1, k2] = await Promise.all([keyed(), keyed()]);
  t.same([k1.status, k2.status], [202, 202]);
  const [b1, b2] = [await k1.json() as { id: string }, await k2.json() as { id: string }];
  t.equal(b1.id, b2.id);
  t.equal([k1, k2].filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 1, 'one of them is the replay');
  const over = await admin.sendAs(sectionKey, { to: [mobileAt(1)], text: 'three' });
  t.match(over, { status: 403, json: { error: { code: 'QUOTA_EXCEEDED', details: [{ field: '/quota/daily', message: /unit section: 3 of 3/ }] } } });
  t.equal((await admin.sendAs(key, { to: [mobileAt(1)], text: 'the parent has no quota' })).status, 202);
  const usage = await admin.must<{ usage: { daily: number } }>('GET', '/v1/admin/units/section');
  t.equal(usage.usage.daily, 3);
  const none = await admin.sendAs(TEST_KEY, { group: 'g1', text: 'bootstrap key' });
  t.match(none, { status: 403, json: { error: { details: [{ field: '/group' }] } } }, 'a bootstrap key has no groups unless config grants them');
  const empty = await admin.must('POST', '/v1/admin/groups', { id: 'empty', name: 'Empty', unit: 'city' });
  t.ok(empty);
  t.match(await admin.sendAs(key, { group: 'empty', text: 'x' }), { status: 422, json: { error: { details: [{ field: '/group', message: 'has no members' }] } } });
  // An unknown group answers like another subtree's (403 /group): a send cannot probe for group ids.
  t.match(await admin.sendAs(key, { group: 'nope', text: 'x' }), { status: 403, json: { error: { code: 'FORBIDDEN', details: [{ field: '/group' }] } } });
});

t.test('sensitive words: rejected at the door', async (t) => {
  const { gw, admin, key } = await cityWithPeople(t, 1, { content: { words: ['赌博', 'casino'], wordListFile: '', onMatch: 'reject', ignoreChars: ' *' } });
  const r = await admin.sendAs<Refusal>(key, { to: [mobileAt(0)], text: '欢迎来 赌*博 网站' });
  t.equal(r.status, 422);
  t.match(r.json.error, { code: 'CONTENT_REJECTED', details: [{ field: '/text', message: /赌博/ }] });
  t.equal((await admin.sendAs(key, { to: [mobileAt(0)], text: 'Visit the CASINO' })).status, 422, 'case-insensitive');
  t.equal(gw.simulator.stats().submits, 0, 'nothing of the refused texts was sent');
  const ok = await admin.sendAs<Accepted>(key, { to: [mobileAt(0)], text: '明天开会' });
  t.equal(ok.status, 202);
  t.equal((await admin.waitCompleteAs(key, ok.json.id)).summary.delivered, 1);
});

t.test('sensitive words: held for review, then released or rejected', async (t) => {
  const { gw, admin, key } = await cityWithPeople(t, 3, { content: { words: ['罢工'], wordListFile: '', onMatch: 'hold', ignoreChars: '' } });
  await admin.must('POST', '/v1/admin/groups', { id: 'all', name: 'All', unit: 'city', members: ['p0', 'p1', 'p2'] });
  const a = await admin.sendAs<Accepted>(key, { to: [mobileAt(0)], text: '关于罢工的通知 A' });
  t.match(a, { status: 202, json: { status: 'held', recipients: 1 } });
  const b = await admin.sendAs<Accepted>(key, { group: 'all', text: '关于罢工的通知 B' });
  t.match(b, { status: 202, json: { status: 'held', recipients: 3 } });
  const held = await admin.must<Page<HeldRow>>('GET', '/v1/admin/held');
  t.same(held.items.map((h) => h.id).sort(), [a.json.id, b.json.id].sort());
  t.match(held.items.find((h) => h.id === b.json.id), { word: '罢工', text: '【市政府办公厅】关于罢工的通知 B', group: 'all', tenant: 'city' });
  t.equal(gw.simulator.stats().submits, 0, 'nothing sent while held');

  await admin.must('POST', `/v1/admin/held/${a.json.id}/release`);
  t.match((await admin.waitCompleteAs(key, a.json.id)).summary, { delivered: 1 });
  await admin.must('POST', `/v1/admin/held/${b.json.id}/reject`, { reason: 'wording' });
  const rejected = await admin.waitCompleteAs(key, b.json.id);
  t.match(rejected.summary, { rejected: 3 });
  t.match(rejected.items[0]!.error, /rejected on review by root-admin: wording/);
  t.same((await admin.must<Page<HeldRow>>('GET', '/v1/admin/held')).items, []);
  t.equal((await admin.call('POST', `/v1/admin/held/${a.json.id}/release`)).status, 404);
  const audit = await admin.must<Page<{ action: string }>>('GET', '/v1/admin/audit?targetType=message');
  t.same(audit.items.map((e) => e.action).sort(), ['held.reject', 'held.release']);
});

t.test('held messages: a delegated admin pages only its subtree, every page full (fast-check against a reference model of paging)', async (t) => {
  const keys = { a: 'held-admin-a-key-0123456789abcd', a1: 'held-admin-a1-key-0123456789abc', b: 'held-admin-b-key-0123456789abcd' };
  const gw = await startTestGateway(t, {
    config: {
      admin: { keys: [{ key: ADMIN_KEY, name: 'root-admin' }, { key: keys.a, name: 'h-a', unit: 'a' }, { key: keys.a1, name: 'h-a1', unit: 'a1' }, { key: keys.b, name: 'h-b', unit: 'b' }] },
      content: { words: ['罢工'], wordListFile: '', onMatch: 'hold', ignoreChars: '' },
    },
  });
  const admin = adminClient(gw);
  // city ─┬─ a ── a1
  //       └─ b
  const parent: Record<string, string | undefined> = { city: undefined, a: 'city', a1: 'a', b: 'city' };
  const within = (u: string, root: string): boolean => {
    for (let x: string | undefined = u; x !== undefined; x = parent[x]) if (x === root) return true;
    return false;
  };
  await admin.must('POST', '/v1/admin/units', { id: 'city', name: 'city', sender: '10690002', grants: ALL });
  await admin.must('POST', '/v1/admin/units', { id: 'a', name: 'a', parent: 'city', extension: '1', grants: ALL });
  await admin.must('POST', '/v1/admin/units', { id: 'a1', name: 'a1', parent: 'a', extension: '1', grants: ALL });
  await admin.must('POST', '/v1/admin/units', { id: 'b', name: 'b', parent: 'city', extension: '2', grants: ALL });
  const unitKey: Record<string, string> = {};
  for (const u of Object.keys(parent)) unitKey[u] = (await admin.must<UnitKey>('POST', `/v1/admin/units/${u}/keys`, { label: 'h' })).key;
  // Mixed owners, with runs of one subtree longer than any page size tried (foreign runs between and at the end).
  const owners = ['b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'a', 'a1', 'city', 'b', 'a', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'a1', 'a1', 'a', 'city', 'city', 'b', 'a', 'a1', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b'];
  const tenantOf = new Map<string, string>();
  for (const [i, u] of owners.entries()) {
    const r = await admin.sendAs<Accepted>(unitKey[u] as string, { to: [mobileAt(i)], text: `关于罢工的通知 ${i}` });
    t.equal(r.json?.status, 'held', JSON.stringify(r.json));
    tenantOf.set(r.json.id, u);
  }
  const all = [...tenantOf.keys()].sort();
  const actors: Record<string, { key: string; unit?: string }> = { root: { key: ADMIN_KEY }, a: { key: keys.a, unit: 'a' }, a1: { key: keys.a1, unit: 'a1' }, b: { key: keys.b, unit: 'b' } };
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...Object.keys(actors)), fc.integer({ min: 1, max: 12 }), async (actorName, limit) => {
      const actor = actors[actorName] as { key: string; unit?: string };
      // The reference model: the ids in scope, in id order, cut into pages of `limit`; `next` on every page but the last.
      const scoped = all.filter((id) => actor.unit === undefined || within(tenantOf.get(id) as string, actor.unit));
      const expected: string[][] = [];
      for (let i = 0; i < scoped.length; i += limit) expected.push(scoped.slice(i, i + limit));
      if (expected.length === 0) expected.push([]);
      const got: string[][] = [];
      const as = adminClient(gw, actor.key);
      let cursor: string | undefined;
      for (let pages = 0; pages <= all.length + 1; pages++) {
        const page = await as.must<Page<HeldRow>>('GET', `/v1/admin/held?limit=${limit}${cursor !== undefined ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        for (const h of page.items) if (actor.unit !== undefined && !within(h.tenant, actor.unit)) return false; // nothing foreign, ever
        got.push(page.items.map((h) => h.id));
        cursor = page.next;
        if (cursor === undefined) break;
      }
      t.same(got, expected, `${actorName} limit ${limit}`);
      return cursor === undefined && JSON.stringify(got) === JSON.stringify(expected);
    }),
    { numRuns: 30, seed: 17 },
  );
});

t.test('quiet hours: a tier inside them waits and its validity starts at their end; emergency goes', async (t) => {
  const local = (ms: number): string => new Date(ms + 480 * 60_000).toISOString().slice(11, 16);
  const start = local(Date.now() - 60_000);
  const end = local(Date.now() + 3 * 60_000);
  const tiers = [
    { name: 'emergency', priority: 100, defaultValidity: 'PT2H' },
    { name: 'leadership', priority: 80, defaultValidity: 'PT12H' },
    { name: 'business', priority: 60, defaultValidity: 'P1D' },
    { name: 'routine', priority: 40, defaultValidity: 'P1D' },
    { name: 'bulk', priority: 20, defaultValidity: 'PT1H', quietHours: { start, end } },
  ];
  const { gw, admin, key } = await cityWithPeople(t, 2, { tiers });
  const bulk = await admin.sendAs<Accepted>(key, { to: [mobileAt(0)], text: 'Bulk notice', tier: 'bulk' });
  t.equal(bulk.status, 202);
  const status = await admin.statusAs(key, bulk.json.id);
  const quietEnd = Date.now() + 3 * 60_000;
  t.ok(Date.parse(status.json.expiresAt!) >= quietEnd - 120_000 + 3_600_000, 'validity counted from the end of the quiet hours');
  const urgent = await admin.sendAs<Accepted>(key, { to: [mobileAt(1)], text: 'Urgent', tier: 'emergency' });
  t.equal((await admin.waitCompleteAs(key, urgent.json.id)).summary.delivered, 1, 'a tier without quiet hours is sent');
  const still = await admin.statusAs(key, bulk.json.id);
  t.equal(still.json.status, 'in-progress', 'the quiet tier waits in its queue');
  t.equal(gw.simulator.stats().submitsByDestination.get(`86${mobileAt(0)}`), undefined, 'nothing was submitted for it');
});

t.test('emergency warnings reach people who opted out (tiers[].ignoreOptOut); routine traffic does not', async (t) => {
  const { gw, admin, key } = await cityWithPeople(t, 6);
  await admin.must('POST', '/v1/admin/blocks', { scope: 'city', number: mobileAt(2), reason: 'TD' });
  await admin.must('POST', '/v1/admin/groups', { id: 'six', name: 'Six', unit: 'city', members: Array.from({ length: 6 }, (_, i) => `p${i}`) });
  const routine = await admin.sendAs<Accepted>(key, { group: 'six', text: '例行通知' });
  t.match((await admin.waitCompleteAs(key, routine.json.id)).summary, { delivered: 5, rejected: 1 });
  const warning = await admin.sendAs<Accepted>(key, { group: 'six', text: '台风橙色预警：请留在室内。', tier: 'emergency' });
  t.equal(warning.status, 202, JSON.stringify(warning.json));
  t.match((await admin.waitCompleteAs(key, warning.json.id)).summary, { delivered: 6, rejected: 0 }, 'the blocked member gets the warning (fan-out)');
  const direct = await admin.sendAs<Accepted>(key, { to: [mobileAt(2)], text: '台风橙色预警（直发）', tier: 'emergency' });
  t.match((await admin.waitCompleteAs(key, direct.json.id)).summary, { delivered: 1 }, 'and sent directly (dispatch)');
  t.equal(gw.simulator.stats().submitsByDestination.get(`86${mobileAt(2)}`), 2, 'two warnings, no routine message');
});
