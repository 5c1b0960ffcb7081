/**
 * Splitting a text into SMS parts and building each part's SMPP short_message.
 *
 * Part sizes (3GPP TS 23.040 / 23.038):
 *
 *   encoding  single part      each part of a concatenated message
 *   gsm7      160 septets      153 septets (7 septets go to the UDH)
 *   ucs2      70 code units    67 code units (140 − 6 UDH octets = 134 octets)
 *
 * A GSM extension character (ESC + code, 2 septets) and a UTF-16 surrogate
 * pair (emoji, 2 units) are never split across parts: a part that would end
 * in the middle of one ends before it, so it carries 152 septets or 66 units.
 * A handset that shows parts before reassembly (or an SMSC that checks each
 * part's UCS-2) would otherwise show garbage at the seam.
 *
 * Payload (short_message) sizes this module produces:
 *
 *   GSM 7-bit goes over SMPP with data_coding 0x00 *unpacked* — one septet
 *   per octet, an extension character as the two octets 0x1B code — and the
 *   SMSC packs it into the 140-octet air-interface TP-UD:
 *     single part   ≤ 160 octets (escape octets are counted in the 160 septets)
 *     multipart     ≤ 6 + 153 = 159 octets (6-octet UDH + septets). Packed,
 *                   the UDH takes 48 bits = 7 septets with 1 fill bit, and
 *                   7 + 153 = 160 septets = 140 octets: the air limit holds.
 *   UCS-2 is not packed, so the 140-octet air limit applies as is:
 *     single part   ≤ 140 octets (70 × 2)
 *     multipart     ≤ 6 + 134 = 140 octets
 *
 *   Every payload is therefore ≤ 160 octets, well under SMPP's 254-octet
 *   short_message limit (the `smpp` package throws above 255).
 *
 * Concatenation uses the 6-octet UDH `05 00 03 ref count seq` (IEI 0x00,
 * 8-bit reference) with esm_class 0x40 (UDHI); at most 255 parts.
 *
 * Segment profiles (ports.ts SegmentProfile). The parts depend on the
 * account a recipient is routed to, so the dispatcher plans them once the
 * route is known:
 *
 *   profile  text                    single part   each part of a long one
 *   smpp     GSM 03.38               160 septets   153 septets   (data_coding 0)
 *   smpp     other                   70 units      67 units      (8, UCS-2)
 *   cmpp     ASCII (all < 0x80)      140 octets    134 octets    (Msg_Fmt 0)
 *   cmpp     other                   70 units      67 units      (Msg_Fmt 8, UCS-2)
 *   cmpp-gb18030  ASCII               140 octets    134 octets    (Msg_Fmt 0)
 *   cmpp-gb18030  other               140 octets    134 octets    (Msg_Fmt 15, GB18030:
 *                                     1 octet ASCII, 2 most Chinese, 4 rare ones and emoji)
 *   cmpp-gb18030  not encodable       as cmpp UCS-2 (a lone surrogate, an unmapped private-use
 *                                     code point: src/core/gb18030.ts)
 *
 * CMPP has no GSM 03.38: Msg_Content is at most 140 octets whatever Msg_Fmt,
 * so a 150-character ASCII text is one SMPP part and two CMPP parts, and
 * "€" or "é" (GSM, not ASCII) makes a CMPP message UCS-2 while "`" (ASCII,
 * not GSM) keeps it ASCII. A GB18030 part ends before a character that would
 * not fit whole (a part of 133 octets when the next character takes 2, 131 or
 * more when it takes 4), so each part decodes on its own. Mixed Chinese and
 * ASCII text (numbers, dates, case ids) is shorter in GB18030 than in UCS-2:
 * `【某某市政府】明天9:00开会` is 26 octets, not 30.
 */
import type { SmsEncoding } from './message.js';
import type { SegmentProfile } from './ports.js';
import { GatewayError } from './errors.js';
import { encodeGb18030, gb18030CharBytes, gb18030Length } from './gb18030.js';
import { chooseEncoding, encodeGsm7, encodeUcs2, gsm7Length, gsm7Septets } from './gsm7.js';

export const MAX_SEGMENTS = 255;

