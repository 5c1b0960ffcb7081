/**
 * Reroute of failed recipients (src/core/reroute.ts): the pure decision,
 * the carrier rules, and the receipt store's state transitions checked with
 * fast-check against a reference model:
 *
 *   per recipient: s1 = the first attempt's state (its parts' receipts);
 *   armed ∧ s1 ∈ {undeliverable, rejected} by a receipt → a second attempt,
 *   final = its state; otherwise final = s1 (reroute off: unchanged).
 *   Never more than 2 attempts; announced final exactly once; the pending
 *   reroute survives a restart (it is a row, not a timer).
 *
 * Submits and receipts of each attempt are shuffled, some issued without
 * awaiting (a receipt in the same commit batch as its submit, before or
 * after it: receipts before the resp); receipts repeat, and first-attempt
 * receipts repeat late, after the second attempt began.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import fc from 'fast-check';
import { open, type RootDatabase } from 'lmdb';
import { attemptEnded, carrierOf, MAX_ATTEMPTS, rerouteAccounts, REROUTE_STATES } from '../../src/core/reroute.js';
import { deriveRecipientState, FINAL_STATES, type FinalState, type RecipientState } from '../../src/core/message.js';
import { ReceiptStore } from '../../src/receipts/store.js';
import type { SegmentResult } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { compileTable, checkRules } from '../../src/core/route.js';

const T0 = 1_700_000_000_000;
const RECEIPT_STATES: readonly FinalState[] = ['delivered', 'undeliverable', 'expired', 'rejected'];

t.test('attemptEnded: reroute only when armed, first attempt, by a receipt, UNDELIV/REJECTD, in validity', async (t) => {
  fc.assert(fc.property(
    fc.constantFrom(...FINAL_STATES), fc.boolean(), fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.integer({ min: -5, max: 5 }),
    (state, armed, earlier, byReceipt, dt) => {
      const got = attemptEnded({ state, armed, earlier, byReceipt, now: T0 + dt, expiresAt: T0 });
      const want = armed && earlier === 0 && byReceipt && (state === 'undeliverable' || state === 'rejected') && dt < 0;
      return got === (want ? 'reroute' : 'final');
    },
  ), { numRuns: 500, seed: 19 });
  t.equal(MAX_ATTEMPTS, 2);
  t.same([...REROUTE_STATES].sort(), ['rejected', 'undeliverable']);
});

t.test('carrierOf and rerouteAccounts: another carrier only, in list order', async (t) => {
  t.equal(carrierOf({ name: 'x', carrier: 'cucc', operators: ['cmcc'] }), 'cucc', 'configured wins');
  t.equal(carrierOf({ name: 'x', protocol: 'cmpp3', operators: ['*'] }), 'cmcc', 'CMPP is China Mobile\'s');
  t.equal(carrierOf({ name: 'x', operators: ['ctcc'] }), 'ctcc', 'one Chinese operator');
  t.equal(carrierOf({ name: 'x', operators: ['*'] }), 'account:x', 'else a family of its own');
  t.equal(carrierOf({ name: 'x', operators: ['cmcc', 'cucc'] }), 'account:x');
  const carriers: Record<string, string> = { a1: 'cmcc', a2: 'cmcc', b: 'cucc', c: 'ctcc' };
  t.same(rerouteAccounts(['a2', 'b', 'a1', 'c'], ['a1'], (a) => carriers[a]), ['b', 'c']);
  t.same(rerouteAccounts(['a2'], ['a1'], (a) => carriers[a]), [], 'same carrier only: none');
  t.same(rerouteAccounts(['b', 'gone'], ['a1'], (a) => carriers[a]), ['b'], 'unknown accounts are not candidates');
});

t.test('rules: rerouteTo is checked like accounts and compiled only with reroute on', async (t) => {
  const known = { accounts: new Set(['a', 'b']), tiers: new Set(['routine']) };
  t.same(checkRules([{ name: 'r', match: {}, accounts: ['a'], policy: 'failover', reroute: true, rerouteTo: ['b'] }], known), []);
  t.match(checkRules([{ name: 'r', match: {}, accounts: ['a'], policy: 'failover', reroute: true, rerouteTo: ['nope'] }], known), [{ field: '/0/rerouteTo/0' }]);
  t.match(checkRules([{ name: 'r', match: {}, accounts: ['a'], policy: 'failover', rerouteTo: ['b'] }], known), [{ field: '/0/rerouteTo', message: /reroute: true/ }]);
  const table = compileTable([
    { name: 'on', match: {}, accounts: ['a', 'b'], policy: 'failover', reroute: true },
    { name: 'to', match: {}, accounts: ['a'], policy: 'failover', reroute: true, rerouteTo: ['b'] },
    { name: 'off', match: {}, accounts: ['a', 'b'], policy: 'failover' },
  ]);
  t.same(table.rules.map((r) => r.reroute), [['a', 'b'], ['b'], undefined]);
});

// ------------------------------------------------------- store transitions

interface Recipient {
  /** Reroute on for this recipient's rule. */
  readonly armed: boolean;
  /** First attempt: per part, the receipt's state, or `refused` (the SMSC refused the submit: no operator id). */
  readonly first: readonly (FinalState | 'refused')[];
  /** Second attempt's parts (its own plan: the count may differ). */
  readonly second: readonly FinalState[];
  /** Receipts sent twice. */
  readonly repeat: boolean;
}

