/**
 * Authorization holes found by probing as a delegated admin (issue 17),
 * each reproduced against the DirectoryStore on a real LMDB environment.
 */
import t from 'tap';
import { grants, mobileAt, ROOT, tempDirectory } from '../support/directory.js';
import { GroupExpander } from '../../src/directory/expansion.js';
import { QuotaLedger } from '../../src/directory/quota.js';
import { SendPolicy } from '../../src/directory/policy.js';
import { WordFilter } from '../../src/core/word-filter.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import type { Actor } from '../../src/directory/types.js';
import { ownerOfDestination } from '../../src/core/mo.js';

const ADMIN_A: Actor = { name: 'admin-a', unit: 'a' };

t.test('sender codes are owned: no takeover of a sibling\'s or a bootstrap key\'s code', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City', sender: '10690002' });
  await store.createUnit(ROOT, { id: 'a', name: 'A', parent: 'city', extension: '1' });
  await store.createUnit(ROOT, { id: 'b', name: 'B', parent: 'city', extension: '2' });
  // The hole: a delegated admin of A gave a new sub-unit B's code.
  await t.rejects(store.createUnit(ADMIN_A, { id: 'a-sub', name: 'A sub', parent: 'a', sender: '106900022' }), { code: 'FORBIDDEN', details: [{ field: '/sender' }] }, 'a delegated admin sets no full sender');
  await t.rejects(store.updateUnit(ADMIN_A, 'a', { sender: '106900022' }), { code: 'FORBIDDEN' }, 'nor on its own unit');
  await store.createUnit(ADMIN_A, { id: 'a-sub', name: 'A sub', parent: 'a', extension: '7' });
  t.equal(store.senderOf(store.unitChain('a-sub') ?? []), '1069000217', 'an extension under its own unit\'s code');
  // A root admin cannot hand out a taken code either: 409 naming the owner.
  await t.rejects(store.createUnit(ROOT, { id: 'c', name: 'C', sender: '106900022' }), { code: 'SENDER_TAKEN', message: /unit b/, details: [{ field: '/sender' }] });
  await t.rejects(store.createUnit(ROOT, { id: 'd', name: 'D', sender: '10690001' }), { code: 'SENDER_TAKEN', message: /bootstrap API key tenant dev/ });
  const same = await store.updateUnit(ROOT, 'a-sub', { extension: null, sender: '1069000217' });
  t.equal(same.sender, '1069000217', 'its own code, now as a full sender, is still its own claim');
  await store.createUnit(ROOT, { id: 'other', name: 'Other', sender: '1069000' });
  await t.rejects(store.createUnit(ROOT, { id: 'x', name: 'X', parent: 'other', extension: '21' }), { code: 'SENDER_TAKEN', message: /unit a/, details: [{ field: '/extension' }] }, '1069000 + 21 is A\'s code');
  // Changing a parent's code moves its subtree's codes: a collision below is refused too, naming the other claimant.
  await store.createUnit(ROOT, { id: 'q', name: 'Q', sender: '5551' });
  await t.rejects(store.updateUnit(ROOT, 'city', { sender: '555' }), { code: 'SENDER_TAKEN', message: /unit q/ }, 'a would become 5551');
  t.equal(store.getUnit('city')?.sender, '10690002', 'the refusal wrote nothing');
  t.same(store.senderOwnership().collisions, [], 'nothing collides after the refusals');
  // Units that claim nothing share the nearest claiming ancestor's code; MO to it goes to that ancestor.
  await store.createUnit(ADMIN_A, { id: 'a-quiet', name: 'no code', parent: 'a' });
  t.equal(store.senderOf(store.unitChain('a-quiet') ?? []), '106900021');
  t.equal(ownerOfDestination('106900021', store.senderOwnership().owners)?.tenant, 'a');
  t.equal(ownerOfDestination('106900022', store.senderOwnership().owners)?.tenant, 'b');
  t.equal(ownerOfDestination('10690001', store.senderOwnership().owners)?.tenant, 'dev');
});

t.test('collisions already stored are reported and resolved: the older claim wins', async (t) => {
  let clock = 1000;
  const { env, store } = tempDirectory(t, { now: () => clock++ });
  await store.createUnit(ROOT, { id: 'older', name: 'Older', sender: '10690005' });
  await store.createUnit(ROOT, { id: 'newer', name: 'Newer', sender: '10690006' });
  // A row written by an older build (or two hosts racing): newer claims older's code.
  const units = env.openDB<Record<string, unknown>, string>({ name: 'dir.units', encoding: 'msgpack' });
  await units.put('newer', { ...units.get('newer'), sender: '10690005' });
  await env.openDB<number, string>({ name: 'dir.meta', encoding: 'msgpack' }).put('version', store.version() + 1);
  const o = store.senderOwnership();
  t.same(o.collisions, [{ code: '10690005', owner: 'older', ownerKind: 'unit', losers: ['newer'] }]);
  t.equal(store.senderOf(store.unitChain('newer') ?? []), '10690000', 'the loser does not send under older\'s code');
  t.equal(ownerOfDestination('10690005', o.owners)?.tenant, 'older');
  // Other changes still work; fixing the loser clears the report.
  await store.createUnit(ROOT, { id: 'unrelated', name: 'U', sender: '10690007' });
  await store.updateUnit(ROOT, 'newer', { sender: '10690008' });
  t.same(store.senderOwnership().collisions, []);
});

