/**
 * Child of test/faults/lmdb-commit-outcomes.test.ts, run under `ulimit -f`:
 * event turns of random size (plain puts, child transactions, removes) against
 * one LMDB environment opened as the gateway opens it, while the file keeps
 * hitting its size limit. Each write's promise is remembered with its keys;
 * at the end every key is read back. Prints one JSON line:
 * { turns, ok, failed, pending, okAfterFailure, lost, ghosts, examples }.
 *
 *   lost:   a write resolved (committed) whose keys are not there
 *   ghosts: a write rejected (failed) whose keys are there
 *
 * argv: dataDir seed durationMs mapSizeMiB (0: lmdb's growing default)
 */
import { open } from 'lmdb';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';

const [dataDir, seedArg, durationArg, mapArg] = process.argv.slice(2);
if (dataDir === undefined) throw new Error('usage: lmdb-outcomes-child dataDir seed durationMs mapSizeMiB');
// A write past the limit raises SIGXFSZ; the gateway ignores it too (src/app/crash-policy.ts).
process.on('SIGXFSZ', () => undefined);
// lmdb's own report of a failed commit (its commitError promise) has no other holder here.
process.on('unhandledRejection', () => undefined);

// mapSizeMiB 0: lmdb's default (a small map that grows), else a fixed map as the gateway's storage.mapSizeMiB.
const mapSizeMiB = Number(mapArg ?? 65_536);
const env = open({ path: join(dataDir, 'outcomes.lmdb'), maxDbs: 8, compression: false, ...(mapSizeMiB > 0 ? { mapSize: mapSizeMiB * 2 ** 20 } : {}) });
const plain = env.openDB<Buffer, string>({ name: 'plain', encoding: 'binary' });
const child = env.openDB<Buffer, string>({ name: 'child', encoding: 'binary' });

let seed = Number(seedArg ?? 1) >>> 0 || 1;
const rnd = (): number => {
  seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
  return seed / 2 ** 32;
};

interface Write {
  readonly db: typeof plain;
  readonly keys: readonly string[];
  readonly issuedAfterFailure: boolean;
  state: 'pending' | 'ok' | 'failed';
}
const writes: Write[] = [];
const removed = new Set<string>();
const live: string[] = [];
const value = Buffer.alloc(200, 0x61);
let failures = 0;
let next = 0;
let turns = 0;

const track = (w: Write, p: Promise<unknown>): void => {
  writes.push(w);
  p.then(() => {
    w.state = 'ok';
  }, () => {
    w.state = 'failed';
    failures++;
  });
};

const until = Date.now() + Number(durationArg ?? 4_000);
while (Date.now() < until && turns < 200_000) {
  turns++;
  const after = failures > 0;
  const size = rnd() < 0.8 ? 1 + Math.floor(rnd() * 5) : 50 + Math.floor(rnd() * 400);
  for (let i = 0; i < size; i++) {
    const key = `p${next++}`;
    live.push(key);
    track({ db: plain, keys: [key], issuedAfterFailure: after, state: 'pending' }, plain.put(key, value));
  }
  if (rnd() < 0.5) {
    const keys = Array.from({ length: 1 + Math.floor(rnd() * 10) }, () => `c${next++}`);
    track({ db: child, keys, issuedAfterFailure: after, state: 'pending' }, env.childTransaction(() => {
      for (const k of keys) child.putSync(k, value);
    }));
  }
  // Removals free pages, so that commits keep failing and succeeding in turn.
  if (rnd() < 0.3 && live.length > 100) {
    for (let i = 0; i < 20; i++) {
      const key = live.shift()!;
      removed.add(key);
      plain.remove(key).catch(() => undefined);
    }
  }
  if (rnd() < 0.2) await new Promise((r) => setTimeout(r, Math.floor(rnd() * 3)));
  else await turn();
}
// Every write settles within a few seconds (bounded wait).
for (let deadline = Date.now() + 10_000; Date.now() < deadline && writes.some((w) => w.state === 'pending'); ) await new Promise((r) => setTimeout(r, 50));

let ok = 0;
let failed = 0;
let pending = 0;
let okAfterFailure = 0;
let lost = 0;
let ghosts = 0;
const examples: string[] = [];
for (const w of writes) {
  if (w.state === 'pending') {
    pending++;
    continue;
  }
  const keys = w.keys.filter((k) => !removed.has(k));
  if (keys.length === 0) continue;
  if (w.state === 'ok') {
    ok++;
    if (w.issuedAfterFailure) okAfterFailure++;
    if (!keys.every((k) => w.db.get(k) !== undefined)) {
      lost++;
      if (examples.length < 5) examples.push(`resolved but missing: ${keys[0]!}`);
    }
  } else {
    failed++;
    if (keys.some((k) => w.db.get(k) !== undefined)) {
      ghosts++;
      if (examples.length < 5) examples.push(`rejected but present: ${keys[0]!}`);
    }
  }
}
console.log(JSON.stringify({ turns, ok, failed, pending, okAfterFailure, lost, ghosts, examples }));
process.exit(0);
