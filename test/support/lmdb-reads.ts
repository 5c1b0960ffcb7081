/**
 * Read-counting view of an LMDB environment, for tests that prove a cost
 * without timing anything ("opening reads a fixed handful of rows however
 * large the backlog grows"): every row read through the returned env — a
 * get, and each item a range yields — counts one, in this env and in every
 * database opened from it. Optionally replaces `flushed`, so a test can hold
 * the flush to disk and see what waits for it.
 */
import type { RootDatabase } from 'lmdb';

export interface CountedEnv {
  /** The environment to hand to the code under test. */
  readonly env: RootDatabase;
  /** Rows read through `env` so far. */
  readonly reads: () => number;
}

export function countLmdbReads(env: RootDatabase, flushed?: () => PromiseLike<boolean>): CountedEnv {
  let reads = 0;
  const wrap = <T extends object>(db: T): T =>
    new Proxy(db, {
      get(target, prop) {
        if (prop === 'flushed' && flushed !== undefined) return flushed();
        const value: unknown = Reflect.get(target, prop, target);
        if (typeof value !== 'function') return value;
        const fn = value as (...args: unknown[]) => unknown;
        if (prop === 'get' || prop === 'getEntry' || prop === 'getBinary') {
          return (...args: unknown[]) => {
            reads++;
            return fn.apply(target, args);
          };
        }
        if (prop === 'getRange' || prop === 'getKeys' || prop === 'getValues') {
          return (...args: unknown[]) => {
            const it = fn.apply(target, args) as Iterable<unknown>;
            return {
              *[Symbol.iterator]() {
                for (const item of it) {
                  reads++;
                  yield item;
                }
              },
            };
          };
        }
        if (prop === 'openDB') return (...args: unknown[]) => wrap(fn.apply(target, args) as object);
        return fn.bind(target);
      },
    });
  return { env: wrap(env), reads: () => reads };
}
