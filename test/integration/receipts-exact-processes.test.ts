/**
 * Every receipt matches the submit it names (issue 12) on the EMBEDDED queue,
 * with ingest and dispatch in separate processes on one data dir.
 *
 * The embedded queue keeps its leases and tier depths in the memory of the
 * process that consumes (docs/DEPLOY.md: single-process for consuming), so
 * the processes take turns: the ingest process accepts every message (202 =
 * durable in the shared LMDB environment), then a dispatch process opens the
 * same environment, drains the queue and records every receipt; the ingest
 * process reads the states back over the HTTP API. The simulator (in this
 * process) numbers ids from 1 and sends each receipt at 0 ms before its
 * submit_sm_resp, one bind with a window of 500; numbers ending 0005 and 0003
 * get UNDELIV and EXPIRED, the rest a seeded mix.
 */
import t from 'tap';
import { sharedDataDir, simulatorAccountConfig, startGatewayProcess } from '../support/gateway-process.js';
import { startSimulator, until } from '../support/nats-deployment.js';
import { ReceiptLedger } from '../support/receipt-check.js';
import { PATIENT, PER_MESSAGE, allComplete, recipients, send, type Row } from '../support/receipt-readback.js';

t.test('embedded queue, ingest and dispatch processes on one data dir: 20,000 recipients, ids from 1, receipts 0 ms before the resp', async (t) => {
  const ledger = new ReceiptLedger();
  const total = 20 * PER_MESSAGE;
  const sim = await startSimulator(t, ledger.simulatorOptions({ idFormat: 'decimal', dlrDelayMs: 0, dlrBeforeResp: true, maxTracked: 4 * total, ...PATIENT }));
  const dataDir = sharedDataDir(t);
  const config = (account?: Record<string, unknown>): Record<string, unknown> => ({
    dataDir,
    log: { level: 'info' },
    simulator: { enabled: false },
    smpp: { accounts: account ? [account] : [] },
    dispatch: { expirySweepMs: 500, maxInflightSegments: 4000 },
    queue: { kind: 'embedded' },
  });
  const ingest = await startGatewayProcess(t, { role: 'ingest', name: 'ingest', config: config() });
  const url = ingest.url;
  if (url === undefined) throw new Error('an ingest process has a URL');
  const ids = await send(url, total / PER_MESSAGE, 'Duty notice: briefing moves to room 301.');
  const account = simulatorAccountConfig(sim.port, { binds: 1, window: 500 });
  const dispatcher = await startGatewayProcess(t, {
    role: 'dispatch',
    name: 'dispatch',
    config: config(account),
    ready: () => sim.stats().binds >= 1,
  });
  await until('every receipt acknowledged', () => sim.stats().dlrsAcked >= total, 120_000, 250).catch((e: unknown) =>
    t.fail(`${String(e)}: ${JSON.stringify({ ...sim.stats(), submitsByDestination: undefined })} ${dispatcher.logTail().split('\n').filter((l) => l.includes('"level":4') || l.includes('"level":5')).slice(-5).join('\n')}`));
  // The last receipts are durable before their deliver_sm_resp: read back once the summaries say complete (bounded).
  await until('every message complete', allComplete(url, ids), 30_000, 250).catch(() => undefined);
  const rows: Row[] = [];
  for (const id of ids) rows.push(...(await recipients(url, id)));
  const s = sim.stats();
  t.equal(s.duplicates, 0, 'no segment submitted twice');
  t.equal(s.uniqueSegments, total, 'every recipient reached the SMSC once');
  const c = ledger.compare(rows, 1);
  t.equal(c.total, total, 'every recipient read back');
  t.equal(c.notFinal, 0, 'every recipient final');
  t.equal(c.wrong, 0, `every recipient has exactly the state its receipts said ${c.examples.join('; ')}`);
  t.ok(c.states.has('undeliverable') && c.states.has('expired') && c.states.has('delivered'), `not all delivered: ${[...c.states].join(', ')}`);
});
