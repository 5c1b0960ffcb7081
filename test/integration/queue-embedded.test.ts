/**
 * The embedded LMDB queue: the shared WorkQueue conformance suite, then what
 * is specific to this adapter — restart cost independent of the backlog,
 * publish and ack waiting for the flush, delivery counts across restarts,
 * the bounded de-duplication sweep, and errors.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { open, type RootDatabase } from 'lmdb';
import { GatewayError } from '../../src/core/errors.js';
import { EmbeddedQueue } from '../../src/queue/embedded/queue.js';
import type { DeadLetter, QueueMessage } from '../../src/queue/port.js';
import { conformanceOptions, queueConformance } from '../support/queue-conformance.js';
import { countLmdbReads } from '../support/lmdb-reads.js';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-queue-'));
}

function openEnv(dir: string): RootDatabase {
  return open({ path: dir, maxDbs: 32 });
}

function msg(tier: string, msgId: string): QueueMessage {
  return { subject: `smsgw.work.${tier}.t.g`, tier, msgId, data: new TextEncoder().encode(msgId) };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

queueConformance(t, 'embedded', async (options) => {
  const dir = tempDir();
  let env = openEnv(dir);
  let queue = await EmbeddedQueue.open({ env, options });
  return {
    queue,
    restart: async () => {
      await queue.close();
      await env.close();
      env = openEnv(dir);
      queue = await EmbeddedQueue.open({ env, options });
      return queue;
    },
    cleanup: async () => {
      await queue.close();
      await env.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

t.test('embedded: opening reads O(1) rows whatever the backlog, and fetch reads only what it hands out', async (t) => {
  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const options = conformanceOptions({ ackWaitMs: 60_000 });

  /** Publishes `n` more entries (spread over two tiers), then measures a fresh open and a first fetch. */
  const grow = async (n: number, from: number): Promise<{ openReads: number; fetchReads: number; depth: number }> => {
    const env = openEnv(dir);
    try {
      const queue = await EmbeddedQueue.open({ env, options });
      for (let i = from; i < from + n; i += 1000) {
        await queue.publish(Array.from({ length: Math.min(1000, from + n - i) }, (_, k) => msg(k % 2 === 0 ? 'normal' : 'bulk', `m-${i + k}`)));
      }
      await queue.close();
    } finally {
      await env.close();
    }
    const raw = openEnv(dir);
    try {
      const { env, reads } = countLmdbReads(raw);
      const queue = await EmbeddedQueue.open({ env, options });
      const openReads = reads();
      const got = await queue.fetch('normal', 64, 0);
      const fetchReads = reads() - openReads;
      t.equal(got.length, 64, 'a full fetch');
      const depth = (await queue.depth('normal')) + (await queue.depth('bulk'));
      await queue.close();
      return { openReads, fetchReads, depth };
    } finally {
      await raw.close();
    }
  };

  const small = await grow(200, 0);
  const large = await grow(30_000, 200);
  t.equal(small.depth, 200, 'depth restored (small backlog)');
  t.equal(large.depth, 30_200, 'depth restored (large backlog) from entry counts');
  t.equal(large.openReads, small.openReads, `open reads the same rows for 200 and 30,200 entries (${large.openReads})`);
  t.ok(large.openReads <= options.tiers.length + 2, 'one row per tier plus meta and dead-letter tail at most');
  // 64 entries from the range plus one delivery-count lookup each.
  t.ok(large.fetchReads <= 2 * 64, `a fetch of 64 reads ${large.fetchReads} rows, not the backlog`);
});

