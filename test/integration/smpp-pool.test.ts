/**
 * BindPool against the SMSC simulator over loopback: round trips, receipts,
 * the simulator's per-number behaviours, the window, throttling, priorities,
 * bounds and close().
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import type { SmppAccountConfig } from '../../src/config/schema.js';
import { canonicalOperatorId } from '../../src/core/dlr.js';
import type { DeliveryReceipt, MobileOriginated, SubmitOutcome, SubmitRequest } from '../../src/core/ports.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { BindPool, LOCAL_REJECT_STATUS, relativeValidity, type BindPoolOptions } from '../../src/smpp/bind-pool.js';
import { SmscSimulator, type SmscSimulatorOptions } from '../../src/smpp/simulator.js';

const logger = createLogger({ level: 'silent' });

function account(port: number, over: Partial<SmppAccountConfig> = {}): SmppAccountConfig {
  return {
    name: 'test', host: '127.0.0.1', port, systemId: 'smsgw', password: 'secret', systemType: '', tls: false,
    binds: 2, window: 10, tps: 0, responseTimeoutMs: 2000, enquireLinkMs: 5000,
    reconnectInitialMs: 20, reconnectMaxMs: 200, throttleBackoffMs: 10, operators: ['*'], ...over,
  };
}

/** A number with no special behaviour at the simulator (its last four digits are 8888). */
function plain(i: number): string {
  return `8613${String(i).padStart(5, '0')}8888`;
}

let textSeq = 0;
function request(destination: string, over: Partial<SubmitRequest> = {}): SubmitRequest {
  return {
    destination, source: '10690000',
    // distinct text per request: the simulator counts same destination + same bytes as a duplicate
    payload: Buffer.from(`test message ${++textSeq}`, 'latin1'),
    dataCoding: 0, esmClass: 0, registeredDelivery: true, priority: 10, deadline: Date.now() + 30_000, ...over,
  };
}

async function setup(
  t: Test,
  simOptions: SmscSimulatorOptions = {},
  accountOver: Partial<SmppAccountConfig> = {},
  poolOver: Partial<BindPoolOptions> = {},
): Promise<{ sim: SmscSimulator; pool: BindPool; metrics: Metrics; receipts: DeliveryReceipt[]; mos: MobileOriginated[] }> {
  const sim = new SmscSimulator({ dlrDelayMs: 0, dlrRetryMs: 200, tickMs: 10, ...simOptions }, logger);
  const { port } = await sim.start();
  const metrics = createMetrics({ defaultMetrics: false });
  const pool = new BindPool(account(port, accountOver), { metrics, logger, sweepMs: 50, bind: { sweepMs: 25 }, ...poolOver });
  const receipts: DeliveryReceipt[] = [];
  const mos: MobileOriginated[] = [];
  pool.onReceipt(async (r) => {
    receipts.push(r);
  });
  pool.onMobileOriginated(async (m) => {
    mos.push(m);
  });
  t.teardown(async () => {
    await pool.close();
    await sim.stop();
  });
  return { sim, pool, metrics, receipts, mos };
}