interface Case {
  readonly recipients: readonly Recipient[];
  readonly order: readonly number[];
  readonly awaits: readonly boolean[];
  /** Close and reopen the store between the attempts. */
  readonly restart: boolean;
}

const recipientArb: fc.Arbitrary<Recipient> = fc.record({
  armed: fc.boolean(),
  first: fc.array(fc.constantFrom<FinalState | 'refused'>(...RECEIPT_STATES, 'undeliverable', 'rejected', 'refused'), { minLength: 1, maxLength: 3 }),
  second: fc.array(fc.constantFrom(...RECEIPT_STATES), { minLength: 1, maxLength: 3 }),
  repeat: fc.boolean(),
});

const caseArb: fc.Arbitrary<Case> = fc.record({
  recipients: fc.array(recipientArb, { minLength: 1, maxLength: 6 }),
  order: fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 100, maxLength: 100 }),
  awaits: fc.array(fc.boolean(), { minLength: 100, maxLength: 100 }),
  restart: fc.boolean(),
});

function stateOfParts(parts: readonly (FinalState | 'refused')[]): FinalState {
  return deriveRecipientState(parts.map((p) => ({ state: p === 'refused' ? 'rejected' : p })), 'submitted') as FinalState;
}

/** The reference model: what each recipient ends as, and how many attempts it has. */
function reference(r: Recipient): { state: FinalState; attempts: number } {
  const s1 = stateOfParts(r.first);
  const byReceipt = r.first.some((p) => p === 'undeliverable' || p === 'rejected');
  if (r.armed && (s1 === 'undeliverable' || s1 === 'rejected') && byReceipt) return { state: stateOfParts(r.second), attempts: 2 };
  return { state: s1, attempts: 1 };
}

