/**
 * Sender-code ownership (src/directory/senders.ts): claims, collisions
 * resolved by age, losers own nothing and never send under another's code.
 */
import t from 'tap';
import fc from 'fast-check';
import { claimedCode, ownedSender, resolveSenderOwnership, type SenderClaim } from '../../src/directory/senders.js';
import { NO_GRANTS, type Unit } from '../../src/directory/types.js';
import { ownerOfDestination } from '../../src/core/mo.js';

function unit(id: string, extra: Partial<Unit> = {}): Unit {
  return { id, name: id, grants: NO_GRANTS, disabled: false, createdAt: 0, updatedAt: 0, ...extra };
}

t.test('a unit claims its own sender, or parent code + extension; otherwise nothing', async (t) => {
  const city = unit('city', { sender: '10690002' });
  const bureau = unit('bureau', { parent: 'city', extension: '11' });
  const section = unit('section', { parent: 'bureau' });
  t.equal(claimedCode([city], '10690000'), '10690002');
  t.equal(claimedCode([bureau, city], '10690000'), '1069000211');
  t.equal(claimedCode([section, bureau, city], '10690000'), undefined, 'claims nothing: shares the nearest claiming ancestor');
  const o = resolveSenderOwnership([
    { code: '10690002', owner: 'city', kind: 'unit', createdAt: 1 },
    { code: '1069000211', owner: 'bureau', kind: 'unit', createdAt: 2 },
  ], [{ tenant: 'dev', sender: '10690001' }], '10690000');
  t.equal(ownedSender([section, bureau, city], o, '10690000'), '1069000211', 'section sends under its bureau\'s code');
  t.same(ownerOfDestination('1069000211', o.owners), { tenant: 'bureau', sender: '1069000211', suffix: '' }, 'and MO to it goes to the bureau');
  t.same(ownerOfDestination('10690000', o.owners)?.tenant, 'dev', 'the default source: the first bootstrap tenant');
});

t.test('a collision: the older claim wins, bootstrap keys first; the loser owns and sends nothing of it', async (t) => {
  const b = unit('b', { sender: '10690005', createdAt: 10 });
  const thief = unit('thief', { sender: '10690005', createdAt: 20 });
  const devTwin = unit('devtwin', { sender: '10690001', createdAt: 1 });
  const o = resolveSenderOwnership([
    { code: '10690005', owner: 'thief', kind: 'unit', createdAt: 20 },
    { code: '10690005', owner: 'b', kind: 'unit', createdAt: 10 },
    { code: '10690001', owner: 'devtwin', kind: 'unit', createdAt: 1 },
  ], [{ tenant: 'dev', sender: '10690001' }], '10690000');
  t.equal(o.owners.get('10690005'), 'b');
  t.equal(o.owners.get('10690001'), 'dev', 'a bootstrap key is older than any unit');
  t.same([...o.losers].sort(), ['devtwin', 'thief']);
  t.same(o.collisions.map((c) => [c.code, c.owner, c.ownerKind, c.losers]).sort(), [['10690001', 'dev', 'bootstrap', ['devtwin']], ['10690005', 'b', 'unit', ['thief']]]);
  t.equal(ownedSender([thief], o, '10690000'), '10690000', 'the loser falls back to the default source, not b\'s code');
  t.equal(ownedSender([b], o, '10690000'), '10690005');
  t.equal(ownedSender([devTwin], o, '10690000'), '10690000');
});

// Reference model: a code belongs to the claim that is least by (bootstrap first, config order; then createdAt, id).
const claimArb = fc.record({
  code: fc.constantFrom('1', '10', '100', '1069', '10690001', '10690002'),
  owner: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
  createdAt: fc.integer({ min: 0, max: 5 }),
});

t.test('property: ownership is the oldest claim of each code, whatever the input order', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(claimArb, { maxLength: 12 }), fc.array(fc.record({ tenant: fc.constantFrom('dev', 'ops'), sender: fc.option(fc.constantFrom('10', '10690001'), { nil: undefined }) }), { maxLength: 3 }), fc.integer(), (raw, bootstrap, seed) => {
    // One claim per unit (a unit claims one code).
    const byOwner = new Map<string, SenderClaim>();
    for (const c of raw) if (!byOwner.has(c.owner)) byOwner.set(c.owner, { ...c, kind: 'unit' });
    const claims = [...byOwner.values()];
    const boot = bootstrap.map((b) => (b.sender === undefined ? { tenant: b.tenant } : { tenant: b.tenant, sender: b.sender }));
    const o = resolveSenderOwnership(claims, boot, '10690000');
    // Same answer for a shuffled input.
    const shuffled = [...claims].sort((x, y) => ((x.owner.charCodeAt(0) * 31 + seed) % 7) - ((y.owner.charCodeAt(0) * 31 + seed) % 7));
    const o2 = resolveSenderOwnership(shuffled, boot, '10690000');
    if (JSON.stringify([...o.owners].sort()) !== JSON.stringify([...o2.owners].sort())) return false;
    const codes = new Set([...claims.map((c) => c.code), ...boot.flatMap((b) => (b.sender ? [b.sender] : []))]);
    for (const code of codes) {
      const bootOwner = boot.find((b) => b.sender === code);
      const oldest = claims.filter((c) => c.code === code).sort((x, y) => x.createdAt - y.createdAt || (x.owner < y.owner ? -1 : 1))[0];
      const expected = bootOwner?.tenant ?? oldest?.owner;
      if (o.owners.get(code) !== expected) return false;
    }
    // Every unit that does not own its code is a loser, and only those.
    for (const c of claims) if ((o.owners.get(c.code) !== c.owner) !== o.losers.has(c.owner)) return false;
    return true;
  }), { numRuns: 300 }), 'checked 300 random claim sets');
});
