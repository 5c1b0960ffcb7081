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
import { requireNatsServer } from '../support/nats-server.js';
import { api, waitComplete } from '../support/gateway-process.js';
import { burstWithFault, coverage, numberAt, startNatsDeployment, startSimulator, until } from '../support/nats-deployment.js';

const STREAM = 'SMSGW_WORK';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

if (requireNatsServer(t)) {
  t.test('kill -9 of nats-server mid-burst and restart: every accepted message is delivered', async (t) => {
    const deployment = await startNatsDeployment(t, { overrides: { queue: { batchSize: 50 } } });
    const nats = deployment.server;
    const sim = await startSimulator(t);
    const ingest = await deployment.startIngest();
    await deployment.startDispatcher(sim);
    const url = ingest.url;

    const REQUESTS = 300;
    const PER = 20;
    const CONCURRENCY = 16;
    const burst = await burstWithFault(url, {
      requests: REQUESTS,
      perRequest: PER,
      concurrency: CONCURRENCY,
      text: (k) => `Burst ${k}: road closure on route 9.`,
      // a third of the way in: the server dies with publishes on the wire, and comes back 1.5 s later
      faultAfter: 100,
      fault: () => nats.kill('SIGKILL').then(() => sleep(1_500)).then(() => nats.restart()),
    });
    const { accepted } = burst;
    t.ok(burst.faulted && burst.inFlightAtFault > 0, `nats-server was killed mid-burst (${burst.inFlightAtFault} requests in flight)`);
    t.ok(accepted.size > 0, `${accepted.size} of ${REQUESTS} requests accepted (202)`);
    t.comment(`refused: ${JSON.stringify(Object.fromEntries(burst.refused))}`);

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
    const deployment = await startNatsDeployment(t, { overrides: { queue: { batchSize: 50 } } });
    const nats = deployment.server;
    const sim = await startSimulator(t);
    const ingest = await deployment.startIngest();
    const url = ingest.url;

    const MESSAGES = 40;
    const PER = 50;
    const all: string[] = [];
    const ids: string[] = [];
    for (let m = 0; m < MESSAGES; m++) {
      const to = Array.from({ length: PER }, (_, j) => numberAt(m * PER + j));
      const r = await api<{ id: string }>(url, 'POST', '/v1/messages', { to, text: `Shift notice ${m}: briefing at 07:30.` });
      t.equal(r.status, 202, `message ${m} accepted`);
      ids.push(r.json.id);
      all.push(...to);
    }
    // The dispatcher starts on the queued backlog, so its acks come in one short burst...
    const first = await deployment.startDispatcher(sim, { name: 'dispatch-1' });
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

    // ready once it has bound too: the simulator counts 2 binds more than the dead one's
    await deployment.startDispatcher(sim, { name: 'dispatch-2' });
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
