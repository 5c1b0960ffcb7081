/**
 * No request stops the gateway: malformed percent-escapes in any path
 * parameter are 400 BAD_PATH (before auth), and a handler that throws answers
 * 500 INTERNAL while the gateway keeps serving.
 */
import t from 'tap';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { ADMIN_CONFIG, ADMIN_KEY } from '../support/directory.js';
import type { ErrorBody } from '../support/api-types.js';

const PDA_ADMIN = 'p'.repeat(32);

/** Every route with a path parameter, the parameter replaced by `{}`. */
const PARAM_ROUTES: [string, string][] = [
  ['GET', '/v1/messages/{}'],
  ['DELETE', '/v1/messages/{}'],
  ['PUT', '/v1/templates/{}'],
  ['GET', '/v1/templates/{}'],
  ['DELETE', '/v1/templates/{}'],
  ['POST', '/v1/templates/{}/preview'],
  ['GET', '/v1/meetings/{}'],
  ['PATCH', '/v1/meetings/{}'],
  ['POST', '/v1/meetings/{}/cancel'],
  ['GET', '/v1/cases/{}/c1'],
  ['GET', '/v1/cases/s1/{}'],
  ['GET', '/v1/mo/{}'],
  ['GET', '/v1/admin/units/{}'],
  ['DELETE', '/v1/admin/blocks/{}/13800138000'],
  ['POST', '/v1/admin/held/{}/release'],
  ['GET', '/v1/admin/pda/devices/{}'],
  ['POST', '/v1/admin/pda/devices/{}/state'],
];

const BAD = ['%ZZ', '%E0%A4%A', '%', '%C0%80', '%ED%A0%80'];

t.test('a malformed percent-escape in any path parameter is 400 BAD_PATH, with or without a key, and the gateway stays up', async (t) => {
  const gw = await startTestGateway(t, { config: { ...ADMIN_CONFIG, pda: { enabled: true, keySecret: 'g'.repeat(40), adminKey: PDA_ADMIN } } });
  for (const [method, path] of PARAM_ROUTES) {
    for (const bad of BAD) {
      const url = path.replace('{}', bad);
      const hasBody = method !== 'GET' && method !== 'DELETE';
      for (const key of [undefined, TEST_KEY, ADMIN_KEY, PDA_ADMIN]) {
        const res = await fetch(gw.url + url, {
          method,
          headers: { ...(key !== undefined ? { authorization: `Bearer ${key}` } : {}), ...(hasBody ? { 'content-type': 'application/json' } : {}) },
          ...(hasBody ? { body: '{}' } : {}),
        });
        const json = (await res.json()) as { error?: { code?: string } };
        t.equal(res.status, 400, `${method} ${url} (key ${key === undefined ? 'none' : 'given'}) → 400`);
        t.equal(json.error?.code, 'BAD_PATH', `${method} ${url} → BAD_PATH`);
      }
    }
  }
  const health = await fetch(`${gw.url}/healthz`);
  t.equal(health.status, 200, 'still serving');
  // A well-formed escape is decoded: a template named "a b" is not a valid name (422), not a path error.
  const spaced = await gw.request<ErrorBody>('GET', '/v1/templates/a%20b');
  t.equal(spaced.status, 422);
  t.equal(spaced.json.error.code, 'VALIDATION');
});

t.test('a handler that throws answers 500 INTERNAL and the gateway keeps serving', async (t) => {
  const gw = await startTestGateway(t);
  const store = gw.gateway.store as unknown as { getMessage: (id: string) => unknown };
  const original = store.getMessage.bind(store);
  store.getMessage = () => {
    throw new TypeError('boom from a test');
  };
  const r = await gw.request('GET', '/v1/messages/anything');
  t.equal(r.status, 500);
  t.same(r.json, { error: { code: 'INTERNAL', message: 'internal error' } }, 'the cause is logged, not shown');
  store.getMessage = original;

  const meetings = gw.gateway.office.meetings as unknown as { list: (...a: unknown[]) => unknown };
  meetings.list = () => {
    throw new RangeError('office boom');
  };
  const m = await gw.request<ErrorBody>('GET', '/v1/meetings');
  t.equal(m.status, 500);
  t.equal(m.json.error.code, 'INTERNAL');

  const health = await fetch(`${gw.url}/healthz`);
  t.equal(health.status, 200, 'still serving after two throwing handlers');
  const sent = await gw.send({ to: ['13800138000'], text: 'still here' });
  t.equal(sent.status, 202, 'and still accepting messages');
});
