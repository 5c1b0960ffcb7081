/**
 * Reroute of failed recipients end to end (src/core/reroute.ts): a real
 * gateway, two SMSC simulators on loopback as accounts of two carriers. The
 * first account fails numbers ending 0005 by receipt (UNDELIV); the second
 * delivers them (its suffix receipts off) or fails them too. Receipts after
 * the resp, at 0 ms, and before the resp; the embedded and the NATS queue;
 * a restart between the attempts.
 */
import t from 'tap';
import type { Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startTestGateway, numberAt, TEST_API_KEYS, TEST_KEY } from '../support/gateway.js';
import { startSimulator } from '../support/nats-deployment.js';
import { simulatorAccountConfig } from '../support/gateway-process.js';
import { requireNatsServer, startNatsServer } from '../support/nats-server.js';
import { until } from '../support/wait.js';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { SmscSimulator, type SmscSimulatorOptions } from '../../src/smpp/simulator.js';
import { deepMerge, loadConfig } from '../../src/config/load.js';
import { startGateway, type Gateway } from '../../src/app/gateway.js';
import { responseBody } from '../support/http.js';
import type { AttemptView, RecipientView, SegmentView } from '../support/api-types.js';

/** Last four digits 0005: the first simulator answers UNDELIV. */
const FAILS = '13800000005';
const FAILS_TOO = '13900010005';

/** A rerouted recipient: its two attempts (never a third), and the current attempt's segments. */
type Rerouted = RecipientView & { readonly attempts: readonly [AttemptView, AttemptView]; readonly segments: readonly SegmentView[] };
/** The status of a message to the one rerouted recipient. */
interface OneRecipientStatus { readonly status: string; readonly items: readonly [Rerouted] }

function routing(reroute: boolean): Record<string, unknown> {
  return {
    health: { unboundMs: 200, failingMs: 2000, retryMs: 5000 },
    rules: [{ name: 'mobile', match: { operators: ['cmcc'] }, accounts: ['cm-a'], policy: 'failover', ...(reroute ? { reroute: true, rerouteTo: ['cm-a2', 'cu-b'] } : {}) }],
  };
}

function accounts(aPort: number, bPort: number): Record<string, unknown>[] {
  return [
    simulatorAccountConfig(aPort, { name: 'cm-a', operators: ['cmcc'], carrier: 'cmcc' }),
    // Same carrier as cm-a: listed first in rerouteTo, never taken for a second attempt.
    simulatorAccountConfig(aPort, { name: 'cm-a2', operators: [], carrier: 'cmcc' }),
    simulatorAccountConfig(bPort, { name: 'cu-b', operators: [], carrier: 'cucc' }),
  ];
}

async function twoCarriers(t: Test, o: { reroute?: boolean; a?: Partial<SmscSimulatorOptions>; b?: Partial<SmscSimulatorOptions>; queue?: Record<string, unknown>; config?: Record<string, unknown> } = {}) {
  const a = await startSimulator(t, { dlrDelayMs: 5, ...o.a });
  const b = await startSimulator(t, { dlrDelayMs: 5, receiptSuffixes: false, ...o.b });
  const gw = await startTestGateway(t, {
    config: { smpp: { accounts: accounts(a.port, b.port) }, routing: routing(o.reroute ?? true), ...(o.queue ? { queue: o.queue } : {}), ...o.config },
  });
  await until('accounts bound', () => (gw.gateway.router?.accounts() ?? []).every((x) => x.bound > 0), 10_000);
  // Every final state the store announces (what completion callbacks and status events are driven by).
  const finals: Array<[string, number, string]> = [];
  gw.gateway.store.onFinal((id, index, state) => finals.push([id, index, state]));
  return { a, b, gw, finals };
}

