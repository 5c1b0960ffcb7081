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
// The same message id reaches us in up to two spellings: submit_sm_resp may
// say `7B1F2C` (hex) while the receipt text says `id:8068908` (decimal) or
// `id:0008068908` (zero-padded), and case varies. The rule:
//
//   store   under canonicalOperatorId(id): trimmed, lower-cased, leading zeros
//           stripped ("0" stays "0");
//   look up with operatorIdCandidates(id), in order, first hit wins:
//     1. canonicalOperatorId(id)                 — exact form, always first;
//     2. if id is all decimal digits: its value in hex (canonical);
//     3. if id is all hex digits:     its value in decimal (canonical).
//
// One SMSC account uses one format, so the cross-base forms only ever meet
// their own counterpart; trying the exact form first keeps an exact match
// preferred when (rarely) a cross-base form happens to equal another stored id.
// Conversion is skipped for ids longer than MAX_NUMERIC_ID_DIGITS (128 bits)
// so hostile input cannot make BigInt work hard.

/** 39 decimal digits ≥ 2^128; 32 hex digits = 128 bits. */
const MAX_DECIMAL_DIGITS = 39;
const MAX_HEX_DIGITS = 32;
const DECIMAL_RE = /^[0-9]+$/;
const HEX_RE = /^[0-9a-f]+$/;

export function canonicalOperatorId(id: string): string {
  const s = id.trim().toLowerCase();
  let i = 0;
  while (i < s.length - 1 && s.charCodeAt(i) === 48 /* '0' */) i++;
  return i === 0 ? s : s.slice(i);
}

export function operatorIdCandidates(id: string): string[] {
  const c = canonicalOperatorId(id);
  const out = [c];
  if (c.length === 0) return out;
  if (c.length <= MAX_DECIMAL_DIGITS && DECIMAL_RE.test(c)) {
    const hex = BigInt(c).toString(16);
    if (hex !== c) out.push(hex);
  }
  if (c.length <= MAX_HEX_DIGITS && HEX_RE.test(c)) {
    const dec = BigInt(`0x${c}`).toString(10);
    if (dec !== c && !out.includes(dec)) out.push(dec);
  }
  return out;
}
