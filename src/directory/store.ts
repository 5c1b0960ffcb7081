/**
 * The directory in LMDB: units, API keys, people, groups, the block list and
 * the audit log, in named databases of the gateway's one environment.
 *
 *   dir.units          id                    → Unit (without id)
 *   dir.unitChildren   [parent, child]       → 1
 *   dir.keys           keyId                 → StoredKey
 *   dir.keyDigest      sha256(key)           → keyId
 *   dir.people         personId              → Person (without id)
 *   dir.peopleMobile   mobile                → personId        (a number belongs to one person)
 *   dir.peopleEmail    email (lower-case)    → personId        (an address belongs to one person)
 *   dir.peopleUnit     [unit, personId]      → 1
 *   dir.roles          [role, unit, personId]→ packed member   (dynamic groups)
 *   dir.groups         groupId               → StoredGroup
 *   dir.groupParents   [child, parent]       → 1
 *   dir.members        [groupId, personId]   → packed member   (static members)
 *   dir.memberOf       [personId, groupId]   → 1
 *   dir.blocks         [scope, number]       → StoredBlock
 *   dir.routing        'table'               → { version, rules }  (routing rules set through the admin API)
 *   dir.audit          seq                   → AuditEntry (without seq)
 *   dir.auditTarget    [type, id, seq]       → 1
 *   dir.meta           'version'             → number
 *   dir.tombstones     unitId                → Tombstone      (a deleted unit's id: never reused)
 *   dir.callbackSecrets unitId               → { current, previous?, updatedAt }  (callback signing secrets; never in the audit log)
 *
 * Why members are stored "packed" (channel letter + mobile, e.g.
 * `s8613800138000`) in the membership rows instead of only the person id:
 * expanding a 100,000-member group is then one range read, with no lookup
 * per member. The price is paid on the rare write: changing a person's
 * number or channel rewrites their membership and role rows (found through
 * dir.memberOf), in the same transaction.
 *
 * Every change is one `childTransaction`: its reads and checks run inside
 * LMDB's write transaction (so they see every committed write, from any
 * process), its audit entry is written in the same transaction, and a
 * refusal (a thrown GatewayError) rolls the whole change back. Reads outside
 * a change see the latest committed state.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Database, Key, RootDatabase } from 'lmdb';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { normalizeNumber } from '../core/phone.js';
import { sameSecret } from '../core/constant-time.js';
import {
  CHANNEL_PREFERENCES, EMAIL_RE, ID_RE, MAX_EMAIL_CHARS, MAX_GROUP_REFS, MAX_ROLES, MAX_UNIT_DEPTH, NO_GRANTS, PERSON_ID_RE, ROLE_RE,
  type Actor, type ApiKeyInfo, type AuditEntry, type BlockEntry, type ChannelPreference, type Grants, type Group,
  type Person, type RoleRule, type Unit,
} from './types.js';
import { effectiveSender } from './grants.js';
import { claimedCode, ownedSender, resolveSenderOwnership, type AirForm, type BootstrapSender, type SenderClaim, type SenderOwnership } from './senders.js';
import { RowLog, type ChangeLog } from '../replication/change-log.js';

export const DIRECTORY_DBS = 20;

/** Most items one list call returns. */
export const MAX_LIST = 1000;
/** Most units one subtree walk visits (bounds delegated-admin checks and role scopes). */
export const MAX_SUBTREE = 10_000;
/** Most audit rows one query examines (filters may skip many); the page then ends early with `next`. */
export const MAX_AUDIT_SCAN = 20_000;
/** Members one JSON request may add or remove (bulk goes through CSV import). */
export const MAX_MEMBER_CHANGE = 10_000;
/** Ids listed in an audit entry's detail for a membership change. */
const AUDIT_ID_SAMPLE = 100;

const SENDER_RE = /^[0-9]{1,20}$/;
const EXTENSION_RE = /^[0-9]{1,6}$/;

interface StoredKey {
  u: string;
  d: string;
  p: string;
  l?: string;
  c: number;
  x?: number;
  r?: number;
}

interface StoredGroup {
  name: string;
  unit: string;
  groups: string[];
  roles: RoleRule[];
  /** Static member count. */
  k: number;
  createdAt: number;
  updatedAt: number;
}

interface StoredBlock {
  r?: string;
  a: number;
  b: string;
}

type StoredUnit = Omit<Unit, 'id'>;
type StoredPerson = Omit<Person, 'id'>;
type StoredAudit = Omit<AuditEntry, 'seq'>;

/**
 * A deleted unit: its id is never given to a new unit, so the tenant data
 * still keyed by it (messages, templates, MO inbox and subscription,
 * meetings, cases, quotas) stays archived — kept, readable by global admins
 * by this id, invisible to any unit created later.
 */
export interface Tombstone {
  readonly id: string;
  readonly name: string;
  readonly parent?: string;
  readonly deletedAt: number;
  readonly deletedBy: string;
}

export interface Page<T> {
  readonly items: T[];
  /** Pass as `cursor` for the next page; absent on the last page. */
  readonly next?: string;
}

export interface UnitInput {
  readonly id: string;
  readonly name: string;
  readonly parent?: string;
  readonly sender?: string;
  readonly extension?: string;
  readonly signature?: string;
  readonly grants?: Partial<Grants>;
  readonly disabled?: boolean;
}

/** `null` clears an optional field. */
export interface UnitPatch {
  readonly name?: string;
  readonly parent?: string | null;
  readonly sender?: string | null;
  readonly extension?: string | null;
  readonly signature?: string | null;
  readonly disabled?: boolean;
  readonly grants?: Partial<Grants>;
}

export interface PersonInput {
  readonly id?: string;
  readonly name: string;
  readonly mobile: string;
  readonly unit: string;
  readonly roles?: readonly string[];
  readonly channel?: ChannelPreference;
  /**
   * Mail address (stored lower-case, unique). Create / replace: absent or
   * null means none. CSV import: absent (no `email` column) keeps the
   * person's current address; null or '' clears it.
   */
  readonly email?: string | null;
  /** New-mail alerts by SMS; needs an email. Create / replace: absent = false. CSV import: absent keeps the current value. */
  readonly mailAlerts?: boolean;
}

export interface GroupInput {
  readonly id: string;
  readonly name: string;
  readonly unit: string;
  readonly groups?: readonly string[];
  readonly roles?: readonly RoleRule[];
  /** Static members (person ids or mobile numbers); replaces the current list when given. */
  readonly members?: readonly string[];
}

export type KeyStatus =
  | { readonly ok: true; readonly key: ApiKeyInfo }
  | { readonly ok: false; readonly reason: 'unknown' | 'revoked' | 'expired'; readonly key?: ApiKeyInfo };

export interface AuditQuery {
  readonly actor?: string;
  readonly action?: string;
  readonly targetType?: string;
  readonly targetId?: string;
  /** Epoch ms, inclusive. */
  readonly from?: number;
  /** Epoch ms, exclusive. */
  readonly to?: number;
  /** Newest first: the `next` of the previous page (an audit seq). */
  readonly cursor?: number;
  readonly limit: number;
}

export interface DirectoryStoreOptions {
  readonly env: RootDatabase;
  /** Tier names from config (grants may name only these, or `*`). */
  readonly tiers: readonly string[];
  readonly allowInternational: boolean;
  /** Fallback sender for units with none in their chain (config sender.defaultSource). */
  readonly defaultSender: string;
  /** Most static members of one group. */
  readonly maxGroupMembers: number;
  /** Tenant names of bootstrap keys (config): a unit may not take one (they would share messages and quotas). */
  readonly reservedUnitIds?: readonly string[];
  /** Bootstrap keys' tenants and sender codes (config auth.apiKeys): their codes are claimed before any unit's. */
  readonly bootstrapSenders?: readonly BootstrapSender[];
  /** Carrier accounts' on-air forms of codes (src/core/access-code.ts airFormOf): ownership is checked per account too. */
  readonly airForms?: readonly AirForm[];
  readonly now?: () => number;
  /**
   * Several hosts: every change's rows (not its audit entries, which stay
   * with the host the admin used, nor dir.meta) are replicated
   * (src/replication/change-log.ts, RowLog).
   */
  readonly changeLog?: ChangeLog;
}

/** A unit's callback signing secrets: the current one signs, `previous` stays valid during a rotation. */
export interface StoredCallbackSecret {
  readonly current: string;
  readonly previous?: string;
  readonly updatedAt: number;
}

/** The routing rules stored by the admin API; `rules: null`: cleared (the configuration's apply). */
export interface StoredRoutingTable {
  readonly version: number;
  readonly rules: readonly unknown[] | null;
  readonly at: number;
  readonly by: string;
}

/** A member as stored in membership and role rows: channel letter + mobile. */
export function packMember(channel: ChannelPreference, mobile: string): string {
  return (channel === 'sms' ? 's' : channel === 'pda' ? 'p' : 'b') + mobile;
}

export function unpackChannel(packed: string): ChannelPreference {
  const c = packed.charCodeAt(0);
  return c === 0x73 ? 'sms' : c === 0x70 ? 'pda' : 'both';
}

/** A mail address as the directory keys it (trimmed, lower-case), or undefined when it is not one. */
export function normalizeEmail(raw: string): string | undefined {
  const e = raw.trim().toLowerCase();
  return e.length <= MAX_EMAIL_CHARS && EMAIL_RE.test(e) ? e : undefined;
}

export function keyDigest(key: string): string {
  return createHash('sha256').update(key).digest('base64');
}

const invalid = (field: string, message: string): GatewayError =>
  new GatewayError('VALIDATION', `${field}: ${message}`, { details: [{ field, message }] });
const notFound = (what: string, id: string): GatewayError => new GatewayError('NOT_FOUND', `no ${what} ${id}`);

export class DirectoryStore {
  readonly env: RootDatabase;
  private readonly tiers: ReadonlySet<string>;
  private readonly allowInternational: boolean;
  private readonly defaultSender: string;
  private readonly maxGroupMembers: number;
  private readonly reserved: ReadonlySet<string>;
  private readonly bootstrapSenders: readonly BootstrapSender[];
  private readonly airForms: readonly AirForm[];
  private readonly now: () => number;
  private ownershipCache: { version: number; value: SenderOwnership } | undefined;

