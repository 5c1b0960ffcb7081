/**
 * The receipt store: every message's and recipient's state, in named
 * databases of the gateway's LMDB environment (shared with the embedded
 * queue). It is the source of truth for the status API, for dispatch
 * idempotency (a segment that has an operator message id is never submitted
 * again) and for matching delivery receipts.
 *
 * Writes come in two kinds:
 * - ingest (`putMessage`, `putIdempotency`): plain lmdb puts, so they land in
 *   the same LMDB transaction as the queue publish of the same event turn;
 *   the caller awaits `flushed()` (or the publish) before answering 202.
 * - everything that reads before it writes (results, receipts, expiry) goes
 *   through a group-commit queue (`commit-queue.ts`): one transaction per
 *   batch, operations applied in order, each seeing the writes of those
 *   before it. That is what lets a receipt and the submit it belongs to be
 *   applied in the same batch in either order.
 *
 * Rules kept here (each is tested in test/integration/receipts-*.test.ts):
 * - a segment's state only moves forward (pending → submitted → final) and a
 *   final state never changes; a recipient's state is derived from its
 *   segments (`deriveRecipientState`) and never moves backwards either;
 * - a receipt whose operator id is not (yet) indexed is kept as an "early"
 *   receipt and applied in the transaction that records the submit; after
 *   `earlyReceiptTtlMs` it is dropped and counted as unknown;
 * - a `final` result from the dispatcher never overrides a segment that the
 *   SMSC accepted (it has an operator id): the SMSC's receipt, or else the
 *   expiry sweep, decides that segment. The SMSC has the message; a late
 *   local failure (say a timeout racing the submit_sm_resp) must not report
 *   "failed" for a text the phone may already show;
 * - a recipient entering a final state is counted once (metrics
 *   recipientsFinal) and announced to `onFinal` listeners after commit;
 * - reroute (src/core/reroute.ts): an armed recipient whose first attempt
 *   ends undeliverable/rejected by a receipt is not final — the attempt is
 *   kept (`p`), the recipient goes back to `queued` and a row in
 *   receipts.reroute waits for the relay to publish its second attempt; its
 *   final state, announced once, is the second attempt's
 *   (test/unit/reroute.test.ts).
 */
import { asBinary, type Database, type Key, type RootDatabase } from 'lmdb';
import { canonicalOperatorId } from '../core/dlr.js';
import { RingBuffer } from '../core/ring.js';
import { GatewayError } from '../core/errors.js';
import {
  deriveRecipientState,
  isFinal,
  RECIPIENT_STATES,
  type FinalState,
  type RecipientState,
} from '../core/message.js';
import type { DeliveryReceipt } from '../core/ports.js';
import { MAX_SEGMENTS } from '../core/segment.js';
import type { Logger } from '../telemetry/logger.js';
import { boundCounter, boundHistogram, type BoundCounter, type BoundHistogram, type Metrics } from '../telemetry/metrics.js';
import {
  newerVersion,
  versionKey,
  type ChangeLog,
  type ExpandedRow,
  type OutboxEntry,
  type PdaStateUpdate,
  type ReplicaOp,
  type RowVersion,
} from '../replication/change-log.js';
import { envFlushed, trackWrite } from '../storage/health.js';
import { CommitQueue, type TxnEffects, type WriteSet } from './commit-queue.js';
import { CALLBACK_ROW, MESSAGE_ROW, openRowDatabase, RECIPIENT_ROW, type RowShape } from './row-codec.js';
import { callbackView } from './status-callbacks.js';
import {
  decodeMessage,
  decodeRecipient,
  decodeSegment,
  encodeMessage,
  segmentStates,
  type EarlyAgeKey,
  type ExpiryKey,
  type IdempotencyExpiryKey,
  type IdempotencyKey,
  type OpKey,
  type RecipientKey,
  type KeptReceipt,
  type StoredEarly,
  type StoredEvent,
  type StoredEventFailure,
  type EventKey,
  EVENT_BITS,
  eventDestination,
  eventLane,
  type StoredIdempotency,
  type StoredMessage,
  type StoredOpRef,
  type StoredRecipient,
  type StoredAttempt,
  type StoredRerouteText,
  type StoredSegment,
  type RerouteKey,
} from './records.js';
import { attemptEnded, REROUTE_STATES, type RerouteOutcome } from '../core/reroute.js';
import type {
  FinalListener,
  MessageRecord,
  ReceiptOutcome,
  ReceiptStoreStats,
  RecipientPage,
  RecipientRecord,
  SegmentRecord,
  SegmentResult,
} from './types.js';

/** Named databases the store opens in the environment (size `maxDbs` accordingly). */
export const RECEIPT_STORE_DBS = 13;

/** The error recorded on segments the expiry sweep finalises. */
export const EXPIRED_REASON = 'validity period passed';

/** Longest operator id accepted; SMPP allows 65 octets, and LMDB keys are limited to ~2 KB. */
export const MAX_OPERATOR_ID_LENGTH = 128;
/**
 * An SMSC that numbers its ids from 1 reuses them (after a restart): a receipt whose key names a
 * part already final may be the receipt of a newer submit with the same id whose submit_sm_resp is
 * not recorded yet (receipts before, or 0 ms after, the resp). It is kept (StoredEarly.a, at most
 * KEPT_PER_ID under a key) and the submit recorded under that key takes the first kept one that
 * arrived after the submit went on the wire (its result's sentAt: the receipt of a submit cannot
 * arrive before the submit was sent); those before are SMSC re-sends of the old part's receipt,
 * dropped when the key is reused. A result without a send time (of an older version) takes the
 * newest, if it arrived at most this long before the result (the resp comes within the response
 * timeout).
 */
export const REUSED_ID_WINDOW_MS = 60_000;
/** Receipts kept at most under one key for a reused id (the oldest goes first). */
export const KEPT_PER_ID = 4;
/** Longest tenant + Idempotency-Key accepted as a key. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 512;
/** Most recipients one `listRecipients` page returns. */
export const MAX_PAGE = 1000;
/**
 * A message's completion callback (POST to its callbackUrl once every
 * recipient is final): written with the message row, in the same transaction.
 */
export interface CallbackState {
  readonly state: 'waiting' | 'failed';
  readonly attempts: number;
  /** Epoch ms of the next attempt (0: as soon as the message is complete). */
  readonly nextAt: number;
  /** Epoch ms the message was seen complete (set when its callback fell due; status-callbacks.ts). */
  readonly completedAt?: number;
  readonly lastError?: string;
}

/** A message's callback row when it is accepted (its bytes are packed once: ReceiptStore.waitingCallback). */
export const WAITING_CALLBACK: CallbackState = Object.freeze({ attempts: 0, nextAt: 0, state: 'waiting' });

/** A recipient whose second attempt's job is to be published (`pendingReroutes`). */
export interface RerouteEntry {
  readonly messageId: string;
  readonly index: number;
  /** What the job carries; undefined: nothing to publish (the recipient no longer waits), clear the entry. */
  readonly job: {
    readonly tier: string;
    readonly tenant: string;
    readonly group: string;
    readonly createdAt: number;
    readonly expiresAt: number;
    readonly to: string;
    readonly text: string;
    readonly encoding: 'gsm7' | 'ucs2';
    readonly sender: string;
    readonly classification?: string;
  } | undefined;
}

/**
 * Message rows of messages this process accepted (putMessage) kept in
 * memory for the fields fixed at creation: see `ReceiptStore.accepted`.
 */
const MAX_ACCEPTED_IN_MEMORY = 16_384;
/** Most listeners `onFinal` takes (callbacks, WS push, tests). */
export const MAX_FINAL_LISTENERS = 8;

export interface ReceiptStoreOptions {
  /** The gateway's LMDB environment (not opened with useWritemap); the store never closes it. */
  readonly env: RootDatabase;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Clock (epoch ms); tests pass a fake one. */
  readonly now?: () => number;
  /** How long a receipt that matched no submit is kept waiting for it. */
  readonly earlyReceiptTtlMs: number;
  /** Grace after a message's validity for final receipts before open segments expire. */
  readonly receiptGraceMs: number;
  /** Group-commit: hand a batch to LMDB at once at this many items. Default 2,000. */
  readonly flushAt?: number;
  /** Items queued or uncommitted beyond which writers wait. Default 50,000. */
  readonly maxPendingWrites?: number;
  /** Writers allowed to wait for room before OVERLOADED. Default 100,000. */
  readonly maxWaitingWrites?: number;
  /** Recipient rows one `expireDue` call examines at most. Default 20,000. */
  readonly expiryRowsPerCall?: number;
  /** Entries one `sweepEarlyReceipts` / `sweepIdempotency` call removes at most. Default 10,000. */
  readonly sweepRowsPerCall?: number;
  /** Replication between hosts: every committed change is also written to this change log (change-log.ts). */
  readonly changeLog?: ChangeLog;
}

/** What applying one replicated entry did, operation by operation. */
export interface ReplicaApplied {
  /** Operations applied. */
  applied: number;
  /** Operations already applied here (a repeat, or another process of this host was first). */
  skipped: number;
  /** Operations naming a row this host does not have: recorded as not applied (should not happen; see change-log.ts). */
  missing: number;
}

const RANK: Record<RecipientState, number> = {
  accepted: 0,
  queued: 1,
  submitted: 2,
  delivered: 3,
  undeliverable: 3,
  expired: 3,
  rejected: 3,
  failed: 3,
};

/** A recipient row being changed by one operation. */
interface Work {
  readonly messageId: string;
  readonly index: number;
  readonly row: StoredRecipient;
  dirty: boolean;
}

/** A recipient row changed in a batch, not yet written. */
interface StagedRow {
  readonly messageId: string;
  readonly index: number;
  readonly row: StoredRecipient;
}

function rowKey(messageId: string, index: number): string {
  return `${index}\u0000${messageId}`;
}

/**
 * A copy an operation may change without touching what an earlier operation of the batch staged
 * (if it fails, that one's row must stay as it was). Rows are small: the parts of the current
 * attempt, and earlier attempts only after a reroute.
 */
function copyRow(row: StoredRecipient): StoredRecipient {
  const copy = { ...row, g: row.g.map((seg) => ({ ...seg })) };
  if (row.p !== undefined) copy.p = row.p.map((a) => ({ ...a, g: a.g.map((seg) => ({ ...seg })) }));
  return copy;
}

