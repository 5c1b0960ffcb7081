/**
 * The admin API, `/v1/admin/...`: units, API keys, grants, people, groups,
 * the block list, held messages and the audit log. Its own keys (config
 * `admin.keys`, SHA-256 digests in memory like the sending keys); a key with
 * a `unit` is a delegated admin limited to that unit's subtree. Every change
 * goes through DirectoryStore, which writes the audit entry (who, what,
 * when, before/after) in the same transaction as the change.
 *
 * Routes are one table (ADMIN_ROUTES): the server registers it and
 * /openapi.json describes it, so the two cannot drift apart.
 */
import { createHash } from 'node:crypto';
import { Type, type TSchema } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { GatewayError } from '../core/errors.js';
import type { ResolvedConfig } from '../config/load.js';
import { RouteRuleSchema, type AdminKeyConfig } from '../config/schema.js';
import { checkRules } from '../core/route.js';
import type { Metrics } from '../telemetry/metrics.js';
import { route, validBody, type BodySpec, type HttpRoute } from '../http/route.js';
import type { DirectoryStore } from '../directory/store.js';
import type { GroupExpander } from '../directory/expansion.js';
import type { QuotaLedger } from '../directory/quota.js';
import type { HeldMessages, Readmit } from '../directory/held.js';
import { effectiveGrants, effectiveSignature } from '../directory/grants.js';
import { exportGroups, exportPeople, importGroups, importPeople, parseEncoding } from '../directory/csv-import.js';
import { ID_PATTERN, PERSON_ID_PATTERN, ROLE_PATTERN, type Actor, type Group, type Unit } from '../directory/types.js';
import { unpackChannel } from '../directory/store.js';
import type { CallbackSecrets } from '../outbound/secrets.js';

export interface AdminDeps {
  readonly config: ResolvedConfig;
  readonly directory: DirectoryStore;
  readonly expander: GroupExpander;
  readonly quotas: QuotaLedger;
  readonly held: HeldMessages;
  /** Admission again for a held message being released (the send service's readmit). */
  readonly readmit: Readmit;
  /** Units' callback signing secrets (src/outbound/secrets.ts); absent: the fields are refused. */
  readonly callbackSecrets?: CallbackSecrets;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** This process's router (dispatch roles): the rules in force and each account's state and share. */
  readonly routing?: { accounts(): unknown[]; rules(): unknown };
}

// ------------------------------------------------------------------ schemas

const Id = Type.String({ pattern: ID_PATTERN, description: 'letters, digits, _ - ; at most 64' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const GrantsSchema = Type.Object({
  tiers: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 64, description: 'tier names, or ["*"]: whatever the parent allows' })),
  groups: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 10_000, description: 'group ids, or ["*"]' })),
  direct: Type.Optional(Type.Boolean({ description: 'may send to explicit numbers (`to`)' })),
  workflow: Type.Optional(Type.Boolean({ description: "may send workflow-event SMS to the event's applicant numbers; absent: the same as this unit's `direct`" })),
  police: Type.Optional(Type.Boolean({ description: 'may send messages classified police' })),
  dailyQuota: Type.Optional(Nullable(Type.Integer({ minimum: 0, description: 'recipients per day for this unit and its sub-units together; null: none at this level' }))),
  perMinuteQuota: Type.Optional(Nullable(Type.Integer({ minimum: 0, description: 'recipients per minute (per gateway process)' }))),
  dailyPartsQuota: Type.Optional(Nullable(Type.Integer({ minimum: 0, description: 'SMS parts per day (recipients × parts per recipient: the 202 totalSegments) for this unit and its sub-units together, counted beside dailyQuota; null: none at this level' }))),
}, { additionalProperties: false });

export const UnitCreateSchema = Type.Object({
  id: Id,
  name: Type.String({ minLength: 1, maxLength: 128 }),
  parent: Type.Optional(Id),
  sender: Type.Optional(Type.String({ pattern: '^[0-9]{1,20}$', description: 'full source address' })),
  extension: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$', description: "digits appended to the parent's sender" })),
  signature: Type.Optional(Type.String({ maxLength: 32, description: 'appended to every message, e.g. 【市政府办公厅】' })),
  grants: Type.Optional(GrantsSchema),
  disabled: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

export const UnitPatchSchema = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  parent: Type.Optional(Nullable(Id)),
  sender: Type.Optional(Nullable(Type.String({ pattern: '^[0-9]{1,20}$' }))),
  extension: Type.Optional(Nullable(Type.String({ pattern: '^[0-9]{1,6}$' }))),
  signature: Type.Optional(Nullable(Type.String({ maxLength: 32 }))),
  grants: Type.Optional(GrantsSchema),
  disabled: Type.Optional(Type.Boolean()),
  callbackSecret: Type.Optional(Nullable(Type.String({ minLength: 32, maxLength: 256, description: "the unit's new callback signing secret (write-only); the old one stays valid as previous until callbackSecretPrevious: null; null: no admin-set secret" }))),
  callbackSecretPrevious: Type.Optional(Type.Null({ description: 'null: the rotation is over, only the current secret is valid' })),
}, { additionalProperties: false });

