/**
 * Sender codes are owned: the one resolver of "which tenant owns this
 * code", used by MO routing (src/office), by the door (the code a unit's
 * messages go out under) and by admin writes (a claim that collides is
 * refused). Pure: works on the units and bootstrap keys the caller read.
 *
 *   claim     a unit's own `sender`, or — when it sets an `extension` — its
 *             parent's effective code + the extension. A unit with neither
 *             claims nothing: it shares its nearest claiming ancestor's code,
 *             and MO to that code goes to that ancestor.
 *   bootstrap auth.apiKeys[].sender: claims older than any unit.
 *   default   sender.defaultSource: the first bootstrap tenant's when no
 *             unit or key claims it explicitly (weakest claim).
 *   collision two claims of one code. Admin writes refuse them (409
 *             SENDER_TAKEN naming the owner); rows already stored (older
 *             builds, replication races) are resolved here, deterministically:
 *             the older claim wins (bootstrap keys first, then units by
 *             createdAt, then id), the loser claims nothing — it routes and
 *             sends as if it had no code of its own — and the collision is
 *             reported (log at start, /readyz detail).
 *
 * Carrier access codes: a claim is a code in the platform's numbering, and
 * each carrier account writes it on the air in its own form (`AirForm`: an
 * SMPP account's accessCode { from, to } rewrite, a CMPP account's access
 * code in front). Ownership is therefore checked per account too: two
 * claims of different owners whose on-air forms are equal on one account
 * (e.g. a unit's raw 1065500111 and another's 1069000111, which a Unicom
 * account rewriting 10690 → 10655 sends as 1065500111) collide like equal
 * codes — the older wins — so a reply arriving at an on-air code has ONE
 * owner on that account. An MO is routed by the code it arrives on and the
 * account it arrives through (`canonicalDestination`): the owned code whose
 * on-air form on that account is the longest prefix of the destination.
 * Codes that differ on every account (the same extension under two
 * carriers' prefixes, each claimed raw) do not collide.
 */
import type { AirForm } from '../core/access-code.js';
import { effectiveSender } from './grants.js';
import type { Unit } from './types.js';

export interface BootstrapSender {
  readonly tenant: string;
  readonly sender?: string;
}

export interface SenderClaim {
  readonly code: string;
  /** Unit id, or the bootstrap key's tenant. */
  readonly owner: string;
  readonly kind: 'unit' | 'bootstrap';
  /** Units: createdAt; bootstrap keys: -1 (older than any unit). */
  readonly createdAt: number;
}

export interface SenderCollision {
  readonly code: string;
  readonly owner: string;
  readonly ownerKind: 'unit' | 'bootstrap';
  /** Later claims of the same code, which own nothing. */
  readonly losers: readonly string[];
  /** A collision of on-air forms: the account on which the losers' codes are written as `onAir`, like `code`. */
  readonly account?: string;
  readonly onAir?: string;
}

export type { AirForm };

export interface SenderOwnership {
  /** code → owning tenant (unit id or bootstrap tenant). */
  readonly owners: ReadonlyMap<string, string>;
  /** Owner kind by code. */
  readonly kinds: ReadonlyMap<string, 'unit' | 'bootstrap'>;
  readonly collisions: readonly SenderCollision[];
  /** Units whose claim lost a collision (they claim nothing). */
  readonly losers: ReadonlySet<string>;
}

/** The code a unit claims (chain: the unit first, then its parents), or undefined when it claims none. */
export function claimedCode(chain: readonly Unit[], defaultSource: string): string | undefined {
  const u = chain[0];
  if (u === undefined || (u.sender === undefined && u.extension === undefined)) return undefined;
  return effectiveSender(chain, defaultSource);
}

