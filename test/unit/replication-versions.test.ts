/**
 * Row versions of the directory/template replication (last writer wins per
 * row): the order is total, newer by time, ties broken by host id, and the
 * same on every host whichever order versions arrive in.
 */
import t from 'tap';
import fc from 'fast-check';
import { newerVersion, versionKey, type RowVersion } from '../../src/replication/change-log.js';

t.test('newer by time, then by host; never newer than itself', async (t) => {
  t.ok(newerVersion([2, 'a'], [1, 'z']), 'later time wins whatever the host');
  t.notOk(newerVersion([1, 'z'], [2, 'a']));
  t.ok(newerVersion([5, 'host-b'], [5, 'host-a']), 'same time: the greater host id');
  t.notOk(newerVersion([5, 'host-a'], [5, 'host-b']));
  t.notOk(newerVersion([5, 'host-a'], [5, 'host-a']), 'a repeat is not newer (applied once)');
  t.ok(newerVersion([1, 'a'], undefined), 'a row with no version takes any');
});

t.test('applying versions in any order ends on the same one (property)', async (t) => {
  const version = fc.tuple(fc.integer({ min: 0, max: 50 }), fc.constantFrom('a', 'b', 'c')) as fc.Arbitrary<RowVersion>;
  t.doesNotThrow(() => fc.assert(
    fc.property(fc.array(version, { minLength: 1, maxLength: 12 }), fc.integer(), (versions, seed) => {
      const apply = (order: RowVersion[]): RowVersion | undefined => {
        let have: RowVersion | undefined;
        for (const v of order) if (newerVersion(v, have)) have = v;
        return have;
      };
      const shuffled = [...versions];
      let x = seed >>> 0;
      for (let i = shuffled.length - 1; i > 0; i--) {
        x = (x * 1103515245 + 12345) >>> 0;
        const j = x % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const a = apply(versions);
      const b = apply(shuffled);
      return a !== undefined && b !== undefined && a[0] === b[0] && a[1] === b[1];
    }),
    { numRuns: 500 },
  ), '500 random histories converge');
});

t.test('version keys: the database, then the row key parts', async (t) => {
  t.same(versionKey('dir.units', 'city'), ['dir.units', 'city']);
  t.same(versionKey('dir.members', ['duty', 'p1']), ['dir.members', 'duty', 'p1']);
  t.same(versionKey('office.templates', ['city', 'meeting']), ['office.templates', 'city', 'meeting']);
});
