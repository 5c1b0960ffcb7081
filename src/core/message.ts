/**
 * Domain types of a message and its recipients. Pure: no I/O here.
 *
 *   Message ──1:N──▶ Recipient ──1:K──▶ Segment (one per SMS part)
 *
 * A recipient's state is derived from its segments' states (see
 * `deriveRecipientState`): delivered only when every segment is; otherwise,
 * once every segment is final, the worst segment's state.
 */

export type Channel = 'sms' | 'pda' | 'auto';

/** SMS data coding the gateway sends with: GSM 03.38 7-bit or UCS-2. */
export type SmsEncoding = 'gsm7' | 'ucs2';

export const RECIPIENT_STATES = [
  'accepted', // durable at ingest (the 202 was sent)
  'queued', // a dispatcher has taken it and is waiting for a bind
  'submitted', // every segment has an operator message id, no final DLR yet
  'delivered',
  'undeliverable',
  'expired',
  'rejected',
  'failed',
] as const;
export type RecipientState = (typeof RECIPIENT_STATES)[number];

export const FINAL_STATES = ['delivered', 'undeliverable', 'expired', 'rejected', 'failed'] as const;
export type FinalState = (typeof FINAL_STATES)[number];

export function isFinal(state: string): state is FinalState {
  return (FINAL_STATES as readonly string[]).includes(state);
}

/** Segment-level states. `pending`: not yet submitted (or its submit must be retried). */
export type SegmentState = 'pending' | 'submitted' | FinalState;

/**
 * Per-recipient status events a message may ask for (`statusCallback.events`):
 * `submitted` — the SMSC accepted the recipient's text (it has an operator id);
 * `final` — the recipient reached a final state. A recipient gives each at most once, in that order.
 */
export const STATUS_EVENTS = ['submitted', 'final'] as const;
export type StatusEvent = (typeof STATUS_EVENTS)[number];

/** Where a message's per-recipient status events go, and which. */
export interface StatusCallback {
  readonly url: string;
  readonly events: readonly StatusEvent[];
}

/**
 * Severity order used to pick the "worst" final segment state for a recipient.
 * rejected (the SMSC refused the submit) and failed (the gateway gave up) are
 * worse than undeliverable (the network tried), which is worse than expired.
 */
const SEVERITY: Record<FinalState, number> = {
  delivered: 0,
  expired: 1,
  undeliverable: 2,
  failed: 3,
  rejected: 4,
};

export interface SegmentRecord {
  /** SMSC account the segment was submitted through (operator message ids are unique per account). */
  account?: string;
  /** Operator (SMSC) message id from submit_sm_resp. */
  opId?: string;
  state: SegmentState;
  /** Epoch ms of submit_sm_resp. */
  submittedAt?: number;
  /** Epoch ms of the final state. */
  doneAt?: number;
  /** Error text: SMPP status name, DLR `err:` code, or gateway reason. */
  error?: string;
}

export function deriveRecipientState(
  segments: readonly SegmentRecord[],
  before: RecipientState,
): RecipientState {
  if (segments.length === 0) return before;
  let allFinal = true;
  let allSubmittedOrFinal = true;
  let worst: FinalState = 'delivered';
  for (const s of segments) {
    if (s.state === 'pending') {
      allFinal = false;
      allSubmittedOrFinal = false;
    } else if (s.state === 'submitted') {
      allFinal = false;
    } else if (SEVERITY[s.state] > SEVERITY[worst]) {
      worst = s.state;
    }
  }
  if (allFinal) return worst;
  if (allSubmittedOrFinal) return 'submitted';
  return before === 'accepted' ? 'accepted' : 'queued';
}

/** A permission tier (config `tiers`). Higher priority is drained first. */
export interface Tier {
  readonly name: string;
  readonly priority: number;
  readonly defaultValidityMs: number;
}
