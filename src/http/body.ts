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
 *
 * JSON size: within the byte limit (413 BODY_TOO_LARGE past it), a body is
 * also bounded in shape, counted in the same pass before JSON.parse builds
 * anything: the longest string (key or value, in characters; an escape is
 * one), the most members of one array or object, and the values in all.
 * Past any of them: 422 JSON_TOO_LARGE naming the bound (`server.json`).
 */
import { GatewayError } from '../core/errors.js';

export const MAX_JSON_DEPTH = 32;

/** Shape bounds of a JSON body (config `server.json`). */
export interface JsonBounds {
  /** Characters in one string, key or value (an escape such as \u00e9 counts as one). */
  readonly maxStringLength: number;
  /** Members of one array or object (an object's key/value pair is one). */
  readonly maxMembers: number;
  /** Values in the whole body, containers included. */
  readonly maxValues: number;
}

/** Defaults: far above any schema (its longest string is 8,000; `to` holds up to `server.maxRecipientsPerRequest`, 50,000 by default). */
export const DEFAULT_JSON_BOUNDS: JsonBounds = { maxStringLength: 65_536, maxMembers: 65_536, maxValues: 262_144 };

/** `server.json` as configured, each bound not given at its default. */
export function jsonBounds(configured?: Partial<JsonBounds>): JsonBounds {
  return {
    maxStringLength: configured?.maxStringLength ?? DEFAULT_JSON_BOUNDS.maxStringLength,
    maxMembers: configured?.maxMembers ?? DEFAULT_JSON_BOUNDS.maxMembers,
    maxValues: configured?.maxValues ?? DEFAULT_JSON_BOUNDS.maxValues,
  };
}

/** The first bound a JSON text passes, or undefined: one linear pass over the bytes that stops at the first. */
export function jsonOverBound(bytes: Uint8Array, bounds: JsonBounds, maxDepth = MAX_JSON_DEPTH): { bound: 'depth' | 'string' | 'members' | 'values'; limit: number } | undefined {
  // commas[d]: commas seen in the container open at depth d (its members are one more). Each
  // container's count is zeroed when it opens, so only the top level's needs zeroing here:
  // one array for every call (this runs to the end synchronously), not one per request.
  const commas = maxDepth + 2 <= COMMAS.length ? COMMAS : new Float64Array(maxDepth + 2);
  commas[0] = 0;
  let depth = 0;
  let values = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x3a) continue; // whitespace, ':'
    if (c === 0x2c) { // ','
      if (++commas[depth]! >= bounds.maxMembers) return { bound: 'members', limit: bounds.maxMembers };
      continue;
    }
    if (c === 0x5d || c === 0x7d) { // ']' '}'
      if (depth > 0) depth--;
      continue;
    }
    if (c === 0x22) { // a string: count its characters; a key (followed by ':') is not a value of its own
      let length = 0;
      for (i++; i < bytes.length && bytes[i] !== 0x22; i++) {
        const s = bytes[i]!;
        if (s === 0x5c) i += bytes[i + 1] === 0x75 ? 5 : 1; // \uXXXX, \n, \": one character
        else if ((s & 0xc0) === 0x80) continue; // a UTF-8 continuation byte
        if (++length > bounds.maxStringLength) return { bound: 'string', limit: bounds.maxStringLength };
      }
      if (bytes[nextToken(bytes, i + 1)] !== 0x3a && ++values > bounds.maxValues) return { bound: 'values', limit: bounds.maxValues };
      continue;
    }
    if (++values > bounds.maxValues) return { bound: 'values', limit: bounds.maxValues };
    if (c === 0x5b || c === 0x7b) { // '[' '{'
      if (++depth > maxDepth) return { bound: 'depth', limit: maxDepth };
      commas[depth] = 0;
      continue;
    }
    // A number or literal (or bytes JSON.parse will refuse): one value up to the next delimiter.
    while (i + 1 < bytes.length && !DELIMITER[bytes[i + 1]!]) i++;
  }
  return undefined;
}

/** The comma counts of jsonOverBound at the default depth bound (Float64: any count of a body fits). */
const COMMAS = new Float64Array(MAX_JSON_DEPTH + 2);

/** Bytes that end a number or literal: whitespace , : [ ] { } and the quote. */
const DELIMITER: readonly boolean[] = Array.from({ length: 256 }, (_, b) => ' \t\r\n,:[]{}"'.includes(String.fromCharCode(b)));

function nextToken(bytes: Uint8Array, from: number): number {
  let i = from;
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++;
  return i;
}

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

/**
 * Parse a JSON body within its bounds: BAD_JSON (400) when it does not parse,
 * VALIDATION (422) when nested deeper than MAX_JSON_DEPTH, JSON_TOO_LARGE
 * (422) past a size bound.
 */
export function parseBoundedJson(body: Buffer, emptyAs?: unknown, bounds: JsonBounds = DEFAULT_JSON_BOUNDS): unknown {
  if (body.length === 0) {
    if (emptyAs !== undefined) return emptyAs;
    throw new GatewayError('BAD_JSON', 'the request body is empty; send a JSON object');
  }
  const over = jsonOverBound(body, bounds);
  if (over?.bound === 'depth') {
    throw new GatewayError('VALIDATION', `the body nests arrays/objects deeper than ${MAX_JSON_DEPTH}`, { details: [{ field: '/', message: `at most ${MAX_JSON_DEPTH} levels of nesting` }] });
  }
  if (over !== undefined) {
    const what = over.bound === 'string' ? `a string longer than ${over.limit} characters` : over.bound === 'members' ? `an array or object with more than ${over.limit} members` : `more than ${over.limit} values in all`;
    throw new GatewayError('JSON_TOO_LARGE', `the body has ${what}`, { details: [{ field: '/', message: `server.json.${over.bound === 'string' ? 'maxStringLength' : over.bound === 'members' ? 'maxMembers' : 'maxValues'}: ${over.limit}` }] });
  }
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (cause) {
    throw new GatewayError('BAD_JSON', `the request body is not valid JSON: ${(cause as Error).message.slice(0, 200)}`, { cause });
  }
}
