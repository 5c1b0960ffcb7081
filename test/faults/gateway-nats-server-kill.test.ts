/**
 * kill -9 of nats-server under a running deployment (one ingest process, one
 * dispatcher process, shared data dir, SMSC simulator in this process):
 *
 * 1. Mid-burst, then a restart on the same store: every message that got a
 *    202 is delivered to every recipient (the publish that the 202 waited
 *    for was acknowledged by JetStream, so the job survives), and nothing is
 *    submitted twice.
 * 2. Within a second of the acks, then a fresh dispatcher process (a new
 *    consumer connection): nats-server 2.9.10 may hand acked jobs out again
 *    (lost deletions); the dispatcher's receipt-store check (a segment with
 *    an operator message id is never submitted again) makes that harmless —
 *    the simulator sees every recipient exactly once.
 */
import t from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { requireNatsServer, startNatsServer } from '../support/nats-server.js';
import {
  api,
  deploymentConfig,
  sharedDataDir,
  simulatorAccountConfig,
  startGatewayProcess,
  waitComplete,
} from '../support/gateway-process.js';
import { SmscSimulator } from '../../src/smpp/simulator.js';

const STREAM = 'SMSGW_WORK';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function numberAt(n: number): string {
  return `138${String(10_000_000 + n * 10 + 6).slice(-8)}`;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** Jobs of one tier not yet acked (pending + in flight), asked of the server directly. */
async function tierBacklog(url: string, tier: string): Promise<{ pending: number; ackPending: number }> {
  const watch = await ConsumerWatch.open(url);
  try {
    return await watch.backlog(tier);
  } finally {
    await watch.close();
  }
}

/** One connection kept open, so a poll costs a request and not a connect. */
class ConsumerWatch {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
  ) {}

  static async open(url: string): Promise<ConsumerWatch> {
    const nc = await connect({ servers: [url], reconnect: false, timeout: 2_000 });
    return new ConsumerWatch(nc, await jetstreamManager(nc, { timeout: 2_000 }));
  }

  async backlog(tier: string): Promise<{ pending: number; ackPending: number }> {
    const info = await this.jsm.consumers.info(STREAM, `work-${tier}`);
    return { pending: info.num_pending, ackPending: info.num_ack_pending };
  }

  close(): Promise<void> {
    return this.nc.close().catch(() => undefined);
  }
}

/** Counts over a set of destinations: how many were never submitted, how many more than once. */
function coverage(sim: SmscSimulator, numbers: Iterable<string>): { missing: number; twice: number; total: number } {
  const by = sim.stats().submitsByDestination;
  let missing = 0;
  let twice = 0;
  let total = 0;
  for (const n of numbers) {
    total++;
    const c = by.get(`86${n}`) ?? 0;
    if (c === 0) missing++;
    else if (c > 1) twice++;
  }
  return { missing, twice, total };
}

