/**
 * Failover under a burst: two accounts, each its own SMSC simulator on
 * loopback; the routing rule prefers cm-a. cm-a's SMSC is killed mid-burst:
 * its recipients must go through cm-b, none lost, none sent twice beyond
 * cm-a's in-flight window. cm-a's SMSC comes back on the same port: new
 * traffic returns to it (failover policy: the first account that is up).
 */
import t from 'tap';
import { startTestGateway, numberAt } from '../support/gateway.js';
import { simulatorAccountConfig } from '../support/gateway-process.js';
import { until } from '../support/wait.js';
import { SmscSimulator } from '../../src/smpp/simulator.js';
import { createLogger } from '../../src/telemetry/logger.js';
import type { MessageStatus } from '../support/api-types.js';

interface Readyz {
  accounts: { account: string; up: boolean; reason?: string }[];
}

const logger = createLogger({ level: 'silent' });
const BURST = 4000;
const A_BINDS = 2;
const A_WINDOW = 32;

async function sim(port = 0, firstMessageId = 1_000_000): Promise<SmscSimulator> {
  // A restarted SMSC must not hand out the ids of its earlier life (a real one does not).
  const s = new SmscSimulator({ port, host: '127.0.0.1', dlrDelayMs: 5, tickMs: 10, firstMessageId }, logger);
  await s.start();
  return s;
}

t.test('kill the preferred account\'s SMSC mid-burst: its recipients fail over, none lost, duplicates within the window; it comes back and gets the traffic again', async (t) => {
  const a = await sim();
  const b = await sim();
  const aPort = a.port;
  let a2: SmscSimulator | undefined;
  t.teardown(async () => {
    await a.stop();
    await b.stop();
    await a2?.stop();
  });
  const gw = await startTestGateway(t, {
    config: {
      smpp: {
        accounts: [
          // cm-a is paced (tps) so the burst is still going out when its SMSC dies.
          simulatorAccountConfig(aPort, { name: 'cm-a', operators: ['cmcc'], binds: A_BINDS, window: A_WINDOW, tps: 1000, responseTimeoutMs: 1000 }),
          simulatorAccountConfig(b.port, { name: 'cm-b', operators: [] }),
        ],
      },
      routing: {
        rules: [{ name: 'prefer-a', match: { operators: ['cmcc'] }, accounts: ['cm-a', 'cm-b'], policy: 'failover' }],
        health: { unboundMs: 200, failingMs: 2000, retryMs: 5000 },
      },
    },
  });
  const router = gw.gateway.router!;
  await until('both accounts bound', () => router.accounts().every((x) => x.bound > 0), 10_000);

  const downCount = async (): Promise<number> => {
    router.tick();
    const text = await fetch(`${gw.url}/metrics`).then((x) => x.text());
    return Number(/smsgw_route_account_down_total\{account="cm-a",reason="unbound"\} (\d+)/.exec(text)?.[1] ?? 0);
  };
  const downBefore = await downCount();
  const to = Array.from({ length: BURST }, (_, i) => numberAt(i));
  const r = await gw.send<{ id: string }>({ to, text: 'failover burst' });
  t.equal(r.status, 202);
  await until('cm-a mid-burst', () => a.stats().submits >= 800, 30_000, 5);
  const aSeenAtKill = a.stats().submits;
  await a.stop();
  t.ok(aSeenAtKill < BURST, `killed mid-burst (cm-a had ${aSeenAtKill} of ${BURST})`);
  await until('cm-a down for routing', () => !router.isAccountUp('cm-a'), 10_000, 10);

  // Every recipient ends up either delivered, or accepted by cm-a before it died (its receipt died with it).
  const store = gw.gateway.store;
  const id = r.json.id;
  const settled = (): { delivered: number; acceptedByDeadA: number; other: number } => {
    let delivered = 0;
    let acceptedByDeadA = 0;
    let other = 0;
    for (let i = 0; i < BURST; i++) {
      const s = store.getSegment(id, i, 1);
      if (s?.state === 'delivered') delivered++;
      else if (s?.opId !== undefined && s.account === 'cm-a') acceptedByDeadA++;
      else other++;
    }
    return { delivered, acceptedByDeadA, other };
  };
  await until('every recipient delivered or accepted by cm-a', () => settled().other === 0, 60_000, 100);
  const end = settled();
  t.equal(end.delivered + end.acceptedByDeadA, BURST, `none lost (${end.delivered} delivered, ${end.acceptedByDeadA} accepted by cm-a without a receipt)`);
  // Those are recorded `submitted` with cm-a's id: they expire after validity + receiptGraceMs unless cm-a sends the receipt later.
  t.ok(end.acceptedByDeadA < aSeenAtKill, 'only recipients cm-a accepted before it died wait for its receipt');
  const summary = (await gw.request<MessageStatus>('GET', `/v1/messages/${id}?limit=1`)).json.summary;
  t.equal(summary.failed + summary.expired + summary.rejected, 0, 'nothing failed, expired or rejected');

  // Duplicates: a number sent through both accounts is one the SMSC may have accepted just before it died.
  const onA = a.stats().submitsByDestination;
  const onB = b.stats().submitsByDestination;
  let both = 0;
  for (const d of onB.keys()) if (onA.has(d)) both++;
  t.ok(both <= A_BINDS * A_WINDOW, `sent through both accounts: ${both} ≤ cm-a's in-flight window ${A_BINDS * A_WINDOW}`);
  t.equal(b.stats().duplicates, 0, 'cm-b got each recipient once');
  t.ok(b.stats().uniqueSegments >= BURST - aSeenAtKill - A_BINDS * A_WINDOW, `cm-b carried the rest (${b.stats().uniqueSegments})`);
  const ready = await gw.request<Readyz>('GET', '/readyz');
  t.match(ready.json.accounts.find((x) => x.account === 'cm-a'), { up: false, reason: 'unbound' });
  t.equal(await downCount(), downBefore + 1, 'counted down once');
  const metrics = await fetch(`${gw.url}/metrics`).then((x) => x.text());
  t.match(metrics, /smsgw_route_failovers_total\{rule="prefer-a",account="cm-b"\} [1-9]/);

  // cm-a's SMSC returns on the same port: the pool rebinds, the router takes it back.
  a2 = await sim(aPort, 50_000_000);
  await until('cm-a up again', () => router.isAccountUp('cm-a'), 15_000, 20);
  const bBefore = b.stats().submits;
  const again = await gw.send<{ id: string }>({ to: Array.from({ length: 200 }, (_, i) => numberAt(BURST + i)), text: 'after the return' });
  const done = await gw.waitComplete(again.json.id, 60_000);
  t.equal(done.summary.delivered, 200);
  t.equal(a2.stats().uniqueSegments, 200, 'traffic is back on cm-a');
  t.equal(b.stats().submits, bBefore, 'and no longer on cm-b');
});
