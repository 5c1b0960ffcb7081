/**
 * Authorization holes found by probing as a delegated admin (issue 17),
 * each reproduced against the DirectoryStore on a real LMDB environment.
 */
import t from 'tap';
import { ROOT, tempDirectory } from '../support/directory.js';
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
