/**
 * Property (fast-check, issue 12): whatever the order and grouping in which
 * submit results and receipts reach the receipt store, every recipient ends
 * with exactly the state its own receipts say — the same as applying them
 * one at a time (every submit first, each awaited, then every receipt) —
 * and the receipt outcomes add up.
 *
 * Ids are drawn from a small range so their other readings collide: a
 * submit answered `16` shares its digits with the hex writing of 22 and the
 * decimal writing of 0x10, and submits `10` and `16` are both in play. Each
 * run picks the account's id format (decimal / hex, upper or lower case,
 * zero-padded or not), the base its receipts write ids in (the same, or
 * the other one, configured), and duplicate receipts (re-sends). Receipt ids
 * go through receiptOperatorId exactly as the bind hands them to the store.
 * Operations are shuffled, and a random subset of them is issued without
 * awaiting, so that several commit in one transaction (a receipt and its own
 * submit in the same batch, in either order).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import fc from 'fast-check';
import { open } from 'lmdb';
import { receiptOperatorId, type IdBase, type ReceiptIdBase } from '../../src/core/dlr.js';
import { deriveRecipientState, type FinalState, type RecipientState } from '../../src/core/message.js';
import { ReceiptStore } from '../../src/receipts/store.js';
import type { SegmentResult } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';

const T0 = 1_700_000_000_000;
const STATES: readonly FinalState[] = ['delivered', 'undeliverable', 'expired', 'rejected'];

interface Seg {
  readonly index: number;
  readonly segment: number;
  readonly value: number;
  readonly state: FinalState;
  readonly copies: number;
}

interface Case {
  readonly base: IdBase;
  readonly upper: boolean;
  readonly receiptsOtherBase: boolean;
  readonly parts: number;
  readonly segs: readonly Seg[];
  /** Permutation keys for the operations, and which ones are awaited before the next. */
  readonly order: readonly number[];
  readonly awaitAfter: readonly boolean[];
  /** Zero padding of each written id (resp and receipts alike): 0–3 zeros. */
  readonly pad: readonly number[];
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    base: fc.constantFrom<IdBase>('decimal', 'hex'),
    upper: fc.boolean(),
    receiptsOtherBase: fc.boolean(),
    parts: fc.constantFrom(1, 3),
    recipients: fc.integer({ min: 1, max: 12 }),
    // Small ids: every other reading of one is likely another's.
    values: fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { minLength: 36, maxLength: 36 }),
    states: fc.array(fc.constantFrom(...STATES), { minLength: 36, maxLength: 36 }),
    copies: fc.array(fc.constantFrom(1, 1, 1, 2, 3), { minLength: 36, maxLength: 36 }),
    seed: fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 200, maxLength: 200 }),
    awaits: fc.array(fc.boolean(), { minLength: 200, maxLength: 200 }),
    pad: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 80, maxLength: 80 }),
  })
  .map((r) => {
    const segs: Seg[] = [];
    for (let i = 0; i < r.recipients; i++) {
      for (let s = 1; s <= r.parts; s++) {
        const k = segs.length;
        segs.push({ index: i, segment: s, value: r.values[k]!, state: r.states[k]!, copies: r.copies[k]! });
      }
    }
    return { base: r.base, upper: r.upper, receiptsOtherBase: r.receiptsOtherBase, parts: r.parts, segs, order: r.seed, awaitAfter: r.awaits, pad: r.pad };
  });

function write(value: number, base: IdBase, upper: boolean, pad: number): string {
  const s = base === 'decimal' ? String(value) : value.toString(16);
  return '0'.repeat(pad) + (upper ? s.toUpperCase() : s);
}

type Op = { kind: 'submit'; seg: Seg } | { kind: 'receipt'; seg: Seg; copy: number };

function ops(c: Case): Op[] {
  const out: Op[] = [];
  for (const seg of c.segs) {
    out.push({ kind: 'submit', seg });
    for (let k = 0; k < seg.copies; k++) out.push({ kind: 'receipt', seg, copy: k });
  }
  return out;
}

