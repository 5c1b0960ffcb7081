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
 *   pda.person-devices  [personId, deviceId] → state      who carries which device (state: no device read to route)
 *   pda.cursors         deviceId → { n: next seq, c: entries, s: highest seq ever sent }
 *   pda.outbox          [deviceId, lane, seq] → entry     lane = priority (0..2)
 *   pda.expiry          [expiresAt, kind, a, b] → lane    kind 0 outbox [dev, seq],
 *                                                        kind 1 unread [dev, seq],
 *                                                        kind 2 recipients of a message [messageId, 0]
 *                                                        (one row per message and expiry, not per recipient)
 *   pda.recipients      [messageId, index] → { n: open copies, d: delivered, x }
 *   pda.unread          [deviceId, seq] → { m, i, x }     acked, waiting for a read report
 *   pda.status          n → status update                 waiting for the receipt store
 *
 * Sequence numbers are assigned per device at append (`cursor.n`), so they
 * follow append order whatever the priority; the outbox key puts the lane
 * before the sequence so a session can read "the next unsent entry of the
 * highest lane" with one range read. A recipient row lives until the
 * message's expiry: it counts the device copies still open (the first ack
 * reports delivered-to-device, the last copy expiring without any ack
 * reports expired) and it makes `deliver` idempotent (a job redelivered by
 * the queue after a crash appends nothing twice).
 *
 * Status updates are written to `pda.status` in the same transaction as the
 * change they describe and relayed to the receipt store afterwards
 * (status-relay.ts): a crash between the two loses nothing.
 */
import type { Database, Key, RootDatabase } from 'lmdb';
import { GatewayError } from '../core/errors.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { DeviceState, PdaMessage, PdaStatusState, PdaStatusUpdate } from './types.js';

/** Named databases the channel opens in the environment (size `maxDbs` accordingly). */
export const PDA_DBS = 8;
export const LANES = 3;
const MAX_KEY_SEQ = 0xffff_ffff;

const KIND_OUTBOX = 0;
const KIND_UNREAD = 1;
const KIND_RECIPIENT = 2;

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

export interface StoredEntry {
  readonly m: string;
  readonly i: number;
  /** createdAt */
  readonly t: number;
  /** expiresAt */
  readonly x: number;
  /** appendedAt */
  readonly a: number;
  /** classification, sender unit, body */
  readonly c: string;
  readonly u: string;
  readonly b: string;
}

interface StoredRecipient {
  n: number;
  d: 0 | 1;
  readonly x: number;
}

interface StoredUnread {
  readonly m: string;
  readonly i: number;
  readonly x: number;
}

interface StoredStatus {
  readonly m: string;
  readonly i: number;
  readonly s: PdaStatusState;
  readonly t: number;
  readonly d?: string;
  readonly q?: number;
  readonly e?: string;
}

type OutboxKey = [string, number, number];
type ExpiryKey = [number, number, string, number];
type PairKey = [string, number];

/** What a committed transaction did, for the side effects that follow it (pumps, metrics, relay). */
export class TxEffects {
  statuses = 0;
  /** Devices whose outbox gained entries → the first sequence appended in this transaction. */
  readonly appended = new Map<string, number>();
  /** Device → sequences that left the outbox without an ack from the live session (expired): frees window slots. */
  readonly expiredSeqs = new Map<string, number[]>();
  /** Append → ack, seconds. */
  readonly latencies: number[] = [];
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
  /** `messageId expiresAt` whose recipients' expiry row this transaction wrote already. */
  readonly recipientExpiry = new Set<string>();
  constructor(readonly now: number) {}
}

export interface UnsentEntry {
  readonly seq: number;
  readonly lane: number;
  readonly entry: StoredEntry;
}

export interface AckWork {
  readonly deviceId: string;
  readonly cumulative: number;
  readonly selective: readonly number[];
  /** Every sequence ≤ this is known to be gone from the outbox already (saves scanning below it). */
  readonly settledThrough?: number;
  /** Lane of sequences the session has in flight (saves probing the lanes). */
  readonly laneOf?: (seq: number) => number | undefined;
}

