/**
 * Per-recipient status events (statusCallback): batched JSON arrays, signed,
 * every recipient's final event exactly once and after its submitted event,
 * also when receipts come at 0 ms and before the submit_sm_resp; not lost
 * across a restart; refused targets never reached.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, numberAt, TEST_API_KEYS, TEST_KEY } from '../support/gateway.js';
import { eventually } from '../support/office.js';
import type { ErrorBody } from '../support/api-types.js';

const SECRET = 'status-event-secret-0123456789abcdef';

interface StatusEvent { readonly messageId: string; readonly index: number; readonly event: string; readonly to: string; readonly [field: string]: unknown }
interface Post { status: number; events: StatusEvent[]; signed: boolean }
interface BatchResult { readonly httpStatus: number; readonly id: string; readonly body?: { readonly id: string } }
interface WithEvents { readonly statusCallback: { readonly events: readonly string[]; readonly failed: number; readonly lastError?: string } }

async function sink(t: Test, status: () => number): Promise<{ url: string; posts: Post[]; accepted: () => StatusEvent[] }> {
  const posts: Post[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const ts = String(req.headers['x-smsgw-timestamp'] ?? '');
      const sig = String(req.headers['x-smsgw-signature'] ?? '');
      const signed = sig === createHmac('sha256', SECRET).update(`${ts}.${body}`).digest('hex');
      const s = status();
      posts.push({ status: s, events: JSON.parse(body) as StatusEvent[], signed });
      res.writeHead(s).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`,
    posts,
    accepted: () => posts.filter((p) => p.status >= 200 && p.status < 300).flatMap((p) => p.events),
  };
}

/** Every recipient: exactly one final event, and (messages in `submitted`) exactly one submitted event before it. */
function checkOrder(t: Test, events: readonly StatusEvent[], expected: Map<string, number>, submitted: ReadonlySet<string>): void {
  const seen = new Map<string, string[]>();
  for (const e of events) {
    const k = `${e.messageId}#${e.index}`;
    const list = seen.get(k) ?? [];
    list.push(e.event);
    seen.set(k, list);
  }
  let recipients = 0;
  for (const n of expected.values()) recipients += n;
  t.equal(seen.size, recipients, 'every recipient has events');
  let bad = 0;
  for (const [k, list] of seen) {
    const want = submitted.has(k.slice(0, k.indexOf('#'))) ? ['submitted', 'final'] : ['final'];
    if (JSON.stringify(list) !== JSON.stringify(want)) {
      if (bad++ < 5) t.fail(`${k}: ${JSON.stringify(list)}`);
    }
  }
  t.equal(bad, 0, 'each recipient: [submitted?, final], each once, in order');
}

t.test('receipts at 0 ms and before the resp: every final event exactly once, in order, batched and signed', async (t) => {
  const gw = await startTestGateway(t, {
    simulator: { dlrDelayMs: 0, dlrBeforeResp: true },
    config: { callbacks: { allow: ['127.0.0.1/32'], secrets: { dev: { current: SECRET } }, events: { maxBatch: 50, lingerMs: 20 } } },
  });
  const ep = await sink(t, () => 200);
  const expected = new Map<string, number>();
  for (let m = 0; m < 20; m++) {
    const to = [numberAt(100 + m * 3), numberAt(101 + m * 3), m % 4 === 0 ? '13800000005' : numberAt(102 + m * 3)];
    const r = await gw.send<{ id: string }>({ to, text: `events ${m}`, reference: `ref-${m}`, statusCallback: { url: ep.url, events: ['submitted', 'final'] } });
    t.equal(r.status, 202, JSON.stringify(r.json));
    expected.set(r.json.id, 3);
  }
  const b = await gw.request<{ results: BatchResult[] }>('POST', '/v1/messages/batch', { messages: [
    { to: [numberAt(300), numberAt(301)], text: 'batch a', statusCallback: { url: ep.url } },
    { to: [numberAt(302)], text: 'batch b', statusCallback: { url: ep.url, events: ['final'] } },
  ] });
  t.equal(b.status, 207);
  for (const [i, res] of b.json.results.entries()) {
    t.equal(res.httpStatus, 202);
    expected.set(res.body?.id ?? res.id, i === 0 ? 2 : 1);
  }
  let total = 0;
  for (const n of expected.values()) total += n;
  await eventually(() => (ep.accepted().filter((e) => e.event === 'final').length >= total ? true : undefined), 'every final event', 30_000);
  await new Promise((r) => setTimeout(r, 500));
  const events = ep.accepted();
  t.equal(events.filter((e) => e.event === 'final').length, total, 'no final event twice');
  checkOrder(t, events, expected, new Set([...expected].filter(([, n]) => n === 3).map(([id]) => id)));
  t.ok(ep.posts.every((p) => p.signed), 'every POST signed with the tenant secret');
  t.ok(ep.posts.length < events.length, `batched: ${events.length} events in ${ep.posts.length} POSTs`);
  t.ok(ep.posts.every((p) => p.events.length <= 50), 'at most maxBatch per POST');
  const undeliverable = events.find((e) => e.event === 'final' && e.to.endsWith('13800000005'));
  t.match(undeliverable, { state: 'undeliverable', reference: /^ref-/ });
  const batchOnlyFinal = events.filter((e) => expected.get(e.messageId) === 1);
  t.ok(batchOnlyFinal.every((e) => e.event === 'final'), 'events: ["final"] gives only final events');
  const first = [...expected.keys()][0]!;
  const st = await gw.request<WithEvents>('GET', `/v1/messages/${first}`);
  t.same(st.json.statusCallback, { events: ['submitted', 'final'], failed: 0 });
});

