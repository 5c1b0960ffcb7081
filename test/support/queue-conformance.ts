/**
 * Conformance suite for WorkQueue adapters (src/queue/port.ts). It checks port
 * semantics only, through the port, so the embedded LMDB adapter and the NATS
 * JetStream adapter run the same suite:
 *
 *   import { queueConformance } from '../support/queue-conformance.js';
 *   queueConformance(t, 'embedded', async (options) => ({ queue, restart, cleanup }));
 *
 * Every subtest asks the factory for a fresh, empty queue built with the
 * QueueOptions it passes (tiers `urgent`, `normal`, `bulk`, small ack waits).
 * No timing is asserted except "not redelivered before the delay"; waits for
 * things that must happen are bounded generously so a slow machine does not
 * fail them, and things that must NOT happen are checked by waiting longer
 * than the adapter's own deadline.
 */
import type { Test } from 'tap';
import type { DeadLetter, Delivery, PublishResult, QueueMessage, QueueOptions, WorkQueue } from '../../src/queue/port.js';

export interface QueueUnderTest {
  readonly queue: WorkQueue;
  /**
   * Closes the current instance without acking anything (as a process exit
   * would) and opens a new instance on the same storage and options.
   */
  readonly restart: () => Promise<WorkQueue>;
  /** Closes whichever instance is current (it may already be closed) and removes its storage. */
  readonly cleanup: () => Promise<void>;
}

/** Builds a fresh, empty queue with exactly these options. */
export type QueueFactory = (options: QueueOptions) => Promise<QueueUnderTest>;

export const CONFORMANCE_TIERS = ['urgent', 'normal', 'bulk'] as const;

export function conformanceOptions(overrides: Partial<QueueOptions> = {}): QueueOptions {
  return {
    prefix: 'conf',
    tiers: [...CONFORMANCE_TIERS],
    ackWaitMs: 1500,
    maxDeliver: 5,
    maxAckPending: 1000,
    duplicateWindowMs: 120_000,
    ...overrides,
  };
}

const encoder = new TextEncoder();

