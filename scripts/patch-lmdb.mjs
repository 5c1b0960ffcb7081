#!/usr/bin/env node
/**
 * Fixes lmdb-js (3.5.6, the newest release) so that every write's promise
 * settles with the outcome of the LMDB transaction it was in. Run by
 * `postinstall`; idempotent; exits 1 when lmdb's code no longer looks as
 * expected (then review the fix against the new release).
 *
 * The bug (lmdb/write.js, `queueCommitResolution`): the end of each
 * transaction handed to the write thread is queued so that the main thread
 * can settle that transaction's writes when the thread marks it committed or
 * failed. A new transaction end was linked after the HEAD of that queue, not
 * its tail. With overlapping sync (the default on Linux) the next
 * transactions run while the previous one is still being flushed, so three
 * can be waiting; then the middle one was dropped from the queue and its
 * writes were settled with the outcome of the one after it. A failed commit
 * (disk full) followed by a successful one resolved the failed writes as
 * committed: the gateway answered deliver_sm ESME_ROK (or 202) for rows that
 * were never written, and the storage state never saw the failure. The
 * reverse also happened (committed writes rejected). Seen in
 * test/faults/storage-full.test.ts (recipients left 'submitted' although
 * their receipts were acknowledged) and proven by
 * test/faults/lmdb-commit-outcomes.test.ts.
 *
 * The fix links a new transaction end after the last one queued.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const LMDB_FIX_MARKER = 'smsgw: queue transaction ends at the tail';

const BUGGY = /(\n(\t+)if \(txnResolution\) \{\n\t+)txnResolution\.nextTxn = resolution;/;

/** The two builds of lmdb's write path: ESM (node-index.js imports write.js) and the CommonJS bundle. */
export function lmdbWriteFiles(from = process.cwd()) {
  // lmdb's exports do not list package.json: resolve its CommonJS entry (dist/index.cjs) and go up.
  const require = createRequire(join(from, 'package.json'));
  const dir = dirname(dirname(require.resolve('lmdb')));
  return [join(dir, 'write.js'), join(dir, 'dist', 'index.cjs')];
}

/** 'patched' | 'already' for one file; throws when the code to fix is not found. */
export function patchFile(file) {
  const text = readFileSync(file, 'utf8');
  if (text.includes(LMDB_FIX_MARKER)) return 'already';
  const matches = text.match(new RegExp(BUGGY.source, 'g')) ?? [];
  if (matches.length !== 1) throw new Error(`${file}: expected one head-linked queueCommitResolution, found ${matches.length}`);
  const fixed = text.replace(BUGGY, (_all, head, indent) =>
    `${head}// ${LMDB_FIX_MARKER} (scripts/patch-lmdb.mjs)\n${indent}\tlet last = txnResolution;\n${indent}\twhile (last.nextTxn) last = last.nextTxn;\n${indent}\tlast.nextTxn = resolution;`);
  writeFileSync(file, fixed);
  return 'patched';
}

// `node scripts/patch-lmdb.mjs [file…]`: the installed lmdb, or the files named (tests).
if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const files = process.argv.length > 2 ? process.argv.slice(2) : lmdbWriteFiles();
    for (const file of files) console.log(`patch-lmdb: ${file}: ${patchFile(file)}`);
  } catch (e) {
    console.error(`patch-lmdb: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
