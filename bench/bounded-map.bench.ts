/**
 * bench:maps — one insert into a map held at its bound (the in-memory caches
 * of src/core/bounded-map.ts: NATS deliveries handed out, group counts,
 * templates, PDA bodies) with the oldest key found through the insertion log
 * beside the map, against the same step finding it with the Map's own
 * `keys().next()` (what setBounded did before session 19: V8 keeps a deleted
 * entry's slot until the table is rebuilt, and the iterator walks every one
 * from the front). Both first-in first-out at the bound, new string keys,
 * alternated in one process and one run; medians of the repeats.
 *
 *   npm run bench:maps
 *   BENCH_N=300000 BENCH_REPEATS=3 npm run bench:maps
 */
import { setBounded } from '../src/core/bounded-map.js';
import { envInt, median, table, writeSummary, type Row } from './lib/report.js';

const N = envInt('BENCH_N', 300_000);
const REPEATS = envInt('BENCH_REPEATS', 3);
const BOUNDS = [1_024, 16_384, 65_536];

/** The step as it was: the Map's own oldest key. */
function byIterator<K, V>(map: Map<K, V>, key: K, value: V, bound: number): void {
  if (map.size >= bound && !map.has(key)) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}

const keys = Array.from({ length: N }, (_, i) => `m-${i.toString(36)}-0123456789abcdef`);
/** ns per insert over N inserts into a fresh map (the first `bound` fill it). */
function perInsert(set: typeof setBounded, bound: number): number {
  const map = new Map<string, number>();
  const start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) set(map, keys[i] as string, i, bound);
  const ns = Number(process.hrtime.bigint() - start) / N;
  if (map.size !== Math.min(bound, N)) throw new Error(`map at ${map.size}, bound ${bound}`);
  return ns;
}

const rows: Row[] = [];
const summary: Record<string, { log: number[]; iterator: number[] }> = {};
for (const bound of BOUNDS) {
  const log: number[] = [];
  const iterator: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    log.push(perInsert(setBounded, bound));
    iterator.push(perInsert(byIterator, bound));
  }
  summary[String(bound)] = { log, iterator };
  rows.push({ metric: `insert at a bound of ${bound.toLocaleString('en-US')}`, value: median(log), unit: 'ns', baseline: median(iterator), baselineName: 'keys().next()' });
}
process.stdout.write(`\n${table(`Bounded maps: N = ${N.toLocaleString('en-US')} inserts per figure, median of ${REPEATS}`, rows)}\n`);
const file = writeSummary('bounded-map', summary);
process.stdout.write(`\nJSON summary: ${file}\n${JSON.stringify(summary)}\n`);