  private readonly units: Database<StoredUnit, string>;
  private readonly unitChildren: Database<1, [string, string]>;
  private readonly keys: Database<StoredKey, string>;
  private readonly keyDigests: Database<string, string>;
  private readonly people: Database<StoredPerson, string>;
  private readonly peopleMobile: Database<string, string>;
  private readonly peopleEmail: Database<string, string>;
  private readonly peopleUnit: Database<1, [string, string]>;
  private readonly roles: Database<string, [string, string, string]>;
  private readonly groups: Database<StoredGroup, string>;
  private readonly groupParents: Database<1, [string, string]>;
  private readonly members: Database<string, [string, string]>;
  private readonly memberOf: Database<1, [string, string]>;
  private readonly blocks: Database<StoredBlock, [string, string]>;
  private readonly routing: Database<StoredRoutingTable, string>;
  private readonly tombstones: Database<Tombstone, string>;
  private readonly callbackSecrets: Database<StoredCallbackSecret, string>;
  private readonly audit: Database<StoredAudit, number>;
  private readonly auditTarget: Database<1, [string, string, number]>;
  private readonly meta: Database<number, string>;
  private readonly rows: RowLog | undefined;

  private constructor(opts: DirectoryStoreOptions) {
    this.env = opts.env;
    this.tiers = new Set(opts.tiers);
    this.allowInternational = opts.allowInternational;
    this.defaultSender = opts.defaultSender;
    this.maxGroupMembers = opts.maxGroupMembers;
    this.reserved = new Set(opts.reservedUnitIds ?? []);
    this.bootstrapSenders = opts.bootstrapSenders ?? [];
    this.airForms = opts.airForms ?? [];
    this.now = opts.now ?? Date.now;
    const db = <V, K extends Key>(name: string): Database<V, K> => this.env.openDB<V, K>({ name, encoding: 'msgpack' });
    this.units = db('dir.units');
    this.unitChildren = db('dir.unitChildren');
    this.keys = db('dir.keys');
    this.keyDigests = db('dir.keyDigest');
    this.people = db('dir.people');
    this.peopleMobile = db('dir.peopleMobile');
    this.peopleEmail = db('dir.peopleEmail');
    this.peopleUnit = db('dir.peopleUnit');
    this.roles = db('dir.roles');
    this.groups = db('dir.groups');
    this.groupParents = db('dir.groupParents');
    this.members = db('dir.members');
    this.memberOf = db('dir.memberOf');
    this.blocks = db('dir.blocks');
    this.routing = db('dir.routing');
    this.tombstones = db('dir.tombstones');
    this.callbackSecrets = db('dir.callbackSecrets');
    this.audit = db('dir.audit');
    this.auditTarget = db('dir.auditTarget');
    this.meta = db('dir.meta');
    const replicated = [
      this.units, this.unitChildren, this.keys, this.keyDigests, this.people, this.peopleMobile, this.peopleEmail, this.peopleUnit,
      this.roles, this.groups, this.groupParents, this.members, this.memberOf, this.blocks, this.routing, this.tombstones, this.callbackSecrets,
    ] as unknown as Array<Database<unknown, Key>>;
    // dir.meta 'version': other hosts bump theirs when they apply these rows, so their caches reload.
    this.rows = opts.changeLog ? new RowLog(opts.changeLog, replicated, ['dir.meta', 'version']) : undefined;
  }

  static open(opts: DirectoryStoreOptions): DirectoryStore {
    return new DirectoryStore(opts);
  }

  // =================================================================== reads

  /** Bumped by every change that can alter a group's expansion (people, groups, blocks, units). */
  version(): number {
    return this.meta.get('version') ?? 0;
  }

  getUnit(id: string): Unit | undefined {
    const u = this.units.get(id);
    return u === undefined ? undefined : { id, ...u };
  }

  /** The unit, its parent, … the root. Undefined when the unit does not exist. */
  unitChain(id: string): Unit[] | undefined {
    const chain: Unit[] = [];
    let cur: string | undefined = id;
    while (cur !== undefined) {
      const u = this.getUnit(cur);
      if (u === undefined) return chain.length === 0 ? undefined : chain;
      chain.push(u);
      if (chain.length > MAX_UNIT_DEPTH) throw new GatewayError('INTERNAL', `unit ${id}: chain deeper than ${MAX_UNIT_DEPTH}`);
      cur = u.parent;
    }
    return chain;
  }

  /** The unit and every unit below it (breadth first, at most MAX_SUBTREE). */
  subtree(id: string): string[] {
    const out = [id];
    for (let i = 0; i < out.length && out.length < MAX_SUBTREE; i++) {
      const parent = out[i] as string;
      for (const key of this.unitChildren.getKeys({ start: [parent], end: [parent, '\uffff'] })) {
        out.push(key[1]);
        if (out.length >= MAX_SUBTREE) break;
      }
    }
    return out;
  }

  /** True when `id` is `ancestor` or below it. */
  isWithin(id: string, ancestor: string): boolean {
    const chain = this.unitChain(id);
    return chain !== undefined && chain.some((u) => u.id === ancestor);
  }

  /**
   * Who owns each sender code (src/directory/senders.ts): bootstrap keys,
   * then every unit's claim, collisions resolved (older claim wins). Cached
   * per directory version.
   */
  senderOwnership(): SenderOwnership {
    const version = this.version();
    if (this.ownershipCache?.version === version) return this.ownershipCache.value;
    const value = this.computeOwnership();
    this.ownershipCache = { version, value };
    return value;
  }

  /** The code a unit's messages go out under (chain: the unit first): the nearest owned claim up the chain. */
  senderOf(chain: readonly Unit[]): string {
    return ownedSender(chain, this.senderOwnership(), this.defaultSender);
  }

  listUnits(q: { parent?: string; cursor?: string; limit: number }): Page<Unit> {
    const limit = clampLimit(q.limit);
    const items: Unit[] = [];
    if (q.parent !== undefined) {
      const start: [string, string] = [q.parent, q.cursor === undefined ? '' : `${q.cursor}\u0000`];
      for (const key of this.unitChildren.getKeys({ start, end: [q.parent, '\uffff'], limit })) {
        const u = this.getUnit(key[1]);
        if (u) items.push(u);
      }
    } else {
      const start = q.cursor === undefined ? '' : `${q.cursor}\u0000`;
      for (const { key, value } of this.units.getRange({ start, limit })) items.push({ id: key, ...value });
    }
    return page(items, limit, (u) => u.id);
  }

  /** A deleted unit's tombstone, or undefined. */
  getTombstone(id: string): Tombstone | undefined {
    return this.tombstones.get(id);
  }

  listTombstones(q: { cursor?: string; limit: number }): Page<Tombstone> {
    const limit = clampLimit(q.limit);
    const items: Tombstone[] = [];
    for (const { value } of this.tombstones.getRange({ start: q.cursor === undefined ? '' : `${q.cursor}\u0000`, limit })) items.push(value);
    return page(items, limit, (x) => x.id);
  }

  getKey(id: string): ApiKeyInfo | undefined {
    const k = this.keys.get(id);
    return k === undefined ? undefined : keyInfo(id, k);
  }

  listKeys(unit: string): ApiKeyInfo[] {
    const out: ApiKeyInfo[] = [];
    for (const { key, value } of this.keys.getRange({})) {
      if (value.u === unit) out.push(keyInfo(key, value));
      if (out.length >= MAX_LIST) break;
    }
    return out;
  }

  /** Look an API key up by its digest; revoked and expired keys are reported as such. */
  checkKey(key: string): KeyStatus {
    const id = this.keyDigests.get(keyDigest(key));
    const stored = id === undefined ? undefined : this.keys.get(id);
    if (id === undefined || stored === undefined) return { ok: false, reason: 'unknown' };
    const info = keyInfo(id, stored);
    if (stored.r !== undefined) return { ok: false, reason: 'revoked', key: info };
    if (stored.x !== undefined && stored.x <= this.now()) return { ok: false, reason: 'expired', key: info };
    return { ok: true, key: info };
  }

  getPerson(id: string): Person | undefined {
    const p = this.people.get(id);
    return p === undefined ? undefined : personOf(id, p);
  }

  personByMobile(mobile: string): Person | undefined {
    const id = this.peopleMobile.get(mobile);
    return id === undefined ? undefined : this.getPerson(id);
  }

  /** The person with this mail address (any case, surrounding spaces ignored), or undefined. */
  personByEmail(email: string): Person | undefined {
    const key = email.trim().toLowerCase();
    if (key.length === 0 || key.length > MAX_EMAIL_CHARS) return undefined;
    const id = this.peopleEmail.get(key);
    return id === undefined ? undefined : this.getPerson(id);
  }

  listPeople(q: { unit?: string; role?: string; cursor?: string; limit: number }): Page<Person> {
    const limit = clampLimit(q.limit);
    const after = q.cursor === undefined ? '' : `${q.cursor}\u0000`;
    const items: Person[] = [];
    if (q.role !== undefined) {
      // Role rows are keyed by unit first; a page walks them in (unit, id) order.
      const [cu, cid] = q.cursor === undefined ? ['', ''] : splitCursor(q.cursor);
      const start: [string, string, string] = q.unit !== undefined ? [q.role, q.unit, q.cursor === undefined ? '' : `${cid}\u0000`] : [q.role, cu, q.cursor === undefined ? '' : `${cid}\u0000`];
      const end: [string, string] | [string, string, string] = q.unit !== undefined ? [q.role, q.unit, '\uffff'] : [q.role, '\uffff'];
      for (const key of this.roles.getKeys({ start, end, limit })) {
        const p = this.getPerson(key[2]);
        if (p) items.push(p);
      }
      return page(items, limit, (p) => (q.unit !== undefined ? p.id : `${p.unit}\u0000${p.id}`));
    }
    if (q.unit !== undefined) {
      for (const key of this.peopleUnit.getKeys({ start: [q.unit, after], end: [q.unit, '\uffff'], limit })) {
        const p = this.getPerson(key[1]);
        if (p) items.push(p);
      }
    } else {
      for (const { key, value } of this.people.getRange({ start: after, limit })) items.push(personOf(key, value));
    }
    return page(items, limit, (p) => p.id);
  }

