/**
 * Reroute of failed recipients (docs/ARCHITECTURE.md "Reroute", routing
 * rules' `reroute`) across hosts: each host its own data dir (its own
 * receipt store), receipts and the rest replicated through one nats-server.
 *
 *   host A   ingest only: accepts the message, so it owns it — it alone may
 *            publish the second attempts, call back and send status events
 *   host B   dispatcher: makes the first attempts through cm-a (carrier
 *            cmcc), then is killed before any receipt comes back
 *   host C   dispatcher started after B's death, while A is down too: the
 *            SMSC gives it B's receipts (UNDELIV and REJECTD among them),
 *            maybe before C has applied B's submits (early receipts)
 *
 * The decision is taken where each receipt is applied (C, and A when the
 * receipt is replicated to it); only A publishes the second attempt, which a
 * dispatcher (C) sends through cu-b (carrier cucc): while A is down the
 * failed recipients wait (queued, first attempt kept), and when A is back it
 * catches up and publishes them. Checked: every failed
 * recipient tried exactly once more, through the other carrier, never a
 * third time; the final state the second attempt's on every host (B too,
 * once restarted); one completion callback, from A, when the second
 * attempts have ended; one status event per recipient.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireNatsServer } from '../support/nats-server.js';
import { api, simulatorAccountConfig, startGatewayProcess, waitComplete, type GatewayProcess } from '../support/gateway-process.js';
import { numberAt, startNatsDeployment, startSimulator, until, type NatsDeployment } from '../support/nats-deployment.js';
import { startCallbackSink, type SinkRequest } from '../support/callback-sink.js';
import type { AttemptView, MessageStatus } from '../support/api-types.js';
import type { SmscSimulator } from '../../src/smpp/simulator.js';

const SECRET = 'test-callback-secret-0123456789ab';
type Stat = 'DELIVRD' | 'UNDELIV' | 'EXPIRED' | 'REJECTD';

/** A dispatcher host with both carriers' accounts and the reroute rule, ready when both simulators count its binds. */
async function dispatcherHost(t: Parameters<typeof startGatewayProcess>[0], deployment: NatsDeployment, host: string, cm: SmscSimulator, cu: SmscSimulator): Promise<GatewayProcess> {
  const want = [cm.stats().binds + 2, cu.stats().binds + 2];
  return startGatewayProcess(t, {
    role: 'dispatch',
    name: `dispatch-${host}`,
    config: {
      ...deployment.config({ host }),
      smpp: {
        accounts: [
          simulatorAccountConfig(cm.port, { name: 'cm-a', operators: ['cmcc'], carrier: 'cmcc' }),
          simulatorAccountConfig(cu.port, { name: 'cu-b', operators: [], carrier: 'cucc' }),
        ],
      },
      routing: {
        health: { unboundMs: 200, failingMs: 2000, retryMs: 5000 },
        rules: [{ name: 'mobile', match: { operators: ['cmcc'] }, accounts: ['cm-a'], policy: 'failover', reroute: true, rerouteTo: ['cu-b'] }],
      },
    },
    ready: () => cm.stats().binds >= want[0]! && cu.stats().binds >= want[1]!,
  });
}

