/**
 * Every receipt matches the submit it names (issue 12) on the NATS queue,
 * with ingest and dispatch in separate processes on one data dir, and with
 * receipt replication on (a second host applies the first one's changes).
 * The simulator (in this process) numbers ids from 1 and sends each receipt
 * at 0 ms — before the resp in one case, right after it in the other — to
 * one bind with a window of 500; its receipts are recorded as made, and
 * every recipient, read back over the HTTP API, must have exactly the state
 * they say. Messages carry 1,000 recipients each so the read-back is a few
 * pages per message.
 */
import t from 'tap';
import { api } from '../support/gateway-process.js';
import type { MessageStatus } from '../support/api-types.js';
import { startNatsDeployment, startSimulator, until } from '../support/nats-deployment.js';
import { requireNatsServer } from '../support/nats-server.js';
import { ReceiptLedger } from '../support/receipt-check.js';
import { PATIENT, PER_MESSAGE, recipients, send, type Row } from '../support/receipt-readback.js';

if (requireNatsServer(t)) {
  t.test('NATS, ingest and dispatch processes on one data dir: 20,000 recipients, ids from 1, receipts before the resp', async (t) => {
    const ledger = new ReceiptLedger();
    const total = 20 * PER_MESSAGE;
    const sim = await startSimulator(t, ledger.simulatorOptions({ dlrBeforeResp: true, maxTracked: 4 * total, ...PATIENT }));
    const deployment = await startNatsDeployment(t);
    const ingest = await deployment.startIngest();
    const ids = await send(ingest.url, total / PER_MESSAGE, 'Duty notice: briefing moves to room 301.');
    const dispatcher = await deployment.startDispatcher(sim, { account: { binds: 1, window: 500 } });
    await until('every receipt acknowledged', () => sim.stats().dlrsAcked >= total, 120_000, 250).catch((e: unknown) => t.fail(`${String(e)}: ${JSON.stringify({ ...sim.stats(), submitsByDestination: undefined })} ${dispatcher.logTail().split('\n').filter((l) => l.includes('"level":4') || l.includes('"level":5')).slice(-5).join('\n')}`));
    // The last receipts are durable before their deliver_sm_resp: read back once the summaries say complete (bounded).
    const rows: Row[] = [];
    await until('every message complete', async () => {
      for (const id of ids) {
        const r = await api<MessageStatus>(ingest.url, 'GET', `/v1/messages/${encodeURIComponent(id)}?limit=1`);
        if (r.json.status !== 'complete') return false;
      }
      return true;
    }, 30_000, 250).catch(() => undefined);
    for (const id of ids) rows.push(...(await recipients(ingest.url, id)));
    t.equal(sim.stats().duplicates, 0, 'no segment submitted twice');
    const c = ledger.compare(rows, 1);
    t.equal(c.total, total, 'every recipient read back');
    t.equal(c.notFinal, 0, 'every recipient final');
    t.equal(c.wrong, 0, `every recipient has exactly the state its receipts said ${c.examples.join('; ')}`);
    t.ok(c.states.has('undeliverable') && c.states.has('expired') && c.states.has('delivered'), 'not all delivered');
  });

  t.test('receipt replication on: host A ingests and dispatches (ids from 1, receipts 0 ms after the resp), host B shows the same states', async (t) => {
    const ledger = new ReceiptLedger();
    const total = 5 * PER_MESSAGE;
    const sim = await startSimulator(t, ledger.simulatorOptions({ idFormat: 'hex-all-digit', maxTracked: 4 * total, ...PATIENT }));
    const deployment = await startNatsDeployment(t);
    const a = await deployment.startIngest({ host: 'host-a', name: 'ingest-a' });
    const b = await deployment.startIngest({ host: 'host-b', name: 'ingest-b' });
    const ids = await send(a.url, total / PER_MESSAGE, 'Office notice: the hall closes at 17:00.');
    await deployment.startDispatcher(sim, { host: 'host-a', name: 'dispatch-a', account: { binds: 1, window: 500, idFormat: 'hex' } });
    await until('every receipt acknowledged', () => sim.stats().dlrsAcked >= total, 120_000, 250).catch((e: unknown) => t.fail(`${String(e)}: ${JSON.stringify({ ...sim.stats(), submitsByDestination: undefined })}`));
    const complete = (url: string) => async (): Promise<boolean> => {
      for (const id of ids) {
        const r = await api<MessageStatus>(url, 'GET', `/v1/messages/${encodeURIComponent(id)}?limit=1`);
        if (r.json.status !== 'complete') return false;
      }
      return true;
    };
    await until('complete on A', complete(a.url), 30_000, 250).catch(() => undefined);
    await until('complete on B', complete(b.url), 60_000, 250).catch(() => undefined);
    t.equal(sim.stats().duplicates, 0, 'no segment submitted twice');
    for (const [name, url] of [['A', a.url], ['B', b.url]] as const) {
      const rows: Row[] = [];
      for (const id of ids) rows.push(...(await recipients(url, id)));
      const c = ledger.compare(rows, 1);
      t.equal(c.total, total, `${name}: every recipient read back`);
      t.equal(c.notFinal, 0, `${name}: every recipient final`);
      t.equal(c.wrong, 0, `${name}: every recipient has exactly the state its receipts said ${c.examples.join('; ')}`);
    }
  });
}