t.test('receipts and submits in any order and grouping = one at a time = the receipts\' own states', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-receipts-prop-'));
  const env = open({ path: dir, maxDbs: 32 });
  const metrics: Metrics = createMetrics({ defaultMetrics: false });
  const store = ReceiptStore.open({ env, metrics, logger: createLogger({ level: 'silent' }), now: () => T0 + 5_000, earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000 });
  t.teardown(async () => {
    await store.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let run = 0;

  /** Apply `list` to message `id` of account `account`: in order, awaiting where `awaitAfter` says (all at the end). */
  async function apply(c: Case, id: string, account: string, list: readonly Op[], awaitAfter: (i: number) => boolean): Promise<string[]> {
    const recipients = c.segs.length / c.parts;
    store.putMessage({ id, tenant: 't', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: c.parts, recipients, createdAt: T0, expiresAt: T0 + 3_600_000 }, Array.from({ length: recipients }, (_, i) => `8613800${String(i).padStart(6, '0')}`));
    await store.flushed();
    const written: IdBase = c.receiptsOtherBase ? (c.base === 'decimal' ? 'hex' : 'decimal') : c.base;
    const receiptBase: ReceiptIdBase = c.receiptsOtherBase ? written : 'same';
    const outcomes: string[] = [];
    let pending: Promise<unknown>[] = [];
    for (let i = 0; i < list.length; i++) {
      const op = list[i]!;
      const k = c.segs.indexOf(op.seg);
      if (op.kind === 'submit') {
        const r: SegmentResult = { kind: 'submitted', messageId: id, index: op.seg.index, segment: op.seg.segment, segments: c.parts, account, opId: write(op.seg.value, c.base, c.upper, c.pad[k]!), at: T0 + 1_000 };
        pending.push(store.recordSegments([r]));
      } else {
        // As the SMSC writes it (other base, case, padding varied per copy), then as the bind turns it into a key.
        const raw = write(op.seg.value, written, (k + op.copy) % 2 === 0, c.pad[(k + 3 * op.copy + 1) % c.pad.length]!);
        const key = receiptOperatorId(raw, receiptBase, c.base);
        pending.push(store.applyReceipt({ account, messageId: key, state: op.seg.state, doneAt: T0 + 2_000 }).then((o) => outcomes.push(o)));
      }
      if (awaitAfter(i) || i === list.length - 1) {
        await Promise.all(pending);
        pending = [];
      }
    }
    return outcomes;
  }

  const stateOf = (id: string, recipients: number): RecipientState[] =>
    Array.from({ length: recipients }, (_, i) => store.getRecipient(id, i)?.state ?? 'accepted');

  await t.resolves(fc.assert(
    fc.asyncProperty(caseArb, async (c) => {
      run++;
      const recipients = c.segs.length / c.parts;
      const all = ops(c);
      // Random interleaving: sort by the drawn keys (stable for ties).
      const shuffled = all.map((op, i) => ({ op, key: c.order[i % c.order.length]! * 1000 + i })).sort((a, b) => a.key - b.key).map((x) => x.op);
      const outcomes = await apply(c, `r${run}`, `acc-r${run}`, shuffled, (i) => c.awaitAfter[i % c.awaitAfter.length]!);
      // One at a time: every submit, then every receipt, each awaited.
      const sequential = [...all.filter((o) => o.kind === 'submit'), ...all.filter((o) => o.kind === 'receipt')];
      await apply(c, `s${run}`, `acc-s${run}`, sequential, () => true);
      // The reference: each recipient's state from its own segments' receipts.
      const want: RecipientState[] = [];
      for (let i = 0; i < recipients; i++) {
        want.push(deriveRecipientState(c.segs.filter((s) => s.index === i).map((s) => ({ state: s.state })), 'submitted'));
      }
      const got = stateOf(`r${run}`, recipients);
      const one = stateOf(`s${run}`, recipients);
      if (JSON.stringify(got) !== JSON.stringify(want) || JSON.stringify(one) !== JSON.stringify(want)) {
        throw new Error(`interleaved ${JSON.stringify(got)}, one at a time ${JSON.stringify(one)}, receipts say ${JSON.stringify(want)}`);
      }
      // Outcomes: one receipt per segment applied (on arrival or from early), the rest duplicates; none unknown.
      const receipts = all.length - c.segs.length;
      const applied = outcomes.filter((o) => o === 'applied').length;
      const early = outcomes.filter((o) => o === 'early').length;
      const duplicate = outcomes.filter((o) => o === 'duplicate').length;
      if (applied + early + duplicate !== receipts) throw new Error(`outcomes ${JSON.stringify(outcomes)} for ${receipts} receipts`);
      if (applied + early !== c.segs.length) throw new Error(`${applied} applied + ${early} early for ${c.segs.length} segments`);
    }),
    { numRuns: 150, seed: 12, endOnFailure: true },
  ), 'the property held');
  t.ok(run > 0, `${run} runs`);
  // Across every run: the metric adds up to the receipts received.
  const m = await metrics.registry.getMetricsAsJSON();
  const total = (name: string): number => (m.find((x) => x.name === name) as { values?: { value: number }[] } | undefined)?.values?.reduce((a, v) => a + v.value, 0) ?? 0;
  t.equal(total('smsgw_dlr_outcome_total'), total('smsgw_dlr_received_total'), 'smsgw_dlr_outcome_total adds up to smsgw_dlr_received_total');
  const resolved = total('smsgw_dlr_early_resolved_total');
  const early = (m.find((x) => x.name === 'smsgw_dlr_outcome_total') as { values?: { value: number; labels: Record<string, unknown> }[] }).values!.filter((v) => v.labels['outcome'] === 'early').reduce((a, v) => a + v.value, 0);
  t.equal(resolved, early, 'every early receipt left waiting (applied or duplicate when its submit came)');
});
