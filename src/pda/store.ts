/**
 * The PDA channel's durable state, in named databases of an LMDB
 * environment passed in (the gateway's one environment; tests open their
 * own). Every change is one child transaction (`write`): a chunk of a
 * `deliver` call, a batch of acknowledgements from many devices, an expiry
 * sweep, a device state change with the withdrawal of its outbox — each all
 * or nothing.
 *
 * Databases (keys are lmdb ordered-binary arrays):
 *
 *   pda.devices         deviceId → device (person, unit, state, sealed key)
 *   pda.person-devices  [personId, deviceId] → state      who carries which device
 *   pda.person-active   personId → [deviceId, …]         the active ones: routing a recipient is one get
 *   pda.cursors         deviceId → n: next seq, c: entries, s: highest seq ever sent (3 × u32, binary)
 *   pda.outbox          [deviceId, lane, seq] → entry     lane = priority (0..2); the entry names its body
 *                                                        (33 binary bytes + message id, encodeEntry)
 *   pda.bodies          [messageId, expiresAt, k] → { classification, sender unit, body }
 *                                                        one per message text, shared by every device copy:
 *                                                        a broadcast to 5,000 devices stores its body once
 *   pda.expiry          [expiresAt, messageId] → next recipient index to examine
 *                                                        one row per message and expiry (not per copy)
 *   pda.recipients      [messageId, index] → { n: open copies, d: delivered, x, c: [dev, lane, seq, …] }
 *   pda.unread          [deviceId, seq] → m, i, x         acked, waiting for a read report (binary, encodeUnread)
 *   pda.status          n → { t, u: [...] }               the status updates of one transaction, waiting
 *                                                        for the receipt store (one row per transaction)
 *
 *   outbox entry ──k──▶ body          (written once per message, not per copy)
 *   expiry [x, m] ──▶ recipients [m, *] ──c──▶ outbox / unread copies   (what expires with the message)
 *
 * Sequence numbers are assigned per device at append (`cursor.n`), so they
 * follow append order whatever the priority; the outbox key puts the lane
 * before the sequence so a session can read "the next unsent entry of the
 * highest lane" with one range read. A recipient row lives until the
 * message's expiry: it counts the device copies still open (the first ack
 * reports delivered-to-device; at expiry a recipient with copies open and
 * no ack is reported expired), it lists where its copies are (so expiry
 * needs one index row per message instead of one per copy), and it makes
 * `deliver` idempotent (a job redelivered by the queue after a crash
 * appends nothing twice).
 *
 * Writes per device copy of a broadcast: append = outbox put + recipient
 * put + cursor put; ack = outbox remove + unread put + cursor put (+ the
 * recipient row when the recipient has several devices: the entry says
 * whether it is the only copy). Bodies, expiry rows and status rows are per
 * message or per transaction. The first version wrote the body with every
 * copy, an expiry row per copy and per unread marker, and a status row per
 * update — about twice the writes; bench:pda measured ~100 µs of server CPU
 * per device then, ~40 µs now (bench/RESULTS.md).
 *
 * Status updates are written to `pda.status` in the same transaction as the
 * change they describe and relayed to the receipt store afterwards
 * (status-relay.ts): a crash between the two loses nothing. The relay takes
 * committed batches from memory (`readStatus`), and reads the database only
 * for what memory does not hold (rows from before a restart, or the oldest
 * ones when the receipt store fell far behind).
 *
 * Layout change: this layout replaced the first one (body per copy, msgpack
 * cursors, per-copy expiry rows) before any release; PDA data written by
 * the first version is not read. Outbox entries and unread markers were
 * msgpack records until they became hand-written binary (also before any
 * release): an outbox written before that is not read either.
 */
import { randomBytes } from 'node:crypto';
import type { Database, Key, RootDatabase } from 'lmdb';
import { GatewayError } from '../core/errors.js';
import { setBounded } from '../core/bounded-map.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { DeviceState, PdaMessage, PdaStatusState, PdaStatusUpdate } from './types.js';
import { envFlushed } from '../storage/health.js';

/** Named databases the channel opens in the environment (size `maxDbs` accordingly). */
export const PDA_DBS = 11;
export const LANES = 3;
const MAX_KEY_SEQ = 0xffff_ffff;
/** People whose active devices are kept in memory for routing (cleared whole when full). */
const ACTIVE_CACHE = 100_000;
const NO_DEVICES: readonly string[] = Object.freeze([]);
/**
 * A device's cursor before its first append. Never changed (transactions copy it); not frozen, so it has
 * the same hidden class as every other cursor and the JIT's code for the append path fits both.
 */
const NEW_CURSOR: Readonly<StoredCursor> = { n: 1, c: 0, s: 0 };
/** Bodies kept decoded in memory for the sessions' pumps (a broadcast reads one body 5,000 times). */
const BODY_CACHE = 512;
/** Committed status updates kept in memory for the relay; beyond this it reads them back from the database. */
const STATUS_MEMORY = 100_000;

export interface StoredDevice {
  /** person (officer) id */
  readonly p: string;
  /** unit */
  readonly u: string;
  readonly s: DeviceState;
  /** reason of the last state change */
  readonly r?: string;
  /** key version, +1 on every rotation */
  readonly v: number;
  /** sealed key (KeyVault) */
  readonly k: Uint8Array;
  /** key expiry, epoch ms */
  readonly kx: number;
  /** fingerprint of the key-encryption key that sealed it */
  readonly kid: string;
  /** created, updated (epoch ms) */
  readonly c: number;
  readonly m: number;
}

export interface StoredCursor {
  /** next sequence to assign (starts at 1) */
  n: number;
  /** entries in the outbox */
  c: number;
  /** highest sequence ever sent (persisted when a session ends; drives the redelivery flag) */
  s: number;
}

