/**
 * The storage state (src/storage/health.ts) on a real LMDB environment, with
 * failures injected the way lmdb reports them (the real disk-full run is
 * test/faults/storage-full.test.ts): a failure flips it, it stays full
 * (sticky) until the probe write commits, tracked writes never become
 * unhandled rejections, and the error classification is exact.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { GatewayError, isStorageFailure } from '../../src/core/errors.js';
import { asGatewayError } from '../../src/ingest/intake.js';
import { attachStorageHealth, fileSizeRoomBytes, statfsFreeBytes, storageHealth, trackWrite } from '../../src/storage/health.js';
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

/** An LMDB environment in a fresh directory, closed and removed when `t` ends. */
function freshEnv(t: Test): RootDatabase {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-health-'));
  const env = open({ path: join(dir, 'g.lmdb'), maxDbs: 8, compression: false });
  t.teardown(async () => {
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return env;
}

t.test('a failure flips the state; it is sticky until the probe commits; metrics and readiness follow', async (t) => {
  const env = freshEnv(t);
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

t.test('free-space floor: below it the state is full before any write fails; the probe clears it only once the floor is free', async (t) => {
  const env = freshEnv(t);
  const MiB = 2 ** 20;
  let free = 1024 * MiB;
  let reads = 0;
  const metrics = createMetrics({ defaultMetrics: false });
  const health = attachStorageHealth(env, {
    metrics, probeIntervalMs: 60_000, minFreeBytes: 256 * MiB, freeSpaceCheckMs: 600_000,
    freeBytes: () => {
      reads++;
      return Promise.resolve(free);
    },
  });
  t.teardown(() => health.close());
  t.equal(await health.checkFreeSpace(), true, 'room');
  t.equal(health.full, false);
  t.match(await metrics.registry.getSingleMetricAsString('smsgw_storage_free_bytes'), new RegExp(`smsgw_storage_free_bytes ${1024 * MiB}`));

  free = 100 * MiB;
  t.equal(await health.checkFreeSpace(), false, 'below the floor');
  t.equal(health.full, true, 'full before any write failed');
  t.match(health.reason, /free space below storage\.minFreeMiB: 100\.0 MiB free, 256 MiB kept/);
  t.equal((t.throws(() => health.assertWritable()) as GatewayError).code, 'STORAGE_FULL');
  t.equal(health.readiness().ok, false);
  t.match(await metrics.registry.getSingleMetricAsString('smsgw_storage_write_failures_total'), /smsgw_storage_write_failures_total 0/, 'no write failed');

  // The probe does not write while the floor is not free, and does not clear the state.
  const probeDb = env.openDB<Buffer, string>({ name: 'storage.probe', encoding: 'binary' });
  const readsBefore = reads;
  t.equal(await health.probe(), false, 'the probe waits for the floor');
  t.ok(reads > readsBefore, 'the probe read the free space');
  t.equal(health.full, true);
  t.equal(probeDb.getCount(), 0, 'nothing written by the probe');
  t.match(health.reason, /100\.0 MiB free/);

  free = 300 * MiB;
  t.equal(await health.probe(), true, 'the floor is free again: the probe commits');
  t.equal(health.full, false);

  // A failed read decides nothing (logged once); the state follows failed commits meanwhile.
  const logged: string[] = [];
  health.configure({ logger: { error: (_o: unknown, m: string) => logged.push(m), info: (m: string) => logged.push(m), warn: () => undefined } as never });
  health.configure({ freeBytes: () => Promise.reject(new Error('EIO')) });
  t.equal(await health.checkFreeSpace(), true);
  t.equal(await health.checkFreeSpace(), true);
  t.equal(health.full, false);
  t.equal(logged.filter((m) => /cannot read the free space/.test(m)).length, 1, 'logged once per run of failures');
});

t.test('free-space floor: the timer reads it on its own; off with minFreeBytes 0', async (t) => {
  const env = freshEnv(t);
  let free = 10;
  const health = attachStorageHealth(env, { probeIntervalMs: 100, minFreeBytes: 1000, freeSpaceCheckMs: 100, freeBytes: () => Promise.resolve(free) });
  t.teardown(() => health.close());
  const until = async (cond: () => boolean): Promise<boolean> => {
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && !cond()) await new Promise((r) => setTimeout(r, 20));
    return cond();
  };
  t.ok(await until(() => health.full), 'full within a few checks');
  free = 5000;
  t.ok(await until(() => !health.full), 'cleared by the probe timer once there is room');
  health.configure({ minFreeBytes: 0 });
  free = 0;
  await new Promise((r) => setTimeout(r, 300));
  t.equal(health.full, false, 'not watched when the floor is 0');
  t.equal(await health.checkFreeSpace(), true);
});

t.test('statfsFreeBytes reads the data directory\'s file system', async (t) => {
  const free = await statfsFreeBytes(tmpdir());
  t.ok(Number.isFinite(free) && free > 0, `${free} bytes free`);
  await t.rejects(statfsFreeBytes(join(tmpdir(), 'no-such-dir-smsgw')), 'a missing path is an error (logged by the health, not a state)');
});

t.test('the file-size limit: the data file\'s room under it counts as free space when it is less', async (t) => {
  const env = freshEnv(t);
  const MiB = 2 ** 20;
  let free = 10_000 * MiB;
  let underLimit: number | undefined;
  const metrics = createMetrics({ defaultMetrics: false });
  const health = attachStorageHealth(env, {
    metrics, probeIntervalMs: 60_000, minFreeBytes: 256 * MiB, freeSpaceCheckMs: 600_000,
    freeBytes: () => Promise.resolve(free),
    fileRoomBytes: () => Promise.resolve(underLimit),
  });
  t.teardown(() => health.close());
  t.equal(await health.checkFreeSpace(), true, 'no limit: the disk decides');
  underLimit = 1_000 * MiB;
  t.equal(await health.checkFreeSpace(), true, 'a limit with room above the floor');
  underLimit = 200 * MiB;
  t.equal(await health.checkFreeSpace(), false, 'room under the limit below the floor');
  t.equal(health.full, true);
  t.match(health.reason, /room under the file-size limit below storage\.minFreeMiB: 200\.0 MiB left for the data file \(ulimit -f\), 256 MiB kept/);
  t.match(await metrics.registry.getSingleMetricAsString('smsgw_storage_write_failures_total'), /smsgw_storage_write_failures_total 0/, 'no write failed');
  t.equal(await health.probe(), false, 'the probe waits for room under the limit');
  underLimit = 300 * MiB;
  free = 100 * MiB;
  t.equal(await health.probe(), false, 'the disk is now the smaller room, and below the floor');
  t.match(health.reason, /100\.0 MiB free, 256 MiB kept/);
  free = 10_000 * MiB;
  t.equal(await health.probe(), true, 'both above the floor: cleared');
  t.equal(health.full, false);
});

t.test('fileSizeRoomBytes: the limit from /proc/<pid>/limits less the file\'s size', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-limits-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const limits = join(dir, 'limits');
  const data = join(dir, 'data');
  const line = (soft: string): string => `Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax file size             ${soft.padEnd(20)} unlimited            bytes     \nMax core file size        0                    unlimited            bytes     \n`;
  writeFileSync(limits, line('unlimited'));
  t.equal(await fileSizeRoomBytes(data, limits), undefined, 'unlimited: no room to watch');
  writeFileSync(limits, line('1048576'));
  t.equal(await fileSizeRoomBytes(data, limits), 1_048_576, 'a missing data file has the whole limit');
  writeFileSync(data, Buffer.alloc(4096));
  t.equal(await fileSizeRoomBytes(data, limits), 1_048_576 - 4096);
  writeFileSync(limits, line('1000'));
  t.equal(await fileSizeRoomBytes(data, limits), 0, 'a file already past the limit has none (never negative)');
  t.equal(await fileSizeRoomBytes(data, join(dir, 'no-such-limits')), undefined, 'no /proc (not Linux): not watched');
  const own = await fileSizeRoomBytes(data);
  t.ok(own === undefined || own >= 0, `this process: ${String(own)}`);
});
