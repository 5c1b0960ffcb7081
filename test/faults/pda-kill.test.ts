/**
 * kill -9 of the server while it appends: every `deliver` that resolved
 * before the kill is in the outbox after a restart (durable), and each
 * batch is there whole or not at all (one transaction per batch).
 *
 * The same file is the child: with PDA_KILL_CHILD set it runs a PDA server
 * that registers a device, appends batches and reports each resolved one
 * over IPC until it is killed.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { MemoryStatusSink, startPdaServer } from '../../src/pda/server.js';

const BATCH = 50;
const config = (): ReturnType<typeof loadConfig>['pda'] =>
  loadConfig({ env: {}, overrides: { pda: { enabled: true, keySecret: 'q'.repeat(40) } } }).pda;

async function child(dataDir: string): Promise<void> {
  const s = await startPdaServer({ dataDir, config: config(), sink: new MemoryStatusSink(), logger: pino({ level: 'silent' }) });
  const { key } = await s.channel.registry.register({ deviceId: 'pda-kill', personId: 'off-kill', unit: 'u' });
  process.send?.({ key });
  for (let b = 0; b < 10_000; b++) {
    await s.channel.deliver(Array.from({ length: BATCH }, (_, i) => ({
      messageId: `b${b}-${i}`, index: 0, personId: 'off-kill', priority: (i % 3) as 0 | 1 | 2,
      expiresAt: Date.now() + 3_600_000, classification: 'police', senderUnit: 'u', body: `batch ${b} item ${i}`,
    })));
    process.send?.({ batch: b });
  }
}

if (process.env['PDA_KILL_CHILD']) {
  await child(process.env['PDA_KILL_CHILD']);
} else {
  const { default: t } = await import('tap');
  const { PdaClient } = await import('../../src/pda/client.js');

  t.test('deliveries that resolved before kill -9 are all there after a restart, batches whole', async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-kill-'));
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
    const proc = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, PDA_KILL_CHILD: dataDir },
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    t.teardown(() => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    });
    let key = '';
    let confirmed = -1;
    const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.once('exit', (_code, signal) => resolve(signal)));
    proc.on('message', (m: { key?: string; batch?: number }) => {
      if (m.key) key = m.key;
      if (m.batch !== undefined) {
        confirmed = m.batch;
        // Kill in the middle of the stream of appends, not at a quiet moment.
        if (confirmed === 7) proc.kill('SIGKILL');
      }
    });
    const deadline = Date.now() + 60_000;
    while (proc.exitCode === null && proc.signalCode === null && Date.now() < deadline) await sleep(20);
    t.equal(await exited, 'SIGKILL', 'the server was killed');
    t.ok(confirmed >= 7, `${confirmed + 1} batches confirmed before the kill`);

    const s = await startPdaServer({ dataDir, config: config(), sink: new MemoryStatusSink(), logger: pino({ level: 'silent' }) });
    t.teardown(() => s.stop());
    const ids: string[] = [];
    const c = new PdaClient({ url: s.url, deviceId: 'pda-kill', key, onMessage: (m) => ids.push(m.messageId) });
    const w = await c.connect();
    const expectAtLeast = (confirmed + 1) * BATCH;
    t.ok(w.backlog >= expectAtLeast, `backlog ${w.backlog} ≥ ${expectAtLeast}`);
    const until = Date.now() + 30_000;
    while (ids.length < w.backlog && Date.now() < until) await sleep(20);
    const byBatch = new Map<number, number>();
    for (const id of ids) {
      const b = Number(/^b(\d+)-/.exec(id)?.[1]);
      byBatch.set(b, (byBatch.get(b) ?? 0) + 1);
    }
    for (let b = 0; b <= confirmed; b++) t.equal(byBatch.get(b), BATCH, `batch ${b} (confirmed) complete`);
    t.ok([...byBatch.values()].every((n) => n === BATCH), 'no batch half-written');
    t.equal(new Set(ids).size, ids.length, 'no message twice');
    await c.close();
  });
}
