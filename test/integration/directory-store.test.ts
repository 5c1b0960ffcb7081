/**
 * DirectoryStore on a real LMDB environment: units, keys, people, groups,
 * imports (all or nothing), expansion and the audit trail.
 */
import t from 'tap';
import { GroupExpander, numberTail } from '../../src/directory/expansion.js';
import { grants, mobileAt, ROOT, tempDirectory } from '../support/directory.js';
import type { DirectoryStore } from '../../src/directory/store.js';

async function expandAll(store: DirectoryStore, group: string, opts: { chunk?: number; onPause?: () => void } = {}): Promise<string[]> {
  const out: string[] = [];
  const pause = opts.onPause ? async () => opts.onPause?.() : undefined;
  await new GroupExpander(store, { chunk: opts.chunk ?? 1000, maxMembers: 1_000_000, ...(pause ? { pause } : {}) }).expand(group, (_pid, packed) => void out.push(packed));
  return out;
}

t.test('units: ids, parents, depth, moves that would loop, deletion only when unused', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  await t.rejects(store.createUnit(ROOT, { id: 'city', name: 'Again' }), { code: 'ALREADY_EXISTS' });
  await t.rejects(store.createUnit(ROOT, { id: 'dev', name: 'Dev' }), { code: 'ALREADY_EXISTS', message: /bootstrap API key/ }, 'a config tenant name is reserved');
  await t.rejects(store.createUnit(ROOT, { id: 'x', name: 'X', parent: 'nope' }), { code: 'VALIDATION', details: [{ field: '/parent' }] });
  await t.rejects(store.createUnit(ROOT, { id: 'bad id', name: 'X' }), { code: 'VALIDATION', details: [{ field: '/id' }] });
  let parent = 'city';
  for (let d = 2; d <= 8; d++) {
    await store.createUnit(ROOT, { id: `d${d}`, name: `D${d}`, parent });
    parent = `d${d}`;
  }
  await t.rejects(store.createUnit(ROOT, { id: 'd9', name: 'too deep', parent: 'd8' }), { code: 'VALIDATION', message: /at most 8 deep/ });
  await t.rejects(store.updateUnit(ROOT, 'd2', { parent: 'd5' }), { code: 'VALIDATION', message: /cannot move under itself/ });
  t.same(store.unitChain('d4')?.map((u) => u.id), ['d4', 'd3', 'd2', 'city']);
  t.same(store.subtree('d6').sort(), ['d6', 'd7', 'd8']);
  await t.rejects(store.deleteUnit(ROOT, 'd7'), { code: 'IN_USE', details: [{ field: '/units', message: /d8/ }] });
  await store.deleteUnit(ROOT, 'd8');
  t.equal(store.getUnit('d8'), undefined);
  await t.rejects(store.createUnit(ROOT, { id: 'long', name: 'L', parent: 'city', sender: '1'.repeat(18), extension: undefined }).then(() => store.createUnit(ROOT, { id: 'longer', name: 'L', parent: 'long', extension: '123' })), { code: 'VALIDATION', message: /SMPP allows 20/ });
});

