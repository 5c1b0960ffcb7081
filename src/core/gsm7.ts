/**
 * GSM 03.38 (3GPP TS 23.038) default alphabet and UCS-2, as SMPP carries them.
 *
 * GSM text travels over SMPP with data_coding 0x00 *unpacked*: one septet per
 * octet; the SMSC packs it for the air interface. A character of the
 * extension table is sent as ESC (0x1B) followed by its code, so it costs two
 * septets. UCS-2 (data_coding 0x08) is sent as UTF-16BE; characters outside
 * the BMP (emoji) go as surrogate pairs, which every current handset decodes.
 *
 * Encoding and counting run once per message and segment on the dispatch hot
 * path, so they use lookup tables built once at module load.
 */
import type { SmsEncoding } from './message.js';
import { GatewayError } from './errors.js';

const ESC = 0x1b;

/** Basic table, indexed by septet. Index 0x1B is ESC, not a character. */
const BASIC =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';

/** Extension table reached through ESC: [septet after ESC, character]. */
const EXTENSION: ReadonlyArray<readonly [number, string]> = [
  [0x0a, '\f'],
  [0x14, '^'],
  [0x28, '{'],
  [0x29, '}'],
  [0x2f, '\\'],
  [0x3c, '['],
  [0x3d, '~'],
  [0x3e, ']'],
  [0x40, '|'],
  [0x65, '€'],
];

/*
 * Character → code: -1 not in the alphabet, 0..0x7F a basic septet,
 * 0x100 | code an extension character. The highest code point of either table
 * is € (U+20AC), so a 16-bit array up to there covers the whole lookup.
 */
const EXT_FLAG = 0x100;
const TABLE_SIZE = 0x20ad;
const CHAR_TO_CODE = new Int16Array(TABLE_SIZE).fill(-1);
/** Septet → UTF-16 code unit, for decoding. */
const BASIC_DECODE = new Uint16Array(128);
/** Septet after ESC → UTF-16 code unit, 0 where the extension table has no entry. */
const EXT_DECODE = new Uint16Array(128);

for (let code = 0; code < 128; code++) {
  const unit = BASIC.charCodeAt(code);
  BASIC_DECODE[code] = unit;
  if (code !== ESC) CHAR_TO_CODE[unit] = code;
}
for (const [code, ch] of EXTENSION) {
  const unit = ch.charCodeAt(0);
  EXT_DECODE[code] = unit;
  CHAR_TO_CODE[unit] = EXT_FLAG | code;
}

/** Code for a UTF-16 code unit: -1 when it is not GSM, else basic or EXT_FLAG | code. */
function codeOf(unit: number): number {
  return unit < TABLE_SIZE ? (CHAR_TO_CODE[unit] as number) : -1;
}

/**
 * Septets one UTF-16 code unit takes: 1 basic, 2 extension (ESC + code),
 * 0 not in the alphabet. Segmentation needs the per-character cost to never
 * split an ESC from its code across parts.
 */
export function gsm7Septets(unit: number): 0 | 1 | 2 {
  const code = codeOf(unit);
  return code < 0 ? 0 : code & EXT_FLAG ? 2 : 1;
}

/** True when every character of `text` is in the basic or extension table. */
export function isGsm7(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    if (codeOf(text.charCodeAt(i)) < 0) return false;
  }
  return true;
}

/**
 * Septets `text` takes in GSM 03.38 (extension characters count 2), or -1 when
 * some character is not GSM. One pass serves as both the check and the count.
 */
export function gsm7Length(text: string): number {
  let septets = 0;
  for (let i = 0; i < text.length; i++) {
    const code = codeOf(text.charCodeAt(i));
    if (code < 0) return -1;
    septets += code & EXT_FLAG ? 2 : 1;
  }
  return septets;
}

/**
 * Unpacked GSM 03.38 septets, one per octet (SMPP data_coding 0x00).
 * Throws VALIDATION on a character outside the alphabet: the caller chose
 * 'gsm7' for text that is not (chooseEncoding decides this).
 */
export function encodeGsm7(text: string): Uint8Array {
  const septets = gsm7Length(text);
  if (septets < 0) {
    let i = 0;
    while (codeOf(text.charCodeAt(i)) >= 0) i++;
    throw new GatewayError('VALIDATION', `character at index ${i} is not in the GSM 03.38 alphabet`);
  }
  const out = new Uint8Array(septets);
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const code = codeOf(text.charCodeAt(i));
    if (code & EXT_FLAG) {
      out[o++] = ESC;
      out[o++] = code & 0x7f;
    } else {
      out[o++] = code;
    }
  }
  return out;
}

/** Builds a string from UTF-16 code units without one argument per unit on huge inputs. */
function fromUnits(units: Uint16Array): string {
  const CHUNK = 4096;
  if (units.length <= CHUNK) return String.fromCharCode(...units);
  let s = '';
  for (let i = 0; i < units.length; i += CHUNK) {
    s += String.fromCharCode(...units.subarray(i, i + CHUNK));
  }
  return s;
}

/**
 * Decodes unpacked septets. Per 23.038, an ESC followed by a code the
 * extension table lacks shows the basic character for that code; ESC ESC (and
 * a trailing ESC) shows a space. Octets above 0x7F are not septets: U+FFFD.
 */
export function decodeGsm7(bytes: Uint8Array): string {
  const units = new Uint16Array(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (b > 0x7f) {
      units[n++] = 0xfffd;
    } else if (b !== ESC) {
      units[n++] = BASIC_DECODE[b] as number;
    } else {
      const next = bytes[i + 1];
      if (next === undefined || next === ESC) {
        units[n++] = 0x20;
        i++;
      } else if (next > 0x7f) {
        units[n++] = 0xfffd;
        i++;
      } else {
        units[n++] = (EXT_DECODE[next] as number) || (BASIC_DECODE[next] as number);
        i++;
      }
    }
  }
  return fromUnits(units.subarray(0, n));
}

/** 'gsm7' when every character is in the GSM 03.38 tables, else 'ucs2'. */
export function chooseEncoding(text: string): SmsEncoding {
  return isGsm7(text) ? 'gsm7' : 'ucs2';
}

/** UTF-16BE (SMPP data_coding 0x08); characters outside the BMP become surrogate pairs. */
export function encodeUcs2(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0, o = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    out[o++] = unit >>> 8;
    out[o++] = unit & 0xff;
  }
  return out;
}

/** Decodes UTF-16BE. An odd trailing octet cannot be a code unit: U+FFFD. */
export function decodeUcs2(bytes: Uint8Array): string {
  const whole = bytes.length >>> 1;
  const units = new Uint16Array(whole + (bytes.length & 1));
  for (let i = 0; i < whole; i++) {
    units[i] = ((bytes[2 * i] as number) << 8) | (bytes[2 * i + 1] as number);
  }
  if (bytes.length & 1) units[whole] = 0xfffd;
  return fromUnits(units);
}