t.test('targets are checked: loopback without callbacks.allow is refused, nothing sent, failure visible; user information refused at the door', async (t) => {
  const gw = await startTestGateway(t, { config: { callbacks: { attempts: 2, backoffMs: 20, secrets: { dev: { current: SECRET } }, events: { lingerMs: 0 } } } });
  const ep = await sink(t, () => 200);
  const port = new URL(ep.url).port;
  const ids: string[] = [];
  for (const url of [ep.url, `http://2130706433:${port}/e`, `http://[::ffff:127.0.0.1]:${port}/e`]) {
    const r = await gw.send<{ id: string }>({ to: [numberAt(400 + ids.length)], text: 'x', statusCallback: { url } });
    t.equal(r.status, 202);
    ids.push(r.json.id);
  }
  for (const id of ids) {
    const st = await eventually(async () => {
      const s = await gw.request<WithEvents>('GET', `/v1/messages/${id}`);
      return s.json.statusCallback?.failed > 0 ? s.json : undefined;
    }, 'the given-up events', 20_000);
    t.same(st.statusCallback, { events: ['final'], failed: 1, lastError: 'refused target' });
  }
  t.equal(ep.posts.length, 0, 'the sink on loopback saw nothing');
  const bad = await gw.send<ErrorBody>({ to: [numberAt(410)], text: 'x', statusCallback: { url: 'https://user:pw@hooks.example/e' } });
  t.equal(bad.status, 422);
  t.match(bad.json.error, { code: 'VALIDATION', details: [{ field: '/statusCallback/url' }] });
});

t.test('events waiting when the gateway stops are sent after the restart, each final once', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { pino } = await import('pino');
  const { loadConfig } = await import('../../src/config/load.js');
  const { startGateway, simulatorAccount } = await import('../../src/app/gateway.js');
  const { SmscSimulator } = await import('../../src/smpp/simulator.js');
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-ev-'));
  const sim = new SmscSimulator({ host: '127.0.0.1', port: 0, systemId: 'smsgw', password: 'secret', dlrDelayMs: 0, dlrBeforeResp: true });
  const { port: simPort } = await sim.start();
  t.teardown(async () => {
    await sim.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  let up = false;
  const ep = await sink(t, () => (up ? 204 : 503));
  const base = loadConfig({ env: {}, overrides: { dataDir, log: { level: 'silent' } } });
  const config = loadConfig({ env: {}, overrides: {
    dataDir, log: { level: 'silent' }, server: { host: '127.0.0.1', port: 0 }, auth: { apiKeys: TEST_API_KEYS }, simulator: { enabled: false },
    smpp: { accounts: [{ ...simulatorAccount(base, simPort), reconnectInitialMs: 20 }] as never }, dispatch: { expirySweepMs: 200 },
    callbacks: { allow: ['127.0.0.1/32'], backoffMs: 100, maxBackoffMs: 200, attempts: 50, secrets: { dev: { current: SECRET } }, events: { maxBatch: 7, lingerMs: 10 } },
  } });
  const first = await startGateway(config, { logger: pino({ level: 'silent' }) });
  const expected = new Map<string, number>();
  for (let m = 0; m < 10; m++) {
    const res = await fetch(`http://127.0.0.1:${first.port}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: [numberAt(500 + 2 * m), numberAt(501 + 2 * m)], text: 'x', statusCallback: { url: ep.url, events: ['submitted', 'final'] } }) });
    t.equal(res.status, 202);
    expected.set(((await res.json()) as { id: string }).id, 2);
  }
  await eventually(() => (ep.posts.length >= 3 ? true : undefined), 'refused attempts');
  await first.stop();
  up = true;
  const second = await startGateway(config, { logger: pino({ level: 'silent' }) });
  t.teardown(() => second.stop());
  await eventually(() => (ep.accepted().filter((e) => e.event === 'final').length >= 20 ? true : undefined), 'every final event after the restart', 30_000);
  await new Promise((r) => setTimeout(r, 500));
  checkOrder(t, ep.accepted(), expected, new Set(expected.keys()));
  t.equal(ep.accepted().filter((e) => e.event === 'final').length, 20, 'each final event accepted once');
});
