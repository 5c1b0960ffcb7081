/**
 * Completion callbacks: a message with callbackUrl is POSTed there once,
 * when every recipient is final; a failing endpoint is retried a bounded
 * number of times and the failure stays visible in the status API.
 */
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, numberAt } from '../support/gateway.js';
import { eventually } from '../support/office.js';

async function endpoint(t: Test, status: () => number): Promise<{ url: string; bodies: any[] }> {
  const bodies: any[] = [];
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
  const gw = await startTestGateway(t);
  const ep = await endpoint(t, () => 204);
  // 0005 suffix: the simulator answers with an undeliverable receipt.
  const r = await gw.send({ to: [numberAt(1), numberAt(2), '13800000005'], text: 'with callback', reference: 'oa-123', callbackUrl: ep.url });
  t.equal(r.status, 202, JSON.stringify(r.json));
  await gw.waitComplete(r.json.id);
  await eventually(() => (ep.bodies.length === 1 ? true : undefined), 'the callback');
  t.match(ep.bodies[0], { id: r.json.id, reference: 'oa-123', status: 'complete', recipients: 3, summary: { delivered: 2, undeliverable: 1 } });
  await new Promise((res) => setTimeout(res, 600));
  t.equal(ep.bodies.length, 1, 'called once');
  const st = await gw.request('GET', `/v1/messages/${r.json.id}`);
  t.same(st.json.callback, { state: 'done' });
  const plain = await gw.send({ to: [numberAt(3)], text: 'no callback' });
  t.notOk('callback' in (await gw.request('GET', `/v1/messages/${plain.json.id}`)).json);
});

t.test('a failing endpoint: bounded retries, then failed and visible', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { attempts: 3, timeoutMs: 1000 } } });
  const ep = await endpoint(t, () => 500);
  const r = await gw.send({ to: [numberAt(4)], text: 'x', callbackUrl: ep.url });
  await gw.waitComplete(r.json.id);
  const st = await eventually(async () => {
    const s = await gw.request('GET', `/v1/messages/${r.json.id}`);
    return s.json.callback?.state === 'failed' ? s.json : undefined;
  }, 'the failed state', 20_000);
  t.match(st.callback, { state: 'failed', attempts: 3, lastError: /HTTP 500/ });
  t.equal(ep.bodies.length, 3, 'three attempts, no more');
});

t.test('a callback still waiting when the gateway stops is made after the restart', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
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
  const config = loadConfig({ env: {}, overrides: { dataDir, log: { level: 'silent' }, server: { host: '127.0.0.1', port: 0 }, simulator: { enabled: false }, smpp: { accounts: [{ ...simulatorAccount(base, simPort), reconnectInitialMs: 20 }] as never }, dispatch: { expirySweepMs: 200 } } });
  const first = await startGateway(config, { logger: pino({ level: 'silent' }) });
  const res = await fetch(`http://127.0.0.1:${first.port}/v1/messages`, { method: 'POST', headers: { authorization: 'Bearer dev-key-change-me', 'content-type': 'application/json' }, body: JSON.stringify({ to: [numberAt(7)], text: 'x', callbackUrl: ep.url }) });
  const id = ((await res.json()) as { id: string }).id;
  await eventually(() => (ep.bodies.length >= 1 ? true : undefined), 'the first (refused) attempt');
  await first.stop();
  up = true;
  const second = await startGateway(config, { logger: pino({ level: 'silent' }) });
  t.teardown(() => second.stop());
  await eventually(() => (ep.bodies.some((b) => b.id === id) && ep.bodies.length >= 2 ? true : undefined), 'the callback after the restart', 30_000);
  const st = (await (await fetch(`http://127.0.0.1:${second.port}/v1/messages/${id}`, { headers: { authorization: 'Bearer dev-key-change-me' } })).json()) as { callback: { state: string } };
  t.equal(st.callback.state, 'done');
  t.match(ep.bodies[ep.bodies.length - 1], { id, status: 'complete', summary: { delivered: 1 } });
});
