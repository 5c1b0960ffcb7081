/**
 * Number → operator routing by Chinese mobile number segment (号段).
 *
 * Operator accounts deliver best (and are often priced) on their own network,
 * so a recipient is routed to an account of the operator that issued its
 * segment. Since number portability (携号转网, 2019) a segment tells the
 * issuer, not always the current network; the networks interconnect SMS, so a
 * ported number still gets its message, one hop later.
 *
 * Segments not listed below (IoT 140–144, unassigned 154, 160, 161, 163, 164,
 * 168, 169, 179, 194) route as China Mobile, the largest network, rather
 * than failing: the number passed validation and any Chinese account can
 * reach it.
 */

export type Operator = 'cmcc' | 'cucc' | 'ctcc' | 'intl';

const CMCC = 1;
const CUCC = 2;
const CTCC = 3;
const OPERATOR_BY_CODE: readonly Operator[] = ['cmcc', 'cmcc', 'cucc', 'ctcc'];

/** Three-digit segments, each covering its ten four-digit sub-segments. */
const SEGMENTS: ReadonlyArray<readonly [number, readonly number[]]> = [
  // China Mobile. 192 is China Broadnet (中国广电), which runs on China
  // Mobile's radio network and shares its SMS interconnect: route it there.
  [CMCC, [134, 135, 136, 137, 138, 139, 147, 148, 150, 151, 152, 157, 158, 159, 165, 172, 178, 182, 183, 184, 187, 188, 192, 195, 197, 198]],
  // China Unicom.
  [CUCC, [130, 131, 132, 145, 146, 155, 156, 166, 167, 171, 175, 176, 185, 186, 196]],
  // China Telecom. 162 is a Telecom virtual-operator segment.
  [CTCC, [133, 149, 153, 162, 173, 174, 177, 180, 181, 189, 190, 191, 193, 199]],
];

/** Four-digit sub-segments that differ from their three-digit segment. */
const SUB_SEGMENTS: ReadonlyArray<readonly [number, readonly number[]]> = [
  // 1349 is Telecom's satellite phone block inside Mobile's 134.
  [CTCC, [1349, 1700, 1701, 1702]],
  // 170x: virtual operators (MVNO), each hosted by one network.
  [CMCC, [1703, 1705, 1706]],
  [CUCC, [1704, 1707, 1708, 1709]],
];

/** Index: the four digits after 86, minus 1000. Value: CMCC/CUCC/CTCC, 0 for unlisted. */
const BY_PREFIX = new Uint8Array(1000);
for (const [op, segments] of SEGMENTS) {
  for (const s of segments) BY_PREFIX.fill(op, s * 10 - 1000, s * 10 - 1000 + 10);
}
for (const [op, subs] of SUB_SEGMENTS) {
  for (const s of subs) BY_PREFIX[s - 1000] = op;
}

function digitAt(s: string, i: number): number {
  return s.charCodeAt(i) - 0x30;
}

/**
 * Operator for a normalised number (digits with country code, see
 * normalizeNumber). Only `86` + 11 digits starting with 1 is Chinese; every
 * other number, including bare 11-digit ones (which may be NANP), is 'intl'.
 */
export function operatorOf(number: string): Operator {
  if (number.length !== 13 || !number.startsWith('861')) return 'intl';
  const d1 = digitAt(number, 3);
  const d2 = digitAt(number, 4);
  const d3 = digitAt(number, 5);
  if (d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) return 'intl';
  return OPERATOR_BY_CODE[BY_PREFIX[d1 * 100 + d2 * 10 + d3] as number] as Operator;
}

/**
 * The account to send through: the first whose `operators` lists `operator`,
 * else the first that lists `*`, else undefined (the caller finalises the
 * recipient as failed: no route).
 */
export function chooseAccount<T extends { name: string; operators: readonly string[] }>(
  operator: Operator,
  accounts: readonly T[],
): T | undefined {
  for (const a of accounts) {
    if (a.operators.includes(operator)) return a;
  }
  for (const a of accounts) {
    if (a.operators.includes('*')) return a;
  }
  return undefined;
}

// ====================================================== routing as data
//
//   rules (ordered, first match wins)          one rule
//   ┌──────────────────────────────┐          ┌──────────────────────────────────────────┐
//   │ 1 emergency   → [emg, cm-a]  │  match = │ tiers ∧ units (subtree) ∧ operators ∧    │
//   │ 2 unit ctyA   → [cm-b, cm-a] │          │ local time window   (absent = any)       │
//   │ …configured rules…           │          ├──────────────────────────────────────────┤
//   │ default cmcc  → [cm-a, cm-b] │ derived  │ accounts + policy: failover | round-robin│
//   │ default cucc  → …            │ from the │ | weighted → ordered candidates; accounts │
//   │ default ctcc / intl          │ accounts'│ that are down go last                     │
//   └──────────────────────────────┘ operators└──────────────────────────────────────────┘
//
// Everything below is pure: the caller (src/dispatch/router.ts) holds the
// health of each account and the per-rule turn counters.