/** What a batch publishes after commit. `begin`/`discard` drop a failed operation's share. */
class BatchEffects implements TxnEffects {
  readonly finals: Array<[string, number, FinalState]> = [];
  readonly latencies: Array<[string, number]> = [];
  readonly early: string[] = [];
  /** [messageId, index, segment] of submits that met another operator id already on the segment. */
  readonly conflicts: Array<[string, number, number]> = [];
  /** Changes for the change log (replication on, local operations only). */
  readonly ops: ReplicaOp[] = [];
  /** [account, outcome] of receipts received here (smsgw_dlr_outcome_total). */
  readonly outcomes: Array<[string, 'applied' | 'early' | 'duplicate' | 'unknown']> = [];
  /** [account, outcome] of early receipts received here that left waiting (smsgw_dlr_early_resolved_total). */
  readonly earlyResolved: Array<[string, 'applied' | 'duplicate']> = [];
  /** Receipts kept for a reused id, by what became of them (this host's only), told to the metrics after commit. */
  readonly reusedIds: Array<[string, 'kept' | 'applied' | 'resend' | 'overflow' | 'expired']> = [];
  /** Reroute outcomes of messages accepted here (smsgw_reroutes_total). */
  readonly reroutes: RerouteOutcome[] = [];
  /** Status events written (committed with the batch; the sender is woken after commit). */
  events = 0;
  /** Highest event seq given out per lane in this batch (`dest\u0000lane`): later events of a lane sort after. */
  readonly laneFloors = new Map<string, number>();
  /** Events written per lane (`dest\u0000lane` → [dest, lane, count]), told to the sender after commit. */
  readonly laneCounts = new Map<string, [string, number, number]>();
  duplicateReceipts = 0;
  /** Duplicates kept for a reused id (StoredEarly.a); compared before/after one receipt only. */
  keptAfterFinal = 0;
  orphanReceipts = 0;
  ignoredFinalResults = 0;
  /**
   * Recipient rows changed by the finished operations of this batch, written once each before the
   * batch commits (a 3-part recipient's submit results and receipts often share a batch: one put
   * instead of one per operation). Keyed by `rowKey`.
   */
  readonly rows = new Map<string, StagedRow>();
  /** The rows the running operation changed: kept when it ends well, dropped with it by `discard`. */
  readonly opRows = new Map<string, StagedRow>();
  /**
   * Message rows read by this batch's operations for their fields fixed at creation (tenant,
   * statusCallback, origin host): a 3-part recipient's receipts and submits, and the recipients
   * of one message, read the row once per batch instead of once per change. Found rows only.
   */
  readonly messageRows = new Map<string, StoredMessage>();
  private mark = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

  /** Stage a changed row of the running operation. */
  stage(messageId: string, index: number, row: StoredRecipient): void {
    this.opRows.set(rowKey(messageId, index), { messageId, index, row });
  }

  /** The running operation ended well: its rows join the batch's. */
  keepOperationRows(): void {
    if (this.opRows.size === 0) return;
    for (const [k, staged] of this.opRows) this.rows.set(k, staged);
    this.opRows.clear();
  }

  begin(): void {
    this.keepOperationRows();
    this.mark = [
      this.finals.length, this.latencies.length, this.early.length, this.conflicts.length,
      this.duplicateReceipts, this.orphanReceipts, this.ignoredFinalResults, this.ops.length,
      this.outcomes.length, this.earlyResolved.length, this.reroutes.length, this.events, this.reusedIds.length,
    ];
  }

  discard(): void {
    this.opRows.clear();
    const m = this.mark;
    this.finals.length = m[0]!;
    this.latencies.length = m[1]!;
    this.early.length = m[2]!;
    this.conflicts.length = m[3]!;
    this.duplicateReceipts = m[4]!;
    this.orphanReceipts = m[5]!;
    this.ignoredFinalResults = m[6]!;
    this.ops.length = m[7]!;
    this.outcomes.length = m[8]!;
    this.earlyResolved.length = m[9]!;
    this.reroutes.length = m[10]!;
    this.events = m[11]!;
    this.reusedIds.length = m[12]!;
  }
}

interface SweptEarly {
  readonly count: number;
  readonly byAccount: Map<string, number>;
  /** Of those, received on this host (replicated ones count where they were received). */
  readonly local: Map<string, number>;
  readonly sample: string[];
  /** Receipts kept for a reused id that no submit took (received on this host), by account. */
  readonly reusedExpired: Map<string, number>;
}

/** Rows one retention step removed, by kind; `skipped`: old messages left because a recipient is not final. */
export interface PurgeCounts {
  messages: number;
  recipients: number;
  /** receipts.opids rows (operator id → segment). */
  receiptIndex: number;
  callbacks: number;
  idempotency: number;
  skipped: number;
}

export class ReceiptStore {
  private readonly env: RootDatabase;
  private readonly metrics: Metrics;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly earlyTtlMs: number;
  private readonly graceMs: number;
  private readonly expiryRows: number;
  private readonly sweepRows: number;

  private readonly messages: Database<StoredMessage, string>;
  private readonly recipients: Database<StoredRecipient, RecipientKey>;
  private readonly expiry: Database<number, ExpiryKey>;
  private readonly opids: Database<StoredOpRef, OpKey>;
  private readonly early: Database<StoredEarly, OpKey>;
  private readonly earlyAge: Database<1, EarlyAgeKey>;
  private readonly idempotency: Database<StoredIdempotency, IdempotencyKey>;
  private readonly idempotencyExpiry: Database<1, IdempotencyExpiryKey>;
  /** Messages with a callbackUrl whose completion callback is not done yet (status-callbacks.ts). */
  readonly callbacks: Database<CallbackState, string>;
  /** Recipients waiting for their second attempt's job to be published (reroute.ts relay). */
  private readonly reroutes: Database<number, RerouteKey>;
  private readonly rerouteText: Database<StoredRerouteText, string>;
  private readonly rerouteListeners: Array<() => void> = [];
  /** Per-recipient status events waiting to be POSTed (status-events.ts). */
  readonly events: Database<StoredEvent, EventKey>;
  /** Messages some of whose status events were given up (status-events.ts writes them). */
  readonly eventFailures: Database<StoredEventFailure, string>;
  private readonly eventListeners: Array<(lanes: ReadonlyMap<string, readonly [string, number, number]>) => void> = [];
  /**
   * The callback row of a message just accepted, packed once: the same bytes
   * a `put` of WAITING_CALLBACK writes (msgpack of a constant; a test
   * compares them), without packing it again for every message.
   */
  private readonly waitingCallback: CallbackState;
  /**
   * The rows of the last MAX_ACCEPTED_IN_MEMORY messages this process
   * accepted with putMessage (not group sends, whose recipient count is set
   * by their expansion), as written: nothing rewrites such a row, so its
   * receipts, submits and completion read their tenant, statusCallback,
   * callbackUrl, reference and recipient count here instead of reading and
   * decoding the row again (twice a recipient at least). Oldest dropped
   * first; a message purged leaves it; a miss reads the row.
   */
  private readonly accepted = new Map<string, StoredMessage>();
  /** The ids in `accepted`, oldest first (finished ones stay until their turn: deleting from a Map is all they need). */
  private readonly acceptedOrder = new RingBuffer<string>(MAX_ACCEPTED_IN_MEMORY);
  /** tenant\u0000url → destination key (bounded: cleared when full). */
  private readonly destinations = new Map<string, string>();
  private readonly dlrLatencyByAccount = new Map<string, BoundHistogram>();
  private readonly dlrReceivedBy = new Map<string, BoundCounter>();

  private readonly queue: CommitQueue<BatchEffects>;
  private readonly log: ChangeLog | undefined;
  private logNotifyArmed = false;
  /** Directory and template databases opened to apply replicated rows (a fixed set of names). */
  private readonly replicaDbs = new Map<string, Database<unknown, Key>>();
  private readonly listeners: FinalListener[] = [];
  private readonly counters: ReceiptStoreStats = {
    duplicateReceipts: 0, orphanReceipts: 0, conflictingSubmits: 0, ignoredFinalResults: 0,
  };
  /**
   * What the last `flushed()` promise covers: the plain writes' commit promise then (puts of one
   * LMDB transaction share one) and the queue's handovers then. A call that finds both unchanged
   * has nothing new to wait for and gets the same promise: the requests of one event turn share one.
   */
  private flushCommit: Promise<unknown> | undefined;
  private flushHandovers = -1;
  private flushPromise: Promise<void> | undefined;
  /** The commit promise of the latest plain puts (see `plain`). */
  private plainCommit: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;
  /** Where the next retention step starts in receipts.messages (undefined: the beginning). */
  private purgeCursor: string | undefined;

  private constructor(opts: ReceiptStoreOptions) {
    this.env = opts.env;
    this.metrics = opts.metrics;
    this.logger = opts.logger.child({ component: 'receipts' });
    this.now = opts.now ?? Date.now;
    this.earlyTtlMs = opts.earlyReceiptTtlMs;
    this.graceMs = opts.receiptGraceMs;
    this.expiryRows = positive(opts.expiryRowsPerCall ?? 20_000, 'expiryRowsPerCall');
    this.sweepRows = positive(opts.sweepRowsPerCall ?? 10_000, 'sweepRowsPerCall');
    const db = <V, K extends Key>(name: string, shape?: RowShape<V>): Database<V, K> =>
      shape !== undefined ? openRowDatabase<V, K>(this.env, name, shape) : this.env.openDB<V, K>({ name, encoding: 'msgpack' });
    // The rows read and rewritten per message are positional (row-codec.ts); the rest keep lmdb-js's msgpack records.
    this.messages = db('receipts.messages', MESSAGE_ROW);
    this.recipients = db('receipts.recipients', RECIPIENT_ROW);
    this.expiry = db('receipts.expiry');
    this.opids = db('receipts.opids');
    this.early = db('receipts.early');
    this.earlyAge = db('receipts.early.age');
    this.idempotency = db('receipts.idempotency');
    this.idempotencyExpiry = db('receipts.idempotency.expiry');
    this.callbacks = db('receipts.callbacks', CALLBACK_ROW);
    this.waitingCallback = asBinary(Buffer.from((this.callbacks as unknown as { encoder: { encode(v: unknown): Uint8Array } }).encoder.encode(WAITING_CALLBACK))) as unknown as CallbackState;
    this.reroutes = db('receipts.reroute');
    this.rerouteText = db('receipts.reroute.text');
    this.events = db('receipts.events');
    this.eventFailures = db('receipts.events.failed');
    this.log = opts.changeLog;
    const log = this.log;
    // Read when /metrics is scraped, not set per message.
    const accepted = this.accepted;
    const inMemory = this.metrics.receiptMessagesInMemory;
    (inMemory as unknown as { collect: () => void }).collect = () => inMemory.set(accepted.size);
    this.queue = new CommitQueue<BatchEffects>({
      env: this.env,
      flushAt: positive(opts.flushAt ?? 2_000, 'flushAt'),
      maxPending: positive(opts.maxPendingWrites ?? 50_000, 'maxPendingWrites'),
      maxWaiting: positive(opts.maxWaitingWrites ?? 100_000, 'maxWaitingWrites'),
      newEffects: () => new BatchEffects(),
      beforeCommit: (fx: BatchEffects) => {
        this.writeRows(fx);
        if (log) log.appendSync(fx.ops);
      },
      afterCommit: (fx) => {
        this.publish(fx);
        if (log && fx.ops.length > 0) log.notify();
      },
      onBatch: (weight) => this.metrics.storeWriteBatch.observe(weight),
    });
  }

  /** Opens (creating when absent) the store's named databases in `env`. Synchronous: LMDB opens them in place. */
  static open(opts: ReceiptStoreOptions): ReceiptStore {
    return new ReceiptStore(opts);
  }

  // ------------------------------------------------------------------ ingest