  getGroup(id: string): Group | undefined {
    const g = this.groups.get(id);
    return g === undefined ? undefined : groupOf(id, g);
  }

  listGroups(q: { unit?: string; cursor?: string; limit: number }): Page<Group> {
    const limit = clampLimit(q.limit);
    const items: Group[] = [];
    const start = q.cursor === undefined ? '' : `${q.cursor}\u0000`;
    for (const { key, value } of this.groups.getRange({ start })) {
      if (q.unit === undefined || value.unit === q.unit) items.push(groupOf(key, value));
      if (items.length >= limit) break;
    }
    return page(items, limit, (g) => g.id);
  }

  /** Static members of a group, by person id. */
  listMembers(groupId: string, q: { cursor?: string; limit: number }): Page<{ id: string; mobile: string; channel: ChannelPreference }> {
    const limit = clampLimit(q.limit);
    const items: { id: string; mobile: string; channel: ChannelPreference }[] = [];
    const start: [string, string] = [groupId, q.cursor === undefined ? '' : `${q.cursor}\u0000`];
    for (const { key, value } of this.members.getRange({ start, end: [groupId, '\uffff'], limit })) {
      items.push({ id: key[1], mobile: value.slice(1), channel: unpackChannel(value) });
    }
    return page(items, limit, (m) => m.id);
  }

  /** Groups whose static members include the person. */
  groupsOf(personId: string): string[] {
    const out: string[] = [];
    for (const key of this.memberOf.getKeys({ start: [personId], end: [personId, '\uffff'] })) out.push(key[1]);
    return out;
  }

  // ------------------------------------------ raw rows for the group expander

  /**
   * Static member rows of a group after person id `after` (exclusive), at
   * most `limit`, handed to `visit(personId, packed)` without building a
   * list (this is the broadcast path). Returns the rows read and the last id.
   */
  eachMemberRow(groupId: string, after: string | undefined, limit: number, visit: (personId: string, packed: string) => void): { rows: number; last?: string } {
    const start: [string, string] = [groupId, after === undefined ? '' : `${after}\u0000`];
    let rows = 0;
    let last: string | undefined;
    for (const { key, value } of this.members.getRange({ start, end: [groupId, '\uffff'], limit })) {
      last = key[1];
      rows++;
      visit(last, value);
    }
    return last === undefined ? { rows } : { rows, last };
  }

  /** Role rows of (role, unit), like `eachMemberRow`. */
  eachRoleRow(role: string, unit: string, after: string | undefined, limit: number, visit: (personId: string, packed: string) => void): { rows: number; last?: string } {
    const start: [string, string, string] = [role, unit, after === undefined ? '' : `${after}\u0000`];
    let rows = 0;
    let last: string | undefined;
    for (const { key, value } of this.roles.getRange({ start, end: [role, unit, '\uffff'], limit })) {
      last = key[2];
      rows++;
      visit(last, value);
    }
    return last === undefined ? { rows } : { rows, last };
  }

  /** Units that have people with `role` (for an unscoped role rule). */
  unitsWithRole(role: string): string[] {
    const out: string[] = [];
    let unit = '';
    for (let i = 0; i < MAX_SUBTREE; i++) {
      // Skip from one unit's rows to the next unit's: one seek per unit, not one step per person.
      const next = [...this.roles.getKeys({ start: [role, unit], end: [role, '\uffff'], limit: 1 })][0];
      if (next === undefined) break;
      out.push(next[1]);
      unit = `${next[1]}\u0000`;
    }
    return out;
  }

  // ------------------------------------------------------------ block list

  isBlocked(number: string, scopes: readonly string[]): boolean {
    for (const s of scopes) if (this.blocks.get([s, number]) !== undefined) return true;
    return false;
  }

  /**
   * Every blocked number of these scopes as a set, or undefined when there
   * are more than `max` (the caller then checks members one by one).
   */
  blockedSet(scopes: readonly string[], max: number): Set<string> | undefined {
    const out = new Set<string>();
    for (const s of scopes) {
      for (const key of this.blocks.getKeys({ start: [s, ''], end: [s, '\uffff'], limit: max + 1 })) {
        out.add(key[1]);
        if (out.size > max) return undefined;
      }
    }
    return out;
  }

  listBlocks(q: { scope?: string; cursor?: string; limit: number }): Page<BlockEntry> {
    const limit = clampLimit(q.limit);
    const items: BlockEntry[] = [];
    const [cs, cn] = q.cursor === undefined ? [q.scope ?? '', ''] : splitCursor(q.cursor);
    // With a scope, the cursor cannot move the range to another scope's rows.
    const start: [string, string] = q.scope !== undefined && cs !== q.scope ? [q.scope, ''] : [cs, q.cursor === undefined ? '' : `${cn}\u0000`];
    const end: [string, string] | [string] = q.scope !== undefined ? [q.scope, '\uffff'] : ['\uffff'];
    for (const { key, value } of this.blocks.getRange({ start, end, limit })) items.push(blockOf(key, value));
    return page(items, limit, (b) => `${b.scope}\u0000${b.number}`);
  }

  // ----------------------------------------------------------------- audit

  /** Newest first. Examines at most MAX_AUDIT_SCAN rows per call; `next` continues. */
  queryAudit(q: AuditQuery): Page<AuditEntry> {
    const limit = clampLimit(q.limit);
    const items: AuditEntry[] = [];
    let scanned = 0;
    let last: number | undefined;
    const matches = (e: StoredAudit): boolean =>
      (q.actor === undefined || e.actor === q.actor) &&
      (q.action === undefined || e.action === q.action || e.action.startsWith(`${q.action}.`)) &&
      (q.targetType === undefined || e.targetType === q.targetType) &&
      (q.targetId === undefined || e.targetId === q.targetId) &&
      (q.from === undefined || e.at >= q.from) &&
      (q.to === undefined || e.at < q.to);
    const upper = q.cursor ?? Number.MAX_SAFE_INTEGER;
    if (q.targetType !== undefined && q.targetId !== undefined) {
      // The per-target index: a resource's history without scanning the log.
      for (const key of this.auditTarget.getKeys({ start: [q.targetType, q.targetId, upper], end: [q.targetType, q.targetId, -1], reverse: true })) {
        const seq = key[2];
        if (seq >= upper) continue;
        last = seq;
        const e = this.audit.get(seq);
        if (e !== undefined && matches(e)) items.push({ seq, ...e });
        if (items.length >= limit || ++scanned >= MAX_AUDIT_SCAN) break;
      }
    } else {
      for (const { key, value } of this.audit.getRange({ start: upper, end: -1, reverse: true })) {
        if (key >= upper) continue;
        last = key;
        // Sequence order is time order: past `from` nothing older can match.
        if (q.from !== undefined && value.at < q.from) {
          last = undefined;
          break;
        }
        if (matches(value)) items.push({ seq: key, ...value });
        if (items.length >= limit || ++scanned >= MAX_AUDIT_SCAN) break;
      }
    }
    const more = last !== undefined && (items.length >= limit || scanned >= MAX_AUDIT_SCAN) && last > 0;
    return more ? { items, next: String(last) } : { items };
  }

  /**
   * Retention: remove audit entries recorded before `before` (oldest first,
   * sequence order is time order; never the newest) with their per-target index rows, at most
   * `limit` entries in one transaction. Returns how many; call again while it
   * returns `limit`.
   */
  async purgeAudit(before: number, limit: number): Promise<number> {
    const old: Array<{ seq: number; e: StoredAudit }> = [];
    // The newest entry stays, however old: the next entry's sequence number follows it.
    const newest = [...this.audit.getKeys({ reverse: true, limit: 1 })][0];
    for (const { key, value } of this.audit.getRange({ limit: Math.max(1, limit) })) {
      if (value.at >= before || key === newest) break;
      old.push({ seq: key, e: value });
    }
    if (old.length === 0) return 0;
    await this.env.transaction(() => {
      for (const { seq, e } of old) {
        this.audit.removeSync(seq);
        this.auditTarget.removeSync([e.targetType, e.targetId, seq]);
      }
    });
    return old.length;
  }

  // ================================================================= writes

  /** Record an admin action that is not itself a directory change (held messages released, …). */
  recordAudit(actor: Actor, action: string, targetType: string, targetId: string, fields: { before?: unknown; after?: unknown; detail?: unknown }): Promise<void> {
    return this.change(actor, (tx) => {
      tx.audit(action, targetType, targetId, fields.before, fields.after, fields.detail);
    });
  }

  /** A unit's callback signing secrets (set through the admin API; replicated like every directory row). */
  getCallbackSecret(unit: string): StoredCallbackSecret | undefined {
    return this.callbackSecrets.get(unit);
  }

  /**
   * Set, rotate or remove a unit's callback signing secret, or end a rotation
   * (`dropPrevious`). One change: the row (replicated to the other hosts) and
   * an audit entry that says what happened — `unit.callbackSecret` with
   * before/after `{ set, previous }` and the operation — never the secret.
   * `fallback`: the secret the tenant has from config, which a first admin
   * secret keeps valid as `previous`.
   */
  setCallbackSecret(actor: Actor, id: string, change: { secret?: string | null; dropPrevious?: boolean }, fallback?: { current: string }): Promise<void> {
    return this.change(actor, (tx) => {
      if (this.units.get(id) === undefined) throw notFound('unit', id);
      this.assertVisible(actor, id, 'unit', id);
      this.assertScope(actor, id, true);
      const before = this.callbackSecrets.get(id);
      let next: StoredCallbackSecret | undefined = before;
      const ops: string[] = [];
      const now = this.now();
      if (change.secret === null) {
        if (next !== undefined) ops.push('remove');
        next = undefined;
      } else if (change.secret !== undefined) {
        const old = next ?? fallback;
        const previous = old !== undefined && !sameSecret(old.current, change.secret) ? old.current : next?.previous;
        ops.push(before === undefined ? 'set' : 'rotate');
        next = { current: change.secret, ...(previous !== undefined ? { previous } : {}), updatedAt: now };
      }
      if (change.dropPrevious === true && next?.previous !== undefined) {
        next = { current: next.current, updatedAt: now };
        ops.push('endRotation');
      }
      if (ops.length === 0) return;
      if (next === undefined) this.callbackSecrets.removeSync(id);
      else this.callbackSecrets.putSync(id, next);
      const view = (s: StoredCallbackSecret | undefined): { set: boolean; previous: boolean } => ({ set: s !== undefined, previous: s?.previous !== undefined });
      tx.audit('unit.callbackSecret', 'unit', id, view(before), view(next), { ops });
    });
  }

