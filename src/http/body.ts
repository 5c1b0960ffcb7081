/**
 * Body rules of the route table: content types per body kind, and the JSON
 * bounds checked before anything walks the value.
 *
 * Content type, JSON routes: `application/json`, optionally with
 * `charset=utf-8` (any case, optional quotes). Anything else is 415
 * UNSUPPORTED_MEDIA_TYPE — `application/json-patch+json` and
 * `application/jsonx` included. A missing header is accepted as JSON: the
 * API's early clients (scripts, `smsgw send` before 0.1) send bodies without
 * one, and the body must still parse and fit the schema. CSV routes:
 * `text/csv` with an optional charset (a missing header is accepted, as for
 * JSON). Room for XML later: a new BodySpec kind with its own rule.
 *
 * JSON depth: at most MAX_JSON_DEPTH nested arrays/objects, counted on the
 * bytes before JSON.parse (one linear pass, strings skipped), so 100,000
 * nested `[` is a 422 naming the depth, not a stack overflow in a validator.
 */
import { GatewayError } from '../core/errors.js';

export const MAX_JSON_DEPTH = 32;

const JSON_TYPE = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;
const CSV_TYPE = /^text\/csv\s*(;\s*charset\s*=\s*"?[\w-]+"?\s*)?$/i;

export function checkJsonContentType(contentType: string): void {
  if (contentType === '' || JSON_TYPE.test(contentType.trim())) return;
  throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', `content-type ${contentType.slice(0, 100)} is not application/json (charset=utf-8 at most)`);
}

export function checkCsvContentType(contentType: string): void {
  if (contentType === '' || CSV_TYPE.test(contentType.trim())) return;
  throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', `content-type ${contentType.slice(0, 100)} is not text/csv`);
}

/** The deepest nesting of arrays and objects in JSON text (strings skipped); stops counting past `limit`. */
export function jsonDepth(bytes: Uint8Array, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** Parse a JSON body within the depth bound: BAD_JSON (400) when it does not parse, VALIDATION (422) when too deep. */
export function parseBoundedJson(body: Buffer, emptyAs?: unknown): unknown {
  if (body.length === 0) {
    if (emptyAs !== undefined) return emptyAs;
    throw new GatewayError('BAD_JSON', 'the request body is empty; send a JSON object');
  }
  if (jsonDepth(body) > MAX_JSON_DEPTH) {
    throw new GatewayError('VALIDATION', `the body nests arrays/objects deeper than ${MAX_JSON_DEPTH}`, { details: [{ field: '/', message: `at most ${MAX_JSON_DEPTH} levels of nesting` }] });
  }
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (cause) {
    throw new GatewayError('BAD_JSON', `the request body is not valid JSON: ${(cause as Error).message.slice(0, 200)}`, { cause });
  }
}
