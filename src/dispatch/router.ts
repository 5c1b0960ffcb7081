/**
 * Router: recipient → ordered candidate accounts, by the routing table
 * (src/core/route.ts) and each account's health.
 *
 *   route(to, message, now)
 *     operator ← number segment
 *     rule     ← first rule matching tier ∧ unit subtree ∧ operator ∧ time window
 *     accounts ← the rule's policy (failover | round-robin | weighted), down accounts last
 *
 * Health, per account (pure state machine `healthStep` in src/core/route.ts):
 * down when no session has been bound for `unboundMs`, or when its submits
 * have kept failing (no success in between) for `failingMs`; a bound account
 * down for failing is tried again after `retryMs`. Inputs: the bound-session
 * count, polled every `tickMs`, and every submit outcome the dispatcher
 * reports (`observe`). When an account goes down its transport's queued
 * segments are shed (given back as `unavailable`), so the dispatcher gives
 * their jobs back to the queue and the redelivery routes them to the next
 * account instead of letting them wait for a link that is gone.
 *
 * Counters: recipients per (rule, account) are counted in plain numbers on
 * the hot path and added to the metrics once per tick (no per-recipient
 * metric call). The table can be replaced at run time (`setRules`: admin
 * API → directory store → `reload` polling its version), without a restart.
 */
import {
  checkRules, compileTable, defaultRules, healthStep, initialHealth, localMinuteOfDay, operatorOf, orderCandidates, selectRule,
  type AccountHealth, type CompiledRule, type HealthEvent, type HealthPolicy, type Operator, type RouteRule, type RoutingTable,
} from '../core/route.js';
import { rerouteAccounts } from '../core/reroute.js';
import type { SmsTransport, SubmitOutcome } from '../core/ports.js';
import type { SignaturePosition } from '../core/signature.js';
import { GatewayError } from '../core/errors.js';
import type { Metrics } from '../telemetry/metrics.js';

export interface RoutedAccount {
  readonly name: string;
  readonly operators: readonly string[];
  /** Where the carrier wants the 【signature】 (default front, as ingest signs). */
  readonly signaturePosition?: SignaturePosition;
  readonly transport: SmsTransport;
  /** The source as sent through this account (its access code in place of the platform's); absent: unchanged. */
  sourceFor?(source: string): string;
  /** The carrier running it (src/core/reroute.ts carrierOf); absent: a family of its own. A reroute goes to another carrier. */
  readonly carrier?: string;
  /** Allow-list mode (a carrier's test account): the only numbers it may carry; absent: any. */
  readonly allowList?: ReadonlySet<string>;
  /** Bound sessions now (a BindPool's boundCount); absent: always counted as bound. */
  bound?(): number;
  /** Give back every queued (not yet written) segment as `unavailable`; returns how many. */
  shed?(reason: string): number;
}

/** What the router needs to know about a message. */
export interface RouteMessage {
  readonly tier: string;
  /** Sending unit, its parent, … the root (Router.unitsOf). */
  readonly units: readonly string[];
}

export interface RouteChoice {
  readonly operator: Operator;
  /** The rule that matched; undefined: no route. */
  readonly rule: string | undefined;
  /** Candidates, best first; empty: no account serves this recipient. */
  readonly accounts: readonly RoutedAccount[];
  /** The rule has reroute on (src/core/reroute.ts): its name, recorded with the first attempt. */
  readonly reroute?: string;
}

export interface AccountView {
  readonly account: string;
  readonly up: boolean;
  readonly reason: string | null;
  readonly bound: number;
  readonly queued: number;
  /** Recipients routed to it (first choice) since start, and its share of all routed. */
  readonly routed: number;
  readonly share: number;
}

/** Stored rules: what the admin API writes and `reload` reads; `rules: null`: the configuration's rules. */
export interface StoredRouting {
  readonly version: number;
  readonly rules: readonly RouteRule[] | null;
}

export interface RouterOptions {
  readonly health: HealthPolicy;
  readonly utcOffsetMinutes: number;
  /** Tier names (rules naming others are refused). */
  readonly tiers: readonly string[];
  /** Rules from the configuration (routing.rules). */
  readonly rules?: readonly RouteRule[];
  /** Poll period for bound counts, metrics and the stored table; default 250. */
  readonly tickMs?: number;
}

