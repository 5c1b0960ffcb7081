import t from 'tap';
import { readFileSync } from 'node:fs';
import { allRoutes, buildOpenApi } from '../../src/http/openapi.js';
import { pathParamNames, routeLabel } from '../../src/http/route.js';
import { withRouteTable } from '../../src/http/route-docs.js';
import { ERROR_CODES } from '../../src/core/errors.js';

type Op = { operationId: string; security?: unknown[]; parameters?: { name: string; in: string }[]; requestBody?: unknown; responses: Record<string, unknown> };
type Doc = { paths: Record<string, Record<string, Op>>; info: { description: string }; components: { schemas: Record<string, unknown> } };

t.test('docs/openapi.json is the generated document (run `npm run openapi` after API changes)', async (t) => {
  const committed = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
  t.same(committed, buildOpenApi());
});

t.test('the document has exactly one operation per route-table entry, with its realm, path parameters and body', async (t) => {
  const doc = buildOpenApi() as Doc;
  const routes = allRoutes();
  const ops = Object.entries(doc.paths).flatMap(([path, byMethod]) => Object.keys(byMethod).map((m) => `${m.toUpperCase()} ${path}`));
  t.same(ops.sort(), routes.map(routeLabel).sort(), 'no operation without an entry, no entry without an operation');
  for (const r of routes) {
    const op = doc.paths[r.path]?.[r.method.toLowerCase()] as Op;
    t.equal(op.operationId, routeLabel(r));
    t.equal(op.security === undefined, r.realm === 'none', `${routeLabel(r)}: security follows the realm`);
    if (r.realm !== 'none') t.ok(op.responses['401'], `${routeLabel(r)}: 401 documented`);
    for (const name of pathParamNames(r.path)) {
      t.ok(op.parameters?.some((p) => p.in === 'path' && p.name === name), `${routeLabel(r)}: path parameter ${name}`);
      t.ok(op.responses['400'], `${routeLabel(r)}: 400 BAD_PATH documented`);
    }
    if (r.kind === 'http' && r.body !== undefined) {
      t.ok(op.requestBody, `${routeLabel(r)}: request body documented`);
      t.ok(op.responses['413'] && op.responses['415'], `${routeLabel(r)}: 413 and 415 documented`);
    }
    if (r.kind === 'http' && r.write) t.ok(op.responses['503'], `${routeLabel(r)}: 503 NOT_READY documented`);
  }
  for (const p of ['/v1/messages', '/v1/messages/batch', '/v1/messages/{id}', '/healthz', '/readyz', '/metrics', '/openapi.json', '/v1/pda', '/v1/mo/stream', '/v1/admin/pda/devices', '/v1/admin/pda/devices/{id}/state']) {
    t.ok(doc.paths[p], `${p} is described`);
  }
  for (const code of Object.keys(ERROR_CODES)) t.match(doc.info.description, code);
});

t.test('the README lists exactly the routes of the tables (generated section, `npm run openapi`)', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  t.equal(withRouteTable(readme), readme, 'the generated section is current');
  for (const r of allRoutes()) t.match(readme, `| \`${routeLabel(r)}\` |`, `${routeLabel(r)} is in the README`);
});