/** One device copy: who it is for and which body; the text is in `pda.bodies`. */
export interface StoredEntry {
  readonly m: string;
  readonly i: number;
  /** createdAt */
  readonly t: number;
  /** expiresAt */
  readonly x: number;
  /** appendedAt */
  readonly a: number;
  /** body variant: key [m, x, k] in pda.bodies */
  readonly k: number;
  /**
   * 1: the recipient's only copy. Its ack then needs no recipient row
   * update: nothing else can deliver, withdraw or expire this recipient
   * once the copy has left the outbox (2 of the ~6 writes of an ack).
   */
  readonly o: 0 | 1;
}

/** The text of a message, stored once for all its copies. Immutable; removed when the message expires. */
export interface StoredBody {
  /** classification, sender unit, body */
  readonly c: string;
  readonly u: string;
  readonly b: string;
}

interface StoredRecipient {
  n: number;
  d: 0 | 1;
  readonly x: number;
  /** Copies: [deviceId, lane, seq] flattened. */
  readonly c: Array<string | number>;
}

interface StoredUnread {
  readonly m: string;
  readonly i: number;
  readonly x: number;
}

/** The status updates of one transaction: `u` holds STATUS_FIELDS values per update. */
interface StoredStatusBatch {
  readonly t: number;
  readonly u: Array<string | number | null>;
}

const STATUS_FIELDS = 6;
const STATE_CODES: readonly PdaStatusState[] = ['queued', 'delivered-to-device', 'read', 'expired', 'undeliverable'];
const STATE_CODE: Readonly<Record<PdaStatusState, number>> = { queued: 0, 'delivered-to-device': 1, read: 2, expired: 3, undeliverable: 4 };

type OutboxKey = [string, number, number];
type ExpiryKey = [number, string];
type BodyKey = [string, number, number];
type PairKey = [string, number];

/** What a committed transaction did, for the side effects that follow it (pumps, metrics, relay). */
export class TxEffects {
  statuses = 0;
  /**
   * Devices whose outbox gained entries → those entries, in sequence order
   * (with their body): a session that has sent everything else sends them
   * from here, without reading them back.
   */
  readonly appended = new Map<string, UnsentEntry[]>();
  /** Device → sequences that left the outbox without an ack from the live session (expired): frees window slots. */
  readonly expiredSeqs = new Map<string, number[]>();
  /** Append → ack, seconds. */
  readonly latencies: number[] = [];
  /** Cursors this transaction wrote (committed values once it resolves): the sessions' outbox counts. */
  cursors: ReadonlyMap<string, StoredCursor> = new Map();
  acked = 0;
  expired = 0;
  withdrawn = 0;
  refusedFull = 0;
  refusedNoDevice = 0;
  outboxDelta = 0;
  ops = 0;
}

export class PdaTx {
  readonly fx = new TxEffects();
  /** Cursors read and changed in this transaction; written once at the end. */
  readonly cursors = new Map<string, StoredCursor>();
  /** `messageId expiresAt` whose expiry row this transaction wrote already. */
  readonly expiryRows = new Set<string>();
  /** Bodies of (messageId, expiresAt) known in this transaction, by `messageId expiresAt`. */
  readonly bodies = new Map<string, Array<{ readonly k: number; readonly body: StoredBody }>>();
  /** The entry of `bodies` used last (a broadcast looks up the same one for every recipient). */
  lastBodies: { readonly m: string; readonly x: number; readonly list: Array<{ readonly k: number; readonly body: StoredBody }> } | undefined;
  /** Status updates of this transaction, in order: written as one row at its end. */
  readonly statuses: PdaStatusUpdate[] = [];
  /**
   * Recipient rows of one message known to exist for indices lo..hi (read with one key range by
   * `prefetchRecipients`, plus those this transaction appended): `append`'s idempotency check for a
   * chunk of a broadcast costs one range read instead of a point read per recipient.
   */
  recipientsKnown: { readonly m: string; readonly lo: number; readonly hi: number; readonly have: Set<number> } | undefined;
  constructor(readonly now: number) {}
}

export interface UnsentEntry {
  readonly seq: number;
  readonly lane: number;
  readonly entry: StoredEntry;
  /** Its text, when known without a read (fresh appends). */
  readonly body?: StoredBody;
}

export interface AckWork {
  readonly deviceId: string;
  readonly cumulative: number;
  readonly selective: readonly number[];
  /** Every sequence ≤ this is known to be gone from the outbox already (saves scanning below it). */
  readonly settledThrough?: number;
  /**
   * What the session sent under a sequence (lane and entry): the ack then
   * costs one removal instead of a read per lane. Only what this server
   * sent, never what a device claims.
   */
  readonly sent?: { sentAs(seq: number): UnsentEntry | undefined };
}

/** Committed status updates, as the relay takes them. */
export interface StatusBatch {
  readonly key: number;
  readonly updates: readonly PdaStatusUpdate[];
}

/** A cumulative ack over at most this many new sequences is applied by point lookups, not range scans. */
const POINT_ACK_SPAN = 64;

