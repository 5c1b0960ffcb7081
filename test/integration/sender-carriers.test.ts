/**
 * Sender codes owned per carrier account, end to end (issue 17): account
 * cm-b rewrites 10690 → 10655. A unit's raw code 1065500177 and another's
 * 1069000177 (which cm-b writes 1065500177) collide — the second is refused
 * 409 SENDER_TAKEN naming the account — while the same extension under a
 * third prefix (1065600177) does not. MO is routed by the code it arrives on
 * and the account it arrives through: 1065500177 through cm-b reaches the
 * unit that claimed it raw (before, cm-b's rewrite handed it to whoever owned
 * 1069000177 or its prefix).
 */
import t from 'tap';
import { startTestGateway, numberAt } from '../support/gateway.js';
import { startSimulator } from '../support/nats-deployment.js';
import { simulatorAccountConfig } from '../support/gateway-process.js';
import { ADMIN_CONFIG, adminClient } from '../support/directory.js';
import { until } from '../support/wait.js';
import type { SmscSimulator } from '../../src/smpp/simulator.js';

const portOf = (sim: SmscSimulator): number => sim.port;

t.test('sender codes per carrier account: collisions through a rewrite refused, MO by code and account', async (t) => {
  const a = await startSimulator(t, { dlrDelayMs: 5 });
  const b = await startSimulator(t, { dlrDelayMs: 5 });
  const gw = await startTestGateway(t, {
    config: {
      ...ADMIN_CONFIG,
      smpp: {
        accounts: [
          simulatorAccountConfig(portOf(a), { name: 'cm-a', operators: ['cmcc'] }),
          simulatorAccountConfig(portOf(b), { name: 'cm-b', operators: [], accessCode: { from: '10690', to: '10655' } }),
        ],
      },
    },
  });
  await until('both bound', () => (gw.gateway.router?.accounts() ?? []).every((x) => x.bound > 0), 10_000);
  const admin = adminClient(gw);
  await admin.must('POST', '/v1/admin/units', { id: 'uni', name: 'raw unicom code', sender: '1065500177' });
  const clash = await admin.call('POST', '/v1/admin/units', { id: 'cmx', name: 'cm code written alike on cm-b', sender: '1069000177' });
  t.match(clash, { status: 409, json: { error: { code: 'SENDER_TAKEN', message: /uni.*1065500177.*cm-b/ } } }, 'written 1065500177 on cm-b, like uni\'s code');
  t.equal((await admin.call('GET', '/v1/admin/units/cmx')).status, 404, 'nothing was created');
  await admin.must('POST', '/v1/admin/units', { id: 'tel', name: 'the same extension under another prefix', sender: '1065600177' });

  const inbox = async (tenant: string, text: string): Promise<unknown> => {
    let hit: unknown;
    await until(`${text} in ${tenant}'s inbox`, async () => {
      const r = await admin.call<{ items: { text: string }[] }>('GET', `/v1/admin/mo?tenant=${tenant}&limit=100`);
      hit = r.json.items.find((m) => m.text === text);
      return hit !== undefined;
    }, 15_000);
    return hit;
  };
  t.ok(await b.injectMo({ source: `86${numberAt(1)}`, destination: '1065500177', text: 'to uni through cm-b' }));
  t.match(await inbox('uni', 'to uni through cm-b'), { to: '1065500177' }, 'the raw claim\'s owner, not the rewrite\'s 1069000177');
  t.ok(await a.injectMo({ source: `86${numberAt(2)}`, destination: '1065500177', text: 'to uni through cm-a' }));
  t.ok(await inbox('uni', 'to uni through cm-a'), 'through an account without rewrite: as it is');
  t.ok(await b.injectMo({ source: `86${numberAt(3)}`, destination: '1065600177', text: 'to tel through cm-b' }));
  t.ok(await inbox('tel', 'to tel through cm-b'));
  // The dev tenant's code 10690001, written 10655001 by cm-b: an unclaimed extension under it reaches dev.
  t.ok(await b.injectMo({ source: `86${numberAt(4)}`, destination: '1065500199', text: 'to dev through cm-b' }));
  t.match(await inbox('dev', 'to dev through cm-b'), { to: '1069000199' });
});