  createUnit(actor: Actor, input: UnitInput): Promise<Unit> {
    return this.change(actor, (tx) => {
      checkId(input.id, '/id', ID_RE);
      if (this.units.get(input.id) !== undefined) throw new GatewayError('ALREADY_EXISTS', `unit ${input.id} exists`, { details: [{ field: '/id', message: 'taken' }] });
      const grave = this.tombstones.get(input.id);
      // A delegated admin learns of a deleted unit only if it lay in its subtree: another's answers like a live id (no date).
      if (grave !== undefined && actor.unit !== undefined && !(grave.parent !== undefined && this.isWithin(grave.parent, actor.unit))) {
        throw new GatewayError('ALREADY_EXISTS', `unit ${input.id} exists`, { details: [{ field: '/id', message: 'taken' }] });
      }
      if (grave !== undefined) throw new GatewayError('ALREADY_EXISTS', `unit id ${input.id} belonged to a deleted unit (${new Date(grave.deletedAt).toISOString()}); ids are never reused`, { details: [{ field: '/id', message: 'used by a deleted unit' }] });
      if (this.reserved.has(input.id)) throw new GatewayError('ALREADY_EXISTS', `${input.id} is the tenant of a bootstrap API key (auth.apiKeys)`, { details: [{ field: '/id', message: 'reserved by auth.apiKeys' }] });
      if (input.parent !== undefined) {
        this.assertScope(actor, input.parent, false);
        const chain = this.unitChain(input.parent);
        if (chain === undefined) throw invalid('/parent', `no unit ${input.parent}`);
        if (chain.length >= MAX_UNIT_DEPTH) throw invalid('/parent', `units nest at most ${MAX_UNIT_DEPTH} deep`);
        this.assertScope(actor, input.parent, false);
      } else if (actor.unit !== undefined) {
        throw new GatewayError('FORBIDDEN', `an admin key for unit ${actor.unit} may only create units below it`, { details: [{ field: '/parent', message: 'required' }] });
      }
      const now = this.now();
      const unit: Unit = {
        id: input.id,
        name: input.name,
        ...(input.parent !== undefined ? { parent: input.parent } : {}),
        ...(input.sender !== undefined ? { sender: input.sender } : {}),
        ...(input.extension !== undefined ? { extension: input.extension } : {}),
        ...(input.signature !== undefined && input.signature !== '' ? { signature: input.signature } : {}),
        grants: this.checkGrants({ ...NO_GRANTS, ...input.grants }),
        disabled: input.disabled ?? false,
        createdAt: now,
        updatedAt: now,
      };
      this.checkSender(unit);
      this.checkSenderRights(actor, input);
      const guard = this.claimGuard(unit.id, actor);
      this.units.putSync(unit.id, strip(unit));
      if (unit.parent !== undefined) this.unitChildren.putSync([unit.parent, unit.id], 1);
      guard();
      tx.audit('unit.create', 'unit', unit.id, undefined, unit);
      tx.bump();
      return unit;
    });
  }

  updateUnit(actor: Actor, id: string, patch: UnitPatch): Promise<Unit> {
    return this.change(actor, (tx) => {
      const before = this.getUnit(id);
      if (before === undefined) throw notFound('unit', id);
      this.assertVisible(actor, id, 'unit', id);
      // A delegated admin changes units below its own, never its own (it cannot widen what its parent gave it).
      this.assertScope(actor, id, true);
      const next: { -readonly [K in keyof Unit]: Unit[K] } = { ...before, updatedAt: this.now() };
      if (patch.name !== undefined) next.name = patch.name;
      if (patch.disabled !== undefined) next.disabled = patch.disabled;
      if (patch.grants !== undefined) next.grants = this.checkGrants({ ...before.grants, ...patch.grants });
      setOptional(next, 'sender', patch.sender);
      setOptional(next, 'extension', patch.extension);
      setOptional(next, 'signature', patch.signature === '' ? null : patch.signature);
      if (patch.parent !== undefined && patch.parent !== (before.parent ?? null)) {
        if (patch.parent === null) {
          if (actor.unit !== undefined) throw new GatewayError('FORBIDDEN', 'a delegated admin may not make a root unit', { details: [{ field: '/parent', message: 'required' }] });
          delete next.parent;
        } else {
          // Scope first: a parent outside and one that does not exist answer alike (403), nothing about its depth.
          this.assertScope(actor, patch.parent, false);
          const chain = this.unitChain(patch.parent);
          if (chain === undefined) throw invalid('/parent', `no unit ${patch.parent}`);
          if (chain.some((u) => u.id === id)) throw invalid('/parent', `unit ${patch.parent} is below ${id}; a unit cannot move under itself`);
          const depthBelow = this.depthBelow(id);
          if (chain.length + depthBelow > MAX_UNIT_DEPTH) throw invalid('/parent', `units nest at most ${MAX_UNIT_DEPTH} deep`);
          next.parent = patch.parent;
        }
        if (before.parent !== undefined) this.unitChildren.removeSync([before.parent, id]);
        if (next.parent !== undefined) this.unitChildren.putSync([next.parent, id], 1);
      }
      this.checkSender(next);
      this.checkSenderRights(actor, patch);
      const guard = this.claimGuard(id, actor);
      this.units.putSync(id, strip(next));
      guard();
      tx.audit(patch.grants !== undefined && Object.keys(patch).length === 1 ? 'unit.grants' : 'unit.update', 'unit', id, before, next);
      tx.bump();
      return next;
    });
  }

  /** Replace a unit's grants (PUT …/grants): fields left out take the "nothing granted" default. */
  setGrants(actor: Actor, id: string, grants: Partial<Grants>): Promise<Unit> {
    return this.updateUnit(actor, id, { grants: { ...NO_GRANTS, ...grants } });
  }

  deleteUnit(actor: Actor, id: string): Promise<void> {
    return this.change(actor, (tx) => {
      const before = this.getUnit(id);
      if (before === undefined) throw notFound('unit', id);
      this.assertVisible(actor, id, 'unit', id);
      this.assertScope(actor, id, true);
      const refs: FieldProblem[] = [];
      const child = [...this.unitChildren.getKeys({ start: [id], end: [id, '\uffff'], limit: 1 })][0];
      if (child !== undefined) refs.push({ field: '/units', message: `has sub-unit ${child[1]}` });
      const person = [...this.peopleUnit.getKeys({ start: [id], end: [id, '\uffff'], limit: 1 })][0];
      if (person !== undefined) refs.push({ field: '/people', message: `has person ${person[1]}` });
      for (const { key, value } of this.groups.getRange({})) {
        if (value.unit === id) {
          refs.push({ field: '/groups', message: `owns group ${key}` });
          break;
        }
      }
      const now = this.now();
      const deadKeys: string[] = [];
      for (const { key, value } of this.keys.getRange({})) {
        if (value.u !== id) continue;
        if (value.r === undefined && (value.x === undefined || value.x > now)) {
          refs.push({ field: '/keys', message: `has live API key ${key} (revoke it first)` });
          break;
        }
        deadKeys.push(key);
      }
      if (refs.length > 0) throw new GatewayError('IN_USE', `unit ${id} is in use`, { details: refs });
      for (const k of deadKeys) {
        const stored = this.keys.get(k);
        if (stored) this.keyDigests.removeSync(stored.d);
        this.keys.removeSync(k);
      }
      if (before.parent !== undefined) this.unitChildren.removeSync([before.parent, id]);
      this.units.removeSync(id);
      // The id is buried, not freed: the unit's tenant data stays archived under it.
      this.tombstones.putSync(id, { id, name: before.name, ...(before.parent !== undefined ? { parent: before.parent } : {}), deletedAt: this.now(), deletedBy: actor.name });
      tx.audit('unit.delete', 'unit', id, before, undefined, deadKeys.length > 0 ? { removedKeys: deadKeys } : undefined);
      tx.bump();
    });
  }

  /** A new API key for a unit. The key itself is returned here once and never stored. */
  createKey(actor: Actor, unit: string, input: { label?: string; expiresAt?: number }): Promise<{ key: string; info: ApiKeyInfo }> {
    const secret = `sgw_${randomBytes(32).toString('base64url')}`;
    const id = `k${randomBytes(8).toString('hex')}`;
    return this.change(actor, (tx) => {
      if (this.units.get(unit) === undefined) throw notFound('unit', unit);
      this.assertVisible(actor, unit, 'unit', unit);
      const now = this.now();
      if (input.expiresAt !== undefined && input.expiresAt <= now) throw invalid('/expiresAt', 'must be in the future');
      const stored: StoredKey = { u: unit, d: keyDigest(secret), p: secret.slice(0, 12), c: now };
      if (input.label !== undefined) stored.l = input.label;
      if (input.expiresAt !== undefined) stored.x = input.expiresAt;
      this.keys.putSync(id, stored);
      this.keyDigests.putSync(stored.d, id);
      const info = keyInfo(id, stored);
      tx.audit('key.create', 'key', id, undefined, info, { unit });
      return { key: secret, info };
    });
  }

  revokeKey(actor: Actor, id: string): Promise<ApiKeyInfo> {
    return this.change(actor, (tx) => {
      const stored = this.keys.get(id);
      if (stored === undefined) throw notFound('API key', id);
      this.assertVisible(actor, stored.u, 'API key', id);
      const before = keyInfo(id, stored);
      if (stored.r !== undefined) return before;
      const next: StoredKey = { ...stored, r: this.now() };
      this.keys.putSync(id, next);
      const info = keyInfo(id, next);
      tx.audit('key.revoke', 'key', id, before, info, { unit: stored.u });
      return info;
    });
  }