export class PdaStore {
  readonly devices: Database<StoredDevice, string>;
  private readonly personDevices: Database<DeviceState, [string, string]>;
  private readonly personActive: Database<string[], string>;
  /** Binary values (CURSOR_BYTES): read and written for every device of every broadcast, twice. */
  private readonly cursors: Database<Buffer, string>;
  /** Binary values (encodeEntry): one written per device copy at append, read back by pumps and acks. */
  private readonly outbox: Database<Buffer, OutboxKey>;
  private readonly bodies: Database<StoredBody, BodyKey>;
  private readonly expiry: Database<number, ExpiryKey>;
  private readonly recipients: Database<StoredRecipient, PairKey>;
  /** Binary values (encodeUnread): one written per ack. */
  private readonly unread: Database<Buffer, [string, number]>;
  private readonly status: Database<StoredStatusBatch, number>;
  /**
   * The process that wrote the last PDA transaction (`pda.writer` 'w'). Processes sharing the data dir
   * (an ingest and a dispatch process both with the channel) write the same rows: a transaction that
   * finds another writer before it drops this process's caches and moves its status key past theirs.
   */
  private readonly writer: Database<string, string>;
  private readonly writerId = `${process.pid}-${randomBytes(6).toString('hex')}`;
  /** Another process wrote since `takeForeignWrites` last asked (seen by a transaction of ours). */
  private foreignWrites = false;
  private nextStatus: number;
  private statusRows: number;
  private outboxRows: number;
  private closed = false;
  private committed: ((fx: TxEffects) => void) | undefined;
  /**
   * Cursors as the transactions so far wrote them (filled at open, updated when a transaction's
   * callback completes; the next callback sees exactly what a read inside it would): the cursor read of
   * every append and ack is a map lookup. One entry per device with a cursor (bounded by the registry).
   * Transactions copy an entry before changing it; a failed transaction clears the whole map (reads go
   * to the database until it fills again).
   */
  private readonly cursorCache = new Map<string, StoredCursor>();
  /** The cache holds every cursor row (true from open until a failed transaction clears it): a miss means no row. */
  private cursorCacheComplete = false;
  /**
   * `pda.person-active` as read inside transactions (routing a recipient at append), at most
   * ACTIVE_CACHE people. Only transactions fill it (a read there sees every change written before it),
   * a change of a person's devices removes the person's entry in the same callback, and a failed
   * transaction clears it all: it never answers with a state the database does not have.
   */
  private readonly activeCache = new Map<string, readonly string[]>();
  /** Decoded bodies by `messageId expiresAt k` (insertion order = age; bounded by BODY_CACHE). */
  private readonly bodyCache = new Map<string, StoredBody>();
  /**
   * Status batches for the relay, by key:
   *
   *   ≤ relayedThrough                  handed to the receipt store
   *   relayedThrough < key < memoryFrom read back from the database (rows from before this process,
   *                                     and batches dropped from memory while the receipt store lagged)
   *   ≥ memoryFrom                      in `recentStatus`, in key order (the newest STATUS_MEMORY
   *                                     updates at most: when over, the oldest batches are dropped
   *                                     and `memoryFrom` moves up)
   */
  private readonly recentStatus: StatusBatch[] = [];
  private recentStatusUpdates = 0;
  private memoryFrom: number;
  private relayedThrough = 0;

  constructor(private readonly env: RootDatabase, private readonly metrics: Metrics) {
    const db = <V, K extends Key>(name: string): Database<V, K> => env.openDB<V, K>({ name, encoding: 'msgpack' });
    // Shared msgpack structures: faster encode/decode of the many same-shaped rows. Only for databases that are
    // read by bounded key ranges or point gets (the structures live under a symbol key in the same database).
    const records = <V, K extends Key>(name: string): Database<V, K> =>
      env.openDB<V, K>({ name, encoding: 'msgpack', sharedStructuresKey: Symbol.for('structures') });
    this.devices = db('pda.devices');
    this.personDevices = db('pda.person-devices');
    this.personActive = db('pda.person-active');
    this.cursors = env.openDB<Buffer, string>({ name: 'pda.cursors', encoding: 'binary' });
    this.outbox = env.openDB<Buffer, OutboxKey>({ name: 'pda.outbox', encoding: 'binary' });
    this.bodies = db('pda.bodies');
    this.expiry = db('pda.expiry');
    this.recipients = records('pda.recipients');
    this.unread = env.openDB<Buffer, [string, number]>({ name: 'pda.unread', encoding: 'binary' });
    this.status = db('pda.status');
    this.writer = env.openDB<string, string>({ name: 'pda.writer', encoding: 'msgpack' });
    let last = 0;
    for (const key of this.status.getKeys({ reverse: true, limit: 1 })) last = key;
    this.nextStatus = last + 1;
    this.memoryFrom = this.nextStatus;
    let updates = 0;
    for (const { value } of this.status.getRange({})) updates += value.u.length / STATUS_FIELDS;
    this.statusRows = updates;
    let rows = 0;
    // Under the write lock, marking this process the last writer: no other process's write can slip
    // between this read of every cursor and the first transaction that relies on it.
    env.transactionSync(() => {
      for (const { key, value } of this.cursors.getRange({})) {
        const cur = decodeCursor(value);
        rows += cur.c;
        this.cursorCache.set(key, cur);
      }
      this.writer.putSync('w', this.writerId);
    });
    this.cursorCacheComplete = true;
    this.outboxRows = rows;
    metrics.pdaOutboxEntries.set(rows);
    metrics.pdaStatusBacklog.set(this.statusRows);
  }

  /** Status updates committed and not yet handed to the receipt store. */
  get statusBacklog(): number {
    return this.statusRows;
  }

  get outboxEntries(): number {
    return this.outboxRows;
  }

