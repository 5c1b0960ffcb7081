/**
 * A fresh LMDB environment in a temp dir for one test, closed and its
 * directory removed at teardown — after whatever was opened on it and
 * handed to `closeFirst` (a receipt store: test/support/receipt-store.ts).
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
  /** Closes `what` at teardown before the environment (the last handed first). */
  closeFirst(what: () => unknown): void;
}

/** The environment and its data file; `options` go to lmdb's open over maxDbs 96, no compression. */
/** `t`: a tap test, or anything else with a teardown list (a fast-check run). */
export function tempEnvAt(t: Pick<Test, 'teardown'>, options: RootDatabaseOptions = {}): TempEnv {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-env-'));
  const file = join(dir, 'gateway.lmdb');
  const env = open({ maxDbs: 96, compression: false, ...options, path: file });
  const first: Array<() => unknown> = [];
  t.teardown(async () => {
    for (const close of first.reverse()) await close();
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { env, file, closeFirst: (what) => void first.push(what) };
}

/** A fresh environment (see tempEnvAt). */
export function tempEnv(t: Test, options: RootDatabaseOptions = {}): RootDatabase {
  return tempEnvAt(t, options).env;
}
