/**
 * Status events (statusCallback) against a reference model, with fast-check:
 * random messages and subscriptions, random interleavings of submits,
 * receipts (also before their submit) and the dispatcher's own finals,
 * committed in random group-commit batches while the sender runs, a poster
 * that fails at random. The model: every recipient gives `submitted` (asked
 * for, and the SMSC took it) then `final` (asked for), each once. Checked:
 * every POST holds ≤ maxBatch events of one destination; per recipient the
 * accepted events are exactly the model's, in order (no give-up), or an
 * in-order subsequence whose missing events are the ones counted as given up.
 */
import t from 'tap';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import { pino } from 'pino';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { ReceiptStore } from '../../src/receipts/store.js';
import { EventCallbacks } from '../../src/receipts/event-callbacks.js';
import type { MessageRecord } from '../../src/receipts/types.js';
import type { StatusEvent } from '../../src/core/message.js';
import type { DeliveryError } from '../../src/outbound/webhook.js';
import { eventually } from '../support/office.js';

const T0 = Date.now();

type Path = 'submit-receipt' | 'receipt-submit' | 'dispatcher-final' | 'submit-final-ignored';

const scenario = fc.record({
  messages: fc.array(fc.record({
    recipients: fc.integer({ min: 1, max: 4 }),
    url: fc.constantFrom('https://a.example/e', 'https://b.example/e'),
    events: fc.constantFrom<StatusEvent[]>(['final'], ['submitted'], ['submitted', 'final']),
    paths: fc.array(fc.constantFrom<Path>('submit-receipt', 'receipt-submit', 'dispatcher-final', 'submit-final-ignored'), { minLength: 4, maxLength: 4 }),
  }), { minLength: 1, maxLength: 4 }),
  /** Which recipient moves next (index into the recipients still moving, modulo). */
  picks: fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
  /** Operations issued together (one group commit) at a time. */
  chunk: fc.integer({ min: 1, max: 6 }),
  failures: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
  maxBatch: fc.integer({ min: 1, max: 6 }),
  lingerMs: fc.integer({ min: 0, max: 5 }),
  giveUp: fc.boolean(),
});

/** One status event of a POSTed batch, as read here. */
interface PostedEvent {
  readonly messageId: string;
  readonly index: number;
  readonly event: string;
}