/** A cumulative ack over at most this many new sequences is applied by point lookups, not range scans. */
const POINT_ACK_SPAN = 64;

export class PdaStore {
  readonly devices: Database<StoredDevice, string>;
  private readonly personDevices: Database<DeviceState, [string, string]>;
  private readonly cursors: Database<StoredCursor, string>;
  private readonly outbox: Database<StoredEntry, OutboxKey>;
  private readonly expiry: Database<number, ExpiryKey>;
  private readonly recipients: Database<StoredRecipient, PairKey>;
  private readonly unread: Database<StoredUnread, [string, number]>;
  private readonly status: Database<StoredStatus, number>;
  private nextStatus: number;
  private statusRows: number;
  private outboxRows: number;
  private closed = false;
  private committed: ((fx: TxEffects) => void) | undefined;

  constructor(private readonly env: RootDatabase, private readonly metrics: Metrics) {
    const db = <V, K extends Key>(name: string): Database<V, K> => env.openDB<V, K>({ name, encoding: 'msgpack' });
    // Shared msgpack structures: faster encode/decode of the many same-shaped rows. Only for databases that are
    // read by bounded key ranges or point gets (the structures live under a symbol key in the same database).
    const records = <V, K extends Key>(name: string): Database<V, K> =>
      env.openDB<V, K>({ name, encoding: 'msgpack', sharedStructuresKey: Symbol.for('structures') });
    this.devices = db('pda.devices');
    this.personDevices = db('pda.person-devices');
    this.cursors = db('pda.cursors');
    this.outbox = records('pda.outbox');
    this.expiry = db('pda.expiry');
    this.recipients = records('pda.recipients');
    this.unread = records('pda.unread');
    this.status = db('pda.status');
    let last = 0;
    for (const key of this.status.getKeys({ reverse: true, limit: 1 })) last = key;
    this.nextStatus = last + 1;
    this.statusRows = this.status.getCount();
    let rows = 0;
    for (const { value } of this.cursors.getRange({})) rows += value.c;
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
    const value = (await this.env.childTransaction(() => {
      // A fresh context per attempt: the callback's view is what was committed before it.
      tx = new PdaTx(now);
      const v = fn(tx);
      for (const [dev, cur] of tx.cursors) this.cursors.putSync(dev, cur);
      return v;
    })) as T;
    if (durable) await this.env.flushed;
    const done = tx as PdaTx;
    this.outboxRows += done.fx.outboxDelta;
    this.statusRows += done.fx.statuses;
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
    if (previousPerson !== undefined && previousPerson !== rec.p) this.personDevices.removeSync([previousPerson, id]);
    this.devices.putSync(id, rec);
    this.personDevices.putSync([rec.p, id], rec.s);
    tx.fx.ops += 2;
  }

  /** Device ids registered to a person, any state. */
  devicesOf(personId: string): string[] {
    const out: string[] = [];
    for (const key of this.personDevices.getKeys({ start: [personId], end: [personId, '\uffff'] })) out.push(key[1]);
    return out;
  }

  /** Active device ids of a person: one range read of the index, no device record decoded (the routing hot path). */
  activeDevicesOf(personId: string): string[] {
    const out: string[] = [];
    for (const { key, value } of this.personDevices.getRange({ start: [personId], end: [personId, '\uffff'] })) if (value === 'active') out.push(key[1]);
    return out;
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
    return this.cursors.get(deviceId);
  }

  // ---------------------------------------------------------------- outbox (inside a transaction)

  private cursor(tx: PdaTx, dev: string): StoredCursor {
    let cur = tx.cursors.get(dev);
    if (!cur) {
      const stored = this.cursors.get(dev);
      cur = stored ? { n: stored.n, c: stored.c, s: stored.s } : { n: 1, c: 0, s: 0 };
      tx.cursors.set(dev, cur);
    }
    return cur;
  }