  /**
   * The message row, one `accepted` recipient row per number (index = position
   * in `numbers`) and its expiry entry, as plain puts: they commit with
   * whatever else is written in this event turn (the queue publish). Not
   * durable until `flushed()` resolves. Writing an id twice overwrites it:
   * ids are unique per accepted request (repeats are caught by idempotency).
   */
  putMessage(msg: MessageRecord, numbers: readonly string[]): void {
    this.assertOpen();
    if (numbers.length !== msg.recipients) {
      throw new GatewayError('INTERNAL', `message ${msg.id}: ${numbers.length} numbers for ${msg.recipients} recipients`);
    }
    if (!Number.isInteger(msg.segments) || msg.segments < 1 || msg.segments > MAX_SEGMENTS) {
      throw new GatewayError('INTERNAL', `message ${msg.id}: ${msg.segments} segments`);
    }
    const stored = encodeMessage(msg);
    this.plain(this.messages.put(msg.id, stored));
    const id = msg.id;
    // The bound is a first-in first-out ring of ids: a new id takes the oldest one's place;
    // one written again keeps its own (a purged id written again may leave early: it is read then).
    const before = this.accepted.size;
    this.accepted.set(id, stored);
    if (this.accepted.size !== before) {
      if (this.acceptedOrder.isFull) this.accepted.delete(this.acceptedOrder.shift() as string);
      this.acceptedOrder.push(id);
    }
    const at = msg.createdAt;
    for (let i = 0; i < numbers.length; i++) {
      this.plain(this.recipients.put([id, i], { n: numbers[i]!, s: 'accepted', a: at, u: at, g: [] }));
    }
    this.plain(this.expiry.put([msg.expiresAt, id], 0));
    if (msg.callbackUrl !== undefined) this.plain(this.callbacks.put(id, this.waitingCallback));
    this.logPlain({ k: 'm', id, msg: stored, nums: numbers });
  }

  // ---------------------------------------------------------- group fan-out

  /**
   * A group send accepted at the door: the message row, with `recipients`
   * = the members counted then, and its expiry entry — no recipient rows
   * yet: the dispatcher writes them when it expands the group
   * (`putExpandedRecipients`, then `completeExpansion` sets the real count).
   * Plain puts, like `putMessage`.
   */
  putPendingMessage(msg: MessageRecord): void {
    this.assertOpen();
    if (!Number.isInteger(msg.segments) || msg.segments < 1 || msg.segments > MAX_SEGMENTS) {
      throw new GatewayError('INTERNAL', `message ${msg.id}: ${msg.segments} segments`);
    }
    const stored = encodeMessage(msg);
    this.plain(this.messages.put(msg.id, stored));
    this.plain(this.expiry.put([msg.expiresAt, msg.id], 0));
    if (msg.callbackUrl !== undefined) this.plain(this.callbacks.put(msg.id, this.waitingCallback));
    this.logPlain({ k: 'pm', id: msg.id, msg: stored });
  }

  /**
   * Fan-out: recipient rows `from … from + rows.length - 1` of an expanded
   * message. A row with `final` (a member refused at expansion: blocked, no
   * usable channel, rejected on review) is written final, every segment
   * with that state and error; the others `accepted`. Plain puts: not
   * durable until `flushed()`. Rewriting the rows of an expansion that was
   * not completed (a redelivered expansion job) is allowed: nothing was sent
   * for them yet.
   */
  putExpandedRecipients(messageId: string, from: number, rows: readonly ExpandedRow[]): void {
    this.assertOpen();
    const msg = this.messages.get(messageId);
    if (msg === undefined) throw new GatewayError('INTERNAL', `putExpandedRecipients: no message ${messageId}`);
    const at = this.now();
    for (let k = 0; k < rows.length; k++) {
      const row = expandedRow(rows[k]!, msg.s, at);
      const p = this.recipients.put([messageId, from + k], row);
      if (k === rows.length - 1) this.plain(p);
    }
    this.logPlain({ k: 'x', id: messageId, from, at, rows });
  }

  /**
   * Fan-out finished: the message has `count` recipients (rows 0 … count-1
   * written); the rows written final are counted and announced to `onFinal`
   * listeners; the expiry entry is re-armed so every recipient still ends
   * final. Resolves when committed.
   */
  completeExpansion(messageId: string, count: number, finals: readonly { index: number; state: FinalState }[]): Promise<void> {
    return this.txn(1 + finals.length, (fx, w) => {
      this.runCompleteExpansion(messageId, count, finals, fx, w);
      if (this.log) fx.ops.push({ k: 'c', id: messageId, count, finals });
    });
  }

  /** Remember an idempotent request's result until `expiresAt` (plain puts, like `putMessage`). */
  putIdempotency(tenant: string, key: string, value: unknown, expiresAt: number): void {
    this.assertOpen();
    checkIdempotencyKey(tenant, key);
    this.plain(this.idempotency.put([tenant, key], { v: value, x: expiresAt }));
    this.plain(this.idempotencyExpiry.put([expiresAt, tenant, key], 1));
    this.logPlain({ k: 'i', t: tenant, key, v: value, x: expiresAt });
  }

  /** The stored result, or undefined when absent or expired (committed state). */
  getIdempotency(tenant: string, key: string): unknown {
    checkIdempotencyKey(tenant, key);
    const e = this.idempotency.get([tenant, key]);
    if (e === undefined || e.x <= this.now()) return undefined;
    return e.v;
  }

  /**
   * Resolves when everything written so far — plain puts and queued
   * operations alike — is committed and flushed to disk. Operations still
   * queued are handed to LMDB now rather than at the end of the turn. Callers
   * with nothing new written in between share one promise (and lmdb shares
   * one fsync per transaction anyway).
   */
  flushed(): Promise<void> {
    this.queue.flush();
    if (this.flushPromise !== undefined && this.flushCommit === this.plainCommit && this.flushHandovers === this.queue.handovers) return this.flushPromise;
    this.flushCommit = this.plainCommit;
    this.flushHandovers = this.queue.handovers;
    // Commits first: lmdb's `flushed` follows the latest transaction handed
    // over, which after these commits is ours or a later one.
    // A failed commit rejects its writes' promise but never resolves lmdb's
    // `flushed` (it waits for a flush that will not come): the plain writes'
    // commit promise is what turns a failed commit into a rejection here.
    const commit = this.plainCommit;
    const p = this.queue.settled().then(() => Promise.all([commit, envFlushed(this.env)])).then(() => undefined);
    this.flushPromise = p;
    return p;
  }

  /**
   * A plain put's promise (unconditional puts of one transaction share one):
   * `flushed()` waits for it, and its failure goes to the storage state
   * (never an unhandled rejection).
   */
  private plain(write: Promise<unknown>): void {
    if (write === this.plainCommit) return;
    this.plainCommit = write;
    trackWrite(this.env, write, 'receipts');
  }

  // ---------------------------------------------------------------- dispatch

  getMessage(id: string): MessageRecord | undefined {
    const s = this.messages.get(id);
    return s === undefined ? undefined : decodeMessage(id, s);
  }

  /**
   * A message for what it was accepted with (tenant, callbackUrl, reference,
   * statusCallback, recipients), for one of its recipients that just turned
   * final: from memory when this process accepted it recently, else read.
   * Not for the status API (a row purged meanwhile by another process would
   * still be found here): use getMessage.
   */
  acceptedMessage(id: string): MessageRecord | undefined {
    const s = this.accepted.get(id) ?? this.messages.get(id);
    return s === undefined ? undefined : decodeMessage(id, s);
  }

  getRecipient(messageId: string, index: number): RecipientRecord | undefined {
    const s = this.recipients.get([messageId, index]);
    return s === undefined ? undefined : decodeRecipient(s);
  }

  /**
   * A segment's committed state (1-based), or undefined when nothing has
   * been recorded for it yet (treat as pending). The dispatcher submits a
   * segment only when this has no `opId` and is not final.
   */
  getSegment(messageId: string, index: number, segment: number): SegmentRecord | undefined {
    const s = this.recipients.get([messageId, index])?.g[segment - 1];
    return s === undefined ? undefined : decodeSegment(s);
  }

  /**
   * Every part recorded for a recipient, part 1 first (`getSegment` of each,
   * in one read): empty when nothing is recorded yet or there is no such
   * recipient. The dispatcher checks all parts of a recipient with it.
   */
  getSegments(messageId: string, index: number): SegmentRecord[] {
    const g = this.recipients.get([messageId, index])?.g;
    return g === undefined ? [] : g.map((s) => decodeSegment(s));
  }

  /**
   * accepted → queued for these recipients (a dispatcher holds their job).
   * Fire and forget: the state is informative only, so a failure is logged
   * rather than returned; it never moves a state backwards.
   */
  markQueued(messageId: string, indices: readonly number[]): void {
    this.assertOpen();
    this.queue
      .enqueue(indices.length, (fx) => {
        const now = this.now();
        this.runMarkQueued(messageId, indices, now, fx);
        if (this.log) fx.ops.push({ k: 'q', id: messageId, idx: indices, at: now });
      })
      .catch((err: unknown) => {
        this.logger.error({ err, messageId, recipients: indices.length }, 'could not mark recipients queued');
      });
  }

  /**
   * Record submit results and the dispatcher's own final verdicts. Resolves
   * when committed. A `submitted` result also indexes the operator id and
   * applies an early receipt waiting for it. Rejects (and records nothing of
   * this call) when a result names a recipient or segment that does not exist.
   */
  recordSegments(results: readonly SegmentResult[]): Promise<void> {
    if (results.length === 0) return Promise.resolve();
    return this.queue.enqueue(results.length, (fx, w) => {
      this.runSegments(results, fx, w);
      if (this.log) fx.ops.push({ k: 's', results });
    });
  }

  private runSegments(results: readonly SegmentResult[], fx: BatchEffects, w: WriteSet): void {
    const now = this.now();
    const work = new Map<string, Work>();
    const consumedEarly = new Set<string>();
    for (const r of results) {
      const wk = this.work(work, r.messageId, r.index, fx);
      const earlier = wk.row.p;
      if (r.kind === 'submitted' && earlier !== undefined && earlier.some((a) => a.g.some((g) => g.c === r.account))) {
        // A late submit of an attempt a reroute took over from (its account is of the first attempt's carrier): not this attempt's.
        fx.ignoredFinalResults++;
        continue;
      }
      const seg = segmentOf(wk, r.segment, r.segments);
      if (r.kind === 'submitted' && r.reroute !== undefined && earlier === undefined && wk.row.r !== r.reroute) {
        wk.row.r = r.reroute;
        wk.dirty = true;
      }
      if (r.kind === 'submitted') this.recordSubmitted(wk, seg, r, consumedEarly, fx, w);
      else if (seg.s === 'pending') {
        finish(seg, r.state, r.error, r.at);
        wk.dirty = true;
      } else {
        fx.ignoredFinalResults++;
      }
    }
    for (const wk of work.values()) if (wk.dirty) this.settle(wk, now, fx, w);
  }

  // ---------------------------------------------------------------- receipts

