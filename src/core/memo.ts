/**
 * A bounded memo of a pure function of a string, for values the hot path
 * would otherwise compute per message although the inputs repeat (a tenant
 * sends the same few callback URLs again and again). At `max` entries it is
 * cleared and refills: no eviction order to keep, and a workload whose keys
 * never repeat costs one clear per `max` keys. Every memo is named in
 * `memos()` so the metrics catalogue can show its size
 * (`smsgw_memo_entries{memo}`).
 */
const ALL = new Map<string, StringMemo<unknown>>();

export class StringMemo<V> {
  private readonly entries = new Map<string, V>();

  constructor(
    readonly name: string,
    readonly max: number,
    private readonly compute: (key: string) => V,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`memo ${name}: max must be a positive integer`);
    ALL.set(name, this);
  }

  get(key: string): V {
    const known = this.entries.get(key);
    if (known !== undefined || this.entries.has(key)) return known as V;
    const value = this.compute(key);
    if (this.entries.size >= this.max) this.entries.clear();
    this.entries.set(key, value);
    return value;
  }

  get size(): number {
    return this.entries.size;
  }
}

/** Every memo by name (for the metrics catalogue). */
export function memos(): ReadonlyMap<string, { readonly size: number }> {
  return ALL;
}
