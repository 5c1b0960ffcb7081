/**
 * The admin API over HTTP on a real gateway: auth, routing, validation,
 * units / keys / people / groups / blocks, CSV import and export (including
 * GBK files), delegated admins.
 */
import t from 'tap';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { adminClient, ADMIN_CONFIG, ADMIN_KEY, mobileAt } from '../support/directory.js';

const SCOPED_KEY = 'police-admin-key-0123456789';
const CONFIG = { admin: { keys: [...ADMIN_CONFIG.admin.keys, { key: SCOPED_KEY, name: 'police-admin', unit: 'police' }] } };
interface Detail { readonly field: string; readonly message?: string }
interface Refusal { readonly error: { readonly code: string; readonly message?: string; readonly details: readonly [Detail, ...Detail[]] } }
interface Items<T = { readonly id: string }> { readonly items: readonly T[] }
interface UnitView { readonly id: string; readonly effective: { readonly tiers: readonly string[]; readonly [field: string]: unknown } }
interface KeyCreated { readonly id: string; readonly key: string }

const ALL = { tiers: ['*'], groups: ['*'], direct: true, police: false, dailyQuota: null, perMinuteQuota: null };

t.test('admin API', async (t) => {
  const gw = await startTestGateway(t, { config: CONFIG });
  const admin = adminClient(gw);
  const scoped = adminClient(gw, SCOPED_KEY);

  await t.test('auth and routing', async (t) => {
    t.equal((await adminClient(gw, 'not-a-key-at-all').call('GET', '/v1/admin/units')).status, 401);
    const none = await fetch(`${gw.url}/v1/admin/units`);
    t.equal(none.status, 401);
    t.equal((await none.json() as Refusal).error.code, 'UNAUTHORIZED');
    t.equal((await adminClient(gw, TEST_KEY).call('GET', '/v1/admin/units')).status, 401, 'a sending key is not an admin key');
    t.equal((await admin.call('GET', '/v1/admin/nothing-here')).status, 404);
    t.equal((await admin.call('PATCH', '/v1/admin/audit', {})).status, 405);
    const bad = await admin.call('POST', '/v1/admin/units', '{not json', { 'content-type': 'application/json' });
    t.equal(bad.status, 400);
    const invalid = await admin.call<Refusal>('POST', '/v1/admin/units', { id: 'has space', name: '' });
    t.equal(invalid.status, 422);
    t.ok(invalid.json.error.details.some((d) => d.field === '/id'), 'names the field');
  });

  await t.test('units, grants and keys', async (t) => {
    // 10690001 is the bootstrap key dev's code (config/default.json): a unit may not claim it (SENDER_TAKEN).
    const city = await admin.call('POST', '/v1/admin/units', { id: 'city', name: '市政府', sender: '10690002', signature: '【市政府】', grants: ALL });
    t.equal(city.status, 201);
    t.match(city.json, { id: 'city', effective: { sender: '10690002', signature: '【市政府】', tiers: ['*'] }, createdAt: /^\d{4}-\d\d-\d\dT/ });
    await admin.must('POST', '/v1/admin/units', { id: 'police', name: '公安局', parent: 'city', extension: '11', grants: { ...ALL, tiers: ['emergency', 'routine'] } });
    t.equal((await admin.call('POST', '/v1/admin/units', { id: 'city', name: 'again' })).status, 409);
    const got = await admin.must<UnitView>('GET', '/v1/admin/units/police');
    t.match(got.effective, { sender: '1069000211', signature: '【市政府】', tiers: ['emergency', 'routine'] });
    const narrowed = await admin.must<UnitView>('PUT', '/v1/admin/units/city/grants', { ...ALL, tiers: ['routine'] });
    t.same(narrowed.effective.tiers, ['routine']);
    t.same((await admin.must<UnitView>('GET', '/v1/admin/units/police/grants')).effective.tiers, ['routine'], 'the sub-unit narrowed with its parent');
    await admin.must('PUT', '/v1/admin/units/city/grants', ALL);

    const key = await admin.call<KeyCreated>('POST', '/v1/admin/units/police/keys', { label: 'oa' });
    t.equal(key.status, 201);
    t.match(key.json, { key: /^sgw_/, unit: 'police', label: 'oa', prefix: key.json.key.slice(0, 12) });
    const list = await admin.must('GET', '/v1/admin/units/police/keys');
    t.notOk(JSON.stringify(list).includes(key.json.key), 'the key is never shown again');
    const sent = await admin.sendAs(key.json.key, { to: ['13800138000'], text: 'key works' });
    t.equal(sent.status, 202);
    t.match((await admin.must('DELETE', `/v1/admin/keys/${key.json.id}`)), { revokedAt: /T/ });
    const refused = await admin.sendAs<Refusal>(key.json.key, { to: ['13800138000'], text: 'after revoke' });
    t.equal(refused.status, 401);
    t.equal(refused.json.error.code, 'KEY_REVOKED');

    const soon = await admin.must<KeyCreated>('POST', '/v1/admin/units/police/keys', { expiresAt: new Date(Date.now() + 1500).toISOString() });
    let last = 0;
    let code = '';
    for (let i = 0; i < 100; i++) {
      const r = await admin.sendAs<Partial<Refusal> | undefined>(soon.key, { to: ['13800138000'], text: `expiry probe ${i}` });
      last = r.status;
      code = r.json?.error?.code ?? '';
      if (last === 401) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    t.equal(last, 401);
    t.equal(code, 'KEY_EXPIRED', 'an expired key is refused with its own code');
    const unused = await admin.must<KeyCreated>('POST', '/v1/admin/units/police/keys', {});
    t.equal((await admin.call('DELETE', '/v1/admin/units/police')).status, 409, 'a unit with a live key stays');
    await admin.must('DELETE', `/v1/admin/keys/${unused.id}`);
  });

  await t.test('people and groups, CSV import and export', async (t) => {
    const csv = ['id,name,mobile,unit,roles,channel', ...Array.from({ length: 50 }, (_, i) => `p${i},Person ${i},${mobileAt(i)},police,${i % 5 === 0 ? 'chief' : ''},sms`)].join('\r\n');
    t.match(await admin.must('POST', '/v1/admin/people/import', csv), { created: 50, updated: 0, rows: 50 });
    t.match(await admin.must('POST', '/v1/admin/people/import', csv), { created: 0, updated: 0, unchanged: 50 }, 'importing again changes nothing');

    const broken = [
      'name,mobile,unit',
      `新人,${mobileAt(100)},police`,
      `重复,${mobileAt(100)},police`,
      'bad,12345,police',
      `nowhere,${mobileAt(101)},no-such-unit`,
    ].join('\n');
    const r = await admin.call<Refusal>('POST', '/v1/admin/people/import', broken);
    t.equal(r.status, 422);
    t.equal(r.json.error.code, 'IMPORT_INVALID');
    t.same(r.json.error.details.map((d) => d.field), ['/rows/3/mobile', '/rows/4/mobile'], 'file-level problems first: duplicate and bad number');
    const r2 = await admin.call<Refusal>('POST', '/v1/admin/people/import', `name,mobile,unit\n新人,${mobileAt(100)},police\nnowhere,${mobileAt(101)},no-such-unit\n`);
    t.same(r2.json.error.details.map((d) => d.field), ['/rows/3/unit'], 'then directory problems, found inside the transaction');
    t.equal((await admin.must<Items<unknown>>('GET', '/v1/admin/people?unit=police&limit=1000')).items.length, 50, 'nothing of either file was imported');

    // 张三 and 李四 in GBK, as Chinese Excel saves "CSV".
    const gbk = Buffer.concat([
      Buffer.from('name,mobile,unit\n'), Buffer.from([0xd5, 0xc5, 0xc8, 0xfd]), Buffer.from(`,${mobileAt(200)},police\n`),
      Buffer.from([0xc0, 0xee, 0xcb, 0xc4]), Buffer.from(`,${mobileAt(201)},police\n`),
    ]);
    const wrong = await admin.call<Refusal>('POST', '/v1/admin/people/import', new Uint8Array(gbk));
    t.equal(wrong.status, 422);
    t.match(wrong.json.error.details[0], { field: '/rows/2', message: /not valid UTF-8.*GBK/ });
    t.equal((await admin.must<Items<unknown>>('GET', '/v1/admin/people?unit=police&limit=1000')).items.length, 50);
    t.match(await admin.must('POST', '/v1/admin/people/import?encoding=gbk', new Uint8Array(gbk)), { created: 2 });
    t.equal((await admin.must<{ name: string }>('GET', `/v1/admin/people/p86${mobileAt(200)}`)).name, '张三');

    const exported = await fetch(`${gw.url}/v1/admin/people/export`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    t.equal(exported.status, 200);
    t.match(exported.headers.get('content-type'), /text\/csv/);
    const text = await exported.text();
    t.equal(text.split('\r\n').filter((l) => l.length > 0).length, 53, 'header + 52 people');
    t.match(await admin.must('POST', '/v1/admin/people/import', text), { unchanged: 52 }, 'export → import round-trips');

    const groups = ['group,name,unit,kind,member', 'chiefs,Chiefs,police,role,chief@police', 'duty,Duty,police,person,p1', 'duty,,,person,p2', `duty,,,person,${mobileAt(3)}`, 'all,All,police,group,duty', 'all,,,group,chiefs'].join('\n');
    t.match(await admin.must('POST', '/v1/admin/groups/import', groups), { created: 3, groups: 3 });
    const exp = await admin.must<{ count: number; members: readonly unknown[]; groups: readonly string[] }>('GET', '/v1/admin/groups/all/expansion?limit=5');
    t.equal(exp.count, 13, '3 on duty + 10 chiefs, none twice');
    t.equal(exp.members.length, 5);
    t.same(exp.groups, ['all', 'duty', 'chiefs']);
    const cycle = await admin.call<Refusal>('PUT', '/v1/admin/groups/duty', { name: 'Duty', unit: 'police', groups: ['all'] });
    t.equal(cycle.status, 422);
    t.equal(cycle.json.error.code, 'GROUP_CYCLE');
    t.match(await admin.must('POST', '/v1/admin/groups/duty/members', { add: ['p10'], remove: ['p1'] }), { memberCount: 3 });
    t.same((await admin.must<Items>('GET', '/v1/admin/groups/duty/members')).items.map((m) => m.id).sort(), ['p10', 'p2', 'p3']);
    const gexp = await (await fetch(`${gw.url}/v1/admin/groups/export`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).text();
    t.match(gexp, /all,,,group,duty/);
    t.equal((await admin.call('DELETE', '/v1/admin/groups/duty')).status, 409, 'nested in all');
    t.equal((await admin.call('DELETE', '/v1/admin/people/p2')).status, 204);
    t.equal((await admin.call('GET', '/v1/admin/people/p2')).status, 404);
  });

  await t.test('people: email and new-mail alert opt-in over the API and in CSV', async (t) => {
    const created = await admin.call('POST', '/v1/admin/people', { id: 'mail1', name: '邮件一', mobile: mobileAt(300), unit: 'police', email: 'Mail.One@Police.Gov.CN', mailAlerts: true });
    t.equal(created.status, 201);
    t.match(created.json, { email: 'mail.one@police.gov.cn', mailAlerts: true });
    const taken = await admin.call<Refusal>('POST', '/v1/admin/people', { id: 'mail2', name: '邮件二', mobile: mobileAt(301), unit: 'police', email: 'mail.one@police.gov.cn' });
    t.equal(taken.status, 409);
    t.match(taken.json.error.details[0], { field: '/email', message: /mail1/ });
    const optInWithout = await admin.call<Refusal>('POST', '/v1/admin/people', { id: 'mail2', name: '邮件二', mobile: mobileAt(301), unit: 'police', mailAlerts: true });
    t.equal(optInWithout.status, 422);
    t.equal(optInWithout.json.error.details[0].field, '/mailAlerts');
    t.equal((await admin.call('POST', '/v1/admin/people', { id: 'mail2', name: '邮件二', mobile: mobileAt(301), unit: 'police', email: 'no at sign' })).status, 422);
    t.match(await admin.must('POST', '/v1/admin/people', { id: 'mail2', name: '邮件二', mobile: mobileAt(301), unit: 'police' }), { mailAlerts: false });
    t.match(await admin.must('PUT', '/v1/admin/people/mail2', { name: '邮件二', mobile: mobileAt(301), unit: 'police', email: 'mail.two@police.gov.cn', mailAlerts: true }), { email: 'mail.two@police.gov.cn', mailAlerts: true });
    const csv = `id,name,mobile,unit,email,mailAlerts\r\nmail3,邮件三,${mobileAt(302)},police,mail.three@police.gov.cn,yes\r\nmail2,邮件二,${mobileAt(301)},police,mail.two@police.gov.cn,no\r\n`;
    t.match(await admin.must('POST', '/v1/admin/people/import', csv), { created: 1, updated: 1 });
    t.match(await admin.must('GET', '/v1/admin/people/mail3'), { email: 'mail.three@police.gov.cn', mailAlerts: true });
    t.match(await admin.must('GET', '/v1/admin/people/mail2'), { mailAlerts: false });
    const text = await (await fetch(`${gw.url}/v1/admin/people/export`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).text();
    t.match(text, /^\uFEFF?id,name,mobile,unit,roles,channel,email,mailAlerts\r\n/, 'export has the columns');
    t.match(text, new RegExp(`mail3,邮件三,86${mobileAt(302)},police,,sms,mail.three@police.gov.cn,true`));
    t.match(await admin.must('POST', '/v1/admin/people/import', text), { created: 0, updated: 0 }, 'export → import round-trips with the new columns');
    for (const id of ['mail1', 'mail2', 'mail3']) await admin.must('DELETE', `/v1/admin/people/${id}`);
  });

  await t.test('block list', async (t) => {
    const b = await admin.call('POST', '/v1/admin/blocks', { number: `+86${mobileAt(5)}`, reason: '退订' });
    t.equal(b.status, 201);
    t.match(b.json, { scope: '*', number: `86${mobileAt(5)}`, by: 'root-admin' });
    t.equal((await admin.must<Items<unknown>>('GET', '/v1/admin/blocks?scope=*')).items.length, 1);
    t.equal((await admin.call('DELETE', `/v1/admin/blocks/*/86${mobileAt(5)}`)).status, 204);
    t.equal((await admin.call('DELETE', `/v1/admin/blocks/*/86${mobileAt(5)}`)).status, 404);
  });

  await t.test('a delegated admin sees and changes only its subtree', async (t) => {
    await admin.must('POST', '/v1/admin/units', { id: 'health', name: '卫健委', parent: 'city' });
    const created = await scoped.call('POST', '/v1/admin/units', { id: 'traffic', name: '交警支队', parent: 'police' });
    t.equal(created.status, 201);
    t.equal((await scoped.call('POST', '/v1/admin/units', { id: 'x', name: 'X', parent: 'health' })).status, 403);
    t.equal((await scoped.call('GET', '/v1/admin/units/health')).status, 404, 'another subtree\'s unit answers like a missing one');
    t.equal((await scoped.call('PUT', '/v1/admin/units/police/grants', ALL)).status, 403, 'not even its own unit\'s grants');
    t.same((await scoped.must<Items>('GET', '/v1/admin/units')).items.map((u) => u.id).sort(), ['police', 'traffic']);
    t.equal((await scoped.call('POST', '/v1/admin/blocks', { number: mobileAt(9) })).status, 403, 'no global block list');
    t.equal((await scoped.call('POST', '/v1/admin/blocks', { scope: 'traffic', number: mobileAt(9) })).status, 201);
  });
});