  /**
   * Run `fn` in one child transaction (rolled back whole if it throws) and
   * resolve after the commit, with the transaction's effects. Callbacks run
   * in call order, one at a time.
   *
   * Committed is not yet durable: lmdb's overlappingSync (the default on
   * Linux) flushes after the commit, in parallel with later transactions.
   * A process crash loses nothing committed (the page cache has it); an OS
   * crash or power loss can roll back what was not flushed. `durable`
   * waits for the flush too — for appends (a device must never be sent a
   * sequence number that could be assigned again after a power loss) and
   * registry changes. Acks, expiry and relay bookkeeping need not wait:
   * losing them means a resend the devices de-duplicate, or a status relayed
   * twice.
   */
  async write<T>(op: string, fn: (tx: PdaTx) => T, now: number = Date.now(), durable = false): Promise<{ value: T; fx: TxEffects }> {
    if (this.closed) throw new GatewayError('PDA_CLOSED');
    let tx: PdaTx | undefined;
    let statusKey = 0;
    let value: T;
    try {
      value = (await this.env.childTransaction(() => {
        // A fresh context per attempt: the callback's view is what was committed before it.
        this.takeOverFromOtherWriter();
        tx = new PdaTx(now);
        const v = fn(tx);
        for (const [dev, cur] of tx.cursors) {
          this.cursors.putSync(dev, encodeCursor(cur));
          this.cursorCache.set(dev, cur);
        }
        statusKey = 0;
        if (tx.statuses.length > 0) {
          statusKey = this.nextStatus++;
          this.status.putSync(statusKey, { t: now, u: flattenStatuses(tx.statuses) });
          tx.fx.ops++;
        }
        return v;
      }));
    } catch (e) {
      // Rolled back (the callback threw, or the commit failed): what the caches took from it is not in the database.
      this.cursorCache.clear();
      this.cursorCacheComplete = false;
      this.activeCache.clear();
      throw e;
    }
    const done = tx as PdaTx;
    // Here in commit order (lmdb resolves transactions in the order they were written), before the flush
    // wait below: a later non-durable transaction must not overtake this one in the relay's queue.
    if (statusKey !== 0) this.keepStatus({ key: statusKey, updates: done.statuses });
    this.statusRows += done.fx.statuses;
    if (durable) await envFlushed(this.env);
    done.fx.cursors = done.cursors;
    this.outboxRows += done.fx.outboxDelta;
    this.metrics.pdaOutboxEntries.set(this.outboxRows);
    this.metrics.pdaStatusBacklog.set(this.statusRows);
    this.metrics.pdaWriteBatch.observe({ op }, done.fx.ops);
    this.committed?.(done.fx);
    return { value, fx: done.fx };
  }

  /** Called after every commit with its effects (the channel pumps sessions, counts, kicks the status relay). */
  onCommitted(listener: (fx: TxEffects) => void): void {
    this.committed = listener;
  }

  close(): void {
    this.closed = true;
  }

  // ---------------------------------------------------------------- devices

  getDevice(id: string): StoredDevice | undefined {
    return this.devices.get(id);
  }

  putDevice(tx: PdaTx, id: string, rec: StoredDevice, previousPerson?: string): void {
    if (previousPerson !== undefined && previousPerson !== rec.p) {
      this.personDevices.removeSync([previousPerson, id]);
      this.indexActive(tx, previousPerson);
    }
    this.devices.putSync(id, rec);
    this.personDevices.putSync([rec.p, id], rec.s);
    this.indexActive(tx, rec.p);
    tx.fx.ops += 2;
  }

  /** Rewrite a person's active-device list from the person → devices index (registry changes only: rare). */
  private indexActive(tx: PdaTx, personId: string): void {
    const active: string[] = [];
    for (const { key, value } of this.personDevices.getRange({ start: [personId], end: [personId, '\uffff'] })) if (value === 'active') active.push(key[1]);
    if (active.length > 0) this.personActive.putSync(personId, active);
    else this.personActive.removeSync(personId);
    this.activeCache.delete(personId);
    tx.fx.ops++;
  }

  /** Device ids registered to a person, any state. */
  devicesOf(personId: string): string[] {
    const out: string[] = [];
    for (const key of this.personDevices.getKeys({ start: [personId], end: [personId, '\uffff'] })) out.push(key[1]);
    return out;
  }

  /** Active device ids of a person: one point read (the routing hot path; a range read cost twice as much). */
  activeDevicesOf(personId: string): readonly string[] {
    return this.personActive.get(personId) ?? [];
  }

  /** `activeDevicesOf` inside a transaction (the append path): cached, see `activeCache`. */
  activeDevicesIn(_tx: PdaTx, personId: string): readonly string[] {
    let list = this.activeCache.get(personId);
    if (list === undefined) {
      list = this.personActive.get(personId) ?? NO_DEVICES;
      if (this.activeCache.size >= ACTIVE_CACHE) this.activeCache.clear();
      this.activeCache.set(personId, list);
    }
    return list;
  }

  /**
   * Before appending `count` recipients of message `m` with indices in lo..hi in this transaction:
   * which of them have a recipient row, with one key range read when the indices are close together
   * (a chunk of a broadcast). Otherwise nothing is prefetched and `append` reads per recipient.
   */
  prefetchRecipients(tx: PdaTx, m: string, lo: number, hi: number, count: number): void {
    if (hi < lo || hi - lo > 4 * count + 64) return;
    const have = new Set<number>();
    for (const key of this.recipients.getKeys({ start: [m, lo], end: [m, hi + 1] })) have.add(key[1]);
    tx.recipientsKnown = { m, lo, hi, have };
  }

  private hasRecipient(tx: PdaTx, m: string, i: number): boolean {
    const k = tx.recipientsKnown;
    if (k !== undefined && k.m === m && i >= k.lo && i <= k.hi) return k.have.has(i);
    return this.recipients.get([m, i]) !== undefined;
  }

  /** Devices by id from `after` (exclusive), at most `limit`. */
  scanDevices(after: string | undefined, limit: number): Array<{ id: string; device: StoredDevice }> {
    const out: Array<{ id: string; device: StoredDevice }> = [];
    for (const { key, value } of this.devices.getRange({ ...(after !== undefined ? { start: after } : {}), limit: limit + 1 })) {
      if (key === after) continue;
      if (out.length >= limit) break;
      out.push({ id: key, device: value });
    }
    return out;
  }

  cursorOf(deviceId: string): StoredCursor | undefined {
    const b = this.cursors.get(deviceId);
    return b === undefined ? undefined : decodeCursor(b);
  }

  // ---------------------------------------------------------------- outbox (inside a transaction)

  private cursor(tx: PdaTx, dev: string): StoredCursor {
    let cur = tx.cursors.get(dev);
    if (!cur) {
      // A copy: the cached object is what earlier transactions wrote; this one may still roll back.
      const known = this.cursorCache.get(dev) ?? (this.cursorCacheComplete ? NEW_CURSOR : this.cursorOf(dev) ?? NEW_CURSOR);
      cur = { n: known.n, c: known.c, s: known.s };
      tx.cursors.set(dev, cur);
    }
    return cur;
  }

