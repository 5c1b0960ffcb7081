/**
 * The receipt store's change log, for replication between hosts
 * (docs/DEPLOY.md, "Several hosts").
 *
 * With replication on, every change the store commits is also described as
 * an operation (`ReplicaOp`) and written, in the same LMDB transaction, to
 * an outbox (`receipts.outbox`). A relay (src/queue/nats/receipt-replication.ts)
 * publishes the outbox to a JetStream stream and removes what the server
 * acknowledged; every other host applies the stream, in stream order, to its
 * own store (`ReceiptStore.applyReplicated`).
 *
 * Operations, not rows: the same forward-only rules the store enforces for
 * its own writers (a segment never goes back, a final state never changes,
 * a receipt before its submit waits as an early receipt) make applying them
 * idempotent and tolerant of arriving late.
 *
 *   receipts.outbox           [µs, pid, n]   → OutboxEntry
 *   receipts.replica.position 'stream'       → [stream seq, op index] applied last
 *                             'host'         → the host id this data dir replicates as
 *                             'relay'        → { owner, until }: the process publishing the outbox
 *
 * Keys are [microseconds, pid, counter]; every process of a host writes the
 * one outbox, and a relay publishes it in key order, so an operation must sort
 * after every operation it depends on. Plain puts (a message row and its
 * entry, written at ingest) take the wall clock in microseconds; entries
 * written inside a transaction (submits, receipts, finals: everything that
 * reads before it writes) take at least the newest committed key + 1, so
 * they sort after whatever they read. Dependents of a plain put come a
 * commit and a queue round trip (milliseconds) after it. Assumed: the host's
 * clock is not stepped back by more than that while entries wait.
 * The relay deletes entries after the PubAck; an entry published twice (a
 * crash between publish and delete, two relays on one host) carries the same
 * Nats-Msg-Id and the server drops the repeat within its duplicate window.
 */
import type { Database, Key, RootDatabase } from 'lmdb';
import { GatewayError } from '../core/errors.js';
import type { FinalState } from '../core/message.js';
import type { DeliveryReceipt } from '../core/ports.js';
import type { StoredMessage, StoredRerouteText } from '../receipts/records.js';
import type { SegmentResult } from '../receipts/types.js';
import { trackWrite } from '../storage/health.js';
import { entryCount } from '../storage/entry-count.js';

/** One expanded recipient row (fan-out), as `putExpandedRecipients` takes it. */
export interface ExpandedRow {
  readonly to: string;
  readonly final?: { readonly state: FinalState; readonly error: string };
}

/** A PDA state update, as `recordPdaStates` takes it. */
export interface PdaStateUpdate {
  readonly messageId: string;
  readonly index: number;
  readonly state: string;
  readonly at: number;
  readonly deviceId?: string;
  readonly seq?: number;
  readonly error?: string;
}

/** One change, as the replicas apply it. Short tags: an outbox entry can hold thousands. */
export type ReplicaOp =
  /** putMessage: the message row and one accepted row per number. */
  | { readonly k: 'm'; readonly id: string; readonly msg: StoredMessage; readonly nums: readonly string[] }
  /** putPendingMessage: a group send's message row (rows come with the expansion). */
  | { readonly k: 'pm'; readonly id: string; readonly msg: StoredMessage }
  /** putExpandedRecipients */
  | { readonly k: 'x'; readonly id: string; readonly from: number; readonly at: number; readonly rows: readonly ExpandedRow[] }
  /** completeExpansion */
  | { readonly k: 'c'; readonly id: string; readonly count: number; readonly finals: readonly { readonly index: number; readonly state: FinalState }[] }
  /** putIdempotency */
  | { readonly k: 'i'; readonly t: string; readonly key: string; readonly v: unknown; readonly x: number }
  /** markQueued */
  | { readonly k: 'q'; readonly id: string; readonly idx: readonly number[]; readonly at: number }
  /** recordSegments */
  | { readonly k: 's'; readonly results: readonly SegmentResult[] }
  /** applyReceipt (a receipt that changed something or was kept early) */
  | { readonly k: 'd'; readonly r: DeliveryReceipt }
  /** finalizeRecipients */
  | { readonly k: 'f'; readonly id: string; readonly at: number; readonly items: readonly { readonly index: number; readonly state: FinalState; readonly error: string }[] }
  /** recordPdaStates */
  | { readonly k: 'p'; readonly updates: readonly PdaStateUpdate[] }
  /** keepForReroute: the text a second attempt sends */
  | { readonly k: 'rk'; readonly id: string; readonly text: StoredRerouteText }
  /** endReroutes: second attempts that could not be made */
  | { readonly k: 'rn'; readonly id: string; readonly idx: readonly number[] }
  /** expireDue: these recipients of the message expired (decided by the message's own host). */
  | { readonly k: 'e'; readonly id: string; readonly at: number; readonly idx: readonly number[] }
  /**
   * Rows written by a directory or template change (RowLog), versioned [at µs, host]: the newest
   * version of a row wins everywhere. `b`: a counter [db, key] the applying host increments when a
   * row was applied (the directory's version, so its caches reload).
   */
  | { readonly k: 'w'; readonly at: number; readonly rows: readonly RowWrite[]; readonly b?: RowCounter };

