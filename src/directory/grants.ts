/**
 * Effective grants: what a unit may do is the intersection of its own grants
 * with every ancestor's, computed when a request is checked (never stored),
 * so narrowing a parent narrows every sub-unit at once and a sub-unit can
 * never exceed its parent whatever its own record says.
 *
 * Pure: works on the unit chain the caller read (self first, root last).
 */
import type { Grants, Unit } from './types.js';

export interface QuotaLimit {
  readonly unit: string;
  readonly daily: number | null;
  readonly perMinute: number | null;
  /** SMS parts per day (recipients × parts); null or absent: none at this level. */
  readonly dailyParts?: number | null;
}

export interface EffectiveGrants {
  /** Allowed tiers; null = every tier. */
  readonly tiers: ReadonlySet<string> | null;
  /** Allowed groups; null = every group. */
  readonly groups: ReadonlySet<string> | null;
  readonly direct: boolean;
  /** May send to a workflow event's applicant numbers (each level: its own `workflow`, else its own `direct`). */
  readonly workflow: boolean;
  readonly police: boolean;
  /** Every level with a quota, self first: each caps its whole subtree. */
  readonly quotas: readonly QuotaLimit[];
  /** The first unit in the chain that is disabled, if any. */
  readonly disabledBy?: string;
}

function intersect(acc: Set<string> | null, list: readonly string[]): Set<string> | null {
  if (list.includes('*')) return acc;
  if (acc === null) return new Set(list);
  const out = new Set<string>();
  for (const x of list) if (acc.has(x)) out.add(x);
  return out;
}

/** `chain`: the unit first, then its parent, … up to the root. */
export function effectiveGrants(chain: readonly Unit[]): EffectiveGrants {
  let tiers: Set<string> | null = null;
  let groups: Set<string> | null = null;
  let direct = true;
  let workflow = true;
  let police = true;
  let disabledBy: string | undefined;
  const quotas: QuotaLimit[] = [];
  for (const u of chain) {
    tiers = intersect(tiers, u.grants.tiers);
    groups = intersect(groups, u.grants.groups);
    direct &&= u.grants.direct;
    workflow &&= workflowGrant(u.grants);
    police &&= u.grants.police;
    const dailyParts = u.grants.dailyPartsQuota ?? null;
    if (u.grants.dailyQuota !== null || u.grants.perMinuteQuota !== null || dailyParts !== null) {
      quotas.push({ unit: u.id, daily: u.grants.dailyQuota, perMinute: u.grants.perMinuteQuota, dailyParts });
    }
    if (u.disabled && disabledBy === undefined) disabledBy = u.id;
  }
  return { tiers, groups, direct, workflow, police, quotas, ...(disabledBy !== undefined ? { disabledBy } : {}) };
}

/** A level's own `workflow` grant: as set, else the same as its own `direct`. */
export function workflowGrant(g: Grants): boolean {
  return g.workflow ?? g.direct;
}

/** The unit nearest the root whose own grants leave `name` out of `pick`, to name it in a refusal. */
export function narrowedBy(chain: readonly Unit[], pick: (g: Grants) => readonly string[], name: string): string | undefined {
  for (let i = chain.length - 1; i >= 0; i--) {
    const u = chain[i] as Unit;
    const list = pick(u.grants);
    if (!list.includes('*') && !list.includes(name)) return u.id;
  }
  return undefined;
}

/**
 * The unit (nearest the root) whose own group grant leaves `group` out, or
 * undefined when every level grants it. A level grants a group it names, or
 * — with `*` — a group owned in its own subtree (`ownerChain`: the owning
 * unit and its parents; undefined for an unknown group). So `*` never
 * reaches another subtree's groups, at a root neither.
 */
export function groupRefusedAt(chain: readonly Unit[], group: string, ownerChain: ReadonlySet<string> | undefined): string | undefined {
  for (let i = chain.length - 1; i >= 0; i--) {
    const u = chain[i] as Unit;
    if (u.grants.groups.includes(group)) continue;
    if (u.grants.groups.includes('*') && ownerChain?.has(u.id) === true) continue;
    return u.id;
  }
  return undefined;
}

/** The unit nearest the root whose own flag is off. */
export function flagOffAt(chain: readonly Unit[], pick: (g: Grants) => boolean): string | undefined {
  for (let i = chain.length - 1; i >= 0; i--) {
    const u = chain[i] as Unit;
    if (!pick(u.grants)) return u.id;
  }
  return undefined;
}

/** Effective sender: the nearest explicit `sender` with every `extension` below it appended. */
export function effectiveSender(chain: readonly Unit[], fallback: string): string {
  let suffix = '';
  for (const u of chain) {
    if (u.sender !== undefined) return u.sender + suffix;
    if (u.extension !== undefined) suffix = u.extension + suffix;
  }
  return fallback + suffix;
}

/** Effective signature: the nearest one set in the chain. */
export function effectiveSignature(chain: readonly Unit[]): string | undefined {
  for (const u of chain) if (u.signature !== undefined && u.signature !== '') return u.signature;
  return undefined;
}

/** The text as sent: the signature in front (carriers' rule; src/core/signature.ts) unless the text already starts or ends with it. */
export { signText } from '../core/signature.js';
