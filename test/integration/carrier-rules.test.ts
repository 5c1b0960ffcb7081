/**
 * Carriers' rules end to end: the per-recipient frequency cap (one unit,
 * one number, one local day; emergency exempt).
 */
import t from 'tap';
import { startTestGateway, numberAt } from '../support/gateway.js';

t.test('frequency cap: the third message of the day to a number is rejected, other numbers and emergency pass', async (t) => {
  const gw = await startTestGateway(t, { config: { directory: { frequencyCap: { perDay: 2, exemptTiers: ['emergency'] } } } });
  const capped = numberAt(1);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await gw.send({ to: [capped, numberAt(10 + i)], text: `notice ${i}` });
    t.equal(r.status, 202);
    ids.push(r.json.id);
    await gw.waitComplete(r.json.id);
  }
  const third = await gw.waitComplete(ids[2] as string);
  t.match(third.summary, { delivered: 1, rejected: 1 });
  t.match(third.items.find((i: any) => i.to === `86${capped}`), { state: 'rejected', error: /frequency cap/ });
  const warning = await gw.send({ to: [capped], text: 'typhoon warning', tier: 'emergency' });
  t.equal((await gw.waitComplete(warning.json.id)).summary.delivered, 1, 'emergency is exempt');
  t.equal(gw.simulator.stats().submitsByDestination.get(`86${capped}`), 3, 'two routine messages and the warning');
});