t.test('embedded: publish and ack resolve only after the flush to disk', async (t) => {
  const dir = tempDir();
  const raw = openEnv(dir);
  let gate: { promise: Promise<boolean>; release: () => void } | undefined;
  const { env } = countLmdbReads(raw, () => gate?.promise ?? raw.flushed);
  const queue = await EmbeddedQueue.open({ env, options: conformanceOptions() });
  t.teardown(async () => {
    gate?.release();
    await queue.close();
    await raw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const hold = (): void => {
    let release = (): void => undefined;
    const promise = new Promise<boolean>((resolve) => {
      release = () => resolve(true);
    });
    gate = { promise, release };
  };

  hold();
  let published = false;
  const publishing = queue.publish([msg('urgent', 'f1'), msg('urgent', 'f2')]).then((r) => {
    published = true;
    return r;
  });
  await raw.committed;
  await sleep(50);
  t.equal(published, false, 'committed but not flushed: publish still pending');
  t.same(await queue.fetch('urgent', 2, 0), [], 'and nothing is delivered before it is durable');
  gate?.release();
  t.same((await publishing).map((r) => r.duplicate), [false, false], 'resolves after the flush');

  const got = await queue.fetch('urgent', 2, 1000);
  t.equal(got.length, 2);
  hold();
  let acked = false;
  const acking = Promise.all(got.map((d) => d.ack())).then(() => {
    acked = true;
  });
  await raw.committed;
  await sleep(50);
  t.equal(acked, false, 'ack waits for the flush too');
  gate?.release();
  await acking;
  t.equal(acked, true);
});

t.test('embedded: delivery counts survive restarts; maxDeliver reached across crashes dead-letters', async (t) => {
  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const options = conformanceOptions({ maxDeliver: 2, ackWaitMs: 60_000 });
  const session = async <T>(fn: (q: EmbeddedQueue, env: RootDatabase) => Promise<T>): Promise<T> => {
    const env = openEnv(dir);
    try {
      const queue = await EmbeddedQueue.open({ env, options });
      try {
        return await fn(queue, env);
      } finally {
        await queue.close();
      }
    } finally {
      await env.close();
    }
  };
  await session(async (q) => {
    await q.publish([msg('normal', 'crashy')]);
    const [d] = await q.fetch('normal', 1, 1000);
    t.equal(d?.deliveryCount, 1, 'first delivery');
  });
  await session(async (q) => {
    const [d] = await q.fetch('normal', 1, 1000);
    t.equal(d?.deliveryCount, 2, 'count persisted across restart');
  });
  await session(async (q, env) => {
    const dead: DeadLetter[] = [];
    q.onDeadLetter((dl) => {
      dead.push(dl);
    });
    t.same(await q.fetch('normal', 1, 500), [], 'not delivered a third time');
    for (let i = 0; i < 200 && dead.length === 0; i++) await sleep(10);
    t.equal(dead.length, 1, 'dead-lettered by the next process');
    t.equal(dead[0]?.deliveryCount, 2);
    t.equal(await q.depth('normal'), 0);
    const kept = [...env.openDB<DeadLetter, number>({ name: 'queue.dead' }).getRange({})].map((e) => e.value.msgId);
    t.same(kept, ['crashy'], 'kept in queue.dead for inspection');
  });
  await session(async (q) => {
    const [r] = await q.publish([msg('normal', 'crashy')]);
    t.equal(r?.duplicate, true, 'a msgId removed from the queue (here dead-lettered) stays a duplicate across restarts within the window');
  });
});

t.test('embedded: duplicate window expires and the sweep removes old rows', async (t) => {
  const dir = tempDir();
  const env = openEnv(dir);
  let clock = 1_000_000;
  const options = conformanceOptions({ duplicateWindowMs: 1000 });
  const queue = await EmbeddedQueue.open({ env, options, now: () => clock });
  t.teardown(async () => {
    await queue.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const [first] = await queue.publish([msg('bulk', 'x')]);
  await queue.publish(Array.from({ length: 50 }, (_, i) => msg('bulk', `old-${i}`)));
  clock += 999;
  t.equal((await queue.publish([msg('bulk', 'x')]))[0]?.duplicate, true, 'inside the window: duplicate');
  clock += 2;
  const [again] = await queue.publish([msg('bulk', 'x')]);
  t.equal(again?.duplicate, false, 'after the window: stored again');
  t.ok((again?.seq ?? 0) > (first?.seq ?? 0), 'with a new seq');
  clock += 5000;
  const dedupe = env.openDB({ name: 'queue.dedupe' });
  const count = (): number => (dedupe.getStats() as { entryCount: number }).entryCount;
  for (let i = 0; i < 300 && count() > 0; i++) await sleep(20);
  t.equal(count(), 0, 'every expired row swept (sweep runs at most every max(window/10, 1 s))');
  t.equal(await queue.depth('bulk'), 52, 'entries themselves are untouched');
});

t.test('embedded: errors', async (t) => {
  const dir = tempDir();
  const env = openEnv(dir);
  let envOpen = true;
  t.teardown(async () => {
    if (envOpen) await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await t.rejects(EmbeddedQueue.open({ env, options: conformanceOptions({ tiers: [] }) }), { code: 'CONFIG_INVALID' });
  await t.rejects(EmbeddedQueue.open({ env, options: conformanceOptions({ maxAckPending: 0 }) }), { code: 'CONFIG_INVALID' });
  const queue = await EmbeddedQueue.open({ env, options: conformanceOptions({ ackWaitMs: 60_000 }) });
  await t.rejects(queue.publish([msg('nope', 'a')]), { code: 'VALIDATION' }, 'unknown tier on publish');
  await t.rejects(queue.fetch('nope', 1, 0), { code: 'VALIDATION' }, 'unknown tier on fetch');
  await t.rejects(queue.publish([msg('urgent', '')]), { code: 'VALIDATION' }, 'empty msgId');
  t.equal(await queue.depth('urgent'), 0, 'a rejected call stores nothing');
  await queue.publish([msg('urgent', 'a')]);
  const [d] = await queue.fetch('urgent', 1, 1000);
  await queue.close();
  await t.rejects(queue.publish([msg('urgent', 'b')]), { code: 'QUEUE_CLOSED' }, 'publish after close');
  t.same(await queue.fetch('urgent', 1, 0), []);
  await env.close();
  envOpen = false;
  const err = await d?.ack().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof GatewayError && err.code === 'QUEUE_CLOSED', 'ack after the environment closed rejects (the entry is not removed, so it would be a lie to resolve)');
});
