/**
 * Delivery receipts (DLRs): the text of SMPP 3.4 Appendix B, the
 * message_state TLV, and the matching of operator message ids. Pure.
 *
 * The Appendix B text is a de-facto format, and SMSCs vary it:
 *
 *   id:0123456789 sub:001 dlvrd:001 submit date:2511221830 done date:2511221831 stat:DELIVRD err:000 text:Hello
 *   ID:7B1F2C sub:001 dlvrd:001 Submit Date:251122183005 Done Date:251122183107 Stat:DELIVRD Err:000 Text:…
 *   id:42  sub:1  dlvrd:1  submit_date:2511221830  done_date:2511221831  stat:UNDELIV  err:0x0b
 *
 * so the parser matches each key on its own, case-insensitively, with any
 * amount of space, accepts `submit_date` for `submit date`, 10- or 12-digit
 * dates, and cuts the free `text:` field off first (it may contain anything,
 * including things that look like keys).
 */
import type { FinalState } from './message.js';

export type ReceiptState = FinalState | 'enroute' | 'accepted';

export interface DlrText {
  /** Operator message id as written (not canonicalised). */
  readonly id: string;
  readonly sub?: string;
  readonly dlvrd?: string;
  /** Epoch ms, when present and valid. */
  readonly submitDate?: number;
  readonly doneDate?: number;
  /** The `stat:` word upper-cased, e.g. DELIVRD. */
  readonly stat?: string;
  readonly err?: string;
  /** The free text after `text:` (usually the first 20 characters of the message). */
  readonly text?: string;
}

// The key must start the string or follow white space, so `xid:` or a value
// containing `id:` never matches.
// A value runs to the next white space and may not itself look like `key:`
// (so `id: sub:001`, an empty id, is no id rather than the id "sub").
const ID_RE = /(?:^|\s)id:\s*([^\s:]+)(?=\s|$)/i;
const SUB_RE = /(?:^|\s)sub:\s*([^\s:]+)(?=\s|$)/i;
const DLVRD_RE = /(?:^|\s)dlvrd:\s*([^\s:]+)(?=\s|$)/i;
const SUBMIT_DATE_RE = /(?:^|\s)submit[ _]?date:\s*(\d{10,12})(?!\d)/i;
const DONE_DATE_RE = /(?:^|\s)done[ _]?date:\s*(\d{10,12})(?!\d)/i;
const STAT_RE = /(?:^|\s)stat:\s*([A-Za-z_]+)(?=\s|$)/i;
const ERR_RE = /(?:^|\s)err:\s*([^\s:]+)(?=\s|$)/i;
const TEXT_RE = /(?:^|\s)text:/i;

/** Longest DLR text we look at; SMPP short_message is at most 254 octets, message_payload can be longer. */
const MAX_DLR_TEXT = 2048;

/**
 * Parse the Appendix B receipt text. Returns undefined when there is no `id:`
 * (not a receipt). Missing or malformed fields are simply absent.
 */
export function parseDlrText(input: string, utcOffsetMinutes = 0): DlrText | undefined {
  let head = input.length > MAX_DLR_TEXT ? input.slice(0, MAX_DLR_TEXT) : input;
  let text: string | undefined;
  const t = TEXT_RE.exec(head);
  if (t) {
    text = head.slice(t.index + t[0].length);
    head = head.slice(0, t.index);
  }
  const id = ID_RE.exec(head)?.[1];
  if (id === undefined || id.length === 0) return undefined;
  const out: { -readonly [K in keyof DlrText]: DlrText[K] } = { id };
  const sub = SUB_RE.exec(head)?.[1];
  if (sub !== undefined) out.sub = sub;
  const dlvrd = DLVRD_RE.exec(head)?.[1];
  if (dlvrd !== undefined) out.dlvrd = dlvrd;
  const sd = SUBMIT_DATE_RE.exec(head)?.[1];
  if (sd !== undefined) {
    const ms = parseDlrDate(sd, utcOffsetMinutes);
    if (ms !== undefined) out.submitDate = ms;
  }
  const dd = DONE_DATE_RE.exec(head)?.[1];
  if (dd !== undefined) {
    const ms = parseDlrDate(dd, utcOffsetMinutes);
    if (ms !== undefined) out.doneDate = ms;
  }
  const stat = STAT_RE.exec(head)?.[1];
  if (stat !== undefined) out.stat = stat.toUpperCase();
  const err = ERR_RE.exec(head)?.[1];
  if (err !== undefined) out.err = err;
  if (text !== undefined) out.text = text;
  return out;
}

/**
 * `YYMMDDhhmm` or `YYMMDDhhmmss` → epoch ms. The receipt dates carry no zone:
 * SMSCs write their local time, so the caller passes the SMSC's offset from
 * UTC in minutes (China: +480); 0 treats them as UTC. Years are 2000–2099.
 * Returns undefined for anything that is not a valid calendar time.
 */