  /** Create (`create`), change (`update`) or either (`upsert`) a person. */
  putPerson(actor: Actor, input: PersonInput, mode: 'create' | 'update' | 'upsert'): Promise<Person> {
    return this.change(actor, (tx) => {
      this.assertScope(actor, input.unit, false);
      const person = this.preparePerson(input, '');
      const before = this.getPerson(person.id);
      if (mode === 'create' && before) throw new GatewayError('ALREADY_EXISTS', `person ${person.id} exists`, { details: [{ field: '/id', message: 'taken' }] });
      if (mode === 'update' && !before) throw notFound('person', person.id);
      if (before) this.assertHeldInside(actor, before.unit, `person ${person.id}`);
      this.assertScope(actor, person.unit, false);
      const taken = this.peopleMobile.get(person.mobile);
      if (taken !== undefined && taken !== person.id) {
        throw new GatewayError('ALREADY_EXISTS', 'the mobile number belongs to another person', { details: [{ field: '/mobile', message: `already used by ${this.personRef(actor, taken)}` }] });
      }
      const emailOwner = person.email !== undefined ? this.peopleEmail.get(person.email) : undefined;
      if (emailOwner !== undefined && emailOwner !== person.id) {
        throw new GatewayError('ALREADY_EXISTS', 'the mail address belongs to another person', { details: [{ field: '/email', message: `already used by ${this.personRef(actor, emailOwner)}` }] });
      }
      checkMailAlerts(person, '');
      const now = this.now();
      const next: Person = { ...person, createdAt: before?.createdAt ?? now, updatedAt: now };
      this.writePerson(before, next);
      tx.audit(before ? 'person.update' : 'person.create', 'person', next.id, before, next);
      tx.bump();
      return next;
    });
  }

  deletePerson(actor: Actor, id: string): Promise<void> {
    return this.change(actor, (tx) => {
      const before = this.getPerson(id);
      if (before === undefined) throw notFound('person', id);
      this.assertVisible(actor, before.unit, 'person', id);
      this.writePerson(before, undefined);
      tx.audit('person.delete', 'person', id, before, undefined);
      tx.bump();
    });
  }

  /** Create or replace a group's definition (and its static members when `members` is given). */
  putGroup(actor: Actor, input: GroupInput, mode: 'create' | 'update' | 'upsert'): Promise<Group> {
    return this.change(actor, (tx) => {
      const before = this.getGroup(input.id);
      if (mode === 'create' && before) throw new GatewayError('ALREADY_EXISTS', `group ${input.id} exists`, { details: [{ field: '/id', message: 'taken' }] });
      if (mode === 'update' && !before) throw notFound('group', input.id);
      const after = this.writeGroup(actor, before, input, '', tx);
      tx.audit(before ? 'group.update' : 'group.create', 'group', input.id, before, after.group, after.detail);
      tx.bump();
      return after.group;
    });
  }

  /** Add and remove static members (person ids or mobile numbers). */
  changeMembers(actor: Actor, groupId: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<Group> {
    return this.change(actor, (tx) => {
      const before = this.getGroup(groupId);
      if (before === undefined) throw notFound('group', groupId);
      this.assertVisible(actor, before.unit, 'group', groupId);
      const add = change.add ?? [];
      const remove = change.remove ?? [];
      if (add.length + remove.length > MAX_MEMBER_CHANGE) {
        throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${MAX_MEMBER_CHANGE} member changes per request; import a CSV for more`, { details: [{ field: '/add', message: `${add.length} + ${remove.length} items` }] });
      }
      const problems: FieldProblem[] = [];
      const addIds = this.resolveMembers(add, '/add', problems, this.memberScope(actor, before.unit));
      // Removing: people of the group's scope, or anyone already a static member (a global admin may have put them there).
      const removeIds = this.resolveMembers(remove, '/remove', problems, this.memberScope(actor, before.unit, groupId));
      if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems.slice(0, 20) });
      let k = before.memberCount ?? 0;
      const added: string[] = [];
      const removed: string[] = [];
      for (const pid of removeIds) {
        if (this.members.get([groupId, pid]) === undefined) continue;
        this.members.removeSync([groupId, pid]);
        this.memberOf.removeSync([pid, groupId]);
        removed.push(pid);
        k--;
      }
      for (const pid of addIds) {
        if (this.members.get([groupId, pid]) !== undefined) continue;
        const p = this.people.get(pid) as StoredPerson;
        this.members.putSync([groupId, pid], packMember(p.channel, p.mobile));
        this.memberOf.putSync([pid, groupId], 1);
        added.push(pid);
        k++;
      }
      if (k > this.maxGroupMembers) throw new GatewayError('TOO_MANY_RECIPIENTS', `a group has at most ${this.maxGroupMembers} static members`, { details: [{ field: '/add', message: `would have ${k}` }] });
      const stored = this.groups.get(groupId) as StoredGroup;
      const next: StoredGroup = { ...stored, k, updatedAt: this.now() };
      this.groups.putSync(groupId, next);
      const after = groupOf(groupId, next);
      tx.audit('group.members', 'group', groupId, before, after, membershipDetail(added, removed));
      tx.bump();
      return after;
    });
  }

  deleteGroup(actor: Actor, id: string): Promise<void> {
    return this.change(actor, (tx) => {
      const before = this.getGroup(id);
      if (before === undefined) throw notFound('group', id);
      this.assertVisible(actor, before.unit, 'group', id);
      const parent = [...this.groupParents.getKeys({ start: [id], end: [id, '\uffff'], limit: 1 })][0];
      if (parent !== undefined) throw new GatewayError('IN_USE', `group ${id} is nested in group ${parent[1]}`, { details: [{ field: '/groups', message: `nested in ${parent[1]}` }] });
      const removed: string[] = [];
      for (const key of [...this.members.getKeys({ start: [id], end: [id, '\uffff'] })]) {
        this.members.removeSync(key);
        this.memberOf.removeSync([key[1], id]);
        if (removed.length < AUDIT_ID_SAMPLE) removed.push(key[1]);
      }
      for (const child of before.groups) this.groupParents.removeSync([child, id]);
      this.groups.removeSync(id);
      tx.audit('group.delete', 'group', id, before, undefined, { removedMembers: before.memberCount ?? 0, sample: removed });
      tx.bump();
    });
  }

  // ----------------------------------------------------------- routing

  /** Routing rules set through the admin API (undefined: none; the configuration's rules apply). */
  getRoutingTable(): StoredRoutingTable | undefined {
    return this.routing.get('table');
  }

  /**
   * Replace the routing rules (a global admin only; the caller has checked
   * them against the accounts and tiers). `rules: null` clears them: the
   * configuration's rules apply again. The version only grows, so every
   * dispatcher (polling it) applies the change once.
   */
  setRoutingTable(actor: Actor, rules: readonly unknown[] | null): Promise<StoredRoutingTable> {
    return this.change(actor, (tx) => {
      if (actor.unit !== undefined) throw new GatewayError('FORBIDDEN', 'only a global admin may change the routing rules');
      const before = this.routing.get('table');
      const next: StoredRoutingTable = { version: (before?.version ?? 0) + 1, rules: rules === null ? null : [...rules], at: this.now(), by: actor.name };
      this.routing.putSync('table', next);
      tx.audit('routing.update', 'routing', 'table', before, next);
      return next;
    });
  }

  block(actor: Actor, input: { scope: string; number: string; reason?: string }): Promise<BlockEntry> {
    return this.change(actor, (tx) => {
      const number = this.normalize(input.number, '/number');
      this.checkBlockScope(actor, input.scope);
      const stored: StoredBlock = { a: this.now(), b: actor.name };
      if (input.reason !== undefined) stored.r = input.reason;
      const prior = this.blocks.get([input.scope, number]);
      this.blocks.putSync([input.scope, number], stored);
      const entry = blockOf([input.scope, number], stored);
      tx.audit('block.add', 'block', `${input.scope}:${number}`, prior ? blockOf([input.scope, number], prior) : undefined, entry);
      tx.bump();
      return entry;
    });
  }

  unblock(actor: Actor, input: { scope: string; number: string }): Promise<void> {
    return this.change(actor, (tx) => {
      const number = this.normalize(input.number, '/number');
      this.checkBlockScope(actor, input.scope);
      const prior = this.blocks.get([input.scope, number]);
      if (prior === undefined) throw notFound('block-list entry', `${input.scope}:${number}`);
      this.blocks.removeSync([input.scope, number]);
      tx.audit('block.remove', 'block', `${input.scope}:${number}`, blockOf([input.scope, number], prior), undefined);
      tx.bump();
    });
  }

  /**
   * Apply a whole people import in one transaction: either every row is
   * written or (on any refusal, including one found only now because the
   * directory changed since the file was checked) none is.
   */
  importPeople(actor: Actor, rows: readonly { line: number; input: PersonInput }[], detail: Record<string, unknown>): Promise<{ created: number; updated: number; unchanged: number }> {
    return this.change(actor, (tx) => {
      const problems: FieldProblem[] = [];
      let created = 0;
      let updated = 0;
      let unchanged = 0;
      const byMobile = new Map<string, string>();
      const byEmail = new Map<string, string>();
      for (const { line, input } of rows) {
        const at = `/rows/${line}`;
        let person: Omit<Person, 'createdAt' | 'updatedAt'>;
        try {
          person = this.preparePerson(input, at);
          const before = this.getPerson(person.id) ?? (input.id === undefined ? this.personByMobile(person.mobile) : undefined);
          const id = before?.id ?? person.id;
          person = { ...person, id };
          // A file without the email / mailAlerts column leaves those of existing people as they are.
          if (before && input.email === undefined) {
            const { email: _none, ...rest } = person;
            person = before.email !== undefined ? { ...rest, email: before.email } : rest;
          }
          if (before && input.mailAlerts === undefined) person = { ...person, mailAlerts: before.mailAlerts };
          if (before) this.assertHeldInside(actor, before.unit, input.id === undefined ? 'the person with this number' : `person ${id}`, at);
          this.assertScope(actor, person.unit, false, at);
          const taken = byMobile.get(person.mobile) ?? this.peopleMobile.get(person.mobile);
          if (taken !== undefined && taken !== id) throw new GatewayError('ALREADY_EXISTS', 'number taken', { details: [{ field: `${at}/mobile`, message: `number already belongs to ${this.personRef(actor, taken)}` }] });
          byMobile.set(person.mobile, id);
          if (person.email !== undefined) {
            const owner = byEmail.get(person.email) ?? this.peopleEmail.get(person.email);
            if (owner !== undefined && owner !== id) throw new GatewayError('ALREADY_EXISTS', 'mail address taken', { details: [{ field: `${at}/email`, message: `mail address already belongs to ${this.personRef(actor, owner)}` }] });
            byEmail.set(person.email, id);
          }
          checkMailAlerts(person, at);
          if (before && samePerson(before, person)) {
            unchanged++;
            continue;
          }
          const now = this.now();
          const next: Person = { ...person, createdAt: before?.createdAt ?? now, updatedAt: now };
          this.writePerson(before, next);
          tx.audit(before ? 'person.update' : 'person.create', 'person', id, before, next, detail);
          if (before) updated++;
          else created++;
        } catch (e) {
          if (!(e instanceof GatewayError)) throw e;
          problems.push(...rowProblems(e, at));
          if (problems.length >= 100) break;
        }
      }
      if (problems.length > 0) {
        throw new GatewayError('IMPORT_INVALID', `${problems.length} row problem(s); nothing was imported`, { details: problems.slice(0, 100) });
      }
      tx.audit('people.import', 'import', typeof detail['sha256'] === 'string' ? detail['sha256'] : '', undefined, undefined, { ...detail, created, updated, unchanged });
      tx.bump();
      return { created, updated, unchanged };
    });
  }

  /** Apply a groups import (each listed group's definition replaced) in one transaction. */
  importGroups(actor: Actor, groups: readonly { line: number; input: GroupInput }[], detail: Record<string, unknown>): Promise<{ created: number; updated: number }> {
    return this.change(actor, (tx) => {
      const problems: FieldProblem[] = [];
      let created = 0;
      let updated = 0;
      // Groups may nest groups defined further down the same file: every new group exists (empty) first.
      const now = this.now();
      const fresh = new Set<string>();
      for (const { input } of groups) {
        if (this.groups.get(input.id) === undefined && ID_RE.test(input.id) && this.units.get(input.unit) !== undefined) {
          this.groups.putSync(input.id, { name: input.name, unit: input.unit, groups: [], roles: [], k: 0, createdAt: now, updatedAt: now });
          fresh.add(input.id);
        }
      }
      for (const { line, input } of groups) {
        const at = `/rows/${line}`;
        try {
          const before = fresh.has(input.id) ? undefined : this.getGroup(input.id);
          const after = this.writeGroup(actor, before, input, at, tx);
          tx.audit(before ? 'group.update' : 'group.create', 'group', input.id, before, after.group, { ...detail, ...(after.detail as object | undefined) });
          if (before) updated++;
          else created++;
        } catch (e) {
          if (!(e instanceof GatewayError)) throw e;
          problems.push(...rowProblems(e, at));
          if (problems.length >= 100) break;
        }
      }
      if (problems.length > 0) {
        throw new GatewayError('IMPORT_INVALID', `${problems.length} row problem(s); nothing was imported`, { details: problems.slice(0, 100) });
      }
      tx.audit('groups.import', 'import', typeof detail['sha256'] === 'string' ? detail['sha256'] : '', undefined, undefined, { ...detail, created, updated });
      tx.bump();
      return { created, updated };
    });
  }

  // ============================================================== internals

  /** Run one change in a child transaction with its audit entries. */
  private change<T>(actor: Actor, fn: (tx: ChangeContext) => T): Promise<T> {
    return this.env.childTransaction(() => {
      const ctx = new ChangeContext(actor, this.now(), this.audit, this.auditTarget, this.meta);
      return this.rows ? this.rows.capture(() => fn(ctx)) : fn(ctx);
    });
  }

  /** A delegated admin may act only inside its unit's subtree (`strict`: strictly below it). */
  private assertScope(actor: Actor, unit: string, strict: boolean, at = ''): void {
    if (actor.unit === undefined) return;
    const inside = this.isWithin(unit, actor.unit) && (!strict || unit !== actor.unit);
    if (!inside) {
      throw new GatewayError('FORBIDDEN', `admin key ${actor.name} may only manage ${strict ? 'units below' : 'the subtree of'} unit ${actor.unit}`, {
        details: [{ field: `${at}/unit`, message: `${unit} is outside ${actor.unit}${strict ? "'s sub-units" : "'s subtree"}` }],
      });
    }
  }

  /**
   * An existing record (a person or group named by id or number) that a
   * delegated admin would overwrite: refused like assertScope (403) when it
   * is held outside the subtree, but without naming the unit that holds it —
   * the id is taken (one namespace), where it lives is not the admin's to see.
   */
  private assertHeldInside(actor: Actor, unit: string, what: string, at = ''): void {
    if (actor.unit === undefined || this.isWithin(unit, actor.unit)) return;
    throw new GatewayError('FORBIDDEN', `admin key ${actor.name} may only manage the subtree of unit ${actor.unit}`, {
      details: [{ field: `${at}/unit`, message: `${what} is held outside ${actor.unit}'s subtree` }],
    });
  }

  private checkBlockScope(actor: Actor, scope: string): void {
    if (scope === '*') {
      if (actor.unit !== undefined) throw new GatewayError('FORBIDDEN', 'only a global admin may change the global block list', { details: [{ field: '/scope', message: 'use your unit id' }] });
      return;
    }
    this.assertScope(actor, scope, false);
    if (this.units.get(scope) === undefined) throw invalid('/scope', `no unit ${scope} (use * for every unit)`);
  }

  private checkGrants(g: Grants): Grants {
    const problems: FieldProblem[] = [];
    g.tiers.forEach((t, i) => {
      if (t !== '*' && !this.tiers.has(t)) problems.push({ field: `/grants/tiers/${i}`, message: `unknown tier ${t}` });
    });
    g.groups.forEach((x, i) => {
      if (x !== '*' && this.groups.get(x) === undefined) problems.push({ field: `/grants/groups/${i}`, message: `no group ${x}` });
    });
    for (const [field, v] of [['dailyQuota', g.dailyQuota], ['perMinuteQuota', g.perMinuteQuota], ['dailyPartsQuota', g.dailyPartsQuota ?? null]] as const) {
      if (v !== null && (!Number.isInteger(v) || v < 0)) problems.push({ field: `/grants/${field}`, message: 'a non-negative integer or null' });
    }
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });
    return {
      tiers: [...new Set(g.tiers)], groups: [...new Set(g.groups)], direct: g.direct, ...(g.workflow !== undefined ? { workflow: g.workflow } : {}), police: g.police, dailyQuota: g.dailyQuota, perMinuteQuota: g.perMinuteQuota,
      ...(g.dailyPartsQuota !== undefined && g.dailyPartsQuota !== null ? { dailyPartsQuota: g.dailyPartsQuota } : {}),
    };
  }