export const KeyCreateSchema = Type.Object({
  label: Type.Optional(Type.String({ maxLength: 64 })),
  expiresAt: Type.Optional(Type.String({ maxLength: 40, description: 'RFC 3339 time; absent: no expiry' })),
}, { additionalProperties: false });

export const PersonSchema = Type.Object({
  id: Type.Optional(Type.String({ pattern: PERSON_ID_PATTERN })),
  name: Type.String({ minLength: 1, maxLength: 128 }),
  mobile: Type.String({ minLength: 1, maxLength: 40 }),
  unit: Id,
  roles: Type.Optional(Type.Array(Type.String({ pattern: ROLE_PATTERN }), { maxItems: 32 })),
  channel: Type.Optional(Type.Union([Type.Literal('sms'), Type.Literal('pda'), Type.Literal('both')])),
  email: Type.Optional(Nullable(Type.String({ maxLength: 254, description: 'mail address (stored lower-case, unique): new-mail alerts find the person by it; absent or null: none' }))),
  mailAlerts: Type.Optional(Type.Boolean({ description: 'SMS alerts for new mail (opt-in, default false; needs email)' })),
}, { additionalProperties: false });

export const GroupSchema = Type.Object({
  id: Type.Optional(Id),
  name: Type.String({ minLength: 1, maxLength: 128 }),
  unit: Id,
  groups: Type.Optional(Type.Array(Id, { maxItems: 256, description: 'nested groups' })),
  roles: Type.Optional(Type.Array(Type.Object({ role: Type.String({ pattern: ROLE_PATTERN }), unit: Type.Optional(Id) }, { additionalProperties: false }), { maxItems: 256, description: 'dynamic members: everyone with the role (in the unit\'s subtree)' })),
  members: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 10_000, description: 'static members (person ids or mobile numbers); replaces the list. More: CSV import' })),
}, { additionalProperties: false });

export const MembersChangeSchema = Type.Object({
  add: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 10_000 })),
  remove: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 10_000 })),
}, { additionalProperties: false });

export const BlockSchema = Type.Object({
  scope: Type.Optional(Type.String({ pattern: `^(\\*|${ID_PATTERN.slice(1, -1)})$`, description: '* (every unit, default) or a unit id (it and its sub-units)' })),
  number: Type.String({ minLength: 1, maxLength: 40 }),
  reason: Type.Optional(Type.String({ maxLength: 200 })),
}, { additionalProperties: false });

export const RoutingRulesSchema = Type.Object({
  rules: Nullable(Type.Array(RouteRuleSchema, { maxItems: 1000, description: 'ordered rules, tried before the per-operator defaults; null: back to the configuration\'s routing.rules' })),
}, { additionalProperties: false });

export const RejectSchema = Type.Object({ reason: Type.String({ minLength: 1, maxLength: 500 }) }, { additionalProperties: false });

export const adminSchemasForOpenApi: Record<string, TSchema> = {
  Grants: GrantsSchema,
  UnitCreate: UnitCreateSchema,
  UnitPatch: UnitPatchSchema,
  KeyCreate: KeyCreateSchema,
  Person: PersonSchema,
  Group: GroupSchema,
  MembersChange: MembersChangeSchema,
  Block: BlockSchema,
  Reject: RejectSchema,
  RoutingRules: RoutingRulesSchema,
};

/** The body, validated against the route's schema by the mount already (see toHttpRoute): typed, not checked again. */
const check = validBody;

// -------------------------------------------------------------------- auth

export class AdminKeyRing {
  private readonly byDigest = new Map<string, Actor>();

  constructor(keys: readonly AdminKeyConfig[]) {
    for (const k of keys) this.byDigest.set(digest(k.key), { name: k.name, ...(k.unit !== undefined ? { unit: k.unit } : {}) });
  }

  get size(): number {
    return this.byDigest.size;
  }

  authenticate(header: string): Actor {
    if (this.byDigest.size === 0) throw new GatewayError('UNAUTHORIZED', 'the admin API has no keys configured (admin.keys)');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m || m[1] === undefined) throw new GatewayError('UNAUTHORIZED', 'missing Authorization: Bearer <admin key>');
    const actor = this.byDigest.get(digest(m[1]));
    if (!actor) throw new GatewayError('UNAUTHORIZED', 'unknown admin key');
    return actor;
  }
}

function digest(key: string): string {
  return createHash('sha256').update(key).digest('base64');
}

// ------------------------------------------------------------------ routes

type Method = 'get' | 'post' | 'put' | 'patch' | 'del';

