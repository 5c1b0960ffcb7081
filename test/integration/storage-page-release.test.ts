/**
 * Pages given back (src/storage/page-release.ts, storage.releasePagesMs):
 * the data file's mapped pages leave the process's RSS while every row
 * still reads back as written, under any order of writes, reads, deletes
 * and releases (a property against a Map); and a gateway releases on its timer,
 * counted in /metrics, while it keeps accepting and completing sends.
 *
 * Reads /proc/self/smaps: Linux only.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import type { Database } from 'lmdb';
import { join } from 'node:path';
import { MappedPages, releasePagesEvery, sharedResidentBytes } from '../../src/storage/page-release.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { pageReleaseSkip as skip, residentOf } from '../support/resident.js';
import { tempEnvAt, type TempEnv } from '../support/temp-env.js';
import { numberAt, startTestGateway } from '../support/gateway.js';
import { until } from '../support/wait.js';

const MiB = 2 ** 20;

/** A fresh environment with a 4 GiB map (far more than the file), and its data file. */
const freshEnv = (t: Test): TempEnv => tempEnvAt(t, { mapSize: 4 * 2 ** 30 });

const valueOf = (i: number, size: number): string => `${i}:`.padEnd(size, String.fromCharCode(97 + (i % 26)));

const ROWS = 40_000;

/** A fresh environment whose database `rows` holds ROWS rows of 1,000 bytes (about 50 MiB of file). */
async function filledEnv(t: Test): Promise<{ file: string; db: Database<string, number> }> {
  const { file, env } = freshEnv(t);
  const db = env.openDB<string, number>({ name: 'rows' });
  for (let from = 0; from < ROWS; from += 5_000) {
    await db.transaction(() => {
      for (let i = from; i < from + 5_000; i++) void db.put(i, valueOf(i, 1_000));
    });
  }
  return { file, db };
}

t.test('the data file\'s pages leave the RSS and every row reads back the same', { skip }, async (t) => {
  const { file, db } = await filledEnv(t);
  let read = 0;
  for (const { key, value } of db.getRange()) if (value === valueOf(key, 1_000)) read++;
  t.equal(read, ROWS, 'every row as written');
  const mapped = new MappedPages(file);
  const before = residentOf(file);
  t.ok(before > 30 * MiB, `the reads mapped ${(before / MiB).toFixed(1)} MiB of the file in`);
  const advised = mapped.release();
  t.ok(advised >= 30 * MiB, `advised ${(advised / MiB).toFixed(1)} MiB (the file's size, not the 4 GiB map)`);
  t.ok(advised <= 4 * 2 ** 30 / 8, 'not the whole reserved map');
  const after = residentOf(file);
  t.ok(after < 1 * MiB, `${(after / MiB).toFixed(2)} MiB resident after the release`);
  // Read again: the pages come back from the page cache with the same bytes.
  let again = 0;
  for (let i = 0; i < ROWS; i += 7) if (db.get(i) === valueOf(i, 1_000)) again++;
  t.equal(again, Math.ceil(ROWS / 7), 'rows read after the release are the rows written');
  t.ok(residentOf(file) > after, 'reading maps pages in again');
});

t.test('property: any mix of writes, deletes, reads and releases reads what a Map holds', { skip }, async (t) => {
  const { file, env } = freshEnv(t);
  const mapped = new MappedPages(file);
  const op = fc.oneof(
    fc.record({ kind: fc.constant('put' as const), key: fc.integer({ min: 0, max: 3_000 }), size: fc.integer({ min: 1, max: 9_000 }), seed: fc.integer({ min: 0, max: 1e6 }) }),
    fc.record({ kind: fc.constant('remove' as const), key: fc.integer({ min: 0, max: 3_000 }) }),
    fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 3_000 }) }),
    fc.record({ kind: fc.constant('scan' as const) }),
    fc.record({ kind: fc.constant('release' as const) }),
    fc.record({ kind: fc.constant('commit' as const) }),
  );
  const db = env.openDB<string, number>({ name: 'p' });
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 400 }), async (ops) => {
    await db.clearAsync();
    const model = new Map<number, string>();
    for (const o of ops) {
      switch (o.kind) {
        case 'put': {
          const v = valueOf(o.seed, o.size); // large values take overflow pages
          void db.put(o.key, v);
          model.set(o.key, v);
          break;
        }
        case 'remove':
          void db.remove(o.key);
          model.delete(o.key);
          break;
        case 'get':
          // A read sees the committed rows; the model holds what was written: commit first.
          await db.committed;
          if (db.get(o.key) !== model.get(o.key)) return false;
          break;
        case 'scan': {
          await db.committed;
          let n = 0;
          for (const { key, value } of db.getRange()) {
            if (model.get(key) !== value) return false;
            n++;
          }
          if (n !== model.size) return false;
          break;
        }
        case 'release':
          mapped.release();
          break;
        case 'commit':
          await db.committed;
          break;
      }
    }
    await db.committed;
    mapped.release();
    for (const [k, v] of model) if (db.get(k) !== v) return false;
    return [...db.getKeys()].length === model.size;
  }), { numRuns: 60, seed: 2026_12_07 });
  t.pass('every read matched the model');
});

