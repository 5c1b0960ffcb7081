import t from 'tap';
import fc from 'fast-check';
import { insertionLogLength, setBounded, setNewest } from '../../src/core/bounded-map.js';

t.test('a new key at the bound evicts the oldest; a present key keeps its place', async (t) => {
  const m = new Map<string, number>();
  setBounded(m, 'a', 1, 2);
  setBounded(m, 'b', 2, 2);
  setBounded(m, 'a', 3, 2);
  t.same([...m], [['a', 3], ['b', 2]], 'replacing a present key evicts nothing and keeps its place');
  setBounded(m, 'c', 4, 2);
  t.same([...m], [['b', 2], ['c', 4]], 'the oldest key (a) went first');
  setBounded(m, 'd', 5, 1);
  t.same([...m], [['c', 4], ['d', 5]], 'one eviction per insert: a map above a lowered bound shrinks by one, not to it');
  setNewest(m, 'c', 6, 2);
  t.same([...m], [['d', 5], ['c', 6]], 'setNewest moves a present key to the newest end');
});

/** The reference: entries as an array in insertion order, the same step written the plain way. */
type Entries = [number, number][];
const models: { name: string; set: typeof setBounded; step: (model: Entries, key: number, value: number, bound: number) => Entries }[] = [
  {
    name: 'setBounded',
    set: setBounded,
    step: (model, key, value, bound) => {
      const at = model.findIndex(([k]) => k === key);
      if (at >= 0) return model.map((e, i) => (i === at ? [key, value] : e));
      return [...(model.length >= bound ? model.slice(1) : model), [key, value]];
    },
  },
  {
    name: 'setNewest',
    set: setNewest,
    step: (model, key, value, bound) => {
      const rest = model.filter(([k]) => k !== key);
      return [...(rest.length >= bound ? rest.slice(1) : rest), [key, value]];
    },
  },
];

for (const { name, set, step } of models) {
  t.test(`${name} against a reference model: random keys under random bounds`, async (t) => {
    const op = fc.record({ key: fc.integer({ min: 0, max: 12 }), value: fc.integer() });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 80 }), (bound, ops) => {
        const m = new Map<number, number>();
        let model: Entries = [];
        for (const { key, value } of ops) {
          set(m, key, value, bound);
          model = step(model, key, value, bound);
          if (m.size > bound) return false;
        }
        t.same([...m], model);
        return true;
      }),
      { numRuns: 300 },
    );
  });
}

/**
 * The same models with the map's owner deleting keys and clearing the map between inserts
 * (the receipt store drops a finished message's row): the order kept beside the map must
 * follow, including across its rebuilds (bounds up to 64, up to 600 steps).
 */
type Step = { kind: 'set'; key: number; value: number } | { kind: 'delete'; key: number } | { kind: 'clear' };
for (const { name, set, step } of models) {
  t.test(`${name} against the reference model, the owner deleting and clearing too`, async (t) => {
    const stepArb: fc.Arbitrary<Step> = fc.oneof(
      { weight: 8, arbitrary: fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 150 }), value: fc.integer() }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 150 }) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.array(stepArb, { maxLength: 600 }), (bound, steps) => {
        const m = new Map<number, number>();
        let model: Entries = [];
        for (const s of steps) {
          if (s.kind === 'set') {
            set(m, s.key, s.value, bound);
            model = step(model, s.key, s.value, bound);
          } else if (s.kind === 'delete') {
            m.delete(s.key);
            model = model.filter(([k]) => k !== s.key);
          } else {
            m.clear();
            model = [];
          }
          if (m.size > bound) return false;
        }
        t.same([...m], model);
        return true;
      }),
      { numRuns: 300 },
    );
  });
}

t.test('a key the owner set on the map directly stays out of the log: logged keys go first, then the map\'s own order', async (t) => {
  const m = new Map<string, number>([['x', 0], ['y', 0]]);
  setBounded(m, 'a', 1, 3);
  m.set('z', 0);
  setBounded(m, 'b', 2, 3);
  setBounded(m, 'c', 3, 3);
  t.same([...m.keys()], ['a', 'z', 'b', 'c'], 'one eviction per insert, oldest logged first (x, y were in the map when its log began)');
  setBounded(m, 'd', 4, 3);
  setBounded(m, 'e', 5, 3);
  setBounded(m, 'f', 6, 3);
  t.same([...m.keys()], ['z', 'd', 'e', 'f'], 'z, never logged, outlives the logged keys');
  m.delete('e');
  m.delete('f');
  setBounded(m, 'g', 7, 1);
  t.same([...m.keys()], ['z', 'g'], 'd, the oldest logged key, goes');
  m.delete('g');
  setBounded(m, 'h', 8, 1);
  t.same([...m.keys()], ['h'], 'with every logged key gone, the map\'s own oldest (z) is evicted');
});

t.test('eviction at the bound does not walk the map: 200,000 inserts at a bound of 65,536 stay within a bound-independent budget', async (t) => {
  // Before: a Map's oldest key was found by keys().next(), which walks every deleted slot V8 keeps
  // at the front until a rebuild — about half the bound per insert (15 µs each at 65,536).
  // Counting work instead of timing it: the log reads at most a constant number of entries per insert.
  const m = new Map<number, number>();
  for (let i = 0; i < 200_000; i++) setBounded(m, i, i, 65_536);
  t.equal(m.size, 65_536);
  t.ok(m.has(199_999) && m.has(200_000 - 65_536) && !m.has(200_000 - 65_537), 'exactly the newest 65,536 kept');
  t.ok(insertionLogLength(m) <= 2 * 65_536 + 64, 'the log beside the map stays within twice its bound');
  // The receipt store's pattern: every row deleted soon after its insert, the map never full.
  const churn = new Map<number, number>();
  for (let i = 0; i < 100_000; i++) {
    setBounded(churn, i, i, 1_000);
    if (i >= 10) churn.delete(i - 10);
  }
  t.equal(churn.size, 10);
  t.ok(insertionLogLength(churn) <= 2 * 1_000 + 64, `inserts and deletes without evictions keep the log bounded too (${insertionLogLength(churn)})`);
});
