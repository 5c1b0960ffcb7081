/**
 * SMPP faults: the SMSC drops sessions mid-window, goes silent, restarts.
 * Every submit must still resolve, duplicates must stay within the bound
 * the window implies, and dead links must be noticed by enquire_link.
 */
import t, { type Test } from 'tap';
import type { SmppAccountConfig } from '../../src/config/schema.js';
import type { SubmitOutcome, SubmitRequest } from '../../src/core/ports.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { BindPool, type BindPoolOptions } from '../../src/smpp/bind-pool.js';
import { SmscSimulator, type SmscSimulatorOptions } from '../../src/smpp/simulator.js';

const logger = createLogger({ level: 'silent' });

function account(port: number, over: Partial<SmppAccountConfig> = {}): SmppAccountConfig {
  return {
    name: 'faults', host: '127.0.0.1', port, systemId: 'smsgw', password: 'secret', systemType: '', tls: false,
    binds: 2, window: 10, tps: 0, responseTimeoutMs: 1000, enquireLinkMs: 5000,
    reconnectInitialMs: 20, reconnectMaxMs: 100, throttleBackoffMs: 10, operators: ['*'], ...over,
  };
}

/** Numbers whose last four digits (8888) have no special behaviour at the simulator. */
const plain = (i: number): string => `8613${String(i).padStart(5, '0')}8888`;
let textSeq = 0;
function request(destination: string): SubmitRequest {
  return {
    destination, source: '10690000', payload: Buffer.from(`fault test ${++textSeq}`, 'latin1'),
    dataCoding: 0, esmClass: 0, registeredDelivery: false, priority: 10, deadline: Date.now() + 20_000,
  };
}

async function setup(
  t: Test,
  simOptions: SmscSimulatorOptions,
  accountOver: Partial<SmppAccountConfig> = {},
  poolOver: Partial<BindPoolOptions> = {},
): Promise<{ sim: SmscSimulator; pool: BindPool; metrics: Metrics; port: number }> {
  const sim = new SmscSimulator({ tickMs: 10, ...simOptions }, logger);
  const { port } = await sim.start();
  const metrics = createMetrics({ defaultMetrics: false });
  const pool = new BindPool(account(port, accountOver), { metrics, logger, sweepMs: 50, bind: { sweepMs: 25 }, ...poolOver });
  t.teardown(async () => {
    await pool.close();
    await sim.stop();
  });
  return { sim, pool, metrics, port };
}