  private statusRow(tx: PdaTx, u: Omit<PdaStatusUpdate, 'at'>): void {
    const row: StoredStatus = {
      m: u.messageId, i: u.index, s: u.state, t: tx.now,
      ...(u.deviceId !== undefined ? { d: u.deviceId } : {}),
      ...(u.seq !== undefined ? { q: u.seq } : {}),
      ...(u.error !== undefined ? { e: u.error } : {}),
    };
    this.status.putSync(this.nextStatus++, row);
    tx.fx.statuses++;
    tx.fx.ops++;
  }

  /**
   * Append one recipient's message to `devices` (already resolved to the
   * active ones). Returns false when this recipient was appended before
   * (idempotent redelivery): nothing is written.
   */
  append(tx: PdaTx, m: PdaMessage, devices: readonly string[], outboxMax: number, noDeviceReason: string): boolean {
    const rkey: PairKey = [m.messageId, m.index];
    if (this.recipients.get(rkey) !== undefined) return false;
    let open = 0;
    if (m.expiresAt <= tx.now) {
      this.statusRow(tx, { messageId: m.messageId, index: m.index, state: 'expired', error: 'validity passed before it reached a PDA outbox' });
    } else {
      const entry: StoredEntry = {
        m: m.messageId, i: m.index, t: m.createdAt ?? tx.now, x: m.expiresAt, a: tx.now, c: m.classification, u: m.senderUnit, b: m.body,
      };
      let full = 0;
      for (const dev of devices) {
        const cur = this.cursor(tx, dev);
        if (cur.c >= outboxMax) {
          full++;
          continue;
        }
        const seq = cur.n++;
        cur.c++;
        this.outbox.putSync([dev, m.priority, seq], entry);
        this.expiry.putSync([m.expiresAt, KIND_OUTBOX, dev, seq], m.priority);
        if (!tx.fx.appended.has(dev)) tx.fx.appended.set(dev, seq);
        tx.fx.outboxDelta++;
        tx.fx.ops += 2;
        open++;
      }
      tx.fx.refusedFull += full;
      if (devices.length === 0) tx.fx.refusedNoDevice++;
      if (open > 0) this.statusRow(tx, { messageId: m.messageId, index: m.index, state: 'queued' });
      else {
        const error = devices.length === 0 ? noDeviceReason : `every PDA outbox of the recipient is full (${outboxMax} entries)`;
        this.statusRow(tx, { messageId: m.messageId, index: m.index, state: 'undeliverable', error });
      }
    }
    this.recipients.putSync(rkey, { n: open, d: 0, x: m.expiresAt });
    tx.fx.ops++;
    const ek = `${m.messageId} ${m.expiresAt}`;
    if (!tx.recipientExpiry.has(ek)) {
      // One row for all the recipients of a message with this expiry: a broadcast writes one, not thousands.
      tx.recipientExpiry.add(ek);
      this.expiry.putSync([m.expiresAt, KIND_RECIPIENT, m.messageId, 0], 0);
      tx.fx.ops++;
    }
    return true;
  }

  /** A copy left a device's outbox without being delivered: maybe the recipient's final state. */
  private copyClosed(tx: PdaTx, e: StoredEntry, state: 'expired' | 'undeliverable', error: string): void {
    const rkey: PairKey = [e.m, e.i];
    const r = this.recipients.get(rkey);
    if (!r) return;
    const next: StoredRecipient = { n: Math.max(0, r.n - 1), d: r.d, x: r.x };
    this.recipients.putSync(rkey, next);
    tx.fx.ops++;
    if (next.n === 0 && next.d === 0) this.statusRow(tx, { messageId: e.m, index: e.i, state, error });
  }