t.test('a delegated admin\'s groups reach only its subtree; unknown and foreign answer alike', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'city', name: 'City', sender: '10690002' });
  await store.createUnit(ROOT, { id: 'a', name: 'A', parent: 'city', extension: '1' });
  await store.createUnit(ROOT, { id: 'a1', name: 'A1', parent: 'a', extension: '1' });
  await store.createUnit(ROOT, { id: 'b', name: 'B', parent: 'city', extension: '2' });
  await store.putPerson(ROOT, { id: 'pa', name: 'in A', mobile: mobileAt(1), unit: 'a1', roles: ['duty'] }, 'create');
  await store.putPerson(ROOT, { id: 'pb', name: 'in B', mobile: mobileAt(2), unit: 'b', roles: ['duty'] }, 'create');
  await store.putGroup(ROOT, { id: 'gb', name: 'B group', unit: 'b', members: ['pb'] }, 'create');
  const refusal = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      return { code: (e as { code: string }).code, details: (e as { details: unknown }).details };
    }
    return undefined;
  };
  const asA = (input: Parameters<typeof store.putGroup>[1]) => store.putGroup(ADMIN_A, input, 'create');
  // Members by id or number: another subtree's person answers exactly like nobody.
  const foreignId = await refusal(asA({ id: 'ga', name: 'A', unit: 'a', members: ['pb'] }));
  const unknownId = await refusal(asA({ id: 'ga', name: 'A', unit: 'a', members: ['nobody'] }));
  t.same(foreignId, { code: 'VALIDATION', details: [{ field: '/members/0', message: 'no person with id or mobile pb' }] });
  t.same(unknownId, { code: 'VALIDATION', details: [{ field: '/members/0', message: 'no person with id or mobile nobody' }] });
  const foreignMobile = await refusal(asA({ id: 'ga', name: 'A', unit: 'a', members: [mobileAt(2)] }));
  t.same(foreignMobile, { code: 'VALIDATION', details: [{ field: '/members/0', message: `no person with id or mobile ${mobileAt(2)}` }] });
  t.same(await refusal(asA({ id: 'ga', name: 'A', unit: 'a', groups: ['gb'] })), { code: 'VALIDATION', details: [{ field: '/groups/0', message: 'no group gb' }] }, 'nested groups of another subtree: no such group');
  t.same(await refusal(asA({ id: 'ga', name: 'A', unit: 'a', groups: ['nope'] })), { code: 'VALIDATION', details: [{ field: '/groups/0', message: 'no group nope' }] });
  t.same(await refusal(asA({ id: 'ga', name: 'A', unit: 'a', roles: [{ role: 'duty', unit: 'b' }] })), { code: 'VALIDATION', details: [{ field: '/roles/0/unit', message: 'no unit b' }] });
  t.same(await refusal(asA({ id: 'ga', name: 'A', unit: 'a1', groups: [], members: [] }).then(() => store.changeMembers(ADMIN_A, 'ga', { add: ['pb'] }))), { code: 'VALIDATION', details: [{ field: '/add/0', message: 'no person with id or mobile pb' }] });
  // A group owned by a1 takes a1's people; an unscoped role rule means the owner's subtree, not every unit's.
  await store.changeMembers(ADMIN_A, 'ga', { add: ['pa'] });
  await store.putGroup(ROOT, { id: 'roles-a', name: 'duty in A', unit: 'a', roles: [{ role: 'duty' }] }, 'create');
  const expander = new GroupExpander(store, { chunk: 100, maxMembers: 1000 });
  const seen: string[] = [];
  await expander.expand('roles-a', (id) => void seen.push(id));
  t.same(seen, ['pa'], 'the B person with the same role is not reached');
  // Path targets outside the subtree: 404, worded like a missing one.
  for (const [p, missing] of [
    [store.deletePerson(ADMIN_A, 'pb'), store.deletePerson(ADMIN_A, 'nobody')],
    [store.deleteGroup(ADMIN_A, 'gb'), store.deleteGroup(ADMIN_A, 'nope')],
    [store.changeMembers(ADMIN_A, 'gb', { add: ['pa'] }), store.changeMembers(ADMIN_A, 'nope', { add: ['pa'] })],
    [store.updateUnit(ADMIN_A, 'b', { name: 'x' }), store.updateUnit(ADMIN_A, 'zz', { name: 'x' })],
    [store.deleteUnit(ADMIN_A, 'b'), store.deleteUnit(ADMIN_A, 'zz')],
    [store.createKey(ADMIN_A, 'b', {}), store.createKey(ADMIN_A, 'zz', {})],
  ] as const) {
    const [x, y] = [await refusal(p), await refusal(missing)];
    t.equal(x?.code, 'NOT_FOUND');
    t.equal(y?.code, 'NOT_FOUND');
  }
  // A number of another subtree's person is "taken" without naming them.
  const taken = await refusal(store.putPerson(ADMIN_A, { id: 'dup', name: 'Dup', mobile: mobileAt(2), unit: 'a' }, 'create'));
  t.same(taken, { code: 'ALREADY_EXISTS', details: [{ field: '/mobile', message: 'already used by another person (outside your subtree)' }] });
  // The block list: a cursor cannot move a scoped listing into another scope.
  await store.block(ROOT, { scope: 'a', number: mobileAt(7) });
  await store.block(ROOT, { scope: 'b', number: mobileAt(8) });
  await store.block(ROOT, { scope: '*', number: mobileAt(9) });
  t.same(store.listBlocks({ scope: 'b', cursor: `*\u0000`, limit: 10 }).items.map((b) => b.scope), ['b']);
});

