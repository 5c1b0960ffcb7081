import t from 'tap';
import fc from 'fast-check';
import { setBounded, setNewest } from '../../src/core/bounded-map.js';

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
