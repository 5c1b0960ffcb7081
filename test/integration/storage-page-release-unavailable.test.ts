/**
 * Where koffi cannot load (no prebuilt binary for the platform, a broken
 * install), pages are not given back and the gateway says so once: the
 * timer is not started, `unavailable` is counted, a warning names the
 * reason, and nothing throws. koffi is replaced by a module that throws on
 * load (tap's mockImport).
 */
import t from 'tap';
import { pino } from 'pino';
import { createMetrics } from '../../src/telemetry/metrics.js';

t.test('no koffi: counted, logged once, never thrown', async (t) => {
  const mod = await t.mockImport<typeof import('../../src/storage/page-release.js')>('../../src/storage/page-release.js', {
    'node:module': {
      createRequire: () => (name: string) => {
        throw new Error(`Cannot find module '${name}'`);
      },
    },
  });
  const reason = mod.pageReleaseUnavailable();
  t.match(reason ?? '', process.platform === 'linux' ? /koffi could not load .*Cannot find module 'koffi'/ : /Linux only/, 'the reason says what failed');
  t.equal(mod.trimHeap(), false, 'trimHeap does nothing');
  const metrics = createMetrics();
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
  const stop = mod.releasePagesEvery({ mapped: { release: () => t.fail('release must not run') } as unknown as InstanceType<typeof mod.MappedPages>, intervalMs: 10, metrics, logger });
  await new Promise((r) => setTimeout(r, 60));
  stop();
  const text = await metrics.registry.metrics();
  t.match(text, /smsgw_storage_page_releases_total\{result="unavailable"\} 1/, 'counted once');
  t.notMatch(text, /result="ok"/, 'no release ran');
  t.equal(lines.length, 1, 'one warning');
  t.match(JSON.parse(lines[0]!) as object, { level: 40, reason });
});