  private statusRow(tx: PdaTx, messageId: string, index: number, state: PdaStatusState, error?: string): void {
    tx.statuses.push(error === undefined ? { messageId, index, state, at: tx.now } : { messageId, index, state, at: tx.now, error });
    tx.fx.statuses++;
  }

  private deviceStatusRow(tx: PdaTx, messageId: string, index: number, state: PdaStatusState, deviceId: string, seq: number): void {
    tx.statuses.push({ messageId, index, state, at: tx.now, deviceId, seq });
    tx.fx.statuses++;
  }

  /** The body variant of this message text: an existing one (same message, expiry and text) or a new one, written now. */
  private bodyFor(tx: PdaTx, m: PdaMessage): { readonly k: number; readonly body: StoredBody } {
    // The hot path (every recipient after the first of a text in this transaction): a list already read.
    const last = tx.lastBodies;
    const known = last !== undefined && last.m === m.messageId && last.x === m.expiresAt ? last.list : tx.bodies.get(`${m.messageId} ${m.expiresAt}`);
    if (known !== undefined) for (const v of known) if (sameText(v.body, m)) return v;
    return this.bodyVariant(tx, m);
  }

  /** The cold half of `bodyFor`: the variants stored for (messageId, expiresAt), read once per transaction, or a new one. */
  private bodyVariant(tx: PdaTx, m: PdaMessage): { readonly k: number; readonly body: StoredBody } {
    const tk = `${m.messageId} ${m.expiresAt}`;
    let known = tx.bodies.get(tk);
    if (known === undefined) {
      known = [];
      for (const { key, value } of this.bodies.getRange({ start: [m.messageId, m.expiresAt, 0], end: [m.messageId, m.expiresAt, MAX_KEY_SEQ] })) {
        known.push({ k: key[2], body: value });
      }
      tx.bodies.set(tk, known);
    }
    tx.lastBodies = { m: m.messageId, x: m.expiresAt, list: known };
    for (const v of known) if (sameText(v.body, m)) return v;
    const k = known.length === 0 ? 0 : (known[known.length - 1] as { k: number }).k + 1;
    const v = { k, body: { c: m.classification, u: m.senderUnit, b: m.body } };
    known.push(v);
    this.bodies.putSync([m.messageId, m.expiresAt, k], v.body);
    tx.fx.ops++;
    return v;
  }

  /**
   * Append one recipient's message to `devices` (already resolved to the
   * active ones). Returns false when this recipient was appended before
   * (idempotent redelivery): nothing is written.
   */
  append(tx: PdaTx, m: PdaMessage, devices: readonly string[], outboxMax: number, noDeviceReason: string): boolean {
    const rkey: PairKey = [m.messageId, m.index];
    if (this.hasRecipient(tx, m.messageId, m.index)) return false;
    let open = 0;
    const copies: Array<string | number> = [];
    if (m.expiresAt <= tx.now) {
      this.statusRow(tx, m.messageId, m.index, 'expired', 'validity passed before it reached a PDA outbox');
    } else {
      let takers = devices.length;
      for (const dev of devices) if (this.cursor(tx, dev).c >= outboxMax) takers--;
      // The body is written with the first copy (never for a recipient nobody can take).
      const variant = takers === 0 ? undefined : this.bodyFor(tx, m);
      const body = variant?.body;
      const entry: StoredEntry | undefined = variant === undefined ? undefined
        : { m: m.messageId, i: m.index, t: m.createdAt ?? tx.now, x: m.expiresAt, a: tx.now, k: variant.k, o: takers === 1 ? 1 : 0 };
      const bytes = entry === undefined ? undefined : encodeEntry(entry);
      let full = 0;
      for (const dev of devices) {
        const cur = this.cursor(tx, dev);
        if (entry === undefined || bytes === undefined || cur.c >= outboxMax) {
          full++;
          continue;
        }
        const seq = cur.n++;
        cur.c++;
        this.outbox.putSync([dev, m.priority, seq], bytes);
        copies.push(dev, m.priority, seq);
        const fresh: UnsentEntry = { seq, lane: m.priority, entry, body };
        const list = tx.fx.appended.get(dev);
        if (list) list.push(fresh);
        else tx.fx.appended.set(dev, [fresh]);
        tx.fx.outboxDelta++;
        tx.fx.ops++;
        open++;
      }
      tx.fx.refusedFull += full;
      if (devices.length === 0) tx.fx.refusedNoDevice++;
      if (open > 0) this.statusRow(tx, m.messageId, m.index, 'queued');
      else {
        const error = devices.length === 0 ? noDeviceReason : `every PDA outbox of the recipient is full (${outboxMax} entries)`;
        this.statusRow(tx, m.messageId, m.index, 'undeliverable', error);
      }
    }
    this.recipients.putSync(rkey, { n: open, d: 0, x: m.expiresAt, c: copies });
    const known = tx.recipientsKnown;
    if (known !== undefined && known.m === m.messageId) known.have.add(m.index);
    tx.fx.ops++;
    const ek = `${m.messageId} ${m.expiresAt}`;
    if (!tx.expiryRows.has(ek)) {
      // One row for all the recipients of a message with this expiry: a broadcast writes one, not thousands.
      // Written again by a later chunk of the same message: it restarts the (idempotent) examination at 0.
      tx.expiryRows.add(ek);
      this.expiry.putSync([m.expiresAt, m.messageId], 0);
      tx.fx.ops++;
    }
    return true;
  }

