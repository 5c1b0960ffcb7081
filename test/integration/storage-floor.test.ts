/**
 * The free-space floor end to end (storage.minFreeMiB, src/storage/health.ts):
 * a gateway whose data directory has less free space than the floor starts
 * not ready, with the reason, and refuses writes 503 STORAGE_FULL before any
 * LMDB write could fail for want of room (lmdb's native code does not survive
 * a page write that fails outright cleanly: docs/DEPLOY.md). The real statfs
 * of the test's file system is read; the floor is set above it rather than
 * filling a disk.
 */
import t from 'tap';
import { tmpdir } from 'node:os';
import { statfsFreeBytes } from '../../src/storage/health.js';
import { numberAt, startTestGateway } from '../support/gateway.js';

const MAX_FLOOR_MIB = 1_048_576; // the schema's maximum (1 TiB)
const freeMiB = (await statfsFreeBytes(tmpdir())) / 2 ** 20;

t.test('a floor above the free space: not ready from the start, writes 503 STORAGE_FULL, reads answered', {
  skip: freeMiB >= MAX_FLOOR_MIB ? `the file system has ${freeMiB.toFixed(0)} MiB free: no floor above that can be set` : false,
}, async (t) => {
  const gw = await startTestGateway(t, { config: { storage: { minFreeMiB: MAX_FLOOR_MIB, freeSpaceCheckMs: 200 } } });
  const ready = await fetch(`${gw.url}/readyz`);
  t.equal(ready.status, 503, 'not ready');
  const body = (await ready.json()) as Record<string, unknown>;
  t.equal(body['storage'], 'full');
  t.match(String(body['storageReason']), /free space below storage\.minFreeMiB: [\d.]+ MiB free, 1048576 MiB kept/);
  const sent = await gw.send({ to: [numberAt(1)], text: 'floor' });
  t.equal(sent.status, 503);
  t.equal((sent.json as { error?: { code?: string } }).error?.code, 'STORAGE_FULL');
  t.equal(sent.headers.get('retry-after'), '30');
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  t.match(metrics, /smsgw_storage_full 1/);
  t.match(metrics, /smsgw_storage_free_bytes \d/);
  t.match(metrics, /smsgw_storage_write_failures_total 0/, 'no write failed: the floor came first');
  t.equal((await gw.request('GET', '/v1/messages/00000000000000000000000000')).status < 500, true, 'reads are answered');
});

t.test('the default floor (256 MiB) on a file system with room: ready, sends accepted', {
  skip: freeMiB < 1024 ? `only ${freeMiB.toFixed(0)} MiB free here` : false,
}, async (t) => {
  const gw = await startTestGateway(t);
  t.equal((await fetch(`${gw.url}/readyz`)).status, 200);
  const sent = await gw.send({ to: [numberAt(2)], text: 'room' });
  t.equal(sent.status, 202);
});
