/**
 * Route fuzz suite: walks every entry of every route table (a route added to
 * a table is fuzzed with no further work) and throws at it what an attacker
 * would — malformed percent-escapes, wrong methods, wrong and missing content
 * types, random bytes, deep and huge JSON, bad and missing keys. Every answer
 * must be a 4xx JSON error in the catalogue, or the route's success; never a
 * 5xx, never a dropped process. Bounded: a fixed number of runs per route and
 * property (fast-check), all on loopback.
 */
import t from 'tap';
import fc from 'fast-check';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { ADMIN_CONFIG, ADMIN_KEY } from '../support/directory.js';
import { allRoutes } from '../../src/http/openapi.js';
import { allowed } from '../../src/http/mount.js';
import { pathParamNames, routeLabel, type RouteEntry } from '../../src/http/route.js';
import { ERROR_CODES } from '../../src/core/errors.js';

const PDA_ADMIN = 'f'.repeat(32);
const MAX_BODY = 4096;
const RUNS = Number(process.env['SMSGW_FUZZ_RUNS'] ?? 4);
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

const keyOf = (r: RouteEntry<never>): string | undefined =>
  r.realm === 'sending' ? TEST_KEY : r.realm === 'admin' ? ADMIN_KEY : r.realm === 'pdaAdmin' ? PDA_ADMIN : undefined;

const concrete = (path: string, value = 'fz1'): string => path.replace(/\{\w+\}/g, value);

type Answer = { status: number; code?: string; allow?: string | null };