t.test('status events: ordered per recipient, each once, batched per destination (fast-check against a model)', async (t) => {
  let run = 0;
  await t.resolves(fc.assert(fc.asyncProperty(scenario, async (s) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-evmodel-'));
    const env = open({ path: dir, maxDbs: 32 });
    const store = ReceiptStore.open({ env, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }), earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000 });
    const posts: Array<{ url: string; events: PostedEvent[]; ok: boolean }> = [];
    // The n-th POST of a batch head fails when failures[n-1] says so; later ones succeed (so the outbox drains).
    const tries = new Map<string, number>();
    let call = 0;
    const webhooks = {
      async post(_tenant: string, url: string, body: string): Promise<DeliveryError | undefined> {
        const events = JSON.parse(body) as PostedEvent[];
        const head = `${events[0]?.messageId}#${events[0]?.index}#${events[0]?.event}`;
        const n = (tries.get(head) ?? 0) + 1;
        tries.set(head, n);
        const fail = s.failures[n - 1] ?? false;
        await new Promise((r) => setTimeout(r, call++ % 3));
        posts.push({ url, events, ok: !fail });
        return fail ? 'HTTP 500' : undefined;
      },
    };
    const sender = new EventCallbacks({
      env, store, webhooks, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
      attempts: s.giveUp ? 2 : 1000, timeoutMs: 1000, concurrency: 4, backoffMs: 1, maxBackoffMs: 2, maxBatch: s.maxBatch, lingerMs: s.lingerMs, tickMs: 20,
    });
    sender.start();
    try {
      // The model: what each recipient must give, in order.
      const expected = new Map<string, string[]>();
      const steps: Array<{ key: string; ops: Array<() => Promise<unknown>> }> = [];
      run++;
      s.messages.forEach((m, mi) => {
        const id = `r${run}m${mi}`;
        const rec: MessageRecord = { id, tenant: 'oa', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 1, recipients: m.recipients, createdAt: T0, expiresAt: T0 + 3_600_000, statusCallback: { url: m.url, events: m.events } };
        store.putMessage(rec, Array.from({ length: m.recipients }, (_, i) => `8613800${String(mi * 10 + i).padStart(6, '0')}`));
        for (let i = 0; i < m.recipients; i++) {
          const p = m.paths[i]!;
          const opId = `${id}-${i}`;
          const submit = (): Promise<unknown> => store.recordSegments([{ kind: 'submitted', messageId: id, index: i, segment: 1, segments: 1, account: 'acc', opId, at: T0 }]);
          const receipt = (): Promise<unknown> => store.applyReceipt({ account: 'acc', messageId: opId, state: 'delivered', doneAt: T0 + 1 });
          const final = (): Promise<unknown> => store.recordSegments([{ kind: 'final', messageId: id, index: i, segment: 1, segments: 1, state: 'failed', error: 'x', at: T0 }]);
          const ops = p === 'submit-receipt' ? [submit, receipt] : p === 'receipt-submit' ? [receipt, submit] : p === 'dispatcher-final' ? [final] : [submit, final, receipt];
          const want: string[] = [];
          if (m.events.includes('submitted') && p !== 'dispatcher-final') want.push('submitted');
          if (m.events.includes('final')) want.push('final');
          expected.set(`${id}#${i}`, want);
          steps.push({ key: `${id}#${i}`, ops });
        }
      });
      await store.flushed();
      // A random interleaving (per-recipient order kept), issued in chunks that share a group commit.
      const moving = steps.filter((x) => x.ops.length > 0);
      let pick = 0;
      while (moving.length > 0) {
        const batch: Array<Promise<unknown>> = [];
        for (let c = 0; c < s.chunk && moving.length > 0; c++) {
          const k = s.picks[pick++ % s.picks.length]! % moving.length;
          const step = moving[k]!;
          batch.push(step.ops.shift()!());
          if (step.ops.length === 0) moving.splice(k, 1);
        }
        await Promise.all(batch);
      }
      await eventually(() => (store.events.getCount() === 0 ? true : undefined), 'the outbox drained', 5_000);
      // Every POST: one destination, at most maxBatch events.
      for (const p of posts) {
        if (p.events.length === 0 || p.events.length > s.maxBatch) return false;
        for (const e of p.events) if (s.messages[Number(e.messageId.split('m')[1])]!.url !== p.url) return false;
      }
      const got = new Map<string, string[]>();
      for (const p of posts) {
        if (!p.ok) continue;
        for (const e of p.events) {
          const k = `${e.messageId}#${e.index}`;
          got.set(k, [...(got.get(k) ?? []), e.event]);
        }
      }
      let givenUp = 0;
      for (const { value } of store.eventFailures.getRange()) givenUp += value.f;
      let missing = 0;
      for (const [k, want] of expected) {
        const have = got.get(k) ?? [];
        if (!s.giveUp) {
          if (JSON.stringify(have) !== JSON.stringify(want)) throw new Error(`${k}: got ${JSON.stringify(have)}, want ${JSON.stringify(want)}`);
        } else {
          // An in-order subsequence without repeats.
          let j = 0;
          for (const ev of have) {
            while (j < want.length && want[j] !== ev) j++;
            if (j === want.length) throw new Error(`${k}: got ${JSON.stringify(have)}, not a subsequence of ${JSON.stringify(want)}`);
            j++;
          }
          missing += want.length - have.length;
        }
      }
      if (s.giveUp && missing !== givenUp) throw new Error(`${missing} events missing, ${givenUp} counted as given up`);
      if (!s.giveUp && givenUp !== 0) throw new Error('events given up although attempts are unbounded');
      return true;
    } finally {
      await sender.close();
      await store.close();
      await env.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }), { numRuns: Number(process.env.RUNS ?? 40), endOnFailure: process.env.END === '1' }), 'property held');
});