  /** A copy left a device's outbox without being delivered (withdrawn): maybe the recipient's final state. */
  private copyClosed(tx: PdaTx, e: StoredEntry, state: 'undeliverable', error: string): void {
    const rkey: PairKey = [e.m, e.i];
    const r = this.recipients.get(rkey);
    if (!r) return;
    const next: StoredRecipient = { n: Math.max(0, r.n - 1), d: r.d, x: r.x, c: r.c };
    this.recipients.putSync(rkey, next);
    tx.fx.ops++;
    if (next.n === 0 && next.d === 0) this.statusRow(tx, e.m, e.i, state, error);
  }

  private entryGone(tx: PdaTx, dev: string): void {
    const cur = this.cursor(tx, dev);
    cur.c = Math.max(0, cur.c - 1);
    tx.fx.outboxDelta--;
    tx.fx.ops++;
  }

  /** The entry [dev, lane, seq] was just removed from the outbox because the device acknowledged it. */
  private acked(tx: PdaTx, dev: string, seq: number, e: StoredEntry): void {
    this.entryGone(tx, dev);
    this.unread.putSync([dev, seq], encodeUnread(e.m, e.i, e.x));
    tx.fx.ops++;
    tx.fx.acked++;
    tx.fx.latencies.push(Math.max(0, tx.now - e.a) / 1000);
    if (e.o === 1) {
      // The only copy, acknowledged once (its removal was the check): delivered, and nothing more can happen to it.
      this.deviceStatusRow(tx, e.m, e.i, 'delivered-to-device', dev, seq);
      return;
    }
    const rkey: PairKey = [e.m, e.i];
    const r = this.recipients.get(rkey);
    if (!r) return;
    const first = r.d === 0;
    this.recipients.putSync(rkey, { n: Math.max(0, r.n - 1), d: 1, x: r.x, c: r.c });
    tx.fx.ops++;
    if (first) this.deviceStatusRow(tx, e.m, e.i, 'delivered-to-device', dev, seq);
  }

  /** Apply one ACK: cumulative (every seq ≤ it) and selective. Sequences not in the outbox are ignored. */
  ack(tx: PdaTx, w: AckWork): void {
    const dev = w.deviceId;
    const from = Math.max(0, w.settledThrough ?? 0);
    if (w.cumulative > from) {
      if (w.cumulative - from <= POINT_ACK_SPAN) {
        // The common case (a session acking what it was just sent): a few point operations beat three range scans.
        for (let seq = from + 1; seq <= w.cumulative; seq++) this.ackOne(tx, dev, seq, w.sent?.sentAs(seq));
      } else {
        for (let lane = 0; lane < LANES; lane++) {
          const hits: Array<{ seq: number; e: StoredEntry }> = [];
          for (const { key, value } of this.outbox.getRange({ start: [dev, lane, from + 1], end: [dev, lane, w.cumulative + 1] })) {
            hits.push({ seq: key[2], e: decodeEntry(value) });
          }
          for (const h of hits) {
            this.outbox.removeSync([dev, lane, h.seq]);
            this.acked(tx, dev, h.seq, h.e);
          }
        }
      }
    }
    for (const seq of w.selective) this.ackOne(tx, dev, seq, w.sent?.sentAs(seq));
  }

  private ackOne(tx: PdaTx, dev: string, seq: number, sent: UnsentEntry | undefined): void {
    if (sent !== undefined) {
      // Sent by this server under [dev, lane, seq]: entries never change, so removing the key is the whole check.
      if (this.outbox.removeSync([dev, sent.lane, seq])) this.acked(tx, dev, seq, sent.entry);
      return;
    }
    for (let lane = LANES - 1; lane >= 0; lane--) {
      const b = this.outbox.get([dev, lane, seq]);
      if (b) {
        this.outbox.removeSync([dev, lane, seq]);
        this.acked(tx, dev, seq, decodeEntry(b));
        return;
      }
    }
  }

  /** Read reports for acknowledged sequences; others are ignored. */
  read(tx: PdaTx, dev: string, seqs: readonly number[]): void {
    for (const seq of seqs) {
      const b = this.unread.get([dev, seq]);
      if (!b) continue;
      const u = decodeUnread(b);
      this.unread.removeSync([dev, seq]);
      tx.fx.ops++;
      this.deviceStatusRow(tx, u.m, u.i, 'read', dev, seq);
    }
  }

  noteSent(tx: PdaTx, dev: string, highest: number): void {
    const cur = this.cursor(tx, dev);
    if (highest > cur.s) cur.s = highest;
  }

  /**
   * Remove everything waiting for a device (revoked, lost, reassigned): its
   * copies count as not delivered; a recipient left with no open copy and
   * no delivery becomes undeliverable with `why`.
   */
  withdraw(tx: PdaTx, dev: string, why: string): number {
    let n = 0;
    for (let lane = 0; lane < LANES; lane++) {
      const hits: Array<{ seq: number; e: StoredEntry }> = [];
      for (const { key, value } of this.outbox.getRange({ start: [dev, lane, 0], end: [dev, lane, MAX_KEY_SEQ + 1] })) hits.push({ seq: key[2], e: decodeEntry(value) });
      for (const h of hits) {
        this.outbox.removeSync([dev, lane, h.seq]);
        this.entryGone(tx, dev);
        this.copyClosed(tx, h.e, 'undeliverable', why);
        tx.fx.withdrawn++;
        n++;
      }
    }
    const unread: number[] = [];
    for (const key of this.unread.getKeys({ start: [dev, 0], end: [dev, MAX_KEY_SEQ + 1] })) unread.push(key[1]);
    for (const seq of unread) this.unread.removeSync([dev, seq]);
    tx.fx.ops += unread.length;
    return n;
  }

