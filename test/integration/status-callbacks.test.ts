/**
 * Completion callbacks: a message with callbackUrl is POSTed there once,
 * when every recipient is final; a failing endpoint is retried a bounded
 * number of times and the failure stays visible in the status API.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, numberAt, TEST_API_KEYS, TEST_KEY } from '../support/gateway.js';
import { eventually } from '../support/office.js';
import type { ErrorBody, MessageStatus } from '../support/api-types.js';

/** POST /v1/messages/batch: here always two items, the first one accepted. */
interface BatchReply { readonly results: readonly [{ readonly httpStatus: number; readonly id: string }, unknown] }

/** Every callback is signed: the tenant needs a secret (CALLBACK_SECRET_REQUIRED otherwise, tested below). */
const SECRETS = { dev: { current: 'test-callback-secret-0123456789ab' } };

async function endpoint(t: Test, status: () => number): Promise<{ url: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      bodies.push(JSON.parse(body));
      res.writeHead(status()).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/done`, bodies };
}

t.test('one POST when every recipient is final, with the summary', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { secrets: SECRETS, allow: ['127.0.0.1/32'] } } });
  const ep = await endpoint(t, () => 204);
  // 0005 suffix: the simulator answers with an undeliverable receipt.
  const r = await gw.send<{ id: string }>({ to: [numberAt(1), numberAt(2), '13800000005'], text: 'with callback', reference: 'oa-123', callbackUrl: ep.url });
  t.equal(r.status, 202, JSON.stringify(r.json));
  await gw.waitComplete(r.json.id);
  await eventually(() => (ep.bodies.length === 1 ? true : undefined), 'the callback');
  t.match(ep.bodies[0], { id: r.json.id, reference: 'oa-123', status: 'complete', recipients: 3, summary: { delivered: 2, undeliverable: 1 } });
  await new Promise((res) => setTimeout(res, 600));
  t.equal(ep.bodies.length, 1, 'called once');
  const st = await gw.request<MessageStatus>('GET', `/v1/messages/${r.json.id}`);
  t.same(st.json.callback, { state: 'done' });
  const plain = await gw.send<{ id: string }>({ to: [numberAt(3)], text: 'no callback' });
  t.notOk('callback' in (await gw.request<MessageStatus>('GET', `/v1/messages/${plain.json.id}`)).json);
});

t.test('a failing endpoint: bounded retries, then failed and visible', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { secrets: SECRETS, attempts: 3, timeoutMs: 1000, backoffMs: 50, allow: ['127.0.0.1/32'] } } });
  const ep = await endpoint(t, () => 500);
  const r = await gw.send<{ id: string }>({ to: [numberAt(4)], text: 'x', callbackUrl: ep.url });
  await gw.waitComplete(r.json.id);
  const st = await eventually(async () => {
    const s = await gw.request<MessageStatus>('GET', `/v1/messages/${r.json.id}`);
    return s.json.callback?.state === 'failed' ? s.json : undefined;
  }, 'the failed state', 20_000);
  t.same(st.callback, { state: 'failed', attempts: 3, lastError: 'HTTP 500' });
  t.equal(ep.bodies.length, 3, 'three attempts, no more');
});

t.test('a callback still waiting when the gateway stops is made after the restart', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { pino } = await import('pino');
  const { loadConfig } = await import('../../src/config/load.js');
  const { startGateway, simulatorAccount } = await import('../../src/app/gateway.js');
  const { SmscSimulator } = await import('../../src/smpp/simulator.js');
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-cb-'));
  const sim = new SmscSimulator({ host: '127.0.0.1', port: 0, systemId: 'smsgw', password: 'secret', dlrDelayMs: 10 });
  const { port: simPort } = await sim.start();
  t.teardown(async () => {
    await sim.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  let up = false;
  const ep = await endpoint(t, () => (up ? 204 : 503));
  const base = loadConfig({ env: {}, overrides: { dataDir, log: { level: 'silent' } } });
  const config = loadConfig({ env: {}, overrides: { dataDir, log: { level: 'silent' }, server: { host: '127.0.0.1', port: 0 }, auth: { apiKeys: TEST_API_KEYS }, simulator: { enabled: false }, smpp: { accounts: [{ ...simulatorAccount(base, simPort), reconnectInitialMs: 20 }] as never }, dispatch: { expirySweepMs: 200 }, callbacks: { secrets: SECRETS, allow: ['127.0.0.1/32'], backoffMs: 100 } } });
  const first = await startGateway(config, { logger: pino({ level: 'silent' }) });
  const res = await fetch(`http://127.0.0.1:${first.port}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: [numberAt(7)], text: 'x', callbackUrl: ep.url }) });
  const id = ((await res.json()) as { id: string }).id;
  await eventually(() => (ep.bodies.length >= 1 ? true : undefined), 'the first (refused) attempt');
  await first.stop();
  const refusedBefore = ep.bodies.length;
  up = true;
  const second = await startGateway(config, { logger: pino({ level: 'silent' }) });
  t.teardown(() => second.stop());
  const st = await eventually(async () => {
    const s = (await (await fetch(`http://127.0.0.1:${second.port}/v1/messages/${id}`, { headers: { authorization: `Bearer ${TEST_KEY}` } })).json()) as { callback: { state: string } };
    return s.callback.state === 'done' ? s : undefined;
  }, 'the callback after the restart', 30_000);
  t.equal(st.callback.state, 'done');
  t.equal(ep.bodies.length, refusedBefore + 1, 'one accepted POST after the restart');
  t.match(ep.bodies[ep.bodies.length - 1], { id, status: 'complete', summary: { delivered: 1 } });
});

