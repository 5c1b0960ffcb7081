/**
 * scripts/patch-lmdb.mjs (postinstall) and the gateway's check that the
 * installed lmdb carries its fix (src/storage/lmdb-fix.ts). What the fix does
 * is proven in test/faults/lmdb-commit-outcomes.test.ts.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertLmdbFixed } from '../../src/storage/lmdb-fix.js';

const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'patch-lmdb.mjs');

/** lmdb 3.5.6's queueCommitResolution, as released (tab-indented). */
const RELEASED = [
  '\tfunction queueCommitResolution(resolution) {',
  '\t\tif (!(resolution.flag & HAS_TXN)) {',
  '\t\t\tresolution.flag = HAS_TXN;',
  '\t\t\tif (txnResolution) {',
  '\t\t\t\ttxnResolution.nextTxn = resolution;',
  '\t\t\t\t//outstandingWriteCount = 0',
  '\t\t\t} else txnResolution = resolution;',
  '\t\t}',
  '\t}',
  '',
].join('\n');

function patch(file: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, file], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

t.test('the released code is refused by the check, patched once, then accepted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-lmdb-fix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'write.js');
  writeFileSync(file, RELEASED);
  t.throws(() => assertLmdbFixed(file), /lacks the commit-outcome fix/);
  const first = patch(file);
  t.equal(first.status, 0, first.out);
  t.match(first.out, /: patched/);
  const text = readFileSync(file, 'utf8');
  t.notMatch(text, /txnResolution\.nextTxn = resolution/, 'no longer linked after the head');
  t.match(text, /while \(last\.nextTxn\) last = last\.nextTxn;\n\t+last\.nextTxn = resolution;/, 'linked after the last one queued');
  // The patched function links ends in order: head → first → second.
  const module = join(dir, 'queue.mjs');
  writeFileSync(module, `let txnResolution; const HAS_TXN = 8;\n${text}\nexport const q = queueCommitResolution; export const head = () => txnResolution;\n`);
  const { q, head } = (await import(module)) as { q: (r: object) => void; head: () => { nextTxn?: { nextTxn?: unknown } } };
  const a = { flag: 0 };
  const b = { flag: 0 };
  const c = { flag: 0 };
  q(a);
  q(b);
  q(c);
  t.equal(head(), a);
  t.equal(head().nextTxn, b);
  t.equal(head().nextTxn?.nextTxn, c, 'the third end is not dropped');
  t.doesNotThrow(() => assertLmdbFixed(file));
  const again = patch(file);
  t.equal(again.status, 0);
  t.match(again.out, /: already/, 'idempotent');
  t.equal(readFileSync(file, 'utf8'), text);
});

t.test('code that no longer looks as expected fails the install', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-lmdb-fix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'write.js');
  writeFileSync(file, RELEASED.replace('txnResolution.nextTxn = resolution;', 'txnTail.nextTxn = resolution;'));
  const r = patch(file);
  t.equal(r.status, 1, r.out);
  t.match(r.out, /found 0/);
});

t.test('the installed lmdb carries the fix', async (t) => {
  t.doesNotThrow(() => assertLmdbFixed());
});
