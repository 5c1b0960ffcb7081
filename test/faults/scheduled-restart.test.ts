/**
 * Scheduled messages survive a kill -9: a gateway child process accepts 200
 * messages scheduled a few seconds ahead (plus one it cancels), is killed
 * with SIGKILL before their time, restarted on the same data directory, and
 * each scheduled recipient is then submitted exactly once — none lost, none
 * twice, the cancelled one never. A second kill lands while due messages
 * are being released (the release publishes deterministic job ids, so a
 * repeat after the crash is de-duplicated by the queue).
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SmscSimulator } from '../../src/smpp/simulator.js';
import { numberAt } from '../support/gateway.js';
import type { MessageStatus } from '../support/api-types.js';
import { api, simulatorAccountConfig, startGatewayProcess, waitComplete } from '../support/gateway-process.js';

t.test('scheduled messages across kill -9 and restart are sent once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-sched-'));
  const sim = new SmscSimulator({ host: '127.0.0.1', port: 0, systemId: 'smsgw', password: 'secret', dlrDelayMs: 5, recentCapacity: 5000 });
  const { port: simPort } = await sim.start();
  t.teardown(async () => {
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const gw = await startGatewayProcess(t, {
    role: 'all',
    config: {
      dataDir: join(dir, 'data'),
      log: { level: 'error' },
      simulator: { enabled: false },
      office: { schedule: { pollMs: 50 } },
      smpp: { accounts: [simulatorAccountConfig(simPort)] },
    },
  });
  const url = gw.url as string;
  const N = 200;
  // Two waves: one due after the first restart, one due right around the second kill. Room for
  // 201 requests, a kill and a restart before the first (a loaded 2-core CI machine took > 6 s).
  const firstAt = new Date(Date.now() + 12_000).toISOString();
  const secondAt = new Date(Date.now() + 15_000).toISOString();
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    const r = await api<{ id: string }>(url, 'POST', '/v1/messages', { to: [numberAt(i)], text: `sched ${i}`, scheduleAt: i % 2 === 0 ? firstAt : secondAt }, { 'idempotency-key': `sched-${i}` });
    t.equal(r.status, 202, JSON.stringify(r.json), { diagnostic: false });
    ids.push(r.json.id);
  }
  const cancelled = await api<{ id: string }>(url, 'POST', '/v1/messages', { to: [numberAt(9999)], text: 'cancel me', scheduleAt: firstAt });
  t.equal((await api(url, 'DELETE', `/v1/messages/${cancelled.json.id}`)).status, 200);
  t.equal(sim.recentSubmits().length, 0, 'nothing sent early');

  await gw.kill('SIGKILL');
  await gw.restart();
  const status = await api<MessageStatus>(url, 'GET', `/v1/messages/${ids[0]}`);
  t.ok(Date.now() < Date.parse(firstAt), 'the restart finished before the first wave was due (else the next check says nothing)');
  t.equal(status.json.status, 'scheduled', 'still scheduled after the restart');
  // Kill again just as the second wave comes due. The SMSC is silent meanwhile (it takes no submit_sm):
  // what is tested here is the scheduler's release across a crash, not the SMPP window, whose
  // submitted-but-unrecorded segments a kill may resend (bounded, tested in gateway-kill.test.ts).
  // A kill that landed while the wave's submit_sm were on the wire made this test fail now and then.
  sim.setSilent(true);
  await sleep(Math.max(0, Date.parse(secondAt) - Date.now() + 30));
  await gw.kill('SIGKILL');
  sim.setSilent(false);
  await gw.restart();
  for (const id of ids) await waitComplete(url, id, 60_000);
  const counts = sim.stats().submitsByDestination;
  let once = 0;
  for (let i = 0; i < N; i++) if ((counts.get(`86${numberAt(i)}`) ?? 0) === 1) once++;
  t.equal(once, N, 'every scheduled recipient submitted exactly once');
  t.equal(counts.get(`86${numberAt(9999)}`) ?? 0, 0, 'the cancelled one never');
  const sent = sim.recentSubmits().filter((s) => s.text.startsWith('sched '));
  t.equal(sent.length, N);
});
