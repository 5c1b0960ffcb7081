/**
 * Group commit for read-modify-write operations on LMDB.
 *
 * Operations are appended to an in-memory list; the first append schedules a
 * flush (setImmediate, so everything that arrives in the same turn of the
 * event loop — one socket read of many submit_sm_resp, several binds'
 * receipts — joins it), and a list past `flushAt` is handed over at once.
 * A flush runs ONE asynchronous LMDB transaction that applies the operations
 * in order; each operation's promise settles when that transaction commits.
 *
 * Why `env.childTransaction` (asynchronous, abortable) and not
 * `transactionSync` or `transaction`:
 * - asynchronous: the commit (and, with overlappingSync, the fsync) runs on
 *   lmdb's write thread, not the event loop; and the callback joins the batch
 *   of plain `put`s issued in the same turn (the embedded queue's publish, the
 *   store's `putMessage`), running after them, so it sees their rows.
 *   `transactionSync` would block the event loop for the commit and split
 *   that batch.
 * - abortable: a plain async `transaction` whose callback throws still
 *   commits whatever the callback wrote. Here an operation's reads may throw
 *   (validation) and nothing is lost, but a failure while *writing* would
 *   leave an operation half applied; as a child transaction the whole batch
 *   is rolled back instead and every operation in it rejects (callers retry).
 *   The child costs one nested begin/commit per batch, not per operation.
 *
 * Operations therefore work in two phases: `run(fx, w)` only reads and
 * validates (throwing a GatewayError rejects that operation alone) and queues
 * its writes in `w`; the queue applies `w` right after `run` returns, so the
 * next operation of the batch reads them. An operation must not read back its
 * own queued writes (it keeps its own working copies instead).
 *
 * Bounds: `maxPending` weight (queued plus in uncommitted transactions);
 * beyond it callers wait, in order, for commits to free room; beyond
 * `maxWaiting` waiting callers, operations are refused (OVERLOADED) rather
 * than queued without end.
 */
import type { Database, Key, RootDatabase } from 'lmdb';
import { GatewayError, isStorageFailure } from '../core/errors.js';
import { storageHealth } from '../storage/health.js';
import { RingBuffer } from '../core/ring.js';

/** Side effects of a batch that may happen only after it commits (metrics, listeners). */
export interface TxnEffects {
  /** An operation is about to run: remember where its effects start. */
  begin(): void;
  /** That operation threw: forget what it recorded since `begin`. */
  discard(): void;
}

const REMOVE: unique symbol = Symbol('remove');

/** Writes an operation queues; applied in order after the operation returns. */
export class WriteSet {
  private readonly dbs: Array<Database<unknown, Key>> = [];
  private readonly keys: Key[] = [];
  private readonly values: unknown[] = [];

  put<V, K extends Key>(db: Database<V, K>, key: K, value: V): void {
    this.dbs.push(db);
    this.keys.push(key);
    this.values.push(value);
  }

  remove<V, K extends Key>(db: Database<V, K>, key: K): void {
    this.dbs.push(db);
    this.keys.push(key);
    this.values.push(REMOVE);
  }

  get size(): number {
    return this.keys.length;
  }

  /** Inside the write transaction: `putSync`/`removeSync` write into it directly. */
  apply(): void {
    for (let i = 0; i < this.keys.length; i++) {
      const db = this.dbs[i]!;
      const v = this.values[i];
      if (v === REMOVE) db.removeSync(this.keys[i]!);
      else db.putSync(this.keys[i]!, v);
    }
  }

  clear(): void {
    this.dbs.length = 0;
    this.keys.length = 0;
    this.values.length = 0;
  }
}

export type TxnOperation<T, E extends TxnEffects> = (fx: E, w: WriteSet) => T;

interface Pending<E extends TxnEffects> {
  readonly run: TxnOperation<unknown, E>;
  readonly weight: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  ok: boolean;
  value: unknown;
  error: unknown;
}

export interface CommitQueueOptions<E extends TxnEffects> {
  readonly env: RootDatabase;
  /** Hand the list to LMDB at once when its weight reaches this. */
  readonly flushAt: number;
  /** Weight queued or in uncommitted transactions beyond which callers wait. */
  readonly maxPending: number;
  /** Operations allowed to wait for room; more are refused with OVERLOADED. */
  readonly maxWaiting: number;
  readonly newEffects: () => E;
  /** Inside the transaction, after the last operation: writes that describe the batch (the change log). */
  readonly beforeCommit?: (fx: E) => void;
  /** After commit, before the operations' promises resolve. Must not throw. */
  readonly afterCommit: (fx: E) => void;
  /** Inside the transaction: the total weight it applies. */
  readonly onBatch: (weight: number) => void;
}

