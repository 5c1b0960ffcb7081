/**
 * Scale-out on NATS JetStream: one ingest process and two dispatcher
 * processes, all real `smsgw start --role …` processes sharing one data dir
 * (one LMDB environment, so one receipt store) and one nats-server.
 *
 * Each dispatcher binds to its own SMSC simulator (both run in this test
 * process), so the simulators tell who sent what: together they must have
 * received every recipient exactly once, and each must have received some.
 * The two simulators play one operator account (same account name), so their
 * message ids are kept apart, as one SMSC's would be.
 */
import t from 'tap';
import { requireNatsServer } from '../support/nats-server.js';
import { api, waitComplete } from '../support/gateway-process.js';
import { numberAt, startNatsDeployment, startSimulator, until } from '../support/nats-deployment.js';

const MESSAGES = 5;
const PER_MESSAGE = 10_000;
const TOTAL = MESSAGES * PER_MESSAGE;

if (requireNatsServer(t)) {
  t.test('two dispatcher processes share a 50,000-recipient backlog: every recipient delivered, none submitted twice', async (t) => {
    // Small fetches and jobs, so a dispatcher holds little at a time and both get a share.
    const deployment = await startNatsDeployment(t, { overrides: { queue: { batchSize: 250 }, dispatch: { fetchBatch: 4, maxInflightSegments: 512 } } });
    // Both stand for the same operator account: their message ids must not overlap, as one SMSC's would not.
    const sims = await Promise.all([0, 1].map((i) => startSimulator(t, { maxTracked: 4 * TOTAL, firstMessageId: 1_000_000 + i * 100_000_000 })));
    const ingest = await deployment.startIngest();
    const url = ingest.url;

    // The backlog is queued before any dispatcher runs.
    const ids: string[] = [];
    for (let m = 0; m < MESSAGES; m++) {
      const to = Array.from({ length: PER_MESSAGE }, (_, i) => numberAt(m * PER_MESSAGE + i));
      const r = await api<{ id: string }>(url, 'POST', '/v1/messages', { to, text: `Backlog notice ${m}: the office closes at 17:00 today.` });
      t.equal(r.status, 202, `message ${m} accepted`);
      ids.push(r.json.id);
    }

    const dispatchers = await Promise.all(sims.map((sim, i) => deployment.startDispatcher(sim, { name: `dispatch-${i}` })));
    t.equal(dispatchers.length, 2);

    const acked = (): number => sims.reduce((n, s) => n + s.stats().dlrsAcked, 0);
    await until('every receipt acknowledged', () => acked() >= TOTAL, 100_000);
    for (const id of ids) {
      const done = await waitComplete(url, id, 30_000, 250);
      t.equal(done.summary.delivered, PER_MESSAGE, `message ${id}: every recipient delivered`);
    }

    const [a, b] = sims.map((s) => s.stats());
    t.ok(a && a.submits > 0, `dispatcher 0 submitted ${a?.submits}`);
    t.ok(b && b.submits > 0, `dispatcher 1 submitted ${b?.submits}`);
    t.equal((a?.duplicates ?? 0) + (b?.duplicates ?? 0), 0, 'no duplicate within one simulator');
    // Across both: each destination exactly once.
    const counts = new Map<string, number>();
    for (const s of sims) for (const [dest, n] of s.stats().submitsByDestination) counts.set(dest, (counts.get(dest) ?? 0) + n);
    let twice = 0;
    let missing = 0;
    for (let i = 0; i < TOTAL; i++) {
      const n = counts.get(`86${numberAt(i)}`) ?? 0;
      if (n === 0) missing++;
      else if (n > 1) twice++;
    }
    t.equal(missing, 0, 'every recipient was submitted');
    t.equal(twice, 0, 'no recipient was submitted twice across the two dispatchers');
    t.equal(counts.size, TOTAL, 'nothing else was submitted');
    t.comment(`split: dispatcher 0 ${a?.submits}, dispatcher 1 ${b?.submits}`);
  });
}
