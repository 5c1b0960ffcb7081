/**
 * What the route table derives, checked on a running gateway: the served
 * API document is docs/openapi.json, 404 vs 405 with Allow, the content-type
 * rule of JSON bodies, the JSON depth bound, and metric labels per entry.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { MAX_JSON_DEPTH } from '../../src/http/body.js';
import type { ErrorBody } from '../support/api-types.js';

t.test('the route table on a running gateway', async (t) => {
  const gw = await startTestGateway(t);
  const auth = { authorization: `Bearer ${TEST_KEY}` };

  t.test('the served document is docs/openapi.json', async (t) => {
    const served = (await (await fetch(`${gw.url}/openapi.json`)).json());
    const file = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
    t.same(served, file);
  });

  t.test('404 for an unknown path, 405 with Allow for a known path and another method', async (t) => {
    const none = await fetch(`${gw.url}/v1/nothing-here`);
    t.equal(none.status, 404);
    t.equal(((await none.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
    for (const [method, path, allow] of [
      ['PATCH', '/v1/templates/x', 'DELETE, GET, PUT'],
      ['DELETE', '/v1/messages', 'POST'],
      ['PUT', '/v1/meetings', 'GET, POST'],
      ['POST', '/healthz', 'GET'],
      ['PATCH', '/v1/admin/audit', 'GET'],
    ] as const) {
      const res = await fetch(gw.url + path, { method, headers: auth });
      t.equal(res.status, 405, `${method} ${path}`);
      t.equal(res.headers.get('allow'), allow, `${method} ${path}: Allow`);
      t.equal(((await res.json()) as { error: { code: string } }).error.code, 'METHOD_NOT_ALLOWED');
    }
  });

  t.test('JSON bodies: application/json with charset=utf-8 at most; a missing header is JSON; anything else is 415', async (t) => {
    // Bytes, not a string: fetch would add text/plain to a string body.
    const body = new TextEncoder().encode(JSON.stringify({ to: ['13800138000'], text: 'content types' }));
    for (const [ct, status] of [
      ['application/json', 202],
      ['application/json; charset=utf-8', 202],
      ['Application/JSON;charset="UTF-8"', 202],
      [undefined, 202],
      ['application/json-patch+json', 415],
      ['application/jsonx', 415],
      ['application/json; charset=latin1', 415],
      ['text/plain', 415],
      ['multipart/form-data; boundary=x', 415],
    ] as const) {
      const res = await fetch(`${gw.url}/v1/messages`, { method: 'POST', headers: { ...auth, ...(ct !== undefined ? { 'content-type': ct } : {}) }, body });
      t.equal(res.status, status, `content-type ${ct ?? '(none)'}`);
      await res.arrayBuffer();
    }
  });

  t.test('JSON nested deeper than the bound is 422 naming the bound, on every JSON route', async (t) => {
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const event = (params: string) => `{"system":"s","caseId":"c1","stage":"x","seq":1,"applicant":{"mobile":"13800138000"},"params":${params}}`;
    for (const [path, text] of [
      ['/v1/workflow-events', event(deep(100_000))],
      ['/v1/messages', `{"to":["13800138000"],"text":"x","params":${deep(MAX_JSON_DEPTH + 1)}}`],
      ['/v1/meetings', deep(5000)],
    ] as const) {
      const r = await gw.request<ErrorBody>('POST', path, text);
      t.equal(r.status, 422, `${path}`);
      t.equal(r.json.error.code, 'VALIDATION');
      t.match(r.json.error.message, String(MAX_JSON_DEPTH));
    }
    // At the bound it parses (and fails or passes on its schema, not on depth).
    const atBound = await gw.request<Partial<ErrorBody> | undefined>('POST', '/v1/workflow-events', event(`{"a":${deep(MAX_JSON_DEPTH - 3)}}`));
    t.not(atBound.json?.error?.message ?? '', /deeper/);
  });

  t.test('requests are counted under the entry\'s label', async (t) => {
    await gw.request('GET', '/v1/templates/nope');
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    t.match(text, /smsgw_http_requests_total\{route="GET \/v1\/templates\/\{name\}",status="404"\} [1-9]/);
    t.match(text, /smsgw_http_requests_total\{route="other",status="405"\} [1-9]/);
  });
});
