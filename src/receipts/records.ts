/**
 * Stored shapes of the receipt store's LMDB rows (msgpack values,
 * ordered-binary array keys) and their conversion to the public records.
 * Message, recipient and callback rows are written as positional tuples
 * of these shapes (row-codec.ts); the others as msgpack records.
 *
 * Field names are one letter because a 500k broadcast writes 500k recipient
 * rows and rewrites each of them two or three times; the public types in
 * `types.ts` keep readable names. These shapes are an on-disk format: add
 * optional fields, never rename or re-purpose one.
 *
 *   receipts.messages           id                                → StoredMessage
 *   receipts.recipients         [id, index]                       → StoredRecipient
 *   receipts.expiry             [expiresAt, id]                   → next recipient index to examine
 *   receipts.opids              [account, canonical opId]         → [id, index, segment]
 *   receipts.early              [account, canonical opId]         → StoredEarly
 *   receipts.early.age          [receivedAt, account, canonical]  → 1
 *   receipts.idempotency        [tenant, key]                     → StoredIdempotency
 *   receipts.idempotency.expiry [expiresAt, tenant, key]          → 1
 *   receipts.reroute            [id, index]                       → epoch ms the reroute was decided (a job to publish)
 *   receipts.reroute.text       id                                → StoredRerouteText (what a second attempt sends)
 *   receipts.events             [dest, lane, seq]                 → StoredEvent (per-recipient status events to POST)
 *   receipts.events.lanes       [dest, lane]                      → StoredLane (lease and retry state; status-events.ts)
 *   receipts.events.failed      messageId                         → StoredEventFailure
 *   receipts.outbox, receipts.replica.position: see change-log.ts
 *
 * Status events: `dest` names one (tenant, statusCallback url) pair (a hash,
 * eventDestination), `lane` = hash(message, recipient) mod STATUS_EVENT_LANES,
 * `seq` grows within a lane (µs clock, at least the lane's last seq + 1,
 * allocated inside the write transaction that changes the recipient). So all
 * events of one recipient sit in one lane in the order they happened, and a
 * lane is POSTed strictly in key order, one batch at a time:
 *
 *   dest A ─ lane 0: [seq 17: m1#0 submitted] [seq 40: m1#0 final] [seq 41: m2#3 final] …
 *          ─ lane 1: [seq 22: m1#1 final] …
 *   dest B ─ lane 0: …
 */
import { createHash } from 'node:crypto';
import { isFinal, STATUS_EVENTS, type FinalState, type RecipientState, type SegmentState, type StatusEvent } from '../core/message.js';
import type { MessageRecord, RecipientRecord, SegmentRecord } from './types.js';

export interface StoredMessage {
  t: string; // tenant
  r: string; // tier
  c: MessageRecord['channel'];
  n: MessageRecord['encoding'];
  s: number; // segments per recipient
  k: number; // recipients
  a: number; // createdAt
  x: number; // expiresAt
  g?: string; // group
  f?: string; // reference
  i?: string; // idempotencyKey
  u?: string; // callbackUrl
  p?: string; // request fingerprint of a keyed send
  v?: string; // statusCallback url
  w?: number; // statusCallback events: bit 1 submitted, bit 2 final (EVENT_BITS)
  h?: string; // origin host of a replicated message (absent: accepted on this host)
}

export interface StoredSegment {
  s: SegmentState;
  c?: string; // account
  o?: string; // operator message id as the SMSC gave it
  t?: number; // submittedAt
  d?: number; // doneAt
  e?: string; // error
}

export interface StoredRecipient {
  n: string; // number
  s: RecipientState;
  a: number; // acceptedAt
  u: number; // updatedAt
  g: StoredSegment[]; // the parts of the current (last) attempt
  e?: string; // error
  r?: string; // reroute armed: the routing rule of the first attempt (src/core/reroute.ts)
  p?: StoredAttempt[]; // earlier attempts (a reroute), oldest first
}

/** An attempt a reroute took over from: its parts as they ended. */
export interface StoredAttempt {
  g: StoredSegment[];
  s: FinalState;
  e?: string;
  u: number; // when it ended (the reroute was decided)
}

/** What a second attempt sends: the text as the first job carried it. */
export interface StoredRerouteText {
  x: string; // text
  n: 'gsm7' | 'ucs2'; // encoding
  f: string; // sender (source)
  c?: string; // classification
}

export interface StoredEarly {
  s: FinalState;
  d: number; // doneAt (from the receipt)
  r: number; // receivedAt (our clock; the TTL runs from here)
  o: string; // operator id as received
  e?: string;
  f?: 1; // received on another host (replicated): its outcome is counted there
  /**
   * Received while its key named a part already final (counted `duplicate`): an SMSC re-send, or
   * the receipt of a newer submit that reuses the id (ids from 1 again after an SMSC restart),
   * arriving before that submit's result is recorded. A submit recorded under the key takes the
   * first kept receipt that arrived after the submit went on the wire (within REUSED_ID_WINDOW_MS
   * of the result when the send time is unknown); never counted early / unknown.
   */
  a?: 1;
  /** With `a`: receipts kept earlier under the same key, oldest first (this entry's own fields are the newest). */
  m?: KeptReceipt[];
}

/** A receipt kept after its key's part was final (StoredEarly.a), older than the newest. */
export interface KeptReceipt {
  s: FinalState;
  d: number;
  r: number;
  e?: string;
}