if (requireNatsServer(t)) {
  t.test('kill -9 of nats-server mid-burst and restart: every accepted message is delivered', async (t) => {
    const nats = await startNatsServer({ jetstream: true });
    t.teardown(() => nats.destroy());
    const sim = new SmscSimulator({ port: 0, host: '127.0.0.1', dlrDelayMs: 5 });
    await sim.start();
    t.teardown(() => sim.stop());
    const dataDir = sharedDataDir(t);
    const config = (account?: Record<string, unknown>): Record<string, unknown> =>
      deploymentConfig({ dataDir, natsUrls: [nats.url], ...(account ? { account } : {}), overrides: { queue: { batchSize: 50 } } });
    const ingest = await startGatewayProcess(t, { role: 'ingest', config: config() });
    await startGatewayProcess(t, { role: 'dispatch', config: config(simulatorAccountConfig(sim.port)), ready: () => sim.stats().binds >= 2 });
    const url = ingest.url as string;

    const REQUESTS = 300;
    const PER = 20;
    const CONCURRENCY = 16;
    const accepted = new Map<string, string[]>();
    const refused = new Map<string, number>();
    let started = 0;
    let done = 0;
    let inFlightAtKill = 0;
    let outage: Promise<void> | undefined;
    const sendOne = async (k: number): Promise<void> => {
      started++;
      const to = Array.from({ length: PER }, (_, j) => numberAt(k * PER + j));
      try {
        const r = await api(url, 'POST', '/v1/messages', { to, text: `Burst ${k}: road closure on route 9.` });
        if (r.status === 202) accepted.set(r.json.id as string, to);
        else refused.set(String(r.json?.code ?? r.status), (refused.get(String(r.json?.code ?? r.status)) ?? 0) + 1);
      } catch (e) {
        refused.set(`transport: ${String(e)}`, (refused.get(`transport: ${String(e)}`) ?? 0) + 1);
      }
      done++;
      if (done === 100 && !outage) {
        // a third of the way in: the server dies with publishes on the wire, and comes back 1.5 s later
        inFlightAtKill = started - done;
        outage = nats.kill('SIGKILL').then(() => sleep(1_500)).then(() => nats.restart());
      }
    };
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let k = next++; k < REQUESTS; k = next++) await sendOne(k);
      }),
    );
    await outage;
    t.ok(outage !== undefined && inFlightAtKill > 0, `nats-server was killed mid-burst (${inFlightAtKill} requests in flight)`);
    t.ok(accepted.size > 0, `${accepted.size} of ${REQUESTS} requests accepted (202)`);
    t.comment(`refused: ${JSON.stringify(Object.fromEntries(refused))}`);

    const expected = accepted.size * PER;
    await until('every accepted recipient submitted', () => coverage(sim, [...accepted.values()].flat()).missing === 0, 90_000, 200);
    for (const [id, to] of accepted) {
      const s = await waitComplete(url, id, 30_000);
      if (s.summary.delivered !== to.length) t.fail(`message ${id}: ${JSON.stringify(s.summary)}`);
    }
    const c = coverage(sim, [...accepted.values()].flat());
    t.equal(c.total, expected, `${expected} recipients accepted`);
    t.equal(c.missing, 0, 'no accepted recipient lost');
    t.equal(c.twice, 0, 'no accepted recipient submitted twice');
    t.equal(sim.stats().duplicates, 0, 'the simulator saw no duplicate segment');
  });

  t.test('kill -9 of nats-server within a second of the acks, then a fresh dispatcher: nothing is sent twice', async (t) => {
    const nats = await startNatsServer({ jetstream: true });
    t.teardown(() => nats.destroy());
    const sim = new SmscSimulator({ port: 0, host: '127.0.0.1', dlrDelayMs: 5 });
    await sim.start();
    t.teardown(() => sim.stop());
    const dataDir = sharedDataDir(t);
    const config = (account?: Record<string, unknown>): Record<string, unknown> =>
      deploymentConfig({ dataDir, natsUrls: [nats.url], ...(account ? { account } : {}), overrides: { queue: { batchSize: 50 } } });
    const ingest = await startGatewayProcess(t, { role: 'ingest', config: config() });
    const url = ingest.url as string;

    const MESSAGES = 40;
    const PER = 50;
    const all: string[] = [];
    const ids: string[] = [];
    for (let m = 0; m < MESSAGES; m++) {
      const to = Array.from({ length: PER }, (_, j) => numberAt(m * PER + j));
      const r = await api(url, 'POST', '/v1/messages', { to, text: `Shift notice ${m}: briefing at 07:30.` });
      t.equal(r.status, 202, `message ${m} accepted`);
      ids.push(r.json.id as string);
      all.push(...to);
    }
    // The dispatcher starts on the queued backlog, so its acks come in one short burst...
    const ready = (n: number) => () => sim.stats().binds >= n;
    const first = await startGatewayProcess(t, { role: 'dispatch', name: 'dispatch-1', config: config(simulatorAccountConfig(sim.port)), ready: ready(2) });
    await until('every recipient submitted', () => coverage(sim, all).missing === 0, 60_000, 5);
    const watch = await ConsumerWatch.open(nats.url);
    try {
      await until('every job acked', async () => {
        const b = await watch.backlog('routine');
        return b.pending === 0 && b.ackPending === 0;
      }, 30_000, 2);
    } finally {
      await watch.close();
    }
    // ...and right after the last of them the server and the dispatcher die.
    await Promise.all([nats.kill('SIGKILL'), first.kill('SIGKILL')]);
    await nats.restart();
    const back = await tierBacklog(nats.url, 'routine');
    t.comment(`after the restart the server offers ${back.pending + back.ackPending} of ${all.length / PER} acked jobs again (lost acked deletions)`);
    const submitsBefore = sim.stats().submits;

    await startGatewayProcess(t, { role: 'dispatch', name: 'dispatch-2', config: config(simulatorAccountConfig(sim.port)), ready: ready(4) });
    await until('whatever came back is acked again', async () => {
      const b = await tierBacklog(nats.url, 'routine');
      return b.pending === 0 && b.ackPending === 0;
    }, 60_000, 100);
    const c = coverage(sim, all);
    t.equal(c.missing, 0, 'every recipient submitted');
    t.equal(c.twice, 0, 'no recipient submitted twice');
    t.equal(sim.stats().duplicates, 0, 'the simulator saw no duplicate segment');
    t.equal(sim.stats().submits, submitsBefore, 'the fresh dispatcher submitted nothing: redelivered jobs were skipped');
    for (const id of ids) {
      const s = await waitComplete(url, id, 30_000);
      t.equal(s.summary.delivered, PER, `message ${id} still delivered`);
    }
  });
}