export type RoutePolicy = 'failover' | 'round-robin' | 'weighted';

/** What a rule matches; every field present must match (AND), an absent one matches anything. */
export interface RouteMatch {
  readonly tiers?: readonly string[];
  /** Unit ids: the sending unit or any of its ancestors is one of them (the subtree). */
  readonly units?: readonly string[];
  readonly operators?: readonly Operator[];
  /** Local time window, HH:MM; may wrap midnight; start = end never matches. */
  readonly window?: { readonly start: string; readonly end: string };
}

export interface RouteRule {
  readonly name: string;
  readonly match: RouteMatch;
  /** Account names, in preference order (failover) or the rotation (round-robin, weighted). */
  readonly accounts: readonly string[];
  readonly policy: RoutePolicy;
  /** `weighted`: one positive integer per account. */
  readonly weights?: readonly number[];
  /** Reroute of failed recipients (src/core/reroute.ts); absent or false: off. */
  readonly reroute?: boolean;
  /** Accounts of a second attempt; absent: `accounts`. */
  readonly rerouteTo?: readonly string[];
}

/** Who is sending what, to which operator, when. */
export interface RouteContext {
  readonly tier: string;
  /** The sending unit, its parent, … the root (a bootstrap key: its tenant name alone). */
  readonly units: readonly string[];
  readonly operator: Operator;
  /** Minutes since local midnight, 0–1439. */
  readonly minuteOfDay: number;
}

export interface CompiledRule {
  readonly rule: RouteRule;
  /** Position in the table (turn counters are kept per index). */
  readonly index: number;
  /** True for the per-operator rules derived from the accounts' `operators`. */
  readonly derived: boolean;
  readonly tiers: ReadonlySet<string> | undefined;
  readonly units: ReadonlySet<string> | undefined;
  readonly operators: ReadonlySet<Operator> | undefined;
  readonly window: { readonly start: number; readonly end: number } | undefined;
  /** Accounts without duplicates, in rule order. */
  readonly accounts: readonly string[];
  readonly weights: readonly number[];
  /** weighted: smooth weighted round-robin schedules by up-mask (bounded memo). */
  readonly schedules: Map<number, readonly number[]>;
  /** Reroute on: the accounts a second attempt chooses from (`rerouteTo`, else `accounts`); undefined: off. */
  readonly reroute: readonly string[] | undefined;
}

export interface RoutingTable {
  readonly rules: readonly CompiledRule[];
}

export const ROUTE_OPERATORS: readonly Operator[] = ['cmcc', 'cucc', 'ctcc', 'intl'];
/** Most accounts one rule may list (the up-mask of a weighted rule is a 31-bit integer). */
export const MAX_RULE_ACCOUNTS = 16;
/** Largest weight of one account. */
export const MAX_WEIGHT = 1000;
const MAX_SCHEDULES = 64;

export function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(':');
  return Number(h) * 60 + Number(m);
}

/** Minutes since local midnight at epoch ms `at`. */
export function localMinuteOfDay(at: number, utcOffsetMinutes: number): number {
  const m = Math.floor((at + utcOffsetMinutes * 60_000) / 60_000) % 1440;
  return m < 0 ? m + 1440 : m;
}

/**
 * The per-operator rules today's configuration implies: for each operator,
 * every account listing it, in configuration order, then every account
 * listing `*`, as a failover list. With every account up the first choice
 * is exactly what `chooseAccount` picks, so an existing configuration
 * routes as before and gains failover.
 */
export function defaultRules(accounts: readonly { name: string; operators: readonly string[] }[]): RouteRule[] {
  const rules: RouteRule[] = [];
  for (const op of ROUTE_OPERATORS) {
    const list = [...accounts.filter((a) => a.operators.includes(op)), ...accounts.filter((a) => a.operators.includes('*') && !a.operators.includes(op))].map((a) => a.name);
    if (list.length > 0) rules.push({ name: `default-${op}`, match: { operators: [op] }, accounts: list, policy: 'failover' });
  }
  return rules;
}

/** A problem with one rule, as a field path under the rules array and a message. */
export interface RuleProblem {
  readonly field: string;
  readonly message: string;
}