t.test('API keys: shown once, stored hashed, revoked and expired keys refused', async (t) => {
  let clock = 1_000_000;
  const { store } = tempDirectory(t, { now: () => clock });
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  const a = await store.createKey(ROOT, 'city', { label: 'oa' });
  const b = await store.createKey(ROOT, 'city', { expiresAt: clock + 60_000 });
  t.match(a.key, /^sgw_[A-Za-z0-9_-]{43}$/);
  t.notOk(JSON.stringify(store.listKeys('city')).includes(a.key.slice(12)), 'the secret part is not stored or listed');
  t.match(store.checkKey(a.key), { ok: true, key: { unit: 'city', label: 'oa' } });
  t.match(store.checkKey('sgw_nothing'), { ok: false, reason: 'unknown' });
  await store.revokeKey(ROOT, a.info.id);
  t.match(store.checkKey(a.key), { ok: false, reason: 'revoked' });
  t.match(store.checkKey(b.key), { ok: true });
  clock += 60_000;
  t.match(store.checkKey(b.key), { ok: false, reason: 'expired' });
  await t.rejects(store.createKey(ROOT, 'city', { expiresAt: clock - 1 }), { code: 'VALIDATION', details: [{ field: '/expiresAt' }] });
  const c = await store.createKey(ROOT, 'city', {});
  await t.rejects(store.deleteUnit(ROOT, 'city'), { code: 'IN_USE', details: [{ field: '/keys' }] }, 'a live key keeps the unit');
  await store.revokeKey(ROOT, c.info.id);
  await store.deleteUnit(ROOT, 'city');
  t.same(store.listKeys('city'), [], 'revoked and expired keys go with the unit');
  t.match(store.checkKey(c.key), { ok: false, reason: 'unknown' });
});

t.test('people and groups: unique numbers, memberships follow a changed number, cycles refused, nesting and roles expand once', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  await store.createUnit(ROOT, { id: 'police', name: 'Police', parent: 'city' });
  await store.createUnit(ROOT, { id: 'traffic', name: 'Traffic', parent: 'police' });
  await store.putPerson(ROOT, { id: 'a', name: 'A', mobile: mobileAt(1), unit: 'city' }, 'create');
  await store.putPerson(ROOT, { id: 'b', name: 'B', mobile: mobileAt(2), unit: 'police', roles: ['chief'] }, 'create');
  await store.putPerson(ROOT, { id: 'c', name: 'C', mobile: mobileAt(3), unit: 'traffic', roles: ['chief'], channel: 'pda' }, 'create');
  await store.putPerson(ROOT, { id: 'd', name: 'D', mobile: mobileAt(4), unit: 'city', roles: ['chief'] }, 'create');
  await t.rejects(store.putPerson(ROOT, { id: 'e', name: 'E', mobile: `+86 ${mobileAt(1)}`, unit: 'city' }, 'create'), { code: 'ALREADY_EXISTS', details: [{ field: '/mobile', message: /person a/ }] });
  await store.putGroup(ROOT, { id: 'inner', name: 'Inner', unit: 'city', members: ['a', mobileAt(2)] }, 'create');
  await store.putGroup(ROOT, { id: 'chiefs', name: 'Police chiefs', unit: 'police', roles: [{ role: 'chief', unit: 'police' }] }, 'create');
  await store.putGroup(ROOT, { id: 'outer', name: 'Outer', unit: 'city', groups: ['inner', 'chiefs'], members: ['b'] }, 'create');
  const packed = await expandAll(store, 'outer');
  t.same(packed.sort(), [`s86${mobileAt(1)}`, `s86${mobileAt(2)}`, `p86${mobileAt(3)}`].sort(), 'b once (static twice and by role); d is a chief outside the police subtree');
  await t.rejects(store.putGroup(ROOT, { id: 'inner', name: 'Inner', unit: 'city', groups: ['outer'] }, 'update'), { code: 'GROUP_CYCLE', message: /inner → outer → inner/ });
  await t.rejects(store.putGroup(ROOT, { id: 'x', name: 'X', unit: 'city', groups: ['x'] }, 'create'), { code: 'VALIDATION', message: /contain itself/ });
  await t.rejects(store.deleteGroup(ROOT, 'inner'), { code: 'IN_USE', message: /nested in group outer/ });

  await store.putPerson(ROOT, { id: 'a', name: 'A', mobile: mobileAt(9), unit: 'city', channel: 'both' }, 'update');
  t.ok((await expandAll(store, 'inner')).includes(`b86${mobileAt(9)}`), 'a changed number and channel reach the group rows');
  t.equal(store.personByMobile(`86${mobileAt(1)}`), undefined, 'the old number is free again');
  await store.deletePerson(ROOT, 'b');
  t.same((await expandAll(store, 'inner')), [`b86${mobileAt(9)}`], 'a deleted person leaves every group');
  t.equal(store.getGroup('inner')?.memberCount, 1);
  await store.changeMembers(ROOT, 'inner', { add: ['d', mobileAt(3)], remove: ['a'] });
  t.same((await expandAll(store, 'inner')).sort(), [`p86${mobileAt(3)}`, `s86${mobileAt(4)}`].sort());
  await t.rejects(store.changeMembers(ROOT, 'inner', { add: ['nobody'] }), { code: 'VALIDATION', details: [{ field: '/add/0' }] });
});

