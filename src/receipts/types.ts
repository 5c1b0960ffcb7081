/**
 * Public record shapes of the receipt store. These are what callers read and
 * write; the stored (msgpack) shapes are smaller and live in `records.ts`.
 */
import type { Channel, FinalState, RecipientState, SegmentRecord, SmsEncoding, StatusCallback } from '../core/message.js';

export type { SegmentRecord };

export interface MessageRecord {
  readonly id: string;
  readonly tenant: string;
  readonly tier: string;
  readonly channel: Channel;
  readonly encoding: SmsEncoding;
  /** SMS parts per recipient (every recipient gets the same text). */
  readonly segments: number;
  readonly recipients: number;
  /** Epoch ms of acceptance (the 202). */
  readonly createdAt: number;
  /** Epoch ms after which nothing is submitted; open segments expire after it plus the receipt grace. */
  readonly expiresAt: number;
  readonly group?: string;
  readonly reference?: string;
  readonly idempotencyKey?: string;
  /** A keyed send's request fingerprint (a retry under the same key must match it). */
  readonly fingerprint?: string;
  readonly callbackUrl?: string;
  /** Per-recipient status events (status-events.ts). */
  readonly statusCallback?: StatusCallback;
}

export interface RecipientRecord {
  /** Normalised number, digits with country code. Never logged in clear. */
  readonly to: string;
  readonly state: RecipientState;
  readonly acceptedAt: number;
  readonly updatedAt: number;
  /** One entry per SMS part once the first result is recorded; empty before. */
  readonly segs: SegmentRecord[];
  /** Why the recipient ended in a non-delivered final state (its worst segment's error). */
  readonly error?: string;
  /**
   * Present when the recipient was rerouted (src/core/reroute.ts): every
   * attempt, oldest first, each with its own parts; the last is the current
   * one (`segs` above), whose state is the recipient's.
   */
  readonly attempts?: readonly AttemptRecord[];
}

/** One attempt of a rerouted recipient. */
export interface AttemptRecord {
  readonly state: RecipientState;
  readonly segs: readonly SegmentRecord[];
  /** Epoch ms the attempt ended (absent: the current attempt is still open). */
  readonly endedAt?: number;
  readonly error?: string;
}

/** What the dispatcher learned about one segment. */
export type SegmentResult =
  /** submit_sm_resp ESME_ROK with the operator message id. */
  | {
      readonly kind: 'submitted';
      readonly messageId: string;
      readonly index: number;
      /** 1-based part number. */
      readonly segment: number;
      /** Parts of this recipient's message. */
      readonly segments: number;
      readonly account: string;
      readonly opId: string;
      /** Epoch ms of the submit_sm_resp. */
      readonly at: number;
      /** Epoch ms the submit went on the wire, when the transport says (SubmitOutcome.sentAt). */
      readonly sentAt?: number;
      /** The first attempt's routing rule has reroute on: its name (arms the recipient; src/core/reroute.ts). */
      readonly reroute?: string;
    }
  /** The gateway's own final verdict (SMSC rejected the submit, deadline passed, gave up). */
  | {
      readonly kind: 'final';
      readonly messageId: string;
      readonly index: number;
      readonly segment: number;
      readonly segments: number;
      readonly state: FinalState;
      readonly error: string;
      readonly at: number;
    };

/**
 * - `applied`: the receipt gave a segment its final state.
 * - `early`: no submit is recorded for that operator id (yet); kept until the
 *   submit arrives or `earlyReceiptTtlMs` passes.
 * - `duplicate`: the segment (or the early entry) already had its final state.
 * - `ignored`: an intermediate receipt (enroute/accepted), or the segment it
 *   points at no longer exists.
 */
export type ReceiptOutcome = 'applied' | 'early' | 'duplicate' | 'ignored';

/**
 * A recipient reached a final state (after commit, once per host). `own` is
 * false when the message was accepted on another host and its row here is a
 * replica: things done once per message (completion callback, status event)
 * are left to the message's own host.
 */
export type FinalListener = (messageId: string, index: number, state: FinalState, own: boolean) => void;

export interface RecipientPage {
  readonly items: Array<RecipientRecord & { readonly index: number }>;
  /** Cursor for the next page (a recipient index); absent on the last page. */
  readonly next?: number;
}

/** Anomalies the store counts in-process (see the report for the metrics they deserve). */
export interface ReceiptStoreStats {
  /** Final receipts for segments already final (repeated DLR, DLR after the expiry sweep). */
  duplicateReceipts: number;
  /** Receipts whose operator id is indexed but whose recipient row is gone. */
  orphanReceipts: number;
  /** `submitted` results for segments that already carried another operator id. */
  conflictingSubmits: number;
  /** `final` results ignored because the segment was already submitted or final. */
  ignoredFinalResults: number;
}