/** Bodies start with bytes that are not text, so adapters must carry them as bytes. */
function body(id: string): Uint8Array {
  const text = encoder.encode(id);
  const out = new Uint8Array(text.length + 3);
  out.set([0, 255, 10], 0);
  out.set(text, 3);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function msg(tier: string, msgId: string): QueueMessage {
  return { subject: `conf.work.${tier}.t1.g1`, tier, msgId, data: body(msgId) };
}

function ids(deliveries: readonly Delivery[]): string[] {
  return deliveries.map((d) => d.msgId);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with `p`'s value, or with 'timed out' after `ms` (a bound, not a timing claim). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timed out'> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'timed out'>((resolve) => {
    timer = setTimeout(() => resolve('timed out'), ms);
  });
  try {
    return await Promise.race([p, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fetches until `count` deliveries arrived or `boundMs` passed. */
async function collect(queue: WorkQueue, tier: string, count: number, boundMs: number, batch = 100): Promise<Delivery[]> {
  const out: Delivery[] = [];
  const until = Date.now() + boundMs;
  for (let i = 0; i < 10_000 && out.length < count; i++) {
    const left = until - Date.now();
    if (left <= 0) break;
    out.push(...(await queue.fetch(tier, Math.min(batch, count - out.length), Math.min(left, 2_000))));
  }
  return out;
}

/** Polls `probe` until it returns `expected` or `boundMs` passes; returns the last value. */
async function eventually<T>(probe: () => Promise<T> | T, expected: T, boundMs = 5_000): Promise<T> {
  const until = Date.now() + boundMs;
  let last = await probe();
  for (let i = 0; i < 1_000 && last !== expected && Date.now() < until; i++) {
    await sleep(25);
    last = await probe();
  }
  return last;
}

export function queueConformance(t: Test, name: string, factory: QueueFactory): void {
  const open = async (tt: Test, overrides: Partial<QueueOptions> = {}): Promise<QueueUnderTest & { options: QueueOptions }> => {
    const options = conformanceOptions(overrides);
    const sut = await factory(options);
    tt.teardown(() => sut.cleanup());
    return { ...sut, options };
  };

  t.test(`${name}: WorkQueue conformance`, async (t) => {
    t.test('publish, fetch and ack keep publish order within a tier', async (t) => {
      const { queue } = await open(t);
      const first = await queue.publish(Array.from({ length: 20 }, (_, i) => msg('normal', `order-${i}`)));
      const second = await queue.publish(Array.from({ length: 5 }, (_, i) => msg('normal', `order-${20 + i}`)));
      const published: PublishResult[] = [...first, ...second];
      t.same(published.map((r) => r.msgId), Array.from({ length: 25 }, (_, i) => `order-${i}`), 'results are in input order');
      t.ok(published.every((r) => !r.duplicate), 'nothing is a duplicate');
      t.ok(published.every((r, i) => i === 0 || r.seq > (published[i - 1] as PublishResult).seq), 'sequences increase');

      const got = await collect(queue, 'normal', 25, 15_000, 10);
      t.same(ids(got), published.map((r) => r.msgId), 'delivered in publish order');
      t.same(got.map((d) => d.seq), published.map((r) => r.seq), 'delivery seq is the publish seq');
      t.ok(got.every((d) => d.deliveryCount === 1), 'first deliveries have deliveryCount 1');
      t.ok(got.every((d) => d.tier === 'normal' && d.subject === 'conf.work.normal.t1.g1'), 'tier and subject are kept');
      t.ok(got.every((d) => sameBytes(d.data, body(d.msgId))), 'data is kept byte for byte');
      await Promise.all(got.map((d) => d.ack()));
      t.equal(await eventually(() => queue.depth('normal'), 0), 0, 'acked entries are gone');
      t.same(await queue.fetch('normal', 10, 300), [], 'nothing left to deliver');
    });

    t.test('persistTogether: resolves once rows and jobs are durable, writes `after` once, fails when either fails', async (t) => {
      const { queue } = await open(t);
      const steps: string[] = [];
      let rowsDone!: () => void;
      const rows = new Promise<void>((r) => (rowsDone = r));
      let settled = false;
      const done = queue.persistTogether({
        rowsDurable: () => {
          steps.push('rows');
          return rows;
        },
        publish: () => {
          steps.push('publish');
          return queue.publish([msg('normal', 'together-1')]).then(() => undefined);
        },
        after: () => void steps.push('after'),
      }).then(() => void (settled = true));
      await sleep(100);
      t.equal(settled, false, 'not durable while the rows are not');
      rowsDone();
      await done;
      t.same([...steps].sort(), ['after', 'publish', 'rows'], 'each step once');
      t.ok(steps.indexOf('rows') < steps.indexOf('publish'), 'the rows are written before any job is published');
      const got = await collect(queue, 'normal', 1, 10_000);
      t.same(ids(got), ['together-1']);
      await Promise.all(got.map((d) => d.ack()));
      await t.rejects(queue.persistTogether({ rowsDurable: () => Promise.reject(new Error('disk full')), publish: async () => undefined, after: () => undefined }), /disk full/, 'a failed row write fails the whole');
      await t.rejects(queue.persistTogether({ rowsDurable: async () => undefined, publish: () => Promise.reject(new Error('queue down')), after: () => undefined }), /queue down/, 'a failed publish fails the whole');
    });

    t.test('tiers are separate', async (t) => {
      const { queue } = await open(t);
      await queue.publish([msg('urgent', 'u1'), msg('bulk', 'b1'), msg('urgent', 'u2'), msg('bulk', 'b2'), msg('urgent', 'u3')]);
      const bulk = await collect(queue, 'bulk', 2, 10_000);
      t.same(ids(bulk), ['b1', 'b2'], 'bulk sees only bulk');
      const urgent = await collect(queue, 'urgent', 3, 10_000);
      t.same(ids(urgent), ['u1', 'u2', 'u3'], 'urgent sees only urgent');
      t.same(await queue.fetch('normal', 10, 300), [], 'an empty tier stays empty');
      t.same(await queue.fetch('bulk', 10, 300), [], 'no more bulk');
      await Promise.all([...bulk, ...urgent].map((d) => d.ack()));
    });

    t.test('a repeated msgId is a duplicate and stores nothing', async (t) => {
      const { queue } = await open(t);
      const [a, b] = await queue.publish([msg('normal', 'dup-a'), msg('normal', 'dup-b')]);
      const again = await queue.publish([msg('normal', 'dup-a'), msg('normal', 'dup-c'), msg('normal', 'dup-c')]);
      t.same(again.map((r) => [r.msgId, r.duplicate]), [['dup-a', true], ['dup-c', false], ['dup-c', true]], 'duplicates flagged, in input order');
      t.equal(again[0]?.seq, a?.seq, 'a duplicate reports the original seq');
      t.equal(again[2]?.seq, again[1]?.seq, 'a duplicate within one call reports the first seq');
      t.not(b?.seq, undefined);
      t.equal(await eventually(() => queue.depth('normal'), 3), 3, 'three entries stored');
      const got = await collect(queue, 'normal', 3, 10_000);
      t.same(ids(got), ['dup-a', 'dup-b', 'dup-c'], 'each msgId delivered once');
      await Promise.all(got.map((d) => d.ack()));
      t.same(await queue.fetch('normal', 10, 300), [], 'and nothing else was stored');
    });

    t.test('a waiting fetch is woken by a publish', async (t) => {
      const { queue } = await open(t);
      const pending = queue.fetch('urgent', 5, 20_000);
      await sleep(200);
      await queue.publish([msg('urgent', 'wake-1')]);
      const got = await within(pending, 15_000);
      t.not(got, 'timed out', 'the fetch returned');
      if (got === 'timed out') return;
      t.same(ids(got), ['wake-1'], 'with the message published while it waited');
      await Promise.all(got.map((d) => d.ack()));
    });

    t.test('a fetch with nothing to deliver resolves [] after its wait', async (t) => {
      const { queue } = await open(t);
      t.same(await queue.fetch('urgent', 5, 300), [], 'empty tier');
      await queue.publish([msg('normal', 'other-tier')]);
      t.same(await queue.fetch('urgent', 5, 300), [], 'another tier has work, this one does not');
    });

    t.test('nak redelivers with deliveryCount + 1, never before the delay', async (t) => {
      const { queue } = await open(t);
      await queue.publish([msg('normal', 'nak-1')]);
      const [d1] = await collect(queue, 'normal', 1, 10_000);
      t.equal(d1?.deliveryCount, 1);
      if (d1 === undefined) return;
      const nakAt = Date.now();
      d1.nak(1200);
      const [d2] = await collect(queue, 'normal', 1, 15_000);
      const elapsed = Date.now() - nakAt;
      t.equal(d2?.msgId, 'nak-1', 'redelivered');
      t.equal(d2?.deliveryCount, 2, 'deliveryCount incremented');
      t.ok(elapsed >= 1200, `not before the delay (${elapsed} ms ≥ 1200 ms)`);
      if (d2 === undefined) return;
      d2.nak();
      const [d3] = await collect(queue, 'normal', 1, 10_000);
      t.equal(d3?.deliveryCount, 3, 'nak without delay redelivers');
      t.ok(d3 !== undefined && sameBytes(d3.data, body('nak-1')), 'with the same data');
      await d3?.ack();
      t.same(await queue.fetch('normal', 1, 300), [], 'acked after redelivery: gone');
    });

    t.test('no answer within ackWait redelivers', async (t) => {
      const { queue, options } = await open(t);
      await queue.publish([msg('urgent', 'wait-1')]);
      const fetchedAt = Date.now();
      const [d1] = await collect(queue, 'urgent', 1, 10_000);
      t.equal(d1?.deliveryCount, 1);
      const [d2] = await collect(queue, 'urgent', 1, options.ackWaitMs * 8);
      const elapsed = Date.now() - fetchedAt;
      t.equal(d2?.msgId, 'wait-1', 'redelivered');
      t.equal(d2?.deliveryCount, 2, 'as the second delivery');
      t.ok(elapsed >= options.ackWaitMs, `not before ackWait (${elapsed} ms ≥ ${options.ackWaitMs} ms)`);
      await d2?.ack();
      t.same(await queue.fetch('urgent', 1, options.ackWaitMs + 500), [], 'acked: not redelivered again');
    });

    t.test('working() holds off redelivery', async (t) => {
      const { queue, options } = await open(t);
      await queue.publish([msg('urgent', 'work-1')]);
      const [d] = await collect(queue, 'urgent', 1, 10_000);
      t.ok(d, 'delivered');
      if (d === undefined) return;
      const beat = setInterval(() => d.working(), 250);
      try {
        // Waits past two ack waits while the consumer keeps saying it is working.
        const meanwhile = await queue.fetch('urgent', 1, options.ackWaitMs * 2 + 500);
        t.same(ids(meanwhile), [], 'not redelivered while working() is called');
      } finally {
        clearInterval(beat);
      }
      await d.ack();
      t.same(await queue.fetch('urgent', 1, 300), [], 'acked');
    });

    t.test('maxDeliver deliveries without ack dead-letter the entry, once, with its data', async (t) => {
      const { queue } = await open(t, { maxDeliver: 2, ackWaitMs: 1000 });
      const dead: DeadLetter[] = [];
      queue.onDeadLetter((dl) => {
        dead.push(dl);
      });
      await queue.publish([msg('bulk', 'poison')]);
      const [d1] = await collect(queue, 'bulk', 1, 10_000);
      t.equal(d1?.deliveryCount, 1);
      const [d2] = await collect(queue, 'bulk', 1, 10_000);
      t.equal(d2?.deliveryCount, 2, 'redelivered once');
      t.equal(await eventually(() => dead.length, 1, 10_000), 1, 'dead-letter handler called');
      // Longer than an ack wait: no third delivery and no second report.
      t.same(await queue.fetch('bulk', 1, 2_500), [], 'not delivered again');
      t.equal(dead.length, 1, 'handler called exactly once');
      const dl = dead[0];
      t.equal(dl?.msgId, 'poison');
      t.equal(dl?.tier, 'bulk');
      t.equal(dl?.subject, 'conf.work.bulk.t1.g1');
      t.equal(dl?.deliveryCount, 2, 'after maxDeliver deliveries');
      t.ok(dl !== undefined && sameBytes(dl.data, body('poison')), 'with its data');
      t.equal(await eventually(() => queue.depth('bulk'), 0), 0, 'no longer counted in depth');
    });

    t.test('term() dead-letters with the reason and never redelivers', async (t) => {
      const { queue, options } = await open(t);
      const dead: DeadLetter[] = [];
      queue.onDeadLetter(async (dl) => {
        dead.push(dl);
      });
      await queue.publish([msg('normal', 'bad-1'), msg('normal', 'good-1')]);
      const got = await collect(queue, 'normal', 2, 10_000);
      t.same(ids(got), ['bad-1', 'good-1']);
      await got[0]?.term('template missing');
      await got[1]?.ack();
      t.equal(await eventually(() => dead.length, 1, 10_000), 1, 'handler called');
      t.equal(dead[0]?.msgId, 'bad-1');
      t.equal(dead[0]?.reason, 'template missing', 'with the reason');
      t.equal(dead[0]?.deliveryCount, 1);
      t.ok(dead[0] !== undefined && sameBytes(dead[0].data, body('bad-1')), 'with its data');
      t.same(await queue.fetch('normal', 5, options.ackWaitMs + 1000), [], 'not redelivered');
      t.equal(dead.length, 1, 'reported once');
      t.equal(await eventually(() => queue.depth('normal'), 0), 0, 'depth 0');
    });

    t.test('maxAckPending bounds unacked deliveries per tier', async (t) => {
      const { queue } = await open(t, { maxAckPending: 4, ackWaitMs: 30_000 });
      await queue.publish(Array.from({ length: 10 }, (_, i) => msg('normal', `map-${i}`)));
      await queue.publish([msg('urgent', 'map-other-tier')]);
      // Asks for more than the bound, for longer than a fetch needs to deliver what it may.
      const first = await collect(queue, 'normal', 10, 1_500, 10);
      t.equal(first.length, 4, 'exactly maxAckPending handed out while none is acked');
      t.same(ids(first), ['map-0', 'map-1', 'map-2', 'map-3'], 'the oldest first');
      const other = await collect(queue, 'urgent', 1, 10_000);
      t.same(ids(other), ['map-other-tier'], 'the bound is per tier');
      await Promise.all(first.slice(0, 2).map((d) => d.ack()));
      const more = await collect(queue, 'normal', 10, 1_500, 10);
      t.same(ids(more), ['map-4', 'map-5'], 'two acks free two slots');
      const rest = [...first.slice(2), ...more, ...other];
      await Promise.all(rest.map((d) => d.ack()));
      const last = await collect(queue, 'normal', 4, 10_000, 10);
      t.same(ids(last), ['map-6', 'map-7', 'map-8', 'map-9'], 'the rest follow');
      await Promise.all(last.map((d) => d.ack()));
      t.same(await queue.fetch('normal', 10, 300), [], 'all delivered');
    });

    t.test('depth counts stored, unacked entries per tier', async (t) => {
      const { queue } = await open(t, { ackWaitMs: 30_000 });
      t.equal(await queue.depth('urgent'), 0, 'empty');
      await queue.publish([msg('urgent', 'd1'), msg('urgent', 'd2'), msg('urgent', 'd3'), msg('bulk', 'd4'), msg('bulk', 'd5')]);
      t.equal(await eventually(() => queue.depth('urgent'), 3), 3, 'urgent 3');
      t.equal(await eventually(() => queue.depth('bulk'), 2), 2, 'bulk 2');
      t.equal(await queue.depth('normal'), 0, 'normal 0');
      const got = await collect(queue, 'urgent', 2, 10_000);
      t.equal(got.length, 2);
      t.equal(await queue.depth('urgent'), 3, 'in flight still counts');
      await got[0]?.ack();
      t.equal(await eventually(() => queue.depth('urgent'), 2), 2, 'ack removes');
      await got[1]?.term('test');
      t.equal(await eventually(() => queue.depth('urgent'), 1), 1, 'term removes');
      t.equal(await queue.depth('bulk'), 2, 'other tier unchanged');
    });

    t.test('close wakes a pending fetch, stops deliveries, and lets outstanding deliveries answer', async (t) => {
      const { queue } = await open(t, { ackWaitMs: 30_000 });
      await queue.publish([msg('urgent', 'c1'), msg('urgent', 'c2')]);
      const [d] = await collect(queue, 'urgent', 1, 10_000, 1);
      t.equal(d?.msgId, 'c1');
      const pending = queue.fetch('bulk', 1, 60_000);
      await sleep(100);
      await queue.close();
      t.same(await within(pending, 15_000), [], 'the waiting fetch resolved [] on close');
      t.same(await queue.fetch('urgent', 1, 200), [], 'no deliveries after close');
      if (d === undefined) return;
      t.doesNotThrow(() => d.working(), 'working() after close does not throw');
      await t.resolves(d.ack(), 'ack after close resolves');
      t.doesNotThrow(() => d.nak(), 'nak() after close does not throw');
    });

    t.test('restart redelivers everything not acked; stored msgIds are still duplicates', async (t) => {
      const sut = await open(t, { ackWaitMs: 1000 });
      const published = await sut.queue.publish([msg('normal', 'r-a'), msg('normal', 'r-b'), msg('normal', 'r-c')]);
      const before = await collect(sut.queue, 'normal', 2, 10_000, 2);
      t.same(ids(before), ['r-a', 'r-b']);
      await before[0]?.ack();
      const queue = await sut.restart();
      // Only msgIds still stored are asserted here: JetStream rebuilds its duplicate
      // window from stored messages when the server restarts, so an acked (removed)
      // msgId may be forgotten by a server restart (nats-server issue 3272).
      const again = await queue.publish([msg('normal', 'r-b'), msg('normal', 'r-c')]);
      t.same(again.map((r) => r.duplicate), [true, true], 'msgIds stored before the restart are duplicates');
      t.same(again.map((r) => r.seq), published.slice(1).map((r) => r.seq), 'reported with their original seqs');
      const after = await collect(queue, 'normal', 2, 15_000);
      const byId = new Map(after.map((d) => [d.msgId, d]));
      t.same([...byId.keys()].sort(), ['r-b', 'r-c'], 'the unacked delivery and the undelivered entry come back, the acked one does not');
      t.ok((byId.get('r-b')?.deliveryCount ?? 0) >= 2, 'a delivery before the restart counts');
      t.equal(byId.get('r-c')?.deliveryCount, 1, 'never delivered before: first delivery');
      t.ok(sameBytes(byId.get('r-b')?.data ?? new Uint8Array(), body('r-b')), 'data kept across restart');
      await Promise.all(after.map((d) => d.ack()));
      t.same(await queue.fetch('normal', 5, 1500), [], 'nothing else: the duplicates stored nothing');
      t.equal(await eventually(() => queue.depth('normal'), 0), 0, 'depth 0');
    });

    t.test('10,000 messages published in batches are each delivered exactly once', async (t) => {
      const { queue } = await open(t, { ackWaitMs: 60_000, maxAckPending: 2_000 });
      const total = 10_000;
      const batch = 500;
      const seqs = new Set<number>();
      for (let b = 0; b < total / batch; b++) {
        const results = await queue.publish(Array.from({ length: batch }, (_, i) => msg('bulk', `many-${b * batch + i}`)));
        for (const r of results) {
          if (!r.duplicate) seqs.add(r.seq);
        }
      }
      t.equal(seqs.size, total, 'every publish stored with its own seq');
      t.equal(await eventually(() => queue.depth('bulk'), total), total, 'depth counts them');
      const seen = new Map<string, number>();
      const until = Date.now() + 120_000;
      for (let i = 0; i < 5_000 && seen.size < total && Date.now() < until; i++) {
        const got = await queue.fetch('bulk', 250, 2_000);
        for (const d of got) seen.set(d.msgId, (seen.get(d.msgId) ?? 0) + 1);
        await Promise.all(got.map((d) => d.ack()));
      }
      t.equal(seen.size, total, 'all delivered');
      t.ok([...seen.values()].every((n) => n === 1), 'none twice');
      t.same(await queue.fetch('bulk', 10, 500), [], 'nothing left');
      t.equal(await eventually(() => queue.depth('bulk'), 0), 0, 'depth back to 0');
    });
  });
}