t.test('expansion of a 20,000-member group pauses between chunks and de-duplicates', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  const rows = Array.from({ length: 20_000 }, (_, i) => ({ line: i + 2, input: { id: `p${i}`, name: `P${i}`, mobile: mobileAt(i), unit: 'city' } }));
  t.same(await store.importPeople(ROOT, rows, { sha256: 'x' }), { created: 20_000, updated: 0, unchanged: 0 });
  await store.putGroup(ROOT, { id: 'half-a', name: 'A', unit: 'city' }, 'create');
  await store.putGroup(ROOT, { id: 'half-b', name: 'B', unit: 'city' }, 'create');
  for (let k = 0; k < 12; k++) await store.changeMembers(ROOT, 'half-a', { add: rows.slice(k * 1000, (k + 1) * 1000).map((r) => r.input.id) });
  for (let k = 8; k < 20; k++) await store.changeMembers(ROOT, 'half-b', { add: rows.slice(k * 1000, (k + 1) * 1000).map((r) => r.input.id) });
  await store.putGroup(ROOT, { id: 'all', name: 'All', unit: 'city', groups: ['half-a', 'half-b'] }, 'create');
  let pauses = 0;
  const members = await expandAll(store, 'all', { chunk: 1000, onPause: () => pauses++ });
  t.equal(members.length, 20_000, '24,000 memberships, 20,000 distinct people');
  t.equal(new Set(members).size, 20_000);
  t.ok(pauses >= 20, `yielded between chunks (${pauses} pauses)`);
  await t.rejects(new GroupExpander(store, { chunk: 1000, maxMembers: 5000 }).expand('all', () => undefined), { code: 'TOO_MANY_RECIPIENTS' });
});

t.test('numbers that share their last nine digits are still two members; a repeat is one', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  await store.putPerson(ROOT, { id: 'a', name: 'A', mobile: '13800138000', unit: 'city' }, 'create');
  await store.putPerson(ROOT, { id: 'b', name: 'B', mobile: '15800138000', unit: 'city' }, 'create');
  await store.putPerson(ROOT, { id: 'c', name: 'C', mobile: '18800138000', unit: 'city' }, 'create');
  t.equal(numberTail('s8613800138000'), numberTail('s8615800138000'), 'the fixture really clashes');
  await store.putGroup(ROOT, { id: 'g1', name: 'G1', unit: 'city', members: ['a', 'b'] }, 'create');
  await store.putGroup(ROOT, { id: 'g2', name: 'G2', unit: 'city', members: ['b', 'c', 'a'] }, 'create');
  await store.putGroup(ROOT, { id: 'both', name: 'Both', unit: 'city', groups: ['g1', 'g2'] }, 'create');
  t.same((await expandAll(store, 'both')).sort(), ['s8613800138000', 's8615800138000', 's8618800138000']);
});