  private removeEntry(tx: PdaTx, dev: string, lane: number, seq: number, e: StoredEntry): void {
    this.outbox.removeSync([dev, lane, seq]);
    this.expiry.removeSync([e.x, KIND_OUTBOX, dev, seq]);
    const cur = this.cursor(tx, dev);
    cur.c = Math.max(0, cur.c - 1);
    tx.fx.outboxDelta--;
    tx.fx.ops += 2;
  }

  private acked(tx: PdaTx, dev: string, lane: number, seq: number, e: StoredEntry): void {
    this.removeEntry(tx, dev, lane, seq, e);
    this.unread.putSync([dev, seq], { m: e.m, i: e.i, x: e.x });
    this.expiry.putSync([e.x, KIND_UNREAD, dev, seq], 0);
    tx.fx.ops += 2;
    tx.fx.acked++;
    tx.fx.latencies.push(Math.max(0, tx.now - e.a) / 1000);
    const rkey: PairKey = [e.m, e.i];
    const r = this.recipients.get(rkey);
    if (!r) return;
    const first = r.d === 0;
    this.recipients.putSync(rkey, { n: Math.max(0, r.n - 1), d: 1, x: r.x });
    tx.fx.ops++;
    if (first) this.statusRow(tx, { messageId: e.m, index: e.i, state: 'delivered-to-device', deviceId: dev, seq });
  }

  /** Apply one ACK: cumulative (every seq ≤ it) and selective. Sequences not in the outbox are ignored. */
  ack(tx: PdaTx, w: AckWork): void {
    const dev = w.deviceId;
    const from = Math.max(0, w.settledThrough ?? 0);
    if (w.cumulative > from) {
      if (w.cumulative - from <= POINT_ACK_SPAN) {
        // The common case (a session acking what it was just sent): a few point lookups beat three range scans.
        for (let seq = from + 1; seq <= w.cumulative; seq++) this.ackOne(tx, dev, seq, w.laneOf?.(seq));
      } else {
        for (let lane = 0; lane < LANES; lane++) {
          const hits: Array<{ seq: number; e: StoredEntry }> = [];
          for (const { key, value } of this.outbox.getRange({ start: [dev, lane, from + 1], end: [dev, lane, w.cumulative + 1] })) {
            hits.push({ seq: key[2], e: value });
          }
          for (const h of hits) this.acked(tx, dev, lane, h.seq, h.e);
        }
      }
    }
    for (const seq of w.selective) this.ackOne(tx, dev, seq, w.laneOf?.(seq));
  }

  private ackOne(tx: PdaTx, dev: string, seq: number, hint: number | undefined): void {
    if (hint !== undefined) {
      const e = this.outbox.get([dev, hint, seq]);
      if (e) this.acked(tx, dev, hint, seq, e);
      return;
    }
    for (let lane = LANES - 1; lane >= 0; lane--) {
      const e = this.outbox.get([dev, lane, seq]);
      if (e) {
        this.acked(tx, dev, lane, seq, e);
        return;
      }
    }
  }

  /** Read reports for acknowledged sequences; others are ignored. */
  read(tx: PdaTx, dev: string, seqs: readonly number[]): void {
    for (const seq of seqs) {
      const u = this.unread.get([dev, seq]);
      if (!u) continue;
      this.unread.removeSync([dev, seq]);
      this.expiry.removeSync([u.x, KIND_UNREAD, dev, seq]);
      tx.fx.ops += 2;
      this.statusRow(tx, { messageId: u.m, index: u.i, state: 'read', deviceId: dev, seq });
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
      for (const { key, value } of this.outbox.getRange({ start: [dev, lane, 0], end: [dev, lane, MAX_KEY_SEQ + 1] })) hits.push({ seq: key[2], e: value });
      for (const h of hits) {
        this.removeEntry(tx, dev, lane, h.seq, h.e);
        this.copyClosed(tx, h.e, 'undeliverable', why);
        tx.fx.withdrawn++;
        n++;
      }
    }
    const unread: Array<{ seq: number; x: number }> = [];
    for (const { key, value } of this.unread.getRange({ start: [dev, 0], end: [dev, MAX_KEY_SEQ + 1] })) unread.push({ seq: key[1], x: value.x });
    for (const u of unread) {
      this.unread.removeSync([dev, u.seq]);
      this.expiry.removeSync([u.x, KIND_UNREAD, dev, u.seq]);
      tx.fx.ops += 2;
    }
    return n;
  }

