/**
 * kill -9 against the embedded queue. A child process publishes and acks in a
 * loop (test/support/queue-embedded-child.ts) and reports each step on
 * stdout; the parent kills it at a seeded-random point, reopens the store and
 * checks exactly what the port promises:
 *
 * - a publish that resolved is durable: its entry is still stored, unless an
 *   ack for it was at least started (an ack may or may not have committed
 *   when its promise had not resolved yet);
 * - an ack that resolved is durable: that entry never comes back;
 * - nothing is stored that was never published;
 * - a delivery handed out before the kill counts: it comes back with
 *   deliveryCount ≥ 2 (fetch resolves only after the counts commit);
 * - opening reads a fixed handful of rows however large the backlog grows.
 *
 * Several rounds run against the same directory, so every round also restarts
 * on top of the previous crashes. Set SMSGW_KILL_SEED to replay another run.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { open } from 'lmdb';
import { EmbeddedQueue } from '../../src/queue/embedded/queue.js';
import { KILL_TEST_OPTIONS } from '../support/queue-embedded-child.js';
import { countLmdbReads } from '../support/lmdb-reads.js';
import { seededRandom } from '../support/seeded-random.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHILD = path.join(ROOT, 'test/support/queue-embedded-child.ts');
const ROUNDS = 5;
const SEED = Number(process.env['SMSGW_KILL_SEED'] ?? 20_240_611);

interface ChildRun {
  readonly lines: string[];
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly killedByUs: boolean;
  readonly stderr: string;
}

async function runChild(dir: string, round: number, seed: number, killAfterLines: number, killDelayMs: number): Promise<ChildRun> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, String(round), String(seed)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  let killedByUs = false;
  const kill = (): void => {
    if (killedByUs) return;
    killedByUs = true;
    setTimeout(() => child.kill('SIGKILL'), killDelayMs);
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop() ?? ''; // a line cut by the kill has no newline: never counted
    for (const line of parts) {
      lines.push(line);
      if (lines.length >= killAfterLines || line === 'D') kill();
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 20_000) stderr += chunk;
  });
  // Bound: a child that hangs before reaching the kill point is killed anyway (and the round fails).
  const bound = setTimeout(() => child.kill('SIGKILL'), 45_000);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (c, s) => resolve({ code: c, signal: s }));
  });
  clearTimeout(bound);
  return { lines, code, signal, killedByUs, stderr };
}

interface Inspection {
  readonly present: Map<string, number>;
  readonly depth: number;
  readonly openReads: number;
  readonly deliveredTwice: number;
}

/** Opens the store as a restarted gateway would and reads every entry through the port, acking nothing. */
async function inspect(dir: string): Promise<Inspection> {
  const raw = open({ path: dir, maxDbs: 16 });
  try {
    const { env, reads } = countLmdbReads(raw);
    const queue = await EmbeddedQueue.open({ env, options: KILL_TEST_OPTIONS });
    const openReads = reads();
    const present = new Map<string, number>();
    let depth = 0;
    let deliveredTwice = 0;
    for (const tier of KILL_TEST_OPTIONS.tiers) {
      depth += await queue.depth(tier);
      for (let i = 0; i < 1_000; i++) {
        const got = await queue.fetch(tier, 1_000, 0);
        if (got.length === 0) break;
        for (const d of got) {
          if (present.has(d.msgId)) deliveredTwice++;
          present.set(d.msgId, d.deliveryCount);
        }
      }
    }
    await queue.close();
    return { present, depth, openReads, deliveredTwice };
  } finally {
    await raw.close();
  }
}

t.test('embedded queue survives SIGKILL at random points', async (t) => {
  t.comment(`seed ${SEED}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-queue-kill-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rand = seededRandom(SEED);

  // What the children reported, over all rounds.
  const publishStarted = new Set<string>();
  const published = new Set<string>();
  const fetched = new Set<string>();
  const ackStarted = new Set<string>();
  const acked = new Set<string>();
  const openReads: number[] = [];
  const depths: number[] = [];

  for (let round = 0; round < ROUNDS; round++) {
    const killAfterLines = 2 + Math.floor(rand() * 250);
    const killDelayMs = Math.floor(rand() * 15);
    const run = await runChild(dir, round, SEED + round, killAfterLines, killDelayMs);
    t.ok(run.killedByUs && run.signal === 'SIGKILL', `round ${round}: child killed by us after ${run.lines.length} lines`, {
      code: run.code,
      signal: run.signal,
      stderr: run.stderr,
    });
    t.equal(run.lines[0], 'R', `round ${round}: child opened the queue`);
    for (const line of run.lines) {
      const [kind, ...ids] = line.split(' ');
      const into = { p: publishStarted, P: published, F: fetched, I: ackStarted, A: acked }[kind ?? ''];
      if (into !== undefined) for (const id of ids) into.add(id);
    }

    const seen = await inspect(dir);
    openReads.push(seen.openReads);
    depths.push(seen.depth);
    t.equal(seen.deliveredTwice, 0, `round ${round}: one fetch pass delivers each entry once`);
    t.equal(seen.present.size, seen.depth, `round ${round}: depth (${seen.depth}) equals the entries stored`);
    t.same([...published].filter((id) => !seen.present.has(id) && !ackStarted.has(id)), [], `round ${round}: every resolved publish is stored or was being acked`);
    t.same([...acked].filter((id) => seen.present.has(id)), [], `round ${round}: no resolved ack comes back`);
    t.same([...seen.present.keys()].filter((id) => !publishStarted.has(id)), [], `round ${round}: nothing stored that was never published`);
    t.same(
      [...fetched].filter((id) => (seen.present.get(id) ?? 2) < 2),
      [],
      `round ${round}: entries delivered before the kill come back with deliveryCount ≥ 2`,
    );
  }

  t.ok(published.size > 0 && acked.size > 0, `the children made progress (${published.size} published, ${acked.size} acked)`);
  t.ok(depths.some((d) => d > 0), `a backlog remained between rounds (${depths.join(', ')})`);
  // At most the meta row and the last key of each tier and of the dead letters, however large the backlog.
  t.ok(
    openReads.every((n) => n <= KILL_TEST_OPTIONS.tiers.length + 2),
    `open read at most ${KILL_TEST_OPTIONS.tiers.length + 2} rows every round (${openReads.join(', ')}) while the backlog was ${depths.join(', ')}`,
  );
});