/** A counter row [db, key] (a number) that applying a `w` operation increments. */
export type RowCounter = readonly [db: string, key: string];

/** One row a replicated change wrote: [db, key, value], or [db, key] when it removed the row. */
export type RowWrite = readonly [db: string, key: Key, value: unknown] | readonly [db: string, key: Key];

/** A row's version: [wall clock µs of the change, host]; compared by time, then host id. */
export type RowVersion = [number, string];

export function newerVersion(a: RowVersion, b: RowVersion | undefined): boolean {
  return b === undefined || a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

/** Key of a row's version entry: the db name, then the row key's parts. */
export function versionKey(db: string, key: Key): Key {
  return Array.isArray(key) ? [db, ...(key as unknown[])] as Key : [db, key];
}

/** What one outbox row (and one replication message) holds. */
export interface OutboxEntry {
  readonly v: 1;
  /** The host that made the changes. */
  readonly h: string;
  readonly ops: readonly ReplicaOp[];
}

export type OutboxKey = [number, number, number];

/** Most operations one outbox entry holds; a transaction with more writes several entries. */
export const MAX_OPS_PER_ENTRY = 512;

/** Host ids name NATS subjects and message rows: letters, digits, `_` and `-`. */
export const HOST_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Microseconds since the epoch, never repeating nor going back within this process. */
let lastTick = 0;
function tick(): number {
  const now = Date.now() * 1000;
  lastTick = now > lastTick ? now : lastTick + 1;
  return lastTick;
}
/** Per process, not per ChangeLog: keys stay unique if a process opens several. */
let entryCounter = 0;

export class ChangeLog {
  readonly outbox: Database<OutboxEntry, OutboxKey>;
  /** Versions of rows replicated by RowLog (tombstones included). */
  readonly rowVersions: Database<RowVersion, Key>;
  /** `stream` → [stream seq, op index] applied last; `host` → this data dir's host id (checkReplicaHost). */
  readonly positions: Database<[number, number], string>;
  /** Relays of this process to wake (one per running ReceiptReplication; removed when it stops). */
  private readonly listeners = new Set<() => void>();

  constructor(private readonly env: RootDatabase, readonly host: string) {
    if (!HOST_ID_PATTERN.test(host)) throw new GatewayError('CONFIG_INVALID', `replication host id ${JSON.stringify(host)} must match ${HOST_ID_PATTERN}`);
    this.outbox = env.openDB<OutboxEntry, OutboxKey>({ name: 'receipts.outbox', encoding: 'msgpack' });
    this.positions = env.openDB<[number, number], string>({ name: 'receipts.replica.position', encoding: 'msgpack' });
    this.rowVersions = env.openDB<RowVersion, Key>({ name: 'replica.rowversions', encoding: 'msgpack' });
  }

  /** Wall clock µs for a row version (never repeating within this process). */
  now(): number {
    return tick();
  }

  /** A plain put (joins the caller's batch of puts: committed with the rows it describes). */
  append(op: ReplicaOp): void {
    trackWrite(this.env, this.outbox.put([tick(), process.pid, entryCounter++], { v: 1, h: this.host, ops: [op] }), 'change log');
  }

  /** Inside a write transaction: after every entry committed so far (split at MAX_OPS_PER_ENTRY). */
  appendSync(ops: readonly ReplicaOp[]): void {
    if (ops.length === 0) return;
    let floor = 0;
    for (const { key } of this.outbox.getRange({ reverse: true, limit: 1 })) floor = key[0] + 1;
    for (let i = 0; i < ops.length; i += MAX_OPS_PER_ENTRY) {
      const at = Math.max(tick(), floor);
      floor = at + 1;
      this.outbox.putSync([at, process.pid, entryCounter++], { v: 1, h: this.host, ops: ops.slice(i, i + MAX_OPS_PER_ENTRY) });
    }
  }

  /** Something was appended (after the write was handed to LMDB): relays wake up. Returns the way to stop listening. */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  notify(): void {
    for (const l of this.listeners) l();
  }

  /** The oldest `limit` entries (committed). */
  oldest(limit: number): Array<{ key: OutboxKey; value: OutboxEntry }> {
    return [...this.outbox.getRange({ limit })];
  }

  /** Remove published entries (one transaction). */
  remove(keys: readonly OutboxKey[]): Promise<boolean> {
    return this.outbox.transaction(() => {
      for (const k of keys) this.outbox.removeSync(k);
      return true;
    });
  }

  /**
   * One relay per host publishes, the other processes stand by: a lease
   * (`receipts.replica.position` key `relay`) that `owner` takes when it is
   * free, expired or its own, for `ttlMs`. A dead relay's lease expires and
   * another process takes over.
   */
  holdRelayLease(owner: string, ttlMs: number): Promise<boolean> {
    const db = this.positions as unknown as Database<{ o: string; u: number }, string>;
    return db.transaction(() => {
      const now = Date.now();
      const lease = db.get('relay');
      if (lease !== undefined && lease.o !== owner && lease.u > now) return false;
      db.putSync('relay', { o: owner, u: now + ttlMs });
      return true;
    });
  }

  /** Give the lease up (shutdown): another process may take it at once. */
  releaseRelayLease(owner: string): Promise<boolean> {
    const db = this.positions as unknown as Database<{ o: string; u: number }, string>;
    return db.transaction(() => {
      const lease = db.get('relay');
      if (lease?.o === owner) db.removeSync('relay');
      return true;
    });
  }

  /** Entries waiting to be published (the outbox's row count, for metrics and tests). */
  get waiting(): number {
    return entryCount(this.outbox);
  }
}

/**
 * Row-level replication for data changed rarely and by people (the
 * directory: units, keys, people, groups, block lists; message templates):
 * the rows a change writes to the tracked databases are captured inside its
 * transaction and logged as one `w` operation with a version [µs, host];
 * each row's version is kept beside it. A host applies another host's row
 * only when that version is newer than the row's own, so hosts converge on
 * the newest write of every row whatever order they see changes in (last
 * writer wins, per row). Two admins changing the same record on two hosts
 * within the replication lag: the later change wins everywhere; derived
 * rows (a group's member count) may then disagree until the next change.
 */
export class RowLog {
  private recording: RowWrite[] | undefined;

  constructor(
    private readonly log: ChangeLog,
    dbs: ReadonlyArray<Database<unknown, Key>>,
    /** Incremented on the other hosts when they apply a change of these rows (caches keyed by it reload). */
    private readonly bumps?: RowCounter,
  ) {
    for (const db of dbs) this.track(db);
  }

  /** Run `fn` (inside a write transaction) and log the rows it wrote to tracked databases. */
  capture<T>(fn: () => T): T {
    if (this.recording !== undefined) return fn();
    const rows: RowWrite[] = [];
    this.recording = rows;
    let out: T;
    try {
      out = fn();
    } finally {
      this.recording = undefined;
    }
    if (rows.length > 0) {
      const at = this.log.now();
      const version: RowVersion = [at, this.log.host];
      for (const [db, key] of rows) this.log.rowVersions.putSync(versionKey(db, key), version);
      for (let i = 0; i < rows.length; i += MAX_OPS_PER_ENTRY * 8) {
        const slice = rows.slice(i, i + MAX_OPS_PER_ENTRY * 8);
        this.log.appendSync([this.bumps ? { k: 'w', at, rows: slice, b: this.bumps } : { k: 'w', at, rows: slice }]);
      }
    }
    return out;
  }

  private track(db: Database<unknown, Key>): void {
    const name = (db as unknown as { name?: string }).name;
    if (typeof name !== 'string') throw new GatewayError('INTERNAL', 'RowLog: a tracked database needs a name');
    const put = db.putSync.bind(db);
    const remove = db.removeSync.bind(db);
    db.putSync = (key: Key, value: unknown, ...rest: unknown[]) => {
      this.recording?.push([name, key, value]);
      return (put as (...a: unknown[]) => boolean)(key, value, ...rest);
    };
    db.removeSync = (key: Key, ...rest: unknown[]) => {
      this.recording?.push([name, key]);
      return (remove as (...a: unknown[]) => boolean)(key, ...rest);
    };
  }
}

/**
 * Every process of a host must log its changes, or the other hosts miss
 * them: the data dir remembers the host id it was first replicated as
 * (`receipts.replica.position` key `host`), and a process that opens it
 * without replication, or as another host, is refused.
 */
export function checkReplicaHost(env: RootDatabase, host: string | undefined): void {
  const db = env.openDB<string, string>({ name: 'receipts.replica.position', encoding: 'msgpack' });
  const marked = db.get('host');
  if (host === undefined) {
    if (marked !== undefined) {
      throw new GatewayError('CONFIG_INVALID', `this data dir is replicated as host ${JSON.stringify(marked)}: every process using it needs queue.nats.replication.enabled with host ${JSON.stringify(marked)}`);
    }
    return;
  }
  if (marked === undefined) db.putSync('host', host);
  else if (marked !== host) {
    throw new GatewayError('CONFIG_INVALID', `this data dir is replicated as host ${JSON.stringify(marked)}, not ${JSON.stringify(host)}: one host id per data dir`);
  }
}

/** Stable text form of an outbox key: the Nats-Msg-Id is `<host>.<this>`. */
export function outboxKeyId(key: OutboxKey): string {
  return `${key[0]}-${key[1]}-${key[2]}`;
}
