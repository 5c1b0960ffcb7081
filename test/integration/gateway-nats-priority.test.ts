/**
 * Tier priority across processes: an emergency message accepted while
 * 200,000 routine recipients are queued on NATS is submitted before the
 * routine backlog finishes — asserted on the order in which the SMSC
 * simulator receives submit_sm, not on time.
 *
 * How far ahead it must come is bounded by what the dispatcher already
 * holds: the routine consumer's max_ack_pending (queue.maxAckPending jobs of
 * queue.batchSize recipients) caps the routine work a dispatcher can have in
 * hand when the emergency job is published, and the dispatcher fetches from
 * the highest tier first on every pull. One pull of routine jobs may already
 * be on its way when the emergency job lands, hence twice the cap.
 */
import t from 'tap';
import { requireNatsServer } from '../support/nats-server.js';
import { api } from '../support/gateway-process.js';
import { numberAt, startNatsDeployment, startSimulator, until } from '../support/nats-deployment.js';

const ROUTINE = 200_000;
const PER_REQUEST = 50_000;
const BATCH = 500;
const MAX_ACK_PENDING = 8;
const EMERGENCY_TO = '13912345676';
const EMERGENCY_DEST = `86${EMERGENCY_TO}`;

if (requireNatsServer(t)) {
  t.test('an emergency message overtakes a 200,000-recipient routine backlog', async (t) => {
    const deployment = await startNatsDeployment(t, {
      overrides: { queue: { batchSize: BATCH, maxAckPending: MAX_ACK_PENDING }, dispatch: { fetchBatch: 4, maxInflightSegments: 256 } },
    });

    let routineSubmits = 0;
    let routineBeforeEmergency: number | undefined;
    const sim = await startSimulator(t, {
      maxTracked: 2 * ROUTINE,
      observeSubmit: (destination) => {
        if (destination === EMERGENCY_DEST) routineBeforeEmergency ??= routineSubmits;
        else routineSubmits++;
      },
    });

    const ingest = await deployment.startIngest();
    const url = ingest.url;

    for (let r = 0; r < ROUTINE / PER_REQUEST; r++) {
      const to = Array.from({ length: PER_REQUEST }, (_, i) => numberAt(r * PER_REQUEST + i));
      const res = await api(url, 'POST', '/v1/messages', { to, text: `Routine notice ${r}: quarterly archive review.`, tier: 'routine' });
      t.equal(res.status, 202, `routine request ${r} accepted (${PER_REQUEST} recipients)`);
    }

    const dispatcher = await deployment.startDispatcher(sim);
    t.ok(dispatcher.alive(), 'dispatcher running and bound');

    // The routine drain is under way...
    await until('routine submits under way', () => routineSubmits >= 2_000, 60_000, 20);
    // ...when the emergency message arrives.
    const res = await api(url, 'POST', '/v1/messages', { to: [EMERGENCY_TO], text: 'Typhoon warning: stay indoors from 18:00.', tier: 'emergency' });
    t.equal(res.status, 202, 'emergency message accepted');
    const routineAtAccept = routineSubmits;

    await until('emergency message submitted', () => routineBeforeEmergency !== undefined, 60_000, 20);
    const before = routineBeforeEmergency as number;
    const overtaken = before - routineAtAccept;
    t.ok(before < ROUTINE, `submitted before the routine backlog finished (${before} of ${ROUTINE} routine submits before it)`);
    const bound = 2 * MAX_ACK_PENDING * BATCH;
    t.ok(overtaken <= bound, `routine submits between its 202 and its submit: ${overtaken} ≤ ${bound} (routine work already in hand)`);
    t.ok(ROUTINE - before >= ROUTINE / 2, `most of the backlog was still queued (${ROUTINE - before} routine recipients after it)`);
    t.equal(sim.stats().submitsByDestination.get(EMERGENCY_DEST), 1, 'the emergency message was submitted once');
  });
}
