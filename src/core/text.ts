/**
 * Text rules every send is held to at admission (src/send/stages.ts,
 * `textRules`), whichever path it came by: the HTTP door, a template's
 * rendering, meetings, workflow events, auto-replies, mail alerts.
 *
 *   U+D800–U+DFFF alone (a lone surrogate)        refused: TEXT_INVALID (422)
 *   C0 controls U+0000–U+001F except TAB, LF, CR   refused: TEXT_INVALID (422)
 *   TAB (U+0009)                                   becomes one space
 *   bidi embeddings / overrides U+202A–U+202E,
 *   bidi isolates U+2066–U+2069,
 *   zero-width and direction marks U+200B–U+200F,
 *   word joiner U+2060, BOM / ZWNBSP U+FEFF        removed
 *
 * Removal happens before the parts are counted, so a text of visible
 * characters is never charged for invisible ones. TAB becomes a space rather
 * than a refusal: it is common in pasted text, GSM 03.38 has no TAB (it
 * would force UCS-2 and so halve the part size), and handsets show it as a
 * space anyway. Why refuse the other controls: NUL ends a C string in some
 * SMSCs, ESC (0x1B) is GSM 7-bit's escape into the extension table, so a
 * raw one corrupts the character after it, and the rest have no glyph. A
 * lone surrogate is not a character: it cannot be encoded as UCS-2 text the
 * handset can show, and the SMSC would garble it. Removing ZWJ (U+200D)
 * splits emoji sequences joined by it into their parts — they are still sent,
 * each shown on its own.
 *
 * Pure (no I/O): the send service calls it, property tests model it.
 */
import { GatewayError } from './errors.js';

/** Characters removed before segmenting (format characters that only change how text is shown). */
export function isRemovedFormatChar(cp: number): boolean {
  return (cp >= 0x200b && cp <= 0x200f)
    || (cp >= 0x202a && cp <= 0x202e)
    || (cp >= 0x2066 && cp <= 0x2069)
    || cp === 0x2060
    || cp === 0xfeff;
}

/** A C0 control that is refused (every one but TAB, LF and CR). */
export function isRefusedControl(cp: number): boolean {
  return cp <= 0x1f && cp !== 0x09 && cp !== 0x0a && cp !== 0x0d;
}

export type TextCheck =
  | { readonly ok: true; readonly text: string }
  | { readonly ok: false; readonly reason: 'lone-surrogate' | 'control'; readonly index: number; readonly codeUnit: number };

/**
 * The text as it will be sent, or the first offence (its UTF-16 index in the
 * input). One pass, no regular expressions over user text.
 */
export function checkText(text: string): TextCheck {
  let out: string[] | undefined;
  let from = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < n ? text.charCodeAt(i + 1) : 0;
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a pair: one astral character, kept
        continue;
      }
      return { ok: false, reason: 'lone-surrogate', index: i, codeUnit: c };
    }
    if (c >= 0xdc00 && c <= 0xdfff) return { ok: false, reason: 'lone-surrogate', index: i, codeUnit: c };
    if (isRefusedControl(c)) return { ok: false, reason: 'control', index: i, codeUnit: c };
    if (c === 0x09 || isRemovedFormatChar(c)) {
      out ??= [];
      out.push(text.slice(from, i));
      if (c === 0x09) out.push(' ');
      from = i + 1;
    }
  }
  if (out === undefined) return { ok: true, text };
  out.push(text.slice(from));
  return { ok: true, text: out.join('') };
}

const hex = (c: number): string => `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;

/** The text as sent, or TEXT_INVALID naming `field` and where. */
export function cleanText(text: string, field: string): string {
  const r = checkText(text);
  if (r.ok) return r.text;
  const message = r.reason === 'lone-surrogate'
    ? `a lone surrogate ${hex(r.codeUnit)} at index ${r.index} (not a character; send well-formed UTF-16)`
    : `control character ${hex(r.codeUnit)} at index ${r.index} (only CR, LF and TAB are allowed)`;
  return fail(field, message);
}

function fail(field: string, message: string): never {
  throw new GatewayError('TEXT_INVALID', message, { details: [{ field, message }] });
}
