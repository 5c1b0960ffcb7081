/**
 * Mount route tables on a uWS app. Every request of every route goes through
 * the same steps, in this order, so no route can skip one:
 *
 *   read headers, path params and query (synchronously: `req` dies after this call)
 *   path params percent-decoded ........................ 400 BAD_PATH (before auth)
 *   body read, bounded by the entry's limit ............ 413 BODY_TOO_LARGE (connection closed)
 *   auth by realm ...................................... 401 / 403
 *   (every refusal below waits until the body is read, so the connection stays usable)
 *   write route while draining ......................... 503 NOT_READY
 *   write route while storage is full .................. 503 STORAGE_FULL + Retry-After (src/storage/health.ts)
 *   content type by body kind .......................... 415 UNSUPPORTED_MEDIA_TYPE
 *   Idempotency-Key at most 200 characters ............. 422 VALIDATION
 *   JSON: depth bound, parse, schema ................... 422 / 400 BAD_JSON / 422 VALIDATION
 *   handler ............................................ its reply, or its GatewayError
 *   anything else thrown ............................... 500 INTERNAL (logged with the route), gateway stays up
 *   one count in smsgw_http_requests_total{route="METHOD /path/{param}", status}
 *
 * A path no route matches is 404 NOT_FOUND; a path some route matches with
 * another method is 405 METHOD_NOT_ALLOWED with `Allow`; a plain GET of a
 * WebSocket path is 426 UPGRADE_REQUIRED with `Upgrade: websocket`.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { Logger } from 'pino';
import { GatewayError } from '../core/errors.js';
import { Exchange, pathParams, readBody } from '../ingest/http.js';
import { asGatewayError } from '../ingest/intake.js';
import type { Principal } from '../core/send.js';
import { validated } from '../ingest/schemas.js';
import type { Actor } from '../directory/types.js';
import { boundCounter, type BoundCounter, type Metrics } from '../telemetry/metrics.js';
import { checkQuery } from './query.js';
import { checkCsvContentType, checkJsonContentType, parseBoundedJson, type JsonBounds } from './body.js';
import { pathParamNames, routeLabel, uwsPattern, type BodyLimit, type HttpRoute, type MountedTable, type Realm, type Reply } from './route.js';

export const MAX_IDEMPOTENCY_KEY = 200;

/** Resolved by the next check phase; shared by every write route that waits in this turn (one timer a turn, not a request). */
let inHand: Promise<void> | undefined;
function afterInputInHand(): Promise<void> {
  inHand ??= new Promise((resolve) => {
    setImmediate(() => {
      inHand = undefined;
      resolve();
    });
  });
  return inHand;
}

export interface Door {
  /** Authenticators by realm; a realm without one refuses every request (401). */
  readonly realms: {
    readonly sending?: (authorization: string) => Principal;
    readonly admin?: (authorization: string) => Actor;
    readonly pdaAdmin?: (authorization: string) => true;
  };
  /** False while draining: write routes answer 503 NOT_READY. */
  accepting(): boolean;
  /** Throws STORAGE_FULL while the data directory cannot take writes: write routes answer 503 with Retry-After. */
  readonly assertWritable?: () => void;
  readonly limits: { readonly body: number; readonly import: number; readonly json?: JsonBounds };
  readonly metrics: Metrics;
  readonly logger: Logger;
}

const METHOD_FN = { GET: 'get', POST: 'post', PUT: 'put', PATCH: 'patch', DELETE: 'del' } as const;

