/**
 * CMPP while storage is full (src/storage/health.ts): a status report and an
 * MO that arrive while the data directory refuses writes are answered
 * DELIVER_RESP Result 8 (the temporary "not now"), never 0; the ISMG keeps
 * them and sends them again; once the probe write commits they are applied,
 * each exactly once (one receipt applied, no duplicate; one MO in the inbox).
 * The full state is injected as a failed commit reported to the gateway's
 * storage health, the way the receipt store reports one.
 */
import t from 'tap';
import { DELIVER_STORAGE_FULL_RESULT } from '../../src/cmpp/link.js';
import { CmppSimulator } from '../../src/cmpp/simulator.js';
import { until } from '../support/wait.js';
import type { MessageStatus, RecipientView } from '../support/api-types.js';
import { TEST_API_KEYS, TEST_KEY } from '../support/gateway.js';
import { startConfiguredGateway } from '../support/configured-gateway.js';

t.test('storage full: reports and MO answered Result 8, re-sent by the ISMG, applied once after the probe clears it', async (t) => {
  // The report comes 4 s after the SUBMIT_RESP: time to turn storage full once the submit is recorded (a loaded machine is slow).
  const sim = new CmppSimulator({ version: 3, spId: '901234', sharedSecret: 'pw', dlrDelayMs: 4000, dlrRetryMs: 100, dlrMaxAttempts: 1000 });
  const { port } = await sim.start();
  const { gateway, request } = await startConfiguredGateway(t, {
    key: TEST_KEY,
    prefix: 'smsgw-cmpp-full-',
    afterStop: () => sim.stop(),
    overrides: {
      auth: { apiKeys: TEST_API_KEYS },
      simulator: { enabled: false },
      storage: { probeIntervalMs: 600_000 }, // only the test's probe clears the state
      smpp: {
        accounts: [{
          name: 'cm', protocol: 'cmpp3', host: '127.0.0.1', port, spId: '901234', sharedSecret: 'pw', serviceId: 'MGOV', accessCode: '1065700',
          links: 1, window: 16, tps: 0, responseTimeoutMs: 5000, reconnectInitialMs: 20, reconnectMaxMs: 500, operators: ['*'],
        }],
      },
    },
  });
  const metric = async (name: string, labels: string): Promise<number> => {
    const text = await gateway.metrics.registry.getSingleMetricAsString(name);
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };

  const sent = await request<{ id: string }>('POST', '/v1/messages', { to: ['13800138016'], text: 'storage full receipt' });
  t.equal(sent.status, 202);
  const id = sent.json.id;
  let item: RecipientView | undefined;
  await until('the submit is recorded', async () => {
    item = (await request<MessageStatus>('GET', `/v1/messages/${id}`)).json?.items?.[0];
    return item?.state === 'submitted';
  }, 10_000);
  t.equal(sim.stats().reportsSent, 0, 'the report is not out yet (the storage state must come first)');

  // Storage full, as the receipt store reports a failed commit.
  t.ok(gateway.storage.failed(Object.assign(new Error('No space left on device'), { code: 'ENOSPC' }), 'test'));
  t.equal(gateway.storage.full, true);
  sim.sendMo('13800138000', '1065700106900015', 'MO while full');

  await until('report and MO refused and re-sent at least twice each', () => sim.stats().deliverRetries >= 4 && sim.stats().reportsSent >= 2 && sim.stats().moSent >= 2, 20_000);
  const refused = sim.deliverResults();
  t.equal(refused.get(0) ?? 0, 0, 'no DELIVER_RESP Result 0 while full');
  t.ok((refused.get(DELIVER_STORAGE_FULL_RESULT) ?? 0) >= 4, `every answer is Result ${DELIVER_STORAGE_FULL_RESULT}: ${JSON.stringify([...refused])}`);
  t.same([...refused.keys()], [DELIVER_STORAGE_FULL_RESULT], 'and no other Result');
  t.equal(sim.stats().reportsAcked, 0);
  t.equal(sim.stats().moAcked, 0);
  t.equal((await request<MessageStatus>('GET', `/v1/messages/${id}`)).json.items[0]!.state, 'submitted', 'the receipt is not applied while full');
  t.equal(((await request<{ items?: unknown[] }>('GET', '/v1/mo?state=unmatched')).json?.items ?? []).length, 0, 'the MO is not stored while full');
  t.equal(await metric('smsgw_dlr_outcome_total', 'account="cm",outcome="applied"'), 0);
  t.ok(await metric('smsgw_cmpp_deliver_total', 'account="cm",kind="report",result="8"') >= 2, 'smsgw_cmpp_deliver_total counts the refused reports by Result 8');
  t.ok(await metric('smsgw_cmpp_deliver_total', 'account="cm",kind="mo",result="8"') >= 2, 'and the refused MO');

  // The probe write commits: storage is writable again; the next re-sends are applied and acknowledged.
  t.equal(await gateway.storage.probe(), true);
  await until('report and MO acknowledged', () => sim.stats().reportsAcked === 1 && sim.stats().moAcked === 1, 15_000);
  const done = (await request<MessageStatus>('GET', `/v1/messages/${id}`)).json;
  t.equal(done.items[0]!.state, 'delivered', 'the re-sent report is applied');
  const mo = (await request<{ items: Array<{ text: string }> }>('GET', '/v1/mo?state=unmatched')).json.items;
  t.equal(mo.length, 1, 'the re-sent MO is stored once');
  t.equal(mo[0]!.text, 'MO while full');
  // Nothing more arrives: each was acknowledged once, and applied once.
  await new Promise((r) => setTimeout(r, 400));
  t.equal(sim.stats().reportsAcked, 1);
  t.equal(sim.stats().moAcked, 1);
  t.equal(sim.deliverResults().get(0), 2, 'exactly two Result 0 answers: one report, one MO');
  t.equal(await metric('smsgw_dlr_outcome_total', 'account="cm",outcome="applied"'), 1, 'the receipt applied once');
  t.equal(await metric('smsgw_dlr_outcome_total', 'account="cm",outcome="duplicate"'), 0, 'no duplicate');
  t.equal(((await request<{ items?: unknown[] }>('GET', '/v1/mo?state=unmatched')).json?.items ?? []).length, 1);
});