/** Poll until `pred` holds; fails the test after `ms`. Every loop here is bounded in time. */
async function until(t: Test, what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) {
      t.fail(`timed out waiting for ${what}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function counter(m: { get(): Promise<{ values: { value: number; labels: Record<string, string | number> }[] }> }, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await m.get();
  let n = 0;
  for (const v of values) if (Object.entries(labels).every(([k, x]) => v.labels[k] === x)) n += v.value;
  return n;
}

function accepted(t: Test, o: SubmitOutcome): string {
  if (o.kind !== 'accepted') {
    t.fail(`expected accepted, got ${JSON.stringify(o)}`);
    return '';
  }
  return o.messageId;
}

t.test('bind, submit, receipt round trip', async (t) => {
  const { sim, pool, metrics, receipts } = await setup(t);
  pool.start();
  t.equal(await pool.waitBound(2, 5000), true, 'both binds up');
  t.equal(sim.stats().lastInterfaceVersion, 0x34, 'bound as SMPP 3.4');
  const outcome = await pool.submit(request('8613800138000'));
  const id = accepted(t, outcome);
  t.equal(outcome.kind === 'accepted' && outcome.account, 'test');
  await until(t, 'the receipt', () => receipts.length === 1);
  t.equal(receipts[0]?.messageId, id, 'receipt carries the id from submit_sm_resp');
  t.equal(receipts[0]?.state, 'delivered');
  t.equal(receipts[0]?.error, '000');
  await until(t, 'the deliver_sm_resp', () => sim.stats().dlrsAcked === 1);
  const [rec] = sim.recentSubmits();
  t.match(rec, {
    sourceAddr: '10690000', sourceTon: 0, sourceNpi: 1, destinationAddr: '8613800138000', destTon: 1, destNpi: 1,
    esmClass: 0, dataCoding: 0, registeredDelivery: 1, status: 0, messageId: id,
  });
  t.match(rec?.validityPeriod, /^0000(00|01)\d{6}000R$/, 'relative validity from the deadline');
  t.equal(rec?.text, `test message ${textSeq}`);
  await pool.close();
  t.equal(await counter(metrics.submitResponses, { status: 'ESME_ROK' }), 1, 'ESME_ROK counted (flushed on close)');
  t.ok((await metrics.submitLatencySeconds.get()).values.some((v) => v.metricName?.endsWith('_count') && v.value === 1), 'latency observed');
});

t.test('many submits over two binds, receipts by the configured mix', async (t) => {
  const { sim, pool, receipts } = await setup(t, { dlrMix: { DELIVRD: 2, UNDELIV: 1, EXPIRED: 1, REJECTD: 1 }, seed: 7 }, { window: 20 });
  pool.start();
  const n = 300;
  const outcomes = await Promise.all(Array.from({ length: n }, (_, i) => pool.submit(request(plain(i)))));
  t.equal(outcomes.filter((o) => o.kind === 'accepted').length, n, 'all accepted');
  t.equal(new Set(outcomes.map((o) => (o.kind === 'accepted' ? o.messageId : ''))).size, n, 'distinct message ids');
  // A receipt the SMSC re-sends (our deliver_sm_resp later than its dlrRetryMs on a loaded machine) comes twice: count ids.
  await until(t, 'all receipts', () => new Set(receipts.map((r) => r.messageId)).size === n);
  const states = new Set(receipts.map((r) => r.state));
  t.same([...states].sort(), ['delivered', 'expired', 'rejected', 'undeliverable'], 'every state of the mix appears');
  t.equal(sim.stats().duplicates, 0);
  t.equal(sim.stats().uniqueSegments, n);
  t.equal(pool.pending, 0);
});

t.test('a wrong password is refused and requests expire, not hang', async (t) => {
  const { sim, pool } = await setup(t, {}, { password: 'wrong', binds: 1 });
  pool.start();
  t.equal(await pool.waitBound(1, 600), false, 'never bound');
  t.ok(sim.stats().bindsRefused >= 1, 'the SMSC refused');
  t.equal(pool.bindStates()[0]?.lastError, 'ESME_RINVPASWD');
  const o = await pool.submit(request('8613800138000', { deadline: Date.now() + 300 }));
  t.equal(o.kind, 'expired');
  t.match(o.kind === 'expired' ? o.reason : '', /no bound SMPP session \(ESME_RINVPASWD\)/);
});

t.test('an unknown system_id is refused with ESME_RBINDFAIL', async (t) => {
  const { pool } = await setup(t, {}, { systemId: 'nobody', binds: 1 });
  pool.start();
  t.equal(await pool.waitBound(1, 400), false);
  t.equal(pool.bindStates()[0]?.lastError, 'ESME_RBINDFAIL');
});

t.test('the window is never exceeded', async (t) => {
  const { sim, pool } = await setup(t, { responseDelayMs: 40 }, { binds: 2, window: 4 });
  pool.start();
  await pool.waitBound(2);
  let maxInWindow = 0;
  const ps = Array.from({ length: 60 }, (_, i) => pool.submit(request(plain(i))));
  const probe = setInterval(() => {
    for (const b of pool.bindStates()) maxInWindow = Math.max(maxInWindow, b.inFlight);
  }, 5);
  const outcomes = await Promise.all(ps);
  clearInterval(probe);
  t.equal(outcomes.filter((o) => o.kind === 'accepted').length, 60);
  t.ok(sim.stats().maxOutstanding <= 4, `SMSC saw at most 4 outstanding on a session (saw ${sim.stats().maxOutstanding})`);
  t.ok(sim.stats().maxOutstanding >= 2, 'the window was actually used');
  t.ok(maxInWindow <= 4, 'the binds never held more than their window');
});

t.test('an SMSC TPS limit: throttled, backed off, all accepted', async (t) => {
  const { sim, pool, metrics } = await setup(t, { tps: 100 }, { binds: 2, window: 10 });
  pool.start();
  await pool.waitBound(2);
  const outcomes = await Promise.all(Array.from({ length: 60 }, (_, i) => pool.submit(request(plain(i)))));
  t.equal(outcomes.filter((o) => o.kind === 'accepted').length, 60, 'none failed');
  t.ok(sim.stats().throttled > 0, 'the SMSC throttled');
  t.equal(pool.stats().throttled, sim.stats().throttled, 'every throttle answer was seen and retried');
  t.equal(await counter(metrics.throttled, { status: 'ESME_RTHROTTLED' }), sim.stats().throttled, 'metric');
  t.equal(sim.stats().duplicates, 0, 'a throttled submit is not a duplicate');
});

t.test('the account TPS limit keeps the SMSC from throttling', async (t) => {
  const { sim, pool } = await setup(t, { tps: 400 }, { binds: 2, window: 10, tps: 200 });
  pool.start();
  await pool.waitBound(2);
  const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.submit(request(plain(i)))));
  t.equal(outcomes.filter((o) => o.kind === 'accepted').length, 40);
  t.equal(sim.stats().throttled, 0, 'paced below the SMSC limit');
});

t.test('ESME_RMSGQFUL and ESME_RTHROTTLED by number are retried', async (t) => {
  const { sim, pool, metrics } = await setup(t, { throttleAttempts: 3 });
  pool.start();
  const [qfull, thr] = await Promise.all([pool.submit(request('8613800000014')), pool.submit(request('8613800000058'))]);
  accepted(t, qfull);
  accepted(t, thr);
  t.equal(sim.stats().submitsByDestination.get('8613800000014'), 2, 'queue full once, then accepted');
  t.equal(sim.stats().submitsByDestination.get('8613800000058'), 4, 'throttled 3 times, then accepted');
  t.equal(await counter(metrics.throttled, { status: 'ESME_RMSGQFUL' }), 1);
  t.equal(await counter(metrics.throttled, { status: 'ESME_RTHROTTLED' }), 3);
});

t.test('a permanent error is a rejected outcome with the status name', async (t) => {
  const { sim, pool } = await setup(t);
  pool.start();
  const o = await pool.submit(request('8613800000011'));
  t.same(o, { kind: 'rejected', account: 'test', status: 0x0b, reason: 'ESME_RINVDSTADR' });
  t.equal(sim.stats().submitsByDestination.get('8613800000011'), 1, 'not retried');
});

t.test('a generic_nack in place of the submit_sm_resp is a rejection', async (t) => {
  const { sim, pool } = await setup(t);
  pool.start();
  const o = await pool.submit(request('8613800000099'));
  t.same(o, { kind: 'rejected', account: 'test', status: 0x08, reason: 'generic_nack ESME_RSYSERR' });
  t.equal(sim.stats().submitsByDestination.get('8613800000099'), 1);
  accepted(t, await pool.submit(request('8613800138000')));
  t.equal(pool.pending, 0, 'the window slot was released');
});

t.test('validity period as SMPP relative time', async (t) => {
  t.equal(relativeValidity(2 * 3600_000), '000000020000000R');
  t.equal(relativeValidity(3 * 86_400_000 + 61_000), '000003000101000R');
  t.equal(relativeValidity(30_000), '000000000100000R', 'at least a minute');
  t.equal(relativeValidity(200 * 86_400_000), '000099235959000R', 'capped at 99 days');
  // Any sequence of durations (repeats included: the last answer is kept) gives the written-out form.
  const reference = (ms: number): string => {
    let s = Math.max(60, Math.ceil(ms / 1000));
    const days = Math.min(99, Math.floor(s / 86_400));
    if (days === 99) s = 99 * 86_400 + 86_399;
    s -= days * 86_400;
    const p = (n: number): string => String(n).padStart(2, '0');
    return `0000${p(days)}${p(Math.floor(s / 3600))}${p(Math.floor((s % 3600) / 60))}${p(s % 60)}000R`;
  };
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(fc.oneof(fc.integer({ min: -5_000, max: 100 * 86_400_000 }), fc.constantFrom(59_001, 60_000, 60_001, 86_399_999, 86_400_000)), { maxLength: 20 }), (list) => {
    for (const ms of [...list, ...list.slice().reverse()]) {
      if (relativeValidity(ms) !== reference(ms)) throw new Error(`relativeValidity(${ms}) = ${relativeValidity(ms)}, not ${reference(ms)}`);
    }
  }), { numRuns: 500 }));
});

t.test('no response: timeouts, retried on another bind, bounded', async (t) => {
  const { sim, pool, metrics } = await setup(t, {}, { binds: 2, responseTimeoutMs: 200 }, { maxTimeouts: 3 });
  pool.start();
  await pool.waitBound(2);
  const o = await pool.submit(request('8613800000001'));
  t.equal(o.kind, 'expired');
  t.match(o.kind === 'expired' ? o.reason : '', /SMPP_TIMEOUT.*3 attempts/);
  t.equal(sim.stats().submitsByDestination.get('8613800000001'), 3, 'exactly maxTimeouts submits');
  const sessions = sim.recentSubmits().filter((r) => r.destinationAddr === '8613800000001').map((r) => r.session);
  t.ok(sessions[0] !== sessions[1] && sessions[1] !== sessions[2], `each retry on the other bind (sessions ${sessions.join(',')})`);
  t.equal(await counter(metrics.smppTimeouts), 3);
  t.equal(pool.stats().timeouts, 3);
  // the window slots came back: the pool still works
  accepted(t, await pool.submit(request('8613800138000')));
});

t.test('a slow response within the timeout is accepted', async (t) => {
  const { pool } = await setup(t, { slowResponseMs: 300 }, { responseTimeoutMs: 1000 });
  pool.start();
  accepted(t, await pool.submit(request('8613800000002')));
});

t.test('a receipt before its submit_sm_resp still reaches the handler', async (t) => {
  const { pool, receipts } = await setup(t);
  pool.start();
  let resolved = false;
  let receiptBeforeOutcome: boolean | undefined;
  pool.onReceipt(async (r) => {
    receiptBeforeOutcome ??= !resolved;
    receipts.push(r);
  });
  const o = await pool.submit(request('8613800000007'));
  resolved = true;
  const id = accepted(t, o);
  await until(t, 'the receipt', () => receipts.length === 1);
  t.equal(receipts[0]?.messageId, id);
  t.equal(receiptBeforeOutcome, true, 'the handler ran before the submit outcome was known');
});

t.test('receipt states by number, and no receipt for 0009', async (t) => {
  const { sim, pool, receipts } = await setup(t);
  pool.start();
  const [a, b, c] = await Promise.all(['8613800000005', '8613800000003', '8613800000009'].map((d) => pool.submit(request(d))));
  const ids = [a, b, c].map((o) => accepted(t, o as SubmitOutcome));
  await until(t, 'two receipts', () => receipts.length === 2);
  t.equal(receipts.find((r) => r.messageId === ids[0])?.state, 'undeliverable');
  t.equal(receipts.find((r) => r.messageId === ids[1])?.state, 'expired');
  t.equal(sim.stats().dlrsSent, 2, 'none for 0009');
});

t.test('hex ids in submit_sm_resp, decimal ids in text-only receipts', async (t) => {
  const { pool, receipts } = await setup(t, { idFormat: 'hex', dlrTextIdFormat: 'decimal', dlrTlvs: false, firstMessageId: 0x7b1f2c }, { idFormat: 'hex', receiptTextIdFormat: 'decimal' });
  pool.start();
  const id = accepted(t, await pool.submit(request('8613800138000')));
  t.equal(id, '7B1F2C', 'hex from the SMSC');
  await until(t, 'the receipt', () => receipts.length === 1);
  const r = receipts[0] as DeliveryReceipt;
  t.equal(r.messageId, canonicalOperatorId(id), 'the text\'s zero-padded decimal 0008068908, converted once into the account\'s hex: the submit\'s own key');
  t.equal(r.state, 'delivered', 'state from the text (no TLVs)');
});

t.test('a failing receipt handler makes the SMSC send it again', async (t) => {
  const { sim, pool } = await setup(t, { dlrRetryMs: 100 });
  let calls = 0;
  const seen: string[] = [];
  pool.onReceipt(async (r) => {
    calls++;
    seen.push(r.messageId);
    if (calls === 1) throw new Error('store not ready');
  });
  pool.start();
  const id = accepted(t, await pool.submit(request('8613800138000')));
  await until(t, 'the second delivery', () => sim.stats().dlrsAcked === 1);
  t.equal(calls, 2, 'handler called again after ESME_RX_T_APPN');
  t.same(seen, [id, id]);
  t.equal(sim.stats().deliveryRetries, 1);
});

t.test('a receipt left without deliver_sm_resp is sent again', async (t) => {
  const { sim, pool } = await setup(t, { dlrRetryMs: 100 });
  let calls = 0;
  let release: (() => void) | undefined;
  pool.onReceipt(() => {
    calls++;
    // the first delivery hangs (a stuck store): no deliver_sm_resp goes out for it
    if (calls === 1) return new Promise<void>((resolve) => (release = resolve));
    return Promise.resolve();
  });
  t.teardown(() => release?.());
  pool.start();
  accepted(t, await pool.submit(request('8613800138000')));
  await until(t, 'the re-sent receipt acknowledged', () => sim.stats().dlrsAcked === 1);
  t.equal(calls, 2);
  t.equal(sim.stats().deliveryRetries, 1);
});

t.test('the SMSC keeps at most deliverWindow receipts unanswered per session', async (t) => {
  const { sim, pool } = await setup(t, { deliverWindow: 3, dlrRetryMs: 5000 }, { binds: 1 });
  const held: (() => void)[] = [];
  let maxHeld = 0;
  const got: string[] = [];
  pool.onReceipt((r) => {
    got.push(r.messageId);
    return new Promise<void>((resolve) => {
      held.push(resolve);
      maxHeld = Math.max(maxHeld, held.length);
    });
  });
  t.teardown(() => {
    for (const r of held.splice(0)) r();
  });
  pool.start();
  const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.submit(request(plain(i)))));
  await until(t, 'three receipts held', () => held.length === 3);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(held.length, 3, 'no fourth deliver_sm while three are unanswered');
  // release them as they come until every receipt is in
  await until(t, 'all receipts', () => {
    for (const r of held.splice(0)) r();
    return got.length === 10 && sim.stats().dlrsAcked === 10;
  });
  t.equal(maxHeld, 3);
  t.same(new Set(got), new Set(outcomes.map((o) => (o.kind === 'accepted' ? o.messageId : ''))), 'one receipt per message, in order of arrival');
  t.equal(sim.stats().deliveryRetries, 0, 'waiting is not re-sending');
});

t.test('receipts wait for a handler: ESME_RX_T_APPN until one is set', async (t) => {
  const sim = new SmscSimulator({ dlrRetryMs: 100, tickMs: 10 }, logger);
  const { port } = await sim.start();
  const pool = new BindPool(account(port, { binds: 1 }), { metrics: createMetrics({ defaultMetrics: false }), logger });
  t.teardown(async () => {
    await pool.close();
    await sim.stop();
  });
  pool.start();
  accepted(t, await pool.submit(request('8613800138000')));
  await until(t, 'a refused delivery', () => sim.stats().deliveryRetries >= 1);
  const got: DeliveryReceipt[] = [];
  pool.onReceipt(async (r) => {
    got.push(r);
  });
  await until(t, 'delivery once a handler exists', () => got.length === 1 && sim.stats().dlrsAcked === 1);
});

t.test('mobile-originated messages, GSM and UCS-2', async (t) => {
  const { sim, pool, mos } = await setup(t);
  pool.start();
  await pool.waitBound(2);
  t.equal(await sim.injectMo({ source: '8613800138000', destination: '106900001', text: 'YES @home_1' }), true);
  t.equal(await sim.injectMo({ source: '8613900139000', destination: '106900002', text: '收到，准时参加' }), true);
  t.equal(mos.length, 2);
  t.match(mos[0], { account: 'test', source: '8613800138000', destination: '106900001', text: 'YES @home_1' });
  t.match(mos[1], { source: '8613900139000', destination: '106900002', text: '收到，准时参加' });
  t.equal(sim.stats().moAcked, 2);
});

t.test('urgent traffic first: priority lanes', async (t) => {
  const { sim, pool } = await setup(t, { responseDelayMs: 30 }, { binds: 1, window: 1 });
  pool.start();
  await pool.waitBound(1);
  const all: Promise<SubmitOutcome>[] = [pool.submit(request(plain(0), { priority: 10 }))]; // takes the only slot
  for (let i = 1; i <= 3; i++) all.push(pool.submit(request(plain(i), { priority: 10 })));
  for (let i = 4; i <= 6; i++) all.push(pool.submit(request(plain(i), { priority: 90 })));
  all.push(pool.submit(request(plain(7), { priority: 50 })));
  await Promise.all(all);
  const order = sim.recentSubmits().map((r) => r.destinationAddr.slice(-5, -4));
  t.same(order, ['0', '4', '5', '6', '7', '1', '2', '3'], 'highest priority first, FIFO within a priority');
});

t.test('bounds: a full pending queue, a passed deadline, a body too long', async (t) => {
  const { pool } = await setup(t, { responseDelayMs: 50 }, { binds: 1, window: 1 }, { maxPending: 2 });
  // not started: nothing leaves the queue
  const a = pool.submit(request('8613800000100'));
  const b = pool.submit(request('8613800000101'));
  t.equal(pool.capacity, 0);
  const c = await pool.submit(request('8613800000102'));
  t.equal(c.kind, 'unavailable');
  t.match(c.kind === 'unavailable' ? c.reason : '', /OVERLOADED/);
  const d = await pool.submit(request('8613800000103', { deadline: Date.now() - 1 }));
  t.equal(d.kind, 'expired');
  let waited = false;
  const room = pool.waitForCapacity().then(() => (waited = true));
  pool.start();
  await room;
  t.equal(waited, true, 'waitForCapacity resolves once the queue drains');
  accepted(t, await a);
  accepted(t, await b);
  const e = await pool.submit(request('8613800000104', { payload: new Uint8Array(255) }));
  t.equal(e.kind, 'rejected');
  if (e.kind === 'rejected') {
    t.equal(e.status, LOCAL_REJECT_STATUS);
    t.match(e.reason, /^SMPP_PDU_INVALID/);
  }
});

t.test('a request queued past its deadline expires while waiting', async (t) => {
  const { pool } = await setup(t, { slowResponseMs: 600 }, { binds: 1, window: 1, responseTimeoutMs: 2000 });
  pool.start();
  await pool.waitBound(1);
  const slow = pool.submit(request('8613800000002')); // holds the only slot ~600 ms
  const o = await pool.submit(request('8613800000200', { deadline: Date.now() + 150 }));
  t.equal(o.kind, 'expired');
  t.match(o.kind === 'expired' ? o.reason : '', /waiting for a window slot/);
  accepted(t, await slow);
});

t.test('close(): queued requests unavailable, in-window ones get their answer', async (t) => {
  const { sim, pool } = await setup(t, { responseDelayMs: 150 }, { binds: 1, window: 2 });
  pool.start();
  await pool.waitBound(1);
  const ps = Array.from({ length: 6 }, (_, i) => pool.submit(request(`861380000030${i}`)));
  await until(t, 'two in the window', () => pool.bindStates()[0]?.inFlight === 2);
  await pool.close();
  const outcomes = await Promise.all(ps);
  t.same(outcomes.map((o) => o.kind), ['accepted', 'accepted', 'unavailable', 'unavailable', 'unavailable', 'unavailable']);
  t.equal(pool.pending, 0);
  const after = await pool.submit(request('8613800000310'));
  t.equal(after.kind, 'unavailable', 'submit after close');
  t.equal(sim.stats().submits, 2, 'nothing sent after close');
  await until(t, 'the session to close', () => sim.stats().sessions === 0);
});