if (requireNatsServer(t)) {
  t.test('accepted on host A, first attempts by host B (then killed), their receipts at host C: one second attempt each, through the other carrier, seen alike on every host', async (t) => {
    const deployment = await startNatsDeployment(t, {
      overrides: { callbacks: { secrets: { dev: { current: SECRET } }, allow: ['127.0.0.1/32'] }, queue: { ackWaitMs: 5_000 } },
    });
    // cm-a: receipts 5 s after the submit (host B is dead by then), a mix of DELIVRD, UNDELIV and REJECTD,
    // and UNDELIV for numbers ending 0005. cu-b: delivers everything, 5 ms after.
    const stats = new Map<string, Stat>();
    const cm = await startSimulator(t, { dlrDelayMs: 5_000, dlrMix: { DELIVRD: 2, UNDELIV: 1, EXPIRED: 0, REJECTD: 1 }, observeReceipt: (r) => void stats.set(r.destination, r.stat) });
    const cu = await startSimulator(t, { dlrDelayMs: 5, receiptSuffixes: false });
    const done = await startCallbackSink(t, SECRET, () => 204);
    const events = await startCallbackSink(t, SECRET, () => 204);

    const a = await deployment.startIngest({ name: 'ingest-a', host: 'host-a' });
    const b = await dispatcherHost(t, deployment, 'host-b', cm, cu);

    const N = 40;
    const to = Array.from({ length: N }, (_, i) => (i % 8 === 3 ? `138${String(i).padStart(4, '0')}0005` : numberAt(9_000 + i)));
    const r = await api<{ id: string }>(a.url, 'POST', '/v1/messages', {
      to, text: 'Reroute across hosts.', callbackUrl: `${done.origin}/done`, statusCallback: { url: `${events.origin}/events`, events: ['final'] },
    });
    t.equal(r.status, 202);
    const id = r.json.id;
    await until('host A sees every first attempt submitted (replicated from B)', async () => {
      const s = (await api<MessageStatus>(a.url, 'GET', `/v1/messages/${id}?limit=1`)).json;
      return s.summary.submitted === N;
    }, 20_000, 50);
    t.equal(cm.stats().dlrsSent, 0, 'no receipt sent yet: they will reach another host');
    await b.kill('SIGKILL');
    t.equal(cm.stats().submits, N, 'host B made every first attempt through cm-a');
    await until('host B\'s binds gone', () => cm.stats().sessions === 0 && cu.stats().sessions === 0, 10_000);
    // The owner is down too while the receipts are applied elsewhere.
    await a.kill('SIGKILL');

    const cView = await deployment.startIngest({ name: 'ingest-host-c', host: 'host-c' });
    const c = await dispatcherHost(t, deployment, 'host-c', cm, cu);
    await until('every receipt of the first attempts acknowledged by host C', () => cm.stats().dlrsAcked >= N, 20_000);
    const failed = to.filter((n) => stats.get(`86${n}`) === 'UNDELIV' || stats.get(`86${n}`) === 'REJECTD');
    const byStat = (st: Stat): number => [...stats.values()].filter((x) => x === st).length;
    t.ok(byStat('UNDELIV') > 0 && byStat('REJECTD') > 0 && byStat('DELIVRD') > 0, `the first carrier's receipts: ${byStat('DELIVRD')} DELIVRD, ${byStat('UNDELIV')} UNDELIV, ${byStat('REJECTD')} REJECTD`);
    t.equal(stats.size, N, 'a receipt for every first attempt');
    await until('host C shows the failed recipients waiting for a second attempt', async () => {
      const page = (await api<MessageStatus>(cView.url, 'GET', `/v1/messages/${id}?limit=100`)).json;
      return page.items.filter((i) => i.state === 'queued' && i.attempts?.length === 2).length === failed.length;
    }, 20_000, 100);
    await sleep(1_500);
    const waiting = (await api<MessageStatus>(cView.url, 'GET', `/v1/messages/${id}?limit=100`)).json;
    t.equal(waiting.status, 'in-progress', 'host C: not complete while the second attempts wait');
    t.equal(cu.stats().submits, 0, 'no second attempt while its owner is down: host C does not publish another host\'s reroutes');
    t.equal(done.requests.length, 0, 'no callback yet');
    const cPort = (await c.waitForLog(/gateway started/)).port as number;
    const dlr = await (await fetch(`http://127.0.0.1:${cPort}/metrics`)).text();
    t.comment(`host C's receipts of cm-a: ${[...dlr.matchAll(/smsgw_dlr_outcome_total\{account="cm-a",outcome="(\w+)"\} (\d+)/g)].map((m) => `${m[1]} ${m[2]}`).join(', ')}`);

    // The owner is back: it applies the receipts from the stream and publishes the second attempts.
    await a.restart();
    await waitComplete(a.url, id, 60_000, 100);
    // Host B comes back on its own data dir: it converges too.
    await b.restart();
    const check = async (name: string, url: string): Promise<void> => {
      const s = await waitComplete(url, id, 30_000, 100);
      t.same({ delivered: s.summary.delivered, recipients: s.recipients }, { delivered: N, recipients: N }, `${name}: every recipient delivered (the failed ones by their second attempt)`);
      const page = (await api<MessageStatus>(url, 'GET', `/v1/messages/${id}?limit=100`)).json;
      for (const item of page.items) {
        const number = item.to.slice(2);
        const first = stats.get(item.to);
        if (first === 'DELIVRD') {
          t.equal(item.attempts, undefined, `${name} ${number}: delivered at once, no attempts`);
          continue;
        }
        const attempts = item.attempts as readonly AttemptView[];
        t.match(attempts, [
          { attempt: 1, state: first === 'UNDELIV' ? 'undeliverable' : 'rejected', account: 'cm-a' },
          { attempt: 2, state: 'delivered', account: 'cu-b' },
        ], `${name} ${number}: ${first} through cm-a, then delivered through cu-b`);
        t.equal(attempts.length, 2, `${name} ${number}: never a third attempt`);
      }
    };
    await check('host A (owner, ingest only)', a.url);
    // Dispatch-only processes answer /v1 nowhere: read their stores through an ingest process of the same host.
    await check('host C', cView.url);
    await check('host B', (await deployment.startIngest({ name: 'ingest-host-b', host: 'host-b' })).url);

    const cuBy = cu.stats().submitsByDestination;
    t.same(to.filter((n) => (cm.stats().submitsByDestination.get(`86${n}`) ?? 0) !== 1), [], 'cm-a: each recipient once (C did not send B\'s first attempts again)');
    t.same(failed.filter((n) => cuBy.get(`86${n}`) !== 1), [], 'cu-b: each failed recipient exactly once (one second attempt although three hosts saw its receipt)');
    t.equal(cu.stats().submits, failed.length, 'cu-b: nothing else');

    // One completion callback, from the owner, after the second attempts; one final event per recipient.
    await until('the callback', () => done.requests.length > 0, 20_000);
    await until('every final event', () => events.requests.flatMap((x) => x.json as unknown[]).length >= N, 20_000);
    await sleep(1_500);
    t.equal(done.requests.length, 1, 'one completion callback');
    t.match(done.requests[0]?.json, { id, status: 'complete', recipients: N, summary: { delivered: N, undeliverable: 0, rejected: 0 } });
    const finals = events.requests.flatMap((x: SinkRequest) => x.json as Array<{ index: number; event: string; state: string }>);
    t.equal(finals.length, N, 'one final event per recipient');
    t.same([...new Set(finals.map((e) => e.index))].length, N, 'each recipient once');
    t.ok(finals.every((e) => e.event === 'final' && e.state === 'delivered'), 'each with its true final state (delivered), none with the first attempt\'s');
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    t.match(metrics, new RegExp(`smsgw_reroutes_total\\{outcome="started"\\} ${failed.length}\\b`), 'the owner started every reroute');
    t.ok(c.alive(), 'host C still running');
  });
}