export function parseDlrDate(s: string, utcOffsetMinutes = 0): number | undefined {
  if (s.length !== 10 && s.length !== 12) return undefined;
  // Receipts arrive at submit rates: digits by char code, no slices or regexes.
  const d = (i: number): number => {
    const c = s.charCodeAt(i) - 48;
    return c >= 0 && c <= 9 ? c : NaN;
  };
  const yy = d(0) * 10 + d(1);
  const mo = d(2) * 10 + d(3);
  const dd = d(4) * 10 + d(5);
  const hh = d(6) * 10 + d(7);
  const mi = d(8) * 10 + d(9);
  const ss = s.length === 12 ? d(10) * 10 + d(11) : 0;
  // NaN fails every comparison below, so a non-digit anywhere is caught here.
  if (!(mo >= 1 && mo <= 12 && dd >= 1 && hh <= 23 && mi <= 59 && ss <= 59 && yy >= 0)) return undefined;
  const year = 2000 + yy;
  if (dd > daysInMonth(year, mo)) return undefined; // 30 February is garbage, not 2 March
  return Date.UTC(year, mo - 1, dd, hh, mi, ss) - utcOffsetMinutes * 60_000;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * `stat:` word → state. Accepts the 7-letter Appendix B words and the long
 * forms some SMSCs write (DELIVERED, UNDELIVERABLE, …). DELETED and UNKNOWN
 * are final failures: the SMSC gave up and will say no more. Unrecognised
 * words → undefined (the caller decides; the receipt is not trusted blindly).
 */
export function statToState(stat: string): ReceiptState | undefined {
  switch (stat.trim().toUpperCase()) {
    case 'DELIVRD':
    case 'DELIVERED':
      return 'delivered';
    case 'UNDELIV':
    case 'UNDELIVERABLE':
      return 'undeliverable';
    case 'EXPIRED':
      return 'expired';
    case 'REJECTD':
    case 'REJECTED':
      return 'rejected';
    case 'DELETED':
    case 'UNKNOWN':
      return 'failed';
    case 'ACCEPTD':
    case 'ACCEPTED':
      return 'accepted';
    case 'ENROUTE':
    case 'SCHEDULED':
      return 'enroute';
    default:
      return undefined;
  }
}

/**
 * message_state TLV (SMPP 3.4 §5.2.28) → state. 0 SCHEDULED (SMPP 5.0) is
 * intermediate like ENROUTE; 9 SKIPPED (SMPP 5.0) is a final failure.
 */
export function messageStateToState(n: number): ReceiptState | undefined {
  switch (n) {
    case 0:
    case 1:
      return 'enroute';
    case 2:
      return 'delivered';
    case 3:
      return 'expired';
    case 4:
      return 'failed'; // DELETED
    case 5:
      return 'undeliverable';
    case 6:
      return 'accepted';
    case 7:
      return 'failed'; // UNKNOWN
    case 8:
      return 'rejected';
    case 9:
      return 'failed'; // SKIPPED
    default:
      return undefined;
  }
}

// ------------------------------------------------------- operator message ids
//
// A receipt names its submit by the operator message id, and must match that
// submit and no other (issue 12). The rule, per SMPP account:
//
//   a submit  is indexed under canonicalOperatorId(id of its submit_sm_resp):
//             trimmed, lower-cased, leading zeros stripped ("0" stays "0");
//   a receipt is looked up under receiptOperatorId(id, written, account):
//             ONE key, computed once at the bind (bind-pool.ts), never a list
//             of readings tried in turn.
//
// The account's id format (`idFormat`) says in which base its SMSC writes
// submit_sm_resp ids; `receiptTextIdFormat` / `receiptTlvIdFormat` say in which
// base it writes the receipt's text `id:` and receipted_message_id TLV, when
// that differs. A receipt id written in the other base is converted into the
// account's base (its value, canonical form); one written in the same base is
// only normalised. An id with a letter a–f is a hex writing whatever the
// configuration says (no decimal id has one), so on a decimal account it is
// converted. Nothing else is inferred: with small ids, the other reading of
// an all-digit id is very often another submit's id (8,602 of the ids 1–20,000
// have such a twin), which is why the former "try the decimal and the hex
// reading" lookup gave receipts to the wrong segments at full speed.
//
// Conversion is skipped for ids longer than 128 bits (39 decimal, 32 hex
// digits) so hostile input cannot make BigInt work hard; such an id is only
// normalised.

/** Base in which an SMSC writes message ids. */
export type IdBase = 'decimal' | 'hex';
/** How a receipt writes its id: as the account's submit_sm_resp ids, or in a given base. */
export type ReceiptIdBase = 'same' | IdBase;

/** 39 decimal digits ≥ 2^128; 32 hex digits = 128 bits. */
const MAX_DECIMAL_DIGITS = 39;
const MAX_HEX_DIGITS = 32;
const DECIMAL_RE = /^[0-9]+$/;
const HEX_RE = /^[0-9a-f]+$/;
const HEX_LETTER_RE = /[a-f]/;

/** The key a submit is indexed under: the id normalised (case, white space, leading zeros). */
export function canonicalOperatorId(id: string): string {
  const s = id.trim().toLowerCase();
  let i = 0;
  while (i < s.length - 1 && s.charCodeAt(i) === 48 /* '0' */) i++;
  return i === 0 ? s : s.slice(i);
}

/**
 * The one key a receipt's id is looked up under, for an account whose
 * submit_sm_resp ids are written in `account` (undefined: not known, `auto`).
 * `written` is the base the SMSC writes this receipt id in ('same': as its
 * resp ids). Deterministic; its output is canonical (canonicalOperatorId
 * leaves it as it is), so the store may normalise it again safely.
 */
export function receiptOperatorId(id: string, written: ReceiptIdBase, account: IdBase | undefined): string {
  const c = canonicalOperatorId(id);
  if (account === undefined || c.length === 0 || !HEX_RE.test(c)) return c;
  // A letter means hex whatever the configuration says; otherwise the configured base.
  const base: IdBase = HEX_LETTER_RE.test(c) ? 'hex' : written === 'same' ? account : written;
  if (base === account) return c;
  if (base === 'hex') return c.length <= MAX_HEX_DIGITS ? BigInt(`0x${c}`).toString(10) : c;
  return c.length <= MAX_DECIMAL_DIGITS && DECIMAL_RE.test(c) ? BigInt(c).toString(16) : c;
}