t.test('store: final = last attempt\'s, at most 2 attempts, final once, reroute off unchanged, pending survives a restart', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-reroute-prop-'));
  const metrics: Metrics = createMetrics({ defaultMetrics: false });
  const finals = new Map<string, FinalState[]>();
  let env: RootDatabase = open({ path: dir, maxDbs: 32 });
  const openStore = (): ReceiptStore => {
    const s = ReceiptStore.open({ env, metrics, logger: createLogger({ level: 'silent' }), now: () => T0 + 5_000, earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000 });
    s.onFinal((id, index, state) => {
      const k = `${id}/${index}`;
      finals.set(k, [...(finals.get(k) ?? []), state]);
    });
    return s;
  };
  let store = openStore();
  t.teardown(async () => {
    await store.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let run = 0;
  let nextOpId = 1;

  /** Issue ops in order, awaiting where the case says (and at the end). */
  async function issue(c: Case, list: ReadonlyArray<() => Promise<unknown>>): Promise<void> {
    let pending: Promise<unknown>[] = [];
    for (let i = 0; i < list.length; i++) {
      pending.push(list[i]!());
      if (c.awaits[i % c.awaits.length] === true || i === list.length - 1) {
        await Promise.all(pending);
        pending = [];
      }
    }
  }

  function shuffle<T>(c: Case, list: readonly T[], salt: number): T[] {
    return list.map((x, i) => ({ x, k: c.order[(i + salt) % c.order.length]! * 1000 + i })).sort((a, b) => a.k - b.k).map((e) => e.x);
  }

  /** One attempt's ops for recipient i: a submit (or refusal) per part and its receipts. */
  function attemptOps(id: string, i: number, account: string, parts: readonly (FinalState | 'refused')[], repeat: boolean, armed: boolean, late: Array<() => Promise<unknown>>): Array<() => Promise<unknown>> {
    const ops: Array<() => Promise<unknown>> = [];
    parts.forEach((p, k) => {
      const segment = k + 1;
      if (p === 'refused') {
        const r: SegmentResult = { kind: 'final', messageId: id, index: i, segment, segments: parts.length, state: 'rejected', error: 'ESME_RINVDSTADR', at: T0 + 1_000 };
        ops.push(() => store.recordSegments([r]));
        return;
      }
      const opId = String(nextOpId++);
      const r: SegmentResult = armed
        ? { kind: 'submitted', messageId: id, index: i, segment, segments: parts.length, account, opId, at: T0 + 1_000, reroute: 'rule' }
        : { kind: 'submitted', messageId: id, index: i, segment, segments: parts.length, account, opId, at: T0 + 1_000 };
      ops.push(() => store.recordSegments([r]));
      const receipt = (): Promise<unknown> => store.applyReceipt({ account, messageId: opId, state: p, doneAt: T0 + 2_000 });
      ops.push(receipt);
      if (repeat) {
        ops.push(receipt);
        late.push(receipt); // again after the second attempt began
      }
    });
    return ops;
  }

  await t.resolves(fc.assert(
    fc.asyncProperty(caseArb, async (c) => {
      run++;
      const id = `m${run}`;
      const n = c.recipients.length;
      store.putMessage({ id, tenant: 't', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 1, recipients: n, createdAt: T0, expiresAt: T0 + 3_600_000 }, Array.from({ length: n }, (_, i) => `8613800${String(i).padStart(6, '0')}`));
      await store.flushed();
      if (c.recipients.some((r) => r.armed)) await store.keepForReroute({ id, text: 'hello', encoding: 'gsm7', sender: '1069' });
      const late: Array<() => Promise<unknown>> = [];
      const first: Array<() => Promise<unknown>> = [];
      c.recipients.forEach((r, i) => first.push(...attemptOps(id, i, `cm-${run}`, r.first, r.repeat, r.armed, late)));
      await issue(c, shuffle(c, first, 0));

      const want = c.recipients.map(reference);
      const rerouted = want.map((w, i) => (w.attempts === 2 ? i : -1)).filter((i) => i >= 0);
      // Between the attempts: the rerouted are not final and not announced; their reroute is pending.
      for (const i of rerouted) {
        const row = store.getRecipient(id, i)!;
        if (row.state !== 'queued') throw new Error(`recipient ${i} is ${row.state} between the attempts`);
        if (finals.has(`${id}/${i}`)) throw new Error(`recipient ${i} announced final before its second attempt`);
      }
      if (c.restart) {
        await store.close();
        await env.close();
        env = open({ path: dir, maxDbs: 32 });
        store = openStore();
      }
      const pending = store.pendingReroutes(1000).filter((e) => e.messageId === id);
      if (JSON.stringify(pending.map((e) => e.index)) !== JSON.stringify(rerouted)) {
        throw new Error(`pending reroutes ${JSON.stringify(pending.map((e) => e.index))}, want ${JSON.stringify(rerouted)}`);
      }
      if (pending.some((e) => e.job === undefined || e.job.text !== 'hello' || e.job.tier !== 'routine')) throw new Error('a pending reroute without its job');
      await store.clearReroutes(pending);
      // Second attempts (as the relay's job makes the dispatcher send them), first-attempt repeats mixed in.
      const second: Array<() => Promise<unknown>> = [];
      for (const i of rerouted) {
        if (store.rerouteOf(id, i) === undefined) throw new Error(`rerouteOf(${i}) undefined`);
        second.push(...attemptOps(id, i, `cu-${run}`, c.recipients[i]!.second, c.recipients[i]!.repeat, true, []));
      }
      await issue(c, shuffle(c, [...second, ...late], 7));

      for (let i = 0; i < n; i++) {
        const row = store.getRecipient(id, i)!;
        const w = want[i]!;
        const got: RecipientState = row.state;
        const attempts = row.attempts?.length ?? 1;
        if (got !== w.state || attempts !== w.attempts) {
          throw new Error(`recipient ${i} ${JSON.stringify(c.recipients[i])}: ${got} in ${attempts} attempts, want ${w.state} in ${w.attempts}`);
        }
        if (attempts > MAX_ATTEMPTS) throw new Error('more than 2 attempts');
        if (w.attempts === 2) {
          const a = row.attempts!;
          if (a[0]!.state !== stateOfParts(c.recipients[i]!.first) || a[1]!.state !== w.state) throw new Error(`attempts ${JSON.stringify(a)}`);
          if (a[1]!.segs.length !== c.recipients[i]!.second.length) throw new Error('the second attempt keeps its own parts');
        }
        const announced = finals.get(`${id}/${i}`) ?? [];
        if (announced.length !== 1 || announced[0] !== w.state) throw new Error(`recipient ${i} announced ${JSON.stringify(announced)}, want [${w.state}]`);
      }
      if (store.pendingReroutes(1000).some((e) => e.messageId === id)) throw new Error('a reroute pending after the second attempts');
    }),
    { numRuns: 120, seed: 19, endOnFailure: true },
  ), 'the property held');
  t.ok(run > 0, `${run} runs`);
  const m = await metrics.registry.getMetricsAsJSON();
  const values = (m.find((x) => x.name === 'smsgw_reroutes_total') as { values: { value: number; labels: Record<string, string> }[] }).values;
  const count = (o: string): number => values.filter((v) => v.labels['outcome'] === o).reduce((a, v) => a + v.value, 0);
  const ended = ['delivered', 'undeliverable', 'expired', 'rejected', 'failed'].reduce((a, o) => a + count(o), 0);
  t.ok(count('started') > 0, 'some runs rerouted');
  t.equal(ended, count('started'), 'every reroute started ended once (smsgw_reroutes_total)');
});

t.test('store: a second attempt that cannot be made leaves the first result final (no-account)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-reroute-end-'));
  const env = open({ path: dir, maxDbs: 32 });
  const metrics = createMetrics({ defaultMetrics: false });
  const store = ReceiptStore.open({ env, metrics, logger: createLogger({ level: 'silent' }), now: () => T0 + 5_000, earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000 });
  t.teardown(async () => {
    await store.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const finals: string[] = [];
  store.onFinal((_id, _i, state) => finals.push(state));
  store.putMessage({ id: 'm', tenant: 't', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 1, recipients: 1, createdAt: T0, expiresAt: T0 + 3_600_000 }, ['8613800000005']);
  await store.flushed();
  await store.keepForReroute({ id: 'm', text: 'x', encoding: 'gsm7', sender: '1069' });
  await store.recordSegments([{ kind: 'submitted', messageId: 'm', index: 0, segment: 1, segments: 1, account: 'a', opId: '9', at: T0, reroute: 'rule' }]);
  await store.applyReceipt({ account: 'a', messageId: '9', state: 'undeliverable', doneAt: T0, error: '001' });
  t.equal(store.getRecipient('m', 0)?.state, 'queued');
  t.same(finals, []);
  await store.endReroutes('m', [0]);
  const row = store.getRecipient('m', 0)!;
  t.equal(row.state, 'undeliverable', 'the first attempt\'s result');
  t.equal(row.attempts, undefined, 'one attempt');
  t.equal(row.segs[0]?.opId, '9');
  t.same(finals, ['undeliverable'], 'announced once');
  t.same(store.pendingReroutes(10), [], 'nothing left to publish');
  const m = await metrics.registry.getMetricsAsJSON();
  const values = (m.find((x) => x.name === 'smsgw_reroutes_total') as { values: { value: number; labels: Record<string, string> }[] }).values;
  t.match(values.find((v) => v.labels['outcome'] === 'no-account'), { value: 1 });
});