  /** Process up to `limit` expiry rows due at `tx.now`. Returns how many were processed. */
  expireDue(tx: PdaTx, limit: number): number {
    const rows: Array<{ key: ExpiryKey; lane: number }> = [];
    for (const { key, value } of this.expiry.getRange({ start: [0], end: [tx.now + 1], limit })) rows.push({ key, lane: value });
    for (const { key, lane } of rows) {
      const [, kind, a, b] = key;
      this.expiry.removeSync(key);
      tx.fx.ops++;
      if (kind === KIND_OUTBOX) {
        const e = this.outbox.get([a, lane, b]);
        if (!e) continue;
        this.outbox.removeSync([a, lane, b]);
        const cur = this.cursor(tx, a);
        cur.c = Math.max(0, cur.c - 1);
        tx.fx.outboxDelta--;
        tx.fx.expired++;
        tx.fx.ops++;
        const list = tx.fx.expiredSeqs.get(a);
        if (list) list.push(b);
        else tx.fx.expiredSeqs.set(a, [b]);
        this.copyClosed(tx, e, 'expired', 'no PDA acknowledged it before its expiry');
      } else if (kind === KIND_UNREAD) {
        this.unread.removeSync([a, b]);
        tx.fx.ops++;
      } else {
        // Every recipient row of message `a` that expired by now (rows with a later expiry have their own row).
        const gone: PairKey[] = [];
        for (const { key, value } of this.recipients.getRange({ start: [a, 0], end: [a, MAX_KEY_SEQ] })) if (value.x <= tx.now) gone.push(key);
        for (const k of gone) this.recipients.removeSync(k);
        tx.fx.ops += gone.length;
      }
    }
    return rows.length;
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
    return this.cursors.get(dev)?.n ?? 1;
  }

  /** Up to `limit` entries of one lane with a sequence above `after`, in sequence order. */
  unsent(dev: string, lane: number, after: number, limit: number): UnsentEntry[] {
    const out: UnsentEntry[] = [];
    for (const { key, value } of this.outbox.getRange({ start: [dev, lane, after + 1], end: [dev, lane, MAX_KEY_SEQ + 1], limit })) {
      out.push({ seq: key[2], lane, entry: value });
    }
    return out;
  }

  /** The entry with this sequence (any lane), committed state. */
  entry(dev: string, seq: number): UnsentEntry | undefined {
    for (let lane = LANES - 1; lane >= 0; lane--) {
      const e = this.outbox.get([dev, lane, seq]);
      if (e) return { seq, lane, entry: e };
    }
    return undefined;
  }

  // ---------------------------------------------------------------- status relay

  /** Up to `limit` status rows with a key above `after`, in order. */
  readStatus(limit: number, after = 0): Array<{ key: number; update: PdaStatusUpdate }> {
    const out: Array<{ key: number; update: PdaStatusUpdate }> = [];
    for (const { key, value: v } of this.status.getRange({ start: after + 1, limit })) {
      out.push({
        key,
        update: {
          messageId: v.m, index: v.i, state: v.s, at: v.t,
          ...(v.d !== undefined ? { deviceId: v.d } : {}),
          ...(v.q !== undefined ? { seq: v.q } : {}),
          ...(v.e !== undefined ? { error: v.e } : {}),
        },
      });
    }
    return out;
  }

  async removeStatus(keys: readonly number[]): Promise<void> {
    if (keys.length === 0) return;
    await this.env.childTransaction(() => {
      for (const k of keys) this.status.removeSync(k);
    });
    this.statusRows -= keys.length;
    this.metrics.pdaStatusBacklog.set(this.statusRows);
  }
}