t.test('between the timed releases, pages are given back as soon as they grew by the budget (storage.releaseAboveMiB)', { skip }, async (t) => {
  const { file, db } = await filledEnv(t);
  const mapped = new MappedPages(file);
  mapped.release();
  t.ok(sharedResidentBytes() !== undefined, '/proc/self/statm read');
  const readAll = (): number => {
    let n = 0;
    for (const { key, value } of db.getRange()) if (value === valueOf(key, 1_000)) n++;
    return n;
  };
  // Without a budget, a timer an hour away: what the reads mapped in stays.
  const none = createMetrics({ defaultMetrics: false });
  const stopNone = releasePagesEvery({ mapped, intervalMs: 3_600_000, metrics: none, checkMs: 10 });
  t.equal(readAll(), ROWS);
  await new Promise((r) => setTimeout(r, 100));
  t.ok(residentOf(file) > 30 * MiB, `no budget: ${(residentOf(file) / MiB).toFixed(1)} MiB of the file stay resident`);
  stopNone();
  mapped.release();

  // A budget of 8 MiB, checked every 10 ms: the same reads leave little resident soon after.
  const metrics = createMetrics({ defaultMetrics: false });
  const stop = releasePagesEvery({ mapped, intervalMs: 3_600_000, aboveBytes: 8 * MiB, checkMs: 10, metrics });
  t.teardown(stop);
  t.equal(readAll(), ROWS, 'every row as written');
  await until('the budget release', async () => residentOf(file) < 8 * MiB, 2_000);
  t.ok(residentOf(file) < 8 * MiB, `${(residentOf(file) / MiB).toFixed(2)} MiB of the file resident after the budget release`);
  t.ok(((await metrics.storagePageReleasesOverBudget.get()).values[0]?.value ?? 0) >= 1, 'counted as a release over budget');
  t.equal((await none.storagePageReleasesOverBudget.get()).values[0]?.value ?? 0, 0, 'none counted without a budget');
  // Reads in steps: the resident part never stays far above the budget for long.
  for (let i = 0; i < ROWS; i += 3) if (db.get(i) !== valueOf(i, 1_000)) t.fail(`row ${i}`);
  await until('released again', async () => residentOf(file) < 8 * MiB, 2_000);
  t.pass('released again after more reads');
});

t.test('the budget trigger: a release when the file-backed pages grew by aboveBytes since the last one, and only then', { skip }, async (t) => {
  let shared = 100 * MiB;
  let releases = 0;
  const mapped = { release: () => { releases++; shared = 100 * MiB; return 0; } } as unknown as MappedPages;
  const stop = releasePagesEvery({ mapped, intervalMs: 3_600_000, aboveBytes: 16 * MiB, checkMs: 5, sharedResident: () => shared });
  t.teardown(stop);
  const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 30));
  shared = 100 * MiB + 16 * MiB - 4096;
  await tick();
  t.equal(releases, 0, 'a page short of the budget: none');
  shared = 100 * MiB + 16 * MiB;
  await tick();
  t.equal(releases, 1, 'at the budget: one release, which resets the baseline');
  await tick();
  t.equal(releases, 1, 'none again until the pages grow by the budget again');
  shared = 90 * MiB;
  await tick();
  t.equal(releases, 1, 'fewer pages than the baseline: none');
  stop();
  const stopOff = releasePagesEvery({ mapped, intervalMs: 3_600_000, aboveBytes: 0, checkMs: 5, sharedResident: () => shared });
  shared = 1_000 * MiB;
  await tick();
  stopOff();
  t.equal(releases, 1, 'aboveBytes 0: on the timer only');
});

t.test('a gateway gives pages back on its timer while it sends', { skip }, async (t) => {
  const gw = await startTestGateway(t, { config: { storage: { releasePagesMs: 50 } } });
  const file = join(gw.dataDir, 'gateway.lmdb');
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const sent = await gw.send({ to: [numberAt(i)], text: `pages ${i}` });
    t.equal(sent.status, 202);
    ids.push((sent.json as { id: string }).id);
  }
  for (const id of ids) await gw.waitComplete(id);
  const released = async (): Promise<number> => {
    const m = /smsgw_storage_page_releases_total\{result="ok"\} (\d+)/.exec(await (await fetch(`${gw.url}/metrics`)).text());
    return m ? Number(m[1]) : 0;
  };
  const first = await released();
  await until('releases go on', async () => (await released()) > first + 2, 5_000);
  t.ok(first > 0, `released ${first} times while sending`);
  t.ok(residentOf(file) < 8 * MiB, `${(residentOf(file) / MiB).toFixed(2)} MiB of the data file resident`);
  const status = await gw.request('GET', `/v1/messages/${ids[0]}`);
  t.equal(status.status, 200, 'a status read after releases');
});

t.test('releasePagesMs 0: never', { skip }, async (t) => {
  const gw = await startTestGateway(t, { config: { storage: { releasePagesMs: 0 } } });
  const sent = await gw.send({ to: [numberAt(1)], text: 'no release' });
  t.equal(sent.status, 202);
  await new Promise((r) => setTimeout(r, 200));
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  t.notMatch(text, /smsgw_storage_page_releases_total\{result="ok"\} [1-9]/, 'no release counted');
});
