/**
 * A Map kept to a fixed number of entries by evicting the oldest: the
 * in-memory caches that remember the last N of something insert through
 * here, so the bound is written once (setBounded: accepted message rows,
 * compiled templates, PDA message bodies; setNewest: NATS deliveries handed
 * out, case-query windows, group member counts).
 *
 * Order is insertion order (a Map's own): setting a key that is already
 * present replaces its value and keeps its place; a new key, with the map
 * at its bound, first removes the key inserted earliest.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, bound: number): void {
  if (map.size >= bound && !map.has(key)) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}

/**
 * The same bound, but the key set becomes the newest whether or not it was
 * present (a recency order: the entry evicted is the one set longest ago).
 */
export function setNewest<K, V>(map: Map<K, V>, key: K, value: V, bound: number): void {
  map.delete(key);
  setBounded(map, key, value, bound);
}
