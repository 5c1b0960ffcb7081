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
 * One code space today; once accounts of several carriers exist, ownership
 * is per carrier access-code prefix (a claim is then [prefix, code]).
 */
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
}

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

/** Who owns each code, with every collision resolved (older claim wins). */
export function resolveSenderOwnership(claims: readonly SenderClaim[], bootstrap: readonly BootstrapSender[], defaultSource: string): SenderOwnership {
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
  const lost = new Map<string, string[]>();
  const losers = new Set<string>();
  for (const { c } of ordered) {
    const held = owners.get(c.code);
    if (held === undefined) {
      owners.set(c.code, c.owner);
      kinds.set(c.code, c.kind);
    } else if (held !== c.owner) {
      // Two bootstrap keys of one tenant may share a code; anything else is a collision.
      const l = lost.get(c.code) ?? [];
      l.push(c.owner);
      lost.set(c.code, l);
      if (c.kind === 'unit') losers.add(c.owner);
    }
  }
  // The default source: the first bootstrap tenant's unless someone claims it.
  const first = bootstrap[0];
  if (first !== undefined && !owners.has(defaultSource)) {
    owners.set(defaultSource, first.tenant);
    kinds.set(defaultSource, 'bootstrap');
  }
  const collisions: SenderCollision[] = [...lost].map(([code, l]) => ({ code, owner: owners.get(code) as string, ownerKind: kinds.get(code) as 'unit' | 'bootstrap', losers: l }));
  return { owners, kinds, collisions, losers };
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
