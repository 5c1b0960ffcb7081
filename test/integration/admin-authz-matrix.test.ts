/**
 * The authorization matrix, generated: every admin route of the route table
 * (realm `admin`, from src/http's allRoutes — a route added later joins by
 * construction) × actor (global admin, delegated admin of A, of A's child
 * A1, of A's sibling B) × targets inside and outside the actor's subtree
 * and one that does not exist. Expected outcomes come from a small
 * reference model of the rules in docs/DIRECTORY.md ("Scoping rules for
 * delegated admins"):
 *
 *   visible(actor, owner)  = actor is global, or owner lies in actor's subtree
 *   reads   GET of a visible target: 200; a body never shows anything not visible
 *           GET of a list: 200 (or 403 for global-only routes); never shows anything not visible
 *   alike   any route, a target not visible: the same status and code as a target
 *           that does not exist (404 NOT_FOUND), never a 2xx
 *
 * A path parameter of a kind this file does not know fails the test, so a
 * new admin route must say what its parameters name.
 */
import t from 'tap';
import { allRoutes } from '../../src/http/openapi.js';
import type { RouteEntry } from '../../src/http/route.js';
import { startTestGateway } from '../support/gateway.js';
import { mobileAt } from '../support/directory.js';

const KEYS = {
  root: 'matrix-root-admin-key-0123456789',
  A: 'matrix-admin-a-key-0123456789abc',
  A1: 'matrix-admin-a1-key-0123456789ab',
  B: 'matrix-admin-b-key-0123456789abc',
} as const;
type ActorName = keyof typeof KEYS;
const ACTOR_UNIT: Record<ActorName, string | undefined> = { root: undefined, A: 'zz-a', A1: 'zz-a1', B: 'zz-b' };

// The tree: zz-city ─┬─ zz-a ── zz-a1
//                    └─ zz-b
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

/** Distinct markers of each unit's rows (ids and numbers), searched for in response bodies. */
const idx = (u: UnitId): number => UNITS.indexOf(u);
// Ids no other id starts with (zz-a is a prefix of zz-a1; these are not).
const person = (u: UnitId): string => `zzp${idx(u)}q`;
const group = (u: UnitId): string => `zzg${idx(u)}q`;
const number = (u: UnitId): string => mobileAt(700 + idx(u));
const blocked = (u: UnitId): string => mobileAt(800 + idx(u));
// Unit ids are not markers: a unit's parent is part of what its admin sees.
const markers = (u: UnitId, keyIds: Record<UnitId, string>): string[] => [person(u), group(u), `86${number(u)}`, `86${blocked(u)}`, keyIds[u]];

