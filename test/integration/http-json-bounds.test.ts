/**
 * JSON shape bounds at the mount (server.json): within the byte limit, a
 * string, an array/object or a count of values over its bound is 422
 * JSON_TOO_LARGE on every JSON route, before the schema; a body over
 * server.maxBodyBytes stays 413 BODY_TOO_LARGE whatever its shape; at the
 * bounds a request goes through. A config whose bounds could not carry the
 * requests its caps allow is refused.
 */
import t from 'tap';
import { startTestGateway } from '../support/gateway.js';
import type { ErrorBody } from '../support/api-types.js';
import { loadConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/core/errors.js';

t.test('JSON bounds on a running gateway', async (t) => {
  const gw = await startTestGateway(t, {
    config: { server: { maxBodyBytes: 4096, maxRecipientsPerRequest: 10, maxBatchItems: 5, json: { maxStringLength: 200, maxMembers: 12, maxValues: 60 } } },
  });
  const numbers = (n: number): string[] => Array.from({ length: n }, (_, i) => `1380013${String(8000 + i).padStart(4, '0')}`);

  t.test('each bound: 422 JSON_TOO_LARGE naming it, on several JSON routes', async (t) => {
    const cases: [string, string, string, string][] = [
      ['POST', '/v1/messages', JSON.stringify({ to: numbers(1), text: 'x'.repeat(201) }), 'maxStringLength: 200'],
      ['POST', '/v1/messages', JSON.stringify({ to: numbers(13), text: 'x' }), 'maxMembers: 12'],
      ['POST', '/v1/messages', JSON.stringify({ to: numbers(1), text: 'x', params: Array.from({ length: 10 }, () => [1, 2, 3, 4, 5, 6]) }), 'maxValues: 60'],
      ['PUT', '/v1/templates/t1', JSON.stringify({ text: 'y'.repeat(500) }), 'maxStringLength: 200'],
      ['POST', '/v1/meetings', JSON.stringify({ title: 'm', attendees: { numbers: numbers(13) } }), 'maxMembers: 12'],
      ['POST', '/v1/workflow-events', JSON.stringify({ system: 's', caseId: 'c', stage: 'x', seq: 1, applicant: { mobile: '13800138000' }, params: { ['k'.repeat(300)]: 1 } }), 'maxStringLength: 200'],
    ];
    for (const [method, path, body, bound] of cases) {
      t.ok(Buffer.byteLength(body) <= 4096, 'within the byte limit');
      const r = await gw.request<ErrorBody>(method, path, body);
      t.equal(r.status, 422, `${method} ${path} ${bound}`);
      t.equal(r.json.error.code, 'JSON_TOO_LARGE');
      t.match(r.json.error.details, [{ field: '/', message: `server.json.${bound}` }]);
    }
  });

  t.test('over the byte limit stays 413 BODY_TOO_LARGE, whatever the shape', async (t) => {
    for (const body of [JSON.stringify({ to: numbers(1), text: 'x'.repeat(5000) }), `[${'0,'.repeat(3000)}0]`]) {
      const r = await gw.request<ErrorBody>('POST', '/v1/messages', body);
      t.equal(r.status, 413);
      t.equal(r.json.error.code, 'BODY_TOO_LARGE');
      // The rest of the body is not read, so the connection closes after the answer: one `connection: close`.
      t.equal(r.headers.get('connection'), 'close', 'one connection: close (it read "close, close" once)');
    }
  });

  t.test('at the bounds the request goes through to its schema and handler', async (t) => {
    const ok = await gw.request('POST', '/v1/messages', { to: numbers(10), text: 'z'.repeat(150) });
    t.equal(ok.status, 202, JSON.stringify(ok.json));
    // 12 members are within the bound; the recipient cap (10) then answers, as before.
    const cap = await gw.request<ErrorBody>('POST', '/v1/messages', { to: numbers(12), text: 'x' });
    t.equal(cap.status, 413);
    t.equal(cap.json.error.code, 'TOO_MANY_RECIPIENTS');
  });
});

t.test('config: maxMembers must carry maxRecipientsPerRequest and maxBatchItems; maxValues ≥ maxMembers', async (t) => {
  const refused = (server: Record<string, unknown>): string[] => {
    try {
      loadConfig({ env: {}, overrides: { log: { level: 'silent' }, server } });
    } catch (e) {
      if (e instanceof GatewayError && e.code === 'CONFIG_INVALID') return (e.details ?? []).map((d) => d.field);
      throw e;
    }
    return [];
  };
  t.same(refused({ maxRecipientsPerRequest: 50_000, json: { maxMembers: 1000 } }), ['/server/json/maxMembers']);
  t.same(refused({ maxRecipientsPerRequest: 100, maxBatchItems: 100, json: { maxMembers: 100, maxValues: 99 } }), ['/server/json/maxValues']);
  t.same(refused({ maxRecipientsPerRequest: 100, maxBatchItems: 100, json: { maxMembers: 100 } }), [], 'the other bounds default');
  t.same(refused({}), [], 'the defaults fit the default caps');
});
