/**
 * Routing as data (src/core/route.ts): rule matching, candidate order per
 * policy and account health, each checked against a simple reference model
 * with fast-check.
 */
import t from 'tap';
import fc from 'fast-check';
import {
  chooseAccount, compileTable, defaultRules, healthStep, initialHealth, localMinuteOfDay, orderCandidates, selectRule, checkRules,
  weightedSchedule, type AccountHealth, type HealthEvent, type HealthPolicy, type Operator, type RouteContext, type RouteRule,
} from '../../src/core/route.js';
import { toAccount, toCanonical } from '../../src/core/access-code.js';

const OPS: Operator[] = ['cmcc', 'cucc', 'ctcc', 'intl'];
const TIERS = ['emergency', 'routine', 'bulk'];
const UNITS = ['root', 'city', 'district', 'bureau'];
const ACCOUNTS = ['a', 'b', 'c', 'd', 'e'];

const hhmm = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 })).map(([h, m]) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`);
const sub = <T>(xs: readonly T[]) => fc.option(fc.subarray([...xs], { minLength: 1 }), { nil: undefined });

const ruleArb: fc.Arbitrary<RouteRule> = fc.record({
  tiers: sub(TIERS),
  units: sub(UNITS),
  operators: sub(OPS),
  window: fc.option(fc.record({ start: hhmm, end: hhmm }), { nil: undefined }),
  accounts: fc.uniqueArray(fc.constantFrom(...ACCOUNTS), { minLength: 1, maxLength: 5 }),
  policy: fc.constantFrom('failover' as const, 'round-robin' as const, 'weighted' as const),
  seed: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 5, maxLength: 5 }),
}).map((r, ) => ({
  name: 'r',
  match: {
    ...(r.tiers ? { tiers: r.tiers } : {}),
    ...(r.units ? { units: r.units } : {}),
    ...(r.operators ? { operators: r.operators } : {}),
    ...(r.window ? { window: r.window } : {}),
  },
  accounts: r.accounts,
  policy: r.policy,
  ...(r.policy === 'weighted' ? { weights: r.accounts.map((_, i) => r.seed[i] as number) } : {}),
}));

const ctxArb: fc.Arbitrary<RouteContext> = fc.record({
  tier: fc.constantFrom(...TIERS),
  // A chain: some suffix of district → city → root, or a bootstrap tenant.
  units: fc.constantFrom(['bureau', 'city', 'root'], ['district', 'city', 'root'], ['city', 'root'], ['root'], ['dev']),
  operator: fc.constantFrom(...OPS),
  minuteOfDay: fc.integer({ min: 0, max: 1439 }),
});

/** Reference matcher: written from the documented meaning, not the implementation. */
function refMatches(r: RouteRule, c: RouteContext): boolean {
  const m = r.match;
  if (m.tiers !== undefined && !m.tiers.includes(c.tier)) return false;
  if (m.operators !== undefined && !m.operators.includes(c.operator)) return false;
  if (m.units !== undefined && !c.units.some((u) => m.units?.includes(u))) return false;
  if (m.window !== undefined) {
    const [sh, sm] = m.window.start.split(':').map(Number) as [number, number];
    const [eh, em] = m.window.end.split(':').map(Number) as [number, number];
    const s = sh * 60 + sm;
    const e = eh * 60 + em;
    // Walk the minutes of the window from its start: membership by enumeration.
    const minutes = new Set<number>();
    if (s !== e) for (let x = s; x !== e; x = (x + 1) % 1440) minutes.add(x);
    if (!minutes.has(c.minuteOfDay)) return false;
  }
  return true;
}

t.test('selectRule picks the first matching rule, like a linear scan of the reference matcher', async () => {
  fc.assert(fc.property(fc.array(ruleArb, { maxLength: 8 }), ctxArb, (rules, ctx) => {
    const named = rules.map((r, i) => ({ ...r, name: `r${i}` }));
    const got = selectRule(compileTable(named), ctx);
    const want = named.find((r) => refMatches(r, ctx));
    return (got?.rule.name ?? null) === (want?.name ?? null);
  }), { numRuns: 2000 });
});

t.test('selectRule with allow-list accounts: the first matching rule that has a usable account', async () => {
  fc.assert(fc.property(fc.array(ruleArb, { maxLength: 8 }), ctxArb, fc.subarray(ACCOUNTS), (rules, ctx, usableOnes) => {
    const named = rules.map((r, i) => ({ ...r, name: `r${i}` }));
    const usable = (a: string): boolean => usableOnes.includes(a);
    const got = selectRule(compileTable(named), ctx, usable);
    const want = named.find((r) => refMatches(r, ctx) && r.accounts.some(usable));
    return (got?.rule.name ?? null) === (want?.name ?? null);
  }), { numRuns: 2000 });
});

t.test('configured rules come before the derived per-operator rules', async (t) => {
  const derived = defaultRules([{ name: 'a', operators: ['cmcc'] }, { name: 'b', operators: ['*'] }]);
  const table = compileTable([{ name: 'emg', match: { tiers: ['emergency'] }, accounts: ['e'], policy: 'failover' }], derived);
  const ctx = (tier: string, operator: Operator): RouteContext => ({ tier, units: ['dev'], operator, minuteOfDay: 0 });
  t.equal(selectRule(table, ctx('emergency', 'cmcc'))?.rule.name, 'emg');
  t.equal(selectRule(table, ctx('routine', 'cmcc'))?.rule.name, 'default-cmcc');
  t.same(selectRule(table, ctx('routine', 'cmcc'))?.accounts, ['a', 'b']);
  t.same(selectRule(table, ctx('routine', 'ctcc'))?.accounts, ['b']);
  t.equal(selectRule(compileTable([], defaultRules([{ name: 'a', operators: ['cmcc'] }])), ctx('routine', 'cucc')), undefined, 'no account for the operator: no route');
});

t.test('the derived table picks what chooseAccount picked (existing configs route as before)', async () => {
  const acct = fc.record({ name: fc.constantFrom(...ACCOUNTS), operators: fc.subarray(['cmcc', 'cucc', 'ctcc', 'intl', '*']) });
  fc.assert(fc.property(fc.uniqueArray(acct, { selector: (a) => a.name, maxLength: 5 }), fc.constantFrom(...OPS), (accounts, op) => {
    const rule = selectRule(compileTable([], defaultRules(accounts)), { tier: 'routine', units: ['dev'], operator: op, minuteOfDay: 0 });
    const first = rule ? orderCandidates(rule, () => true, 0)[0] : undefined;
    return first === chooseAccount(op, accounts)?.name;
  }), { numRuns: 1000 });
});

t.test('orderCandidates: a permutation of the rule accounts, up ones first, in policy order', async () => {
  fc.assert(fc.property(ruleArb, fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }), fc.nat(10_000), (rule, ups, turn) => {
    const r = compileTable([rule]).rules[0]!;
    const isUp = (a: string): boolean => ups[ACCOUNTS.indexOf(a)] as boolean;
    const out = orderCandidates(r, isUp, turn);
    if ([...out].sort().join() !== [...rule.accounts].sort().join()) return false;
    const upOnes = rule.accounts.filter(isUp);
    const downOnes = rule.accounts.filter((a) => !isUp(a));
    if (out.slice(upOnes.length).join() !== downOnes.join()) return false; // down: last, in rule order
    if (rule.policy === 'failover') return out.slice(0, upOnes.length).join() === upOnes.join();
    if (rule.policy === 'round-robin') {
      const k = upOnes.length === 0 ? 0 : turn % upOnes.length;
      return out.slice(0, upOnes.length).join() === [...upOnes.slice(k), ...upOnes.slice(0, k)].join();
    }
    return upOnes.length === 0 || upOnes.includes(out[0] as string);
  }), { numRuns: 3000 });
});

t.test('weighted: over one cycle each up account is first exactly its weight times; round-robin: equally', async (t) => {
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 5 }),
    fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
    fc.nat(1000),
    (weights, ups, offset) => {
      const accounts = ACCOUNTS.slice(0, weights.length);
      const isUp = (a: string): boolean => ups[ACCOUNTS.indexOf(a)] as boolean;
      const up = accounts.filter(isUp);
      const w = compileTable([{ name: 'w', match: {}, accounts, policy: 'weighted', weights }]).rules[0]!;
      const rr = compileTable([{ name: 'rr', match: {}, accounts, policy: 'round-robin' }]).rules[0]!;
      const total = up.reduce((s, a) => s + (weights[accounts.indexOf(a)] as number), 0);
      const wCount = new Map<string, number>();
      const rCount = new Map<string, number>();
      for (let i = 0; i < total; i++) {
        const fw = orderCandidates(w, isUp, offset + i)[0] as string;
        wCount.set(fw, (wCount.get(fw) ?? 0) + 1);
      }
      for (let i = 0; i < up.length * 3; i++) {
        const fr = orderCandidates(rr, isUp, offset + i)[0] as string;
        rCount.set(fr, (rCount.get(fr) ?? 0) + 1);
      }
      return up.every((a) => wCount.get(a) === weights[accounts.indexOf(a)] && rCount.get(a) === 3);
    }), { numRuns: 1000 });
  t.same(weightedSchedule([5, 1, 1]), [0, 0, 1, 0, 2, 0, 0], 'smooth: the heavy account is spread out (nginx sequence)');
});

t.test('checkRules names unknown accounts and tiers, duplicates and weight mistakes', async (t) => {
  const known = { accounts: new Set(['a', 'b']), tiers: new Set(['routine']) };
  const problems = checkRules([
    { name: 'x', match: { tiers: ['nope'] }, accounts: ['a', 'zz', 'a'], policy: 'failover', weights: [1] },
    { name: 'x', match: {}, accounts: ['a', 'b'], policy: 'weighted', weights: [1] },
    { name: 'y', match: {}, accounts: ['a'], policy: 'weighted', weights: [0] },
  ], known);
  t.same(problems.map((p) => p.field), ['/0/accounts/1', '/0/accounts/2', '/0/match/tiers/0', '/0/weights', '/1/name', '/1/weights', '/2/weights/0']);
  t.same(checkRules([{ name: 'ok', match: { tiers: ['routine'] }, accounts: ['a', 'b'], policy: 'weighted', weights: [3, 1] }], known), []);
});

t.test('local minute of day follows the offset and wraps', async (t) => {
  t.equal(localMinuteOfDay(Date.UTC(2026, 0, 1, 16, 30), 480), 30, '16:30Z is 00:30 in China');
  t.equal(localMinuteOfDay(Date.UTC(2026, 0, 1, 0, 10), -60), 1390);
  fc.assert(fc.property(fc.integer({ min: 0, max: 4e12 }), fc.integer({ min: -720, max: 840 }), (at, off) => {
    const m = localMinuteOfDay(at, off);
    return m >= 0 && m < 1440 && Number.isInteger(m);
  }));
});

// ------------------------------------------------------------------ health

const P: HealthPolicy = { unboundMs: 100, failingMs: 200, retryMs: 1e12 };

/**
 * Reference: down at `now` iff the current run of zero-bound observations
 * began ≥ unboundMs ago, or — while bound — the failures since the last
 * success (and since the last rebind) began ≥ failingMs ago. No half-open
 * (retryMs is infinite here).
 */
function refDown(history: readonly { at: number; e: HealthEvent }[], now: number, initiallyBound: boolean): boolean {
  let unboundSince: number | undefined = initiallyBound ? undefined : 0;
  let failingSince: number | undefined;
  for (const { at, e } of history) {
    if (e.kind === 'bound') {
      if (e.count > 0) {
        if (unboundSince !== undefined) failingSince = undefined;
        unboundSince = undefined;
      } else if (unboundSince === undefined) unboundSince = at;
    } else if (e.kind === 'success') failingSince = undefined;
    else if (e.kind === 'failure' && failingSince === undefined) failingSince = at;
  }
  return (unboundSince !== undefined && now - unboundSince >= P.unboundMs) || (failingSince !== undefined && now - failingSince >= P.failingMs);
}

t.test('healthStep agrees with the reference at every step', async () => {
  const eventArb: fc.Arbitrary<HealthEvent> = fc.oneof(
    fc.integer({ min: 0, max: 2 }).map((count) => ({ kind: 'bound' as const, count })),
    fc.constant({ kind: 'success' as const }),
    fc.constant({ kind: 'failure' as const }),
    fc.constant({ kind: 'tick' as const }),
  );
  fc.assert(fc.property(fc.boolean(), fc.array(fc.tuple(fc.integer({ min: 0, max: 80 }), eventArb), { maxLength: 60 }), (bound0, steps) => {
    let h: AccountHealth = initialHealth(0, bound0 ? 1 : 0);
    let now = 0;
    const history: { at: number; e: HealthEvent }[] = [];
    for (const [dt, e] of steps) {
      now += dt;
      h = healthStep(h, e, now, P);
      history.push({ at: now, e });
      if (h.up === refDown(history, now, bound0)) return false;
      if (!h.up && h.reason !== 'unbound' && h.reason !== 'failing') return false;
    }
    return true;
  }), { numRuns: 3000 });
});

t.test('half-open: a bound account down for failing is tried again after retryMs; unbound waits for a bind', async (t) => {
  const p: HealthPolicy = { unboundMs: 100, failingMs: 200, retryMs: 1000 };
  let h = initialHealth(0, 1);
  h = healthStep(h, { kind: 'failure' }, 10, p);
  h = healthStep(h, { kind: 'tick' }, 209, p);
  t.ok(h.up, 'failing for less than failingMs: up');
  h = healthStep(h, { kind: 'tick' }, 210, p);
  t.notOk(h.up);
  t.equal(h.reason, 'failing');
  h = healthStep(h, { kind: 'tick' }, 1209, p);
  t.notOk(h.up, 'not before retryMs');
  h = healthStep(h, { kind: 'tick' }, 1210, p);
  t.ok(h.up, 'tried again after retryMs');
  h = healthStep(h, { kind: 'failure' }, 1300, p);
  h = healthStep(h, { kind: 'tick' }, 1499, p);
  t.ok(h.up);
  h = healthStep(h, { kind: 'tick' }, 1500, p);
  t.notOk(h.up, 'fails again for failingMs: down again');

  let u = initialHealth(0, 1);
  u = healthStep(u, { kind: 'bound', count: 0 }, 50, p);
  u = healthStep(u, { kind: 'tick' }, 150, p);
  t.notOk(u.up);
  t.equal(u.reason, 'unbound');
  u = healthStep(u, { kind: 'tick' }, 5000, p);
  t.notOk(u.up, 'unbound: no half-open, it waits for a session');
  u = healthStep(u, { kind: 'bound', count: 1 }, 5001, p);
  t.ok(u.up, 'bound again: up at once');
});

t.test('access code rewrite: to the account and back to the platform\'s code is the identity on rewritten sources', async (t) => {
  const digits = (min: number, max: number) => fc.stringMatching(new RegExp(`^[0-9]{${min},${max}}$`));
  fc.assert(fc.property(digits(1, 8), digits(1, 8), digits(0, 8), (from, to, ext) => {
    const rw = { from, to };
    const sent = toAccount(rw, from + ext);
    return sent === to + ext && toCanonical(rw, sent) === from + ext;
  }), { numRuns: 1000 });
  t.equal(toAccount({ from: '10690', to: '10655' }, '95599'), '95599', 'another code is left alone');
  t.equal(toCanonical(undefined, '1065500111'), '1065500111');
});
