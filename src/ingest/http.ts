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
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

/** Per-request state that outlives the synchronous handler. */
export class Exchange {
  aborted = false;
  done = false;
  status = 0;
  constructor(readonly res: HttpResponse) {
    res.onAborted(() => {
      this.aborted = true;
    });
  }

  send(status: number, body: string, contentType = 'application/json', headers?: Readonly<Record<string, string>>): void {
    if (this.aborted || this.done) return;
    this.done = true;
    this.status = status;
    this.res.cork(() => {
      this.res.writeStatus(STATUS_TEXT[status] ?? `${status}`);
      this.res.writeHeader('content-type', contentType);
      if (headers) for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
      this.res.end(body);
    });
  }

  /**
   * Answer and close the connection: for a body we refuse to read to the
   * end (over the limit), so the rest of it is not parsed as a next request.
   */
  sendAndClose(status: number, value: unknown): void {
    if (this.aborted || this.done) return;
    this.done = true;
    this.status = status;
    this.res.cork(() => {
      this.res.writeStatus(STATUS_TEXT[status] ?? `${status}`);
      this.res.writeHeader('content-type', 'application/json');
      this.res.writeHeader('connection', 'close');
      this.res.end(JSON.stringify(value), true);
    });
  }

  json(status: number, value: unknown, headers?: Readonly<Record<string, string>>): void {
    this.send(status, JSON.stringify(value), 'application/json', headers);
  }

  error(e: GatewayError, headers?: Readonly<Record<string, string>>): void {
    if (e.code === 'BODY_TOO_LARGE') this.sendAndClose(e.status, e.toJSON());
    else if (e.code === 'STORAGE_FULL') this.json(e.status, e.toJSON(), { 'retry-after': String(STORAGE_RETRY_AFTER_S), ...headers });
    else this.json(e.status, e.toJSON(), headers);
  }
}

/**
 * Read the whole body, at most `limit` bytes. Rejects with BODY_TOO_LARGE as
 * soon as the limit is passed (from content-length or while streaming), and
 * never resolves after an abort (the caller's promise chain is just dropped).
 */
export function readBody(ex: Exchange, req: HttpRequest, limit: number): Promise<Buffer> {
  const declared = req.getHeader('content-length');
  return new Promise((resolve, reject) => {
    if (declared !== '' && Number(declared) > limit) {
      // Answer now; uWS discards the rest of the upload.
      reject(new GatewayError('BODY_TOO_LARGE', `body is larger than ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    ex.res.onData((chunk, isLast) => {
      if (over) return;
      size += chunk.byteLength;
      if (size > limit) {
        over = true;
        reject(new GatewayError('BODY_TOO_LARGE', `body is larger than ${limit} bytes`));
        return;
      }
      // Copy: uWS reuses the memory behind `chunk` after this callback.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (isLast) resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    });
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
 * a URIError escaping the handler.
 */
export function pathParams(req: HttpRequest, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const raw = req.getParameter(i) ?? '';
    try {
      out.push(decodeURIComponent(raw));
    } catch {
      throw new GatewayError('BAD_PATH', `path segment ${i + 1} is not valid percent-encoded UTF-8`, { details: [{ field: `path/${i}`, message: 'malformed percent-escape' }] });
    }
  }
  return out;
}

/** The number of `:name` parameters of a uWS route pattern. */
export function paramCount(pattern: string): number {
  return (pattern.match(/\/:/g) ?? []).length;
}