  /**
   * Apply a delivery receipt. Resolves when committed (the SMSC may then get
   * its deliver_sm_resp). Intermediate receipts change nothing.
   */
  applyReceipt(r: DeliveryReceipt): Promise<ReceiptOutcome> {
    this.dlrReceived(r.account, r.state).inc();
    const state = r.state;
    if (state === 'enroute' || state === 'accepted') {
      this.metrics.dlrOutcome.inc({ account: r.account, outcome: 'intermediate' });
      return Promise.resolve('ignored');
    }
    const opId = r.messageId;
    if (opId.trim().length === 0 || opId.length > MAX_OPERATOR_ID_LENGTH) {
      // Can never match a submit: counting it as unknown now beats parking it.
      this.metrics.dlrUnknown.inc({ account: r.account });
      this.metrics.dlrOutcome.inc({ account: r.account, outcome: 'unknown' });
      return Promise.resolve('ignored');
    }
    return this.queue.enqueue(1, (fx, w): ReceiptOutcome => {
      const kept = fx.keptAfterFinal;
      const outcome = this.runReceipt(r, fx, w, true);
      // Counted after commit (publish), so a failed batch counts nothing; 'ignored' here is an orphan: unknown.
      fx.outcomes.push([r.account, outcome === 'ignored' ? 'unknown' : outcome]);
      // A duplicate kept for a reused id is logged too: a replica keeps it the same way.
      if (this.log && (outcome === 'applied' || outcome === 'early' || fx.keptAfterFinal !== kept)) fx.ops.push({ k: 'd', r });
      return outcome;
    });
  }

  /** `local`: received by this process (false: replicated from another host, whose outcome counts there). */
  private runReceipt(r: DeliveryReceipt, fx: BatchEffects, w: WriteSet, local: boolean): ReceiptOutcome {
    const state = r.state;
    if (state === 'enroute' || state === 'accepted') return 'ignored';
    const opId = r.messageId;
    const now = this.now();
    // One key: the receipt's id was turned into its submit's key at the bind (receiptOperatorId);
    // normalising again is a no-op there and keeps receipts replicated by older versions matching.
    const canonical = canonicalOperatorId(opId);
    const ref = this.opids.get([r.account, canonical]);
    if (ref === undefined) {
      const waiting = this.early.get([r.account, canonical]);
      if (waiting !== undefined && waiting.a === undefined) {
        fx.duplicateReceipts++;
        return 'duplicate';
      }
      // Receipts kept for a reused id whose old part has since gone (retention): this one waits as early.
      if (waiting !== undefined) {
        w.remove(this.earlyAge, [waiting.r, r.account, canonical]);
        if (waiting.f === undefined) for (let i = 0; i <= (waiting.m?.length ?? 0); i++) fx.reusedIds.push([r.account, 'expired']);
      }
      const e = earlyEntry(r, state, now, local);
      w.put(this.early, [r.account, canonical], e);
      w.put(this.earlyAge, [now, r.account, canonical], 1);
      fx.early.push(r.account);
      return 'early';
    }
    const [messageId, index, segment] = ref;
    const row = this.rowOf(fx, messageId, index);
    const seg = row?.g[segment - 1];
    if (row?.p !== undefined && (seg === undefined || seg.c !== r.account)) {
      // A receipt (repeated) for an attempt a reroute took over from: the current attempt is another carrier's.
      fx.duplicateReceipts++;
      return 'duplicate';
    }
    if (row === undefined || seg === undefined) {
      fx.orphanReceipts++;
      return 'ignored';
    }
    if (isFinal(seg.s)) {
      fx.duplicateReceipts++;
      // Its id may have been reused by a newer submit whose result is not recorded yet: keep it
      // (not counted early) for that submit, unless an early receipt already waits under this key.
      // Kept ones accumulate (bounded, oldest dropped): the submit that reuses the key takes the
      // first that arrived after it went on the wire; those before are re-sends of the old part's.
      const waiting = this.early.get([r.account, canonical]);
      if (waiting === undefined || (waiting.a !== undefined && waiting.r <= now)) {
        const e = earlyEntry(r, state, now, local);
        e.a = 1;
        if (waiting !== undefined) {
          w.remove(this.earlyAge, [waiting.r, r.account, canonical]);
          const older: KeptReceipt = { s: waiting.s, d: waiting.d, r: waiting.r };
          if (waiting.e !== undefined) older.e = waiting.e;
          const all = [...(waiting.m ?? []), older];
          e.m = all.slice(-(KEPT_PER_ID - 1));
          if (waiting.f === undefined) for (let i = e.m.length; i < all.length; i++) fx.reusedIds.push([r.account, 'overflow']);
        }
        w.put(this.early, [r.account, canonical], e);
        w.put(this.earlyAge, [now, r.account, canonical], 1);
        fx.keptAfterFinal++;
        if (local) fx.reusedIds.push([r.account, 'kept']);
      }
      return 'duplicate';
    }
    finish(seg, state, state === 'delivered' ? undefined : r.error, r.doneAt);
    if (seg.t !== undefined) fx.latencies.push([r.account, latencySeconds(seg.t, r.doneAt, now)]);
    this.settle({ messageId, index, row, dirty: true }, now, fx, w);
    return 'applied';
  }

  // -------------------------------------------------------------- finalising

  /**
   * Give recipients a final state the gateway decided (dead-lettered job →
   * failed; police message offered to SMS → rejected). Segments still pending
   * take it; segments the SMSC accepted keep waiting for their receipt (or the
   * expiry sweep); a recipient already final is left alone.
   */
  finalizeRecipients(messageId: string, items: readonly { index: number; state: FinalState; error: string }[]): Promise<void> {
    if (items.length === 0) return Promise.resolve();
    return this.queue.enqueue(items.length, (fx, w) => {
      const now = this.now();
      this.runFinalize(messageId, items, now, fx, w);
      if (this.log) fx.ops.push({ k: 'f', id: messageId, at: now, items });
    });
  }

  private runFinalize(messageId: string, items: readonly { index: number; state: FinalState; error: string }[], at: number, fx: BatchEffects, w: WriteSet): void {
    const now = this.now();
    const msg = this.messages.get(messageId);
    if (msg === undefined) throw new GatewayError('INTERNAL', `finalizeRecipients: no message ${messageId}`);
    const work = new Map<string, Work>();
    for (const item of items) {
      const wk = this.work(work, messageId, item.index, fx);
      if (isFinal(wk.row.s)) continue;
      if (wk.row.g.length === 0) wk.row.g = pendingSegments(msg.s);
      for (const seg of wk.row.g) {
        if (seg.s === 'pending') {
          finish(seg, item.state, item.error, at);
          wk.dirty = true;
        }
      }
    }
    for (const wk of work.values()) if (wk.dirty) this.settle(wk, now, fx, w);
  }

  // ---------------------------------------------------------------- reroute

  /**
   * Keep what a second attempt of message `m` would send (its text, encoding
   * and sender; src/core/reroute.ts). The dispatcher calls it before the
   * first submit of a message routed by a rule with reroute on; the store
   * has no other copy of a text. Idempotent. Removed with the message's
   * expiry entry.
   */
  keepForReroute(m: { readonly id: string; readonly text: string; readonly encoding: 'gsm7' | 'ucs2'; readonly sender: string; readonly classification?: string }): Promise<void> {
    return this.txn(1, (fx, w) => {
      const text: StoredRerouteText = { x: m.text, n: m.encoding, f: m.sender };
      if (m.classification !== undefined) text.c = m.classification;
      this.runKeepText(m.id, text, w);
      if (this.log) fx.ops.push({ k: 'rk', id: m.id, text });
    });
  }

  private runKeepText(id: string, text: StoredRerouteText, w: WriteSet): void {
    if (this.rerouteText.get(id) === undefined && this.messages.get(id) !== undefined) w.put(this.rerouteText, id, text);
  }

  /**
   * A recipient waiting for, or in, its second attempt: the accounts of its
   * first attempt and the rule that routed it; undefined for any other.
   */
  rerouteOf(messageId: string, index: number): { readonly rule: string; readonly firstAccounts: readonly string[]; readonly final: boolean } | undefined {
    const row = this.recipients.get([messageId, index]);
    if (row?.p === undefined || row.p.length === 0) return undefined;
    const accounts = new Set<string>();
    for (const a of row.p) for (const g of a.g) if (g.c !== undefined) accounts.add(g.c);
    return { rule: row.r ?? '', firstAccounts: [...accounts], final: isFinal(row.s) };
  }

  /**
   * Up to `limit` recipients whose second attempt's job is to be published
   * (oldest message id first), each with what the job carries. An entry
   * whose recipient no longer waits (final: expired meanwhile) or whose text
   * is gone comes back with `job: undefined`: clear it without publishing.
   */
  pendingReroutes(limit: number): RerouteEntry[] {
    const out: RerouteEntry[] = [];
    for (const { key } of this.reroutes.getRange({ limit: Math.max(1, limit) })) {
      const [messageId, index] = key;
      const row = this.recipients.get([messageId, index]);
      const msg = this.messages.get(messageId);
      const text = this.rerouteText.get(messageId);
      const waiting = row !== undefined && row.p !== undefined && !isFinal(row.s) && row.g.length === 0;
      if (!waiting || msg === undefined || text === undefined) {
        out.push({ messageId, index, job: undefined });
        continue;
      }
      out.push({
        messageId, index,
        job: {
          tier: msg.r, tenant: msg.t, group: msg.g ?? '', createdAt: msg.a, expiresAt: msg.x, to: row.n,
          text: text.x, encoding: text.n, sender: text.f, ...(text.c !== undefined ? { classification: text.c } : {}),
        },
      });
    }
    return out;
  }

