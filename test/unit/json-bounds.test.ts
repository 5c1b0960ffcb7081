/**
 * JSON shape bounds (src/http/body.ts): the byte scan that runs before
 * JSON.parse agrees with a reference computed on the parsed value — depth,
 * longest string (code points; keys too), most members of one array/object,
 * values in all — for random JSON under random bounds and formatting.
 */
import t from 'tap';
import fc from 'fast-check';
import { jsonOverBound, parseBoundedJson, jsonBounds, DEFAULT_JSON_BOUNDS, MAX_JSON_DEPTH, type JsonBounds } from '../../src/http/body.js';
import { GatewayError } from '../../src/core/errors.js';

interface Shape { depth: number; longest: number; members: number; values: number }

/** The reference: walks the parsed value. */
function shape(v: unknown, depth = 0): Shape {
  if (typeof v === 'string') return { depth, longest: Array.from(v).length, members: 0, values: 1 };
  if (v === null || typeof v !== 'object') return { depth, longest: 0, members: 0, values: 1 };
  const entries: [string | undefined, unknown][] = Array.isArray(v) ? v.map((x: unknown) => [undefined, x]) : Object.entries(v);
  const out: Shape = { depth: depth + 1, longest: 0, members: entries.length, values: 1 };
  for (const [k, x] of entries) {
    const s = shape(x, depth + 1);
    out.depth = Math.max(out.depth, s.depth);
    out.longest = Math.max(out.longest, s.longest, k === undefined ? 0 : Array.from(k).length);
    out.members = Math.max(out.members, s.members);
    out.values += s.values;
  }
  return out;
}

function exceeded(s: Shape, b: JsonBounds, maxDepth: number): Set<string> {
  const over = new Set<string>();
  if (s.depth > maxDepth) over.add('depth');
  if (s.longest > b.maxStringLength) over.add('string');
  if (s.members > b.maxMembers) over.add('members');
  if (s.values > b.maxValues) over.add('values');
  return over;
}

const bounds = fc.record({ maxStringLength: fc.integer({ min: 1, max: 12 }), maxMembers: fc.integer({ min: 1, max: 6 }), maxValues: fc.integer({ min: 1, max: 40 }) });
const value = fc.jsonValue({ maxDepth: 5, stringUnit: 'binary' });

t.test('the scan finds a bound passed exactly when the reference does, and names one that is passed', async (t) => {
  let over = 0;
  let within = 0;
  fc.assert(fc.property(value, bounds, fc.integer({ min: 1, max: 6 }), fc.constantFrom(0, 1, 2), (v, b, maxDepth, indent) => {
    const bytes = Buffer.from(JSON.stringify(v, null, indent), 'utf8');
    const expected = exceeded(shape(v), b, maxDepth);
    const got = jsonOverBound(bytes, b, maxDepth);
    if (expected.size === 0) {
      within++;
      return got === undefined;
    }
    over++;
    return got !== undefined && expected.has(got.bound);
  }), { numRuns: 3000, seed: 1313 });
  t.ok(over > 300 && within > 300, `both outcomes were exercised (${over} over, ${within} within)`);
});

t.test('escapes count as one character; multi-byte UTF-8 as one', async (t) => {
  const b: JsonBounds = { maxStringLength: 3, maxMembers: 10, maxValues: 10 };
  t.equal(jsonOverBound(Buffer.from('"\\u00e9\\n\\""'), b), undefined, 'three escapes: three characters');
  t.same(jsonOverBound(Buffer.from('"\\u00e9\\n\\"x"'), b), { bound: 'string', limit: 3 });
  t.equal(jsonOverBound(Buffer.from('"城市😀"'), { ...b, maxStringLength: 3 }), undefined, 'three code points in 10 bytes');
  t.same(jsonOverBound(Buffer.from('{"abcd":1}'), b), { bound: 'string', limit: 3 }, 'keys are strings too');
});

t.test('parseBoundedJson: 422 JSON_TOO_LARGE naming the bound, 422 VALIDATION past the depth, 400 BAD_JSON after', async (t) => {
  const b: JsonBounds = { maxStringLength: 5, maxMembers: 3, maxValues: 6 };
  const refused = (text: string, within: JsonBounds = b): GatewayError => {
    try {
      parseBoundedJson(Buffer.from(text), undefined, within);
    } catch (e) {
      if (e instanceof GatewayError) return e;
    }
    throw new Error(`not refused: ${text}`);
  };
  for (const [text, field] of [['"abcdef"', 'maxStringLength: 5'], ['[1,2,3,4]', 'maxMembers: 3'], ['[[1,2],[3,4],[5]]', 'maxValues: 6']] as const) {
    const e = refused(text);
    t.equal(e.code, 'JSON_TOO_LARGE', text);
    t.equal(e.status, 422);
    t.match(e.details, [{ field: '/', message: `server.json.${field}` }]);
  }
  // The first bound the scan passes is the one answered: 33 nested arrays are 33 values.
  t.equal(refused(`${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`, { ...b, maxValues: 100 }).code, 'VALIDATION');
  t.equal(refused('[1,2').code, 'BAD_JSON', 'within the bounds but not JSON');
  t.same(parseBoundedJson(Buffer.from('{"a":[1,2,3],"b":"abcde"}'), undefined, b), { a: [1, 2, 3], b: 'abcde' }, 'at every bound it parses');
});

t.test('jsonBounds: configured bounds over the defaults', async (t) => {
  t.same(jsonBounds(undefined), DEFAULT_JSON_BOUNDS);
  t.same(jsonBounds({ maxMembers: 7 }), { ...DEFAULT_JSON_BOUNDS, maxMembers: 7 });
});

t.test('bounded time: a 2 MiB body of one-byte values stops at maxValues', async (t) => {
  const body = Buffer.from(`[${'0,'.repeat(1024 * 1024)}0]`);
  const started = performance.now();
  t.same(jsonOverBound(body, DEFAULT_JSON_BOUNDS), { bound: 'members', limit: DEFAULT_JSON_BOUNDS.maxMembers });
  t.ok(performance.now() - started < 1000, 'scanned in under a second');
});
