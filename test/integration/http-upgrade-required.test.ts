/**
 * A plain request on a WebSocket path. uWS hands only upgrades to a ws
 * route; a GET without `Upgrade: websocket` used to fall to whatever else
 * matched: `/v1/pda` answered "405 GET is not allowed" with `Allow: GET`
 * (contradicting itself), `/v1/mo/stream` fell to `GET /v1/mo/{id}` and
 * answered 404 "no MO message stream". Both are now 426 UPGRADE_REQUIRED
 * with `Upgrade: websocket`, counted under the route, and the WebSocket
 * itself still opens.
 */
import t from 'tap';
import WebSocket from 'ws';
import type { ErrorBody } from '../support/api-types.js';
import { ADMIN_CONFIG } from '../support/directory.js';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';

t.test('a plain GET on a WebSocket path is 426 UPGRADE_REQUIRED; the upgrade still works', async (t) => {
  const gw = await startTestGateway(t, { config: { ...ADMIN_CONFIG, pda: { enabled: true, keySecret: 'g'.repeat(40), adminKey: 'pda-admin-key-0123456789abcdef' } } });
  for (const path of ['/v1/mo/stream', '/v1/pda']) {
    const keys: Record<string, string>[] = [{ authorization: `Bearer ${TEST_KEY}` }, {}];
    for (const auth of keys) {
      const res = await fetch(gw.url + path, { headers: auth });
      const body = (await res.json()) as ErrorBody;
      t.equal(res.status, 426, `${path} ${auth['authorization'] !== undefined ? 'with' : 'without'} a key`);
      t.equal(res.statusText, 'Upgrade Required');
      t.equal(body.error.code, 'UPGRADE_REQUIRED');
      t.equal(res.headers.get('upgrade'), 'websocket');
    }
  }
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  t.match(metrics, /smsgw_http_requests_total\{route="GET \/v1\/mo\/stream",status="426"\} 2/, 'counted under the route');

  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/mo/stream`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  t.pass('the WebSocket opens');
  ws.close();
  // A real id under /v1/mo/ still reaches its route.
  const one = await gw.request<ErrorBody>('GET', '/v1/mo/nope');
  t.equal(one.status, 404);
  t.equal(one.json.error.code, 'NOT_FOUND');
});
