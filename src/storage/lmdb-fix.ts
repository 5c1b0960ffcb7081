/**
 * The gateway needs lmdb-js as fixed by scripts/patch-lmdb.mjs (run by
 * `npm install` / `npm ci` as postinstall): unfixed, a failed commit followed
 * by a successful one can resolve the failed commit's writes as committed,
 * and an acknowledged receipt or message is lost (the script says why).
 * Storage is not opened without the fix.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { GatewayError } from '../core/errors.js';

/** The text scripts/patch-lmdb.mjs writes into lmdb's write path. */
export const LMDB_FIX_MARKER = 'smsgw: queue transaction ends at the tail';

/** Files found fixed (the check reads a file once per process). */
const checked = new Set<string>();

/** lmdb's ESM write path (what `import 'lmdb'` runs under Node). */
export function lmdbWriteFile(): string {
  const require = createRequire(import.meta.url);
  // lmdb's exports do not list package.json: its CommonJS entry is dist/index.cjs.
  return join(dirname(dirname(require.resolve('lmdb'))), 'write.js');
}

/** Throws unless the installed lmdb (or `file`) carries the fix. */
export function assertLmdbFixed(file = lmdbWriteFile()): void {
  if (checked.has(file)) return;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new GatewayError('INTERNAL', `cannot read lmdb's write path (${file}) to check its commit fix`, { cause: e });
  }
  if (!text.includes(LMDB_FIX_MARKER)) {
    throw new GatewayError(
      'INTERNAL',
      `the installed lmdb lacks the commit-outcome fix (${file}); run \`node scripts/patch-lmdb.mjs\` (npm install runs it): without it a failed commit can be reported as committed and acknowledged writes lost`,
    );
  }
  checked.add(file);
}