export function mountTables(app: TemplatedApp, tables: readonly MountedTable[], door: Door): void {
  for (const table of tables) {
    for (const entry of table.routes) {
      if (entry.kind === 'upgrade') {
        entry.attach(app, table.deps, { authenticate: (_realm, header) => authenticate(door, 'sending', header) as Principal });
        // uWS passes a GET without an upgrade on to the next handler: answer it here, before
        // a parameter route of the same shape (/v1/mo/{id} for /v1/mo/stream) can take it.
        const counts = new StatusCounts(door, routeLabel(entry));
        app.get(uwsPattern(entry.path), (res) => {
          const ex = new Exchange(res);
          ex.error(new GatewayError('UPGRADE_REQUIRED', `${entry.path} takes only a WebSocket upgrade`), { upgrade: 'websocket' });
          counts.count(ex.status);
        });
      } else {
        const mounted = mount(entry, table.deps, door);
        app[METHOD_FN[entry.method]](uwsPattern(entry.path), (res, req) => serve(res, req, mounted));
      }
    }
  }
  const all = tables.flatMap((t) => t.routes);
  const other = new StatusCounts(door, 'other');
  app.any('/*', (res, req) => {
    const ex = new Exchange(res);
    try {
      ex.head = req.getMethod() === 'head';
      const url = req.getUrl();
      const allow = allowed(all, url);
      if (allow.length > 0) ex.error(new GatewayError('METHOD_NOT_ALLOWED', `${req.getMethod().toUpperCase()} is not allowed on ${url.slice(0, 200)}`), { allow: allow.join(', ') });
      else ex.error(new GatewayError('NOT_FOUND', `no route ${url.slice(0, 200)}`));
    } catch (e) {
      internal(ex, e, 'other', door.logger);
    }
    other.count(ex.status);
  });
}

/** smsgw_http_requests_total of one route label, a bound counter per status (src/telemetry/metrics.ts). */
class StatusCounts {
  private readonly byStatus = new Map<number, BoundCounter>();
  constructor(private readonly door: Door, private readonly label: string) {}

  /** One request answered with `status` (0: never answered, the client went away: 499). */
  count(status: number): void {
    const s = status || 499;
    let c = this.byStatus.get(s);
    if (c === undefined) {
      c = boundCounter(this.door.metrics.httpRequests, { route: this.label, status: String(s) });
      this.byStatus.set(s, c);
    }
    c.inc();
  }
}

/** What every request of a route needs, worked out once when it is mounted. */
interface Mounted {
  readonly entry: HttpRoute<unknown>;
  readonly deps: unknown;
  readonly door: Door;
  readonly label: string;
  readonly paramCount: number;
  /** The body limit in bytes (routes with a body). */
  readonly limit: number;
  readonly counts: StatusCounts;
}

function mount(entry: HttpRoute<unknown>, deps: unknown, door: Door): Mounted {
  const label = routeLabel(entry);
  return { entry, deps, door, label, paramCount: pathParamNames(entry.path).length, limit: limitOf(entry.body?.limit, door), counts: new StatusCounts(door, label) };
}

/** Methods of the routes whose pattern matches `url` (segment by segment; a {param} matches any non-empty segment). */
export function allowed(routes: readonly { method: string; path: string }[], url: string): string[] {
  const segs = url.split('/');
  const out = new Set<string>();
  for (const r of routes) {
    const pat = r.path.split('/');
    if (pat.length === segs.length && pat.every((p, i) => (p.startsWith('{') ? (segs[i] ?? '') !== '' : p === segs[i]))) out.add(r.method);
  }
  return [...out].sort();
}

function authenticate(door: Door, realm: Realm, header: string): Principal | Actor | true | undefined {
  if (realm === 'none') return undefined;
  const fn = door.realms[realm];
  if (!fn) throw new GatewayError('UNAUTHORIZED', realm === 'pdaAdmin' ? 'the PDA admin API is disabled (pda.adminKey is empty)' : `no ${realm} keys are configured`);
  return fn(header);
}

function limitOf(limit: BodyLimit | undefined, door: Door): number {
  if (limit === undefined || limit === 'body') return door.limits.body;
  if (limit === 'import') return door.limits.import;
  return limit;
}

