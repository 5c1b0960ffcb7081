/**
 * A bounded FIFO over a circular array.
 *
 * `Array.prototype.shift` is O(n) once an array leaves V8's fast path, and an
 * unbounded array hides overload; this ring has a hard capacity (push answers
 * false when full) and O(1) push, shift and unshift. Storage starts small and
 * doubles up to the capacity, so a ring sized for a 64k burst costs nothing
 * while idle.
 */
export class RingBuffer<T> implements Iterable<T> {
  readonly capacity: number;
  private slots: (T | undefined)[];
  /** slots.length - 1; slots.length is always a power of two. */
  private mask: number;
  private head = 0;
  private size = 0;

  constructor(capacity: number, initialSlots = 16) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`ring capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    let n = 1;
    const start = Math.min(capacity, Math.max(1, initialSlots));
    while (n < start) n *= 2;
    this.slots = new Array<T | undefined>(n);
    this.mask = n - 1;
  }

  get length(): number {
    return this.size;
  }

  get isFull(): boolean {
    return this.size >= this.capacity;
  }

  get isEmpty(): boolean {
    return this.size === 0;
  }

  /** Append at the tail; false (and nothing stored) when the ring is full. */
  push(item: T): boolean {
    if (this.size >= this.capacity) return false;
    if (this.size === this.slots.length) this.grow();
    this.slots[(this.head + this.size) & this.mask] = item;
    this.size++;
    return true;
  }

  /** Put back at the head (a retried item keeps its place in line); false when full. */
  unshift(item: T): boolean {
    if (this.size >= this.capacity) return false;
    if (this.size === this.slots.length) this.grow();
    this.head = (this.head - 1) & this.mask;
    this.slots[this.head] = item;
    this.size++;
    return true;
  }

  /** Remove and return the head, or undefined when empty. */
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.slots[this.head];
    this.slots[this.head] = undefined; // let the GC have it
    this.head = (this.head + 1) & this.mask;
    this.size--;
    return item;
  }

  /** The head without removing it. */
  peek(): T | undefined {
    return this.size === 0 ? undefined : this.slots[this.head];
  }

  /** The i-th item from the head (0 = head), or undefined when out of range. */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.size) return undefined;
    return this.slots[(this.head + i) & this.mask];
  }

  clear(): void {
    this.slots.fill(undefined);
    this.head = 0;
    this.size = 0;
  }

  /**
   * Remove every item for which `predicate` is true, keeping the order of the
   * rest; returns the removed items in order. O(length): meant for rare
   * sweeps (expired deadlines), not the hot path.
   */
  removeWhere(predicate: (item: T) => boolean): T[] {
    const removed: T[] = [];
    const n = this.size;
    let write = 0;
    for (let read = 0; read < n; read++) {
      const idx = (this.head + read) & this.mask;
      const item = this.slots[idx] as T;
      if (predicate(item)) {
        removed.push(item);
      } else {
        this.slots[(this.head + write) & this.mask] = item;
        write++;
      }
    }
    for (let i = write; i < n; i++) this.slots[(this.head + i) & this.mask] = undefined;
    this.size = write;
    return removed;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (let i = 0; i < this.size; i++) yield this.slots[(this.head + i) & this.mask] as T;
  }

  private grow(): void {
    const old = this.slots;
    const n = old.length * 2;
    const next = new Array<T | undefined>(n);
    for (let i = 0; i < this.size; i++) next[i] = old[(this.head + i) & this.mask];
    this.slots = next;
    this.mask = n - 1;
    this.head = 0;
  }
}