t.test('without callbacks.allow a loopback callback is refused: nothing sent, "refused target"', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { secrets: SECRETS, attempts: 2, backoffMs: 20 } } });
  const ep = await endpoint(t, () => 204);
  const port = new URL(ep.url).port;
  const ids: string[] = [];
  // Loopback, its decimal form, its IPv6-mapped form, and link-local metadata.
  for (const url of [ep.url, `http://2130706433:${port}/done`, `http://[::ffff:127.0.0.1]:${port}/done`, 'http://169.254.169.254/latest/meta-data/']) {
    const r = await gw.send<{ id: string }>({ to: [numberAt(8)], text: 'x', callbackUrl: url });
    t.equal(r.status, 202);
    ids.push(r.json.id);
  }
  for (const id of ids) {
    const st = await eventually(async () => {
      const s = await gw.request<MessageStatus>('GET', `/v1/messages/${id}`);
      return s.json.callback?.state === 'failed' ? s.json : undefined;
    }, 'the refused state', 20_000);
    t.same(st.callback, { state: 'failed', attempts: 2, lastError: 'refused target' });
  }
  t.equal(ep.bodies.length, 0, 'the sink on loopback saw nothing');
});

t.test('a redirect is not followed: the callback fails with "HTTP 302"', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { secrets: SECRETS, attempts: 1, allow: ['127.0.0.1/32'] } } });
  const inner = await endpoint(t, () => 204);
  const redirect = createServer((_req, res) => res.writeHead(302, { location: inner.url }).end());
  await new Promise<void>((r) => redirect.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => redirect.close(() => r())));
  const r = await gw.send<{ id: string }>({ to: [numberAt(9)], text: 'x', callbackUrl: `http://127.0.0.1:${(redirect.address() as AddressInfo).port}/r` });
  const st = await eventually(async () => {
    const s = await gw.request<MessageStatus>('GET', `/v1/messages/${r.json.id}`);
    return s.json.callback?.state === 'failed' ? s.json : undefined;
  }, 'the failed state', 20_000);
  t.same(st.callback, { state: 'failed', attempts: 1, lastError: 'HTTP 302' });
  t.equal(inner.bodies.length, 0, 'the redirect target was never called');
});

t.test('user information in callbackUrl is refused at the door (422), single and batch', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { secrets: SECRETS, allow: ['127.0.0.1/32'] } } });
  const r = await gw.send<ErrorBody>({ to: [numberAt(10)], text: 'x', callbackUrl: 'https://admin:hunter2@hooks.example/cb' });
  t.equal(r.status, 422);
  t.match(r.json.error, { code: 'VALIDATION', details: [{ field: '/callbackUrl', message: /user information/ }] });
  t.notMatch(JSON.stringify(r.json), /hunter2/);
  const b = await gw.request<BatchReply>('POST', '/v1/messages/batch', { messages: [{ to: [numberAt(11)], text: 'x' }, { to: [numberAt(12)], text: 'x', callbackUrl: 'http://u@hooks.example/' }] });
  t.equal(b.status, 207);
  t.equal(b.json.results[0].httpStatus, 202);
  t.match(b.json.results[1], { httpStatus: 422, error: { code: 'VALIDATION', details: [{ field: /callbackUrl$/ }] } });
});

t.test('callbacks are signed with the tenant secret from config', async (t) => {
  const secret = 'dev-callback-secret-0123456789';
  const gw = await startTestGateway(t, { config: { callbacks: { allow: ['127.0.0.1/32'], secrets: { dev: { current: secret } } } } });
  const got: Array<{ ts: string; sig: string; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ ts: String(req.headers['x-smsgw-timestamp']), sig: String(req.headers['x-smsgw-signature']), body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const r = await gw.send<{ id: string }>({ to: [numberAt(13)], text: 'signed', callbackUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/cb` });
  await eventually(() => (got.length === 1 ? true : undefined), 'the callback');
  const { createHmac } = await import('node:crypto');
  t.equal(got[0]!.sig, createHmac('sha256', secret).update(`${got[0]!.ts}.${got[0]!.body}`).digest('hex'));
  t.ok(Math.abs(Number(got[0]!.ts) - Date.now() / 1000) < 300, 'a fresh timestamp in seconds');
  t.match(JSON.parse(got[0]!.body), { id: r.json.id, status: 'complete' });
});

t.test('nothing leaves unsigned: callbackUrl and statusCallback need a signing secret (422 CALLBACK_SECRET_REQUIRED), single and batch', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { allow: ['127.0.0.1/32'] } } });
  const ep = await endpoint(t, () => 204);
  const single = await gw.send<ErrorBody>({ to: [numberAt(13)], text: 'x', callbackUrl: ep.url });
  t.equal(single.status, 422);
  t.match(single.json.error, { code: 'CALLBACK_SECRET_REQUIRED', details: [{ field: '/callbackUrl' }] });
  const events = await gw.send<ErrorBody>({ to: [numberAt(14)], text: 'x', statusCallback: { url: ep.url } });
  t.equal(events.status, 422);
  t.match(events.json.error, { code: 'CALLBACK_SECRET_REQUIRED', details: [{ field: '/statusCallback' }] });
  const b = await gw.request<BatchReply>('POST', '/v1/messages/batch', { messages: [{ to: [numberAt(15)], text: 'x' }, { to: [numberAt(16)], text: 'x', callbackUrl: ep.url }] });
  t.equal(b.status, 207);
  t.equal(b.json.results[0].httpStatus, 202, 'a send without a callback is not affected');
  t.match(b.json.results[1], { httpStatus: 422, error: { code: 'CALLBACK_SECRET_REQUIRED', details: [{ field: '/messages/1/callbackUrl' }] } });
  await gw.waitComplete(b.json.results[0].id);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(ep.bodies.length, 0, 'nothing was sent');
});
