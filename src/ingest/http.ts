/**
 * Small pieces of HTTP over uWebSockets.js: reading a bounded body, and
 * answering once, corked, only if the client is still there.
 *
 * uWS rules this file encodes (they crash or corrupt when broken):
 *  - `req` is only valid synchronously inside the handler: read headers first;
 *  - `onAborted` must be set before any asynchronous step;
 *  - a chunk passed to `onData` is only valid during the callback: copy it;
 *  - after an abort, `res` must not be touched.
 */
import type { HttpResponse, HttpRequest } from 'uWebSockets.js';
import { GatewayError, STORAGE_RETRY_AFTER_S } from '../core/errors.js';
import { MAX_PARAM_CHARS } from '../http/route.js';

export const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: '200 OK',
  201: '201 Created',
  202: '202 Accepted',
  204: '204 No Content',
  207: '207 Multi-Status',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity',
  426: '426 Upgrade Required',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

/** What the corked write sends (set just before `cork`, which runs its callback at once). */
const out: { res: HttpResponse | undefined; status: string; contentType: string; headers: Readonly<Record<string, string>> | undefined; body: string; close: boolean; head: boolean } = {
  res: undefined, status: '', contentType: '', headers: undefined, body: '', close: false, head: false,
};

function writeOut(): void {
  const res = out.res as HttpResponse;
  res.writeStatus(out.status);
  res.writeHeader('content-type', out.contentType);
  // No `connection: close` of our own when closing: uWS writes it for end(…, true), and a second made it "close, close".
  const headers = out.headers;
  if (headers) for (const k in headers) res.writeHeader(k, headers[k] as string);
  // The answer to a HEAD has no body: its bytes would be read as the next answer on the
  // connection. (Not endWithoutBody: this uWS build then leaves the connection unusable.)
  res.end(out.head ? '' : out.body, out.close);
}

function corked(res: HttpResponse, status: number, contentType: string, headers: Readonly<Record<string, string>> | undefined, body: string, close: boolean, head: boolean): void {
  out.res = res;
  out.head = head;
  out.status = STATUS_TEXT[status] ?? `${status}`;
  out.contentType = contentType;
  out.headers = headers;
  out.body = body;
  out.close = close;
  try {
    res.cork(writeOut);
  } finally {
    out.res = undefined;
    out.headers = undefined;
    out.body = '';
  }
}

/** Per-request state that outlives the synchronous handler. */
export class Exchange {
  aborted = false;
  done = false;
  status = 0;
  /** The request is a HEAD: answers carry their headers only. */
  head = false;
  constructor(readonly res: HttpResponse) {
    res.onAborted(() => {
      this.aborted = true;
    });
  }

  send(status: number, body: string, contentType = 'application/json', headers?: Readonly<Record<string, string>>): void {
    if (this.aborted || this.done) return;
    this.done = true;
    this.status = status;
    corked(this.res, status, contentType, headers, body, false, this.head);
  }

  /**
   * Answer and close the connection: for a body we refuse to read to the
   * end (over the limit), so the rest of it is not parsed as a next request.
   */
  sendAndClose(status: number, value: unknown): void {
    if (this.aborted || this.done) return;
    this.done = true;
    this.status = status;
    corked(this.res, status, 'application/json', undefined, JSON.stringify(value), true, this.head);
  }

  json(status: number, value: unknown, headers?: Readonly<Record<string, string>>): void {
    this.send(status, JSON.stringify(value), 'application/json', headers);
  }

  /** The error's JSON answer; a 401 names its scheme (RFC 9110 §15.5.2), wherever it is answered from. */
  error(e: GatewayError, headers?: Readonly<Record<string, string>>): void {
    if (e.status === 401) headers = { 'www-authenticate': 'Bearer', ...headers };
    if (e.code === 'BODY_TOO_LARGE') this.sendAndClose(e.status, e.toJSON());
    else if (e.code === 'STORAGE_FULL') this.json(e.status, e.toJSON(), { 'retry-after': String(STORAGE_RETRY_AFTER_S), ...headers });
    else this.json(e.status, e.toJSON(), headers);
  }
}