/** [messageId, recipient index, 1-based segment] */
export type StoredOpRef = [string, number, number];

export interface StoredIdempotency {
  v: unknown;
  x: number; // expiresAt
}

/** A status event waiting to be POSTed. */
export interface StoredEvent {
  m: string; // messageId
  i: number; // recipient index
  n: string; // number
  v: StatusEvent; // which event
  s: RecipientState; // the recipient's state then
  a: number; // epoch ms of the change
  e?: string; // error (non-delivered final states)
  t: string; // tenant (signs the POST)
}

/** A lane's lease (one process POSTs it at a time) and retry state. */
export interface StoredLane {
  a: number; // failed attempts of the head batch
  x: number; // next attempt not before (epoch ms)
  o?: number; // lease owner (pid)
  l?: number; // lease until (epoch ms)
  e?: string; // last error (tenant-visible form)
}

/** Events of a message given up after callbacks.attempts. */
export interface StoredEventFailure {
  f: number; // events given up
  e: string; // last error (tenant-visible form)
  a: number; // when (epoch ms)
}

export type EventKey = [string, number, number];
export type LaneKey = [string, number];

/** Lanes per destination: events of one recipient always go to the same lane (never change: order depends on it). */
export const STATUS_EVENT_LANES = 8;

/** A (tenant, url) pair as a short key: one destination's events sort together. */
export function eventDestination(tenant: string, url: string): string {
  return createHash('sha256').update(tenant).update('\u0000').update(url).digest('base64url').slice(0, 22);
}

/** The lane of a recipient's events (FNV-1a over the message id, then the index). */
export function eventLane(messageId: string, index: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < messageId.length; i++) h = Math.imul(h ^ messageId.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ index, 0x01000193);
  return (h >>> 0) % STATUS_EVENT_LANES;
}

/** A status event's bit in StoredMessage.w. */
export const EVENT_BITS: Record<StatusEvent, number> = { submitted: 1, final: 2 };

export type RecipientKey = [string, number];
export type ExpiryKey = [number, string];
export type OpKey = [string, string];
export type EarlyAgeKey = [number, string, string];
export type IdempotencyKey = [string, string];
export type IdempotencyExpiryKey = [number, string, string];
export type RerouteKey = [string, number];

export function encodeMessage(m: MessageRecord): StoredMessage {
  const out: StoredMessage = {
    t: m.tenant, r: m.tier, c: m.channel, n: m.encoding, s: m.segments, k: m.recipients, a: m.createdAt, x: m.expiresAt,
  };
  if (m.group !== undefined) out.g = m.group;
  if (m.reference !== undefined) out.f = m.reference;
  if (m.idempotencyKey !== undefined) out.i = m.idempotencyKey;
  if (m.callbackUrl !== undefined) out.u = m.callbackUrl;
  if (m.fingerprint !== undefined) out.p = m.fingerprint;
  if (m.statusCallback !== undefined) {
    out.v = m.statusCallback.url;
    out.w = m.statusCallback.events.reduce((bits, e) => bits | EVENT_BITS[e], 0);
  }
  return out;
}

export function decodeMessage(id: string, s: StoredMessage): MessageRecord {
  const out: { -readonly [K in keyof MessageRecord]: MessageRecord[K] } = {
    id, tenant: s.t, tier: s.r, channel: s.c, encoding: s.n, segments: s.s, recipients: s.k, createdAt: s.a, expiresAt: s.x,
  };
  if (s.g !== undefined) out.group = s.g;
  if (s.f !== undefined) out.reference = s.f;
  if (s.i !== undefined) out.idempotencyKey = s.i;
  if (s.u !== undefined) out.callbackUrl = s.u;
  if (s.p !== undefined) out.fingerprint = s.p;
  if (s.v !== undefined) out.statusCallback = { url: s.v, events: STATUS_EVENTS.filter((e) => ((s.w ?? 0) & EVENT_BITS[e]) !== 0) };
  return out;
}

export function decodeSegment(s: StoredSegment): SegmentRecord {
  const out: SegmentRecord = { state: s.s };
  if (s.c !== undefined) out.account = s.c;
  if (s.o !== undefined) out.opId = s.o;
  if (s.t !== undefined) out.submittedAt = s.t;
  if (s.d !== undefined) out.doneAt = s.d;
  if (s.e !== undefined) out.error = s.e;
  return out;
}

export function decodeRecipient(s: StoredRecipient): RecipientRecord {
  const out: { -readonly [K in keyof RecipientRecord]: RecipientRecord[K] } = {
    to: s.n, state: s.s, acceptedAt: s.a, updatedAt: s.u, segs: s.g.map(decodeSegment),
  };
  if (s.e !== undefined) out.error = s.e;
  if (s.p !== undefined && s.p.length > 0) {
    out.attempts = [
      ...s.p.map((a) => ({ state: a.s, endedAt: a.u, segs: a.g.map(decodeSegment), ...(a.e !== undefined ? { error: a.e } : {}) })),
      { state: s.s, segs: s.g.map(decodeSegment), ...(isFinal(s.s) ? { endedAt: s.u } : {}), ...(s.e !== undefined && isFinal(s.s) ? { error: s.e } : {}) },
    ];
  }
  return out;
}

/** The view `deriveRecipientState` needs: it reads only `state`. */
export function segmentStates(g: readonly StoredSegment[]): SegmentRecord[] {
  return g.map((s) => ({ state: s.s }));
}