  /** The relay published (or dropped) these entries' jobs. Resolves when committed. */
  clearReroutes(keys: readonly { readonly messageId: string; readonly index: number }[]): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    return this.txn(keys.length, (_fx, w) => {
      for (const k of keys) w.remove(this.reroutes, [k.messageId, k.index]);
    });
  }

  /**
   * Second attempts that cannot be made (no account of another carrier is
   * listed now): the first attempt's result becomes the recipient's final
   * state, as without reroute. Recipients not waiting are left alone.
   */
  endReroutes(messageId: string, indices: readonly number[]): Promise<void> {
    if (indices.length === 0) return Promise.resolve();
    return this.txn(indices.length, (fx, w) => {
      this.runEndReroutes(messageId, indices, fx, w);
      if (this.log) fx.ops.push({ k: 'rn', id: messageId, idx: indices });
    });
  }

  private runEndReroutes(messageId: string, indices: readonly number[], fx: BatchEffects, w: WriteSet): void {
    const now = this.now();
    const own = this.messages.get(messageId)?.h === undefined;
    for (const index of indices) {
      const row = this.rowOf(fx, messageId, index);
      const last = row?.p?.[row.p.length - 1];
      if (row === undefined || last === undefined || isFinal(row.s) || row.g.length > 0) continue;
      row.g = last.g;
      row.p = row.p!.length > 1 ? row.p!.slice(0, -1) : undefined;
      if (row.p === undefined) delete row.p;
      delete row.r;
      row.s = 'submitted';
      if (own) fx.reroutes.push('no-account');
      this.settle({ messageId, index, row, dirty: true }, now, fx, w);
      w.remove(this.reroutes, [messageId, index]);
    }
  }

  /** Called after a commit that started reroutes (the relay publishes their jobs). Must not throw. */
  onReroute(listener: () => void): void {
    if (this.rerouteListeners.length >= MAX_FINAL_LISTENERS) throw new GatewayError('INTERNAL', `at most ${MAX_FINAL_LISTENERS} reroute listeners`);
    this.rerouteListeners.push(listener);
  }

  /**
   * PDA channel states (src/pda, docs/pda-protocol.md) onto the recipient
   * rows, so police recipients show in the same status API as SMS ones:
   *
   *   queued               → recipient `queued` (not final)
   *   delivered-to-device  → final `delivered`; one segment {account 'pda', operator id '<device>:<seq>'}
   *   read                 → stays `delivered`; the segment's note says `read`
   *   expired              → final `expired` with the reason
   *   undeliverable        → final `undeliverable` with the reason
   *
   * Updates may repeat after a crash: a state a recipient already has, or a
   * final state, is left alone.
   */
  recordPdaStates(updates: readonly PdaStateUpdate[]): Promise<void> {
    if (updates.length === 0) return Promise.resolve();
    return this.txn(updates.length, (fx, w) => {
      this.runPdaStates(updates, fx, w);
      if (this.log) fx.ops.push({ k: 'p', updates });
    });
  }

  private runPdaStates(updates: readonly PdaStateUpdate[], fx: BatchEffects, w: WriteSet): void {
    const work = new Map<string, Work>();
    for (const u of updates) {
      const wk = this.work(work, u.messageId, u.index, fx);
      const row = wk.row;
      if (u.state === 'queued') {
        if (row.s === 'accepted') {
          row.s = 'queued';
          wk.dirty = true;
        }
        continue;
      }
      if (u.state === 'read') {
        const seg = row.g[0];
        if (seg && seg.c === 'pda' && seg.e === undefined) {
          seg.e = `read at ${new Date(u.at).toISOString()}`;
          wk.dirty = true;
        }
        continue;
      }
      if (isFinal(row.s)) continue;
      const state: FinalState | undefined = u.state === 'delivered-to-device' ? 'delivered' : u.state === 'expired' ? 'expired' : u.state === 'undeliverable' ? 'undeliverable' : undefined;
      if (state === undefined) continue;
      const seg: StoredSegment = { s: state, c: 'pda', d: u.at, t: u.at };
      if (u.deviceId !== undefined) seg.o = `${u.deviceId}:${u.seq ?? 0}`;
      if (u.error !== undefined) seg.e = u.error;
      row.g = [seg];
      wk.dirty = true;
    }
    const now = this.now();
    for (const wk of work.values()) if (wk.dirty) this.settle(wk, now, fx, w);
  }

  /**
   * Expire what is past its validity plus the receipt grace: every segment
   * not final becomes `expired` (never-submitted ones included), so every
   * recipient of such a message ends final. Examines at most
   * `expiryRowsPerCall` recipient rows (a half-done message resumes where it
   * stopped on the next call); call it periodically. Returns the number of
   * recipients finalised.
   */
  expireDue(): Promise<number> {
    return this.txn(1, (fx, w) => {
      const now = this.now();
      const cutoff = now - this.graceMs;
      let budget = this.expiryRows;
      let finalised = 0;
      // Collected before writing: never write under a live cursor.
      const due = [...this.expiry.getRange({ end: [cutoff], limit: budget })];
      for (const { key, value: from } of due) {
        if (budget <= 0) break;
        const id = key[1];
        const msg = this.messages.get(id);
        if (msg === undefined) {
          w.remove(this.expiry, key);
          continue;
        }
        const rows = [...this.recipients.getRange({ start: [id, from], end: [id, msg.k], limit: budget })];
        budget -= Math.max(1, rows.length);
        const expired: number[] = [];
        for (const { key: rk, value: row } of rows) {
          if (isFinal(row.s)) continue;
          expireRow(row, msg.s, now);
          this.settle({ messageId: id, index: rk[1], row, dirty: true }, now, fx, w);
          finalised++;
          if (this.log) expired.push(rk[1]);
        }
        if (expired.length > 0) fx.ops.push({ k: 'e', id, at: now, idx: expired });
        const last = rows[rows.length - 1];
        const next = last === undefined ? msg.k : last.key[1] + 1;
        if (next >= msg.k) {
          w.remove(this.expiry, key);
          // Every recipient is final: no second attempt will need the text.
          if (this.rerouteText.get(id) !== undefined) w.remove(this.rerouteText, id);
        } else w.put(this.expiry, key, next);
      }
      return finalised;
    });
  }

  /**
   * Drop early receipts older than `earlyReceiptTtlMs` (their submit never
   * came, or came with an id that does not match): counted in dlrUnknown and
   * logged once per sweep. Returns how many were dropped.
   */
  async sweepEarlyReceipts(): Promise<number> {
    const swept = await this.txn(1, (_fx, w): SweptEarly => {
      const cutoff = this.now() - this.earlyTtlMs;
      const byAccount = new Map<string, number>();
      const local = new Map<string, number>();
      const reusedExpired = new Map<string, number>();
      const sample: string[] = [];
      let count = 0;
      for (const { key } of [...this.earlyAge.getRange({ end: [cutoff], limit: this.sweepRows })]) {
        const [receivedAt, account, canonical] = key;
        const e = this.early.get([account, canonical]);
        // The age entry of an early receipt that was replaced or applied is stale: only it goes.
        if (e !== undefined && e.r === receivedAt && e.a !== undefined) {
          // Kept after a final (counted duplicate on arrival): no submit reused its id; not an unknown.
          w.remove(this.early, [account, canonical]);
          if (e.f === undefined) reusedExpired.set(account, (reusedExpired.get(account) ?? 0) + (e.m?.length ?? 0) + 1);
        } else if (e !== undefined && e.r === receivedAt) {
          w.remove(this.early, [account, canonical]);
          if (e.f === undefined) local.set(account, (local.get(account) ?? 0) + 1);
          byAccount.set(account, (byAccount.get(account) ?? 0) + 1);
          if (sample.length < 3) sample.push(e.o);
          count++;
        }
        w.remove(this.earlyAge, key);
      }
      return { count, byAccount, local, sample, reusedExpired };
    });
    for (const [account, n] of swept.reusedExpired) this.metrics.dlrReusedId.inc({ account, outcome: 'expired' }, n);
    if (swept.count > 0) {
      for (const [account, n] of swept.byAccount) this.metrics.dlrUnknown.inc({ account }, n);
      for (const [account, n] of swept.local) this.metrics.dlrEarlyResolved.inc({ account, outcome: 'unknown' }, n);
      this.logger.warn(
        { count: swept.count, accounts: Object.fromEntries(swept.byAccount), sampleIds: swept.sample },
        'receipts matched no submitted segment within the early-receipt TTL; dropped',
      );
    }
    return swept.count;
  }

  /** Remove expired idempotency entries (at most `sweepRowsPerCall`). Returns how many. */
  sweepIdempotency(): Promise<number> {
    return this.txn(1, (_fx, w) => {
      const now = this.now();
      let removed = 0;
      for (const { key } of [...this.idempotencyExpiry.getRange({ end: [now], limit: this.sweepRows })]) {
        const [, tenant, k] = key;
        const e = this.idempotency.get([tenant, k]);
        // A key re-put later has a later expiry entry of its own; this one is stale.
        if (e !== undefined && e.x <= now) {
          w.remove(this.idempotency, [tenant, k]);
          removed++;
        }
        w.remove(this.idempotencyExpiry, key);
      }
      return removed;
    });
  }

  // --------------------------------------------------------------- retention

  /**
   * One bounded step of the retention purge (storage/retention.ts): examines
   * at most `scan` message rows from where the last step stopped (wrapping
   * round), and removes the messages created at or before `before` that are
   * final — no expiry entry left and every recipient row final — with their
   * recipient rows, their operator-id index rows (where they still point at
   * this message), their callback row and their idempotency answer (where it
   * is still this message's). At most `batchRows` rows per operation (the
   * commit queue may share a transaction with other work), at most `maxRows`
   * in all; the message row goes last, so a purge cut short (a crash, the
   * budget) is finished by a later step. A message with a recipient not
   * final is never touched (`skipped`).
   */
  async purgeFinalMessages(before: number, limits: { scan: number; batchRows: number; maxRows: number }): Promise<PurgeCounts> {
    const counts: PurgeCounts = { messages: 0, recipients: 0, receiptIndex: 0, callbacks: 0, idempotency: 0, skipped: 0 };
    const batch = Math.max(1, limits.batchRows);
    let budget = Math.max(1, limits.maxRows);
    const candidates: string[] = [];
    let scanned = 0;
    let last: string | undefined;
    for (const { key, value } of this.messages.getRange({ ...(this.purgeCursor !== undefined ? { start: this.purgeCursor } : {}), limit: Math.max(1, limits.scan) })) {
      scanned++;
      last = key;
      if (value.a > before || this.expiry.doesExist([value.x, key])) continue;
      candidates.push(key);
    }
    // The next step starts after the last row seen (a short page: from the beginning again), or at
    // the message the budget ran out on.
    this.purgeCursor = scanned < limits.scan || last === undefined ? undefined : `${last}\u0000`;
    for (const id of candidates) {
      if (budget <= 0) {
        this.purgeCursor = id;
        break;
      }
      // Every remaining row final before anything is removed (finals never change back).
      let allFinal = true;
      for (const { value } of this.recipients.getRange({ start: [id, 0], end: [id, Number.MAX_SAFE_INTEGER] })) {
        if (!isFinal(value.s)) {
          allFinal = false;
          break;
        }
      }
      if (!allFinal) {
        counts.skipped++;
        continue;
      }
      let done = false;
      while (!done && budget > 0) {
        const step = await this.txn(Math.min(batch, budget), (_fx, w) => {
          const out = { recipients: 0, receiptIndex: 0, message: false, callbacks: 0, idempotency: 0, blocked: false };
          const rows = [...this.recipients.getRange({ start: [id, 0], end: [id, Number.MAX_SAFE_INTEGER], limit: Math.min(batch, budget) })];
          if (rows.some(({ value }) => !isFinal(value.s))) {
            out.blocked = true;
            return out;
          }
          for (const { key, value } of rows) {
            value.g.forEach((seg, k) => {
              if (seg.c === undefined || seg.o === undefined) return;
              const opKey: OpKey = [seg.c, canonicalOperatorId(seg.o)];
              const ref = this.opids.get(opKey);
              // Operator ids are reused by SMSCs in time: only the entry that still points here.
              if (ref !== undefined && ref[0] === id && ref[1] === key[1] && ref[2] === k + 1) {
                w.remove(this.opids, opKey);
                out.receiptIndex++;
              }
            });
            w.remove(this.recipients, key);
            out.recipients++;
          }
          if (rows.length > 0) return out;
          // No recipient row left: the message row, its callback row and its idempotency answer.
          const msg = this.messages.get(id);
          if (msg === undefined) return out;
          if (this.callbacks.get(id) !== undefined) {
            w.remove(this.callbacks, id);
            out.callbacks++;
          }
          if (msg.i !== undefined) {
            const e = this.idempotency.get([msg.t, msg.i]);
            const answerId = (e?.v as { response?: { id?: unknown } } | undefined)?.response?.id;
            if (e !== undefined && answerId === id) {
              w.remove(this.idempotency, [msg.t, msg.i]);
              w.remove(this.idempotencyExpiry, [e.x, msg.t, msg.i]);
              out.idempotency++;
            }
          }
          w.remove(this.messages, id);
          this.accepted.delete(id);
          out.message = true;
          return out;
        });
        if (step.blocked) {
          counts.skipped++;
          break;
        }
        counts.recipients += step.recipients;
        counts.receiptIndex += step.receiptIndex;
        counts.callbacks += step.callbacks;
        counts.idempotency += step.idempotency;
        budget -= Math.max(1, step.recipients);
        if (step.message) {
          counts.messages++;
          done = true;
        } else if (step.recipients === 0) done = true; // gone meanwhile
      }
      if (!done && budget <= 0) {
        this.purgeCursor = id;
        break;
      }
    }
    return counts;
  }

  // ------------------------------------------------------------------ status

  /** Recipients by state (scans the message's rows: O(recipients)). All zero for an unknown id. */
  summary(id: string): Record<RecipientState, number> {
    const out = Object.fromEntries(RECIPIENT_STATES.map((s) => [s, 0])) as Record<RecipientState, number>;
    const msg = this.messages.get(id);
    if (msg === undefined) return out;
    if (msg.k === 1) {
      // One recipient (most completion callbacks): a point read instead of opening a cursor
      // (about 18% cheaper per call in a microbenchmark of 5,000 rows on this machine).
      const row = this.recipients.get([id, 0]);
      if (row !== undefined) out[row.s]++;
      return out;
    }
    for (const { value } of this.recipients.getRange({ start: [id, 0], end: [id, msg.k] })) out[value.s]++;
    return out;
  }

  /** The completion callback of a message with a callbackUrl: waiting, failed, or done (no row left). */
  callbackState(id: string): { state: string; attempts?: number; lastError?: string } | undefined {
    const msg = this.messages.get(id);
    if (msg === undefined || msg.u === undefined) return undefined;
    return callbackView(this.callbacks.get(id) ?? { state: 'done' });
  }

  /** A page of recipients in index order; `cursor` is the `next` of the previous page. */
  listRecipients(id: string, page: { cursor?: number; limit: number }): RecipientPage {
    const msg = this.messages.get(id);
    if (msg === undefined) return { items: [] };
    const limit = Math.max(1, Math.min(MAX_PAGE, Math.floor(page.limit)));
    const start = Math.max(0, Math.floor(page.cursor ?? 0));
    const items: Array<RecipientRecord & { index: number }> = [];
    for (const { key, value } of this.recipients.getRange({ start: [id, start], end: [id, msg.k], limit })) {
      items.push({ index: key[1], ...decodeRecipient(value) });
    }
    const last = items[items.length - 1];
    return last !== undefined && items.length === limit && last.index + 1 < msg.k ? { items, next: last.index + 1 } : { items };
  }

  /** Anomaly counters since open (duplicates, orphans, conflicting submits, ignored final results). */
  stats(): Readonly<ReceiptStoreStats> {
    return { ...this.counters };
  }

  /** Items queued or in uncommitted transactions (back-pressure signal). */
  get pendingWrites(): number {
    return this.queue.pending;
  }

  /**
   * Called after commit for each recipient that reached a final state, once.
   * Listeners must be quick and must not throw (a throw is logged).
   */
  onFinal(listener: FinalListener): void {
    if (this.listeners.length >= MAX_FINAL_LISTENERS) {
      throw new GatewayError('INTERNAL', `at most ${MAX_FINAL_LISTENERS} final-state listeners`);
    }
    this.listeners.push(listener);
  }

  /**
   * Called after a commit that wrote status events, with the events per lane
   * (`dest\u0000lane` → [dest, lane, count]; a count may include an operation
   * of the batch that was rolled back: a hint, never a promise). Must be quick.
   */
  onEvents(listener: (lanes: ReadonlyMap<string, readonly [string, number, number]>) => void): void {
    if (this.eventListeners.length >= MAX_FINAL_LISTENERS) throw new GatewayError('INTERNAL', `at most ${MAX_FINAL_LISTENERS} event listeners`);
    this.eventListeners.push(listener);
  }

  /** The status events of a message with a statusCallback: which, and how many were given up. */
  statusCallbackState(id: string): { events: readonly string[]; failed?: number; lastError?: string } | undefined {
    const s = this.messages.get(id);
    if (s === undefined || s.v === undefined) return undefined;
    const msg = decodeMessage(id, s);
    const f = this.eventFailures.get(id);
    return { events: msg.statusCallback?.events ?? [], ...(f !== undefined ? { failed: f.f, lastError: f.e } : {}) };
  }

  /** Refuse new writes, commit and flush everything accepted so far. The environment stays open. */
  close(): Promise<void> {
    // A failed last commit (storage full) must not hang the shutdown: it was never acknowledged.
    this.closing ??= this.queue.drain().then(() => envFlushed(this.env)).then(
      () => undefined,
      (e: unknown) => this.logger.warn({ err: e }, 'receipt store closed after a failed commit'),
    );
    return this.closing;
  }

  // ------------------------------------------------------------- replication

  /**
   * Apply one replicated outbox entry (another host's changes, stream
   * sequence `seq`) with the same rules as local writes; resolves when
   * committed. Each operation is its own step of the group commit (so it
   * sees the rows the previous one wrote) and moves this host's position
   * (`receipts.replica.position`) in the same transaction: an operation at
   * or before the position was applied already (a restart, or another
   * process of this host) and is skipped. Replicated changes are not logged
   * again. A message accepted elsewhere gets no expiry entry and no callback
   * row here: its own host expires it (and replicates that) and calls back.
   */
  async applyReplicated(seq: number, entry: OutboxEntry): Promise<ReplicaApplied> {
    const log = this.log;
    if (log === undefined) throw new GatewayError('INTERNAL', 'applyReplicated: replication is not configured');
    const done: ReplicaApplied = { applied: 0, skipped: 0, missing: 0 };
    if (entry.h === log.host) return done;
    const steps: Array<Promise<'applied' | 'skipped' | 'missing'>> = [];
    for (let i = 0; i < entry.ops.length; i++) {
      const op = entry.ops[i]!;
      steps.push(this.txn(opWeight(op), (fx, w) => {
        const at = log.positions.get('stream');
        if (at !== undefined && (at[0] > seq || (at[0] === seq && at[1] >= i))) return 'skipped';
        let outcome: 'applied' | 'missing' = 'applied';
        try {
          this.runReplica(op, entry.h, fx, w);
        } catch (e) {
          if (!(e instanceof GatewayError) || e.code !== 'INTERNAL') throw e;
          // A row this host lacks: nothing of the operation is written; it is counted, and the position moves on.
          fx.discard();
          w.clear();
          outcome = 'missing';
        }
        w.put(log.positions, 'stream', [seq, i]);
        return outcome;
      }));
    }
    for (const outcome of await Promise.all(steps)) done[outcome]++;
    return done;
  }

  /** The last replicated operation applied here: [stream sequence, index in its entry], or undefined. */
  replicaPosition(): readonly [number, number] | undefined {
    return this.log?.positions.get('stream');
  }

  private runReplica(op: ReplicaOp, origin: string, fx: BatchEffects, w: WriteSet): void {
    switch (op.k) {
      case 'm': {
        if (this.messages.get(op.id) !== undefined) return;
        w.put(this.messages, op.id, { ...op.msg, h: op.msg.h ?? origin });
        const at = op.msg.a;
        for (let i = 0; i < op.nums.length; i++) {
          if (this.recipients.get([op.id, i]) === undefined) w.put(this.recipients, [op.id, i], { n: op.nums[i]!, s: 'accepted', a: at, u: at, g: [] });
        }
        return;
      }
      case 'pm':
        if (this.messages.get(op.id) === undefined) w.put(this.messages, op.id, { ...op.msg, h: op.msg.h ?? origin });
        return;
      case 'x': {
        const msg = this.messages.get(op.id);
        if (msg === undefined) throw new GatewayError('INTERNAL', `replicated expansion: no message ${op.id}`);
        for (let k = 0; k < op.rows.length; k++) {
          const have = this.recipients.get([op.id, op.from + k]);
          // Only rows nothing happened to yet: a redelivered expansion rewrote them the same way.
          if (have === undefined || (have.s === 'accepted' && have.g.length === 0)) {
            w.put(this.recipients, [op.id, op.from + k], expandedRow(op.rows[k]!, msg.s, op.at));
          }
        }
        return;
      }
      case 'c':
        this.runCompleteExpansion(op.id, op.count, op.finals, fx, w);
        return;
      case 'i': {
        const have = this.idempotency.get([op.t, op.key]);
        if (have !== undefined && have.x >= op.x) return;
        w.put(this.idempotency, [op.t, op.key], { v: op.v, x: op.x });
        w.put(this.idempotencyExpiry, [op.x, op.t, op.key], 1);
        return;
      }
      case 'q':
        this.runMarkQueued(op.id, op.idx, op.at, fx);
        return;
      case 's':
        this.runSegments(op.results, fx, w);
        return;
      case 'd':
        this.runReceipt(op.r, fx, w, false);
        return;
      case 'f':
        this.runFinalize(op.id, op.items, op.at, fx, w);
        return;
      case 'p':
        this.runPdaStates(op.updates, fx, w);
        return;
      case 'rk':
        this.runKeepText(op.id, op.text, w);
        return;
      case 'rn':
        this.runEndReroutes(op.id, op.idx, fx, w);
        return;
      case 'w':
        this.applyRows(op, origin, w);
        return;
      case 'e': {
        const msg = this.messages.get(op.id);
        if (msg === undefined) throw new GatewayError('INTERNAL', `replicated expiry: no message ${op.id}`);
        const now = this.now();
        const work = new Map<string, Work>();
        for (const index of op.idx) {
          const wk = this.work(work, op.id, index, fx);
          if (isFinal(wk.row.s)) continue;
          expireRow(wk.row, msg.s, op.at);
          wk.dirty = true;
        }
        for (const wk of work.values()) if (wk.dirty) this.settle(wk, now, fx, w);
        return;
      }
    }
  }

  /**
   * Rows of another host's directory, quota or template change (RowLog):
   * each row whose version is newer than the one this host has; when one
   * was applied, the counter the change names (`b`: the directory's version)
   * is incremented here too, so caches keyed by it reload.
   */
  private applyRows(op: Extract<ReplicaOp, { k: 'w' }>, origin: string, w: WriteSet): void {
    const log = this.log!;
    const version: RowVersion = [op.at, origin];
    let applied = false;
    for (const row of op.rows) {
      const [name, key] = row;
      const db = this.replicaDb(name);
      const vk = versionKey(name, key);
      if (!newerVersion(version, log.rowVersions.get(vk))) continue;
      if (row.length === 3) w.put(db, key, row[2]);
      else w.remove(db, key);
      w.put(log.rowVersions, vk, version);
      applied = true;
    }
    if (applied && op.b !== undefined) {
      const counter = this.replicaDb(op.b[0]) as Database<number, string>;
      w.put(counter, op.b[1], (counter.get(op.b[1]) ?? 0) + 1);
    }
  }

  /** Databases replicated row by row: the directory's and the templates (never the receipt store's own). */
  private replicaDb(name: string): Database<unknown, Key> {
    if (!/^dir\.[A-Za-z]+$/.test(name) && name !== 'office.templates') {
      throw new GatewayError('INTERNAL', `replicated rows for database ${name}, which is not replicated`);
    }
    let db = this.replicaDbs.get(name);
    if (db === undefined) {
      db = this.env.openDB<unknown, Key>({ name, encoding: 'msgpack' });
      this.replicaDbs.set(name, db);
    }
    return db;
  }

  private runCompleteExpansion(messageId: string, count: number, finals: readonly { index: number; state: FinalState }[], fx: BatchEffects, w: WriteSet): void {
    const msg = this.messages.get(messageId);
    if (msg === undefined) throw new GatewayError('INTERNAL', `completeExpansion: no message ${messageId}`);
    w.put(this.messages, messageId, { ...msg, k: count });
    // Expiry is decided by the message's own host (a replica row has `h`).
    if (msg.h === undefined) w.put(this.expiry, [msg.x, messageId], 0);
    for (const f of finals) {
      fx.finals.push([messageId, f.index, f.state]);
      if (msg.v !== undefined && msg.h === undefined) {
        const row = this.rowOf(fx, messageId, f.index);
        if (row !== undefined) this.emitEvents(messageId, f.index, row, false, false, this.now(), fx, w);
      }
    }
  }

  private runMarkQueued(messageId: string, indices: readonly number[], now: number, fx: BatchEffects): void {
    for (const index of indices) {
      const row = this.rowOf(fx, messageId, index);
      if (row === undefined || row.s !== 'accepted') continue;
      row.s = 'queued';
      row.u = now;
      fx.stage(messageId, index, row);
    }
  }

  /** A plain put's change-log entry: committed with the puts of this turn; relays are told after that commit. */
  private logPlain(op: ReplicaOp): void {
    const log = this.log;
    if (log === undefined) return;
    log.append(op);
    if (this.logNotifyArmed) return;
    this.logNotifyArmed = true;
    void this.env.committed.then(
      () => {
        this.logNotifyArmed = false;
        log.notify();
      },
      () => {
        this.logNotifyArmed = false;
      },
    );
  }

  // ---------------------------------------------------------------- internal

  private assertOpen(): void {
    if (this.closing !== undefined) throw new GatewayError('STORE_CLOSED');
  }

  /** The working copy of a recipient row for this operation (loaded once). */
  /**
   * An operation that reads recipient rows other than through `rowOf` (ranges, replicated rows,
   * sweeps): the rows staged by earlier operations of the batch are written first. The hot
   * operations (queued marks, submit results, receipts, the dispatcher's finals) use the queue
   * directly and read through `rowOf`.
   */
  private txn<T>(weight: number, run: (fx: BatchEffects, w: WriteSet) => T): Promise<T> {
    return this.queue.enqueue(weight, (fx, w) => {
      this.writeRows(fx);
      return run(fx, w);
    });
  }

  /** Write the batch's staged rows (inside its transaction). */
  private writeRows(fx: BatchEffects): void {
    fx.keepOperationRows();
    if (fx.rows.size === 0) return;
    for (const { messageId, index, row } of fx.rows.values()) this.recipients.putSync([messageId, index], row);
    fx.rows.clear();
  }

  /**
   * A recipient row as the running operation must see it: its own staged change, a copy of one an
   * earlier operation of the batch staged, or the stored row.
   */
  private rowOf(fx: BatchEffects, messageId: string, index: number): StoredRecipient | undefined {
    if (fx.rows.size > 0 || fx.opRows.size > 0) {
      const k = rowKey(messageId, index);
      const own = fx.opRows.get(k);
      if (own !== undefined) return own.row;
      const kept = fx.rows.get(k);
      if (kept !== undefined) return copyRow(kept.row);
    }
    return this.recipients.get([messageId, index]);
  }

  private work(work: Map<string, Work>, messageId: string, index: number, fx: BatchEffects): Work {
    const k = rowKey(messageId, index);
    let wk = work.get(k);
    if (wk === undefined) {
      const row = Number.isInteger(index) && index >= 0 ? this.rowOf(fx, messageId, index) : undefined;
      if (row === undefined) throw new GatewayError('INTERNAL', `no recipient ${index} of message ${messageId}`);
      wk = { messageId, index, row, dirty: false };
      work.set(k, wk);
    }
    return wk;
  }

  private recordSubmitted(
    wk: Work,
    seg: StoredSegment,
    r: Extract<SegmentResult, { kind: 'submitted' }>,
    /** Early receipts this operation already took (its removals are not visible to its own reads). */
    consumedEarly: Set<string>,
    fx: BatchEffects,
    w: WriteSet,
  ): void {
    if (r.opId.trim().length === 0 || r.opId.length > MAX_OPERATOR_ID_LENGTH) {
      throw new GatewayError('INTERNAL', `operator id of ${r.opId.length} characters for message ${r.messageId}`);
    }
    if (seg.o !== undefined) {
      if (seg.o === r.opId && seg.c === r.account) return; // replayed result
      // Submitted twice (a job redelivered while its first delivery was still
      // submitting): the first id stays on the segment, the second is indexed
      // too so that whichever receipt comes first decides the segment.
      fx.conflicts.push([r.messageId, r.index, r.segment]);
    } else {
      seg.c = r.account;
      seg.o = r.opId;
      seg.t = r.at;
      // Already final (expired, or failed by a dead letter) stays final; the id is kept for the status API.
      if (seg.s === 'pending') seg.s = 'submitted';
      wk.dirty = true;
    }
    const key = canonicalOperatorId(r.opId);
    w.put(this.opids, [r.account, key], [r.messageId, r.index, r.segment]);
    // The early receipt waiting under this very key, if any: no other reading is tried.
    const e = this.early.get([r.account, key]);
    if (e === undefined) return;
    const taken = `${r.account}\u0000${key}`;
    if (consumedEarly.has(taken)) return;
    consumedEarly.add(taken);
    w.remove(this.early, [r.account, key]);
    w.remove(this.earlyAge, [e.r, r.account, key]);
    if (e.a !== undefined) {
      // Kept after its key's part was final (counted duplicate then): this submit's receipt is the
      // first that arrived after it went on the wire (no receipt precedes its submit); without the
      // send time (a result of an older version), the newest, if it arrived shortly before this
      // result. The others are re-sends of the old part's receipt, dropped now that the id is reused.
      const sentAt = r.sentAt;
      const kept = isFinal(seg.s) ? undefined : sentAt !== undefined
        ? (e.m ?? []).find((k) => k.r >= sentAt) ?? (e.r >= sentAt ? e : undefined)
        : r.at - e.r <= REUSED_ID_WINDOW_MS ? e : undefined;
      // Counted where each was received (the entry's `f`: the newest's; older ones came to the same host's bind or not at all here).
      if (e.f === undefined) {
        const n = (e.m?.length ?? 0) + 1;
        for (let i = 0; i < n; i++) fx.reusedIds.push([r.account, kept !== undefined && i === 0 ? 'applied' : 'resend']);
      }
      if (kept === undefined) return;
      finish(seg, kept.s, kept.e, kept.d);
      fx.latencies.push([r.account, latencySeconds(r.at, kept.d, this.now())]);
      wk.dirty = true;
      return;
    }
    if (isFinal(seg.s)) {
      fx.duplicateReceipts++;
      if (e.f === undefined) fx.earlyResolved.push([r.account, 'duplicate']);
    } else {
      finish(seg, e.s, e.e, e.d);
      fx.latencies.push([r.account, latencySeconds(r.at, e.d, this.now())]);
      wk.dirty = true;
      if (e.f === undefined) fx.earlyResolved.push([r.account, 'applied']);
    }
  }

  /**
   * Derive the recipient's state from its segments, queue the row, note a
   * new final state. An armed recipient (reroute) whose first attempt just
   * ended undeliverable or rejected by a receipt is not final: the attempt
   * is kept and the recipient goes back to `queued` for its second one (the
   * one exception to "never backwards"; src/core/reroute.ts).
   */
  private settle(wk: Work, now: number, fx: BatchEffects, w: WriteSet): void {
    const row = wk.row;
    const before = row.s;
    const submittedBefore = everSubmitted(row);
    this.settleState(wk, now, fx, w);
    row.u = now;
    fx.stage(wk.messageId, wk.index, row);
    if (row.s !== before) this.emitEvents(wk.messageId, wk.index, row, submittedBefore, isFinal(before), now, fx, w);
  }

  private settleState(wk: Work, now: number, fx: BatchEffects, w: WriteSet): void {
    const row = wk.row;
    const before = row.s;
    if (!isFinal(before)) {
      const derived = deriveRecipientState(segmentStates(row.g), before);
      if (isFinal(derived) && row.r !== undefined && this.startReroute(wk, derived, now, fx, w)) return;
      if (RANK[derived] > RANK[before]) row.s = derived;
      if (isFinal(row.s)) {
        const state = row.s;
        if (state !== 'delivered') {
          const e = row.g.find((s) => s.s === state)?.e;
          if (e !== undefined) row.e = e;
        }
        fx.finals.push([wk.messageId, wk.index, state]);
        if (row.p !== undefined && this.createdMessage(fx, wk.messageId)?.h === undefined) fx.reroutes.push(state);
      }
    }
  }

  /**
   * Inside the transaction that changed a recipient: the status events its
   * message asked for (statusCallback), in order — `submitted` (the first
   * time an SMSC has it: an operator id, in this attempt or an earlier one
   * of a reroute) before `final`. Each at most once per recipient. Only on
   * the message's own host (a replicated message's events are sent where it
   * was accepted, from the change replicated back there).
   */
  private emitEvents(messageId: string, index: number, row: StoredRecipient, submittedBefore: boolean, finalBefore: boolean, at: number, fx: BatchEffects, w: WriteSet): void {
    const msg = this.createdMessage(fx, messageId);
    if (msg === undefined || msg.v === undefined || msg.h !== undefined) return;
    const bits = msg.w ?? 0;
    const after = row.s;
    if ((bits & EVENT_BITS.submitted) !== 0 && !submittedBefore && everSubmitted(row)) {
      this.putEvent(msg.t, msg.v, { m: messageId, i: index, n: row.n, v: 'submitted', s: 'submitted', a: at, t: msg.t }, fx, w);
    }
    if ((bits & EVENT_BITS.final) !== 0 && !finalBefore && isFinal(after)) {
      this.putEvent(msg.t, msg.v, { m: messageId, i: index, n: row.n, v: 'final', s: after, a: at, t: msg.t, ...(row.e !== undefined ? { e: row.e } : {}) }, fx, w);
    }
  }

  /** One event at the end of its lane: seq = max(µs clock, the lane's last seq + 1). */
  private putEvent(tenant: string, url: string, ev: StoredEvent, fx: BatchEffects, w: WriteSet): void {
    const dk = `${tenant}\u0000${url}`;
    let dest = this.destinations.get(dk);
    if (dest === undefined) {
      if (this.destinations.size >= 4096) this.destinations.clear();
      dest = eventDestination(tenant, url);
      this.destinations.set(dk, dest);
    }
    const lane = eventLane(ev.m, ev.i);
    const lk = `${dest}\u0000${lane}`;
    let floor = fx.laneFloors.get(lk);
    if (floor === undefined) {
      floor = 0;
      for (const key of this.events.getKeys({ start: [dest, lane, Number.MAX_SAFE_INTEGER], end: [dest, lane, -1], reverse: true, limit: 1 })) floor = key[2];
    }
    const seq = Math.max(eventClock(), floor + 1);
    fx.laneFloors.set(lk, seq);
    w.put(this.events, [dest, lane, seq], ev);
    fx.events++;
    const c = fx.laneCounts.get(lk);
    if (c === undefined) fx.laneCounts.set(lk, [dest, lane, 1]);
    else c[2]++;
  }

  /**
   * A message row for the fields it is created with and never changes (tenant, statusCallback,
   * origin host `h`, expiry), read once per batch (`BatchEffects.messageRows`).
   */
  private createdMessage(fx: BatchEffects, messageId: string): StoredMessage | undefined {
    let msg = fx.messageRows.get(messageId);
    if (msg === undefined) {
      msg = this.accepted.get(messageId) ?? this.messages.get(messageId);
      if (msg !== undefined) fx.messageRows.set(messageId, msg);
    }
    return msg;
  }

  /** The reroute decision (attemptEnded); on `reroute`, the attempt is kept and, on the message's own host, its job queued to publish. */
  private startReroute(wk: Work, state: FinalState, now: number, fx: BatchEffects, w: WriteSet): boolean {
    const row = wk.row;
    const msg = this.messages.get(wk.messageId);
    if (msg === undefined) return false;
    const byReceipt = row.g.some((g) => g.o !== undefined && (REROUTE_STATES as readonly string[]).includes(g.s));
    if (attemptEnded({ state, armed: true, earlier: row.p?.length ?? 0, byReceipt, now, expiresAt: msg.x }) !== 'reroute') return false;
    const attempt: StoredAttempt = { g: row.g, s: state, u: now };
    const e = row.g.find((g) => g.s === state)?.e;
    if (e !== undefined) attempt.e = e;
    row.p = [...(row.p ?? []), attempt];
    row.g = [];
    row.s = 'queued';
    delete row.e;
    // The message's own host publishes the second attempt's job (and counts it), like it runs expiry and callbacks.
    if (msg.h === undefined) {
      w.put(this.reroutes, [wk.messageId, wk.index], now);
      fx.reroutes.push('started');
    }
    return true;
  }

  /** smsgw_dlr_received_total of one account and state, bound once (configured accounts × receipt states: a small, fixed set). */
  private dlrReceived(account: string, state: DeliveryReceipt['state']): BoundCounter {
    const k = `${state}\u0000${account}`;
    let c = this.dlrReceivedBy.get(k);
    if (c === undefined) {
      c = boundCounter(this.metrics.dlrReceived, { account, state });
      this.dlrReceivedBy.set(k, c);
    }
    return c;
  }

  /** smsgw_dlr_latency_seconds of one account, bound once (accounts are the configured binds: a small, fixed set). */
  private dlrLatency(account: string): BoundHistogram {
    let h = this.dlrLatencyByAccount.get(account);
    if (h === undefined) {
      h = boundHistogram(this.metrics.dlrLatencySeconds, { account });
      this.dlrLatencyByAccount.set(account, h);
    }
    return h;
  }

  /** After commit: metrics, anomaly counters, listeners. Never throws. */
  private publish(fx: BatchEffects): void {
    try {
      if (fx.finals.length > 0) {
        const byState = new Map<FinalState, number>();
        for (const f of fx.finals) byState.set(f[2], (byState.get(f[2]) ?? 0) + 1);
        for (const [state, n] of byState) this.metrics.recipientsFinal.inc({ state }, n);
      }
      for (const [account, seconds] of fx.latencies) this.dlrLatency(account).observe(seconds);
      if (fx.early.length > 0) {
        const byAccount = new Map<string, number>();
        for (const a of fx.early) byAccount.set(a, (byAccount.get(a) ?? 0) + 1);
        for (const [account, n] of byAccount) this.metrics.dlrEarly.inc({ account }, n);
      }
      if (fx.outcomes.length > 0) countByLabels(this.metrics.dlrOutcome, fx.outcomes);
      if (fx.reroutes.length > 0) {
        const byOutcome = new Map<RerouteOutcome, number>();
        for (const o of fx.reroutes) byOutcome.set(o, (byOutcome.get(o) ?? 0) + 1);
        for (const [outcome, n] of byOutcome) this.metrics.reroutes.inc({ outcome }, n);
      }
      if (fx.earlyResolved.length > 0) countByLabels(this.metrics.dlrEarlyResolved, fx.earlyResolved);
      if (fx.reusedIds.length > 0) countByLabels(this.metrics.dlrReusedId, fx.reusedIds);
      this.counters.duplicateReceipts += fx.duplicateReceipts;
      this.counters.orphanReceipts += fx.orphanReceipts;
      this.counters.ignoredFinalResults += fx.ignoredFinalResults;
      this.counters.conflictingSubmits += fx.conflicts.length;
      const first = fx.conflicts[0];
      if (first !== undefined) {
        this.logger.warn(
          { count: fx.conflicts.length, messageId: first[0], index: first[1], segment: first[2] },
          'segments submitted again with a different operator id; both ids are indexed',
        );
      }
    } catch (err) {
      this.logger.error({ err }, 'publishing receipt-store metrics failed');
    }
    if (fx.reroutes.includes('started')) {
      for (const l of this.rerouteListeners) {
        try {
          l();
        } catch (err) {
          this.logger.error({ err }, 'reroute listener threw');
        }
      }
    }
    if (fx.events > 0) {
      for (const l of this.eventListeners) {
        try {
          l(fx.laneCounts);
        } catch (err) {
          this.logger.error({ err }, 'status event listener threw');
        }
      }
    }
    if (this.listeners.length === 0) return;
    let failures = 0;
    let firstError: unknown;
    // Replication on: a message accepted on another host carries its origin (`h`).
    const own = this.log === undefined ? undefined : new Map<string, boolean>();
    for (const [messageId, index, state] of fx.finals) {
      let isOwn = true;
      if (own !== undefined) {
        const known = own.get(messageId);
        if (known !== undefined) isOwn = known;
        else {
          isOwn = this.messages.get(messageId)?.h === undefined;
          own.set(messageId, isOwn);
        }
      }
      for (const listener of this.listeners) {
        try {
          listener(messageId, index, state, isOwn);
        } catch (err) {
          if (failures++ === 0) firstError = err;
        }
      }
    }
    if (failures > 0) this.logger.error({ err: firstError, failures }, 'final-state listeners threw');
  }
}

