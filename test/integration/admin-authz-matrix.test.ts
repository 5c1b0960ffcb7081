/**
 * The authorization matrix, generated: EVERY admin route of the route table
 * (realm `admin`, from src/http's allRoutes) × actor (global admin, delegated
 * admin of A, of A's child A1, of A's sibling B) × targets owned by each unit
 * of the tree (so inside and outside every actor's subtree) and one that does
 * not exist — reads, in-subtree writes, creates and imports included.
 *
 * Each route has a target description in SPECS below; a route of the table
 * without one fails the test (and a description of a route that no longer
 * exists fails it too), so a route added later joins the matrix by
 * construction. Expected outcomes come from the reference model of
 * docs/DIRECTORY.md ("The authorization model"):
 *
 *   visible(actor, owner) = actor is global, or owner lies in actor's subtree
 *   global-only routes    global admin: as a visible target; delegated: 403 FORBIDDEN for every target alike
 *   a visible target      2xx (reads and writes)
 *   a target not visible  the same status and error code as a target that does not exist, never 2xx
 *                         (upserts of an id held outside: refused — ids are one namespace)
 *   lists                 global admin 200; delegated 200 (403 where global-only); a body never shows a
 *                         row of a unit not visible; a filter naming a unit outside answers as one naming
 *                         no unit at all
 */
import t from 'tap';
import { allRoutes } from '../../src/http/openapi.js';
import { startTestGateway } from '../support/gateway.js';
import { mobileAt } from '../support/directory.js';

const KEYS = {
  root: 'matrix-root-admin-key-0123456789',
  A: 'matrix-admin-a-key-0123456789abc',
  A1: 'matrix-admin-a1-key-0123456789ab',
  B: 'matrix-admin-b-key-0123456789abc',
} as const;
type ActorName = keyof typeof KEYS;
const ACTORS = Object.keys(KEYS) as ActorName[];
const ACTOR_UNIT: Record<ActorName, string | undefined> = { root: undefined, A: 'zz-a', A1: 'zz-a1', B: 'zz-b' };

// The tree: zz-city ─┬─ zz-a ── zz-a1
//                    └─ zz-b
// and under each unit u a deleted unit zzgone<i>q (its archive: global admins only).
const UNITS = ['zz-city', 'zz-a', 'zz-a1', 'zz-b'] as const;
type UnitId = (typeof UNITS)[number];
const PARENT: Record<UnitId, UnitId | undefined> = { 'zz-city': undefined, 'zz-a': 'zz-city', 'zz-a1': 'zz-a', 'zz-b': 'zz-city' };

/** Reference model: is `unit` in the subtree of `root`? */
function within(unit: UnitId, root: string): boolean {
  for (let u: UnitId | undefined = unit; u !== undefined; u = PARENT[u]) if (u === root) return true;
  return false;
}
function visible(actor: ActorName, owner: UnitId): boolean {
  const unit = ACTOR_UNIT[actor];
  return unit === undefined || within(owner, unit);
}

const idx = (u: UnitId): number => UNITS.indexOf(u);
// Ids no other id starts with (zz-a is a prefix of zz-a1; these are not).
const person = (u: UnitId): string => `zzp${idx(u)}q`;
const group = (u: UnitId): string => `zzg${idx(u)}q`;
const gone = (u: UnitId): string => `zzgone${idx(u)}q`;
const number = (u: UnitId): string => mobileAt(700 + idx(u));
const blocked = (u: UnitId): string => mobileAt(800 + idx(u));
const heldText = (u: UnitId): string => `zzh${idx(u)}q 罢工`;
const goneNumber = (u: UnitId): string => mobileAt(900 + idx(u));
const HOLD_WORD = '罢工';