function metric(text: string, outcome: string): number {
  const m = new RegExp(`smsgw_reroutes_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

async function reroutesMetrics(url: string): Promise<string> {
  return fetch(`${url}/metrics`).then((x) => x.text());
}

const RECEIPT_TIMING: Array<[string, Partial<SmscSimulatorOptions>]> = [
  ['receipts 5 ms after the resp', { dlrDelayMs: 5 }],
  ['receipts at 0 ms', { dlrDelayMs: 0 }],
  ['receipts before the resp', { dlrBeforeResp: true }],
];

for (const [name, timing] of RECEIPT_TIMING) {
  t.test(`${name}: UNDELIV on the first carrier, delivered by the second; both attempts shown; final once`, async (t) => {
    const { a, b, gw, finals } = await twoCarriers(t, { a: timing, b: timing });
    const r = await gw.send<{ id: string }>({ to: [FAILS, numberAt(1)], text: `reroute ${name}` });
    t.equal(r.status, 202);
    const done = await gw.waitComplete(r.json.id);
    t.equal(done.summary.delivered, 2, 'both delivered');
    const failed = done.items.find((i) => i.to === `86${FAILS}`) as Rerouted;
    t.equal(failed.state, 'delivered', 'the final state is the last attempt\'s');
    t.equal(failed.attempts.length, 2);
    t.match(failed.attempts[0], { attempt: 1, state: 'undeliverable', account: 'cm-a', segments: [{ state: 'undeliverable' }] });
    t.match(failed.attempts[1], { attempt: 2, state: 'delivered', account: 'cu-b', segments: [{ state: 'delivered' }] });
    t.same(failed.segments.map((s) => s.state), ['delivered'], 'segments: the current attempt');
    const plain = done.items.find((i) => i.to === `86${numberAt(1)}`)!;
    t.equal(plain.attempts, undefined, 'a recipient delivered at once shows no attempts');
    t.equal(a.stats().uniqueSegments, 2, 'cm-a carried both first attempts');
    t.equal(b.stats().uniqueSegments, 1, 'cu-b carried the second attempt only');
    await new Promise((res) => setTimeout(res, 200));
    const mine = finals.filter((f) => f[0] === r.json.id);
    t.same(mine.map((f) => f[2]).sort(), ['delivered', 'delivered'], 'each recipient announced final once, with its true final state');
    const text = await reroutesMetrics(gw.url);
    t.equal(metric(text, 'started'), 1);
    t.equal(metric(text, 'delivered'), 1);
  });
}

t.test('both carriers fail: the final state is the second attempt\'s, and there is never a third', async (t) => {
  const { a, b, gw, finals } = await twoCarriers(t, { b: { receiptSuffixes: true } });
  const r = await gw.send<{ id: string }>({ to: [FAILS, FAILS_TOO], text: 'both fail' });
  const done = await gw.waitComplete(r.json.id);
  t.equal(done.summary.undeliverable, 2);
  for (const item of done.items as readonly Rerouted[]) {
    t.equal(item.attempts.length, 2);
    t.match(item.attempts, [{ state: 'undeliverable', account: 'cm-a' }, { state: 'undeliverable', account: 'cu-b' }]);
  }
  await new Promise((res) => setTimeout(res, 500));
  t.equal(a.stats().submits, 2, 'one first attempt each');
  t.equal(b.stats().submits, 2, 'one second attempt each, no third');
  t.equal(finals.filter((f) => f[0] === r.json.id).length, 2, 'final once per recipient');
  const text = await reroutesMetrics(gw.url);
  t.equal(metric(text, 'started'), 2);
  t.equal(metric(text, 'undeliverable'), 2);
});

t.test('reroute off (the default): UNDELIV is final at once, one attempt, nothing through the other carrier', async (t) => {
  const { a, b, gw } = await twoCarriers(t, { reroute: false });
  const r = await gw.send<{ id: string }>({ to: [FAILS], text: 'no reroute' });
  const done = await gw.waitComplete(r.json.id);
  t.equal(done.summary.undeliverable, 1);
  t.equal(done.items[0]!.attempts, undefined);
  await new Promise((res) => setTimeout(res, 300));
  t.equal(a.stats().submits, 1);
  t.equal(b.stats().submits, 0);
});

t.test('with the NATS queue', async (t) => {
  if (!requireNatsServer(t)) return;
  const server = await startNatsServer({ jetstream: true });
  t.teardown(() => server.destroy());
  const { b, gw, finals } = await twoCarriers(t, { queue: { kind: 'nats', nats: { servers: [server.url] } } });
  const r = await gw.send<{ id: string }>({ to: [FAILS, numberAt(2)], text: 'reroute over nats' });
  const done = await gw.waitComplete(r.json.id);
  t.equal(done.summary.delivered, 2);
  t.match(done.items.find((i) => i.to === `86${FAILS}`)!.attempts, [{ state: 'undeliverable', account: 'cm-a' }, { state: 'delivered', account: 'cu-b' }]);
  t.equal(b.stats().uniqueSegments, 1);
  // Listeners run just after the commit the status read may already see.
  await until('finals announced', () => finals.filter((f) => f[0] === r.json.id).length >= 2, 5000);
  await new Promise((res) => setTimeout(res, 200));
  t.equal(finals.filter((f) => f[0] === r.json.id).length, 2, 'final once per recipient');
  // Status events (<prefix>.status.<tenant>): one per recipient, the rerouted one with its true final state.
  const nc = await connect({ servers: [server.url] });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const events: Array<{ messageId: string; index: number; state: string }> = [];
  await until('status events published', async () => {
    events.length = 0;
    const info = await jsm.streams.info('SMSGW_WORK_STATUS');
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && seq - info.state.first_seq < 1000; seq++) {
      const m = await jsm.streams.getMessage('SMSGW_WORK_STATUS', { seq });
      if (m) for (const e of m.json<{ events: Array<{ messageId: string; index: number; state: string }> }>().events) if (e.messageId === r.json.id) events.push(e);
    }
    return events.length >= 2;
  }, 10_000);
  const failedIndex = done.items.find((i) => i.to === `86${FAILS}`)!.index;
  t.same(events.map((e) => [e.index, e.state]).sort(), [[0, 'delivered'], [1, 'delivered']], 'one status event per recipient');
  t.equal(events.filter((e) => e.index === failedIndex).length, 1, 'the rerouted recipient: one event, at its second attempt\'s end');
});

async function restartBetweenAttempts(t: Test, queue: Record<string, unknown> | undefined): Promise<void> {
  const a = await startSimulator(t, { dlrDelayMs: 5 });
  // cu-b's SMSC is not there before the restart: the second attempt waits.
  const probe = await startSimulator(t, {});
  const bPort = probe.port;
  await probe.stop();
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-reroute-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({
    env: {},
    overrides: deepMerge(
      {
        dataDir, log: { level: 'silent' }, server: { host: '127.0.0.1', port: 0 }, auth: { apiKeys: TEST_API_KEYS }, simulator: { enabled: false },
        dispatch: { expirySweepMs: 200 }, smpp: { accounts: accounts(a.port, bPort) as never }, routing: routing(true) as never,
      },
      (queue ? { queue } : {}) as never,
    ),
  });
  const start = async (): Promise<{ gw: Gateway; call: <T = unknown>(path: string, body?: unknown) => Promise<T> }> => {
    const gw = await startGateway(config, { logger: pino({ level: 'silent' }) });
    const call = async <T = unknown>(path: string, body?: unknown): Promise<T> => {
      const res = await fetch(`http://127.0.0.1:${gw.port}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return responseBody(res) as Promise<T>;
    };
    return { gw, call };
  };
  const first = await start();
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await first.gw.stop();
  });
  const sent = await first.call<{ id: string }>('/v1/messages', { to: [FAILS], text: 'across a restart' });
  const id = sent.id;
  await until('first attempt failed, second pending', async () => {
    const s = await first.call<OneRecipientStatus>(`/v1/messages/${id}`);
    return s.items?.[0]?.attempts?.length === 2 && s.items[0].state === 'queued';
  }, 10_000);
  const pending = await first.call<OneRecipientStatus>(`/v1/messages/${id}`);
  t.equal(pending.status, 'in-progress', 'not final while the second attempt is pending');
  t.match(pending.items[0].attempts, [{ state: 'undeliverable', account: 'cm-a' }, { attempt: 2, state: 'queued' }]);
  t.equal(pending.items[0].attempts[1].endedAt, undefined);
  await first.gw.stop();
  stopped = true;

  const b = new SmscSimulator({ port: bPort, host: '127.0.0.1', systemId: 'smsgw', password: 'secret', dlrDelayMs: 5, receiptSuffixes: false });
  await b.start();
  t.teardown(() => b.stop());
  const second = await start();
  t.teardown(() => second.gw.stop());
  let done!: OneRecipientStatus;
  await until('complete after the restart', async () => {
    done = await second.call<OneRecipientStatus>(`/v1/messages/${id}`);
    return done.status === 'complete';
  }, 20_000);
  t.equal(done.items[0].state, 'delivered');
  t.match(done.items[0].attempts, [{ state: 'undeliverable', account: 'cm-a' }, { state: 'delivered', account: 'cu-b' }]);
  t.equal(a.stats().submits, 1, 'the first carrier saw one attempt');
  t.equal(b.stats().uniqueSegments, 1, 'the second carrier delivered once');
}