/** An SMSC took this recipient's text (an operator id on a segment of this attempt or an earlier one). */
function everSubmitted(row: StoredRecipient): boolean {
  return (RANK[row.s] >= RANK.submitted && row.g.some((g) => g.o !== undefined)) || (row.p?.some((a) => a.g.some((g) => g.o !== undefined)) ?? false);
}

/** Microseconds since the epoch, never repeating nor going back within this process (status event seqs). */
let lastEventTick = 0;
function eventClock(): number {
  const now = Date.now() * 1000;
  lastEventTick = now > lastEventTick ? now : lastEventTick + 1;
  return lastEventTick;
}

/** One inc per (account, outcome) of a batch, not one per receipt. */
function countByLabels(counter: Metrics['dlrOutcome'], items: ReadonlyArray<readonly [string, string]>): void {
  const n = new Map<string, number>();
  for (const [account, outcome] of items) {
    const k = `${account}\u0000${outcome}`;
    n.set(k, (n.get(k) ?? 0) + 1);
  }
  for (const [k, count] of n) {
    const cut = k.indexOf('\u0000');
    counter.inc({ account: k.slice(0, cut), outcome: k.slice(cut + 1) }, count);
  }
}

/** The stored segment a result refers to, creating the segment list on the first result. */
function segmentOf(wk: Work, segment: number, segments: number): StoredSegment {
  if (!Number.isInteger(segments) || segments < 1 || segments > MAX_SEGMENTS) {
    throw new GatewayError('INTERNAL', `message ${wk.messageId}: ${segments} segments`);
  }
  if (wk.row.g.length === 0) wk.row.g = pendingSegments(segments);
  else if (wk.row.g.length !== segments) {
    throw new GatewayError('INTERNAL', `message ${wk.messageId} recipient ${wk.index}: ${segments} segments, ${wk.row.g.length} recorded`);
  }
  const seg = Number.isInteger(segment) ? wk.row.g[segment - 1] : undefined;
  if (seg === undefined) throw new GatewayError('INTERNAL', `message ${wk.messageId}: no segment ${segment} of ${segments}`);
  return seg;
}