  private checkSender(unit: Unit): void {
    if (unit.sender !== undefined && !SENDER_RE.test(unit.sender)) throw invalid('/sender', 'digits only, at most 20');
    if (unit.extension !== undefined && !EXTENSION_RE.test(unit.extension)) throw invalid('/extension', 'digits only, at most 6');
    const parentChain = unit.parent !== undefined ? (this.unitChain(unit.parent) ?? []) : [];
    const effective = effectiveSender([unit, ...parentChain], this.defaultSender);
    if (effective.length > 20) throw invalid(unit.sender !== undefined ? '/sender' : '/extension', `the sender address would be ${effective} (${effective.length} digits); SMPP allows 20`);
  }

  /** A delegated admin sets only an `extension` (under its own unit's code), never a full `sender`. */
  private checkSenderRights(actor: Actor, input: { readonly sender?: string | null }): void {
    if (actor.unit !== undefined && input.sender !== undefined) {
      throw new GatewayError('FORBIDDEN', `admin key ${actor.name} may set only an extension under the sender code of unit ${actor.unit}`, { details: [{ field: '/sender', message: 'a delegated admin sets only /extension' }] });
    }
  }

  /** Sender ownership from the rows as they are now (inside a change: with its writes). */
  private computeOwnership(): SenderOwnership {
    const all = new Map<string, Unit>();
    for (const { key, value } of this.units.getRange({})) all.set(key, { id: key, ...value });
    const claims: SenderClaim[] = [];
    for (const u of all.values()) {
      if (u.sender === undefined && u.extension === undefined) continue;
      const chain: Unit[] = [u];
      for (let cur = u.parent; cur !== undefined && chain.length <= MAX_UNIT_DEPTH; ) {
        const parent = all.get(cur);
        if (parent === undefined) break;
        chain.push(parent);
        cur = parent.parent;
      }
      const code = claimedCode(chain, this.defaultSender);
      if (code !== undefined) claims.push({ code, owner: u.id, kind: 'unit', createdAt: u.createdAt });
    }
    return resolveSenderOwnership(claims, this.bootstrapSenders, this.defaultSender, this.airForms);
  }

