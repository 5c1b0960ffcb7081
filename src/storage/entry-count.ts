/**
 * Rows in an LMDB database, read from its B-tree header (mdb_stat's
 * md_entries): O(1). lmdb-js's `getCount()` walks every row (and so maps
 * every page of the database into the process), which made gauges read on
 * a timer cost time and memory in proportion to the backlog.
 */
export function entryCount(db: { getStats(): object }): number {
  const stats = db.getStats() as { entryCount?: unknown };
  return typeof stats.entryCount === 'number' ? stats.entryCount : 0;
}
