/**
 * What a delegated admin's refusals say about rows outside its subtree
 * (outside review): a refusal may say "no" but must not tell where another
 * subtree's rows live, whether an id there was deleted (and when), or which
 * unit ids exist — the answer for a unit outside is the answer for one that
 * does not exist. Reproduced against the DirectoryStore on a real LMDB.
 *
 *   zz-city ─┬─ zz-a ── zz-a1        (admin of zz-a)
 *            └─ zz-bee ── zz-bee1
 */
import t from 'tap';
import { GatewayError } from '../../src/core/errors.js';
import { importGroups, importPeople } from '../../src/directory/csv-import.js';
import type { Actor } from '../../src/directory/types.js';
import { mobileAt, ROOT, tempDirectory } from '../support/directory.js';

const ADMIN_A: Actor = { name: 'admin-a', unit: 'zz-a' };

async function tree(t: Parameters<typeof tempDirectory>[0]) {
  const d = tempDirectory(t);
  const { store } = d;
  await store.createUnit(ROOT, { id: 'zz-city', name: 'City', sender: '10690' });
  await store.createUnit(ROOT, { id: 'zz-a', name: 'A', parent: 'zz-city', extension: '1' });
  await store.createUnit(ROOT, { id: 'zz-a1', name: 'A1', parent: 'zz-a', extension: '1' });
  await store.createUnit(ROOT, { id: 'zz-bee', name: 'B', parent: 'zz-city', extension: '2' });
  await store.createUnit(ROOT, { id: 'zz-bee1', name: 'B1', parent: 'zz-bee', extension: '1' });
  await store.putPerson(ROOT, { id: 'p-bee', name: 'PB', mobile: mobileAt(1), unit: 'zz-bee1' }, 'create');
  await store.putGroup(ROOT, { id: 'g-bee', name: 'GB', unit: 'zz-bee1' }, 'create');
  return d;
}

/** The refusal a call ends in (it must be one). */
async function refusal(t: { fail(m: string): void }, p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof GatewayError) return e;
    throw e;
  }
  t.fail('expected a refusal');
  throw new Error('not refused');
}

const said = (e: GatewayError): string => JSON.stringify({ message: e.message, details: e.details });

t.test('moving a sub-unit: a parent outside and one that does not exist answer alike', async (t) => {
  const { store } = await tree(t);
  const outside = await refusal(t, store.updateUnit(ADMIN_A, 'zz-a1', { parent: 'zz-bee1' }));
  const missing = await refusal(t, store.updateUnit(ADMIN_A, 'zz-a1', { parent: 'zz-none' }));
  t.equal(outside.code, 'FORBIDDEN');
  t.equal(missing.code, outside.code, 'no oracle of which unit ids exist');
  t.equal(missing.details?.[0]?.field, outside.details?.[0]?.field);
  t.equal(store.getUnit('zz-a1')?.parent, 'zz-a', 'nothing moved');
  // Inside, the move still works (and a missing parent inside is still a 422 to a global admin).
  await store.createUnit(ADMIN_A, { id: 'zz-a2', name: 'A2', parent: 'zz-a' });
  t.equal((await store.updateUnit(ADMIN_A, 'zz-a1', { parent: 'zz-a2' })).parent, 'zz-a2');
  t.equal((await refusal(t, store.updateUnit(ROOT, 'zz-a1', { parent: 'zz-none' }))).code, 'VALIDATION');
});

t.test("another subtree's deleted unit: its id is refused like a live one, with no date", async (t) => {
  const { store } = await tree(t);
  await store.createUnit(ROOT, { id: 'zz-bee2', name: 'B2', parent: 'zz-bee' });
  await store.deleteUnit(ROOT, 'zz-bee2');
  const dead = await refusal(t, store.createUnit(ADMIN_A, { id: 'zz-bee2', name: 'x', parent: 'zz-a' }));
  const live = await refusal(t, store.createUnit(ADMIN_A, { id: 'zz-bee1', name: 'x', parent: 'zz-a' }));
  t.equal(dead.code, 'ALREADY_EXISTS');
  t.same(said(dead), said(live).replaceAll('zz-bee1', 'zz-bee2'), 'worded as for a live id');
  t.notMatch(said(dead), /deleted|20\d\d-/, 'neither that it was deleted nor when');
  t.equal(store.getUnit('zz-bee2'), undefined, 'nothing created');
  // Its own former sub-unit: the admin deleted it, so it is told so (and a global admin always is).
  await store.createUnit(ADMIN_A, { id: 'zz-a9', name: 'A9', parent: 'zz-a1' });
  await store.deleteUnit(ADMIN_A, 'zz-a9');
  t.match((await refusal(t, store.createUnit(ADMIN_A, { id: 'zz-a9', name: 'x', parent: 'zz-a' }))).details, [{ field: '/id', message: 'used by a deleted unit' }]);
  t.match((await refusal(t, store.createUnit(ROOT, { id: 'zz-bee2', name: 'x' }))).details, [{ field: '/id', message: 'used by a deleted unit' }]);
});

t.test('overwriting a person or group held outside is refused without naming the unit that holds it', async (t) => {
  const { store } = await tree(t);
  const checks: Array<[string, Promise<unknown>]> = [
    ['PUT person', store.putPerson(ADMIN_A, { id: 'p-bee', name: 'x', mobile: mobileAt(2), unit: 'zz-a' }, 'upsert')],
    ['PUT group', store.putGroup(ADMIN_A, { id: 'g-bee', name: 'x', unit: 'zz-a' }, 'upsert')],
    ['people import by id', importPeople(store, ADMIN_A, Buffer.from(`id,name,mobile,unit\np-bee,x,${mobileAt(3)},zz-a\n`), 'utf-8', { allowInternational: false })],
    ['people import by number', importPeople(store, ADMIN_A, Buffer.from(`name,mobile,unit\nx,${mobileAt(1)},zz-a\n`), 'utf-8', { allowInternational: false })],
    ['groups import', importGroups(store, ADMIN_A, Buffer.from('group,name,unit,kind,member\ng-bee,x,zz-a,,\n'), 'utf-8')],
  ];
  for (const [what, p] of checks) {
    const e = await refusal(t, p);
    t.ok(e.code === 'FORBIDDEN' || e.code === 'IMPORT_INVALID', `${what}: refused (${e.code})`);
    t.notMatch(said(e), /zz-bee/, `${what}: the holder is not named`);
    if (what === 'people import by number') t.notMatch(said(e), /p-bee/, `${what}: nor the person id behind the number`);
  }
  t.match(store.getPerson('p-bee'), { name: 'PB', unit: 'zz-bee1', mobile: `86${mobileAt(1)}` }, 'the person is unchanged');
  t.match(store.getGroup('g-bee'), { name: 'GB', unit: 'zz-bee1' }, 'the group is unchanged');
  // Inside its subtree the same writes still work.
  await store.putPerson(ADMIN_A, { id: 'p-a', name: 'PA', mobile: mobileAt(4), unit: 'zz-a1' }, 'create');
  t.equal((await store.putPerson(ADMIN_A, { id: 'p-a', name: 'PA2', mobile: mobileAt(4), unit: 'zz-a' }, 'upsert')).unit, 'zz-a');
});