export interface RouterDeps {
  readonly metrics?: Metrics;
  /** Unit chain of a sender (self first); absent or unknown: the tenant alone. */
  readonly unitsOf?: (tenant: string) => readonly string[] | undefined;
  /** The stored table (admin API), read on every tick; undefined: none stored. */
  readonly stored?: () => StoredRouting | undefined;
  /** Called when stored rules cannot apply here (unknown account or tier on this host). */
  readonly onRejected?: (version: number, problems: string) => void;
  /** Called when an account goes down or comes back (logging). */
  readonly onChange?: (account: string, up: boolean, reason: string | undefined) => void;
  readonly now?: () => number;
}

const DEFAULT_HEALTH: HealthPolicy = { unboundMs: 3000, failingMs: 10_000, retryMs: 30_000 };

export class Router {
  private readonly byName = new Map<string, RoutedAccount>();
  private readonly health = new Map<string, AccountHealth>();
  private readonly derived: readonly RouteRule[];
  private readonly configured: readonly RouteRule[];
  private table: RoutingTable;
  /** Configured rules with reroute on, by name (a second attempt finds its rule here). */
  private rerouteRules = new Map<string, CompiledRule>();
  private version = 0;
  private readonly turns: number[] = [];
  /** Hot-path counts, flushed to the metrics on tick: rule name → account → recipients. */
  private readonly pendingRouted = new Map<string, Map<string, number>>();
  private readonly pendingFailover = new Map<string, Map<string, number>>();
  private readonly routedTotal = new Map<string, number>();
  private routedAll = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly policy: HealthPolicy;
  private readonly isUp = (a: string): boolean => this.health.get(a)?.up ?? true;
  /** Bumped when an account goes down or up: cached failover orders are recomputed. */
  private healthEpoch = 0;
  private readonly failoverOrder = new Map<CompiledRule, { epoch: number; accounts: readonly RoutedAccount[] }>();
  /** Some account is in allow-list mode: candidates are filtered per recipient. */
  private readonly restricted: boolean;

  constructor(
    accounts: readonly RoutedAccount[],
    private readonly options: RouterOptions = { health: DEFAULT_HEALTH, utcOffsetMinutes: 0, tiers: [] },
    private readonly deps: RouterDeps = {},
  ) {
    this.now = deps.now ?? Date.now;
    this.policy = options.health;
    const now = this.now();
    for (const a of accounts) {
      this.byName.set(a.name, a);
      this.health.set(a.name, initialHealth(now, a.bound?.() ?? 1));
      this.routedTotal.set(a.name, 0);
    }
    this.restricted = accounts.some((a) => a.allowList !== undefined);
    this.derived = defaultRules(accounts);
    const configured = options.rules ?? [];
    this.configured = configured;
    const problems = checkRules(configured, this.known());
    if (problems.length > 0) {
      throw new GatewayError('CONFIG_INVALID', `routing.rules: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`, {
        details: problems.map((p) => ({ field: `/routing/rules${p.field}`, message: p.message })),
      });
    }
    this.table = compileTable(configured, this.derived);
    this.rerouteRules = rerouteIndex(this.table);
    this.reload();
  }

  /** Poll bound counts, apply stored table changes, flush counters. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.options.tickMs ?? 250);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }

  /** Account and tier names a rule may use. */
  known(): { accounts: ReadonlySet<string>; tiers: ReadonlySet<string> } {
    return { accounts: new Set(this.byName.keys()), tiers: new Set(this.options.tiers) };
  }

  /** The unit chain to match `units` rules against. */
  unitsOf(tenant: string): readonly string[] {
    const chain = this.deps.unitsOf?.(tenant);
    return chain === undefined || chain.length === 0 ? [tenant] : chain;
  }

