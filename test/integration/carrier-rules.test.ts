/**
 * Carriers' rules end to end: the per-recipient frequency cap (one unit,
 * one number, one local day; emergency exempt) and allow-list mode for a
 * carrier's test account.
 */
import t from 'tap';
import { startTestGateway, numberAt } from '../support/gateway.js';
import { startSimulator } from '../support/nats-deployment.js';
import { simulatorAccountConfig } from '../support/gateway-process.js';
import { until } from '../support/wait.js';

t.test('frequency cap: the third message of the day to a number is rejected, other numbers and emergency pass', async (t) => {
  const gw = await startTestGateway(t, { config: { directory: { frequencyCap: { perDay: 2, exemptTiers: ['emergency'] } } } });
  const capped = numberAt(1);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await gw.send<{ id: string }>({ to: [capped, numberAt(10 + i)], text: `notice ${i}` });
    t.equal(r.status, 202);
    ids.push(r.json.id);
    await gw.waitComplete(r.json.id);
  }
  const third = await gw.waitComplete(ids[2] as string);
  t.match(third.summary, { delivered: 1, rejected: 1 });
  t.match(third.items.find((i) => i.to === `86${capped}`), { state: 'rejected', error: /frequency cap/ });
  const warning = await gw.send<{ id: string }>({ to: [capped], text: 'typhoon warning', tier: 'emergency' });
  t.equal((await gw.waitComplete(warning.json.id)).summary.delivered, 1, 'emergency is exempt');
  t.equal(gw.simulator.stats().submitsByDestination.get(`86${capped}`), 3, 'two routine messages and the warning');
});

t.test('allow-list mode: a test account carries only its listed numbers; the rest go to the next account', async (t) => {
  const test = await startSimulator(t, { dlrDelayMs: 5 });
  const prod = await startSimulator(t, { dlrDelayMs: 5 });
  const gw = await startTestGateway(t, {
    config: {
      smpp: {
        accounts: [
          simulatorAccountConfig(test.port, { name: 'cm-test', operators: [], allowList: [`+86 ${numberAt(1)}`, numberAt(2)] }),
          simulatorAccountConfig(prod.port, { name: 'cm-prod', operators: ['cmcc'] }),
        ],
      },
      routing: { rules: [{ name: 'trial', match: { operators: ['cmcc'] }, accounts: ['cm-test'], policy: 'failover' }] },
    },
  });
  await until('both bound', () => (gw.gateway.router?.accounts() ?? []).every((x) => x.bound > 0), 10_000);
  const r = await gw.send<{ id: string }>({ to: [numberAt(1), numberAt(2), numberAt(3), numberAt(4)], text: 'trial run' });
  t.equal((await gw.waitComplete(r.json.id)).summary.delivered, 4);
  t.same([...test.stats().submitsByDestination.keys()].sort(), [`86${numberAt(1)}`, `86${numberAt(2)}`], 'the test account only for its list');
  t.same([...prod.stats().submitsByDestination.keys()].sort(), [`86${numberAt(3)}`, `86${numberAt(4)}`], 'the others by the next matching rule');
});
