/**
 * CMPP metrics on /metrics (src/telemetry/metrics.ts, smsgw_cmpp_*): the
 * gateway with the built-in CMPP 3.0 ISMG simulator (account `sim`, 4 links)
 * sends one message to a normal number and to one the simulator answers
 * Result 8 three times, receives its reports and one MO, then loses every
 * link once; every CMPP series is then exactly what happened, and no SMPP
 * series is written for the CMPP account.
 */
import t from 'tap';
import type { MessageStatus } from '../support/api-types.js';
import { until } from '../support/wait.js';
import { startConfiguredGateway } from '../support/configured-gateway.js';

const DEV_KEY = 'dev-key-change-me';

/** `name{labels}` → value, for every sample line of the exposition. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

t.test('/metrics: link state, window, Results, flow control, back-offs, delivers and reconnects of a CMPP account, exactly', async (t) => {
  const { gateway, url, request } = await startConfiguredGateway(t, {
    key: DEV_KEY,
    prefix: 'smsgw-cmpp-metrics-',
    overrides: {
      simulator: { enabled: true, protocol: 'cmpp3', port: 0, dlrDelayMs: 10, tps: 0 },
      smpp: { accounts: [] },
    },
  });
  const sim = gateway.cmppSimulator;
  if (sim === undefined) throw new Error('no CMPP simulator');
  const scrape = async (): Promise<Map<string, number>> => samples(await (await fetch(`${url}/metrics`)).text());
  const links = [0, 1, 2, 3];

  let m = await scrape();
  await until('4 links up', async () => {
    m = await scrape();
    return links.every((l) => m.get(`smsgw_cmpp_link_up{account="sim",link="${l}"}`) === 1);
  }, 10_000);

  const sent = await request<{ id: string }>('POST', '/v1/messages', { to: ['13800138016', '13800130008'], text: 'metrics' });
  t.equal(sent.status, 202);
  await until('both delivered', async () => (await request<MessageStatus>('GET', `/v1/messages/${sent.json.id}`)).json?.summary?.delivered === 2, 20_000);
  sim.sendMo('13800138000', '1065700106900015', 'MO for the metrics');
  await until('MO acknowledged', () => sim.stats().moAcked === 1, 10_000);
  // The OK count is added once a pool sweep (250 ms); window gauges are set by the link sweep.
  await until('OK responses flushed', async () => {
    m = await scrape();
    return m.get('smsgw_cmpp_submit_responses_total{account="sim",result="OK"}') === 2;
  }, 5_000);

  t.equal(m.get('smsgw_cmpp_submit_responses_total{account="sim",result="CMPP_FLOW_CONTROL"}'), 3, 'three Result 8 answers by Result');
  t.equal(m.get('smsgw_cmpp_flow_control_total{account="sim"}'), 3);
  t.equal(m.get('smsgw_cmpp_flow_control_backoffs_total{account="sim"}'), 3, 'each Result 8 came to a submit sent after the last pause began: 3 pauses');
  t.equal(m.get('smsgw_cmpp_deliver_total{account="sim",kind="report",result="0"}'), 2, 'two reports, answered 0');
  t.equal(m.get('smsgw_cmpp_deliver_total{account="sim",kind="mo",result="0"}'), 1, 'one MO, answered 0');
  for (const l of links) t.equal(m.get(`smsgw_cmpp_window_occupancy{account="sim",link="${l}"}`), 0, `link ${l}: window empty`);
  t.equal(m.get('smsgw_cmpp_pending_segments{account="sim"}'), 0);
  t.equal(m.get('smsgw_cmpp_submit_latency_seconds_count{account="sim"}'), 2, 'latency of the two accepted submits');
  t.equal(m.get('smsgw_cmpp_reconnects_total{account="sim"}') ?? 0, 0, 'no reconnect yet');
  t.equal(m.get('smsgw_cmpp_timeouts_total{account="sim"}') ?? 0, 0);
  const kinds = [...m.keys()].filter((k) => k.startsWith('smsgw_cmpp_deliver_total{'));
  t.same(kinds.sort(), ['smsgw_cmpp_deliver_total{account="sim",kind="mo",result="0"}', 'smsgw_cmpp_deliver_total{account="sim",kind="report",result="0"}'], 'no other deliver series');

  // Every link lost once: each reconnects, the gauge goes 0 and back to 1.
  sim.dropAll();
  await until('4 links up again after 4 reconnects', async () => {
    m = await scrape();
    return m.get('smsgw_cmpp_reconnects_total{account="sim"}') === 4 && links.every((l) => m.get(`smsgw_cmpp_link_up{account="sim",link="${l}"}`) === 1);
  }, 15_000);
  t.equal(m.get('smsgw_cmpp_reconnects_total{account="sim"}'), 4);

  // The CMPP account writes no SMPP series.
  const smppForSim = [...m.keys()].filter((k) => k.startsWith('smsgw_smpp_') && k.includes('account="sim"'));
  t.same(smppForSim, [], 'no smsgw_smpp_* series for the CMPP account');
});
