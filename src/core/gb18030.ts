/**
 * GB18030 encoder (CMPP Msg_Fmt 15). Node decodes GB18030 (TextDecoder,
 * WHATWG "gb18030") but has no encoder, so the reverse map is built here,
 * once, lazily, from the decoder itself — the encoder is exactly the
 * decoder's inverse, whatever ICU version Node ships:
 *
 *   U+0000–U+007F      1 byte, the ASCII byte
 *   BMP, 2-byte table  the 23,940 codes 0x81–0xFE × 0x40–0xFE (not 0x7F),
 *                      decoded in one call
 *   rest of the BMP    4-byte codes 0x81308130… (pointers 0–39,419), decoded
 *                      in one call; with the 2-byte table they cover every
 *                      BMP code point except ASCII and the surrogates
 *   U+10000–U+10FFFF   4-byte, arithmetic: pointer 189,000 + (cp − 0x10000)
 *
 * So every Unicode scalar value encodes (GB18030 is a full Unicode
 * encoding) except two kinds, and then callers fall back to UCS-2
 * (src/core/segment.ts): a lone UTF-16 surrogate, and the few private-use
 * code points the decoder never produces (GB18030-2022 gave their old codes
 * standard characters, e.g. U+E5E5; Node 20's decoder: 19 of them). Decision recorded: no UCS-2 fallback for
 * characters outside the 2-byte table — they take their 4-byte code, which
 * every GB18030 decoder reads.
 *
 * Memory: one Uint32Array of 65,536 entries (256 KiB), the code of each BMP
 * code unit (0 for ASCII and surrogates), built on the first non-ASCII
 * encode (tens of ms, once) and never grown. If the one-call decode of either table
 * does not give one BMP character per code (a decoder that differs from
 * WHATWG), the table is built code by code instead, skipping codes that do
 * not decode to exactly one BMP character.
 */
import { GatewayError } from './errors.js';

let table: Uint32Array | undefined;

const FOUR_BYTE_BMP_POINTERS = 39_420;
const SUPPLEMENTARY_POINTER = 189_000;

function fourByteCode(pointer: number): number {
  let p = pointer;
  const b4 = p % 10;
  p = (p - b4) / 10;
  const b3 = p % 126;
  p = (p - b3) / 126;
  const b2 = p % 10;
  const b1 = (p - b2) / 10;
  return (((b1 + 0x81) << 24) | ((b2 + 0x30) << 16) | ((b3 + 0x81) << 8) | (b4 + 0x30)) >>> 0;
}

function fill(t: Uint32Array, codes: number[], width: 2 | 4): void {
  const decoder = new TextDecoder('gb18030');
  const bytes = new Uint8Array(codes.length * width);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i] as number;
    if (width === 2) {
      bytes[2 * i] = c >>> 8;
      bytes[2 * i + 1] = c & 0xff;
    } else {
      bytes[4 * i] = c >>> 24;
      bytes[4 * i + 1] = (c >>> 16) & 0xff;
      bytes[4 * i + 2] = (c >>> 8) & 0xff;
      bytes[4 * i + 3] = c & 0xff;
    }
  }
  const text = decoder.decode(bytes);
  const set = (unit: number, code: number): void => {
    if (unit < 0x80 || (unit >= 0xd800 && unit <= 0xdfff)) return;
    if (t[unit] === 0) t[unit] = code;
  };
  if (text.length === codes.length) {
    for (let i = 0; i < codes.length; i++) set(text.charCodeAt(i), codes[i] as number);
    return;
  }
  // Not one character per code: decode each on its own and keep only the clean ones.
  for (let i = 0; i < codes.length; i++) {
    const one = decoder.decode(bytes.subarray(i * width, (i + 1) * width));
    if (one.length === 1) set(one.charCodeAt(0), codes[i] as number);
  }
}

function build(): Uint32Array {
  const t = new Uint32Array(0x10000);
  const two: number[] = [];
  for (let lead = 0x81; lead <= 0xfe; lead++) {
    for (let trail = 0x40; trail <= 0xfe; trail++) if (trail !== 0x7f) two.push((lead << 8) | trail);
  }
  fill(t, two, 2);
  const four: number[] = [];
  for (let p = 0; p < FOUR_BYTE_BMP_POINTERS; p++) four.push(fourByteCode(p));
  fill(t, four, 4);
  return t;
}

function codes(): Uint32Array {
  table ??= build();
  return table;
}

/** True once the reverse table exists (tests: it is built lazily, once). */
export function gb18030TableBuilt(): boolean {
  return table !== undefined;
}

/**
 * Octets of the character starting at index `i` of `text`: 1, 2 or 4; 0
 * when it cannot be encoded (a lone surrogate, a private-use code point
 * without a code). A surrogate pair is one character
 * of 4 octets (2 UTF-16 units).
 */
export function gb18030CharBytes(text: string, i: number): number {
  const u = text.charCodeAt(i);
  if (u < 0x80) return 1;
  if (u >= 0xd800 && u <= 0xdfff) {
    if (u > 0xdbff) return 0;
    const lo = text.charCodeAt(i + 1);
    return lo >= 0xdc00 && lo <= 0xdfff ? 4 : 0;
  }
  const c = codes()[u] as number;
  if (c === 0) return 0;
  return c > 0xffff ? 4 : 2;
}

/** Octets of the whole text in GB18030, or -1 when a character cannot be encoded. */
export function gb18030Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; ) {
    const b = gb18030CharBytes(text, i);
    if (b === 0) return -1;
    n += b;
    const u = text.charCodeAt(i);
    i += u >= 0xd800 && u <= 0xdbff ? 2 : 1; // a surrogate pair (lone ones returned above)
  }
  return n;
}

/** GB18030 bytes of `text`; throws VALIDATION when a character cannot be encoded (check gb18030Length first). */
export function encodeGb18030(text: string): Uint8Array {
  const length = gb18030Length(text);
  if (length < 0) throw new GatewayError('VALIDATION', 'the text holds a character GB18030 cannot encode (a lone surrogate or an unmapped private-use code point)');
  const out = new Uint8Array(length);
  const t = length > text.length ? codes() : undefined; // all ASCII: no table needed
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const u = text.charCodeAt(i);
    if (u < 0x80) {
      out[o++] = u;
      continue;
    }
    let c: number;
    if (u >= 0xd800 && u <= 0xdbff) {
      const cp = 0x10000 + ((u - 0xd800) << 10) + (text.charCodeAt(i + 1) - 0xdc00);
      c = fourByteCode(SUPPLEMENTARY_POINTER + cp - 0x10000);
      i++;
    } else {
      c = (t as Uint32Array)[u] as number;
    }
    if (c > 0xffff) {
      out[o++] = c >>> 24;
      out[o++] = (c >>> 16) & 0xff;
      out[o++] = (c >>> 8) & 0xff;
      out[o++] = c & 0xff;
    } else {
      out[o++] = c >>> 8;
      out[o++] = c & 0xff;
    }
  }
  return out;
}
