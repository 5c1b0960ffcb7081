/**
 * Phone numbers as producers type them, normalised to what the queue, the
 * receipt store and SMPP carry: digits with country code and no plus
 * (8613800138000).
 *
 * Chinese mobiles (1[3-9] and nine digits) are accepted bare, with 86, +86 or
 * 0086, with spaces, dashes, dots or brackets between groups, and with
 * full-width characters (０-９, ＋, （）, －, ideographic space) as Chinese
 * input methods produce them. Other countries need an explicit `+` or `00`
 * and are accepted only when configured (numbers.allowInternational): bare
 * digits are always read as a Chinese number, because an 11-digit string
 * could as well be a NANP number (1 + 10 digits).
 */

export type NormalizeResult = { ok: true; number: string } | { ok: false; reason: string };

export interface NormalizeOptions {
  allowInternational: boolean;
}

/** Longer input is refused before any work (numbers are 7..15 digits plus decoration). */
const MAX_RAW_LENGTH = 40;

/** Separators people put between digit groups; dropped. */
function isSeparator(c: number): boolean {
  return (
    c === 0x20 || // space
    c === 0x09 || // tab
    c === 0xa0 || // no-break space
    c === 0x3000 || // ideographic space
    c === 0x2d || // -
    c === 0xff0d || // full-width －
    c === 0x2e || // .
    c === 0x28 || // (
    c === 0x29 || // )
    c === 0xff08 || // full-width （
    c === 0xff09 // full-width ）
  );
}

function fail(reason: string): NormalizeResult {
  return { ok: false, reason };
}

/** `1[3-9]\d{9}`, the digits already known to be ASCII digits. */
function checkChineseMobile(national: string): NormalizeResult {
  if (national.length !== 11) {
    return fail(`a Chinese mobile number has 11 digits, not ${national.length}`);
  }
  const second = national.charCodeAt(1);
  if (national.charCodeAt(0) !== 0x31 || second < 0x33) {
    return fail('a Chinese mobile number starts with 13 to 19');
  }
  return { ok: true, number: `86${national}` };
}

export function normalizeNumber(raw: string, opts: NormalizeOptions): NormalizeResult {
  if (raw.length > MAX_RAW_LENGTH) return fail('the number is too long');
  let digits = '';
  let plus = false;
  for (let i = 0; i < raw.length; i++) {
    let c = raw.charCodeAt(i);
    if (c >= 0xff10 && c <= 0xff19) c -= 0xff10 - 0x30; // full-width digit
    if (c >= 0x30 && c <= 0x39) {
      digits += String.fromCharCode(c);
    } else if (c === 0x2b || c === 0xff0b) {
      // A plus only before the first digit, and only once.
      if (plus || digits.length > 0) return fail('a plus sign may only lead the number');
      plus = true;
    } else if (!isSeparator(c)) {
      return fail('the number may contain only digits, a leading plus and separators');
    }
  }
  if (digits.length === 0) return fail('the number is empty');

  let international: string | undefined;
  if (plus) {
    international = digits;
  } else if (digits.startsWith('00')) {
    international = digits.slice(2);
  }

  if (international === undefined) {
    // Bare digits: a Chinese number, with or without its 86.
    if (digits.length === 13 && digits.startsWith('86')) return checkChineseMobile(digits.slice(2));
    return checkChineseMobile(digits);
  }
  if (international.length === 0) return fail('no digits follow the international prefix');
  if (international.startsWith('86')) return checkChineseMobile(international.slice(2));
  if (!opts.allowInternational) return fail('international numbers are not allowed');
  if (international.charCodeAt(0) === 0x30) return fail('a country code does not start with 0');
  if (international.length < 7 || international.length > 15) {
    return fail('an international number has 7 to 15 digits including the country code');
  }
  return { ok: true, number: international };
}

/**
 * A number fit for logs: 8613800138000 → 138****8000. Other numbers keep their
 * first 3 and last 2–4 characters (more when longer); anything under 7
 * characters is all masked. The output always contains `****`, so it is never
 * the clear number.
 */
export function maskNumber(number: string): string {
  const n = number.length;
  if (n === 13 && number.startsWith('861')) {
    return `${number.slice(2, 5)}****${number.slice(9)}`;
  }
  if (n < 7) return '****';
  const tail = n >= 11 ? 4 : n >= 9 ? 3 : 2;
  return `${number.slice(0, 3)}****${number.slice(n - tail)}`;
}
