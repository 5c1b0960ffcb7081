/**
 * A fresh LMDB environment in a temp dir for one test, closed and its
 * directory removed at teardown.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type RootDatabase, type RootDatabaseOptions } from 'lmdb';
import type { Test } from 'tap';

export interface TempEnv {
  readonly env: RootDatabase;
  /** The data file (`<dir>/gateway.lmdb`). */
  readonly file: string;
}

/** The environment and its data file; `options` go to lmdb's open over maxDbs 96, no compression. */
export function tempEnvAt(t: Test, options: RootDatabaseOptions = {}): TempEnv {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-env-'));
  const file = join(dir, 'gateway.lmdb');
  const env = open({ maxDbs: 96, compression: false, ...options, path: file });
  t.teardown(async () => {
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { env, file };
}

/** A fresh environment (see tempEnvAt). */
export function tempEnv(t: Test, options: RootDatabaseOptions = {}): RootDatabase {
  return tempEnvAt(t, options).env;
}
