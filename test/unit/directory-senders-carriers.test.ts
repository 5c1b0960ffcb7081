/**
 * Sender-code ownership per carrier account (src/directory/senders.ts with
 * the on-air forms of src/core/access-code.ts): two claims written alike on
 * one account collide (older wins), codes that differ on every account do
 * not, and an MO is routed by the code it arrives on and the account it
 * arrives through. Examples, then properties against a brute-force model.
 */
import t from 'tap';
import fc from 'fast-check';
import { airFormOf, type AirForm } from '../../src/core/access-code.js';
import { canonicalDestination, resolveSenderOwnership, type SenderClaim } from '../../src/directory/senders.js';
import { ownerOfDestination } from '../../src/core/mo.js';

const unicom = airFormOf({ name: 'unicom', accessCode: { from: '10690', to: '10655' } }) as AirForm;
const cmpp = airFormOf({ name: 'telecom-cmpp', accessCode: '10658' }) as AirForm;
const claim = (code: string, owner: string, createdAt: number): SenderClaim => ({ code, owner, kind: 'unit', createdAt });

t.test('on-air forms: SMPP rewrite, CMPP access code in front, none without accessCode', async (t) => {
  t.equal(unicom.air('1069000111'), '1065500111');
  t.equal(unicom.air('1065600111'), '1065600111', 'a code outside the rewritten prefix goes as it is');
  t.equal(cmpp.air('11'), '1065811');
  t.equal(cmpp.air('1065811'), '1065811', 'already under the access code: kept');
  t.equal(airFormOf({ name: 'plain' }), undefined);
});

t.test('a raw code and another written alike on one account collide; the older wins', async (t) => {
  for (const [x, y, winner, loser] of [[1, 2, 'x', 'y'], [2, 1, 'y', 'x']] as const) {
    const o = resolveSenderOwnership([claim('1069000111', 'x', x), claim('1065500111', 'y', y)], [], '10690000', [unicom]);
    t.same([...o.losers], [loser], `${winner} is older`);
    t.equal(o.owners.get(winner === 'x' ? '1069000111' : '1065500111'), winner);
    t.equal(o.owners.get(loser === 'x' ? '1069000111' : '1065500111'), undefined, 'the loser owns nothing');
    t.match(o.collisions, [{ owner: winner, losers: [loser], account: 'unicom', onAir: '1065500111' }]);
  }
  // Without the account that writes them alike there is nothing to collide.
  t.same(resolveSenderOwnership([claim('1069000111', 'x', 1), claim('1065500111', 'y', 2)], [], '10690000', []).collisions, []);
  // CMPP: 11 is written 1065811, as is the full code 1065811.
  const c = resolveSenderOwnership([claim('11', 'a', 1), claim('1065811', 'b', 2)], [], '10690000', [cmpp]);
  t.same([...c.losers], ['b']);
});

t.test('the same extension under two carriers\' prefixes does not collide; MO goes by code and account', async (t) => {
  const o = resolveSenderOwnership([claim('10690001', 'city', 0), claim('1069000177', 'cm', 1), claim('1065600177', 'tel', 2)], [], '10690000', [unicom]);
  t.same(o.collisions, []);
  const via = (form: AirForm | undefined, d: string): string | undefined => ownerOfDestination(form === undefined ? d : (canonicalDestination(d, o.owners, form) ?? d), o.owners)?.tenant;
  t.equal(via(unicom, '1065500177'), 'cm', 'unicom writes cm\'s code 1065500177: the reply is cm\'s');
  t.equal(via(undefined, '1069000177'), 'cm', 'through an account without rewrite: as it is');
  t.equal(via(unicom, '1065600177'), 'tel', 'tel\'s raw code through unicom: tel');
  t.equal(via(unicom, '1065500199'), 'city', 'an unclaimed extension: the longest owned prefix as written on the account');
  t.equal(canonicalDestination('1065500199', o.owners, unicom), '1069000199');
  t.equal(canonicalDestination('99999', o.owners, unicom), undefined);
});