function serve(res: HttpResponse, req: HttpRequest, m: Mounted): void {
  const ex = new Exchange(res);
  try {
    // `req` is valid only now: read everything from it before any await.
    const authorization = req.getHeader('authorization');
    const contentType = req.getHeader('content-type');
    const idempotencyKey = req.getHeader('idempotency-key');
    const query = new URLSearchParams(req.getQuery() ?? '');
    let params: string[] = NO_PARAMS;
    let early: GatewayError | undefined;
    if (m.paramCount > 0) {
      try {
        params = pathParams(req, m.paramCount);
      } catch (e) {
        early = asGatewayError(e); // BAD_PATH: answered before auth
      }
    }
    // Never rejects: a refused body (BODY_TOO_LARGE) comes as its error.
    const body = m.entry.body ? readBody(ex, req, m.limit) : undefined;
    void respond(m, ex, early, authorization, contentType, idempotencyKey, query, params, body);
  } catch (e) {
    internal(ex, e, m.label, m.door.logger);
    m.counts.count(ex.status);
  }
}

/** Shared by the routes without path parameters (never written to). */
const NO_PARAMS: string[] = [];

async function respond(
  m: Mounted, ex: Exchange, early: GatewayError | undefined, authorization: string, contentType: string, idempotencyKey: string,
  query: URLSearchParams, params: string[], body: Promise<Buffer | GatewayError> | undefined,
): Promise<void> {
  const { entry, door } = m;
  try {
    if (early !== undefined) throw early;
    const who = authenticate(door, entry.realm, authorization);
    if (entry.write && !door.accepting()) throw new GatewayError('NOT_READY', 'the gateway is shutting down');
    if (entry.write) door.assertWritable?.();
    const spec = entry.body;
    if (spec?.kind === 'json') checkJsonContentType(contentType);
    else if (spec?.kind === 'csv') checkCsvContentType(contentType);
    if (idempotencyKey.length > MAX_IDEMPOTENCY_KEY) {
      throw new GatewayError('VALIDATION', 'Idempotency-Key is too long', { details: [{ field: 'Idempotency-Key', message: `at most ${MAX_IDEMPOTENCY_KEY} characters` }] });
    }
    checkQuery(entry.query, query);
    let json: unknown;
    let raw: Buffer | undefined;
    if (body !== undefined) {
      const read = await body;
      if (read instanceof GatewayError) throw read;
      if (spec?.kind === 'json') {
        json = parseBoundedJson(read, spec.emptyAs, door.limits.json);
        if (spec.check !== false) json = validated(spec.schema, json);
      } else raw = read;
    }
    if (entry.write) {
      // Let uWS finish the bytes in hand first (one macrotask): a request pipelined behind this
      // one makes uWS close the connection (it refuses a request while an answer is pending),
      // and the client then never learns the outcome. Do nothing for a client already gone: a
      // send accepted here would go out, and the client, seeing no answer, would send it again.
      await afterInputInHand();
      if (ex.aborted) {
        m.counts.count(0);
        return;
      }
    }
    const reply = await entry.handle({
      deps: m.deps,
      who: who,
      principal: who as Principal,
      actor: who as Actor,
      params,
      query,
      idempotencyKey,
      contentType,
      json,
      body: () => Promise.resolve(json),
      raw,
    });
    answer(ex, reply);
  } catch (e) {
    // Every early refusal (401/403, 503 draining or storage full, 415, …) waits for the body
    // first: a reply sent while the client is still writing leaves unread bytes behind, the
    // connection closes with them, and the client sees a reset instead of the error.
    if (body) await body;
    fail(ex, e, m.label, door.logger);
  }
  m.counts.count(ex.status);
}

function answer(ex: Exchange, reply: Reply): void {
  if ('text' in reply) ex.send(reply.status, reply.text, reply.contentType, reply.headers);
  else if (!('body' in reply)) ex.send(204, '', 'application/json', reply.headers);
  else ex.json(reply.status, reply.body, reply.headers);
}

function fail(ex: Exchange, e: unknown, label: string, logger: Logger): void {
  const err = asGatewayError(e);
  if (err.code === 'INTERNAL') logger.error({ err: err.cause ?? err, route: label }, 'request failed');
  ex.error(err);
}

function internal(ex: Exchange, e: unknown, label: string, logger: Logger): void {
  logger.error({ err: e, route: label }, 'request failed before its handler');
  ex.error(new GatewayError('INTERNAL', undefined, { cause: e }));
}
