/**
 * Group expansion: a group's distinct members, following nested groups and
 * role rules, read in chunks so a 100,000-member group never holds the event
 * loop for long (the caller decides how to yield between chunks).
 *
 *   group ─▶ static members   (range over dir.members [group, *])
 *         ├▶ role rules       (range over dir.roles [role, unit, *] for each unit in scope)
 *         └▶ nested groups    (the same, depth first; each group visited once — a cycle
 *                              that slipped in cannot loop, and a missing group is skipped
 *                              and reported)
 *
 * Members are de-duplicated (one person in three nested groups gets one
 * SMS). The visitor receives the raw packed row (`channel letter + mobile`)
 * straight from the range read, so the loop builds no list per chunk.
 */
import { GatewayError } from '../core/errors.js';
import type { DirectoryStore } from './store.js';

export interface ExpansionOptions {
  /** Rows read per range call; the caller's `pause` runs between chunks. */
  readonly chunk: number;
  /** More distinct members than this: TOO_MANY_RECIPIENTS. */
  readonly maxMembers: number;
  /** Called between chunks (e.g. yield to the event loop). */
  readonly pause?: () => Promise<void>;
}

export interface ExpansionResult {
  /** Distinct members visited. */
  readonly count: number;
  /** Groups visited (the root first). */
  readonly groups: readonly string[];
  /** Nested groups that no longer exist (skipped). */
  readonly missing: readonly string[];
}

/**
 * `personId`, `packed` = channel letter (s, p, b) + mobile, `tail` = the
 * number's last nine digits as an integer (see `numberTail`). Return false
 * to stop early.
 */
export type MemberVisitor = (personId: string, packed: string, tail: number) => void | boolean;

/**
 * The last nine digits of a packed member's number as an integer (< 10⁹, a
 * small integer for V8). Hashing it is far cheaper than hashing the string,
 * and two different numbers share it only when they differ solely in their
 * leading digits, which the de-duplication then checks in full.
 */
export function numberTail(packed: string): number {
  let h = 0;
  const n = packed.length;
  for (let i = n > 10 ? n - 9 : 1; i < n; i++) h = h * 10 + (packed.charCodeAt(i) - 48);
  return h;
}

/**
 * The numbers seen so far in one expansion: an open-addressing hash table
 * keyed by the number's tail (an integer, in an Int32Array — no hashing of
 * strings, no per-entry allocation), holding the packed member to tell a
 * repeat (same number) from a clash (another number with the same tail).
 */
export class SeenNumbers {
  private keys: Int32Array;
  private packed: Array<string | undefined>;
  private mask: number;
  private shift: number;
  private used = 0;
  private readonly clashes = new Set<string>();

  constructor(expected = 1024) {
    let bits = 10;
    while (1 << bits < expected * 2) bits++;
    this.keys = new Int32Array(1 << bits);
    this.packed = new Array<string | undefined>(1 << bits);
    this.mask = (1 << bits) - 1;
    this.shift = 32 - bits;
  }

  get size(): number {
    return this.used + this.clashes.size;
  }

  /** Record the member; false when its number was seen already. */
  add(packed: string, tail: number): boolean {
    const key = tail + 1; // 0 marks an empty slot
    let i = Math.imul(key, 0x9e3779b1) >>> this.shift;
    for (;;) {
      const k = this.keys[i] as number;
      if (k === 0) {
        this.keys[i] = key;
        this.packed[i] = packed;
        if (++this.used * 2 > this.keys.length) this.grow();
        return true;
      }
      if (k === key) {
        const prior = this.packed[i] as string;
        if (prior === packed) return false;
        const mobile = packed.slice(1);
        // The same number with another channel letter (changed between two chunk reads), or a real clash.
        if (prior.slice(1) === mobile || this.clashes.has(mobile)) return false;
        this.clashes.add(mobile);
        return true;
      }
      i = (i + 1) & this.mask;
    }
  }

  private grow(): void {
    const keys = this.keys;
    const packed = this.packed;
    const bits = 32 - this.shift + 1;
    this.keys = new Int32Array(1 << bits);
    this.packed = new Array<string | undefined>(1 << bits);
    this.mask = (1 << bits) - 1;
    this.shift = 32 - bits;
    for (let j = 0; j < keys.length; j++) {
      const key = keys[j] as number;
      if (key === 0) continue;
      let i = Math.imul(key, 0x9e3779b1) >>> this.shift;
      while (this.keys[i] !== 0) i = (i + 1) & this.mask;
      this.keys[i] = key;
      this.packed[i] = packed[j];
    }
  }
}

export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class GroupExpander {
  constructor(
    private readonly store: DirectoryStore,
    private readonly options: ExpansionOptions,
  ) {}

  /** Visit each distinct member of `groupId` once. NOT_FOUND when the group does not exist. */
  async expand(groupId: string, visit: MemberVisitor): Promise<ExpansionResult> {
    const { store } = this;
    const { chunk, maxMembers, pause } = this.options;
    if (store.getGroup(groupId) === undefined) throw new GatewayError('NOT_FOUND', `no group ${groupId}`, { details: [{ field: '/group', message: `no group ${groupId}` }] });
    // De-duplicated by number (a number is one person), keyed by its nine-digit tail: a
    // 100,000-member expansion is mostly this loop, so it hashes no strings.
    const seen = new SeenNumbers(Math.min(maxMembers, 1 << 16));
    const visited: string[] = [];
    const visitedSet = new Set<string>();
    const missing: string[] = [];
    const stack = [groupId];
    let stopped = false;
    let sinceYield = 0;
    let count = 0;

    const take = (pid: string, packed: string): void => {
      if (stopped) return;
      const tail = numberTail(packed);
      if (!seen.add(packed, tail)) return;
      if (++count > maxMembers) {
        throw new GatewayError('TOO_MANY_RECIPIENTS', `group ${groupId} has more than ${maxMembers} members`, { details: [{ field: '/group', message: `more than ${maxMembers} members` }] });
      }
      if (visit(pid, packed, tail) === false) stopped = true;
    };
    const drain = async (read: (after: string | undefined) => { rows: number; last?: string }): Promise<void> => {
      let after: string | undefined;
      while (!stopped) {
        const r = read(after);
        sinceYield += r.rows;
        if (pause && sinceYield >= chunk) {
          sinceYield = 0;
          await pause();
        }
        if (r.rows < chunk || r.last === undefined) return;
        after = r.last;
      }
    };

    while (stack.length > 0 && !stopped) {
      const g = stack.pop() as string;
      if (visitedSet.has(g)) continue;
      visitedSet.add(g);
      const group = store.getGroup(g);
      if (group === undefined) {
        missing.push(g);
        continue;
      }
      visited.push(g);
      await drain((after) => store.eachMemberRow(g, after, chunk, take));
      let ownerSubtree: Set<string> | undefined;
      for (const rule of group.roles) {
        if (stopped) break;
        // A rule without a unit means the group owner's subtree (never every unit's people).
        ownerSubtree ??= rule.unit === undefined ? new Set(store.subtree(group.unit)) : undefined;
        const units = rule.unit !== undefined ? store.subtree(rule.unit) : store.unitsWithRole(rule.role).filter((u) => (ownerSubtree as Set<string>).has(u));
        for (const unit of units) {
          if (stopped) break;
          await drain((after) => store.eachRoleRow(rule.role, unit, after, chunk, take));
        }
      }
      // Reverse, so nested groups are visited in the order they are listed.
      for (let i = group.groups.length - 1; i >= 0; i--) stack.push(group.groups[i] as string);
    }
    return { count, groups: visited, missing };
  }
}