/** Every segment not final becomes `expired` (a recipient never submitted gets its segments first). */
function expireRow(row: StoredRecipient, segments: number, at: number): void {
  if (row.g.length === 0) row.g = pendingSegments(segments);
  for (const seg of row.g) if (!isFinal(seg.s)) finish(seg, 'expired', EXPIRED_REASON, at);
}

/** Group-commit weight of a replicated operation: about the rows it touches. */
function opWeight(op: ReplicaOp): number {
  switch (op.k) {
    case 'm': return 1 + op.nums.length;
    case 'x': return 1 + op.rows.length;
    case 'c': return 1 + op.finals.length;
    case 'q': case 'e': case 'rn': return Math.max(1, op.idx.length);
    case 's': return Math.max(1, op.results.length);
    case 'f': return Math.max(1, op.items.length);
    case 'p': return Math.max(1, op.updates.length);
    default: return 1;
  }
}

/** A fan-out row: accepted, or final already (refused at expansion) with every segment so. */
function expandedRow(r: ExpandedRow, segments: number, at: number): StoredRecipient {
  if (r.final === undefined) return { n: r.to, s: 'accepted', a: at, u: at, g: [] };
  const g = pendingSegments(segments);
  for (const seg of g) finish(seg, r.final.state, r.final.error, at);
  return { n: r.to, s: r.final.state, a: at, u: at, g, e: r.final.error };
}