/** Conflicts the schema cannot express: unknown accounts and tiers, weights, duplicates. */
export function checkRules(rules: readonly RouteRule[], known: { accounts: ReadonlySet<string>; tiers: ReadonlySet<string> }): RuleProblem[] {
  const problems: RuleProblem[] = [];
  const names = new Set<string>();
  rules.forEach((r, i) => {
    if (names.has(r.name)) problems.push({ field: `/${i}/name`, message: `duplicate rule name ${r.name}` });
    names.add(r.name);
    r.accounts.forEach((a, j) => {
      if (!known.accounts.has(a)) problems.push({ field: `/${i}/accounts/${j}`, message: `unknown account ${a}` });
      if (r.accounts.indexOf(a) !== j) problems.push({ field: `/${i}/accounts/${j}`, message: `account ${a} listed twice` });
    });
    if (r.accounts.length > MAX_RULE_ACCOUNTS) problems.push({ field: `/${i}/accounts`, message: `at most ${MAX_RULE_ACCOUNTS} accounts` });
    r.match.tiers?.forEach((t, j) => {
      if (!known.tiers.has(t)) problems.push({ field: `/${i}/match/tiers/${j}`, message: `unknown tier ${t}` });
    });
    if (r.policy === 'weighted') {
      if (r.weights === undefined || r.weights.length !== r.accounts.length) problems.push({ field: `/${i}/weights`, message: 'weighted: one weight per account' });
    } else if (r.weights !== undefined) {
      problems.push({ field: `/${i}/weights`, message: 'weights are for policy weighted only' });
    }
    r.rerouteTo?.forEach((a, j) => {
      if (!known.accounts.has(a)) problems.push({ field: `/${i}/rerouteTo/${j}`, message: `unknown account ${a}` });
      if (r.rerouteTo?.indexOf(a) !== j) problems.push({ field: `/${i}/rerouteTo/${j}`, message: `account ${a} listed twice` });
    });
    if (r.rerouteTo !== undefined && r.reroute !== true) problems.push({ field: `/${i}/rerouteTo`, message: 'rerouteTo is for reroute: true only' });
    if ((r.rerouteTo?.length ?? 0) > MAX_RULE_ACCOUNTS) problems.push({ field: `/${i}/rerouteTo`, message: `at most ${MAX_RULE_ACCOUNTS} accounts` });
    r.weights?.forEach((w, j) => {
      if (!Number.isInteger(w) || w < 1 || w > MAX_WEIGHT) problems.push({ field: `/${i}/weights/${j}`, message: `an integer from 1 to ${MAX_WEIGHT}` });
    });
  });
  return problems;
}

/** The table: the configured rules in order, then the derived per-operator ones. */
export function compileTable(rules: readonly RouteRule[], derived: readonly RouteRule[] = []): RoutingTable {
  const all = [...rules.map((r) => [r, false] as const), ...derived.map((r) => [r, true] as const)];
  return {
    rules: all.map(([rule, isDerived], index) => {
      const accounts: string[] = [];
      const weights: number[] = [];
      rule.accounts.forEach((a, j) => {
        if (accounts.includes(a) || accounts.length >= MAX_RULE_ACCOUNTS) return;
        accounts.push(a);
        weights.push(rule.policy === 'weighted' ? Math.max(1, Math.min(MAX_WEIGHT, Math.floor(rule.weights?.[j] ?? 1))) : 1);
      });
      const m = rule.match;
      return {
        rule,
        index,
        derived: isDerived,
        tiers: m.tiers ? new Set(m.tiers) : undefined,
        units: m.units ? new Set(m.units) : undefined,
        operators: m.operators ? new Set(m.operators) : undefined,
        window: m.window ? { start: minutesOf(m.window.start), end: minutesOf(m.window.end) } : undefined,
        accounts,
        weights,
        schedules: new Map(),
        reroute: rule.reroute === true ? [...new Set(rule.rerouteTo ?? rule.accounts)].slice(0, MAX_RULE_ACCOUNTS) : undefined,
      };
    }),
  };
}

export function inWindow(w: { start: number; end: number }, minute: number): boolean {
  if (w.start === w.end) return false;
  return w.start < w.end ? minute >= w.start && minute < w.end : minute >= w.start || minute < w.end;
}

