/**
 * The LMDB data file is mapped once for the life of the process: the
 * environment maps `storage.mapSizeMiB` of address space at start, so the map
 * never grows while the file does. (A growing map maps the file again while
 * the old mapping stays; their resident pages count twice in RSS: under
 * bench:peer the file-backed RSS reached twice the data file.)
 */
import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startConfiguredGateway } from '../support/configured-gateway.js';

const KEY = 'storage-map-test-key-0123456789';

function mappingsOf(file: string): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => line.endsWith(` ${file}`)).length;
}

t.test('the data file stays one mapping while it grows by megabytes', { skip: process.platform !== 'linux' ? 'reads /proc/self/maps' : false }, async (t) => {
  const gw = await startConfiguredGateway(t, {
    key: KEY,
    prefix: 'smsgw-map-',
    overrides: { auth: { apiKeys: [{ key: KEY, tenant: 'oa', tiers: ['*'] }] }, simulator: { enabled: false } },
  });
  const file = join(gw.dataDir, 'gateway.lmdb');
  const before = statSync(file).size;
  const text = '市政府关于做好冬季道路安全工作的通知：请各单位按要求落实值班制度，确保信息畅通。'.repeat(2);
  for (let round = 0; round < 40; round++) {
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => gw.request('POST', '/v1/messages', {
      to: Array.from({ length: 50 }, (_, k) => `1380013${String((round * 500 + i * 50 + k) % 10_000).padStart(4, '0')}`),
      text,
    })));
    for (const a of answers) if (a.status !== 202) t.fail(`POST answered ${a.status}: ${JSON.stringify(a.json)}`);
  }
  const after = statSync(file).size;
  t.ok(after - before > 4 * 2 ** 20, `the file grew by ${((after - before) / 2 ** 20).toFixed(1)} MiB`);
  t.equal(mappingsOf(file), 1, 'one mapping of the data file');
});