const GSM7_SINGLE = 160;
const GSM7_PART = 153;
const UCS2_SINGLE = 70;
const UCS2_PART = 67;
const UDH_LENGTH = 6;
const ASCII_SINGLE = 140;
const ASCII_PART = 134;
/** CMPP Msg_Fmt 15 (GB18030): octets of Msg_Content. */
const GB_SINGLE = 140;
const GB_PART = 134;
const MSG_FMT_GB18030 = 15;
const ESM_CLASS_UDHI = 0x40;
const DATA_CODING: Record<SmsEncoding, number> = { gsm7: 0x00, ucs2: 0x08 };

export interface Segment {
  /** 1-based position of this part. */
  index: number;
  /** Number of parts of the message. */
  count: number;
  /** UDH (multipart only) followed by the user data, ready for short_message. */
  payload: Uint8Array;
  /** 0x40 when the payload starts with a UDH, else 0. */
  esmClass: number;
  /** 0x00 GSM 03.38 (unpacked; CMPP: ASCII), 0x08 UCS-2, 0x0F GB18030 (CMPP Msg_Fmt 15). */
  dataCoding: number;
}

export interface SegmentPlan {
  encoding: SmsEncoding;
  count: number;
  parts: string[];
}

export interface SegmentCount {
  encoding: SmsEncoding;
  count: number;
  /**
   * Septets (gsm7) or UTF-16 code units (ucs2) of the whole text; for the
   * cmpp profiles ASCII characters (reported gsm7); for `cmpp-gb18030` a
   * GB18030 text reports encoding ucs2 (not 7-bit) with its octets as units.
   */
  units: number;
}

function isSurrogatePair(text: string, i: number): boolean {
  const hi = text.charCodeAt(i);
  if (hi < 0xd800 || hi > 0xdbff) return false;
  const lo = text.charCodeAt(i + 1);
  return lo >= 0xdc00 && lo <= 0xdfff;
}

/**
 * Greedy split of a multipart text. Returns the number of parts; when `cuts`
 * is given, pushes for every part its end as [character index, unit offset]
 * (unit = septet for gsm7, code unit for ucs2), so callers can slice either
 * the string or its encoded bytes without scanning again.
 */
function splitMultipart(text: string, encoding: SmsEncoding, cuts: number[] | null): number {
  const limit = encoding === 'gsm7' ? GSM7_PART : UCS2_PART;
  let count = 1;
  let used = 0;
  let units = 0;
  for (let i = 0; i < text.length; ) {
    let chars: number;
    let cost: number;
    if (encoding === 'gsm7') {
      chars = 1;
      cost = gsm7Septets(text.charCodeAt(i));
      if (cost === 0) throw notGsm(i);
    } else {
      chars = cost = isSurrogatePair(text, i) ? 2 : 1;
    }
    if (used + cost > limit) {
      cuts?.push(i, units);
      count++;
      used = 0;
    }
    used += cost;
    units += cost;
    i += chars;
  }
  cuts?.push(text.length, units);
  return count;
}

function notGsm(index: number): GatewayError {
  return new GatewayError('VALIDATION', `character at index ${index} is not in the GSM 03.38 alphabet`);
}

/** Units of the whole text in `encoding`; throws when gsm7 is asked for non-GSM text. */
function unitsOf(text: string, encoding: SmsEncoding): number {
  if (encoding === 'ucs2') return text.length;
  const septets = gsm7Length(text);
  if (septets < 0) {
    let i = 0;
    while (gsm7Septets(text.charCodeAt(i)) !== 0) i++;
    throw notGsm(i);
  }
  return septets;
}