  /**
   * Expire what is due at `tx.now`, examining at most `limit` recipient rows
   * (a message with more recipients resumes where it stopped, in the next
   * transaction). For each recipient past its expiry: its copies still in an
   * outbox leave it (sessions are told, to free window slots), its unread
   * rows go, and if no device acknowledged it while a copy was open it is
   * reported expired. Returns the rows examined (≥ `limit`: maybe more due).
   */
  expireDue(tx: PdaTx, limit: number): number {
    const due: Array<{ key: ExpiryKey; from: number }> = [];
    for (const { key, value } of this.expiry.getRange({ start: [0], end: [tx.now + 1], limit })) due.push({ key, from: value });
    let budget = limit;
    let examined = 0;
    for (const { key, from } of due) {
      if (budget <= 0) break;
      const [x, m] = key;
      const rows: Array<{ key: PairKey; r: StoredRecipient }> = [];
      for (const { key: rk, value } of this.recipients.getRange({ start: [m, from], end: [m, MAX_KEY_SEQ], limit: budget })) rows.push({ key: rk, r: value });
      budget -= Math.max(1, rows.length);
      examined += Math.max(1, rows.length);
      for (const { key: rk, r } of rows) {
        if (r.x > tx.now) continue; // a later expiry of the same message: its own row handles it
        this.expireRecipient(tx, rk, r);
      }
      const last = rows[rows.length - 1];
      if (last !== undefined && budget <= 0) {
        this.expiry.putSync(key, last.key[1] + 1);
        tx.fx.ops++;
        break;
      }
      // Done with this message and expiry: its row and its bodies go.
      this.expiry.removeSync(key);
      const bodies: BodyKey[] = [];
      for (const bk of this.bodies.getKeys({ start: [m, x, 0], end: [m, x, MAX_KEY_SEQ] })) bodies.push(bk);
      for (const bk of bodies) this.bodies.removeSync(bk);
      tx.fx.ops += 1 + bodies.length;
    }
    return examined;
  }

  private expireRecipient(tx: PdaTx, rk: PairKey, r: StoredRecipient): void {
    let closed = 0;
    for (let j = 0; j + 2 < r.c.length; j += 3) {
      const dev = r.c[j] as string;
      const lane = r.c[j + 1] as number;
      const seq = r.c[j + 2] as number;
      if (this.outbox.removeSync([dev, lane, seq])) {
        this.entryGone(tx, dev);
        tx.fx.expired++;
        closed++;
        const list = tx.fx.expiredSeqs.get(dev);
        if (list) list.push(seq);
        else tx.fx.expiredSeqs.set(dev, [seq]);
      } else if (this.unread.removeSync([dev, seq])) {
        tx.fx.ops++;
      }
    }
    this.recipients.removeSync(rk);
    tx.fx.ops++;
    if (closed > 0 && r.d === 0) this.statusRow(tx, rk[0], rk[1], 'expired', 'no PDA acknowledged it before its expiry');
  }

  // ---------------------------------------------------------------- outbox (reads, committed state)

  /** Lowest sequence still in the device's outbox, else the next one to be assigned: everything below is settled. */
  floor(dev: string): number {
    let min = Infinity;
    for (let lane = 0; lane < LANES; lane++) {
      for (const key of this.outbox.getKeys({ start: [dev, lane, 0], end: [dev, lane, MAX_KEY_SEQ + 1], limit: 1 })) {
        if (key[2] < min) min = key[2];
      }
    }
    if (min !== Infinity) return min;
    return this.cursorOf(dev)?.n ?? 1;
  }

  /** Up to `limit` entries of one lane with a sequence above `after`, in sequence order. */
  unsent(dev: string, lane: number, after: number, limit: number): UnsentEntry[] {
    const out: UnsentEntry[] = [];
    for (const { key, value } of this.outbox.getRange({ start: [dev, lane, after + 1], end: [dev, lane, MAX_KEY_SEQ + 1], limit })) {
      out.push({ seq: key[2], lane, entry: decodeEntry(value) });
    }
    return out;
  }

  /** The entry with this sequence (any lane), committed state. */
  entry(dev: string, seq: number): UnsentEntry | undefined {
    for (let lane = LANES - 1; lane >= 0; lane--) {
      const b = this.outbox.get([dev, lane, seq]);
      if (b) return { seq, lane, entry: decodeEntry(b) };
    }
    return undefined;
  }

  /** The text of an entry (cached: the copies of a broadcast share one object); undefined once the message expired. */
  bodyOf(e: StoredEntry): StoredBody | undefined {
    const ck = `${e.m} ${e.x} ${e.k}`;
    let b = this.bodyCache.get(ck);
    if (b === undefined) {
      b = this.bodies.get([e.m, e.x, e.k]);
      if (b === undefined) return undefined;
      setBounded(this.bodyCache, ck, b, BODY_CACHE);
    }
    return b;
  }

  // ---------------------------------------------------------------- status relay

  /** A transaction with status updates committed (called in commit order: keys only grow). */
  private keepStatus(batch: StatusBatch): void {
    this.recentStatus.push(batch);
    this.recentStatusUpdates += batch.updates.length;
    while (this.recentStatusUpdates > STATUS_MEMORY && this.recentStatus.length > 1) {
      this.recentStatusUpdates -= (this.recentStatus.shift() as StatusBatch).updates.length;
      this.memoryFrom = (this.recentStatus[0] as StatusBatch).key;
    }
  }

  /**
   * The next committed status batches not yet relayed, whole, in key order,
   * until at least `minUpdates` updates (or none left). The same ones again
   * until `removeStatus` says they were relayed.
   */
  readStatus(minUpdates: number): StatusBatch[] {
    const out: StatusBatch[] = [];
    let n = 0;
    if (this.relayedThrough + 1 < this.memoryFrom) {
      // Only below memoryFrom: what is above is in memory (or not yet resolved), never read twice.
      for (const { key, value } of this.status.getRange({ start: this.relayedThrough + 1, end: this.memoryFrom })) {
        const updates = unflattenStatuses(value);
        out.push({ key, updates });
        n += updates.length;
        if (n >= minUpdates) return out;
      }
      // Nothing (more) below memoryFrom; keys never written there were transactions rolled back.
      if (out.length === 0) this.relayedThrough = this.memoryFrom - 1;
    }
    for (const b of this.recentStatus) {
      out.push(b);
      n += b.updates.length;
      if (n >= minUpdates) break;
    }
    return out;
  }

