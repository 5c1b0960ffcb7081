/**
 * The README's list of every route, generated from the route tables (between
 * the markers below; `npm run openapi` rewrites it with docs/openapi.json,
 * and a test checks the README holds exactly this text).
 */
import { allRoutes } from './openapi.js';
import type { Realm, RouteEntry } from './route.js';

export const ROUTES_BEGIN = '<!-- routes:begin (generated from the route tables by `npm run openapi`; do not edit) -->';
export const ROUTES_END = '<!-- routes:end -->';

const REALM: Record<Realm, string> = { sending: 'API key', admin: 'admin key', pdaAdmin: 'PDA admin key', none: '—' };

function bodyOf(r: RouteEntry<never>): string {
  if (r.kind === 'upgrade') return 'WebSocket';
  if (r.body === undefined) return '—';
  const limit = r.body.limit === undefined || r.body.limit === 'body' ? '`server.maxBodyBytes`' : r.body.limit === 'import' ? '`directory.maxImportBytes`' : `${r.body.limit} B`;
  return r.body.kind === 'json' ? `JSON \`${r.body.name}\` ≤ ${limit}` : `CSV ≤ ${limit}`;
}

export function routeTableMarkdown(): string {
  const rows = allRoutes().map((r) => `| \`${r.method} ${r.path}\` | ${REALM[r.realm]} | ${bodyOf(r)} | ${r.kind === 'http' && r.write ? 'yes' : ''} | ${r.summary.replace(/\|/g, '\\|')} |`);
  return [ROUTES_BEGIN, '', '| route | auth | body | write (503 while draining) | what |', '|---|---|---|---|---|', ...rows, '', ROUTES_END].join('\n');
}

/** `readme` with its generated section replaced (throws when the markers are missing). */
export function withRouteTable(readme: string): string {
  const a = readme.indexOf(ROUTES_BEGIN);
  const b = readme.indexOf(ROUTES_END);
  if (a < 0 || b < a) throw new Error('README.md has no routes:begin / routes:end markers');
  return readme.slice(0, a) + routeTableMarkdown() + readme.slice(b + ROUTES_END.length);
}