t.test('a people import is one transaction: a conflict found inside it leaves nothing behind', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  await store.putPerson(ROOT, { id: 'owner', name: 'Owner', mobile: mobileAt(500), unit: 'city' }, 'create');
  const auditBefore = store.queryAudit({ limit: 1000 }).items.length;
  const rows = Array.from({ length: 1000 }, (_, i) => ({ line: i + 2, input: { id: `n${i}`, name: `N${i}`, mobile: mobileAt(i), unit: i === 700 ? 'nowhere' : 'city' } }));
  // Row 502 takes the number that belongs to `owner`; row 702 names a unit that does not exist.
  const e = await store.importPeople(ROOT, rows, { sha256: 'x' }).then(() => undefined, (err: unknown) => err as { code: string; details: { field: string; message: string }[] });
  t.equal(e?.code, 'IMPORT_INVALID');
  t.same(e?.details.map((d) => d.field), ['/rows/502/mobile', '/rows/702/unit']);
  t.equal(store.listPeople({ limit: 1000 }).items.length, 1, 'none of the 998 good rows was written');
  t.equal(store.queryAudit({ limit: 1000 }).items.length, auditBefore, 'and nothing was audited');
});

t.test('block list: global and per-unit scopes apply to the unit and its sub-units', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  await store.createUnit(ROOT, { id: 'b', name: 'B', parent: 'city' });
  await store.block(ROOT, { scope: '*', number: mobileAt(1), reason: 'opted out by SMS' });
  await store.block(ROOT, { scope: 'city', number: mobileAt(2) });
  t.ok(store.isBlocked(`86${mobileAt(1)}`, ['*']));
  t.ok(store.isBlocked(`86${mobileAt(2)}`, ['*', 'b', 'city']));
  t.notOk(store.isBlocked(`86${mobileAt(2)}`, ['*']));
  t.same([...(store.blockedSet(['*', 'city'], 10) ?? [])].sort(), [`86${mobileAt(1)}`, `86${mobileAt(2)}`]);
  t.equal(store.blockedSet(['*', 'city'], 1), undefined, 'too many for a set: the caller checks one by one');
  await store.unblock(ROOT, { scope: 'city', number: mobileAt(2) });
  t.notOk(store.isBlocked(`86${mobileAt(2)}`, ['city']));
  await t.rejects(store.unblock(ROOT, { scope: 'city', number: mobileAt(2) }), { code: 'NOT_FOUND' });
});

t.test('delegated admins act only inside their subtree', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  await store.createUnit(ROOT, { id: 'police', name: 'Police', parent: 'city' });
  await store.createUnit(ROOT, { id: 'health', name: 'Health', parent: 'city' });
  const police = { name: 'police-admin', unit: 'police' };
  await store.createUnit(police, { id: 'traffic', name: 'Traffic', parent: 'police', grants: grants({ tiers: ['*'] }) });
  await store.updateUnit(police, 'traffic', { name: 'Traffic police' });
  await t.rejects(store.updateUnit(police, 'police', { grants: { tiers: ['*'] } }), { code: 'FORBIDDEN' }, 'not its own unit');
  await t.rejects(store.createUnit(police, { id: 'x', name: 'X', parent: 'health' }), { code: 'FORBIDDEN' });
  await t.rejects(store.putPerson(police, { name: 'Y', mobile: mobileAt(1), unit: 'health' }, 'create'), { code: 'FORBIDDEN' });
  await t.rejects(store.block(police, { scope: '*', number: mobileAt(1) }), { code: 'FORBIDDEN' });
  await store.block(police, { scope: 'traffic', number: mobileAt(1) });
  t.equal(store.queryAudit({ actor: 'police-admin', limit: 100 }).items.length, 3, 'what it did is audited under its name');
});

