/**
 * Query values are checked by the mount against each route's documented
 * query schemas. Walks the table: for every route and every documented query
 * parameter, values that break its schema (wrong type, below the minimum,
 * above the maximum, outside the enum, too long) are 422 VALIDATION naming
 * that parameter, before the handler; a value that fits a typed or enum
 * schema is never refused for that parameter. A route added to the table is covered without more work.
 */
import t from 'tap';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { ADMIN_CONFIG, ADMIN_KEY } from '../support/directory.js';
import { allRoutes } from '../../src/http/openapi.js';
import { queryValueProblem } from '../../src/http/query.js';
import { routeLabel, type RouteEntry } from '../../src/http/route.js';

const PDA_ADMIN = 'f'.repeat(32);
const keyOf = (r: RouteEntry<never>): string | undefined =>
  r.realm === 'sending' ? TEST_KEY : r.realm === 'admin' ? ADMIN_KEY : r.realm === 'pdaAdmin' ? PDA_ADMIN : undefined;

/** Values that break the schema, and one that fits it. */
function samples(schema: Readonly<Record<string, unknown>>): { bad: string[]; good: string | undefined } {
  const bad: string[] = [];
  // A plain string parameter has no schema-made good value: its handler may check more (a cursor's form, a time).
  let good: string | undefined;
  if (schema['type'] === 'integer' || schema['type'] === 'number') {
    bad.push('x', '');
    if (schema['type'] === 'integer') bad.push('1.5');
    const min = typeof schema['minimum'] === 'number' ? schema['minimum'] : undefined;
    const max = typeof schema['maximum'] === 'number' ? schema['maximum'] : undefined;
    if (min !== undefined) bad.push(String(min - 1));
    if (max !== undefined) bad.push(String(max + 1));
    good = String(min ?? max ?? 1);
  }
  const allowed = schema['enum'];
  if (Array.isArray(allowed)) {
    bad.push('not-in-the-enum');
    good = String(allowed[0]);
  }
  if (typeof schema['maxLength'] === 'number') bad.push('q'.repeat(schema['maxLength'] + 1));
  return { bad, good };
}

t.test('queryValueProblem', async (t) => {
  const limit = { type: 'integer', minimum: 1, maximum: 1000 };
  t.equal(queryValueProblem(limit, '1000'), undefined);
  for (const v of ['0', '1001', '1e3', ' 5', '5x', '', '99999999999999999999']) t.ok(queryValueProblem(limit, v), `limit ${JSON.stringify(v)}`);
  t.equal(queryValueProblem({ type: 'string', enum: ['a', 'b'] }, 'b'), undefined);
  t.ok(queryValueProblem({ type: 'string', enum: ['a', 'b'] }, 'c'));
  t.ok(queryValueProblem({ type: 'string', maxLength: 3 }, 'abcd'));
  t.equal(queryValueProblem({ type: 'string' }, 'anything'), undefined);
});

t.test('every documented query parameter of every route: 422 naming it for a bad value, never for a good one', async (t) => {
  const gw = await startTestGateway(t, {
    config: { ...ADMIN_CONFIG, pda: { enabled: true, keySecret: 'z'.repeat(40), adminKey: PDA_ADMIN } },
  });
  let checked = 0;
  for (const r of allRoutes()) {
    if (r.kind !== 'http' || r.query === undefined || r.realm === 'none') continue;
    const key = keyOf(r);
    const path = r.path.replace(/\{\w+\}/g, 'q1');
    for (const d of r.query) {
      const { bad, good } = samples(d.schema ?? { type: 'string' });
      for (const v of bad) {
        const res = await fetch(`${gw.url}${path}?${new URLSearchParams({ [d.name]: v }).toString()}`, {
          method: r.method,
          headers: { ...(key !== undefined ? { authorization: `Bearer ${key}` } : {}), ...(r.body?.kind === 'json' ? { 'content-type': 'application/json' } : {}) },
          ...(r.method !== 'GET' && r.method !== 'DELETE' ? { body: '{}' } : {}),
        });
        const body = (await res.json()) as { error?: { code: string; details?: { field: string }[] } };
        t.equal(res.status, 422, `${routeLabel(r)} ?${d.name}=${v.slice(0, 20)}`);
        t.equal(body.error?.code, 'VALIDATION');
        t.equal(body.error?.details?.[0]?.field, d.name);
        checked++;
      }
      if (good === undefined) continue;
      const ok = await fetch(`${gw.url}${path}?${new URLSearchParams({ [d.name]: good }).toString()}`, {
        method: r.method, headers: key !== undefined ? { authorization: `Bearer ${key}` } : {},
      });
      const okBody = (await ok.json().catch(() => ({}))) as { error?: { details?: { field: string }[] } };
      t.notOk(okBody.error?.details?.some((p) => p.field === d.name && ok.status === 422), `${routeLabel(r)} ?${d.name}=${good} is not refused for ${d.name}`);
    }
  }
  t.ok(checked >= 30, `${checked} bad values refused`);
});
