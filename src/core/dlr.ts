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

/** Longest DLR text we look at; SMPP short_message is at most 254 octets, message_payload can be longer. */
const MAX_DLR_TEXT = 2048;

/**
 * What one scan of a receipt text found: values as strings where callers
 * need them, the rest as offsets (no string is made for a field nobody
 * reads). One reusable object (`scanDlrText` fills it), so a receipt costs
 * no parse object. Offsets are -1 when absent.
 */
export class DlrScan {
  /** Operator message id as written; undefined when the text has no id (not a receipt). */
  id: string | undefined = undefined;
  subStart = -1;
  subEnd = -1;
  dlvrdStart = -1;
  dlvrdEnd = -1;
  /** Epoch ms, when present and valid; undefined otherwise. */
  submitDate: number | undefined = undefined;
  doneDate: number | undefined = undefined;
  /** The `stat:` word upper-cased. */
  stat: string | undefined = undefined;
  err: string | undefined = undefined;
  /** Start of the free text after `text:` (to the end of the scanned input), -1 when there is no `text:`. */
  textStart = -1;
  /** End of what was scanned (the input cut at MAX_DLR_TEXT). */
  end = 0;
}

/**
 * White space as a JavaScript RegExp `\s` matches it (the rules below were
 * written as regular expressions: test/unit/dlr.test.ts compares the two).
 */
function isSpace(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  if (c < 0xa0) return false;
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/** Does `s` at `i` (before `end`) spell `word` (lower-case ASCII) in any ASCII case? */
function keyAt(s: string, i: number, end: number, word: string): boolean {
  if (i + word.length > end) return false;
  for (let k = 0; k < word.length; k++) {
    const c = s.charCodeAt(i + k);
    const w = word.charCodeAt(k);
    // ASCII letters match either case (a RegExp's `i` flag without `u`: no other character folds onto ASCII).
    if (c !== w && !(w >= 0x61 && w <= 0x7a && c === w - 0x20)) return false;
  }
  return true;
}

/** After `submit`/`done`: an optional ' ' or '_', then `date:`; the offset after the colon, or -1. */
function dateKeyEnd(s: string, i: number, end: number): number {
  const c = i < end ? s.charCodeAt(i) : -1;
  if (c === 0x20 || c === 0x5f) {
    if (keyAt(s, i + 1, end, 'date:')) return i + 6;
  }
  return keyAt(s, i, end, 'date:') ? i + 5 : -1;
}

/** The longest key before its colon (`submit_date`) is 11 characters: a longer word is no key. */
const LONGEST_KEY = 11;

/**
 * Start of the word that ends at `c` (back to white space or the start of the
 * text), looking back at most LONGEST_KEY + 1 characters (so a text of
 * colons costs linear time): a longer word comes back longer than any key.
 */
function wordStart(s: string, c: number): number {
  let w = c;
  while (w > 0 && c - w <= LONGEST_KEY && !isSpace(s.charCodeAt(w - 1))) w--;
  return w;
}

/** Is the word ending at `end` exactly `word` (any ASCII case), starting the text or after white space? */
function wordIs(s: string, end: number, word: string): boolean {
  const w = end - word.length;
  return w >= 0 && (w === 0 || isSpace(s.charCodeAt(w - 1))) && keyAt(s, w, end, word);
}

/** A date value at `v`: when it is a run of 10 to 12 digits, parsed into `out` (valid or not, the key is taken). */
function readDate(s: string, v: number, end: number, utcOffsetMinutes: number, out: DlrScan, submit: boolean): boolean {
  const e = digitsEnd(s, v, end);
  if (e < 0) return false;
  const ms = parseDateAt(s, v, e - v, utcOffsetMinutes);
  if (submit) out.submitDate = ms;
  else out.doneDate = ms;
  return true;
}

function skipSpace(s: string, i: number, end: number): number {
  while (i < end && isSpace(s.charCodeAt(i))) i++;
  return i;
}

/** A value: a run of characters other than white space and `:`, followed by white space or the end; its end, or -1. */
function wordEnd(s: string, i: number, end: number): number {
  const from = i;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c === 0x3a) return -1; // `id: sub:…`, `id:a:b`: no value
    if (isSpace(c)) break;
    i++;
  }
  return i > from ? i : -1;
}