export function ruleMatches(r: CompiledRule, ctx: RouteContext): boolean {
  if (r.tiers && !r.tiers.has(ctx.tier)) return false;
  if (r.operators && !r.operators.has(ctx.operator)) return false;
  if (r.units) {
    let any = false;
    for (const u of ctx.units) {
      if (r.units.has(u)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if (r.window && !inWindow(r.window, ctx.minuteOfDay)) return false;
  return true;
}

/**
 * The first rule that matches and names at least one account that may carry
 * this recipient (`usable`: an account in allow-list mode carries only its
 * listed numbers); undefined: no route.
 */
export function selectRule(table: RoutingTable, ctx: RouteContext, usable?: (account: string) => boolean): CompiledRule | undefined {
  for (const r of table.rules) {
    if (r.accounts.length > 0 && ruleMatches(r, ctx) && (usable === undefined || r.accounts.some(usable))) return r;
  }
  return undefined;
}

/**
 * Smooth weighted round-robin (nginx): a sequence of positions of length
 * sum(weights) in which each position appears exactly its weight times,
 * spread out rather than in runs.
 */
export function weightedSchedule(weights: readonly number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  const current = weights.map(() => 0);
  const out: number[] = [];
  for (let n = 0; n < total; n++) {
    let best = -1;
    for (let i = 0; i < weights.length; i++) {
      current[i] = (current[i] as number) + (weights[i] as number);
      if (best < 0 || (current[i] as number) > (current[best] as number)) best = i;
    }
    current[best] = (current[best] as number) - total;
    out.push(best);
  }
  return out;
}

/**
 * Candidate accounts of a rule, best first. Accounts that are up come
 * before accounts that are down (a down account stays in the list, last:
 * when every account is down the work waits in the first one's queue
 * rather than failing). Among the up ones:
 *  - failover: rule order;
 *  - round-robin: rule order rotated by `turn`;
 *  - weighted: the first is the `turn`-th of the smooth weighted schedule of
 *    the up accounts (so over sum(weights) turns each gets its weight), the
 *    rest in rule order.
 */
export function orderCandidates(r: CompiledRule, isUp: (account: string) => boolean, turn: number): string[] {
  const up: number[] = [];
  const down: number[] = [];
  let mask = 0;
  r.accounts.forEach((a, i) => {
    if (isUp(a)) {
      up.push(i);
      mask |= 1 << i;
    } else down.push(i);
  });
  const t = Math.abs(Math.floor(turn));
  let order = up;
  if (up.length > 1 && r.rule.policy === 'round-robin') {
    const k = t % up.length;
    order = [...up.slice(k), ...up.slice(0, k)];
  } else if (up.length > 1 && r.rule.policy === 'weighted') {
    let schedule = r.schedules.get(mask);
    if (schedule === undefined) {
      schedule = weightedSchedule(up.map((i) => r.weights[i] as number));
      if (r.schedules.size >= MAX_SCHEDULES) r.schedules.clear();
      r.schedules.set(mask, schedule);
    }
    const first = up[schedule[t % schedule.length] as number] as number;
    order = [first, ...up.filter((i) => i !== first)];
  }
  return [...order, ...down].map((i) => r.accounts[i] as string);
}

// ================================================== account health (pure)

export interface HealthPolicy {
  /** An account with no bound session for this long is down. */
  readonly unboundMs: number;
  /** An account whose submits keep failing (no success in between) for this long is down. */
  readonly failingMs: number;
  /** A down-for-failing account (still bound) is tried again after this long (half-open). */
  readonly retryMs: number;
}

export interface AccountHealth {
  readonly up: boolean;
  /** Since when no session has been bound (undefined: one is). */
  readonly unboundSince: number | undefined;
  /** First failure since the last success (undefined: the last outcome was a success). */
  readonly failingSince: number | undefined;
  /** When it went down (undefined while up). */
  readonly downSince: number | undefined;
  readonly reason: string | undefined;
}

export type HealthEvent =
  | { readonly kind: 'bound'; readonly count: number }
  | { readonly kind: 'success' }
  | { readonly kind: 'failure' }
  | { readonly kind: 'tick' };

/** A new account: up, and counted as unbound from `now` until a session binds. */
export function initialHealth(now: number, bound: number): AccountHealth {
  return { up: true, unboundSince: bound > 0 ? undefined : now, failingSince: undefined, downSince: undefined, reason: undefined };
}

/** The account's health after `event` at `now`. */
export function healthStep(h: AccountHealth, event: HealthEvent, now: number, p: HealthPolicy): AccountHealth {
  let { unboundSince, failingSince, downSince } = h;
  switch (event.kind) {
    case 'bound':
      // Bound again after an outage: failures while unbound were the outage's, not the account's.
      if (event.count > 0 && unboundSince !== undefined) failingSince = undefined;
      unboundSince = event.count > 0 ? undefined : unboundSince ?? now;
      break;
    case 'success':
      failingSince = undefined;
      break;
    case 'failure':
      failingSince ??= now;
      break;
    case 'tick':
      break;
  }
  // Half-open: a bound account that went down for failing submits is tried again after retryMs.
  if (!h.up && unboundSince === undefined && downSince !== undefined && now - downSince >= p.retryMs) failingSince = undefined;
  let reason: string | undefined;
  if (unboundSince !== undefined && now - unboundSince >= p.unboundMs) reason = 'unbound';
  else if (failingSince !== undefined && now - failingSince >= p.failingMs) reason = 'failing';
  const up = reason === undefined;
  if (up) downSince = undefined;
  else downSince = h.up ? now : downSince ?? now;
  return { up, unboundSince, failingSince, downSince, reason };
}
