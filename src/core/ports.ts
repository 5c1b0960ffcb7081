/**
 * Ports the dispatcher and ingest depend on; adapters in src/smpp and
 * src/receipts implement them. Types only: nothing here does I/O.
 */
import type { FinalState } from './message.js';
import type { MoPart } from './mo.js';

// ---------------------------------------------------------------- SMS out

/**
 * How text is encoded and cut into parts for an account (src/core/segment.ts):
 *  - `smpp`: GSM 03.38 (data_coding 0, 160 / 153 septets) or UCS-2 (8, 70 / 67);
 *  - `cmpp`: no GSM 03.38 — ASCII (Msg_Fmt 0, 140 / 134 octets) or UCS-2
 *    (Msg_Fmt 8, 70 / 67), every part inside the 140-octet Msg_Content;
 *  - `cmpp-gb18030`: a CMPP account that allows Msg_Fmt 15 — ASCII as `cmpp`,
 *    other text GB18030 (140 / 134 octets, never splitting a 2- or 4-octet
 *    character), UCS-2 only for text GB18030 cannot encode.
 */
export type SegmentProfile = 'smpp' | 'cmpp' | 'cmpp-gb18030';

export interface SubmitRequest {
  /** Destination, digits with country code (8613800138000). */
  readonly destination: string;
  /** Source address (sender code / extension). */
  readonly source: string;
  /** Encoded segment: UDH (when esmClass has 0x40) followed by the user data. GSM7 unpacked ≤ 160 octets single / 159 multipart; UCS-2 ≤ 140. */
  readonly payload: Uint8Array;
  /** 0x00 GSM 03.38 default alphabet (CMPP: Msg_Fmt 0, ASCII), 0x08 UCS-2, 0x0F (CMPP only) GB18030. Always explicit; as the transport's segmentProfile planned it. */
  readonly dataCoding: number;
  /** 0x40 when the payload starts with a UDH, else 0x00. */
  readonly esmClass: number;
  /** Ask the SMSC for a delivery receipt. */
  readonly registeredDelivery: boolean;
  /** Tier priority: higher values are sent first when binds are saturated. */
  readonly priority: number;
  /** Epoch ms. Not submitted after this; also sent as the SMPP validity period. */
  readonly deadline: number;
}

export type SubmitOutcome =
  /** submit_sm_resp with ESME_ROK and a message id. */
  | {
      readonly kind: 'accepted';
      readonly account: string;
      readonly messageId: string;
      /**
       * Epoch ms the accepted submit went on the wire (its last attempt). No receipt of this
       * submit can have arrived before it: the store tells a reused id's receipt from a re-send by it.
       */
      readonly sentAt?: number;
    }
  /** submit_sm_resp with a permanent error status (not throttling). */
  | { readonly kind: 'rejected'; readonly account: string; readonly status: number; readonly reason: string }
  /** The deadline passed before the SMSC accepted it (throttled, no bind, timeouts). */
  | { readonly kind: 'expired'; readonly reason: string }
  /** The transport is closing: do not finalise, give the work back to the queue. */
  | { readonly kind: 'unavailable'; readonly reason: string };

/** A delivery receipt (deliver_sm with esm_class 0x04, or data_sm), parsed. */
export interface DeliveryReceipt {
  readonly account: string;
  /**
   * The operator message id this receipt names (text `id:` or
   * receipted_message_id TLV), as the one canonical key of its submit:
   * normalised and, where the SMSC writes receipts in another base, converted
   * to its resp ids' base (receiptOperatorId, src/core/dlr.ts).
   */
  readonly messageId: string;
  /** Final state, or `enroute`/`accepted` for intermediate receipts (no change). */
  readonly state: FinalState | 'enroute' | 'accepted';
  /** DLR `err:` field or network error code, when present. */
  readonly error?: string;
  /** Epoch ms when the SMSC says it was done (`done date:`), else receive time. */
  readonly doneAt: number;
}

/** A mobile-originated message (a reply from a phone). */
export interface MobileOriginated {
  readonly account: string;
  /** The phone that sent it, digits. */
  readonly source: string;
  /** The address it was sent to (sender code + extension). */
  readonly destination: string;
  /** The address exactly as it arrived, when the account already rewrote `destination` (CMPP: Dest_Id with the access code). */
  readonly onAir?: string;
  /** This part's text (UDH removed) when `part` is set. */
  readonly text: string;
  readonly receivedAt: number;
  /** Set when this is one part of a long (concatenated) message; the receiver re-assembles. */
  readonly part?: MoPart;
}

/**
 * One operator account's delivery path — the transport port (an SMPP
 * BindPool, a CMPP account; both are a src/transport SubmitPool), seen from
 * the dispatcher. Retries for throttling (SMPP 0x58, 0x14; CMPP Result 8), timeouts and lost connections happen
 * inside, bounded by the request's deadline.
 */
export interface SmsTransport {
  readonly account: string;
  /** How the dispatcher encodes and segments text for this transport; absent: `smpp`. */
  readonly segmentProfile?: SegmentProfile;
  submit(request: SubmitRequest): Promise<SubmitOutcome>;
  /**
   * Receipts and MO messages are handed over here; the SMSC gets its
   * deliver_sm_resp only after the returned promise resolves (the receipt is
   * durable), and ESME_RX_T_APPN (retry later) if it rejects. The value
   * the promise resolves to is not used.
   */
  onReceipt(handler: (receipt: DeliveryReceipt) => Promise<unknown>): void;
  onMobileOriginated(handler: (mo: MobileOriginated) => Promise<void>): void;
  /** Segments waiting for or holding a window slot (for back-pressure). */
  readonly pending: number;
  close(): Promise<void>;
}
