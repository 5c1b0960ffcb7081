/**
 * docs/CALLBACKS.md as a contract: its Node verification example, run as
 * written, accepts what the gateway signs (with the current or the previous
 * secret) and rejects a tampered body, a wrong secret and a timestamp older
 * than 5 minutes.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { signBody, SIGNATURE_HEADER, TIMESTAMP_HEADER } from '../../src/outbound/webhook.js';

t.test('the Node example in docs/CALLBACKS.md verifies the gateway signature', async (t) => {
  const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'CALLBACKS.md'), 'utf8');
  const code = /### Node[^\n]*\n\n```js\n([\s\S]*?)```/.exec(doc)?.[1];
  t.ok(code, 'the example is there');
  t.ok(code!.split('\n').filter((l) => l.trim() !== '').length <= 12, 'about ten lines');
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-cbdoc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'verify.mjs');
  writeFileSync(file, code!);
  const { verify } = (await import(pathToFileURL(file).href)) as { verify: (h: Record<string, string>, body: string | Buffer, secrets: string[], nowSec?: number) => boolean };
  const now = 1_765_000_000;
  const body = JSON.stringify({ id: 'm1', status: 'complete', text: '会议通知' });
  const headers = (secret: string, ts: number): Record<string, string> => ({ [TIMESTAMP_HEADER]: String(ts), [SIGNATURE_HEADER]: signBody(secret, String(ts), body) });
  t.ok(verify(headers('current-secret-0123456789', now), body, ['current-secret-0123456789'], now));
  t.ok(verify(headers('current-secret-0123456789', now), Buffer.from(body), ['current-secret-0123456789'], now + 299), 'raw bytes, 299 s later');
  t.ok(verify(headers('old-secret-0123456789abc', now), body, ['current-secret-0123456789', 'old-secret-0123456789abc'], now), 'the previous secret during a rotation');
  t.notOk(verify(headers('current-secret-0123456789', now), body.replace('m1', 'm2'), ['current-secret-0123456789'], now), 'tampered body');
  t.notOk(verify(headers('wrong-secret-0123456789xx', now), body, ['current-secret-0123456789'], now), 'wrong secret');
  t.notOk(verify(headers('current-secret-0123456789', now - 301), body, ['current-secret-0123456789'], now), 'older than 5 minutes');
  t.notOk(verify({}, body, ['current-secret-0123456789'], now), 'no headers');
});