interface Ctx {
  readonly actor: Actor;
  readonly params: readonly string[];
  readonly query: URLSearchParams;
  readonly json: unknown;
  readonly raw: Buffer | undefined;
  readonly deps: AdminDeps;
}

/** A reply: JSON (200 unless `status`), or a CSV file. */
type Reply = { status?: number; body: unknown } | { csv: string; filename: string };

interface AdminRoute {
  readonly method: Method;
  /** uWS pattern, `:name` for parameters. */
  readonly path: string;
  readonly summary: string;
  readonly body?: { readonly kind: 'json'; readonly schema: string } | { readonly kind: 'csv' };
  readonly query?: readonly string[];
  readonly ok: number;
  readonly handle: (ctx: Ctx) => Reply | Promise<Reply>;
}

const MAX_LIMIT = 1000;

function limitOf(q: URLSearchParams, fallback = 100): number {
  const raw = q.get('limit');
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT) throw new GatewayError('VALIDATION', `limit: an integer from 1 to ${MAX_LIMIT}`, { details: [{ field: 'limit', message: `an integer from 1 to ${MAX_LIMIT}` }] });
  return n;
}

function opt(q: URLSearchParams, name: string): string | undefined {
  const v = q.get(name);
  return v === null || v === '' ? undefined : v;
}

function timeParam(q: URLSearchParams, name: string): number | undefined {
  const v = opt(q, name);
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new GatewayError('VALIDATION', `${name}: an RFC 3339 time`, { details: [{ field: name, message: 'an RFC 3339 time, e.g. 2026-05-01T00:00:00+08:00' }] });
  return t;
}

const p = (ctx: Ctx, i: number): string => ctx.params[i] as string;

function unitView(deps: AdminDeps, unit: Unit): Record<string, unknown> {
  const chain = deps.directory.unitChain(unit.id) ?? [unit];
  const g = effectiveGrants(chain);
  return {
    ...unit,
    effective: {
      sender: deps.directory.senderOf(chain),
      signature: effectiveSignature(chain) ?? null,
      tiers: g.tiers === null ? ['*'] : [...g.tiers],
      groups: g.groups === null ? ['*'] : [...g.groups],
      direct: g.direct,
      workflow: g.workflow,
      police: g.police,
      quotas: g.quotas,
      disabledBy: g.disabledBy ?? null,
    },
    usage: deps.quotas.usage(unit.id),
    ...(deps.callbackSecrets ? { callbackSecret: deps.callbackSecrets.view(unit.id) } : {}),
  };
}

/** The callback-secret fields of a unit patch (kept apart from the directory's own fields). */
async function applyCallbackSecret(deps: AdminDeps, actor: Actor, unit: string, b: { callbackSecret?: string | null; callbackSecretPrevious?: null }): Promise<void> {
  if (b.callbackSecret === undefined && b.callbackSecretPrevious === undefined) return;
  const secrets = deps.callbackSecrets;
  if (!secrets) throw new GatewayError('VALIDATION', 'callback secrets are not kept by this process', { details: [{ field: '/callbackSecret', message: 'not available here' }] });
  // Kept by the directory: replicated to the other hosts, audited without the secret.
  const fallback = secrets.configSecret(unit);
  await deps.directory.setCallbackSecret(actor, unit, {
    ...(b.callbackSecret !== undefined ? { secret: b.callbackSecret } : {}),
    ...(b.callbackSecretPrevious === null ? { dropPrevious: true } : {}),
  }, fallback);
}

/** True when the actor may see rows of `unit`: a global admin always, a delegated one inside its subtree. */
function inScope(ctx: Ctx, unit: string): boolean {
  return ctx.actor.unit === undefined || ctx.deps.directory.isWithin(unit, ctx.actor.unit);
}

/**
 * A record named in the path (`what` `id`, owned by `unit`) that the actor
 * may not see answers exactly like one that does not exist: 404, same text.
 */
function scoped(ctx: Ctx, unit: string, what: string, id: string): void {
  if (!inScope(ctx, unit)) throw new GatewayError('NOT_FOUND', `no ${what} ${id}`);
}

/** A unit named in a query filter: outside the subtree, the list is empty, as for a unit that does not exist. */
function filterInScope(ctx: Ctx, unit: string | undefined): boolean {
  return unit === undefined || inScope(ctx, unit);
}

/** A group as the actor may see it: for a delegated admin, nested groups and role scopes of its subtree only (the others counted in `hidden`). */
function groupView(ctx: Ctx, g: Group): Group | (Group & { hidden: { groups: number; roles: number } }) {
  if (ctx.actor.unit === undefined) return g;
  const groups = g.groups.filter((id) => {
    const x = ctx.deps.directory.getGroup(id);
    return x !== undefined && inScope(ctx, x.unit);
  });
  const roles = g.roles.filter((r) => r.unit === undefined || inScope(ctx, r.unit));
  return { ...g, groups, roles, hidden: { groups: g.groups.length - groups.length, roles: g.roles.length - roles.length } };
}

