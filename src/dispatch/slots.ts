/**
 * A counting semaphore for segments in flight. Waiters are the jobs in
 * flight (each waits for at most one slot at a time), so the waiter list is
 * bounded by maxInflightJobs. FIFO: a job that waited longest goes first.
 */
interface Waiter {
  resolve: () => void;
  next: Waiter | undefined;
}

export class Slots {
  private used = 0;
  private head: Waiter | undefined;
  private tail: Waiter | undefined;
  private freeWaiters: (() => void)[] = [];

  constructor(private readonly capacity: number) {}

  get free(): number {
    return this.capacity - this.used;
  }

  get inUse(): number {
    return this.used;
  }

  acquire(): Promise<void> | void {
    if (this.used < this.capacity && this.head === undefined) {
      this.used++;
      return;
    }
    return new Promise((resolve) => {
      const w: Waiter = { resolve, next: undefined };
      if (this.tail) this.tail.next = w;
      else this.head = w;
      this.tail = w;
    });
  }

  release(): void {
    const w = this.head;
    if (w) {
      // Hand the slot straight to the next waiter.
      this.head = w.next;
      if (!this.head) this.tail = undefined;
      w.resolve();
      return;
    }
    this.used--;
    if (this.freeWaiters.length > 0) {
      const ws = this.freeWaiters;
      this.freeWaiters = [];
      for (const f of ws) f();
    }
  }

  /** Resolves when at least one slot is free and nobody is waiting for it. */
  whenFree(): Promise<void> | void {
    if (this.used < this.capacity && this.head === undefined) return;
    return new Promise((resolve) => this.freeWaiters.push(resolve));
  }
}