t.test('a * group grant means the groups of the unit\'s own subtree, at a root too', async (t) => {
  const { store } = tempDirectory(t);
  const metrics = createMetrics({ defaultMetrics: false });
  const expander = new GroupExpander(store, { chunk: 100, maxMembers: 1000 });
  const env = store.env;
  const policy = new SendPolicy({ store, expander, quotas: new QuotaLedger({ env, utcOffsetMinutes: 480 }), filter: WordFilter.build([]), onMatch: 'reject', metrics, pdaEnabled: false, defaultSender: '10690000', countCacheEntries: 0 });
  const all = grants({ tiers: ['*'], groups: ['*'], direct: true });
  await store.createUnit(ROOT, { id: 'city', name: 'City', grants: all });
  await store.createUnit(ROOT, { id: 'other-city', name: 'Other', grants: all });
  await store.createUnit(ROOT, { id: 'a', name: 'A', parent: 'city', grants: all });
  await store.createUnit(ROOT, { id: 'b', name: 'B', parent: 'city', grants: all });
  for (const [g, unit] of [['g-city', 'city'], ['g-a', 'a'], ['g-b', 'b'], ['g-other', 'other-city']] as const) await store.putGroup(ROOT, { id: g, name: g, unit }, 'create');
  // A delegated admin of A names B's group in its child's grants: A's * does not reach it.
  await store.createUnit(ADMIN_A, { id: 'a-child', name: 'A child', parent: 'a', grants: grants({ tiers: ['*'], groups: ['g-b', 'g-a'], direct: true }) });
  const admits = (unit: string, group: string): boolean => {
    try {
      policy.admit({ tenant: unit, unit, tiers: null, sender: '' }, { tier: 'routine', group, channel: 'auto' }, '');
      return true;
    } catch (e) {
      if ((e as { code?: string }).code !== 'FORBIDDEN') throw e;
      return false;
    }
  };
  const table: Array<[string, string, boolean]> = [
    ['city', 'g-city', true], ['city', 'g-a', true], ['city', 'g-b', true], ['city', 'g-other', false],
    ['a', 'g-a', true], ['a', 'g-b', false], ['a', 'g-city', false], ['a', 'g-other', false],
    ['a-child', 'g-a', true], ['a-child', 'g-b', false], ['other-city', 'g-city', false], ['other-city', 'g-other', true],
    ['a', 'no-such-group', false],
  ];
  for (const [unit, group, want] of table) t.equal(admits(unit, group), want, `${unit} → ${group}`);
});

t.test('a deleted unit\'s id is tombstoned: never reused, so its archived data reaches no new unit', async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'a', name: 'A' });
  await store.createUnit(ROOT, { id: 'a1', name: 'A1', parent: 'a', extension: '5' });
  await store.deleteUnit(ADMIN_A, 'a1');
  t.equal(store.getUnit('a1'), undefined);
  t.match(store.getTombstone('a1'), { id: 'a1', name: 'A1', parent: 'a', deletedBy: 'admin-a' });
  await t.rejects(store.createUnit(ADMIN_A, { id: 'a1', name: 'again' }), { code: 'ALREADY_EXISTS', details: [{ field: '/id', message: 'used by a deleted unit' }] }, 'not by the same admin');
  await t.rejects(store.createUnit(ROOT, { id: 'a1', name: 'elsewhere' }), { code: 'ALREADY_EXISTS' }, 'nor anywhere else');
  t.same(store.listTombstones({ limit: 10 }).items.map((x) => x.id), ['a1']);
  // Its sender code is free again (the code, unlike the id, carries no data).
  await store.createUnit(ROOT, { id: 'a2', name: 'A2', parent: 'a', extension: '5' });
});