  /**
   * Call before writing a unit; the returned check, after the write, refuses
   * (409 SENDER_TAKEN naming the owner) any collision of sender codes the
   * write created — for the unit and every unit below it, whose codes
   * follow its own. Collisions stored before (older builds, replication)
   * are not this write's doing and do not block it.
   *
   * A delegated admin's write is refused too when it makes a code of its
   * subtree extend a code owned outside it (a unit that is not an ancestor
   * of the claimant, or a bootstrap key): an MO goes to the longest owned
   * prefix of its destination (a phone may append digits), so such a code
   * would take the other owner's MO to that code + digits. (Root lays out
   * the numbering and is not held to this; overlaps already stored do not
   * block a write.)
   */
  private claimGuard(changed: string, actor: Actor): () => void {
    const key = (code: string, a: string, b: string): string => `${code}\u0000${a}\u0000${b}`;
    const ownership = this.computeOwnership();
    const before = new Set(ownership.collisions.flatMap((c) => c.losers.map((l) => key(c.code, c.owner, l))));
    const scope = actor.unit;
    const overlapsBefore = scope === undefined ? new Set<string>() : new Set(this.outsidePrefixes(ownership, changed, scope).map((o) => key(o.code, o.owner, o.prefix)));
    return () => {
      const now = this.computeOwnership();
      if (scope !== undefined) {
        for (const o of this.outsidePrefixes(now, changed, scope)) {
          if (overlapsBefore.has(key(o.code, o.owner, o.prefix))) continue;
          const whom = now.kinds.get(o.prefix) === 'bootstrap' ? `bootstrap API key tenant ${o.prefixOwner} (auth.apiKeys)` : 'a unit outside this subtree';
          const said = `sender code ${o.code} would take the replies to sender code ${o.prefix} of ${whom} that carry more digits`;
          throw new GatewayError('SENDER_TAKEN', said, { details: [{ field: this.units.get(changed)?.sender !== undefined ? '/sender' : '/extension', message: said }] });
        }
      }
      for (const c of now.collisions) {
        for (const l of c.losers) {
          if (before.has(key(c.code, c.owner, l))) continue;
          const other = c.ownerKind === 'unit' && this.isWithin(c.owner, changed) ? l : c.owner;
          const otherKind = other === c.owner ? c.ownerKind : 'unit';
          const u = this.units.get(changed);
          const field = u?.sender !== undefined ? '/sender' : '/extension';
          const whom = otherKind === 'bootstrap' ? `bootstrap API key tenant ${other} (auth.apiKeys)` : `unit ${other}`;
          if (c.account !== undefined) {
            const said = `sender code ${c.code} of ${whom} is written ${c.onAir ?? ''} on account ${c.account}, like this one`;
            throw new GatewayError('SENDER_TAKEN', said, { details: [{ field, message: said }] });
          }
          throw new GatewayError('SENDER_TAKEN', `sender code ${c.code} is claimed by ${whom}`, { details: [{ field, message: `${c.code} belongs to ${whom}` }] });
        }
      }
    };
  }

  /**
   * Codes owned by `changed` or a unit below it that extend a code owned
   * neither by one of the claimant's ancestors nor inside `scope` (a
   * delegated admin's subtree): [code, its owner, the outside prefix, that prefix's owner].
   */
  private outsidePrefixes(ownership: SenderOwnership, changed: string, scope: string): { code: string; owner: string; prefix: string; prefixOwner: string }[] {
    const out: { code: string; owner: string; prefix: string; prefixOwner: string }[] = [];
    for (const [code, owner] of ownership.owners) {
      if (ownership.kinds.get(code) !== 'unit' || !this.isWithin(owner, changed)) continue;
      for (let len = code.length - 1; len > 0; len--) {
        const prefix = code.slice(0, len);
        const prefixOwner = ownership.owners.get(prefix);
        // The platform's default source is every unclaimed chain's code: extending it is the layout.
        if (prefixOwner === undefined || prefix === this.defaultSender) continue;
        const ok = ownership.kinds.get(prefix) === 'unit' && (this.isWithin(owner, prefixOwner) || this.isWithin(prefixOwner, scope));
        if (!ok) out.push({ code, owner, prefix, prefixOwner });
      }
    }
    return out;
  }

  /** Levels below `id` (0 for a leaf), bounded by MAX_UNIT_DEPTH. */
  private depthBelow(id: string): number {
    let level = [id];
    for (let depth = 0; depth <= MAX_UNIT_DEPTH; depth++) {
      const next: string[] = [];
      for (const u of level) for (const key of this.unitChildren.getKeys({ start: [u], end: [u, '\uffff'] })) next.push(key[1]);
      if (next.length === 0) return depth;
      level = next;
    }
    return MAX_UNIT_DEPTH + 1;
  }

  private normalize(raw: string, field: string): string {
    const n = normalizeNumber(raw, { allowInternational: this.allowInternational });
    if (!n.ok) throw new GatewayError('BAD_NUMBER', `${field}: ${n.reason}`, { details: [{ field, message: n.reason }] });
    return n.number;
  }

  private preparePerson(input: PersonInput, at: string): Omit<Person, 'createdAt' | 'updatedAt'> {
    const problems: FieldProblem[] = [];
    const mobile = normalizeNumber(input.mobile, { allowInternational: this.allowInternational });
    if (!mobile.ok) problems.push({ field: `${at}/mobile`, message: mobile.reason });
    if (input.id !== undefined && !PERSON_ID_RE.test(input.id)) problems.push({ field: `${at}/id`, message: 'letters, digits, _ . - (at most 64), starting with a letter or digit' });
    const name = input.name.trim();
    if (name.length === 0 || name.length > 128) problems.push({ field: `${at}/name`, message: 'required, at most 128 characters' });
    if (this.units.get(input.unit) === undefined) problems.push({ field: `${at}/unit`, message: `no unit ${input.unit}` });
    const roles = [...new Set((input.roles ?? []).map((r) => r.trim()).filter((r) => r.length > 0))];
    if (roles.length > MAX_ROLES) problems.push({ field: `${at}/roles`, message: `at most ${MAX_ROLES}` });
    roles.forEach((r) => {
      if (!ROLE_RE.test(r)) problems.push({ field: `${at}/roles`, message: `role ${r}: letters, digits, _ -` });
    });
    const channel = input.channel ?? 'sms';
    if (!CHANNEL_PREFERENCES.includes(channel)) problems.push({ field: `${at}/channel`, message: 'sms, pda or both' });
    let email: string | undefined;
    if (input.email !== undefined && input.email !== null && input.email.trim() !== '') {
      email = normalizeEmail(input.email);
      if (email === undefined) problems.push({ field: `${at}/email`, message: `${input.email.slice(0, 80)}: not a mail address (local@domain, at most ${MAX_EMAIL_CHARS} characters)` });
    }
    if (problems.length > 0 || !mobile.ok) throw new GatewayError(problems.some((p) => p.field.endsWith('/mobile')) ? 'BAD_NUMBER' : 'VALIDATION', problems[0]?.message, { details: problems });
    // Without an id, a person is known by their number: `p` + the number keeps re-imports stable.
    const id = input.id ?? this.peopleMobile.get(mobile.number) ?? `p${mobile.number}`;
    return { id, name, mobile: mobile.number, unit: input.unit, roles, channel, ...(email !== undefined ? { email } : {}), mailAlerts: input.mailAlerts === true };
  }

  /** Write (or, with `next` undefined, remove) a person and every index and membership row that carries them. */
  private writePerson(before: Person | undefined, next: Person | undefined): void {
    const id = (next ?? before)?.id as string;
    if (before) {
      if (!next || next.mobile !== before.mobile) this.peopleMobile.removeSync(before.mobile);
      if (before.email !== undefined && (!next || next.email !== before.email)) this.peopleEmail.removeSync(before.email);
      if (!next || next.unit !== before.unit) this.peopleUnit.removeSync([before.unit, id]);
      for (const r of before.roles) this.roles.removeSync([r, before.unit, id]);
    }
    if (next) {
      this.people.putSync(id, strip(next));
      this.peopleMobile.putSync(next.mobile, id);
      if (next.email !== undefined) this.peopleEmail.putSync(next.email, id);
      this.peopleUnit.putSync([next.unit, id], 1);
      const packed = packMember(next.channel, next.mobile);
      for (const r of next.roles) this.roles.putSync([r, next.unit, id], packed);
      if (before && packMember(before.channel, before.mobile) !== packed) {
        for (const key of [...this.memberOf.getKeys({ start: [id], end: [id, '\uffff'] })]) this.members.putSync([key[1], id], packed);
      }
    } else {
      this.people.removeSync(id);
      for (const key of [...this.memberOf.getKeys({ start: [id], end: [id, '\uffff'] })]) {
        this.memberOf.removeSync(key);
        this.members.removeSync([key[1], id]);
        const g = this.groups.get(key[1]);
        if (g) this.groups.putSync(key[1], { ...g, k: Math.max(0, g.k - 1) });
      }
    }
  }

  /** Person ids for member references (a person id, or a mobile number of a known person). */
  private resolveMembers(refs: readonly string[], field: string, problems: FieldProblem[], allowed?: (personId: string, person: StoredPerson) => boolean): string[] {
    const out: string[] = [];
    refs.forEach((ref, i) => {
      const r = ref.trim();
      let id: string | undefined = this.people.get(r) !== undefined ? r : undefined;
      if (id === undefined) {
        const n = normalizeNumber(r, { allowInternational: this.allowInternational });
        id = n.ok ? this.peopleMobile.get(n.number) : undefined;
      }
      const person = id === undefined ? undefined : this.people.get(id);
      // Unknown and not-yours answer alike: no oracle of who is in the directory.
      if (id !== undefined && person !== undefined && (allowed === undefined || allowed(id, person))) out.push(id);
      else if (problems.length < 100) problems.push({ field: `${field}/${i}`, message: `no person with id or mobile ${r}` });
    });
    return out;
  }

  /**
   * Who a delegated admin may put in a group owned by `owner`: people of the
   * owner's subtree (which lies in the admin's); with `group`, also those
   * already static members of it (so they can be removed). Undefined (no
   * limit) for a global admin.
   */
  private memberScope(actor: Actor, owner: string, group?: string): ((personId: string, person: StoredPerson) => boolean) | undefined {
    if (actor.unit === undefined) return undefined;
    return (id, p) => this.isWithin(p.unit, owner) || (group !== undefined && this.members.get([group, id]) !== undefined);
  }

  /** A person named in a refusal: by id when the actor may see them, else only "another person". */
  private personRef(actor: Actor, personId: string): string {
    const p = this.people.get(personId);
    return p !== undefined && (actor.unit === undefined || this.isWithin(p.unit, actor.unit)) ? `person ${personId}` : 'another person (outside your subtree)';
  }

  /** A record named in the path that the actor may not see answers like one that does not exist (404, same text). */
  private assertVisible(actor: Actor, unit: string, what: string, id: string): void {
    if (actor.unit !== undefined && !this.isWithin(unit, actor.unit)) throw notFound(what, id);
  }

