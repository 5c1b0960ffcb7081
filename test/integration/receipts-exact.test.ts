/**
 * Every receipt matches the submit it names, at full load (issue 12).
 *
 * The SMSC simulator numbers its ids from 1, as many SMSCs do — in decimal,
 * or in hex whose every id is all digits (so each one also reads as a
 * decimal number: the worst case for matching) — and sends each receipt at
 * 0 ms, right after or right before its submit_sm_resp, one bind with a
 * window of 500. The simulator reports every receipt it makes
 * (observeReceipt); afterwards every recipient must be final with exactly
 * the state its receipts said (for multi-part messages: delivered only when
 * every part was, the worst part otherwise), and every receipt must be
 * accounted for per account: applied + early waiting + duplicate + unknown
 * = received. Numbers ending 0005 and 0003 get UNDELIV and EXPIRED, the rest
 * a seeded mix, so parts of one message fail while others are delivered.
 *
 * Before the fix (one lookup trying the decimal and the hex reading of an
 * id) thousands of recipients stayed `submitted` here: their receipts had
 * been given to other submits.
 */
import t, { type Test } from 'tap';
import type { SmscSimulatorOptions } from '../../src/smpp/simulator.js';
import type { SmppAccountConfig } from '../../src/config/schema.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { FINAL_STATES, LONG_TEXT, ReceiptLedger, numberOf } from '../support/receipt-check.js';
import { until } from '../support/wait.js';

interface Scenario {
  readonly messages: number;
  readonly parts: 1 | 3;
  readonly simulator: SmscSimulatorOptions;
  readonly account?: Partial<SmppAccountConfig>;
}

async function run(t: Test, s: Scenario): Promise<void> {
  const ledger = new ReceiptLedger();
  const gw: TestGateway = await startTestGateway(t, {
    simulator: ledger.simulatorOptions({ maxTracked: 4 * s.messages * s.parts, ...s.simulator }),
    account: { binds: 1, window: 500, ...s.account },
    config: { dispatch: { maxInflightSegments: 4000 } },
  });
  const text = s.parts === 3 ? LONG_TEXT : 'Duty notice: briefing moves to room 301.';
  const ids: string[] = [];
  const numbers: string[] = [];
  for (let b = 0; b < s.messages; b += 1000) {
    const messages = [];
    for (let i = b; i < Math.min(s.messages, b + 1000); i++) {
      numbers.push(numberOf(i));
      messages.push({ to: [numberOf(i)], text });
    }
    const r = await gw.request<{ results: { id: string }[] }>('POST', '/v1/messages/batch', { messages });
    if (r.status !== 200 && r.status !== 202 && r.status !== 207) throw new Error(`batch: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
    for (const item of r.json.results) ids.push(item.id);
  }
  t.equal(ids.length, s.messages, 'every message accepted');
  const store = gw.gateway.store;
  const finals = (): number => ids.reduce((n, id) => n + (FINAL_STATES.has(store.getRecipient(id, 0)?.state ?? '') ? 1 : 0), 0);
  // Bounded: well inside the validity, so nothing here is final by expiry.
  await until('every recipient final', () => finals() === s.messages, 90_000, 250).catch(() => undefined);
  await store.flushed();

  const sim = gw.simulator.stats();
  t.equal(sim.duplicates, 0, 'no segment submitted twice (each receipt belongs to one submit)');
  t.equal(sim.uniqueSegments, s.messages * s.parts, 'every part reached the SMSC once');
  const c = ledger.compare(ids.map((id, i) => ({ to: numbers[i]!, state: store.getRecipient(id, 0)?.state })), s.parts);
  t.equal(c.notFinal, 0, 'every recipient final');
  t.equal(c.wrong, 0, `every recipient has exactly the state its receipts said ${c.examples.join('; ')}`);
  t.ok(c.states.has('delivered') && c.states.has('undeliverable') && c.states.has('expired'), `not all delivered: ${[...c.states].join(', ')}`);

  // Every receipt accounted for, per account: applied + early + duplicate + unknown (+ intermediate) = received.
  const m = await gw.gateway.metrics.registry.getMetricsAsJSON();
  const sum = (name: string, filter: (labels: Record<string, unknown>) => boolean): number =>
    (m.find((x) => x.name === name) as { values?: { value: number; labels: Record<string, unknown> }[] } | undefined)?.values
      ?.filter((v) => filter(v.labels)).reduce((a, v) => a + v.value, 0) ?? 0;
  const received = sum('smsgw_dlr_received_total', (l) => l['account'] === 'sim');
  const outcome = (o: string): number => sum('smsgw_dlr_outcome_total', (l) => l['account'] === 'sim' && l['outcome'] === o);
  const resolved = (o: string): number => sum('smsgw_dlr_early_resolved_total', (l) => l['account'] === 'sim' && l['outcome'] === o);
  const [applied, early, duplicate, unknown] = ['applied', 'early', 'duplicate', 'unknown'].map(outcome) as [number, number, number, number];
  t.equal(received, sim.dlrsSent + sim.deliveryRetries, 'every receipt sent (re-sends too) was received');
  t.equal(applied + early + duplicate + unknown + outcome('intermediate'), received, 'applied + early + duplicate + unknown = received');
  t.equal(unknown + resolved('unknown'), 0, 'none unknown');
  t.equal(early - resolved('applied') - resolved('duplicate'), 0, 'no early receipt still waiting');
  t.equal(applied + resolved('applied'), s.messages * s.parts, 'one receipt applied per part, on arrival or from waiting early');
  t.equal(duplicate + resolved('duplicate'), sim.deliveryRetries, 'the duplicates are the re-sends, no more');
}

t.test('20,000 messages, ids from 1 in decimal, receipts 0 ms after the resp', (t) =>
  run(t, { messages: 20_000, parts: 1, simulator: { idFormat: 'decimal' } }));

t.test('20,000 messages, all-digit hex ids from 1, receipts before the resp, text-only receipts with the id in decimal', (t) =>
  run(t, {
    messages: 20_000,
    parts: 1,
    simulator: { idFormat: 'hex-all-digit', dlrBeforeResp: true, dlrTlvs: false, dlrTextIdFormat: 'other' },
    account: { idFormat: 'hex', receiptTextIdFormat: 'decimal' },
  }));

t.test('3-part messages (21,000 parts), ids from 1 in decimal, receipts before the resp, failed parts', (t) =>
  run(t, { messages: 7_000, parts: 3, simulator: { idFormat: 'decimal', dlrBeforeResp: true } }));

t.test('3-part messages (21,000 parts), all-digit hex ids from 1, receipts 0 ms after the resp', (t) =>
  run(t, { messages: 7_000, parts: 3, simulator: { idFormat: 'hex-all-digit' }, account: { idFormat: 'hex' } }));

t.test('20,000 messages, all-digit hex ids from 1, receipts 0 ms after the resp, the receipted_message_id TLV in decimal (receiptTlvIdFormat decimal)', (t) =>
  run(t, {
    messages: 20_000,
    parts: 1,
    simulator: { idFormat: 'hex-all-digit', dlrTlvIdFormat: 'decimal' },
    account: { idFormat: 'hex', receiptTlvIdFormat: 'decimal' },
  }));

t.test('20,000 messages, ids from 1 in decimal, receipts before the resp, the receipted_message_id TLV in hex (receiptTlvIdFormat hex)', (t) =>
  run(t, {
    messages: 20_000,
    parts: 1,
    simulator: { idFormat: 'decimal', dlrBeforeResp: true, dlrTlvIdFormat: 'other' },
    account: { idFormat: 'decimal', receiptTlvIdFormat: 'hex' },
  }));