  /**
   * Has another process written PDA rows (appends for our devices, say)
   * since the last call? Then sessions must look at their outboxes again:
   * commits of another process do not reach this one's sessions otherwise.
   */
  takeForeignWrites(): boolean {
    const seen = this.foreignWrites || this.writer.get('w') !== this.writerId;
    this.foreignWrites = false;
    return seen;
  }

  /** Inside a write transaction: another process wrote PDA rows since our last transaction? Then forget what we cached. */
  private takeOverFromOtherWriter(): void {
    if (this.writer.get('w') === this.writerId) return;
    this.foreignWrites = true;
    this.cursorCache.clear();
    this.cursorCacheComplete = false;
    this.activeCache.clear();
    for (const key of this.status.getKeys({ reverse: true, limit: 1 })) if (key >= this.nextStatus) this.nextStatus = key + 1;
    this.writer.putSync('w', this.writerId);
  }

  /** The relay has handed these batches (from `readStatus`) to the receipt store: remove them. */
  async removeStatus(batches: readonly StatusBatch[]): Promise<void> {
    if (batches.length === 0) return;
    let updates = 0;
    const done = new Set<StatusBatch>(batches);
    for (const b of batches) {
      if (b.key > this.relayedThrough) this.relayedThrough = b.key;
      updates += b.updates.length;
    }
    while (this.recentStatus.length > 0 && done.has(this.recentStatus[0] as StatusBatch)) {
      this.recentStatusUpdates -= (this.recentStatus.shift() as StatusBatch).updates.length;
    }
    await this.env.childTransaction(() => {
      for (const b of batches) this.status.removeSync(b.key);
    });
    this.statusRows -= updates;
    this.metrics.pdaStatusBacklog.set(this.statusRows);
  }
}

/**
 * Outbox entry value: o (u8), i (u32), k (u32), t, x, a (f64: epoch ms, exact below 2^53), then the
 * message id (printable ASCII, `deliver` checks it) to the end. Hand-written like the cursors: written
 * for every device copy, and msgpack encoding was a third of the cost of those puts in bench:pda's
 * measured broadcast.
 */
const ENTRY_FIXED = 33;

function encodeEntry(e: StoredEntry): Buffer {
  const b = Buffer.allocUnsafe(ENTRY_FIXED + e.m.length);
  b[0] = e.o;
  b.writeUInt32BE(e.i, 1);
  b.writeUInt32BE(e.k, 5);
  b.writeDoubleBE(e.t, 9);
  b.writeDoubleBE(e.x, 17);
  b.writeDoubleBE(e.a, 25);
  b.write(e.m, ENTRY_FIXED, 'latin1');
  return b;
}

function decodeEntry(b: Buffer): StoredEntry {
  // Same field order as the literal in `append`: one hidden class for every entry.
  return {
    m: b.toString('latin1', ENTRY_FIXED),
    i: b.readUInt32BE(1),
    t: b.readDoubleBE(9),
    x: b.readDoubleBE(17),
    a: b.readDoubleBE(25),
    k: b.readUInt32BE(5),
    o: b[0] === 1 ? 1 : 0,
  };
}

/** Unread marker value: i (u32), x (f64), then the message id (ASCII). */
const UNREAD_FIXED = 12;

function encodeUnread(m: string, i: number, x: number): Buffer {
  const b = Buffer.allocUnsafe(UNREAD_FIXED + m.length);
  b.writeUInt32BE(i, 0);
  b.writeDoubleBE(x, 4);
  b.write(m, UNREAD_FIXED, 'latin1');
  return b;
}

function decodeUnread(b: Buffer): StoredUnread {
  return { m: b.toString('latin1', UNREAD_FIXED), i: b.readUInt32BE(0), x: b.readDoubleBE(4) };
}

/** A stored body variant carries this message's text, sender unit and classification. */
function sameText(b: StoredBody, m: PdaMessage): boolean {
  return b.b === m.body && b.u === m.senderUnit && b.c === m.classification;
}

/** Cursor value: n, c, s as u32 big-endian. */
const CURSOR_BYTES = 12;

function encodeCursor(c: StoredCursor): Buffer {
  const b = Buffer.allocUnsafe(CURSOR_BYTES);
  b.writeUInt32BE(c.n, 0);
  b.writeUInt32BE(c.c, 4);
  b.writeUInt32BE(c.s, 8);
  return b;
}

function decodeCursor(b: Buffer): StoredCursor {
  return { n: b.readUInt32BE(0), c: b.readUInt32BE(4), s: b.readUInt32BE(8) };
}

function flattenStatuses(updates: readonly PdaStatusUpdate[]): Array<string | number | null> {
  const out = new Array<string | number | null>(updates.length * STATUS_FIELDS);
  let j = 0;
  for (const u of updates) {
    out[j++] = STATE_CODE[u.state];
    out[j++] = u.messageId;
    out[j++] = u.index;
    out[j++] = u.deviceId ?? null;
    out[j++] = u.seq ?? null;
    out[j++] = u.error ?? null;
  }
  return out;
}

function unflattenStatuses(row: StoredStatusBatch): PdaStatusUpdate[] {
  const out: PdaStatusUpdate[] = [];
  const u = row.u;
  for (let j = 0; j + STATUS_FIELDS <= u.length; j += STATUS_FIELDS) {
    const d = u[j + 3];
    const q = u[j + 4];
    const e = u[j + 5];
    out.push({
      messageId: u[j + 1] as string,
      index: u[j + 2] as number,
      state: STATE_CODES[u[j] as number] as PdaStatusState,
      at: row.t,
      ...(typeof d === 'string' ? { deviceId: d } : {}),
      ...(typeof q === 'number' ? { seq: q } : {}),
      ...(typeof e === 'string' ? { error: e } : {}),
    });
  }
  return out;
}
