/**
 * The front door below the routes: raw bytes on a socket, as a hostile or
 * broken client sends them — malformed request lines, control bytes and
 * invalid UTF-8 in the path, bare LF, header lines without a colon, huge and
 * repeated headers, Content-Length that lies, broken chunked bodies, HTTP/1.0
 * and HTTP/2 prefaces, pipelined garbage after a good request, pure random
 * bytes. (test/integration/http-fuzz.test.ts fuzzes every route with
 * well-formed HTTP; this one fuzzes the HTTP itself.)
 *
 * Whatever arrives: no answer is a 5xx, the process keeps serving (a good
 * request after each batch is answered), and a send still gets its 202.
 * Bounded: a fixed number of generated requests, each socket closed after
 * at most SOCKET_MS, all on loopback.
 */
import t from 'tap';
import fc from 'fast-check';
import { numberAt, startTestGateway, TEST_KEY } from '../support/gateway.js';
import { rawExchange } from '../support/http.js';

const RUNS = Number(process.env['SMSGW_WIRE_FUZZ_RUNS'] ?? 300);
const SOCKET_MS = 400;
const BATCH = 10;

/**
 * Writes `bytes` and resolves with every status code the door answered before it closed the connection or
 * SOCKET_MS passed. (No half-close: the door closes a connection on the client's FIN, answers unsent.)
 */
async function exchange(port: number, bytes: Buffer): Promise<number[]> {
  const text = await rawExchange(port, bytes, { capMs: SOCKET_MS, tolerateErrors: true });
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}

const token = fc.oneof(
  fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'get', 'P0ST', ''),
  fc.string({ minLength: 1, maxLength: 12 }),
);
const pathBytes = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom('/v1/messages', '/v1/messages/batch', '/v1/messages/01HZZZZZZZZZZZZZZZZZZZZZZZ', '/v1/templates', '/v1/admin/units', '/v1/admin/people/p1') },
  fc.constantFrom('/v1/messages', '/v1/messages/%', '/v1/messages/%ZZ', '/v1/messages/%C0%80', '/healthz', '/readyz', '/metrics', '*', '', '//', '/v1/admin/units/%E0%A4%A', '/v1/messages?x=%&y', 'http://evil/v1/messages'),
  fc.uint8Array({ maxLength: 64 }).map((a) => '/' + Buffer.from(a).toString('latin1')),
  fc.string({ maxLength: 40 }).map((s) => '/v1/' + s),
);
const version = fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 extra', 'HTTP/9', 'http/1.1', '');
const eol = fc.constantFrom('\r\n', '\n', '\r', '\r\r\n');
const header = fc.oneof(
  fc.constantFrom(
    `authorization: Bearer ${TEST_KEY}`, 'authorization: Bearer', 'authorization:', 'authorization: Basic Og==',
    'content-type: application/json', 'content-type: text/csv', 'content-type:', 'idempotency-key: ' + 'k'.repeat(300),
    'transfer-encoding: chunked', 'transfer-encoding: gzip, chunked', 'content-length: 5', 'content-length: -1',
    'content-length: 99999999999999999999', 'content-length: 3, 4', 'expect: 100-continue', 'connection: upgrade',
    'upgrade: websocket', 'host:', 'no colon here', ': empty name', ' leading-space: x', 'x-long: ' + 'v'.repeat(8000),
  ),
  fc.tuple(fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 60 })).map(([n, v]) => `${n}: ${Buffer.from(v).toString('latin1')}`),
);
const body = fc.oneof(
  fc.constantFrom('', '{}', '{"to":["+8613800138000"],"text":"x"}', '[' .repeat(500), '{"a":' .repeat(200), '0\r\n\r\n', 'zz\r\nabc\r\n0\r\n\r\n', '5\r\nab\r\n', 'ffffffffffffffff\r\n'),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a).toString('latin1')),
);

const request = fc.tuple(token, pathBytes, version, eol, fc.array(header, { maxLength: 8 }), body).map(([m, p, v, nl, hs, b]) =>
  Buffer.from(`${m} ${p} ${v}${nl}host: 127.0.0.1${nl}${hs.join(nl)}${hs.length > 0 ? nl : ''}${nl}${b}`, 'latin1'));
// Framed as HTTP/1.1 (so they reach the routes): a real method, CRLF, a key, a Content-Length that matches or
// lies, and whatever path, headers and body.
const framed = fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE'), pathBytes, fc.array(header, { maxLength: 6 }), body, fc.constantFrom('match', 'none', 'short', 'long')).map(([m, p, hs, b, cl]) => {
  const len = Buffer.byteLength(b, 'latin1');
  const length = cl === 'match' ? [`content-length: ${len}`] : cl === 'none' ? [] : [`content-length: ${cl === 'short' ? Math.max(0, len - 3) : len + 3}`];
  return Buffer.from(`${m} ${p} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${TEST_KEY}\r\n${[...hs, ...length].map((h) => h + '\r\n').join('')}\r\n${b}`, 'latin1');
});
const raw = fc.oneof(
  { weight: 6, arbitrary: framed },
  { weight: 3, arbitrary: request },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 512 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.constant(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')) },
  // A good request, then garbage on the same connection (pipelined).
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.concat([Buffer.from('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n'), Buffer.from(a)])) },
  // Headers far over any sane size.
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 40 }).map((n) => Buffer.from(`GET /healthz HTTP/1.1\r\n${'x-h: ' + 'a'.repeat(4000) + '\r\n'}`.repeat(n) + '\r\n')) },
);

t.test('raw bytes at the door: never a 5xx, never a stopped process', async (t) => {
  const gw = await startTestGateway(t);
  const port = Number(new URL(gw.url).port);
  const samples = fc.sample(raw, { numRuns: RUNS, seed: Number(process.env['SMSGW_WIRE_FUZZ_SEED'] ?? 20261207) });
  const statuses = new Map<number, number>();
  /** The requests answered with a 5xx: the status and the request's first 200 bytes. */
  const fiveHundreds: string[] = [];
  for (let i = 0; i < samples.length; i += BATCH) {
    const answers = await Promise.all(samples.slice(i, i + BATCH).map((b) => exchange(port, b)));
    answers.forEach((codes, k) => {
      for (const c of codes) {
        statuses.set(c, (statuses.get(c) ?? 0) + 1);
        if (c >= 500) fiveHundreds.push(`${c} to ${JSON.stringify((samples[i + k] as Buffer).toString('latin1').slice(0, 200))}`);
      }
    });
    const alive = await fetch(`${gw.url}/healthz`);
    if (alive.status !== 200) {
      t.fail(`the door stopped answering after request ${i + BATCH} (healthz ${alive.status})`);
      break;
    }
  }
  t.same(fiveHundreds, [], `no 5xx among ${samples.length} raw requests (statuses ${JSON.stringify([...statuses].sort((a, b) => a[0] - b[0]))})`);
  const sent = await gw.send({ to: [numberAt(7)], text: 'after the fuzz' });
  t.equal(sent.status, 202, 'a send is still accepted');
});