function fitsSingle(units: number, encoding: SmsEncoding): boolean {
  return units <= (encoding === 'gsm7' ? GSM7_SINGLE : UCS2_SINGLE);
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** CMPP ASCII parts: one octet a character, cut every 134 when over 140. */
function asciiCount(length: number): number {
  return length <= ASCII_SINGLE ? 1 : Math.ceil(length / ASCII_PART);
}


/**
 * Encoding, part count and total units, without building anything: what the
 * HTTP response reports and what ingest checks against MAX_SEGMENTS. Never
 * throws; `count` may exceed MAX_SEGMENTS. The empty text is one (empty) part.
 * For the `cmpp` profile an ASCII text reports encoding gsm7 (Msg_Fmt 0) with
 * its characters as units.
 */
export function countSegments(text: string, profile: SegmentProfile = 'smpp'): SegmentCount {
  if (profile === 'cmpp-gb18030' && !isAscii(text)) {
    const octets = gb18030Length(text);
    if (octets >= 0) return { encoding: 'ucs2', count: octets <= GB_SINGLE ? 1 : gbCuts(text, null), units: octets };
  }
  if (profile === 'cmpp' || profile === 'cmpp-gb18030') {
    if (isAscii(text)) return { encoding: 'gsm7', count: asciiCount(text.length), units: text.length };
    const count = fitsSingle(text.length, 'ucs2') ? 1 : splitMultipart(text, 'ucs2', null);
    return { encoding: 'ucs2', count, units: text.length };
  }
  const septets = gsm7Length(text);
  const encoding: SmsEncoding = septets < 0 ? 'ucs2' : 'gsm7';
  const units = septets < 0 ? text.length : septets;
  const count = fitsSingle(units, encoding) ? 1 : splitMultipart(text, encoding, null);
  return { encoding, count, units };
}

function tooManyParts(count: number): GatewayError {
  return new GatewayError('VALIDATION', `the text needs ${count} SMS parts; at most ${MAX_SEGMENTS} are possible`);
}

/** Character and unit ends of each part, or null for a single part. */
function cutsOf(text: string, encoding: SmsEncoding): number[] | null {
  if (fitsSingle(unitsOf(text, encoding), encoding)) return null;
  const cuts: number[] = [];
  const count = splitMultipart(text, encoding, cuts);
  if (count > MAX_SEGMENTS) throw tooManyParts(count);
  return cuts;
}

/**
 * The texts of the parts. `encoding` defaults to chooseEncoding(text).
 * Throws VALIDATION when 'gsm7' is forced on non-GSM text or the text needs
 * more than MAX_SEGMENTS parts, so every plan returned can be built.
 */
export function planSegments(text: string, encoding: SmsEncoding = chooseEncoding(text)): SegmentPlan {
  const cuts = cutsOf(text, encoding);
  if (cuts === null) return { encoding, count: 1, parts: [text] };
  const parts: string[] = [];
  let start = 0;
  for (let k = 0; k < cuts.length; k += 2) {
    const end = cuts[k] as number;
    parts.push(text.slice(start, end));
    start = end;
  }
  return { encoding, count: parts.length, parts };
}

/**
 * The SMPP parts of `text`. A single part has no UDH (esmClass 0); parts of a
 * longer text each start with `05 00 03 ref count seq` (esmClass 0x40).
 * `reference` is taken modulo 256 (see segmentReference). Throws as planSegments.
 */
export function buildSegments(text: string, encoding: SmsEncoding, reference: number, profile: SegmentProfile = 'smpp'): Segment[] {
  if (profile === 'cmpp' || profile === 'cmpp-gb18030') {
    // The message's encoding was chosen for GSM 03.38 at ingest; CMPP decides by the text alone.
    if (isAscii(text)) return buildAscii(text, reference);
    if (profile === 'cmpp-gb18030' && gb18030Length(text) >= 0) return buildGb18030(text, reference);
    encoding = 'ucs2';
  }
  const dataCoding = DATA_CODING[encoding];
  const cuts = cutsOf(text, encoding);
  if (cuts === null) return [{ index: 1, count: 1, payload: encoding === 'gsm7' ? encodeGsm7(text) : encodeUcs2(text), esmClass: 0, dataCoding }];

  // Each part is written straight into its payload: UCS-2 code units (two octets, big-endian)
  // from the text itself; unpacked septets (one octet each) copied from the encoded text. No
  // whole-text UCS-2 buffer and no subarray view per part.
  const ucs2 = encoding === 'ucs2';
  const septets = ucs2 ? undefined : encodeGsm7(text);
  const octetsPerUnit = ucs2 ? 2 : 1;
  const count = cuts.length / 2;
  const ref = reference & 0xff;
  const segments: Segment[] = [];
  // All parts in one buffer, each payload a view of its own range: one ArrayBuffer (and one
  // backing store for the GC to track) per message instead of one per part.
  const all = new Uint8Array(count * UDH_LENGTH + (cuts[cuts.length - 1] as number) * octetsPerUnit);
  let from = 0;
  let o = 0;
  for (let k = 0; k < count; k++) {
    // Unit offsets: septets for gsm7, code units (= character indices) for ucs2.
    const to = cuts[2 * k + 1] as number;
    const start = o;
    all[o++] = 0x05; // UDH length
    all[o++] = 0x00; // IEI: concatenated short message, 8-bit reference
    all[o++] = 0x03; // IE length
    all[o++] = ref;
    all[o++] = count;
    all[o++] = k + 1;
    if (septets === undefined) {
      for (let i = from; i < to; i++) {
        const unit = text.charCodeAt(i);
        all[o++] = unit >>> 8;
        all[o++] = unit & 0xff;
      }
    } else {
      for (let i = from; i < to; i++) all[o++] = septets[i] as number;
    }
    segments.push({ index: k + 1, count, payload: all.subarray(start, o), esmClass: ESM_CLASS_UDHI, dataCoding });
    from = to;
  }
  return segments;
}

/** CMPP Msg_Fmt 0: ASCII octets, 140 single, 134 a part after the UDH. */
function buildAscii(text: string, reference: number): Segment[] {
  const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
  if (bytes.length <= ASCII_SINGLE) return [{ index: 1, count: 1, payload: bytes, esmClass: 0, dataCoding: 0 }];
  const count = asciiCount(bytes.length);
  if (count > MAX_SEGMENTS) throw tooManyParts(count);
  const segments: Segment[] = [];
  for (let k = 0; k < count; k++) {
    const chunk = bytes.subarray(k * ASCII_PART, (k + 1) * ASCII_PART);
    const payload = new Uint8Array(UDH_LENGTH + chunk.length);
    payload.set([0x05, 0x00, 0x03, reference & 0xff, count, k + 1]);
    payload.set(chunk, UDH_LENGTH);
    segments.push({ index: k + 1, count, payload, esmClass: ESM_CLASS_UDHI, dataCoding: 0 });
  }
  return segments;
}

/**
 * Greedy GB18030 split: parts of at most GB_PART octets, never splitting a
 * character. Returns the number of parts; with `cuts`, pushes each part's end
 * octet offset. The text must be encodable (gb18030Length ≥ 0).
 */
function gbCuts(text: string, cuts: number[] | null): number {
  let count = 1;
  let used = 0;
  let octets = 0;
  for (let i = 0; i < text.length; ) {
    const cost = gb18030CharBytes(text, i);
    const u = text.charCodeAt(i);
    i += u >= 0xd800 && u <= 0xdbff ? 2 : 1;
    if (used + cost > GB_PART) {
      cuts?.push(octets);
      count++;
      used = 0;
    }
    used += cost;
    octets += cost;
  }
  cuts?.push(octets);
  return count;
}

/** CMPP Msg_Fmt 15: GB18030 octets, 140 single, ≤ 134 a part after the UDH, cut between characters. */
function buildGb18030(text: string, reference: number): Segment[] {
  const bytes = encodeGb18030(text);
  if (bytes.length <= GB_SINGLE) return [{ index: 1, count: 1, payload: bytes, esmClass: 0, dataCoding: MSG_FMT_GB18030 }];
  const cuts: number[] = [];
  const count = gbCuts(text, cuts);
  if (count > MAX_SEGMENTS) throw tooManyParts(count);
  const segments: Segment[] = [];
  let from = 0;
  for (let k = 0; k < count; k++) {
    const to = cuts[k] as number;
    const payload = new Uint8Array(UDH_LENGTH + to - from);
    payload.set([0x05, 0x00, 0x03, reference & 0xff, count, k + 1]);
    payload.set(bytes.subarray(from, to), UDH_LENGTH);
    segments.push({ index: k + 1, count, payload, esmClass: ESM_CLASS_UDHI, dataCoding: MSG_FMT_GB18030 });
    from = to;
  }
  return segments;
}

/**
 * Concatenation reference for one recipient of one message: FNV-1a (32-bit)
 * over the message id and the recipient index, folded to 8 bits. It is
 * deterministic so a redelivered job rebuilds byte-identical parts, and the
 * handset can still join parts of a first, partly sent attempt with the retry.
 */
export function segmentReference(messageId: string, recipientIndex: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < messageId.length; i++) {
    const unit = messageId.charCodeAt(i);
    if (unit > 0x7f) {
      h = Math.imul(h ^ (unit >>> 8), 0x01000193);
    }
    h = Math.imul(h ^ (unit & 0xff), 0x01000193);
  }
  // A separator keeps ("ab", 1) and ("a", …) apart, then the index as 4 octets.
  h = Math.imul(h ^ 0xff, 0x01000193);
  for (let shift = 0; shift < 32; shift += 8) {
    h = Math.imul(h ^ ((recipientIndex >>> shift) & 0xff), 0x01000193);
  }
  return (h ^ (h >>> 8) ^ (h >>> 16) ^ (h >>> 24)) & 0xff;
}
