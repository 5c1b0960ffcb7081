/**
 * Property (fast-check): the receipt store's operations give the same result
 * whether each commits alone or many share one transaction — including the
 * recipient rows a batch writes once before its commit (c5a5c0c): queued
 * marks, submit results, receipts (early ones too), the dispatcher's finals,
 * calls that fail part-way (a result naming a recipient that does not exist,
 * after a valid one for a real recipient) and the expiry sweep (a range read),
 * for 3-part recipients, in any order and grouping. The reference is the
 * same operations one at a time, each awaited: every operation's outcome
 * (value or error code), every recipient's state and every part's state and
 * operator id must be equal.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import fc from 'fast-check';
import { open, type RootDatabase } from 'lmdb';
import type { FinalState } from '../../src/core/message.js';
import { ReceiptStore } from '../../src/receipts/store.js';
import type { SegmentResult } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

const T0 = 1_700_000_000_000;
const RECIPIENTS = 3;
const PARTS = 3;
const ACCOUNT = 'cmcc-1';
const STATES: readonly FinalState[] = ['delivered', 'undeliverable', 'rejected'];

type Op =
  | { readonly k: 'queued'; readonly index: number }
  | { readonly k: 'submit'; readonly index: number; readonly segment: number }
  | { readonly k: 'failing-submit'; readonly index: number; readonly segment: number }
  | { readonly k: 'receipt'; readonly index: number; readonly segment: number; readonly state: FinalState }
  | { readonly k: 'final'; readonly index: number }
  | { readonly k: 'expire' };

const index = fc.integer({ min: 0, max: RECIPIENTS - 1 });
const segment = fc.integer({ min: 1, max: PARTS });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: index.map((i): Op => ({ k: 'queued', index: i })) },
  { weight: 5, arbitrary: fc.tuple(index, segment).map(([i, s]): Op => ({ k: 'submit', index: i, segment: s })) },
  { weight: 1, arbitrary: fc.tuple(index, segment).map(([i, s]): Op => ({ k: 'failing-submit', index: i, segment: s })) },
  { weight: 6, arbitrary: fc.tuple(index, segment, fc.constantFrom(...STATES)).map(([i, s, st]): Op => ({ k: 'receipt', index: i, segment: s, state: st })) },
  { weight: 1, arbitrary: index.map((i): Op => ({ k: 'final', index: i })) },
  { weight: 1, arbitrary: fc.constant<Op>({ k: 'expire' }) },
);

const opId = (index: number, segment: number): string => `op-${index}-${segment}`;
const submitted = (id: string, i: number, s: number): SegmentResult => ({ kind: 'submitted', messageId: id, index: i, segment: s, segments: PARTS, account: ACCOUNT, opId: opId(i, s), at: T0 + 1_000 });

interface Fixture {
  readonly env: RootDatabase;
  readonly store: ReceiptStore;
  readonly dir: string;
}

function fixture(expired: boolean): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-batch-prop-'));
  const env = open({ path: dir, maxDbs: 32 });
  // One clock for the whole run: an operation's result does not depend on when its batch runs.
  const store = ReceiptStore.open({ env, metrics: createMetrics({ defaultMetrics: false }), logger: createLogger({ level: 'silent' }), now: () => T0 + (expired ? 120_000 : 5_000), earlyReceiptTtlMs: 600_000, receiptGraceMs: 1_000 });
  return { env, store, dir };
}

async function close(f: Fixture): Promise<void> {
  await f.store.close();
  await f.env.close();
  fs.rmSync(f.dir, { recursive: true, force: true });
}

/** Runs `ops`; `together[i]` false: operation i is awaited before the next starts. Returns each one's outcome. */
async function run(store: ReceiptStore, id: string, ops: readonly Op[], together: readonly boolean[]): Promise<string[]> {
  store.putMessage(
    { id, tenant: 't', tier: 'routine', channel: 'sms', encoding: 'ucs2', segments: PARTS, recipients: RECIPIENTS, createdAt: T0, expiresAt: T0 + 60_000 },
    Array.from({ length: RECIPIENTS }, (_, i) => `8613900${String(i).padStart(6, '0')}`),
  );
  await store.flushed();
  const outcomes: string[] = new Array<string>(ops.length).fill('?');
  const settle = (i: number, p: Promise<unknown>): Promise<void> =>
    p.then(
      (v) => {
        outcomes[i] = `ok:${String(v)}`;
      },
      (e: unknown) => {
        outcomes[i] = `error:${String((e as { code?: unknown }).code)}`;
      },
    );
  let pending: Promise<void>[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    switch (op.k) {
      case 'queued':
        store.markQueued(id, [op.index]);
        outcomes[i] = 'ok:queued';
        break;
      case 'submit':
        pending.push(settle(i, store.recordSegments([submitted(id, op.index, op.segment)])));
        break;
      case 'failing-submit':
        // A valid result for a real recipient first, then one naming no recipient: the call rejects and writes nothing.
        pending.push(settle(i, store.recordSegments([submitted(id, op.index, op.segment), submitted(id, RECIPIENTS + 5, 1)])));
        break;
      case 'receipt':
        pending.push(settle(i, store.applyReceipt({ account: ACCOUNT, messageId: opId(op.index, op.segment), state: op.state, doneAt: T0 + 2_000 })));
        break;
      case 'final':
        pending.push(settle(i, store.finalizeRecipients(id, [{ index: op.index, state: 'failed', error: 'dead letter' }])));
        break;
      case 'expire':
        pending.push(settle(i, store.expireDue()));
        break;
    }
    if (!together[i] || i === ops.length - 1) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await store.flushed();
  return outcomes;
}

function snapshot(store: ReceiptStore, id: string): unknown {
  return Array.from({ length: RECIPIENTS }, (_, i) => ({
    state: store.getRecipient(id, i)?.state,
    parts: store.getSegments(id, i).map((s) => [s.state, s.opId ?? null]),
  }));
}

t.test('any grouping of mixed writes into transactions = the same writes one at a time', async (t) => {
  let runs = 0;
  await t.resolves(fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { minLength: 1, maxLength: 40 }),
      fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
      fc.boolean(),
      async (ops, together, expired) => {
        runs++;
        const batched = fixture(expired);
        const alone = fixture(expired);
        try {
          const id = `m${runs}`;
          const got = await run(batched.store, id, ops, together);
          const want = await run(alone.store, id, ops, ops.map(() => false));
          if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`outcomes differ:\n${JSON.stringify(got)}\n${JSON.stringify(want)}`);
          const a = JSON.stringify(snapshot(batched.store, id));
          const b = JSON.stringify(snapshot(alone.store, id));
          if (a !== b) throw new Error(`states differ:\n${a}\n${b}`);
        } finally {
          await close(batched);
          await close(alone);
        }
      },
    ),
    { numRuns: 120, seed: 20, endOnFailure: true },
  ));
  t.equal(runs, 120);
});
