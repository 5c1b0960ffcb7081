/**
 * A counting semaphore for segments in flight, shared fairly between
 * tenants: waiters queue per tenant and a freed slot goes to the next tenant
 * in round-robin order, so one tenant's 100k-recipient job cannot starve
 * another tenant's single message in the same tier.
 *
 *   tenants (ring) ──▶ [city-oa: w1 w2 w3] ──▶ [police: w1] ──▶ [bureau-7: w1 w2] ──┐
 *        ▲                                                                         │
 *        └─────────────────────────────────────────────────────────────────────────┘
 *
 * Waiters are jobs in flight (each waits for at most one slot at a time), so
 * the queues are bounded by maxInflightJobs.
 */
interface Waiter {
  resolve: () => void;
  next: Waiter | undefined;
}

interface TenantQueue {
  head: Waiter | undefined;
  tail: Waiter | undefined;
}

export class Slots {
  private used = 0;
  private waiting = 0;
  private readonly queues = new Map<string, TenantQueue>();
  /** Tenants with waiters, in round-robin order. */
  private readonly ring: string[] = [];
  private turn = 0;
  private freeWaiters: (() => void)[] = [];

  constructor(private readonly capacity: number) {}

  get free(): number {
    return this.capacity - this.used;
  }

  get inUse(): number {
    return this.used;
  }

  /** Resolves (or returns synchronously) once a slot is held for `tenant`. */
  acquire(tenant = ''): Promise<void> | void {
    if (this.used < this.capacity && this.waiting === 0) {
      this.used++;
      return;
    }
    return new Promise((resolve) => {
      const w: Waiter = { resolve, next: undefined };
      let q = this.queues.get(tenant);
      if (!q) {
        q = { head: undefined, tail: undefined };
        this.queues.set(tenant, q);
      }
      if (q.tail) q.tail.next = w;
      else {
        q.head = w;
        this.ring.push(tenant);
      }
      q.tail = w;
      this.waiting++;
    });
  }

  release(): void {
    if (this.waiting > 0) {
      // Hand the slot straight to the next tenant's oldest waiter.
      if (this.turn >= this.ring.length) this.turn = 0;
      const tenant = this.ring[this.turn] as string;
      const q = this.queues.get(tenant) as TenantQueue;
      const w = q.head as Waiter;
      q.head = w.next;
      if (!q.head) {
        q.tail = undefined;
        this.queues.delete(tenant);
        this.ring.splice(this.turn, 1);
      } else {
        this.turn++;
      }
      this.waiting--;
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
    if (this.used < this.capacity && this.waiting === 0) return;
    return new Promise((resolve) => this.freeWaiters.push(resolve));
  }
}