t.test('admin authorization matrix', async (t) => {
  const gw = await startTestGateway(t, {
    config: { admin: { keys: [{ key: KEYS.root, name: 'm-root' }, { key: KEYS.A, name: 'm-a', unit: 'zz-a' }, { key: KEYS.A1, name: 'm-a1', unit: 'zz-a1' }, { key: KEYS.B, name: 'm-b', unit: 'zz-b' }] } },
  });
  const call = async (actor: ActorName, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> => {
    const res = await fetch(gw.url + path, {
      method,
      headers: { authorization: `Bearer ${KEYS[actor]}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text };
  };
  const must = async (method: string, path: string, body?: unknown): Promise<any> => {
    const r = await call('root', method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return r.json;
  };

  // ---- fixture: every unit has a person, a group, an API key and a block-list entry
  const keyIds = {} as Record<UnitId, string>;
  for (const u of UNITS) {
    await must('POST', '/v1/admin/units', { id: u, name: u, ...(PARENT[u] ? { parent: PARENT[u], extension: String(idx(u)) } : { sender: '10697770' }) });
    await must('POST', '/v1/admin/people', { id: person(u), name: `name of ${u}`, mobile: number(u), unit: u });
    await must('POST', '/v1/admin/groups', { id: group(u), name: `group of ${u}`, unit: u, members: [person(u)] });
    keyIds[u] = (await must('POST', `/v1/admin/units/${u}/keys`, {})).id;
    await must('POST', '/v1/admin/blocks', { scope: u, number: blocked(u) });
  }
  // A's group into which a global admin put B's person and nested B's group: A's admins still see only A's rows.
  await must('PUT', `/v1/admin/groups/${group('zz-a')}`, { name: 'mixed', unit: 'zz-a', members: [person('zz-a'), person('zz-b')], groups: [group('zz-b')] });

  /** Targets of a path parameter, by what it names: each owned by a unit, plus one that does not exist. */
  const kinds: Record<string, { of: (u: UnitId) => string; missing: string }> = {
    units: { of: (u) => u, missing: 'zz-nowhere' },
    keys: { of: (u) => keyIds[u], missing: 'k0000000000000000' },
    people: { of: person, missing: 'zz-person-none' },
    groups: { of: group, missing: 'zz-group-none' },
    blocks: { of: (u) => `${u}/86${blocked(u)}`, missing: `zz-nowhere/86${blocked('zz-a')}` },
    held: { of: () => '', missing: 'ZZNOHELDMESSAGE' },
  };
  /** Minimal well-formed bodies, so a refusal is about the target, not the body. */
  const bodyFor = (r: RouteEntry<never>, owner: UnitId | undefined): unknown => {
    if (r.kind !== 'http' || r.body === undefined) return undefined;
    const p = r.path;
    if (p.endsWith('/grants')) return {};
    if (p.endsWith('/keys')) return {};
    if (p.endsWith('/members')) return { add: [] };
    if (p.endsWith('/reject')) return { reason: 'matrix' };
    if (p.startsWith('/v1/admin/units/')) return { name: 'renamed' };
    if (p.startsWith('/v1/admin/people/')) return { name: 'x', mobile: mobileAt(999), unit: owner ?? 'zz-a' };
    if (p.startsWith('/v1/admin/groups/')) return { name: 'x', unit: owner ?? 'zz-a' };
    return {};
  };

  const routes = allRoutes().filter((r) => r.realm === 'admin' && r.kind === 'http');
  t.ok(routes.length >= 25, `${routes.length} admin routes enumerated from the route table`);
  const actors = Object.keys(KEYS) as ActorName[];
  let checked = 0;
  const wrong: string[] = [];
  /** What a body shows of rows the actor may not see (the id the request itself named is not a leak). */
  const leaks = (actor: ActorName, text: string, named = ''): string[] => UNITS.filter((u) => !visible(actor, u)).flatMap((u) => markers(u, keyIds)).filter((m) => !named.includes(m) && text.includes(m));

  for (const r of routes) {
    const params = [...r.path.matchAll(/\{(\w+)\}/g)];
    if (params.length === 0) {
      if (r.method !== 'GET') continue; // creates and imports: covered by the store-level tests (scoped writes)
      for (const actor of actors) {
        const queries = [''];
        for (const q of r.query ?? []) if (['unit', 'scope', 'parent', 'tenant'].includes(q.name)) for (const u of UNITS) queries.push(`?${q.name}=${u}`);
        for (const q of queries) {
          const res = await call(actor, 'GET', r.path + q);
          checked++;
          const label = `${actor} GET ${r.path}${q}`;
          if (actor === 'root' && res.status !== 200) wrong.push(`${label}: ${res.status} (a global admin reads every list)`);
          if (actor !== 'root' && res.status !== 200 && res.status !== 403) wrong.push(`${label}: ${res.status}`);
          const leaked = leaks(actor, res.text);
          if (leaked.length > 0) wrong.push(`${label}: shows ${leaked.join(', ')}`);
        }
      }
      continue;
    }
    // The kind of the path's first parameter: the segment before it.
    const segs = r.path.split('/');
    const kindName = segs[segs.findIndex((s) => s.startsWith('{')) - 1] as string;
    const kind = kinds[kindName];
    if (kind === undefined) {
      wrong.push(`${r.method} ${r.path}: parameter names a ${kindName}, which this matrix does not know — add it to \`kinds\``);
      continue;
    }
    const concrete = (value: string): string => {
      const parts = value.split('/');
      let i = 0;
      return r.path.replace(/\{(\w+)\}/g, () => encodeURIComponent(parts[i++] ?? parts[0] ?? ''));
    };
    // PUT on people and groups is an upsert: a missing id would be created, so there is no "missing" answer to compare with.
    const upsert = r.method === 'PUT' && ['people', 'groups'].includes(kindName);
    for (const actor of actors) {
      const missingRes = upsert ? { status: 404, json: { error: { code: 'NOT_FOUND' } }, text: '' } : await call(actor, r.method, concrete(kind.missing), bodyFor(r, ACTOR_UNIT[actor] as UnitId | undefined));
      checked++;
      // A block-list entry is named by its scope: a scope that does not exist is refused like one outside (403; 422 for a global admin).
      if (kindName === 'blocks' ? missingRes.status < 300 : kindName !== 'held' && missingRes.status !== 404) {
        wrong.push(`${actor} ${r.method} ${r.path} (missing): ${missingRes.status}, want 404`);
      }
      if (kindName === 'held') continue; // no held messages in the fixture: only "missing" is checked
      for (const owner of UNITS) {
        const target = kind.of(owner);
        const inside = visible(actor, owner);
        // Writes change the fixture: only refusals are exercised (targets outside the subtree).
        if (r.method !== 'GET' && inside) continue;
        const res = await call(actor, r.method, concrete(target), bodyFor(r, ACTOR_UNIT[actor] as UnitId | undefined));
        checked++;
        const label = `${actor} ${r.method} ${r.path} → ${owner}'s ${kindName}`;
        const leaked = leaks(actor, res.text, target);
        if (leaked.length > 0) wrong.push(`${label}: shows ${leaked.join(', ')}`);
        if (inside) {
          if (res.status !== 200) wrong.push(`${label}: ${res.status}, want 200 (inside)`);
          continue;
        }
        if (res.status >= 200 && res.status < 300) {
          wrong.push(`${label}: ${res.status}, a target outside the subtree was allowed`);
          continue;
        }
        // Upserts of an id held outside: refused (the id is taken), not "alike" — ids are one namespace.
        if (upsert) continue;
        const same = res.status === missingRes.status && res.json?.error?.code === missingRes.json?.error?.code;
        if (!same) wrong.push(`${label}: ${res.status} ${res.json?.error?.code}, but a missing one is ${missingRes.status} ${missingRes.json?.error?.code}`);
      }
    }
  }
  t.ok(checked > 300, `${checked} cases checked`);
  t.same(wrong, [], 'every case as the reference model says');
  // The fixture is intact (writes above were all refusals).
  for (const u of UNITS) t.equal((await call('root', 'GET', `/v1/admin/units/${u}`)).status, 200);
});
