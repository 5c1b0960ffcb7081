/**
 * The storage state (src/storage/health.ts) on a real LMDB environment, with
 * failures injected the way lmdb reports them (the real disk-full run is
 * test/faults/storage-full.test.ts): a failure flips it, it stays full
 * (sticky) until the probe write commits, tracked writes never become
 * unhandled rejections, and the error classification is exact.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { GatewayError, isStorageFailure } from '../../src/core/errors.js';
import { asGatewayError } from '../../src/ingest/intake.js';
import { attachStorageHealth, storageHealth, trackWrite } from '../../src/storage/health.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

function commitFailed(cause: Error): Error {
  const inner = Promise.reject(cause);
  inner.catch(() => undefined); // lmdb's commitError is a rejected promise; these tests only read it
  return Object.assign(new Error('Commit failed (see commitError for details)'), { commitError: inner });
}

t.test('isStorageFailure: lmdb commit failures and disk errnos, nothing else', async (t) => {
  t.ok(isStorageFailure(commitFailed(Object.assign(new Error('Input/output error'), { code: 5 }))));
  t.ok(isStorageFailure(Object.assign(new Error('x'), { code: 'ENOSPC' })));
  t.ok(isStorageFailure(Object.assign(new Error('x'), { code: 28 })));
  t.ok(isStorageFailure(Object.assign(new Error('x'), { code: -30792 })), 'MDB_MAP_FULL');
  t.ok(isStorageFailure(new Error('MDB_MAP_FULL: Environment mapsize limit reached')));
  t.ok(isStorageFailure(new GatewayError('STORAGE_FULL')));
  t.notOk(isStorageFailure(new Error('a bug')));
  t.notOk(isStorageFailure(Object.assign(new Error('x'), { code: 'ECONNRESET' })));
  t.notOk(isStorageFailure(new GatewayError('INTERNAL')));
  t.notOk(isStorageFailure('Commit failed'));
  t.equal(asGatewayError(Object.assign(new Error('x'), { code: 'ENOSPC' })).code, 'STORAGE_FULL', 'the door answers STORAGE_FULL, not INTERNAL');
  t.equal(asGatewayError(new GatewayError('INTERNAL', 'wrapped', { cause: commitFailed(new Error('EIO')) })).code, 'STORAGE_FULL');
  t.equal(asGatewayError(new Error('a bug')).code, 'INTERNAL');
});

t.test('a failure flips the state; it is sticky until the probe commits; metrics and readiness follow', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-health-'));
  const env = open({ path: join(dir, 'g.lmdb'), maxDbs: 8, compression: false });
  t.teardown(async () => {
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const metrics = createMetrics({ defaultMetrics: false });
  const health = attachStorageHealth(env, { metrics, probeIntervalMs: 60_000 });
  t.equal(storageHealth(env), health, 'one state per environment');
  t.equal(health.full, false);
  t.same(health.readiness(), { ok: true, detail: { storage: 'ok' } });
  t.doesNotThrow(() => health.assertWritable());

  // A tracked write that fails: handled (no unhandled rejection), flips the state.
  trackWrite(env, Promise.reject(commitFailed(Object.assign(new Error('No space left on device'), { code: 28 }))), 'test');
  await new Promise((r) => setTimeout(r, 10));
  t.equal(health.full, true, 'full after a failed write');
  t.match(health.reason, /write failed in test: No space left on device \(28\)/);
  const r = health.readiness();
  t.equal(r.ok, false);
  t.equal(r.detail['storage'], 'full');
  const err = t.throws(() => health.assertWritable()) as GatewayError & { retryAfterS: number };
  t.equal(err.code, 'STORAGE_FULL');
  t.equal(err.status, 503);
  t.equal(err.retryAfterS, 30);
  t.match(await metrics.registry.getSingleMetricAsString('smsgw_storage_full'), /smsgw_storage_full 1/);

  // Sticky: a write that commits does not clear it; only the probe does.
  await env.openDB({ name: 'x' }).put('k', 1);
  t.equal(health.full, true, 'still full after an ordinary commit');
  t.equal(await health.probe(), true, 'the probe commits');
  t.equal(health.full, false, 'cleared by the probe');
  t.equal(health.reason, undefined);
  t.match(await metrics.registry.getSingleMetricAsString('smsgw_storage_full'), /smsgw_storage_full 0/);
  t.match(await metrics.registry.getSingleMetricAsString('smsgw_storage_write_failures_total'), /smsgw_storage_write_failures_total 1/);

  // absorb: lmdb's own promises (the crash policy asks); a bug is not absorbed.
  t.equal(health.absorb(commitFailed(new Error('Input/output error'))), true);
  t.equal(health.full, true);
  t.equal(health.absorb(new Error('a bug')), false);
  t.equal(await health.probe(), true);
  t.equal(health.full, false);

  // A failure that is not storage is logged, not a state change.
  t.equal(health.failed(new Error('a bug'), 'test'), false);
  t.equal(health.full, false);
  health.close();
});