t.test('Router.rerouteTargets: other carriers only, allow-lists respected, up ones first; the route names a reroute rule', async (t) => {
  const { Router } = await import('../../src/dispatch/router.js');
  const state: Record<string, number> = { 'cm-a': 1, 'cm-b': 1, 'cu-a': 1, 'cu-b': 1, 'ct-test': 1 };
  const acc = (name: string, carrier: string, extra: Record<string, unknown> = {}) => ({
    name, operators: [] as string[], carrier, transport: { account: name, pending: 0 } as never, bound: () => state[name] ?? 0, shed: () => 0, ...extra,
  });
  let now = 0;
  const router = new Router([
    acc('cm-a', 'cmcc'), acc('cm-b', 'cmcc'), acc('cu-a', 'cucc'), acc('cu-b', 'cucc'), acc('ct-test', 'ctcc', { allowList: new Set(['8613800000001']) }),
  ], {
    health: { unboundMs: 100, failingMs: 1000, retryMs: 5000 }, utcOffsetMinutes: 480, tiers: ['routine'],
    rules: [
      { name: 'mobile', match: { operators: ['cmcc'] }, accounts: ['cm-a', 'cm-b'], policy: 'failover', reroute: true, rerouteTo: ['cm-b', 'ct-test', 'cu-a', 'cu-b'] },
      { name: 'plain', match: { operators: ['cucc'] }, accounts: ['cu-a'], policy: 'failover' },
    ],
  }, { now: () => now });
  const msg = { tier: 'routine', units: ['dev'] };
  t.equal(router.route('8613800000002', msg, 0).reroute, 'mobile');
  t.equal(router.route('8613000000002', msg, 0).reroute, undefined, 'a rule without reroute names none');
  const names = (to: string, first: string[]): string[] => router.rerouteTargets('mobile', to, first).map((a) => a.name);
  t.same(names('8613800000002', ['cm-a']), ['cu-a', 'cu-b'], 'not cm-b (same carrier), not the test account (not on its list)');
  t.same(names('8613800000001', ['cm-a']), ['ct-test', 'cu-a', 'cu-b'], 'the test account for its own numbers');
  t.same(names('8613800000002', ['cm-a', 'cu-a']), [], 'every other carrier used');
  t.same(router.rerouteTargets('plain', '8613800000002', ['cm-a']), [], 'reroute off');
  t.same(router.rerouteTargets('gone', '8613800000002', ['cm-a']), [], 'unknown rule');
  state['cu-a'] = 0;
  now = 200;
  router.tick();
  now = 400;
  router.tick();
  t.same(names('8613800000002', ['cm-a']), ['cu-b', 'cu-a'], 'a down account goes last');
});
