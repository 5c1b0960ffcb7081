/**
 * An SMSC that numbers its ids from 1 starts again from 1 after a restart,
 * and sends each receipt right before (or 0 ms after) its submit_sm_resp.
 * Every id of the second life names a part of the first life, already final,
 * until the new submit's result is recorded; the receipt that arrives in
 * between used to be taken for a re-send of the old one and dropped, so the
 * new recipient stayed `submitted` until it expired (an outside probe:
 * 1,000 of 1,000 recipients with receipts before the resp, 995 of 1,000 at
 * 0 ms). Now each receipt reaches the submit it names: the one that went on
 * the wire under that id before the receipt arrived (ReceiptStore,
 * REUSED_ID_WINDOW_MS / sentAt).
 *
 * Real gateway, real simulator over loopback; the simulator is stopped and a
 * new one (ids from 1 again) listens on the same port; the gateway's bind
 * reconnects. Both lives' recipients must end with exactly the state their
 * receipts said, and no receipt may be unknown.
 */
import t, { type Test } from 'tap';
import { SmscSimulator, type SmscSimulatorOptions } from '../../src/smpp/simulator.js';
import { startTestGateway } from '../support/gateway.js';
import { FINAL_STATES, LONG_TEXT, ReceiptLedger, numberOf } from '../support/receipt-check.js';
import { until } from '../support/wait.js';

const N = 1_000;

async function restartCase(t: Test, parts: 1 | 3, over: SmscSimulatorOptions): Promise<void> {
  const ledger = new ReceiptLedger();
  const options = ledger.simulatorOptions({ maxTracked: 8 * N * parts, ...over });
  const gw = await startTestGateway(t, {
    simulator: options,
    account: { binds: 1, window: 500 },
    config: { dispatch: { maxInflightSegments: 4000 } },
  });
  const text = parts === 3 ? LONG_TEXT : 'Duty notice: briefing moves to room 301.';
  const store = gw.gateway.store;

  const sendPhase = async (from: number): Promise<{ id: string; to: string }[]> => {
    const messages = Array.from({ length: N }, (_, k) => ({ to: [numberOf(from + k)], text }));
    const r = await gw.request<{ results: { id?: string; httpStatus: number }[] }>('POST', '/v1/messages/batch', { messages });
    // 207: the batch's answer carries one status per item.
    t.equal(r.status, 207, 'batch answered');
    t.equal(r.json.results.filter((item) => item.httpStatus === 202 && item.id !== undefined).length, N, `every one of the ${N} messages accepted`);
    const sent = r.json.results.map((item, k) => ({ id: item.id ?? '', to: numberOf(from + k) }));
    const finals = (): number => sent.reduce((n, s) => n + (FINAL_STATES.has(store.getRecipient(s.id, 0)?.state ?? '') ? 1 : 0), 0);
    // Bounded, well inside the validity: nothing here is final by expiry.
    await until(`every recipient of the batch from ${from} final`, () => finals() === N, 60_000, 100).catch(() => undefined);
    await store.flushed();
    return sent;
  };
  const check = (what: string, sent: { id: string; to: string }[]): void => {
    const c = ledger.compare(sent.map((s) => ({ to: s.to, state: store.getRecipient(s.id, 0)?.state })), parts);
    t.equal(c.notFinal, 0, `${what}: every recipient final`);
    t.equal(c.wrong, 0, `${what}: every recipient has exactly the state its receipts said ${c.examples.join('; ')}`);
  };

  const first = await sendPhase(0);
  check('first life', first);

  // The SMSC restarts on the same port and numbers from 1 again.
  const port = gw.simulator.port;
  await gw.simulator.stop();
  const second = new SmscSimulator({ host: '127.0.0.1', systemId: 'smsgw', password: 'secret', ...options, port });
  await second.start();
  t.teardown(() => second.stop());

  const next = await sendPhase(N);
  t.equal(second.stats().uniqueSegments, N * parts, 'the second life got every part once');
  check('second life (ids reused)', next);
  check('first life, after the second', first);

  const m = await gw.gateway.metrics.registry.getMetricsAsJSON();
  const unknown = (m.find((x) => x.name === 'smsgw_dlr_outcome_total') as { values?: { value: number; labels: Record<string, unknown> }[] } | undefined)
    ?.values?.filter((v) => v.labels['outcome'] === 'unknown').reduce((a, v) => a + v.value, 0) ?? 0;
  t.equal(unknown, 0, 'no receipt unknown');
  const reused = (m.find((x) => x.name === 'smsgw_dlr_reused_id_total') as { values?: { value: number; labels: Record<string, unknown> }[] } | undefined)
    ?.values?.filter((v) => v.labels['outcome'] === 'applied').reduce((a, v) => a + v.value, 0) ?? 0;
  t.ok(reused > 0, `receipts of reused ids were kept and applied (${reused})`);
}

t.test('SMSC restart, ids from 1 again, receipts before the resp, 3 parts', (t) => restartCase(t, 3, { dlrBeforeResp: true }));
t.test('SMSC restart, ids from 1 again, receipts 0 ms after the resp, 1 part', (t) => restartCase(t, 1, { dlrDelayMs: 0 }));