  /** Candidate accounts for one recipient, best first. */
  route(to: string, message: RouteMessage, now: number): RouteChoice {
    const operator = operatorOf(to);
    const usable = this.restricted ? (a: string): boolean => this.byName.get(a)?.allowList?.has(to) ?? true : undefined;
    const rule = selectRule(this.table, { tier: message.tier, units: message.units, operator, minuteOfDay: localMinuteOfDay(now, this.options.utcOffsetMinutes) }, usable);
    if (rule === undefined) return { operator, rule: undefined, accounts: [] };
    let accounts: readonly RoutedAccount[];
    let passed: boolean;
    if (usable === undefined && rule.rule.policy === 'failover') {
      // The common case: a failover list's order changes only with health, so it is computed once per change.
      let cached = this.failoverOrder.get(rule);
      if (cached === undefined || cached.epoch !== this.healthEpoch) {
        cached = { epoch: this.healthEpoch, accounts: this.resolve(orderCandidates(rule, this.isUp, 0), undefined) };
        this.failoverOrder.set(rule, cached);
      }
      accounts = cached.accounts;
      passed = !this.isUp(rule.accounts[0] as string);
    } else {
      const turn = this.turns[rule.index] ?? 0;
      this.turns[rule.index] = turn + 1 >= Number.MAX_SAFE_INTEGER ? 0 : turn + 1;
      const names = orderCandidates(rule, this.isUp, turn);
      accounts = this.resolve(names, usable);
      // Rotations: some account of the rule is down (down ones are listed last).
      passed = rule.rule.policy === 'failover' ? !this.isUp(rule.accounts[0] as string) : !this.isUp(names[names.length - 1] as string);
    }
    const first = accounts[0];
    if (first) this.count(rule, first.name, passed && this.isUp(first.name));
    return rule.reroute === undefined ? { operator, rule: rule.rule.name, accounts } : { operator, rule: rule.rule.name, accounts, reroute: rule.rule.name };
  }

  /** Some rule in force has reroute on. */
  get rerouteOn(): boolean {
    return this.rerouteRules.size > 0;
  }

  /**
   * Accounts for the second attempt of a recipient whose first attempt went
   * through `firstAccounts` under rule `ruleName` (the table in force now):
   * the rule's reroute list without the carriers already used and accounts
   * that may not carry `to`, up ones first. Empty: the rule is gone, its
   * reroute is off, or no other carrier's account is listed.
   */
  rerouteTargets(ruleName: string, to: string, firstAccounts: readonly string[]): RoutedAccount[] {
    const rule = this.rerouteRules.get(ruleName);
    if (rule?.reroute === undefined) return [];
    const names = rerouteAccounts(rule.reroute, firstAccounts, (a) => {
      const acc = this.byName.get(a);
      return acc === undefined ? undefined : acc.carrier ?? `account:${a}`;
    });
    const usable = names.filter((n) => this.byName.get(n)?.allowList?.has(to) ?? true);
    const ordered = [...usable.filter(this.isUp), ...usable.filter((n) => !this.isUp(n))];
    return this.resolve(ordered, undefined);
  }

  private resolve(names: readonly string[], usable: ((a: string) => boolean) | undefined): RoutedAccount[] {
    const out: RoutedAccount[] = [];
    for (const n of names) {
      const a = this.byName.get(n);
      if (a && (usable === undefined || usable(n))) out.push(a);
    }
    return out;
  }

  /** A submit's outcome through `account`: feeds its health. */
  observe(account: string, outcome: SubmitOutcome): void {
    if (outcome.kind === 'accepted') this.event(account, { kind: 'success' });
    else if (outcome.kind === 'expired' || (outcome.kind === 'unavailable' && !outcome.reason.startsWith('OVERLOADED') && !outcome.reason.startsWith('SMPP_POOL_CLOSED') && !outcome.reason.startsWith('ROUTE_SHED'))) {
      this.event(account, { kind: 'failure' });
    }
  }

  isAccountUp(account: string): boolean {
    return this.isUp(account);
  }

