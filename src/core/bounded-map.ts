/**
 * A Map kept to a fixed number of entries by evicting the oldest: the
 * in-memory caches that remember the last N of something insert through
 * here, so the bound is written once (setBounded: compiled templates, PDA
 * message bodies and states; setNewest: NATS deliveries handed out,
 * case-query windows, group member counts). The receipt store's accepted
 * rows, whose ids never repeat, keep a plain ring of ids instead.
 *
 * Order is insertion order (a Map's own): setting a key that is already
 * present replaces its value and keeps its place; a new key, with the map
 * at its bound, first removes the key inserted earliest.
 *
 * Finding that key is O(1), amortized. A Map's own oldest key (`keys().next()`) is not:
 * V8 leaves a deleted entry's slot in place until the table is rebuilt, and
 * the iterator walks over every such slot from the front, so a map used
 * first-in first-out at its bound paid for about half its bound per insert
 * (about 5 µs at 16,384 entries and 16 µs at 65,536 on the bench machine,
 * `npm run bench:maps`). Each map gets an insertion log beside it instead
 * (a WeakMap, so it goes with the map): keys with the sequence number of their insertion, read from the
 * front; an entry whose key was set again later (setNewest) or deleted is
 * skipped. The log is rebuilt from the map's own order once it holds twice
 * the bound (read entries included), so it stays within a constant of the
 * bound and the rebuilds cost O(1) per insert, amortized.
 */

/** A map's insertion log: `keys[i]` was inserted as number `seqs[i]`; `latest` holds each logged key's last number. */
interface InsertionLog<K> {
  keys: K[];
  seqs: number[];
  head: number;
  next: number;
  latest: Map<K, number>;
}

const logs = new WeakMap<Map<unknown, unknown>, InsertionLog<unknown>>();

function logOf<K>(map: Map<K, unknown>): InsertionLog<K> {
  let log = logs.get(map) as InsertionLog<K> | undefined;
  if (log === undefined) {
    log = rebuilt(map);
    logs.set(map, log);
  }
  return log;
}

/** A log of the map's keys in the map's own order (one pass over it). */
function rebuilt<K>(map: Map<K, unknown>): InsertionLog<K> {
  const keys = [...map.keys()];
  const seqs = keys.map((_, i) => i);
  return { keys, seqs, head: 0, next: keys.length, latest: new Map(keys.map((k, i) => [k, i])) };
}

/** Removes the map's oldest key (one, if any). */
function evictOldest<K>(map: Map<K, unknown>, log: InsertionLog<K>): void {
  while (log.head < log.keys.length) {
    const key = log.keys[log.head] as K;
    const seq = log.seqs[log.head] as number;
    log.head++;
    if (log.latest.get(key) !== seq) continue; // set again later: that entry counts
    log.latest.delete(key);
    if (map.delete(key)) return; // else deleted by its owner since: look further
  }
  // Every logged key is gone; keys the owner set on the map directly remain: the map's own order.
  const oldest = map.keys().next();
  if (oldest.done !== true) map.delete(oldest.value);
}

export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, bound: number): void {
  if (map.has(key)) {
    map.set(key, value);
    return;
  }
  let log = logOf(map);
  if (map.size >= bound) evictOldest(map, log);
  if (log.keys.length >= 2 * bound + 64) {
    log = rebuilt(map);
    logs.set(map, log);
  }
  map.set(key, value);
  log.keys.push(key);
  log.seqs.push(log.next);
  log.latest.set(key, log.next++);
}

/**
 * The same bound, but the key set becomes the newest whether or not it was
 * present (a recency order: the entry evicted is the one set longest ago).
 */
export function setNewest<K, V>(map: Map<K, V>, key: K, value: V, bound: number): void {
  map.delete(key);
  setBounded(map, key, value, bound);
}

/** Entries in the map's insertion log, read ones included (tests: the log stays within 2 × bound + 64). */
export function insertionLogLength(map: Map<unknown, unknown>): number {
  return logs.get(map)?.keys.length ?? 0;
}