/** A `stat:` word: ASCII letters and `_`, followed by white space or the end; its end, or -1. */
function statEnd(s: string, i: number, end: number): number {
  const from = i;
  while (i < end) {
    const c = s.charCodeAt(i);
    const l = c | 0x20;
    if (!((l >= 0x61 && l <= 0x7a) || c === 0x5f)) break;
    i++;
  }
  return i > from && (i === end || isSpace(s.charCodeAt(i))) ? i : -1;
}

/** A date: a run of 10 to 12 digits (the whole run); its end, or -1. */
function digitsEnd(s: string, i: number, end: number): number {
  const from = i;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    i++;
  }
  const n = i - from;
  return n >= 10 && n <= 12 ? i : -1;
}

/**
 * Scan the Appendix B receipt text into `out` (reset first). The rules, per
 * key (any ASCII case): a key counts where it starts the text or follows
 * white space, and only before the first such `text:` (the free text after
 * it may contain anything, keys too); the first occurrence with a valid value
 * wins; the value follows any white space after the colon. `id`, `sub`,
 * `dlvrd`, `err`: a run without white space or `:`, ending at white space or
 * the end (so `id: sub:001`, an empty id, is no id rather than the id "sub");
 * `stat`: letters and `_`, likewise; `submit date` / `done date` (also
 * `submit_date`, `submitdate`): a run of 10 to 12 digits. Only the first
 * MAX_DLR_TEXT characters are looked at. Returns false when there is no id
 * (not a receipt).
 */
export function scanDlrText(input: string, utcOffsetMinutes: number, out: DlrScan): boolean {
  const n = input.length > MAX_DLR_TEXT ? MAX_DLR_TEXT : input.length;
  out.id = undefined;
  out.subStart = out.subEnd = out.dlvrdStart = out.dlvrdEnd = out.textStart = -1;
  out.submitDate = out.doneDate = undefined;
  out.stat = out.err = undefined;
  out.end = n;
  // Every key ends with a colon: the scan goes from colon to colon (indexOf), and reads the
  // word before each one (back to white space or the start) to see which key, if any, it is.
  // The head ends where the first `text:` key begins (at the white space before it).
  let end = n;
  for (let c = input.indexOf(':'); c >= 0 && c < n; c = input.indexOf(':', c + 1)) {
    const w = wordStart(input, c);
    if (c - w === 4 && keyAt(input, w, c, 'text')) {
      out.textStart = c + 1;
      end = w === 0 ? 0 : w - 1;
      break;
    }
  }
  let idDone = false;
  let subDone = false;
  let dlvrdDone = false;
  let submitDone = false;
  let doneDone = false;
  let statDone = false;
  let errDone = false;
  for (let c = end > 0 ? input.indexOf(':') : -1; c >= 0 && c < end; c = input.indexOf(':', c + 1)) {
    const w = wordStart(input, c);
    const v = skipSpace(input, c + 1, end);
    switch (c - w) {
      case 2:
        if (!idDone && keyAt(input, w, c, 'id')) {
          const e = wordEnd(input, v, end);
          if (e >= 0) {
            out.id = input.slice(v, e);
            idDone = true;
          }
        }
        break;
      case 3:
        if (!subDone && keyAt(input, w, c, 'sub')) {
          const e = wordEnd(input, v, end);
          if (e >= 0) {
            out.subStart = v;
            out.subEnd = e;
            subDone = true;
          }
        } else if (!errDone && keyAt(input, w, c, 'err')) {
          const e = wordEnd(input, v, end);
          if (e >= 0) {
            out.err = input.slice(v, e);
            errDone = true;
          }
        }
        break;
      case 4:
        if (!statDone && keyAt(input, w, c, 'stat')) {
          const e = statEnd(input, v, end);
          if (e >= 0) {
            out.stat = input.slice(v, e).toUpperCase();
            statDone = true;
          }
        } else if (keyAt(input, w, c, 'date') && w >= 2 && input.charCodeAt(w - 1) === 0x20) {
          // `submit date:` / `done date:`: the word before the space.
          if (!submitDone && wordIs(input, w - 1, 'submit')) {
            submitDone = readDate(input, v, end, utcOffsetMinutes, out, true);
          } else if (!doneDone && wordIs(input, w - 1, 'done')) {
            doneDone = readDate(input, v, end, utcOffsetMinutes, out, false);
          }
        }
        break;
      case 5:
        if (!dlvrdDone && keyAt(input, w, c, 'dlvrd')) {
          const e = wordEnd(input, v, end);
          if (e >= 0) {
            out.dlvrdStart = v;
            out.dlvrdEnd = e;
            dlvrdDone = true;
          }
        }
        break;
      case 8: // donedate, done_date
      case 9:
        if (!doneDone && keyAt(input, w, w + 4, 'done') && dateKeyEnd(input, w + 4, c + 1) === c + 1) {
          doneDone = readDate(input, v, end, utcOffsetMinutes, out, false);
        }
        break;
      case 10: // submitdate, submit_date
      case 11:
        if (!submitDone && keyAt(input, w, w + 6, 'submit') && dateKeyEnd(input, w + 6, c + 1) === c + 1) {
          submitDone = readDate(input, v, end, utcOffsetMinutes, out, true);
        }
        break;
    }
  }
  return out.id !== undefined;
}