  private writeGroup(actor: Actor, before: Group | undefined, input: GroupInput, at: string, _tx: ChangeContext): { group: Group; detail?: unknown } {
    // Scope first: a delegated admin learns nothing about units, groups or people outside its subtree.
    if (before) this.assertHeldInside(actor, before.unit, `group ${input.id}`, at);
    this.assertScope(actor, input.unit, false, at);
    const problems: FieldProblem[] = [];
    if (!ID_RE.test(input.id)) problems.push({ field: `${at}/id`, message: 'letters, digits, _ - (at most 64), starting with a letter or digit' });
    const name = input.name.trim();
    if (name.length === 0 || name.length > 128) problems.push({ field: `${at}/name`, message: 'required, at most 128 characters' });
    if (this.units.get(input.unit) === undefined) problems.push({ field: `${at}/unit`, message: `no unit ${input.unit}` });
    const children = [...new Set(input.groups ?? [])];
    const rules = dedupeRules(input.roles ?? []);
    if (children.length + rules.length > MAX_GROUP_REFS) problems.push({ field: `${at}/groups`, message: `at most ${MAX_GROUP_REFS} nested groups and role rules` });
    // A delegated admin's group reaches only its owner's subtree: nested groups owned there, role rules scoped there.
    const delegated = actor.unit !== undefined;
    const kept = new Set(before?.groups ?? []);
    children.forEach((c, i) => {
      const child = this.groups.get(c);
      if (c === input.id) problems.push({ field: `${at}/groups/${i}`, message: 'a group cannot contain itself' });
      else if (child === undefined || (delegated && !kept.has(c) && !this.isWithin(child.unit, input.unit))) problems.push({ field: `${at}/groups/${i}`, message: `no group ${c}` });
    });
    const keptRules = new Set((before?.roles ?? []).map((r) => `${r.role}\u0000${r.unit ?? ''}`));
    rules.forEach((r, i) => {
      if (!ROLE_RE.test(r.role)) problems.push({ field: `${at}/roles/${i}/role`, message: 'letters, digits, _ -' });
      if (r.unit !== undefined && (this.units.get(r.unit) === undefined || (delegated && !keptRules.has(`${r.role}\u0000${r.unit}`) && !this.isWithin(r.unit, input.unit)))) problems.push({ field: `${at}/roles/${i}/unit`, message: `no unit ${r.unit}` });
    });
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });
    // Cycle guard: no nested group may (transitively) contain this one.
    for (const c of children) {
      const path = this.pathTo(c, input.id);
      if (path !== undefined) {
        throw new GatewayError('GROUP_CYCLE', `group ${input.id} would contain itself: ${[input.id, ...path].join(' → ')}`, { details: [{ field: `${at}/groups`, message: `${[input.id, ...path].join(' → ')}` }] });
      }
    }
    const now = this.now();
    const stored = this.groups.get(input.id);
    let k = stored?.k ?? 0;
    let detail: unknown;
    if (input.members !== undefined) {
      const memberProblems: FieldProblem[] = [];
      const ids = new Set(this.resolveMembers(input.members, `${at}/members`, memberProblems, this.memberScope(actor, input.unit, before !== undefined ? input.id : undefined)));
      if (memberProblems.length > 0) throw new GatewayError('VALIDATION', memberProblems[0]?.message, { details: memberProblems.slice(0, 100) });
      if (ids.size > this.maxGroupMembers) throw new GatewayError('TOO_MANY_RECIPIENTS', `a group has at most ${this.maxGroupMembers} static members`, { details: [{ field: `${at}/members`, message: `${ids.size} members` }] });
      const added: string[] = [];
      const removed: string[] = [];
      for (const key of [...this.members.getKeys({ start: [input.id], end: [input.id, '\uffff'] })]) {
        if (ids.has(key[1])) {
          ids.delete(key[1]);
          continue;
        }
        this.members.removeSync(key);
        this.memberOf.removeSync([key[1], input.id]);
        removed.push(key[1]);
        k--;
      }
      for (const pid of ids) {
        const p = this.people.get(pid) as StoredPerson;
        this.members.putSync([input.id, pid], packMember(p.channel, p.mobile));
        this.memberOf.putSync([pid, input.id], 1);
        added.push(pid);
        k++;
      }
      detail = membershipDetail(added, removed);
    }
    for (const old of stored?.groups ?? []) if (!children.includes(old)) this.groupParents.removeSync([old, input.id]);
    for (const c of children) this.groupParents.putSync([c, input.id], 1);
    const next: StoredGroup = { name, unit: input.unit, groups: children, roles: rules, k, createdAt: stored?.createdAt ?? now, updatedAt: now };
    this.groups.putSync(input.id, next);
    return { group: groupOf(input.id, next), ...(detail !== undefined ? { detail } : {}) };
  }

  /** A path of nested groups from `from` down to `target`, or undefined (bounded DFS). */
  private pathTo(from: string, target: string): string[] | undefined {
    const seen = new Set<string>();
    const stack: Array<{ id: string; path: string[] }> = [{ id: from, path: [from] }];
    while (stack.length > 0 && seen.size < 100_000) {
      const { id, path } = stack.pop() as { id: string; path: string[] };
      if (id === target) return path;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const c of this.groups.get(id)?.groups ?? []) stack.push({ id: c, path: [...path, c] });
    }
    return undefined;
  }
}

/** One change's audit writer; sequence numbers are allocated inside the write transaction, so they are unique across processes. */
class ChangeContext {
  private seq: number | undefined;
  private bumped = false;
  constructor(
    private readonly actor: Actor,
    private readonly at: number,
    private readonly log: Database<StoredAudit, number>,
    private readonly byTarget: Database<1, [string, string, number]>,
    private readonly meta: Database<number, string>,
  ) {}

  audit(action: string, targetType: string, targetId: string, before: unknown, after: unknown, detail?: unknown): void {
    if (this.seq === undefined) {
      const last = [...this.log.getKeys({ reverse: true, limit: 1 })][0];
      this.seq = typeof last === 'number' ? last : 0;
    }
    this.seq++;
    const e: { -readonly [K in keyof StoredAudit]: StoredAudit[K] } = { at: this.at, actor: this.actor.name, action, targetType, targetId };
    if (before !== undefined) e.before = before;
    if (after !== undefined) e.after = after;
    if (detail !== undefined) e.detail = detail;
    this.log.putSync(this.seq, e);
    this.byTarget.putSync([targetType, targetId, this.seq], 1);
  }

  bump(): void {
    if (this.bumped) return;
    this.bumped = true;
    this.meta.putSync('version', (this.meta.get('version') ?? 0) + 1);
  }
}

function clampLimit(limit: number): number {
  return Math.max(1, Math.min(MAX_LIST, Math.floor(limit)));
}

function page<T>(items: T[], limit: number, cursorOf: (t: T) => string): Page<T> {
  const last = items[items.length - 1];
  return items.length >= limit && last !== undefined ? { items, next: cursorOf(last) } : { items };
}

function splitCursor(cursor: string): [string, string] {
  const i = cursor.indexOf('\u0000');
  return i < 0 ? [cursor, ''] : [cursor.slice(0, i), cursor.slice(i + 1)];
}

function keyInfo(id: string, k: StoredKey): ApiKeyInfo {
  return {
    id, unit: k.u, prefix: k.p, createdAt: k.c,
    ...(k.l !== undefined ? { label: k.l } : {}),
    ...(k.x !== undefined ? { expiresAt: k.x } : {}),
    ...(k.r !== undefined ? { revokedAt: k.r } : {}),
  };
}

function groupOf(id: string, g: StoredGroup): Group {
  return { id, name: g.name, unit: g.unit, groups: g.groups, roles: g.roles, memberCount: g.k, createdAt: g.createdAt, updatedAt: g.updatedAt };
}

function blockOf(key: [string, string], b: StoredBlock): BlockEntry {
  return { scope: key[0], number: key[1], at: b.a, by: b.b, ...(b.r !== undefined ? { reason: b.r } : {}) };
}

function strip<T extends { id: string }>(o: T): Omit<T, 'id'> {
  const { id: _id, ...rest } = o;
  return rest;
}

function setOptional<K extends 'sender' | 'extension' | 'signature'>(o: { [P in K]?: string }, k: K, v: string | null | undefined): void {
  if (v === undefined) return;
  if (v === null) delete o[k];
  else o[k] = v;
}

function checkId(id: string, field: string, re: RegExp): void {
  if (!re.test(id)) throw invalid(field, 'letters, digits, _ - (at most 64), starting with a letter or digit');
}

function dedupeRules(rules: readonly RoleRule[]): RoleRule[] {
  const seen = new Set<string>();
  const out: RoleRule[] = [];
  for (const r of rules) {
    const k = `${r.role}\u0000${r.unit ?? ''}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(r.unit !== undefined ? { role: r.role, unit: r.unit } : { role: r.role });
  }
  return out;
}

function samePerson(a: Person, b: Omit<Person, 'createdAt' | 'updatedAt'>): boolean {
  return a.name === b.name && a.mobile === b.mobile && a.unit === b.unit && a.channel === b.channel &&
    a.email === b.email && a.mailAlerts === b.mailAlerts &&
    a.roles.length === b.roles.length && a.roles.every((r, i) => b.roles[i] === r);
}

/** A stored person as the directory shows it (rows written before mail alerts existed have no mailAlerts: false). */
function personOf(id: string, p: StoredPerson): Person {
  return p.mailAlerts === undefined ? { id, ...p, mailAlerts: false } : { id, ...p };
}

/** Mail alerts go to a mail address: opting in without one is refused rather than silently doing nothing. */
function checkMailAlerts(p: Pick<Person, 'email' | 'mailAlerts'>, at: string): void {
  if (p.mailAlerts && p.email === undefined) {
    throw new GatewayError('VALIDATION', `${at}/mailAlerts: new-mail alerts need an email`, { details: [{ field: `${at}/mailAlerts`, message: 'needs an email (the address mail arrives for)' }] });
  }
}

function membershipDetail(added: readonly string[], removed: readonly string[]): Record<string, unknown> {
  return {
    added: added.length,
    removed: removed.length,
    addedIds: added.slice(0, AUDIT_ID_SAMPLE),
    removedIds: removed.slice(0, AUDIT_ID_SAMPLE),
    ...(added.length > AUDIT_ID_SAMPLE || removed.length > AUDIT_ID_SAMPLE ? { truncated: true } : {}),
  };
}

/** A row's refusal as field problems under that row. */
function rowProblems(e: GatewayError, at: string): FieldProblem[] {
  if (e.details && e.details.length > 0) return e.details.map((d) => (d.field.startsWith(at) ? d : { field: `${at}${d.field}`, message: d.message }));
  return [{ field: at, message: e.message }];
}