async function until(t: Test, what: string, pred: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) {
      t.fail(`timed out waiting for ${what}`);
      return false;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

async function total(m: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  return (await m.get()).values.reduce((n, v) => n + v.value, 0);
}

t.test('the SMSC drops sessions mid-window: every submit resolves, duplicates bounded', async (t) => {
  const window = 8;
  const { sim, pool, metrics } = await setup(t, { disconnectEvery: 25 }, { binds: 2, window });
  pool.start();
  await pool.waitBound(2);
  const n = 300;
  const outcomes: SubmitOutcome[] = await Promise.all(Array.from({ length: n }, (_, i) => pool.submit(request(plain(i)))));
  const kinds = outcomes.map((o) => o.kind);
  t.equal(kinds.filter((k) => k === 'accepted').length, n, 'every submit accepted (after retries)');
  const s = sim.stats();
  t.ok(s.disconnects >= 5, `the SMSC dropped sessions (${s.disconnects} times)`);
  t.equal(s.uniqueSegments, n, 'every segment reached the SMSC');
  t.ok(s.duplicates <= window * s.disconnects, `duplicates ${s.duplicates} ≤ window ${window} × disconnects ${s.disconnects}`);
  t.ok(s.duplicates >= 1, 'the mid-window drop did cause re-sends (the bound is not vacuous)');
  t.ok(pool.stats().retries >= s.duplicates, 'every duplicate came from a retry');
  t.equal(pool.pending, 0, 'nothing left behind');
  await pool.waitBound(2, 3000);
  t.ok((await total(metrics.reconnects)) >= s.disconnects, 'reconnects counted');
});

t.test('connection losses beyond the bound give the request back as unavailable', async (t) => {
  // Every session dies on its first submit: the request is lost each time.
  const { sim, pool } = await setup(t, { disconnectEvery: 1 }, { binds: 1 }, { maxConnectionLosses: 2 });
  pool.start();
  const o = await pool.submit(request(plain(1)));
  t.equal(o.kind, 'unavailable');
  t.match(o.kind === 'unavailable' ? o.reason : '', /SMPP_CONNECTION_LOST.*3 times/);
  t.equal(sim.stats().submits, 3, 'first send plus maxConnectionLosses re-sends');
});

t.test('enquire_link keeps an idle bind up', async (t) => {
  const { sim, pool, metrics } = await setup(t, {}, { binds: 1, enquireLinkMs: 150, responseTimeoutMs: 300 });
  pool.start();
  await pool.waitBound(1);
  await until(t, 'three enquire_links', () => sim.stats().enquireLinks >= 3, 3000);
  t.equal(pool.boundCount, 1, 'still bound');
  t.equal(await total(metrics.reconnects), 0, 'never reconnected');
  t.equal(sim.stats().binds, 1, 'one bind all along');
});

t.test('a silent SMSC is detected by enquire_link and the bind reconnects', async (t) => {
  const { sim, pool, metrics } = await setup(t, {}, { binds: 1, enquireLinkMs: 100, responseTimeoutMs: 200 });
  pool.start();
  await pool.waitBound(1);
  sim.setSilent(true);
  await until(t, 'the bind to notice', () => pool.boundCount === 0, 3000);
  t.match(pool.bindStates()[0]?.lastError ?? '', /enquire_link timeout|bind timeout/);
  // While silent, new binds are not answered either; then the SMSC recovers.
  await until(t, 'a reconnect attempt', () => sim.stats().sessions >= 1 && pool.bindStates()[0]?.state !== 'disconnected', 3000);
  sim.setSilent(false);
  t.equal(await pool.waitBound(1, 5000), true, 'bound again');
  t.ok((await total(metrics.reconnects)) >= 1, 'reconnect counted');
  const o = await pool.submit(request(plain(2)));
  t.equal(o.kind, 'accepted', 'traffic flows again');
});

t.test('a silent SMSC with requests in the window: timeouts, then retried elsewhere', async (t) => {
  const { sim, pool } = await setup(t, {}, { binds: 1, window: 4, enquireLinkMs: 5000, responseTimeoutMs: 200 }, { maxTimeouts: 5 });
  pool.start();
  await pool.waitBound(1);
  sim.setSilent(true);
  const ps = Array.from({ length: 4 }, (_, i) => pool.submit(request(plain(10 + i))));
  await until(t, 'the timeouts', () => pool.stats().timeouts >= 4, 3000);
  sim.setSilent(false);
  const outcomes = await Promise.all(ps);
  t.same(outcomes.map((o) => o.kind), ['accepted', 'accepted', 'accepted', 'accepted'], 'accepted once the SMSC answers again');
});

t.test('the SMSC restarts: binds come back, queued work goes out', async (t) => {
  const { sim, pool, port } = await setup(t, {}, { binds: 2 });
  pool.start();
  await pool.waitBound(2);
  await sim.stop();
  await until(t, 'both binds down', () => pool.boundCount === 0, 3000);
  const queued = Array.from({ length: 10 }, (_, i) => pool.submit(request(plain(20 + i))));
  await new Promise((r) => setTimeout(r, 100));
  t.equal(pool.stats().queued, 10, 'held in the pending queue while no bind is up');
  const again = new SmscSimulator({ port, tickMs: 10 }, logger);
  await again.start();
  t.teardown(() => again.stop());
  const outcomes = await Promise.all(queued);
  t.equal(outcomes.filter((o) => o.kind === 'accepted').length, 10, 'all accepted after the restart');
  t.equal(again.stats().uniqueSegments, 10);
});

t.test('sessions dropped by the SMSC with requests outstanding: lost, retried, accepted', async (t) => {
  const { sim, pool } = await setup(t, { responseDelayMs: 200 }, { binds: 2, window: 5 });
  pool.start();
  await pool.waitBound(2);
  const ps = Array.from({ length: 10 }, (_, i) => pool.submit(request(plain(40 + i))));
  await until(t, 'both windows full at the SMSC', () => sim.stats().submits === 10, 3000);
  sim.dropSessions();
  const outcomes = await Promise.all(ps);
  t.equal(outcomes.filter((o) => o.kind === 'accepted').length, 10);
  t.equal(sim.stats().duplicates, 10, 'each lost request re-sent once: the SMSC had taken all 10 (the documented duplicate case)');
});
