/**
 * The signature (签名) on a message: the carriers require 【签名】 at the
 * front of every text and may block a message without it there; a few
 * accounts want it at the end. Ingest signs the text at the front (what is
 * counted in segments); an account configured `signaturePosition: "end"`
 * gets the same characters with the signature moved, so the part count never
 * changes with the account. Pure.
 */

export type SignaturePosition = 'front' | 'end';

/** A signature as carriers write it: 【…】, 1–30 characters inside. */
const FRONT = /^【[^【】\r\n]{1,30}】/u;
const END = /【[^【】\r\n]{1,30}】$/u;

/** The text as sent: the signature at `position` unless the text already starts or ends with it. */
export function signText(text: string, signature: string | undefined, position: SignaturePosition = 'front'): string {
  if (signature === undefined || signature === '') return text;
  if (text.endsWith(signature) || text.startsWith(signature)) return text;
  return position === 'front' ? signature + text : text + signature;
}

/**
 * Move a 【…】 signature to `position`: a text that starts with one (and does
 * not also end with one) gets it at the end, and the reverse. Any other text
 * is returned as it is.
 */
export function placeSignature(text: string, position: SignaturePosition): string {
  if (position === 'end') {
    const m = FRONT.exec(text);
    if (m === null || END.test(text) || m[0].length === text.length) return text;
    return text.slice(m[0].length) + m[0];
  }
  const m = END.exec(text);
  if (m === null || FRONT.test(text) || m[0].length === text.length) return text;
  return m[0] + text.slice(0, text.length - m[0].length);
}