interface Req { method: string; path: string; body?: unknown; csv?: string }
type Owner = UnitId | 'missing';
/**
 * What a route's requests are aimed at:
 *  - `list`: no target; `filters` are query parameters naming a unit (each unit and a missing one are tried)
 *  - `target`: a request at a target owned by `owner` (or one that does not exist); it may first make a
 *    throwaway row as the global admin, so in-subtree writes leave the fixture intact
 * `global`: only global admins may use the route at all.
 * `upsert`: a missing target would be created, so there is no "missing" answer to compare with.
 * `untargeted`: a write of the whole (e.g. the routing rules): no owner, nothing missing.
 * A `parent` filter lists children: what it shows must be the visible children (A sees itself under its parent).
 */
type Spec =
  | { kind: 'list'; global?: boolean; filters?: string[] }
  | { kind: 'target'; global?: boolean; upsert?: boolean; untargeted?: boolean; req: (owner: Owner) => Promise<Req> };

/** What the matrix reads of an answer's JSON body (any route's). */
interface Answer {
  id?: string;
  status?: string;
  items?: unknown[];
  error?: { code?: string; message?: string };
}
/** What set-up reads of a created row: its id, and for a unit's API key the key itself. */
interface Created {
  id: string;
  key: string;
}

t.test('admin authorization matrix', async (t) => {
  const gw = await startTestGateway(t, {
    config: {
      admin: { keys: [{ key: KEYS.root, name: 'm-root' }, { key: KEYS.A, name: 'm-a', unit: 'zz-a' }, { key: KEYS.A1, name: 'm-a1', unit: 'zz-a1' }, { key: KEYS.B, name: 'm-b', unit: 'zz-b' }] },
      content: { words: [HOLD_WORD], wordListFile: '', onMatch: 'hold', ignoreChars: '' },
    },
  });
  // actor: an actor's name (a key of KEYS) or a raw key.
  const call = async (actor: string, req: Req): Promise<{ status: number; json: Answer | undefined; text: string }> => {
    const bearer = actor in KEYS ? KEYS[actor as ActorName] : actor;
    const res = await fetch(gw.url + req.path, {
      method: req.method,
      headers: { authorization: `Bearer ${bearer}`, ...(req.body !== undefined ? { 'content-type': 'application/json' } : req.csv !== undefined ? { 'content-type': 'text/csv' } : {}) },
      ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : req.csv !== undefined ? { body: req.csv } : {}),
    });
    const text = await res.text();
    let json: Answer | undefined;
    try {
      json = JSON.parse(text) as Answer;
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text };
  };
  const must = async (method: string, path: string, body?: unknown, as: string = 'root'): Promise<Created> => {
    const r = await call(as, { method, path, ...(body !== undefined ? { body } : {}) });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return r.json as Created;
  };
  const GRANTS = { tiers: ['*'], groups: ['*'], direct: true };
  const inHours = (h: number): string => new Date(Date.now() + h * 3600_000).toISOString();

  // ---- fixture: every unit has a person, a group, an API key, a block-list entry, a held message,
  // and a deleted sub-unit that left a message, a template, a meeting and a case behind.
  const keyIds = {} as Record<UnitId, string>;
  const heldIds = {} as Record<UnitId, string>;
  const archived = {} as Record<UnitId, { message: string; meeting: string }>;
  for (const u of UNITS) {
    await must('POST', '/v1/admin/units', { id: u, name: u, grants: GRANTS, ...(PARENT[u] ? { parent: PARENT[u], extension: String(idx(u)) } : { sender: '10697770' }) });
    await must('POST', '/v1/admin/people', { id: person(u), name: `name of ${u}`, mobile: number(u), unit: u });
    await must('POST', '/v1/admin/groups', { id: group(u), name: `group of ${u}`, unit: u, members: [person(u)] });
    const key = await must('POST', `/v1/admin/units/${u}/keys`, {});
    keyIds[u] = key.id;
    await must('POST', '/v1/admin/blocks', { scope: u, number: blocked(u) });
    const held = await call(key.key, { method: 'POST', path: '/v1/messages', body: { to: [number(u)], text: heldText(u) } });
    if (held.json?.status !== 'held') throw new Error(`held message of ${u}: ${held.text}`);
    heldIds[u] = held.json.id as string;
    // The deleted sub-unit and what it left.
    await must('POST', '/v1/admin/units', { id: gone(u), name: gone(u), parent: u, extension: `9${idx(u)}`, grants: GRANTS });
    const g = await must('POST', `/v1/admin/units/${gone(u)}/keys`, {});
    const as = (method: string, path: string, body: unknown): Promise<Created> => must(method, path, body, g.key);
    const message = (await as('POST', '/v1/messages', { to: [goneNumber(u)], text: 'archived' })).id;
    await as('PUT', '/v1/templates/zzt', { body: 'archived template' });
    const meeting = (await as('POST', '/v1/meetings', { title: 'archived', time: inHours(48), place: 'x', attendees: { numbers: [goneNumber(u)] }, replyBy: inHours(24) })).id;
    await as('POST', '/v1/workflow-events', { system: 'zz', caseId: 'C1', seq: 1, stage: 'received', applicant: { mobile: goneNumber(u) } });
    await must('DELETE', `/v1/admin/keys/${g.id}`);
    await must('DELETE', `/v1/admin/units/${gone(u)}`);
    archived[u] = { message, meeting };
  }
  // A's group into which a global admin put B's person and nested B's group: A's admins still see only A's rows.
  await must('PUT', `/v1/admin/groups/${group('zz-a')}`, { name: 'mixed', unit: 'zz-a', members: [person('zz-a'), person('zz-b')], groups: [group('zz-b')] });

  /** Markers of each unit's rows (ids, numbers, texts), searched for in response bodies. Unit ids are not markers: a unit's parent is part of what its admin sees. */
  const markers = (u: UnitId): string[] => [person(u), group(u), `86${number(u)}`, `86${blocked(u)}`, keyIds[u], heldIds[u], `zzh${idx(u)}q`, gone(u), `86${goneNumber(u)}`, archived[u].message, archived[u].meeting];

  // ---- throwaway rows (made by the global admin) for in-subtree writes
  let n = 0;
  const fresh = (): number => ++n;
  const freshMobile = (): string => mobileAt(2000 + fresh());
  const throwawayUnit = async (owner: UnitId): Promise<string> => {
    const id = `zzu${fresh()}q`;
    await must('POST', '/v1/admin/units', { id, name: id, parent: owner });
    return id;
  };
  const throwawayPerson = async (owner: UnitId): Promise<string> => {
    const id = `zzpt${fresh()}q`;
    await must('POST', '/v1/admin/people', { id, name: id, mobile: freshMobile(), unit: owner });
    return id;
  };
  const throwawayGroup = async (owner: UnitId): Promise<string> => {
    const id = `zzgt${fresh()}q`;
    await must('POST', '/v1/admin/groups', { id, name: id, unit: owner });
    return id;
  };
  const throwawayHeld = async (owner: UnitId): Promise<string> => {
    const key = (await must('POST', `/v1/admin/units/${owner}/keys`, {})).key;
    const r = await call(key, { method: 'POST', path: '/v1/messages', body: { to: [number(owner)], text: `throwaway ${HOLD_WORD}` } });
    if (r.json?.status !== 'held') throw new Error(`throwaway held: ${r.text}`);
    return r.json.id as string;
  };
  const enc = encodeURIComponent;

  /** A target description for every admin route. */
  const SPECS: Record<string, Spec> = {
    'GET /v1/admin/mo': { kind: 'list', global: true, filters: ['tenant'] },
    'GET /v1/admin/units': { kind: 'list', filters: ['parent'] },
    'POST /v1/admin/units': { kind: 'target', req: async (o) => ({ method: 'POST', path: '/v1/admin/units', body: { id: `zzn${fresh()}q`, name: 'new', parent: o === 'missing' ? 'zz-nowhere' : o } }) },
    'GET /v1/admin/deleted-units': { kind: 'list', global: true },
    'GET /v1/admin/units/{id}': { kind: 'target', req: async (o) => ({ method: 'GET', path: `/v1/admin/units/${o === 'missing' ? 'zz-nowhere' : o}` }) },
    'PATCH /v1/admin/units/{id}': { kind: 'target', req: async (o) => ({ method: 'PATCH', path: `/v1/admin/units/${o === 'missing' ? 'zz-nowhere' : await throwawayUnit(o)}`, body: { name: 'renamed' } }) },
    'DELETE /v1/admin/units/{id}': { kind: 'target', req: async (o) => ({ method: 'DELETE', path: `/v1/admin/units/${o === 'missing' ? 'zz-nowhere' : await throwawayUnit(o)}` }) },
    'GET /v1/admin/units/{id}/grants': { kind: 'target', req: async (o) => ({ method: 'GET', path: `/v1/admin/units/${o === 'missing' ? 'zz-nowhere' : o}/grants` }) },
    'PUT /v1/admin/units/{id}/grants': { kind: 'target', req: async (o) => ({ method: 'PUT', path: `/v1/admin/units/${o === 'missing' ? 'zz-nowhere' : await throwawayUnit(o)}/grants`, body: { direct: true } }) },
    'GET /v1/admin/units/{id}/keys': { kind: 'target', req: async (o) => ({ method: 'GET', path: `/v1/admin/units/${o === 'missing' ? 'zz-nowhere' : o}/keys` }) },
    'POST /v1/admin/units/{id}/keys': { kind: 'target', req: async (o) => ({ method: 'POST', path: `/v1/admin/units/${o === 'missing' ? 'zz-nowhere' : o}/keys`, body: { label: 'matrix' } }) },
    'DELETE /v1/admin/keys/{id}': { kind: 'target', req: async (o) => ({ method: 'DELETE', path: `/v1/admin/keys/${o === 'missing' ? 'k0000000000000000' : (await must('POST', `/v1/admin/units/${o}/keys`, {})).id}` }) },
    'GET /v1/admin/people': { kind: 'list', filters: ['unit'] },
    'POST /v1/admin/people': { kind: 'target', req: async (o) => ({ method: 'POST', path: '/v1/admin/people', body: { id: `zzpn${fresh()}q`, name: 'new', mobile: freshMobile(), unit: o === 'missing' ? 'zz-nowhere' : o } }) },
    'POST /v1/admin/people/import': { kind: 'target', req: async (o) => ({ method: 'POST', path: '/v1/admin/people/import', csv: `id,name,mobile,unit\nzzpi${fresh()}q,new,${freshMobile()},${o === 'missing' ? 'zz-nowhere' : o}\n` }) },
    'GET /v1/admin/people/export': { kind: 'list' },
    'GET /v1/admin/people/{id}': { kind: 'target', req: async (o) => ({ method: 'GET', path: `/v1/admin/people/${o === 'missing' ? 'zz-person-none' : person(o)}` }) },
    'PUT /v1/admin/people/{id}': { kind: 'target', upsert: true, req: async (o) => (o === 'missing' ? { method: 'PUT', path: '/v1/admin/people/zz-person-none', body: {} } : { method: 'PUT', path: `/v1/admin/people/${await throwawayPerson(o)}`, body: { name: 'x', mobile: freshMobile(), unit: o } }) },
    'DELETE /v1/admin/people/{id}': { kind: 'target', req: async (o) => ({ method: 'DELETE', path: `/v1/admin/people/${o === 'missing' ? 'zz-person-none' : await throwawayPerson(o)}` }) },
    'GET /v1/admin/groups': { kind: 'list', filters: ['unit'] },
    'POST /v1/admin/groups': { kind: 'target', req: async (o) => ({ method: 'POST', path: '/v1/admin/groups', body: { id: `zzgn${fresh()}q`, name: 'new', unit: o === 'missing' ? 'zz-nowhere' : o } }) },
    'POST /v1/admin/groups/import': { kind: 'target', req: async (o) => ({ method: 'POST', path: '/v1/admin/groups/import', csv: `group,name,unit\nzzgi${fresh()}q,new,${o === 'missing' ? 'zz-nowhere' : o}\n` }) },
    'GET /v1/admin/groups/export': { kind: 'list' },
    'GET /v1/admin/groups/{id}': { kind: 'target', req: async (o) => ({ method: 'GET', path: `/v1/admin/groups/${o === 'missing' ? 'zz-group-none' : group(o)}` }) },
    'PUT /v1/admin/groups/{id}': { kind: 'target', upsert: true, req: async (o) => (o === 'missing' ? { method: 'PUT', path: '/v1/admin/groups/zz-group-none', body: {} } : { method: 'PUT', path: `/v1/admin/groups/${await throwawayGroup(o)}`, body: { name: 'x', unit: o, members: [person(o)] } }) },
    'DELETE /v1/admin/groups/{id}': { kind: 'target', req: async (o) => ({ method: 'DELETE', path: `/v1/admin/groups/${o === 'missing' ? 'zz-group-none' : await throwawayGroup(o)}` }) },
    'GET /v1/admin/groups/{id}/members': { kind: 'target', req: async (o) => ({ method: 'GET', path: `/v1/admin/groups/${o === 'missing' ? 'zz-group-none' : group(o)}/members` }) },
    'POST /v1/admin/groups/{id}/members': { kind: 'target', req: async (o) => ({ method: 'POST', path: `/v1/admin/groups/${o === 'missing' ? 'zz-group-none' : await throwawayGroup(o)}/members`, body: { add: o === 'missing' ? [] : [person(o)] } }) },
    'GET /v1/admin/groups/{id}/expansion': { kind: 'target', req: async (o) => ({ method: 'GET', path: `/v1/admin/groups/${o === 'missing' ? 'zz-group-none' : group(o)}/expansion` }) },
    'GET /v1/admin/blocks': { kind: 'list', filters: ['scope'] },
    'POST /v1/admin/blocks': { kind: 'target', req: async (o) => ({ method: 'POST', path: '/v1/admin/blocks', body: { scope: o === 'missing' ? 'zz-nowhere' : o, number: freshMobile() } }) },
    'DELETE /v1/admin/blocks/{scope}/{number}': {
      kind: 'target',
      req: async (o) => {
        const num = freshMobile();
        if (o !== 'missing') await must('POST', '/v1/admin/blocks', { scope: o, number: num });
        return { method: 'DELETE', path: `/v1/admin/blocks/${o === 'missing' ? 'zz-nowhere' : o}/86${num}` };
      },
    },
    'GET /v1/admin/held': { kind: 'list' },
    'POST /v1/admin/held/{id}/release': { kind: 'target', req: async (o) => ({ method: 'POST', path: `/v1/admin/held/${o === 'missing' ? 'ZZNOHELDMESSAGE' : await throwawayHeld(o)}/release` }) },
    'POST /v1/admin/held/{id}/reject': { kind: 'target', req: async (o) => ({ method: 'POST', path: `/v1/admin/held/${o === 'missing' ? 'ZZNOHELDMESSAGE' : await throwawayHeld(o)}/reject`, body: { reason: 'matrix' } }) },
    'GET /v1/admin/routing': { kind: 'list', global: true },
    'PUT /v1/admin/routing': { kind: 'target', global: true, untargeted: true, req: async () => ({ method: 'PUT', path: '/v1/admin/routing', body: { rules: null } }) },
    'GET /v1/admin/audit': { kind: 'list', filters: ['targetId'] },
    // Archives of deleted units: the target is the deleted sub-unit of `owner`.
    'GET /v1/admin/archives/{unit}': { kind: 'target', global: true, req: async (o) => ({ method: 'GET', path: `/v1/admin/archives/${o === 'missing' ? 'zz-nowhere' : gone(o)}` }) },
    'GET /v1/admin/archives/{unit}/templates': { kind: 'target', global: true, req: async (o) => ({ method: 'GET', path: `/v1/admin/archives/${o === 'missing' ? 'zz-nowhere' : gone(o)}/templates` }) },
    'GET /v1/admin/archives/{unit}/meetings': { kind: 'target', global: true, req: async (o) => ({ method: 'GET', path: `/v1/admin/archives/${o === 'missing' ? 'zz-nowhere' : gone(o)}/meetings` }) },
    'GET /v1/admin/archives/{unit}/meetings/{id}': { kind: 'target', global: true, req: async (o) => ({ method: 'GET', path: o === 'missing' ? '/v1/admin/archives/zz-nowhere/meetings/m0' : `/v1/admin/archives/${gone(o)}/meetings/${enc(archived[o].meeting)}` }) },
    'GET /v1/admin/archives/{unit}/mo': { kind: 'target', global: true, req: async (o) => ({ method: 'GET', path: `/v1/admin/archives/${o === 'missing' ? 'zz-nowhere' : gone(o)}/mo` }) },
    'GET /v1/admin/archives/{unit}/cases/{system}/{caseId}': { kind: 'target', global: true, req: async (o) => ({ method: 'GET', path: `/v1/admin/archives/${o === 'missing' ? 'zz-nowhere' : gone(o)}/cases/zz/C1` }) },
    'GET /v1/admin/archives/{unit}/messages/{id}': { kind: 'target', global: true, req: async (o) => ({ method: 'GET', path: o === 'missing' ? '/v1/admin/archives/zz-nowhere/messages/M0' : `/v1/admin/archives/${gone(o)}/messages/${enc(archived[o].message)}` }) },
  };

  const routes = allRoutes().filter((r) => r.realm === 'admin' && r.kind === 'http');
  const routeKeys = routes.map((r) => `${r.method} ${r.path}`);
  const wrong: string[] = [];
  for (const k of routeKeys) if (!(k in SPECS)) wrong.push(`${k}: no target description in SPECS — say what the route's requests aim at`);
  for (const k of Object.keys(SPECS)) if (!routeKeys.includes(k)) wrong.push(`${k}: described in SPECS but not in the route table`);
  t.ok(routes.length >= 45, `${routes.length} admin routes enumerated from the route table`);

  let checked = 0;
  /** What a body shows of rows the actor may not see (the id the request itself named is not a leak). */
  const leaks = (actor: ActorName, text: string, named = ''): string[] => UNITS.filter((u) => !visible(actor, u)).flatMap(markers).filter((m) => !named.includes(m) && text.includes(m));
  /** Archives are global-only: no delegated admin's answer shows anything of a deleted unit. */
  const archiveLeaks = (actor: ActorName, text: string): string[] => (actor === 'root' ? [] : UNITS.flatMap((u) => [`86${goneNumber(u)}`, archived[u].message, archived[u].meeting]).filter((m) => text.includes(m)));
  const describe = (r: { status: number; json: Answer | undefined }): string => `${r.status} ${r.json?.error?.code ?? ''}`.trim();

  for (const r of routes) {
    const key = `${r.method} ${r.path}`;
    const spec = SPECS[key];
    if (spec === undefined) continue;
    if (spec.kind === 'list') {
      for (const actor of ACTORS) {
        const refused = actor !== 'root' && spec.global === true;
        const base = await call(actor, { method: r.method, path: r.path });
        checked++;
        const label = `${actor} ${key}`;
        if (refused ? base.status !== 403 : base.status !== 200) wrong.push(`${label}: ${describe(base)}, want ${refused ? 403 : 200}`);
        for (const leak of [...leaks(actor, base.text), ...archiveLeaks(actor, base.text)]) wrong.push(`${label}: shows ${leak}`);
        for (const f of spec.filters ?? []) {
          const none = await call(actor, { method: r.method, path: `${r.path}?${f}=zz-nowhere` });
          checked++;
          for (const u of UNITS) {
            const res = await call(actor, { method: r.method, path: `${r.path}?${f}=${u}` });
            checked++;
            const l = `${label}?${f}=${u}`;
            for (const leak of [...leaks(actor, res.text), ...archiveLeaks(actor, res.text)]) wrong.push(`${l}: shows ${leak}`);
            if (refused) {
              if (res.status !== 403) wrong.push(`${l}: ${describe(res)}, want 403 (global admins only)`);
            } else if (f === 'parent') {
              const want = UNITS.filter((c) => PARENT[c] === u && visible(actor, c));
              const got = ((res.json?.items ?? []) as { id: string }[]).map((x) => x.id).filter((id) => (UNITS as readonly string[]).includes(id));
              if (res.status !== 200 || JSON.stringify(got.sort()) !== JSON.stringify(want.sort())) wrong.push(`${l}: ${describe(res)} [${got.join(', ')}], want 200 [${want.join(', ')}]`);
            } else if (visible(actor, u)) {
              if (res.status !== 200) wrong.push(`${l}: ${describe(res)}, want 200`);
            } else if (res.status !== none.status || res.json?.error?.code !== none.json?.error?.code || (res.status === 200 && JSON.stringify(res.json?.items ?? []) !== JSON.stringify(none.json?.items ?? []))) {
              wrong.push(`${l}: ${describe(res)} ${res.status === 200 ? `${res.json?.items?.length} items` : ''}, but a unit that does not exist: ${describe(none)}`);
            }
          }
        }
      }
      continue;
    }
    for (const actor of ACTORS) {
      const refusedAll = actor !== 'root' && spec.global === true;
      const missing = spec.upsert === true || spec.untargeted === true ? undefined : await call(actor, await spec.req('missing'));
      checked++;
      const label = (o: string): string => `${actor} ${key} → ${o}`;
      if (missing !== undefined) {
        if (missing.status < 300) wrong.push(`${label('missing')}: ${describe(missing)}, a target that does not exist was allowed`);
        if (refusedAll && missing.status !== 403) wrong.push(`${label('missing')}: ${describe(missing)}, want 403 (global admins only)`);
      }
      for (const owner of UNITS) {
        const req = await spec.req(owner);
        const res = await call(actor, req);
        checked++;
        const l = label(`${owner}'s`);
        for (const leak of [...leaks(actor, res.text, req.path), ...archiveLeaks(actor, res.text)]) wrong.push(`${l}: shows ${leak}`);
        if (refusedAll) {
          if (res.status !== 403 || (missing !== undefined && (res.json?.error?.code !== missing.json?.error?.code || res.json?.error?.message !== missing.json?.error?.message))) {
            wrong.push(`${l}: ${describe(res)}, want 403 alike for every target (global admins only)`);
          }
          continue;
        }
        if (visible(actor, owner)) {
          if (res.status < 200 || res.status >= 300) wrong.push(`${l}: ${describe(res)} ${res.json?.error?.message ?? ''}, want 2xx (inside)`);
          continue;
        }
        if (res.status >= 200 && res.status < 300) {
          wrong.push(`${l}: ${describe(res)}, a target outside the subtree was allowed`);
          continue;
        }
        if (missing === undefined) continue; // upsert of an id held outside: refused is all the model says
        if (res.status !== missing.status || res.json?.error?.code !== missing.json?.error?.code) {
          wrong.push(`${l}: ${describe(res)}, but a target that does not exist is ${describe(missing)}`);
        }
      }
    }
  }
  t.ok(checked > 700, `${checked} cases checked`);
  t.same(wrong, [], 'every case as the reference model says');
  // The fixture is intact (writes above were on throwaway rows or refused).
  for (const u of UNITS) {
    t.equal((await call('root', { method: 'GET', path: `/v1/admin/units/${u}` })).status, 200);
    t.equal((await call('root', { method: 'GET', path: `/v1/admin/people/${person(u)}` })).status, 200);
    t.equal((await call('root', { method: 'GET', path: `/v1/admin/groups/${group(u)}` })).status, 200);
  }
});
