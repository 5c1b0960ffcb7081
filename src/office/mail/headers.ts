/**
 * What an alert needs from a mail is in its header: From, Subject,
 * Message-ID, To and Cc. The DATA stream is read only up to the end of the
 * header block (the first empty line), kept to MAX_HEADER_BYTES; the body is
 * counted and dropped as it streams in, so a 25 MB attachment costs no
 * memory. The header block is then parsed by mailparser (RFC 2047 encoded
 * words, folded lines, address lists and groups).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MailParser, type AddressObject, type EmailAddress, type HeaderValue, type Headers } from 'mailparser';

/** Longest header block kept; a longer one is cut at its last complete line. */
export const MAX_HEADER_BYTES = 256 * 1024;

export interface HeaderBlock {
  /** The header lines (without the empty line that ends them). */
  readonly block: Buffer;
  /** Bytes of the whole message. */
  readonly bytes: number;
}

/** Read a message stream: keep its header block, drain the rest. Resolves at the end of the stream. */
export function readHeaderBlock(stream: Readable, maxHeaderBytes = MAX_HEADER_BYTES): Promise<HeaderBlock> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let kept = 0;
    let bytes = 0;
    let done = false;
    let block: Buffer | undefined;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (done) return;
      chunks.push(chunk);
      const before = kept;
      kept += chunk.length;
      // Look for the empty line only where it can be: from 3 bytes before this chunk.
      const all = chunks.length === 1 ? chunk : Buffer.concat(chunks, kept);
      if (chunks.length > 1) {
        chunks.length = 0;
        chunks.push(all);
      }
      const end = headerEnd(all, Math.max(0, before - 3));
      if (end >= 0) {
        block = all.subarray(0, end);
        done = true;
      } else if (kept >= maxHeaderBytes) {
        const cut = all.lastIndexOf(0x0a, maxHeaderBytes - 1);
        block = all.subarray(0, cut > 0 ? cut + 1 : maxHeaderBytes);
        done = true;
      }
      if (done) chunks.length = 0;
    });
    stream.once('end', () => resolve({ block: block ?? Buffer.concat(chunks), bytes }));
    stream.once('error', reject);
  });
}

/** Index of the empty line that ends the header (CRLF CRLF or LF LF), or -1. */
function headerEnd(buf: Buffer, from: number): number {
  for (let i = from; i < buf.length - 1; i++) {
    if (buf[i] !== 0x0a) continue;
    if (buf[i + 1] === 0x0a) return i + 1;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 1;
  }
  return -1;
}

export interface MailHeaders {
  readonly from: { readonly name?: string; readonly address?: string } | undefined;
  readonly subject: string | undefined;
  /** The Message-ID as given (angle brackets included), or undefined. */
  readonly messageId: string | undefined;
  /** To and Cc addresses, lower-case, each once. */
  readonly recipients: readonly string[];
}

const END = Buffer.from('\r\n\r\n');

/** Parse a header block with mailparser (no body is given to it). */
export function parseHeaderBlock(block: Buffer): Promise<MailHeaders> {
  return new Promise((resolve, reject) => {
    const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true, checksumAlgo: false });
    let headers: Headers | undefined;
    parser.once('headers', (h: Headers) => (headers = h));
    parser.on('data', (d: { type: string; release?: () => void }) => {
      if (d.type === 'attachment') d.release?.();
    });
    parser.once('error', reject);
    parser.once('end', () => resolve(toMailHeaders(headers ?? new Map<string, HeaderValue>())));
    parser.end(Buffer.concat([block, END]));
  });
}

function toMailHeaders(h: Headers): MailHeaders {
  const from = addresses(h.get('from'))[0];
  const subject = h.get('subject');
  const messageId = h.get('message-id');
  const seen = new Set<string>();
  for (const a of [...addresses(h.get('to')), ...addresses(h.get('cc'))]) {
    if (a.address !== undefined && a.address !== '') seen.add(a.address.trim().toLowerCase());
  }
  return {
    from: from === undefined ? undefined : { ...(from.name !== '' ? { name: from.name } : {}), ...(from.address !== undefined ? { address: from.address } : {}) },
    subject: typeof subject === 'string' ? subject : undefined,
    messageId: typeof messageId === 'string' && messageId.trim() !== '' ? messageId.trim() : undefined,
    recipients: [...seen],
  };
}

/** Mailboxes of an address header (groups flattened). */
function addresses(v: unknown): EmailAddress[] {
  if (v === undefined || v === null) return [];
  const objs = (Array.isArray(v) ? v : [v]) as AddressObject[];
  const out: EmailAddress[] = [];
  const walk = (list: readonly EmailAddress[] | undefined, depth: number): void => {
    for (const a of list ?? []) {
      if (a.group !== undefined && depth < 2) walk(a.group, depth + 1);
      else if (a.address !== undefined) out.push(a);
      if (out.length >= 1000) return;
    }
  };
  for (const o of objs) if (o && typeof o === 'object' && 'value' in o) walk(o.value, 0);
  return out;
}

/**
 * The de-duplication key of a mail: SHA-256 of its Message-ID (or, without
 * one, of its header block, so the same mail sent again maps to the same
 * key), 22 characters of base64url.
 */
export function messageKey(messageId: string | undefined, block: Buffer): string {
  const h = createHash('sha256');
  if (messageId !== undefined) h.update('id:').update(messageId.replace(/^<|>$/g, '').trim());
  else h.update('hdr:').update(block);
  return h.digest('base64url').slice(0, 22);
}