t.test('a restart between the attempts (embedded queue): the second attempt goes out after the restart', (t) => restartBetweenAttempts(t, undefined));

t.test('a restart between the attempts (NATS queue)', async (t) => {
  if (!requireNatsServer(t)) return;
  const server = await startNatsServer({ jetstream: true });
  t.teardown(() => server.destroy());
  await restartBetweenAttempts(t, { kind: 'nats', nats: { servers: [server.url] } });
});

t.test('each attempt its own parts, planned for its account\'s protocol: CMPP (2 parts) fails, SMPP (1 part) delivers', async (t) => {
  const { CmppSimulator } = await import('../../src/cmpp/simulator.js');
  const { cmppSimulatorAccount, SIMULATOR_SP_ID } = await import('../../src/app/gateway.js');
  const ismg = new CmppSimulator({ version: 3, host: '127.0.0.1', port: 0, spId: SIMULATOR_SP_ID, sharedSecret: 'secret', dlrDelayMs: 5 });
  const { port: ismgPort } = await ismg.start();
  t.teardown(() => ismg.stop());
  const b = await startSimulator(t, { dlrDelayMs: 5, receiptSuffixes: false });
  const base = loadConfig({ env: {}, overrides: { log: { level: 'silent' } } });
  const cmpp = { ...cmppSimulatorAccount(base, ismgPort, 'cmpp3'), name: 'cm-cmpp', sharedSecret: 'secret', operators: ['cmcc'], reconnectInitialMs: 20, reconnectMaxMs: 200 };
  const gw = await startTestGateway(t, {
    config: {
      smpp: { accounts: [cmpp, simulatorAccountConfig(b.port, { name: 'cu-b', operators: [], carrier: 'cucc' })] },
      routing: { health: { unboundMs: 200, failingMs: 2000, retryMs: 5000 }, rules: [{ name: 'mobile', match: { operators: ['cmcc'] }, accounts: ['cm-cmpp'], policy: 'failover', reroute: true, rerouteTo: ['cu-b'] }] },
    },
  });
  await until('accounts bound', () => (gw.gateway.router?.accounts() ?? []).every((x) => x.bound > 0), 10_000);
  // 150 ASCII characters: one SMPP part (GSM 03.38, 160), two CMPP parts (ASCII, 140 octets).
  const text = 'Reroute parts check: '.padEnd(150, 'x');
  const r = await gw.send<{ id: string }>({ to: [FAILS], text });
  t.equal(r.status, 202);
  const done = await gw.waitComplete(r.json.id);
  const item = done.items[0] as Rerouted;
  t.equal(item.state, 'delivered');
  t.match(item.attempts, [{ attempt: 1, state: 'undeliverable', account: 'cm-cmpp' }, { attempt: 2, state: 'delivered', account: 'cu-b' }]);
  t.equal(item.attempts[0].segments.length, 2, 'the CMPP attempt: two parts');
  t.equal(item.attempts[1].segments.length, 1, 'the SMPP attempt: one part');
  t.equal(item.segments.length, 1);
  t.equal(b.recentSubmits()[0]?.text, text, 'the second carrier got the whole text in one part');
});