/** Who owns each code, with every collision resolved (older claim wins) — equal codes, or equal on-air forms on one account. */
export function resolveSenderOwnership(claims: readonly SenderClaim[], bootstrap: readonly BootstrapSender[], defaultSource: string, accounts: readonly AirForm[] = []): SenderOwnership {
  const all: SenderClaim[] = [];
  for (const k of bootstrap) if (k.sender !== undefined) all.push({ code: k.sender, owner: k.tenant, kind: 'bootstrap', createdAt: -1 });
  all.push(...claims);
  // Stable, total order: bootstrap keys in config order first, then units by age, then id.
  const ordered = all.map((c, i) => ({ c, i })).sort((a, b) => {
    if (a.c.kind !== b.c.kind) return a.c.kind === 'bootstrap' ? -1 : 1;
    if (a.c.kind === 'bootstrap') return a.i - b.i;
    return a.c.createdAt - b.c.createdAt || (a.c.owner < b.c.owner ? -1 : a.c.owner > b.c.owner ? 1 : 0);
  });
  const owners = new Map<string, string>();
  const kinds = new Map<string, 'unit' | 'bootstrap'>();
  /** account + on-air form → the owned code written so. */
  const onAir = new Map<string, string>();
  const lost = new Map<string, { code: string; losers: string[]; account?: string; onAir?: string }>();
  const losers = new Set<string>();
  const lose = (c: SenderClaim, code: string, via?: { account: string; onAir: string }): void => {
    const k = via === undefined ? code : `${code}\u0000${via.account}\u0000${via.onAir}`;
    const l = lost.get(k) ?? { code, losers: [], ...(via !== undefined ? via : {}) };
    l.losers.push(c.owner);
    lost.set(k, l);
    if (c.kind === 'unit') losers.add(c.owner);
  };
  for (const { c } of ordered) {
    const held = owners.get(c.code);
    if (held !== undefined) {
      // Two bootstrap keys of one tenant may share a code; anything else is a collision.
      if (held !== c.owner) lose(c, c.code);
      continue;
    }
    let clash: { code: string; account: string; onAir: string } | undefined;
    for (const a of accounts) {
      const form = a.air(c.code);
      const other = onAir.get(`${a.account}\u0000${form}`);
      if (other !== undefined && owners.get(other) !== c.owner) {
        clash = { code: other, account: a.account, onAir: form };
        break;
      }
    }
    if (clash !== undefined) {
      lose(c, clash.code, { account: clash.account, onAir: clash.onAir });
      continue;
    }
    owners.set(c.code, c.owner);
    kinds.set(c.code, c.kind);
    for (const a of accounts) onAir.set(`${a.account}\u0000${a.air(c.code)}`, c.code);
  }
  // The default source: the first bootstrap tenant's unless someone claims it.
  const first = bootstrap[0];
  if (first !== undefined && !owners.has(defaultSource)) {
    owners.set(defaultSource, first.tenant);
    kinds.set(defaultSource, 'bootstrap');
  }
  const collisions: SenderCollision[] = [...lost.values()].map((l) => ({
    code: l.code, owner: owners.get(l.code) as string, ownerKind: kinds.get(l.code) as 'unit' | 'bootstrap', losers: l.losers,
    ...(l.account !== undefined ? { account: l.account, onAir: l.onAir } : {}),
  }));
  return { owners, kinds, collisions, losers };
}

const airCache = new WeakMap<ReadonlyMap<string, string>, Map<string, Map<string, string>>>();

/**
 * An MO's destination as it arrived through `account`, in the platform's
 * codes: the owned code whose on-air form on that account is the longest
 * prefix of the destination, followed by the rest of it; undefined when no
 * owned code's form is a prefix (the caller falls back to the account's
 * plain rewrite). Per ownership (a directory version) and account, the
 * on-air forms are computed once.
 */
export function canonicalDestination(destination: string, owners: ReadonlyMap<string, string>, form: AirForm): string | undefined {
  let perAccount = airCache.get(owners);
  if (perAccount === undefined) {
    perAccount = new Map();
    airCache.set(owners, perAccount);
  }
  let byAir = perAccount.get(form.account);
  if (byAir === undefined) {
    byAir = new Map();
    for (const code of owners.keys()) if (!byAir.has(form.air(code))) byAir.set(form.air(code), code);
    perAccount.set(form.account, byAir);
  }
  const d = destination.replace(/\D/g, '');
  for (let len = d.length; len > 0; len--) {
    const code = byAir.get(d.slice(0, len));
    if (code !== undefined) return code + d.slice(len);
  }
  return undefined;
}

/**
 * The code a unit's messages go out under and its replies come back to: the
 * first unit up the chain (itself first) that owns the code it claims; the
 * default source when none does. A unit that lost a collision therefore
 * never sends under another unit's code.
 */
export function ownedSender(chain: readonly Unit[], ownership: Pick<SenderOwnership, 'owners'>, defaultSource: string): string {
  for (let i = 0; i < chain.length; i++) {
    const sub = chain.slice(i);
    const code = claimedCode(sub, defaultSource);
    if (code !== undefined && ownership.owners.get(code) === (chain[i] as Unit).id) return code;
  }
  return defaultSource;
}