function rootOnly(ctx: Ctx, what: string): void {
  if (ctx.actor.unit !== undefined) throw new GatewayError('FORBIDDEN', `only a global admin may ${what}`);
}

function mustUnit(ctx: Ctx, id: string): Unit {
  const u = ctx.deps.directory.getUnit(id);
  if (u === undefined) throw new GatewayError('NOT_FOUND', `no unit ${id}`);
  scoped(ctx, id, 'unit', id);
  return u;
}

export const ADMIN_ROUTES: readonly AdminRoute[] = [
  // ---- units and grants
  {
    method: 'get', path: '/v1/admin/units', summary: 'List units (all, or the children of `parent`)', query: ['parent', 'cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      const page = ctx.deps.directory.listUnits({ limit: limitOf(ctx.query), ...defined({ parent: opt(ctx.query, 'parent'), cursor: opt(ctx.query, 'cursor') }) });
      const items = ctx.actor.unit !== undefined ? page.items.filter((u) => ctx.deps.directory.isWithin(u.id, ctx.actor.unit as string)) : page.items;
      return { body: { items, ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  },
  {
    method: 'post', path: '/v1/admin/units', summary: 'Create a unit (grants default to nothing)', body: { kind: 'json', schema: 'UnitCreate' }, ok: 201,
    handle: async (ctx) => {
      const b = check(UnitCreateSchema, ctx.json);
      return { status: 201, body: unitView(ctx.deps, await ctx.deps.directory.createUnit(ctx.actor, b)) };
    },
  },
  {
    method: 'get', path: '/v1/admin/deleted-units', summary: 'Deleted units (global admins): their ids are never reused; their tenant data stays archived under the id', query: ['cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      rootOnly(ctx, 'read deleted units');
      return { body: ctx.deps.directory.listTombstones({ limit: limitOf(ctx.query), ...defined({ cursor: opt(ctx.query, 'cursor') }) }) };
    },
  },
  {
    method: 'get', path: '/v1/admin/units/:id', summary: 'A unit with its effective grants (intersection with its parents), sender, signature and quota usage', ok: 200,
    handle: (ctx) => ({ body: unitView(ctx.deps, mustUnit(ctx, p(ctx, 0))) }),
  },
  {
    method: 'patch', path: '/v1/admin/units/:id', summary: 'Change a unit (null clears a field); narrowing its grants narrows its sub-units at once', body: { kind: 'json', schema: 'UnitPatch' }, ok: 200,
    handle: async (ctx) => {
      const { callbackSecret, callbackSecretPrevious, ...b } = check(UnitPatchSchema, ctx.json);
      const unit = await ctx.deps.directory.updateUnit(ctx.actor, p(ctx, 0), b);
      await applyCallbackSecret(ctx.deps, ctx.actor, unit.id, { ...(callbackSecret !== undefined ? { callbackSecret } : {}), ...(callbackSecretPrevious !== undefined ? { callbackSecretPrevious } : {}) });
      return { body: unitView(ctx.deps, unit) };
    },
  },
  {
    method: 'del', path: '/v1/admin/units/:id', summary: 'Delete a unit with no sub-units, people, groups or live keys', ok: 204,
    handle: async (ctx) => {
      await ctx.deps.directory.deleteUnit(ctx.actor, p(ctx, 0));
      return { status: 204, body: undefined };
    },
  },
  {
    method: 'get', path: '/v1/admin/units/:id/grants', summary: "A unit's own and effective grants", ok: 200,
    handle: (ctx) => {
      const v = unitView(ctx.deps, mustUnit(ctx, p(ctx, 0)));
      return { body: { unit: v['id'], grants: v['grants'], effective: v['effective'] } };
    },
  },
  {
    method: 'put', path: '/v1/admin/units/:id/grants', summary: "Replace a unit's grants (fields left out: nothing granted)", body: { kind: 'json', schema: 'Grants' }, ok: 200,
    handle: async (ctx) => {
      const b = check(GrantsSchema, ctx.json);
      const u = await ctx.deps.directory.setGrants(ctx.actor, p(ctx, 0), b);
      const v = unitView(ctx.deps, u);
      return { body: { unit: u.id, grants: u.grants, effective: v['effective'] } };
    },
  },
  // ---- API keys
  {
    method: 'get', path: '/v1/admin/units/:id/keys', summary: "A unit's API keys (never the keys themselves)", ok: 200,
    handle: (ctx) => {
      mustUnit(ctx, p(ctx, 0));
      return { body: { items: ctx.deps.directory.listKeys(p(ctx, 0)) } };
    },
  },
  {
    method: 'post', path: '/v1/admin/units/:id/keys', summary: 'Issue an API key; the key is in this answer only (stored as SHA-256)', body: { kind: 'json', schema: 'KeyCreate' }, ok: 201,
    handle: async (ctx) => {
      const b = check(KeyCreateSchema, ctx.json ?? {});
      const expiresAt = b.expiresAt !== undefined ? Date.parse(b.expiresAt) : undefined;
      if (expiresAt !== undefined && Number.isNaN(expiresAt)) throw new GatewayError('VALIDATION', 'expiresAt: an RFC 3339 time', { details: [{ field: '/expiresAt', message: 'an RFC 3339 time' }] });
      const r = await ctx.deps.directory.createKey(ctx.actor, p(ctx, 0), defined({ label: b.label, expiresAt }));
      return { status: 201, body: { key: r.key, ...r.info } };
    },
  },
  {
    method: 'del', path: '/v1/admin/keys/:id', summary: 'Revoke an API key (refused from then on with KEY_REVOKED)', ok: 200,
    handle: async (ctx) => ({ body: await ctx.deps.directory.revokeKey(ctx.actor, p(ctx, 0)) }),
  },
  // ---- people
  {
    method: 'get', path: '/v1/admin/people', summary: 'List people (by unit and/or role)', query: ['unit', 'role', 'cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      const unit = opt(ctx.query, 'unit') ?? ctx.actor.unit;
      if (!filterInScope(ctx, unit)) return { body: { items: [] } };
      const page = ctx.deps.directory.listPeople({ limit: limitOf(ctx.query), ...defined({ unit, role: opt(ctx.query, 'role'), cursor: opt(ctx.query, 'cursor') }) });
      return { body: page };
    },
  },
  {
    method: 'post', path: '/v1/admin/people', summary: 'Create a person (409 if the id or the number exists)', body: { kind: 'json', schema: 'Person' }, ok: 201,
    handle: async (ctx) => ({ status: 201, body: await ctx.deps.directory.putPerson(ctx.actor, check(PersonSchema, ctx.json), 'create') }),
  },
  {
    method: 'post', path: '/v1/admin/people/import', summary: 'Import people from CSV (all or nothing; per-row report); ?encoding=utf-8|gbk', body: { kind: 'csv' }, query: ['encoding'], ok: 200,
    handle: async (ctx) => ({
      body: await importPeople(ctx.deps.directory, ctx.actor, ctx.raw ?? Buffer.alloc(0), parseEncoding(ctx.query.get('encoding')), { allowInternational: ctx.deps.config.numbers.allowInternational }),
    }),
  },
  {
    method: 'get', path: '/v1/admin/people/export', summary: 'People as CSV (the import format)', ok: 200,
    handle: (ctx) => ({ csv: exportPeople(ctx.deps.directory, ctx.actor), filename: 'people.csv' }),
  },
  {
    method: 'get', path: '/v1/admin/people/:id', summary: 'A person and the groups they are a static member of', ok: 200,
    handle: (ctx) => {
      const person = ctx.deps.directory.getPerson(p(ctx, 0));
      if (person === undefined) throw new GatewayError('NOT_FOUND', `no person ${p(ctx, 0)}`);
      scoped(ctx, person.unit, 'person', p(ctx, 0));
      // Groups of other subtrees are not the delegated admin's to see.
      const groups = ctx.deps.directory.groupsOf(person.id).filter((id) => {
        const g = ctx.deps.directory.getGroup(id);
        return g !== undefined && inScope(ctx, g.unit);
      });
      return { body: { ...person, groups } };
    },
  },
  {
    method: 'put', path: '/v1/admin/people/:id', summary: 'Create or replace a person', body: { kind: 'json', schema: 'Person' }, ok: 200,
    handle: async (ctx) => {
      const b = check(PersonSchema, ctx.json);
      if (b.id !== undefined && b.id !== p(ctx, 0)) throw new GatewayError('VALIDATION', 'id differs from the path', { details: [{ field: '/id', message: 'must equal the id in the path' }] });
      return { body: await ctx.deps.directory.putPerson(ctx.actor, { ...b, id: p(ctx, 0) }, 'upsert') };
    },
  },
  {
    method: 'del', path: '/v1/admin/people/:id', summary: 'Delete a person (and their group memberships)', ok: 204,
    handle: async (ctx) => {
      await ctx.deps.directory.deletePerson(ctx.actor, p(ctx, 0));
      return { status: 204, body: undefined };
    },
  },
  // ---- groups
  {
    method: 'get', path: '/v1/admin/groups', summary: 'List groups (of a unit)', query: ['unit', 'cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      const unit = opt(ctx.query, 'unit');
      if (!filterInScope(ctx, unit)) return { body: { items: [] } };
      const page = ctx.deps.directory.listGroups({ limit: limitOf(ctx.query), ...defined({ unit, cursor: opt(ctx.query, 'cursor') }) });
      const items = ctx.actor.unit !== undefined ? page.items.filter((g) => ctx.deps.directory.isWithin(g.unit, ctx.actor.unit as string)).map((g) => groupView(ctx, g)) : page.items;
      return { body: { items, ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  },
  {
    method: 'post', path: '/v1/admin/groups', summary: 'Create a group (static members, nested groups, role rules)', body: { kind: 'json', schema: 'Group' }, ok: 201,
    handle: async (ctx) => {
      const b = check(GroupSchema, ctx.json);
      if (b.id === undefined) throw new GatewayError('VALIDATION', 'id is required', { details: [{ field: '/id', message: 'required' }] });
      return { status: 201, body: await ctx.deps.directory.putGroup(ctx.actor, { ...b, id: b.id }, 'create') };
    },
  },
  {
    method: 'post', path: '/v1/admin/groups/import', summary: 'Import groups from CSV (each named group replaced; all or nothing)', body: { kind: 'csv' }, query: ['encoding'], ok: 200,
    handle: async (ctx) => ({ body: await importGroups(ctx.deps.directory, ctx.actor, ctx.raw ?? Buffer.alloc(0), parseEncoding(ctx.query.get('encoding'))) }),
  },
  {
    method: 'get', path: '/v1/admin/groups/export', summary: 'Groups as CSV (the import format)', ok: 200,
    handle: (ctx) => ({ csv: exportGroups(ctx.deps.directory, ctx.actor), filename: 'groups.csv' }),
  },
  {
    method: 'get', path: '/v1/admin/groups/:id', summary: 'A group definition and its static member count', ok: 200,
    handle: (ctx) => {
      const g = ctx.deps.directory.getGroup(p(ctx, 0));
      if (g === undefined) throw new GatewayError('NOT_FOUND', `no group ${p(ctx, 0)}`);
      scoped(ctx, g.unit, 'group', p(ctx, 0));
      return { body: groupView(ctx, g) };
    },
  },
  {
    method: 'put', path: '/v1/admin/groups/:id', summary: 'Create or replace a group (members replaced only when given)', body: { kind: 'json', schema: 'Group' }, ok: 200,
    handle: async (ctx) => {
      const b = check(GroupSchema, ctx.json);
      if (b.id !== undefined && b.id !== p(ctx, 0)) throw new GatewayError('VALIDATION', 'id differs from the path', { details: [{ field: '/id', message: 'must equal the id in the path' }] });
      return { body: await ctx.deps.directory.putGroup(ctx.actor, { ...b, id: p(ctx, 0) }, 'upsert') };
    },
  },
  {
    method: 'del', path: '/v1/admin/groups/:id', summary: 'Delete a group not nested in another', ok: 204,
    handle: async (ctx) => {
      await ctx.deps.directory.deleteGroup(ctx.actor, p(ctx, 0));
      return { status: 204, body: undefined };
    },
  },
  {
    method: 'get', path: '/v1/admin/groups/:id/members', summary: 'Static members (paged by person id)', query: ['cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      const g = ctx.deps.directory.getGroup(p(ctx, 0));
      if (g === undefined) throw new GatewayError('NOT_FOUND', `no group ${p(ctx, 0)}`);
      scoped(ctx, g.unit, 'group', p(ctx, 0));
      const page = ctx.deps.directory.listMembers(g.id, { limit: limitOf(ctx.query), ...defined({ cursor: opt(ctx.query, 'cursor') }) });
      if (ctx.actor.unit === undefined) return { body: page };
      // A delegated admin sees the members of its subtree; others (a global admin put them there) are counted, not shown.
      const items = page.items.filter((m) => {
        const person = ctx.deps.directory.getPerson(m.id);
        return person !== undefined && inScope(ctx, person.unit);
      });
      return { body: { items, hidden: page.items.length - items.length, ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  },
  {
    method: 'post', path: '/v1/admin/groups/:id/members', summary: 'Add and remove static members (person ids or numbers)', body: { kind: 'json', schema: 'MembersChange' }, ok: 200,
    handle: async (ctx) => ({ body: await ctx.deps.directory.changeMembers(ctx.actor, p(ctx, 0), check(MembersChangeSchema, ctx.json)) }),
  },
  {
    method: 'get', path: '/v1/admin/groups/:id/expansion', summary: 'What a send to the group reaches now: distinct member count and the first `limit` members', query: ['limit'], ok: 200,
    handle: async (ctx) => {
      const g = ctx.deps.directory.getGroup(p(ctx, 0));
      if (g === undefined) throw new GatewayError('NOT_FOUND', `no group ${p(ctx, 0)}`);
      scoped(ctx, g.unit, 'group', p(ctx, 0));
      const limit = limitOf(ctx.query);
      const members: { id: string; mobile: string; channel: string }[] = [];
      let hidden = 0;
      const r = await ctx.deps.expander.expand(g.id, (id, packed) => {
        if (members.length >= limit) return;
        // A delegated admin is shown only people of its subtree (a global admin may have nested others' groups).
        if (ctx.actor.unit !== undefined) {
          const person = ctx.deps.directory.getPerson(id);
          if (person === undefined || !inScope(ctx, person.unit)) {
            hidden++;
            return;
          }
        }
        members.push({ id, mobile: packed.slice(1), channel: unpackChannel(packed) });
      });
      const groups = r.groups.filter((id) => {
        const x = ctx.deps.directory.getGroup(id);
        return x !== undefined && inScope(ctx, x.unit);
      });
      return { body: { group: g.id, count: r.count, groups, missing: r.missing, members, ...(ctx.actor.unit !== undefined ? { hidden } : {}) } };
    },
  },
  // ---- block list
  {
    method: 'get', path: '/v1/admin/blocks', summary: 'The block / opt-out list', query: ['scope', 'cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      const scope = opt(ctx.query, 'scope') ?? ctx.actor.unit;
      // A delegated admin reads its subtree's lists only: not the global one (scope *, or every scope at once), not a sibling's.
      if (ctx.actor.unit !== undefined && (scope === undefined || scope === '*')) rootOnly(ctx, 'read the global block list');
      if (scope !== undefined && scope !== '*' && !filterInScope(ctx, scope)) return { body: { items: [] } };
      return { body: ctx.deps.directory.listBlocks({ limit: limitOf(ctx.query), ...defined({ scope, cursor: opt(ctx.query, 'cursor') }) }) };
    },
  },
  {
    method: 'post', path: '/v1/admin/blocks', summary: 'Block a number for every unit (*) or for a unit and its sub-units', body: { kind: 'json', schema: 'Block' }, ok: 201,
    handle: async (ctx) => {
      const b = check(BlockSchema, ctx.json);
      return { status: 201, body: await ctx.deps.directory.block(ctx.actor, { scope: b.scope ?? '*', number: b.number, ...defined({ reason: b.reason }) }) };
    },
  },
  {
    method: 'del', path: '/v1/admin/blocks/:scope/:number', summary: 'Remove a block-list entry', ok: 204,
    handle: async (ctx) => {
      await ctx.deps.directory.unblock(ctx.actor, { scope: p(ctx, 0), number: p(ctx, 1) });
      return { status: 204, body: undefined };
    },
  },
  // ---- held messages
  {
    method: 'get', path: '/v1/admin/held', summary: 'Messages held for review (sensitive word, content.onMatch hold), with their text', query: ['cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      const unit = ctx.actor.unit;
      // A delegated admin's subtree is applied while paging: its pages are full, nothing foreign shows.
      const keep = unit !== undefined ? (h: { tenant: string }): boolean => ctx.deps.directory.isWithin(h.tenant, unit) : undefined;
      const page = ctx.deps.held.list({ limit: limitOf(ctx.query), ...defined({ cursor: opt(ctx.query, 'cursor'), keep }) });
      return { body: { items: page.items, ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  },
  {
    method: 'post', path: '/v1/admin/held/:id/release', summary: 'Release a held message: admitted again now (grants, content rules, quota; refused: it stays held), then sent as accepted', ok: 200,
    handle: async (ctx) => ({ body: await ctx.deps.held.release(ctx.actor, p(ctx, 0), ctx.deps.readmit) }),
  },
  {
    method: 'post', path: '/v1/admin/held/:id/reject', summary: 'Reject a held message: every recipient ends rejected with the reason', body: { kind: 'json', schema: 'Reject' }, ok: 200,
    handle: async (ctx) => ({ body: await ctx.deps.held.reject(ctx.actor, p(ctx, 0), check(RejectSchema, ctx.json).reason) }),
  },
  // ---- routing
  {
    method: 'get', path: '/v1/admin/routing', summary: 'Routing rules: stored (admin API) or configured, the per-operator defaults, and (in a dispatch process) each account\'s state and share', ok: 200,
    handle: (ctx) => {
      rootOnly(ctx, 'read the routing rules');
      const stored = ctx.deps.directory.getRoutingTable();
      return {
        body: {
          stored: stored ?? null,
          configured: ctx.deps.config.routing.rules,
          ...(ctx.deps.routing ? { inForce: ctx.deps.routing.rules(), accounts: ctx.deps.routing.accounts() } : {}),
        },
      };
    },
  },
  {
    method: 'put', path: '/v1/admin/routing', summary: 'Replace the routing rules without a restart (global admin; audited); every dispatcher applies them within a second', body: { kind: 'json', schema: 'RoutingRules' }, ok: 200,
    handle: async (ctx) => {
      const b = check(RoutingRulesSchema, ctx.json);
      if (b.rules !== null) {
        const accounts = ctx.deps.config.smpp.accounts.length > 0 ? ctx.deps.config.smpp.accounts.map((a) => a.name) : ['sim'];
        const problems = checkRules(b.rules, { accounts: new Set(accounts), tiers: new Set(ctx.deps.config.tierList.map((t) => t.name)) });
        if (problems.length > 0) {
          throw new GatewayError('VALIDATION', `rules: ${problems.map((q) => `${q.field}: ${q.message}`).join('; ')}`, { details: problems.map((q) => ({ field: `/rules${q.field}`, message: q.message })) });
        }
      }
      return { body: await ctx.deps.directory.setRoutingTable(ctx.actor, b.rules) };
    },
  },
  // ---- audit
  {
    method: 'get', path: '/v1/admin/audit', summary: 'The audit log, newest first (filters combine; `action` matches a prefix like unit or unit.update)',
    query: ['actor', 'action', 'targetType', 'targetId', 'from', 'to', 'cursor', 'limit'], ok: 200,
    handle: (ctx) => {
      const cursorRaw = opt(ctx.query, 'cursor');
      const cursor = cursorRaw === undefined ? undefined : Number(cursorRaw);
      if (cursor !== undefined && (!Number.isInteger(cursor) || cursor < 0)) throw new GatewayError('VALIDATION', 'cursor: the `next` of the previous page', { details: [{ field: 'cursor', message: 'a non-negative integer' }] });
      // A delegated admin sees only what it did itself.
      const actor = ctx.actor.unit !== undefined ? ctx.actor.name : opt(ctx.query, 'actor');
      return {
        body: ctx.deps.directory.queryAudit({
          limit: limitOf(ctx.query),
          ...defined({ actor, action: opt(ctx.query, 'action'), targetType: opt(ctx.query, 'targetType'), targetId: opt(ctx.query, 'targetId'), from: timeParam(ctx.query, 'from'), to: timeParam(ctx.query, 'to'), cursor }),
        }),
      };
    },
  },
];

/** The admin part's table in the route table's form: realm admin, write unless GET, bodies validated by the mount. */
export const ADMIN_HTTP_ROUTES: readonly HttpRoute<AdminDeps>[] = ADMIN_ROUTES.map(toHttpRoute);

function toHttpRoute(r: AdminRoute): HttpRoute<AdminDeps> {
  const method = r.method === 'del' ? 'DELETE' : (r.method.toUpperCase() as 'GET' | 'POST' | 'PUT' | 'PATCH');
  const path = r.path.replace(/:(\w+)/g, '{$1}');
  const body: BodySpec | undefined = r.body?.kind === 'json'
    ? {
        kind: 'json', name: r.body.schema, schema: adminSchemasForOpenApi[r.body.schema] as TSchema,
        // Issuing a key needs no fields: an empty body is an empty object there, an error elsewhere.
        ...(r.path.endsWith('/keys') ? { emptyAs: {} } : {}),
      }
    : r.body?.kind === 'csv' ? { kind: 'csv', limit: 'import', description: 'UTF-8 or GB18030 CSV (charset= in the content type, or ?encoding=)' } : undefined;
  return route<AdminDeps, 'admin'>({
    method, path, realm: 'admin', tags: ['admin'], summary: r.summary, write: method !== 'GET',
    ...(body !== undefined ? { body } : {}),
    query: (r.query ?? []).map((q) => ({ name: q, schema: q === 'limit' ? { type: 'integer', minimum: 1, maximum: MAX_LIMIT } : { type: 'string' } })),
    responses: {
      [String(r.ok)]: r.ok === 204 ? 'done' : 'ok',
      '403': 'FORBIDDEN: outside a delegated admin\'s subtree',
      '404': 'NOT_FOUND',
      '409': 'ALREADY_EXISTS or IN_USE',
      '422': 'VALIDATION, BAD_NUMBER, GROUP_CYCLE or IMPORT_INVALID (details per field / row)',
    },
    handle: async ({ deps, actor, params, query, json, raw, contentType }) => {
      if (r.body?.kind === 'csv') {
        const charset = /charset=([\w-]+)/i.exec(contentType)?.[1];
        if (charset !== undefined && !query.has('encoding')) query.set('encoding', charset);
      }
      const reply = await r.handle({ actor, params, query, json, raw, deps });
      if ('csv' in reply) return { status: 200, text: reply.csv, contentType: 'text/csv; charset=utf-8', headers: { 'content-disposition': `attachment; filename="${reply.filename}"` } };
      const status = reply.status ?? 200;
      return status === 204 ? { status: 204 } : { status, body: isoTimes(reply.body) };
    },
  });
}

/** Epoch-ms fields named …At (and `at`) as RFC 3339 strings, at any depth. */
export function isoTimes(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(isoTimes);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      out[k] = (k === 'at' || k.endsWith('At')) && typeof x === 'number' ? new Date(x).toISOString() : isoTimes(x);
    }
    return out;
  }
  return v;
}

function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}