t.test('the completion callback is POSTed once, when the second attempt has ended', async (t) => {
  const { createServer } = await import('node:http');
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      bodies.push(JSON.parse(body));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/done`;
  // First carrier: receipts before the resp; second: its receipt 400 ms later, so the gap is visible.
  const { gw } = await twoCarriers(t, { a: { dlrBeforeResp: true }, b: { dlrDelayMs: 400 }, config: { callbacks: { secrets: { dev: { current: 'test-callback-secret-0123456789ab' } }, allow: ['127.0.0.1/32'] } } });
  const r = await gw.send<{ id: string }>({ to: [FAILS, numberAt(3)], text: 'reroute with callback', callbackUrl: url });
  t.equal(r.status, 202);
  await until('second attempt under way', async () => {
    const s = await gw.request<{ items?: Array<{ to: string; attempts?: unknown[] }> }>('GET', `/v1/messages/${r.json.id}`);
    return s.json.items?.find((i) => i.to === `86${FAILS}`)?.attempts?.length === 2;
  }, 10_000, 10);
  const during = await gw.request<{ status: string }>('GET', `/v1/messages/${r.json.id}`);
  if (during.json.status !== 'complete') t.equal(bodies.length, 0, 'no callback while the second attempt is open');
  await gw.waitComplete(r.json.id);
  await until('the callback', () => bodies.length >= 1, 10_000);
  await new Promise((res) => setTimeout(res, 600));
  t.equal(bodies.length, 1, 'called once');
  t.match(bodies[0], { id: r.json.id, status: 'complete', recipients: 2, summary: { delivered: 2, undeliverable: 0 } });
});
