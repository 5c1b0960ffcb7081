/**
 * entryCount (src/storage/entry-count.ts) reads a database's row count from
 * its B-tree header instead of walking it: it must equal lmdb-js's
 * walking `getCount()` after any mix of committed writes and deletes, for
 * the key shapes the gauges count (strings, numbers, msgpack arrays), in
 * named databases that share one environment.
 */
import t from 'tap';
import fc from 'fast-check';
import { entryCount } from '../../src/storage/entry-count.js';
import { tempEnv } from '../support/temp-env.js';

t.test('property: the header count equals a walk', async (t) => {
  const env = tempEnv(t);
  const dbs = [
    env.openDB<string, string>({ name: 'strings' }),
    env.openDB<string, number>({ name: 'numbers' }),
    env.openDB<string, [number, string]>({ name: 'arrays', encoding: 'msgpack' }),
  ] as const;
  const keyOf = (db: number, k: number): string | number | [number, string] => (db === 0 ? `k${k}` : db === 1 ? k : [k % 7, `k${k}`]);
  const op = fc.record({ db: fc.integer({ min: 0, max: 2 }), key: fc.integer({ min: 0, max: 500 }), remove: fc.boolean() });
  await fc.assert(fc.asyncProperty(fc.array(fc.array(op, { maxLength: 60 }), { minLength: 1, maxLength: 8 }), async (batches) => {
    for (const batch of batches) {
      await env.transaction(() => {
        for (const o of batch) {
          const db = dbs[o.db] as unknown as { putSync(k: unknown, v: string): void; removeSync(k: unknown): void };
          if (o.remove) db.removeSync(keyOf(o.db, o.key));
          else db.putSync(keyOf(o.db, o.key), 'v');
        }
      });
      for (const db of dbs) if (entryCount(db) !== db.getCount()) return false;
    }
    return true;
  }), { numRuns: 80, seed: 2026_12_07 });
  t.pass('equal after every committed batch');
});