export class CommitQueue<E extends TxnEffects> {
  private queued: Array<Pending<E>> = [];
  private queuedWeight = 0;
  private pendingWeight = 0;
  private readonly waiters: RingBuffer<Pending<E>>;
  private readonly inflight = new Set<Promise<void>>();
  private scheduled: NodeJS.Immediate | undefined;
  private closed = false;
  /** Transactions handed to LMDB so far (lets `flushed()` tell whether anything new was written). */
  handovers = 0;

  constructor(private readonly opts: CommitQueueOptions<E>) {
    this.waiters = new RingBuffer(opts.maxWaiting);
  }

  /** Weight queued or in uncommitted transactions. */
  get pending(): number {
    return this.pendingWeight;
  }

  enqueue<T>(weight: number, run: TxnOperation<T, E>): Promise<T> {
    if (this.closed) return Promise.reject(new GatewayError('STORE_CLOSED'));
    return new Promise<T>((resolve, reject) => {
      const p: Pending<E> = {
        run, weight, resolve: resolve as (v: unknown) => void, reject, ok: false, value: undefined, error: undefined,
      };
      if (this.waiters.length === 0 && this.pendingWeight < this.opts.maxPending) this.admit(p);
      else if (!this.waiters.push(p)) {
        reject(new GatewayError('OVERLOADED', `receipt store: ${this.opts.maxWaiting} operations already wait for room`));
      }
    });
  }

  /** Hand everything queued to LMDB now. */
  flush(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.queued.length === 0) return;
    const ops = this.queued;
    const weight = this.queuedWeight;
    this.queued = [];
    this.queuedWeight = 0;
    const fx = this.opts.newEffects();
    const w = new WriteSet();
    let txn: Promise<unknown>;
    try {
      txn = this.opts.env.childTransaction(() => {
        this.opts.onBatch(weight);
        for (const op of ops) {
          fx.begin();
          w.clear();
          try {
            op.value = op.run(fx, w);
            op.ok = true;
          } catch (e) {
            op.error = e;
            fx.discard();
            continue;
          }
          // A throw here is a storage failure mid-write: it aborts the batch.
          w.apply();
        }
        this.opts.beforeCommit?.(fx);
      });
    } catch (e) {
      txn = Promise.reject(e);
    }
    this.handovers++;
    const done: Promise<void> = txn
      .then(
        () => {
          this.opts.afterCommit(fx);
          for (const op of ops) {
            if (op.ok) op.resolve(op.value);
            else op.reject(op.error);
          }
        },
        (e: unknown) => {
          // A failed commit (disk full, I/O error) is the storage state's business (src/storage/health.ts):
          // the callers see STORAGE_FULL and retry; nothing in the batch was written.
          const storage = isStorageFailure(e) && storageHealth(this.opts.env).failed(e, 'receipt store');
          const err = storage
            ? new GatewayError('STORAGE_FULL', 'receipt store transaction failed (storage); nothing in it was written', { cause: e })
            : new GatewayError('INTERNAL', 'receipt store transaction failed; nothing in it was written', { cause: e });
          for (const op of ops) op.reject(err);
        },
      )
      .finally(() => {
        this.pendingWeight -= weight;
        this.inflight.delete(done);
        this.admitWaiters();
      });
    this.inflight.add(done);
  }

  /** Resolves when every transaction handed over so far has committed (or failed). Never rejects. */
  settled(): Promise<void> {
    if (this.inflight.size === 0) return Promise.resolve();
    return Promise.all([...this.inflight]).then(() => undefined);
  }

  /** Refuse new operations; commit everything already accepted (including waiters). */
  async drain(): Promise<void> {
    this.closed = true;
    // Each round commits at least one transaction or admits waiters, so this ends.
    while (this.queued.length > 0 || this.waiters.length > 0 || this.inflight.size > 0) {
      this.admitWaiters();
      this.flush();
      await this.settled();
    }
  }

  private admit(p: Pending<E>): void {
    this.queued.push(p);
    this.queuedWeight += p.weight;
    this.pendingWeight += p.weight;
    if (this.queuedWeight >= this.opts.flushAt) this.flush();
    else if (this.scheduled === undefined) {
      this.scheduled = setImmediate(() => {
        this.scheduled = undefined;
        this.flush();
      });
    }
  }

  private admitWaiters(): void {
    while (this.waiters.length > 0 && this.pendingWeight < this.opts.maxPending) {
      this.admit(this.waiters.shift()!);
    }
  }
}
