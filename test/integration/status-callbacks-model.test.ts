/**
 * Completion callbacks against a reference model, with fast-check: random
 * messages (1–3 recipients, 1–3 callback hosts), finalised in random order and
 * random group-commit chunks, while one or two senders share the environment
 * (two processes of a host), with a concurrency small enough that most
 * completions cannot be leased at once (so they go through the keys kept in
 * memory, and beyond that bound through the walk), a poster that fails at
 * random, and now and then a callback row removed as the retention purge
 * would. The model: a message whose row is there gets exactly one successful
 * POST with its own summary, and only after its last recipient is final
 * (failures first, each retried); a message whose row was removed before it
 * completed gets none; in the end no due key is left, nothing is held in
 * memory, and every row left is `done`.
 */
import t from 'tap';
import fc from 'fast-check';
import { pino } from 'pino';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { StatusCallbacks } from '../../src/receipts/status-callbacks.js';
import type { MessageRecord, SegmentResult } from '../../src/receipts/types.js';
import type { DeliveryError } from '../../src/outbound/webhook.js';
import { eventually } from '../support/office.js';
import { tempReceiptStore } from '../support/receipt-store.js';

const T0 = Date.now();
const STATES = ['delivered', 'undeliverable', 'expired', 'rejected', 'failed'] as const;

const scenario = fc.record({
  messages: fc.array(fc.record({
    recipients: fc.integer({ min: 1, max: 3 }),
    host: fc.integer({ min: 0, max: 2 }),
    states: fc.array(fc.constantFrom(...STATES), { minLength: 3, maxLength: 3 }),
    /** One in five: its callback row removed before it completes (as the retention purge would). */
    purged: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  }), { minLength: 20, maxLength: 150 }),
  picks: fc.array(fc.nat(), { minLength: 50, maxLength: 50 }),
  /** Finals issued together (one group commit). */
  chunk: fc.integer({ min: 1, max: 40 }),
  senders: fc.integer({ min: 1, max: 2 }),
  concurrency: fc.integer({ min: 1, max: 4 }),
  /** The n-th POST of a message fails when fails[n-1] is true (at most two: the third attempt succeeds). */
  fails: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
});

t.test('completion callbacks: once per complete message, after its last final, through memory and disk (fast-check against a model)', async (t) => {
  let run = 0;
  await t.resolves(fc.assert(fc.asyncProperty(scenario, async (s) => {
    run++;
    // This run's environment, closed at the end of the run (not of the test).
    const closers: Array<() => unknown> = [];
    const { env, store } = tempReceiptStore({ teardown: (f: () => unknown) => void closers.push(f) });
    try {
      const finalAt = new Map<string, number>();
      const posts: Array<{ id: string; ok: boolean; at: number; body: { recipients: number; summary: Record<string, number> } }> = [];
      const attempts = new Map<string, number>();
      const webhooks = {
        async post(_tenant: string, url: string, body: string): Promise<DeliveryError | undefined> {
          const id = new URL(url).searchParams.get('m')!;
          const at = Date.now();
          const n = (attempts.get(id) ?? 0) + 1;
          attempts.set(id, n);
          await new Promise((r) => setTimeout(r, n % 2));
          const ok = !(s.fails[n - 1] ?? false);
          posts.push({ id, ok, at, body: JSON.parse(body) as { recipients: number; summary: Record<string, number> } });
          return ok ? undefined : 'HTTP 503';
        },
      };
      const senders = Array.from({ length: s.senders }, () => new StatusCallbacks({
        env, store, webhooks, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
        attempts: 3, timeoutMs: 1000, concurrency: s.concurrency, perHost: 1, backoffMs: 10, maxBackoffMs: 20, tickMs: 20, sweepEveryMs: 100,
      }));
      for (const cb of senders) cb.start();
      const ids: string[] = [];
      const finals: SegmentResult[][] = [];
      s.messages.forEach((m, mi) => {
        const id = `r${run}m${String(mi).padStart(3, '0')}`;
        ids.push(id);
        const rec: MessageRecord = { id, tenant: 'oa', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 1, recipients: m.recipients, createdAt: T0, expiresAt: T0 + 3_600_000, callbackUrl: `https://h${m.host}.example/done?m=${id}` };
        store.putMessage(rec, Array.from({ length: m.recipients }, (_, i) => `86138${String(mi * 10 + i).padStart(8, '0')}`));
        for (let i = 0; i < m.recipients; i++) finals.push([{ kind: 'final', messageId: id, index: i, segment: 1, segments: 1, state: m.states[i]!, error: 'x', at: T0 + 1 }]);
      });
      await store.flushed();
      // Rows removed before the message completes: no POST may be made for them.
      const purged = new Set(ids.filter((_, mi) => s.messages[mi]!.purged));
      if (purged.size > 0) await env.transaction(() => { for (const id of purged) store.callbacks.removeSync(id); });
      // Finals in a random order, in chunks that share a group commit.
      let pick = 0;
      while (finals.length > 0) {
        const batch: SegmentResult[] = [];
        for (let c = 0; c < s.chunk && finals.length > 0; c++) batch.push(...finals.splice(s.picks[pick++ % s.picks.length]! % finals.length, 1)[0]!);
        // Messages whose last final is in this batch: no POST of theirs may start before it is issued.
        const issuedAt = Date.now();
        for (const r of batch) if (!finals.some((f) => f[0]!.messageId === r.messageId)) finalAt.set(r.messageId, issuedAt);
        await store.recordSegments(batch);
      }
      const owed = ids.filter((id) => !purged.has(id));
      await eventually(() => (owed.every((id) => posts.some((p) => p.id === id && p.ok)) ? true : undefined), 'every owed callback', 30_000);
      const due = env.openDB<unknown, [number, string]>({ name: 'receipts.callbacks.due', encoding: 'msgpack' });
      await eventually(() => (due.getCount() === 0 ? true : undefined), 'no due key left', 10_000);
      await new Promise((r) => setTimeout(r, 50));
      for (const cb of senders) await cb.close();
      for (const [mi, id] of ids.entries()) {
        const mine = posts.filter((p) => p.id === id);
        if (purged.has(id)) {
          if (mine.length > 0) throw new Error(`${id}: row removed, yet POSTed`);
          continue;
        }
        const ok = mine.filter((p) => p.ok);
        if (ok.length !== 1) throw new Error(`${id}: ${ok.length} successful POSTs`);
        const m = s.messages[mi]!;
        for (const p of mine) {
          if (p.at < finalAt.get(id)!) throw new Error(`${id}: POSTed before its last final was issued`);
          const want: Record<string, number> = {};
          for (let i = 0; i < m.recipients; i++) want[m.states[i]!] = (want[m.states[i]!] ?? 0) + 1;
          for (const st of STATES) if ((p.body.summary[st] ?? 0) !== (want[st] ?? 0)) throw new Error(`${id}: summary ${JSON.stringify(p.body.summary)}`);
          if (p.body.recipients !== m.recipients) throw new Error(`${id}: recipients ${p.body.recipients}`);
        }
        if (store.callbackState(id)?.state !== 'done') throw new Error(`${id}: ${JSON.stringify(store.callbackState(id))}`);
      }
      for (const cb of senders) {
        if ((cb as unknown as { dueInMemoryCount: number }).dueInMemoryCount !== 0) throw new Error('keys left in memory');
      }
      return true;
    } finally {
      for (const close of closers) await close();
    }
  }), { numRuns: 25, seed: 20261207 }));
});