t.test('people: email unique and lower-case, found by personByEmail; mailAlerts opt-in needs an email; an import without the columns keeps them', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  const a = await store.putPerson(ROOT, { id: 'a', name: 'A', mobile: mobileAt(1), unit: 'city', email: '  Zhang.San@Mail.Gov.CN ', mailAlerts: true }, 'create');
  t.equal(a.email, 'zhang.san@mail.gov.cn', 'stored lower-case, trimmed');
  t.equal(a.mailAlerts, true);
  const b = await store.putPerson(ROOT, { id: 'b', name: 'B', mobile: mobileAt(2), unit: 'city' }, 'create');
  t.equal(b.mailAlerts, false, 'opt-in defaults to false');
  t.notOk('email' in b, 'no email: no field');
  t.equal(store.personByEmail('ZHANG.SAN@mail.gov.cn')?.id, 'a', 'looked up in any case');
  t.equal(store.personByEmail('nobody@mail.gov.cn'), undefined);
  await t.rejects(store.putPerson(ROOT, { id: 'b', name: 'B', mobile: mobileAt(2), unit: 'city', email: 'zhang.san@MAIL.gov.cn' }, 'update'), { code: 'ALREADY_EXISTS', details: [{ field: '/email', message: /person a/ }] });
  await t.rejects(store.putPerson(ROOT, { id: 'b', name: 'B', mobile: mobileAt(2), unit: 'city', email: 'not an address' }, 'update'), { code: 'VALIDATION', details: [{ field: '/email' }] });
  await t.rejects(store.putPerson(ROOT, { id: 'b', name: 'B', mobile: mobileAt(2), unit: 'city', mailAlerts: true }, 'update'), { code: 'VALIDATION', details: [{ field: '/mailAlerts' }] });

  // Replacing a person's address frees the old one; replacing without one clears it.
  await store.putPerson(ROOT, { id: 'a', name: 'A', mobile: mobileAt(1), unit: 'city', email: 'a@mail.gov.cn', mailAlerts: true }, 'update');
  t.equal(store.personByEmail('zhang.san@mail.gov.cn'), undefined, 'the old address is free again');
  t.equal(store.personByEmail('a@mail.gov.cn')?.id, 'a');
  await store.putPerson(ROOT, { id: 'b', name: 'B', mobile: mobileAt(2), unit: 'city', email: 'zhang.san@mail.gov.cn' }, 'update');
  t.equal(store.personByEmail('zhang.san@mail.gov.cn')?.id, 'b', 'and can be given to someone else');

  // An import file without email / mailAlerts columns changes neither.
  const r1 = await store.importPeople(ROOT, [{ line: 2, input: { id: 'a', name: 'A', mobile: mobileAt(1), unit: 'city' } }], { sha256: 'x' });
  t.match(r1, { unchanged: 1 });
  t.match(store.getPerson('a'), { email: 'a@mail.gov.cn', mailAlerts: true });
  // With the columns: an empty email clears it (and opting in without one is refused, nothing written).
  const e = await store.importPeople(ROOT, [
    { line: 2, input: { id: 'a', name: 'A', mobile: mobileAt(1), unit: 'city', email: null, mailAlerts: true } },
    { line: 3, input: { id: 'c', name: 'C', mobile: mobileAt(3), unit: 'city', email: 'a@mail.gov.cn' } },
  ], { sha256: 'y' }).then(() => undefined, (err: unknown) => err as { code: string; details: { field: string }[] });
  t.equal(e?.code, 'IMPORT_INVALID');
  t.same(e?.details.map((d) => d.field), ['/rows/2/mailAlerts', '/rows/3/email']);
  t.match(store.getPerson('a'), { email: 'a@mail.gov.cn', mailAlerts: true }, 'nothing was written');
  await store.importPeople(ROOT, [
    { line: 2, input: { id: 'a', name: 'A', mobile: mobileAt(1), unit: 'city', email: null, mailAlerts: false } },
    { line: 3, input: { id: 'c', name: 'C', mobile: mobileAt(3), unit: 'city', email: 'a@mail.gov.cn', mailAlerts: true } },
  ], { sha256: 'z' });
  t.notOk('email' in (store.getPerson('a') ?? {}), 'cleared');
  t.equal(store.personByEmail('a@mail.gov.cn')?.id, 'c', 'an address moved from one person to another inside one import');
  await store.deletePerson(ROOT, 'c');
  t.equal(store.personByEmail('a@mail.gov.cn'), undefined, 'a deleted person frees the address');
});
