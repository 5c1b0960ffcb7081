/**
 * Over-long path parameters and query values. A path segment or a cursor of a
 * few thousand characters used to reach the stores as an LMDB key and come
 * back as 500 INTERNAL ("String does not fit in target buffer", "Key of size
 * 2104 was too large"). Now: a path parameter over MAX_PARAM_CHARS is 400
 * BAD_PATH (before auth), a documented string query value over it is 422
 * VALIDATION naming the parameter; at the bound, the route answers as usual
 * (never a 5xx), on every route of every table.
 */
import t from 'tap';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { ADMIN_CONFIG, ADMIN_KEY } from '../support/directory.js';
import { allRoutes } from '../../src/http/openapi.js';
import { boundedParamSchema, MAX_PARAM_CHARS, pathParamNames, routeLabel, type RouteEntry } from '../../src/http/route.js';
import { ERROR_CODES } from '../../src/core/errors.js';

const PDA_ADMIN = 'f'.repeat(32);

const keyOf = (r: RouteEntry<never>): string | undefined =>
  r.realm === 'sending' ? TEST_KEY : r.realm === 'admin' ? ADMIN_KEY : r.realm === 'pdaAdmin' ? PDA_ADMIN : undefined;

t.test('over-long path parameters and query values are 4xx, never 500', async (t) => {
  const gw = await startTestGateway(t, {
    config: { ...ADMIN_CONFIG, pda: { enabled: true, keySecret: 'z'.repeat(40), adminKey: PDA_ADMIN } },
  });
  const routes = allRoutes().filter((r) => r.kind === 'http');

  const call = async (r: RouteEntry<never>, path: string): Promise<{ status: number; code?: string; field?: string }> => {
    const key = keyOf(r);
    const csv = r.kind === 'http' && r.body?.kind === 'csv';
    const res = await fetch(gw.url + path, {
      method: r.method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), 'content-type': csv ? 'text/csv' : 'application/json' },
      ...(r.method !== 'GET' && r.method !== 'DELETE' ? { body: csv ? 'id\n' : '{}' } : {}),
    });
    const text = await res.text();
    if (res.status < 400) return { status: res.status };
    const e = (JSON.parse(text) as { error?: { code?: string; details?: { field?: string }[] } }).error;
    return { status: res.status, ...(e?.code !== undefined ? { code: e.code } : {}), ...(e?.details?.[0]?.field !== undefined ? { field: e.details[0].field } : {}) };
  };
  const sane = (a: { status: number; code?: string }, what: string): void => {
    const ok = (a.status >= 200 && a.status < 300) || (a.status >= 400 && a.status < 500 && a.code !== undefined && a.code in ERROR_CODES);
    t.ok(ok, `${what}: ${a.status} ${a.code ?? ''}`);
  };

  // The worst case for a key's bytes at the bound: three-byte UTF-8 characters, in every parameter at once.
  const atBound = encodeURIComponent('\uffee'.repeat(MAX_PARAM_CHARS));
  const over = [
    'A'.repeat(MAX_PARAM_CHARS + 1),
    'A'.repeat(2100),
    'A'.repeat(9000),
    encodeURIComponent('é'.repeat(1200)),
  ];

  t.test('path parameters', async (t) => {
    for (const r of routes.filter((x) => pathParamNames(x.path).length > 0)) {
      for (const v of over) {
        const a = await call(r, r.path.replace(/\{\w+\}/g, v));
        t.same(a, { status: 400, code: 'BAD_PATH', field: 'path/0' }, `${routeLabel(r)} with ${v.length}-character parameters`);
      }
      sane(await call(r, r.path.replace(/\{\w+\}/g, atBound)), `${routeLabel(r)} at the bound`);
    }
  });

  t.test('documented string query values', async (t) => {
    for (const r of routes) {
      for (const q of r.query ?? []) {
        const schema = boundedParamSchema(q.schema);
        if (schema['type'] !== 'string' || schema['enum'] !== undefined) continue;
        for (const v of over) {
          const a = await call(r, `${r.path.replace(/\{\w+\}/g, 'x1')}?${q.name}=${v}`);
          t.same(a, { status: 422, code: 'VALIDATION', field: q.name }, `${routeLabel(r)} ?${q.name}= ${v.length} characters`);
        }
        sane(await call(r, `${r.path.replace(/\{\w+\}/g, 'x1')}?${q.name}=${atBound}`), `${routeLabel(r)} ?${q.name}= at the bound`);
      }
    }
  });

  t.test('the API document shows the bound', async (t) => {
    const doc = (await (await fetch(`${gw.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, { parameters?: { in: string; schema: { type?: string; maxLength?: number; enum?: unknown } }[] }>> };
    let n = 0;
    for (const ops of Object.values(doc.paths)) {
      for (const op of Object.values(ops)) {
        for (const p of op.parameters ?? []) {
          if ((p.in === 'path' || p.in === 'query') && p.schema.type === 'string' && p.schema.enum === undefined) {
            n++;
            t.ok(p.schema.maxLength !== undefined && p.schema.maxLength <= MAX_PARAM_CHARS, 'bounded');
          }
        }
      }
    }
    t.ok(n > 50, `${n} string parameters documented with their bound`);
  });
});
