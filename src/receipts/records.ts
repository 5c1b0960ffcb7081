/**
 * Stored shapes of the receipt store's LMDB rows (msgpack values,
 * ordered-binary array keys) and their conversion to the public records.
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
 *   receipts.outbox, receipts.replica.position: see change-log.ts
 */
import { isFinal, type FinalState, type RecipientState, type SegmentState } from '../core/message.js';
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
}

/** [messageId, recipient index, 1-based segment] */
export type StoredOpRef = [string, number, number];

export interface StoredIdempotency {
  v: unknown;
  x: number; // expiresAt
}

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
