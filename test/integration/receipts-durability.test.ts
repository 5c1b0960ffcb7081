/**
 * `flushed()` means durable: a child process writes through the store —
 * ingest puts and group-commit operations it never awaited — awaits
 * `flushed()`, then SIGKILLs itself (no close, no exit handlers). A fresh
 * environment opened here afterwards must hold all of it.
 *
 * What this proves and what it cannot: the kill shows that `flushed()` covers
 * operations still in the store's own write queue (they are handed over and
 * committed before it resolves) and that nothing depends on a clean shutdown.
 * Surviving power loss additionally rests on lmdb's `flushed` (fsync after
 * an overlappingSync commit), which a test cannot cut the power to check.
 *
 * The same file is the child: run with RECEIPTS_CHILD_DIR set it writes and
 * kills itself instead of running tests (tap is imported only in the parent).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from 'lmdb';
import { ReceiptStore } from '../../src/receipts/store.js';
import type { MessageRecord } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

const T0 = 1_700_000_000_000;
const MSG: MessageRecord = {
  id: 'durable-1', tenant: 'tax-bureau', tier: 'urgent', channel: 'sms', encoding: 'gsm7', segments: 1, recipients: 3,
  createdAt: T0, expiresAt: T0 + 3_600_000, reference: 'flood-warning',
};

function openStore(dir: string): { env: ReturnType<typeof open>; store: ReceiptStore } {
  const env = open({ path: dir, maxDbs: 32 });
  const store = ReceiptStore.open({
    env, metrics: createMetrics({ defaultMetrics: false }), logger: createLogger({ level: 'silent' }),
    now: () => T0 + 10_000, earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000,
  });
  return { env, store };
}

async function child(dir: string): Promise<void> {
  const { store } = openStore(dir);
  store.putMessage(MSG, ['8613800000000', '8613800000001', '8613800000002']);
  store.putIdempotency('tax-bureau', 'idem-1', { id: MSG.id }, T0 + 86_400_000);
  // None of these is awaited: flushed() must hand them over and cover them.
  void store.recordSegments([{ kind: 'submitted', messageId: MSG.id, index: 0, segment: 1, segments: 1, account: 'cmcc-1', opId: 'K0', at: T0 + 1_000 }]);
  void store.applyReceipt({ account: 'cmcc-1', messageId: 'K0', state: 'delivered', doneAt: T0 + 2_000 });
  void store.finalizeRecipients(MSG.id, [{ index: 2, state: 'rejected', error: 'police channel' }]);
  await store.flushed();
  fs.writeFileSync(path.join(dir, 'flushed.marker'), 'flushed');
  process.kill(process.pid, 'SIGKILL');
}

const childDir = process.env.RECEIPTS_CHILD_DIR;
if (childDir !== undefined) {
  await child(childDir);
} else {
  const { default: t } = await import('tap');

  t.test('after flushed(), a killed writer loses nothing', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-receipts-durable-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const self = fileURLToPath(import.meta.url);
    const proc = spawn(process.execPath, ['--import', 'tsx', self], {
      cwd: process.cwd(),
      env: { ...process.env, RECEIPTS_CHILD_DIR: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      proc.on('exit', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    t.equal(signal, 'SIGKILL', `child killed itself (code ${code}) ${stderr}`);
    t.ok(fs.existsSync(path.join(dir, 'flushed.marker')), 'the kill came after flushed() resolved');

    const { env, store } = openStore(dir);
    t.teardown(async () => {
      await store.close();
      await env.close();
    });
    t.same(store.getMessage(MSG.id), MSG);
    t.same(store.getIdempotency('tax-bureau', 'idem-1'), { id: MSG.id });
    t.match(store.getRecipient(MSG.id, 0), { state: 'delivered', segs: [{ state: 'delivered', opId: 'K0' }] });
    t.equal(store.getRecipient(MSG.id, 1)?.state, 'accepted');
    t.match(store.getRecipient(MSG.id, 2), { state: 'rejected', error: 'police channel' });
  });
}