/** The state of one body being read; its chunks arrive through `onData`. */
interface BodyReader {
  readonly limit: number;
  readonly resolve: (body: Buffer | GatewayError) => void;
  /** The declared length's buffer, filled in place; or the chunks (no or a wrong content-length). */
  whole: Buffer | undefined;
  chunks: Buffer[] | undefined;
  size: number;
  over: boolean;
}

function onChunk(reader: BodyReader, chunk: ArrayBuffer, isLast: boolean): void {
  if (reader.over) return;
  const n = chunk.byteLength;
  const size = reader.size + n;
  if (size > reader.limit) {
    reader.over = true;
    reader.resolve(new GatewayError('BODY_TOO_LARGE', `body is larger than ${reader.limit} bytes`));
    return;
  }
  // Copy (once): uWS reuses the memory behind `chunk` after this callback.
  const whole = reader.whole;
  if (whole !== undefined && size <= whole.length) whole.set(new Uint8Array(chunk), reader.size);
  else {
    if (whole !== undefined) {
      // More than the declared length: keep what came as the first chunk.
      reader.chunks = [whole.subarray(0, reader.size)];
      reader.whole = undefined;
    }
    (reader.chunks ??= []).push(Buffer.from(new Uint8Array(chunk)));
  }
  reader.size = size;
  if (!isLast) return;
  if (reader.whole !== undefined) reader.resolve(size === reader.whole.length ? reader.whole : reader.whole.subarray(0, size));
  else {
    const chunks = reader.chunks ?? [];
    reader.resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
  }
}

/**
 * Bodies declared at most this long get their buffer before the first byte
 * comes; longer ones are gathered as they arrive (a client declaring a large
 * body and sending nothing holds no memory for it).
 */
const PREALLOCATE_MAX = 64 * 1024;

/**
 * Read the whole body, at most `limit` bytes. Resolves with BODY_TOO_LARGE
 * (never rejects) as soon as the limit is passed (from content-length or
 * while streaming), and never resolves after an abort (the caller's promise
 * chain is just dropped). With a (small) content-length, the bytes are
 * copied once, into one buffer of that length.
 */
export function readBody(ex: Exchange, req: HttpRequest, limit: number): Promise<Buffer | GatewayError> {
  const declared = req.getHeader('content-length');
  const length = declared === '' ? NaN : Number(declared);
  if (length > limit) {
    // Answer now; uWS discards the rest of the upload.
    return Promise.resolve(new GatewayError('BODY_TOO_LARGE', `body is larger than ${limit} bytes`));
  }
  return new Promise((resolve) => {
    const reader: BodyReader = {
      limit, resolve, size: 0, over: false, chunks: undefined,
      whole: Number.isInteger(length) && length > 0 && length <= PREALLOCATE_MAX ? Buffer.allocUnsafe(length) : undefined,
    };
    ex.res.onData((chunk, isLast) => onChunk(reader, chunk, isLast));
  });
}

export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new GatewayError('BAD_JSON', 'the request body is empty; send a JSON object');
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (cause) {
    throw new GatewayError('BAD_JSON', `the request body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/**
 * The path parameters of a route, percent-decoded. Read synchronously (from
 * `req`); a malformed escape (`%ZZ`, a cut UTF-8 sequence) is BAD_PATH, never
 * a URIError escaping the handler; so is a parameter longer than
 * MAX_PARAM_CHARS once decoded (it can name nothing, and the stores would
 * refuse it as a key).
 */
export function pathParams(req: HttpRequest, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const raw = req.getParameter(i) ?? '';
    let decoded: string;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      throw new GatewayError('BAD_PATH', `path segment ${i + 1} is not valid percent-encoded UTF-8`, { details: [{ field: `path/${i}`, message: 'malformed percent-escape' }] });
    }
    if (decoded.length > MAX_PARAM_CHARS) {
      throw new GatewayError('BAD_PATH', `path segment ${i + 1} is longer than ${MAX_PARAM_CHARS} characters`, { details: [{ field: `path/${i}`, message: `at most ${MAX_PARAM_CHARS} characters` }] });
    }
    out.push(decoded);
  }
  return out;
}

/** The number of `:name` parameters of a uWS route pattern. */
export function paramCount(pattern: string): number {
  return (pattern.match(/\/:/g) ?? []).length;
}
