/**
 * Reroute of failed recipients (a routing rule's `reroute`, off by default).
 * Pure: the receipt store and the dispatcher call these.
 *
 *   attempt 1 (the rule's account A)            attempt 2 (another carrier)
 *   ┌──────────────────────────────┐  receipt   ┌──────────────────────────────┐
 *   │ parts planned for A's        │  UNDELIV / │ parts planned for B's         │
 *   │ protocol, submitted, …       │──REJECTD──▶│ protocol; B's carrier ≠ A's;  │
 *   │ recipient NOT final          │  (armed,   │ its final state is the        │
 *   └──────────────────────────────┘  in time)  │ recipient's (never a third)   │
 *                                               └──────────────────────────────┘
 *
 * A recipient is "armed" when its first attempt was routed by a rule with
 * `reroute` on and some account of another carrier could take it; the arming
 * is recorded with the first submit. When that attempt ends `undeliverable`
 * or `rejected` and a carrier's receipt said so (a part with an operator id
 * ended that way: a submit the SMSC refused, an opt-out, a frequency cap or
 * no route never reroute), before the message's validity ends, the attempt
 * is kept as it is and the recipient waits for a second attempt instead of
 * being final. Anything else ends the recipient as before.
 */
import type { FinalState } from './message.js';

/** Most attempts per recipient (the first and one reroute). */
export const MAX_ATTEMPTS = 2;

/** Final states of an attempt that a reroute may retry. */
export const REROUTE_STATES: readonly FinalState[] = ['undeliverable', 'rejected'];

/** Outcomes of smsgw_reroutes_total: a reroute started, found no account, or its second attempt's final state. */
export const REROUTE_OUTCOMES = ['started', 'no-account', 'delivered', 'undeliverable', 'expired', 'rejected', 'failed'] as const;
export type RerouteOutcome = (typeof REROUTE_OUTCOMES)[number];

/** What decides, when a recipient's attempt has just ended in `state`. */
export interface AttemptEnd {
  readonly state: FinalState;
  /** The first attempt was routed by a rule with reroute on (and another carrier could take it). */
  readonly armed: boolean;
  /** Attempts before this one (0 for the first). */
  readonly earlier: number;
  /** Some part of this attempt got `state` from a carrier's receipt (it has an operator id). */
  readonly byReceipt: boolean;
  readonly now: number;
  /** The message's validity end: no attempt starts at or after it. */
  readonly expiresAt: number;
}

/** `reroute`: keep this attempt and wait for a second one; `final`: the recipient ends in `state`. */
export function attemptEnded(e: AttemptEnd): 'reroute' | 'final' {
  return e.armed && e.earlier + 1 < MAX_ATTEMPTS && e.byReceipt && REROUTE_STATES.includes(e.state) && e.now < e.expiresAt ? 'reroute' : 'final';
}

/** What a routing decision needs to know of an account's carrier. */
export interface CarrierAccount {
  readonly name: string;
  /** The carrier (operator family) running the account, when configured. */
  readonly carrier?: string | undefined;
  readonly protocol?: string | undefined;
  readonly operators: readonly string[];
}

const CHINESE_OPERATORS = new Set(['cmcc', 'cucc', 'ctcc']);

/**
 * An account's carrier: `carrier` when configured; a CMPP account is China
 * Mobile's (`cmcc`: CMPP is its protocol); an account whose `operators`
 * name exactly one Chinese operator is that operator's; any other account is
 * a family of its own (its name).
 */
export function carrierOf(a: CarrierAccount): string {
  if (a.carrier !== undefined && a.carrier.length > 0) return a.carrier;
  if (a.protocol === 'cmpp2' || a.protocol === 'cmpp3') return 'cmcc';
  const chinese = a.operators.filter((o) => CHINESE_OPERATORS.has(o));
  if (chinese.length === 1 && a.operators.length === 1) return chinese[0] as string;
  return `account:${a.name}`;
}

/**
 * Accounts a second attempt may use: `list` (the rule's `rerouteTo`, else
 * its `accounts`) in order, without those whose carrier is one the first
 * attempt used.
 */
export function rerouteAccounts(list: readonly string[], firstAccounts: readonly string[], carrier: (account: string) => string | undefined): string[] {
  const used = new Set<string>();
  for (const a of firstAccounts) used.add(carrier(a) ?? `account:${a}`);
  return list.filter((a) => {
    const c = carrier(a);
    return c !== undefined && !used.has(c);
  });
}