t.test('route fuzz: every entry of every table', async (t) => {
  const gw = await startTestGateway(t, {
    config: { ...ADMIN_CONFIG, server: { maxBodyBytes: MAX_BODY }, pda: { enabled: true, keySecret: 'z'.repeat(40), adminKey: PDA_ADMIN } },
  });
  const routes = allRoutes();
  const http = routes.filter((r) => r.kind === 'http');
  t.ok(http.length >= 60, `${http.length} HTTP routes in the tables`);

  /** One request; the answer must be a success of the route or a 4xx error of the catalogue. */
  const call = async (method: string, path: string, init: { headers?: Record<string, string>; body?: Uint8Array | string } = {}): Promise<Answer> => {
    const res = await fetch(gw.url + path, { method, headers: init.headers ?? {}, ...(init.body !== undefined ? { body: typeof init.body === 'string' ? new TextEncoder().encode(init.body) : init.body } : {}) });
    const text = await res.text();
    let code: string | undefined;
    if (res.status >= 400) {
      const json = JSON.parse(text) as { error?: { code?: string } };
      code = json.error?.code;
    }
    return { status: res.status, ...(code !== undefined ? { code } : {}), allow: res.headers.get('allow') };
  };
  const sane = (a: Answer, what: string): boolean => {
    const ok = (a.status >= 200 && a.status < 300) || (a.status >= 400 && a.status < 500 && a.code !== undefined && a.code in ERROR_CODES);
    if (!ok) t.fail(`${what}: answered ${a.status} ${a.code ?? ''}`);
    return ok;
  };

  t.test('malformed percent-escapes in path parameters: 400 BAD_PATH, before auth', async (t) => {
    const bad = fc.tuple(fc.string({ maxLength: 6 }).map(encodeURIComponent), fc.constantFrom('%', '%Z', '%ZZ', '%E0%A4%A', '%C0%80', '%FF', '%ED%A0%80', '%F4%90%80%80', '%e4%b8'), fc.string({ maxLength: 6 }).map(encodeURIComponent)).map(([a, b, c]) => `${a}${b}z${c}`); // z: not a hex digit, so nothing completes the broken escape
    for (const r of routes.filter((x) => pathParamNames(x.path).length > 0)) {
      await t.resolves(fc.assert(fc.asyncProperty(bad, fc.boolean(), async (segment, withKey) => {
        const key = keyOf(r);
        const a = await call(r.method, concrete(r.path, segment), { headers: withKey && key ? { authorization: `Bearer ${key}`, 'content-type': 'application/json' } : {}, ...(r.method !== 'GET' && r.method !== 'DELETE' ? { body: '{}' } : {}) });
        return sane(a, `${routeLabel(r)} ${segment}`) && a.status === 400 && a.code === 'BAD_PATH';
      }), { numRuns: RUNS }), `${routeLabel(r)}: every malformed escape is BAD_PATH`);
    }
  });

  t.test('wrong methods: 405 with the Allow of the path', async (t) => {
    for (const r of routes) {
      const path = concrete(r.path);
      const allow = allowed(routes, path);
      for (const m of METHODS.filter((x) => !allow.includes(x))) {
        const a = await call(m, path, { headers: { authorization: `Bearer ${keyOf(r) ?? 'none'}` } });
        t.equal(a.status, 405, `${m} ${path}`);
        t.equal(a.allow, allow.join(', '), `${m} ${path}: Allow`);
      }
    }
  });

  t.test('bad and missing keys: 401 on every route with a realm', async (t) => {
    const header = fc.oneof(fc.constant(undefined), fc.constant(''), fc.constant('Bearer'), fc.string({ maxLength: 80 }).map((s) => `Bearer ${s.replace(/[^\x21-\x7e]/g, 'x')}`), fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')));
    for (const r of routes.filter((x) => x.kind === 'http' && x.realm !== 'none')) {
      await t.resolves(fc.assert(fc.asyncProperty(header, async (h) => {
        const a = await call(r.method, concrete(r.path), { headers: { ...(h !== undefined ? { authorization: h } : {}), 'content-type': 'application/json' }, ...(r.method !== 'GET' && r.method !== 'DELETE' ? { body: '{}' } : {}) });
        return sane(a, `${routeLabel(r)} key ${JSON.stringify(h)}`) && a.status === 401;
      }), { numRuns: RUNS }), `${routeLabel(r)}: no bad key gets past auth`);
    }
  });

  t.test('random bytes under random or missing content types: a 4xx error or the route\'s success', async () => {
    const contentType = fc.oneof(fc.constant(undefined), fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/json-patch+json', 'text/csv', 'text/plain', 'application/x-www-form-urlencoded', 'application/xml', ''), fc.string({ maxLength: 30 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')));
    for (const r of http) {
      await fc.assert(fc.asyncProperty(contentType, fc.uint8Array({ maxLength: 600 }), async (ct, bytes) => {
        const key = keyOf(r);
        const a = await call(r.method, concrete(r.path), { headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(ct !== undefined ? { 'content-type': ct } : {}) }, ...(r.method !== 'GET' ? { body: bytes } : {}) });
        return sane(a, `${routeLabel(r)} ${ct ?? '(no content-type)'} ${bytes.length} bytes`);
      }), { numRuns: RUNS });
    }
  });

  t.test('deep JSON is 422 and huge JSON is 413 on every JSON route', async (t) => {
    for (const r of http.filter((x) => x.kind === 'http' && x.body?.kind === 'json')) {
      const key = keyOf(r);
      const headers = { ...(key ? { authorization: `Bearer ${key}` } : {}), 'content-type': 'application/json' };
      await fc.assert(fc.asyncProperty(fc.integer({ min: 33, max: 1500 }), fc.constantFrom('[', '{"a":'), async (depth, open) => {
        const close = open === '[' ? ']' : '}';
        const a = await call(r.method, concrete(r.path), { headers, body: `${open.repeat(depth)}1${close.repeat(depth)}` });
        return sane(a, `${routeLabel(r)} depth ${depth}`) && ((a.status === 422 && a.code === 'VALIDATION') || a.status === 413);
      }), { numRuns: RUNS });
      const limit = r.kind === 'http' && r.body?.kind === 'json' && typeof r.body.limit === 'number' ? r.body.limit : MAX_BODY;
      const huge = `{"x":"${'a'.repeat(limit + 10)}"}`;
      const a = await call(r.method, concrete(r.path), { headers, body: huge });
      t.equal(a.status, 413, `${routeLabel(r)}: over its limit`);
    }
  });

  const health = await fetch(`${gw.url}/healthz`);
  t.equal(health.status, 200, 'the gateway is still up');
});