  /** Per-account state and share, for /readyz and the admin API. */
  accounts(): AccountView[] {
    return [...this.byName.values()].map((a) => {
      const h = this.health.get(a.name);
      const routed = this.routedTotal.get(a.name) ?? 0;
      return {
        account: a.name,
        up: h?.up ?? true,
        reason: h?.reason ?? null,
        bound: a.bound?.() ?? 1,
        queued: a.transport.pending,
        routed,
        share: this.routedAll === 0 ? 0 : Math.round((routed / this.routedAll) * 1000) / 1000,
      };
    });
  }

  /** The rules in force: configured or stored, then derived. */
  rules(): { version: number; rules: RouteRule[]; derived: RouteRule[] } {
    return {
      version: this.version,
      rules: this.table.rules.filter((r) => !r.derived).map((r) => r.rule),
      derived: this.table.rules.filter((r) => r.derived).map((r) => r.rule),
    };
  }

  /** Apply the stored table when its version changed (called on every tick). Invalid stored rules are refused and the table in force kept. */
  reload(): boolean {
    const stored = this.deps.stored?.();
    if (stored === undefined || stored.version === this.version) return false;
    const rules = stored.rules ?? this.configured;
    const problems = checkRules(rules, this.known());
    if (problems.length > 0) {
      // The admin API checks before storing; another host's accounts may differ: keep the table in force.
      this.version = stored.version; // not retried every tick
      this.deps.onRejected?.(stored.version, problems.map((p) => `${p.field}: ${p.message}`).join('; '));
      return false;
    }
    this.table = compileTable(rules, this.derived);
    this.rerouteRules = rerouteIndex(this.table);
    this.turns.length = 0;
    this.failoverOrder.clear();
    this.version = stored.version;
    this.deps.metrics?.routeTableVersion.set(stored.version);
    return true;
  }

  tick(): void {
    const now = this.now();
    for (const a of this.byName.values()) this.event(a.name, { kind: 'bound', count: a.bound?.() ?? 1 }, now);
    this.reload();
    this.flush();
  }

  private event(account: string, e: HealthEvent, now = this.now()): void {
    const before = this.health.get(account);
    if (before === undefined) return;
    const after = healthStep(before, e, now, this.policy);
    this.health.set(account, after);
    if (after.up === before.up) return;
    this.healthEpoch++;
    const m = this.deps.metrics;
    m?.routeAccountUp.set({ account }, after.up ? 1 : 0);
    if (!after.up) {
      m?.routeAccountDown.inc({ account, reason: after.reason ?? 'unknown' });
      // Its queued segments go back to the queue and, redelivered, to the next account.
      this.byName.get(account)?.shed?.(`ROUTE_SHED: account ${account} is down (${after.reason ?? 'unknown'}); the work is routed again`);
    }
    this.deps.onChange?.(account, after.up, after.reason);
  }

  private count(rule: CompiledRule, account: string, failover: boolean): void {
    bump(this.pendingRouted, rule.rule.name, account);
    if (failover) bump(this.pendingFailover, rule.rule.name, account);
    this.routedTotal.set(account, (this.routedTotal.get(account) ?? 0) + 1);
    this.routedAll++;
  }

  private flush(): void {
    const m = this.deps.metrics;
    for (const a of this.byName.keys()) m?.routeAccountUp.set({ account: a }, this.isUp(a) ? 1 : 0);
    for (const [rule, byAccount] of this.pendingRouted) for (const [account, n] of byAccount) m?.routeRecipients.inc({ rule, account }, n);
    for (const [rule, byAccount] of this.pendingFailover) for (const [account, n] of byAccount) m?.routeFailovers.inc({ rule, account }, n);
    this.pendingRouted.clear();
    this.pendingFailover.clear();
  }
}

function rerouteIndex(table: RoutingTable): Map<string, CompiledRule> {
  const out = new Map<string, CompiledRule>();
  for (const r of table.rules) if (!r.derived && r.reroute !== undefined && !out.has(r.rule.name)) out.set(r.rule.name, r);
  return out;
}

function bump(counts: Map<string, Map<string, number>>, rule: string, account: string): void {
  let byAccount = counts.get(rule);
  if (byAccount === undefined) {
    byAccount = new Map();
    counts.set(rule, byAccount);
  }
  byAccount.set(account, (byAccount.get(account) ?? 0) + 1);
}