t.test('CMPP: an MO is routed by its Dest_Id as it arrived, so a raw code under the access code reaches its owner', async (t) => {
  // The account strips its access code 10658 from Dest_Id; 1065800177 arrives, and "00177" would match nobody (or the wrong unit).
  const o = resolveSenderOwnership([claim('1065800177', 'raw', 1), claim('001', 'short', 2)], [], '10690000', [cmpp]);
  t.same(o.collisions, [], '001 is written 10658001: no collision');
  t.equal(ownerOfDestination(canonicalDestination('1065800177', o.owners, cmpp) ?? '', o.owners)?.tenant, 'raw');
  t.equal(ownerOfDestination(canonicalDestination('1065800199', o.owners, cmpp) ?? '', o.owners)?.tenant, 'short', 'written 10658001 + 99: short\'s code + 99');
  t.equal(canonicalDestination('1065800199', o.owners, cmpp), '00199');
});

// ---- properties against a brute-force model
const codeArb = fc.constantFrom('11', '1065811', '10690001', '1069000111', '1065500111', '1065500', '10655001', '1069000');
const formArb = fc.constantFrom<AirForm[]>([], [unicom], [cmpp], [unicom, cmpp]);

t.test('property: on every account each on-air form has one owner; every claim owns its code or lost; order does not matter', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.uniqueArray(fc.record({ code: codeArb, owner: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), createdAt: fc.integer({ min: 0, max: 4 }) }), { selector: (c) => c.owner, maxLength: 6 }), formArb, fc.integer(), (raw, forms, seed) => {
    const claims = raw.map((c) => claim(c.code, c.owner, c.createdAt));
    const o = resolveSenderOwnership(claims, [], '10690000', forms);
    for (const f of forms) {
      const seen = new Map<string, string>();
      for (const [code, owner] of o.owners) {
        const other = seen.get(f.air(code));
        if (other !== undefined && other !== owner) return false;
        seen.set(f.air(code), owner);
      }
    }
    for (const c of claims) if (o.owners.get(c.code) !== c.owner && !o.losers.has(c.owner)) return false;
    for (const l of o.losers) if ([...o.owners.values()].includes(l)) return false;
    // The oldest claim (by createdAt, then id) always owns its code.
    const oldest = [...claims].sort((x, y) => x.createdAt - y.createdAt || (x.owner < y.owner ? -1 : 1))[0];
    if (oldest !== undefined && o.owners.get(oldest.code) !== oldest.owner) return false;
    // Any input order gives the same result.
    const shuffled = [...claims].sort((x, y) => ((x.owner.charCodeAt(0) * 31 + seed) % 7) - ((y.owner.charCodeAt(0) * 31 + seed) % 7));
    const again = resolveSenderOwnership(shuffled, [], '10690000', forms);
    return JSON.stringify([...again.owners].sort()) === JSON.stringify([...o.owners].sort()) && JSON.stringify([...again.losers].sort()) === JSON.stringify([...o.losers].sort());
  }), { numRuns: 500, seed: 17 }), '500 runs: one owner per on-air form per account, losers own nothing, the oldest always owns, order-independent');
});

t.test('property: an MO through an account reaches the owner of the code whose on-air form is the longest prefix of its destination', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.uniqueArray(fc.record({ code: codeArb, owner: fc.constantFrom('a', 'b', 'c', 'd'), createdAt: fc.integer({ min: 0, max: 4 }) }), { selector: (c) => c.owner, maxLength: 4 }), fc.constantFrom(unicom, cmpp), codeArb, fc.stringMatching(/^[0-9]{0,3}$/), (raw, form, base, suffix) => {
    const o = resolveSenderOwnership(raw.map((c) => claim(c.code, c.owner, c.createdAt)), [], '10690000', [form]);
    const destination = form.air(base) + suffix;
    // Model: brute force over owned codes.
    let best: { code: string; len: number } | undefined;
    for (const code of o.owners.keys()) {
      const a = form.air(code);
      if (destination.startsWith(a) && (best === undefined || a.length > best.len)) best = { code, len: a.length };
    }
    const got = canonicalDestination(destination, o.owners, form);
    if (best === undefined) return got === undefined;
    return got === best.code + destination.slice(best.len) && o.owners.get(best.code) !== undefined;
  }), { numRuns: 1000, seed: 17 }), '1,000 runs: canonicalDestination equals the brute-force model');
});