function pendingSegments(n: number): StoredSegment[] {
  const out: StoredSegment[] = [];
  for (let i = 0; i < n; i++) out.push({ s: 'pending' });
  return out;
}

/** A receipt waiting under its key (receipts.early), as received at `now`: early, or (the caller sets `a`) kept for a reused id. */
function earlyEntry(r: DeliveryReceipt, state: FinalState, now: number, local: boolean): StoredEarly {
  const e: StoredEarly = { s: state, d: r.doneAt, r: now, o: r.messageId };
  if (r.error !== undefined && state !== 'delivered') e.e = r.error;
  if (!local) e.f = 1;
  return e;
}

function finish(seg: StoredSegment, state: FinalState, error: string | undefined, at: number): void {
  seg.s = state;
  seg.d = at;
  if (error !== undefined) seg.e = error;
}

/** submit_sm_resp → receipt. `done date:` has minute resolution and the SMSC's clock: before the submit, use now. */
function latencySeconds(submittedAt: number, doneAt: number, now: number): number {
  const end = doneAt >= submittedAt ? doneAt : now;
  return Math.max(0, end - submittedAt) / 1000;
}

function checkIdempotencyKey(tenant: string, key: string): void {
  if (tenant.length + key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new GatewayError('VALIDATION', 'Idempotency-Key is too long', {
      details: [{ field: '/headers/idempotency-key', message: `at most ${MAX_IDEMPOTENCY_KEY_LENGTH - tenant.length} characters` }],
    });
  }
}

function positive(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 1) throw new GatewayError('CONFIG_INVALID', `receipt store: ${name} must be a positive integer, got ${n}`);
  return n;
}
