/**
 * kill -9 of a dispatcher process in the middle of its batch: the jobs it
 * held are redelivered after queue.ackWaitMs and finished by another
 * dispatcher process sharing the data dir. The other process skips every
 * segment whose submit the dead one had recorded (receipt-store check), so
 * the only recipients sent twice are those whose submit_sm was on the wire
 * and not yet recorded: at most the dead process's maxInflightSegments.
 *
 * Both dispatchers bind to one SMSC simulator (as two processes of one
 * account would), the second only after the first is dead, so the
 * simulator's counts before and after tell who submitted what. Receipts for
 * the dead process's submits reach the live process's binds (the simulator
 * re-offers them to any bound receiver), which records them in the shared
 * receipt store.
 */
import t from 'tap';
import { requireNatsServer } from '../support/nats-server.js';
import { api, waitComplete } from '../support/gateway-process.js';
import { numberAt, resends, startKillingSimulator, startNatsDeployment, until } from '../support/nats-deployment.js';

const MESSAGES = 10;
const PER = 1_000;
const BATCH = 500;
/** The first dispatcher dies on this submit: fewer than BATCH, so none of its jobs can have been finished (and acked). */
const KILL_AT = 300;
const FIRST_INFLIGHT = 16;

if (requireNatsServer(t)) {
  t.test('kill -9 of a dispatcher mid-batch: its jobs are redelivered and finished by the other', async (t) => {
    const deployment = await startNatsDeployment(t, { overrides: { queue: { batchSize: BATCH, ackWaitMs: 2_000 }, dispatch: { fetchBatch: 4 } } });

    const killing = await startKillingSimulator(t, KILL_AT);
    const sim = killing.sim;

    const ingest = await deployment.startIngest();
    const url = ingest.url;
    const ids: string[] = [];
    for (let m = 0; m < MESSAGES; m++) {
      const to = Array.from({ length: PER }, (_, j) => numberAt(m * PER + j));
      const r = await api<{ id: string }>(url, 'POST', '/v1/messages', { to, text: `Duty roster ${m} published; check your shift.` });
      t.equal(r.status, 202, `message ${m} accepted`);
      ids.push(r.json.id);
    }

    const first = await deployment.startDispatcher(sim, {
      name: 'dispatch-1',
      account: { binds: 1, window: 10 },
      overrides: { dispatch: { maxInflightSegments: FIRST_INFLIGHT } },
    });
    killing.victim = first;
    await until('first dispatcher killed mid-batch', () => killing.killed(), 60_000);
    await first.kill('SIGKILL'); // waits for the exit
    t.equal(first.lastExit()?.signal, 'SIGKILL', 'first dispatcher died by SIGKILL');
    // Everything the dead process wrote to its socket has arrived once its binds are gone.
    await until('first dispatcher\'s sessions closed', () => sim.stats().sessions === 0, 10_000);
    const byFirst = new Map(sim.stats().submitsByDestination);
    const firstSubmits = sim.stats().submits;
    t.ok(firstSubmits >= KILL_AT && firstSubmits < BATCH, `first dispatcher submitted ${firstSubmits} (< one job of ${BATCH}: none of its jobs was acked)`);

    // ready once the simulator has counted its 2 binds on top of the dead process's
    await deployment.startDispatcher(sim, { name: 'dispatch-2' });

    for (const id of ids) {
      const s = await waitComplete(url, id, 60_000, 200);
      t.equal(s.summary.delivered, PER, `message ${id}: every recipient delivered`);
    }
    const { missing, twice, resentOfFirst } = resends(sim, MESSAGES * PER, byFirst);
    t.equal(missing, 0, 'every recipient submitted');
    t.equal(twice, resentOfFirst, 'only recipients the dead process had submitted were sent again');
    t.ok(twice <= FIRST_INFLIGHT, `sent twice: ${twice} ≤ ${FIRST_INFLIGHT} (the dead process's segments in flight, submitted but not recorded)`);
    t.ok(byFirst.size - resentOfFirst >= KILL_AT - FIRST_INFLIGHT, `${byFirst.size - resentOfFirst} of ${byFirst.size} recorded submits of the dead process were skipped on redelivery`);
    t.equal(sim.stats().submits, MESSAGES * PER + twice, 'submits = recipients + the resent ones');
  });
}