/**
 * Parse the Appendix B receipt text. Returns undefined when there is no `id:`
 * (not a receipt). Missing or malformed fields are simply absent. The rules
 * are scanDlrText's.
 */
export function parseDlrText(input: string, utcOffsetMinutes = 0): DlrText | undefined {
  const s = new DlrScan();
  if (!scanDlrText(input, utcOffsetMinutes, s)) return undefined;
  const out: { -readonly [K in keyof DlrText]: DlrText[K] } = { id: s.id as string };
  if (s.subStart >= 0) out.sub = input.slice(s.subStart, s.subEnd);
  if (s.dlvrdStart >= 0) out.dlvrd = input.slice(s.dlvrdStart, s.dlvrdEnd);
  if (s.submitDate !== undefined) out.submitDate = s.submitDate;
  if (s.doneDate !== undefined) out.doneDate = s.doneDate;
  if (s.stat !== undefined) out.stat = s.stat;
  if (s.err !== undefined) out.err = s.err;
  if (s.textStart >= 0) out.text = input.slice(s.textStart, s.end);
  return out;
}

/**
 * `YYMMDDhhmm` or `YYMMDDhhmmss` → epoch ms. The receipt dates carry no zone:
 * SMSCs write their local time, so the caller passes the SMSC's offset from
 * UTC in minutes (China: +480); 0 treats them as UTC. Years are 2000–2099.
 * Returns undefined for anything that is not a valid calendar time.
 */
export function parseDlrDate(s: string, utcOffsetMinutes = 0): number | undefined {
  return parseDateAt(s, 0, s.length, utcOffsetMinutes);
}

/** Two digits of `s` at `i` as a number; NaN when either is not a digit. */
function two(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48;
  const b = s.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : NaN;
}

/** parseDlrDate of the `length` characters of `s` from `at`, without slicing them out. */
function parseDateAt(s: string, at: number, length: number, utcOffsetMinutes: number): number | undefined {
  if (length !== 10 && length !== 12) return undefined;
  // Receipts arrive at submit rates: digits by char code, no slices, closures or regexes.
  const yy = two(s, at);
  const mo = two(s, at + 2);
  const dd = two(s, at + 4);
  const hh = two(s, at + 6);
  const mi = two(s, at + 8);
  const ss = length === 12 ? two(s, at + 10) : 0;
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
