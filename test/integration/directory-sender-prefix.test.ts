/**
 * A delegated admin may not give a unit of its subtree a sender code that
 * extends a code owned outside it (outside review). An MO goes to the
 * longest owned prefix of its destination (a phone may append digits), so
 * with the city's code 10690, unit A claiming nothing (it sends under the
 * city's code) and unit B claiming 106902, A's admin could give A1 the
 * extension 23 — code 1069023 — and take B's replies to 106902 + "3…".
 * Only identical codes were refused. Now such a write is 409 SENDER_TAKEN
 * and nothing is written; extending codes of the claimant's own ancestors
 * or of its own subtree stays the layout, and root (who lays out the
 * numbering) is not held to it.
 */
import t, { type Test } from 'tap';
import { GatewayError } from '../../src/core/errors.js';
import { ownerOfDestination } from '../../src/core/mo.js';
import type { Actor } from '../../src/directory/types.js';
import { ROOT, tempDirectory } from '../support/directory.js';

const ADMIN_A: Actor = { name: 'admin-a', unit: 'zz-a' };

async function refused(t: Test, p: Promise<unknown>, code: string): Promise<GatewayError | undefined> {
  try {
    await p;
  } catch (e) {
    if (e instanceof GatewayError) {
      t.equal(e.code, code);
      return e;
    }
    throw e;
  }
  t.fail(`expected ${code}`);
  return undefined;
}

t.test("a delegated admin's code may not extend a code owned outside its subtree", async (t) => {
  const { store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'zz-city', name: 'City', sender: '10690' });
  await store.createUnit(ROOT, { id: 'zz-a', name: 'A', parent: 'zz-city' });
  await store.createUnit(ROOT, { id: 'zz-bee', name: 'B', parent: 'zz-city', extension: '2' });

  // Create: 10690 + 23 = 1069023 extends B's 106902.
  const e = await refused(t, store.createUnit(ADMIN_A, { id: 'zz-a1', name: 'A1', parent: 'zz-a', extension: '23' }), 'SENDER_TAKEN');
  t.match(e?.message ?? '', /1069023 would take the replies to sender code 106902/);
  t.notMatch(e?.message ?? '', /zz-bee/, 'the outside owner is not named');
  t.equal(store.getUnit('zz-a1'), undefined, 'nothing written');

  // A code of its own, and codes below it that extend it: the layout.
  await store.createUnit(ADMIN_A, { id: 'zz-a1', name: 'A1', parent: 'zz-a', extension: '5' });
  await store.createUnit(ADMIN_A, { id: 'zz-a1x', name: 'A1x', parent: 'zz-a1', extension: '1' });
  t.equal(store.senderOwnership().owners.get('1069051'), 'zz-a1x');

  // Update: A1 from 5 to 27 (and its child with it, 1069271) is refused whole.
  await refused(t, store.updateUnit(ADMIN_A, 'zz-a1', { extension: '27' }), 'SENDER_TAKEN');
  t.equal(store.getUnit('zz-a1')?.extension, '5', 'unchanged');
  t.equal(store.senderOwnership().owners.get('106905'), 'zz-a1');

  // B's replies with more digits still reach B.
  t.equal(ownerOfDestination('10690237', store.senderOwnership().owners)?.tenant, 'zz-bee');

  // Root lays out the numbering and may overlap codes on purpose.
  await store.createUnit(ROOT, { id: 'zz-a2', name: 'A2', parent: 'zz-a', extension: '24' });
  t.equal(store.senderOwnership().owners.get('1069024'), 'zz-a2');
  // An overlap root made does not block the delegated admin's unrelated writes on that unit.
  await store.updateUnit(ADMIN_A, 'zz-a2', { name: 'A2 renamed' });
  t.equal(store.getUnit('zz-a2')?.name, 'A2 renamed');
});
