/**
 * PDA device administration over HTTP, on the gateway's uWS app:
 *
 *   POST /v1/admin/pda/devices                    {deviceId, personId, unit, keyTtl?} → 201 {device, key}
 *   GET  /v1/admin/pda/devices?person=&unit=&state=&cursor=&limit=  → 200 {items, next?}
 *   GET  /v1/admin/pda/devices/{id}               → 200 device
 *   POST /v1/admin/pda/devices/{id}/state         {state: active|lost|revoked, reason?} → 200 {device, key?}
 *   POST /v1/admin/pda/devices/{id}/key           {keyTtl?} → 200 {device, key}   (rotate)
 *   POST /v1/admin/pda/devices/{id}/assignment    {personId, unit} → 200 device
 *
 * Authorization: `Bearer <pda.adminKey>` — a key of its own, not a tenant
 * API key: provisioning police devices is a different duty from sending
 * messages. An empty `pda.adminKey` disables the API (401 for everything).
 * A key is in the answer exactly once, when issued; it is never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { GatewayError, isGatewayError } from '../core/errors.js';
import { parseIsoDuration } from '../core/duration.js';
import { Exchange, parseJson, pathParams, readBody } from '../ingest/http.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { PdaChannel } from './channel.js';
import { MAX_LIST_PAGE, checkDeviceId, checkPersonId, checkUnit } from './device-registry.js';
import type { DeviceState, DeviceView } from './types.js';

export const PDA_ADMIN_PREFIX = '/v1/admin/pda/devices';
/** Shortest admin key accepted. */
export const MIN_ADMIN_KEY_LENGTH = 16;
const MAX_ADMIN_BODY = 16 * 1024;

export interface PdaAdminDeps {
  readonly channel: PdaChannel;
  /** `pda.adminKey`; empty disables the API. */
  readonly adminKey: string;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

type Json = Record<string, unknown>;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function fields(json: unknown, allowed: readonly string[]): Json {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new GatewayError('VALIDATION', 'the body must be a JSON object', { details: [{ field: '/', message: 'an object' }] });
  const unknown = Object.keys(json).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new GatewayError('VALIDATION', `unknown field ${unknown[0]}`, { details: unknown.map((k) => ({ field: `/${k}`, message: `unknown field (allowed: ${allowed.join(', ')})` })) });
  }
  return json as Json;
}

function keyTtl(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const ms = typeof v === 'string' ? parseIsoDuration(v) : undefined;
  if (ms === undefined) throw new GatewayError('VALIDATION', 'keyTtl: an ISO-8601 duration such as P90D', { details: [{ field: '/keyTtl', message: 'an ISO-8601 duration such as P90D' }] });
  return ms;
}

const STATES: readonly DeviceState[] = ['active', 'lost', 'revoked'];

export function attachPdaAdminRoutes(app: TemplatedApp, deps: PdaAdminDeps): void {
  const { channel, metrics, logger } = deps;
  if (deps.adminKey !== '' && deps.adminKey.length < MIN_ADMIN_KEY_LENGTH) {
    throw new GatewayError('CONFIG_INVALID', `pda.adminKey must be at least ${MIN_ADMIN_KEY_LENGTH} characters (or empty to disable the PDA admin API)`, {
      details: [{ field: '/pda/adminKey', message: `at least ${MIN_ADMIN_KEY_LENGTH} characters` }],
    });
  }
  const expected = deps.adminKey === '' ? undefined : digest(deps.adminKey);
  const registry = channel.registry;

  const withConnection = (d: DeviceView): DeviceView & { connected: boolean } => ({ ...d, connected: channel.isConnected(d.id) });

  const authorized = (req: HttpRequest): GatewayError | undefined => {
    if (!expected) return new GatewayError('UNAUTHORIZED', 'the PDA admin API is disabled (pda.adminKey is empty)');
    const h = req.getHeader('authorization');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (!m || !timingSafeEqual(digest(m[1] as string), expected)) return new GatewayError('UNAUTHORIZED', 'missing or wrong PDA admin key');
    return undefined;
  };

  /** Common frame of every route: auth (headers read synchronously), body, one answer, one count. */
  const route = (
    name: string,
    hasBody: boolean,
    handle: (ctx: { params: string[]; query: URLSearchParams; body: unknown }) => Promise<{ status: number; value: unknown }>,
    paramCount = 0,
  ) => (res: HttpResponse, req: HttpRequest): void => {
    const ex = new Exchange(res);
    let params: string[] = [];
    let denied: GatewayError | undefined;
    try {
      params = pathParams(req, paramCount); // 400 BAD_PATH before auth
      denied = authorized(req);
    } catch (e) {
      denied = e as GatewayError;
    }
    const query = new URLSearchParams(req.getQuery() ?? '');
    const contentType = req.getHeader('content-type');
    const body = hasBody ? readBody(ex, req, MAX_ADMIN_BODY) : Promise.resolve(Buffer.alloc(0));
    body.catch(() => undefined); // observed below
    void (async () => {
      try {
        if (hasBody) await body.catch(() => undefined); // drain first, so a refused request leaves the connection usable
        if (denied) throw denied;
        let json: unknown;
        const raw = await body;
        // An empty body reads as "no fields" (POST …/key needs none); a non-empty one must be JSON.
        if (raw.length > 0) {
          if (!/^application\/json\b/i.test(contentType)) throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'content-type must be application/json');
          json = parseJson(raw);
        }
        const out = await handle({ params, query, body: json });
        ex.json(out.status, out.value);
      } catch (e) {
        const err = isGatewayError(e) ? e : new GatewayError('INTERNAL', undefined, { cause: e });
        if (err.code === 'INTERNAL') logger.error({ err: e, route: name }, 'PDA admin request failed');
        ex.error(err, err.code === 'UNAUTHORIZED' ? { 'www-authenticate': 'Bearer' } : undefined);
      }
      metrics.httpRequests.inc({ route: name, status: String(ex.status || 499) });
    })();
  };

  app.post(PDA_ADMIN_PREFIX, route('POST /v1/admin/pda/devices', true, async ({ body }) => {
    const b = fields(body, ['deviceId', 'personId', 'unit', 'keyTtl']);
    const ttl = keyTtl(b['keyTtl']);
    const issued = await registry.register({
      deviceId: checkDeviceId(b['deviceId']),
      personId: checkPersonId(b['personId']),
      unit: checkUnit(b['unit']),
      ...(ttl !== undefined ? { keyTtlMs: ttl } : {}),
    });
    logger.info({ deviceId: issued.device.id, personId: issued.device.personId }, 'PDA device registered');
    return { status: 201, value: { device: withConnection(issued.device), key: issued.key } };
  }));

  app.get(PDA_ADMIN_PREFIX, route('GET /v1/admin/pda/devices', false, async ({ query }) => {
    const limitRaw = query.get('limit');
    const limit = limitRaw === null ? 100 : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_PAGE) {
      throw new GatewayError('VALIDATION', `limit: an integer from 1 to ${MAX_LIST_PAGE}`, { details: [{ field: 'limit', message: `1-${MAX_LIST_PAGE}` }] });
    }
    const state = query.get('state');
    if (state !== null && !(STATES as readonly string[]).includes(state)) {
      throw new GatewayError('VALIDATION', 'state: active, lost or revoked', { details: [{ field: 'state', message: 'active, lost or revoked' }] });
    }
    const person = query.get('person');
    const unit = query.get('unit');
    const cursor = query.get('cursor');
    const page = registry.list({
      limit,
      ...(person !== null ? { personId: checkPersonId(person, 'person') } : {}),
      ...(unit !== null ? { unit } : {}),
      ...(state !== null ? { state: state as DeviceState } : {}),
      ...(cursor !== null ? { cursor: checkDeviceId(cursor, 'cursor') } : {}),
    });
    return { status: 200, value: { items: page.items.map(withConnection), ...(page.next !== undefined ? { next: page.next } : {}) } };
  }));

  app.get(`${PDA_ADMIN_PREFIX}/:id`, route('GET /v1/admin/pda/devices/{id}', false, async ({ params }) => {
    const id = checkDeviceId(params[0], 'id');
    const d = registry.get(id);
    if (!d) throw new GatewayError('NOT_FOUND', `no PDA device ${id}`);
    return { status: 200, value: withConnection(d) };
  }, 1));

  app.post(`${PDA_ADMIN_PREFIX}/:id/state`, route('POST /v1/admin/pda/devices/{id}/state', true, async ({ params, body }) => {
    const id = checkDeviceId(params[0], 'id');
    const b = fields(body, ['state', 'reason']);
    const state = b['state'];
    if (typeof state !== 'string' || !(STATES as readonly string[]).includes(state)) {
      throw new GatewayError('VALIDATION', 'state: active, lost or revoked', { details: [{ field: '/state', message: 'active, lost or revoked' }] });
    }
    const reason = b['reason'];
    if (reason !== undefined && typeof reason !== 'string') throw new GatewayError('VALIDATION', 'reason: a string', { details: [{ field: '/reason', message: 'a string' }] });
    const out = await registry.setState(id, state as DeviceState, reason);
    logger.info({ deviceId: id, state }, 'PDA device state changed');
    return { status: 200, value: { device: withConnection(out.device), ...(out.key !== undefined ? { key: out.key } : {}) } };
  }, 1));

  app.post(`${PDA_ADMIN_PREFIX}/:id/key`, route('POST /v1/admin/pda/devices/{id}/key', true, async ({ params, body }) => {
    const id = checkDeviceId(params[0], 'id');
    const b = fields(body ?? {}, ['keyTtl']);
    const issued = await registry.rotateKey(id, keyTtl(b['keyTtl']));
    logger.info({ deviceId: id, keyVersion: issued.device.keyVersion }, 'PDA device key rotated');
    return { status: 200, value: { device: withConnection(issued.device), key: issued.key } };
  }, 1));

  app.post(`${PDA_ADMIN_PREFIX}/:id/assignment`, route('POST /v1/admin/pda/devices/{id}/assignment', true, async ({ params, body }) => {
    const id = checkDeviceId(params[0], 'id');
    const b = fields(body, ['personId', 'unit']);
    const device = await registry.reassign(id, { personId: checkPersonId(b['personId']), unit: checkUnit(b['unit']) });
    logger.info({ deviceId: id, personId: device.personId }, 'PDA device reassigned');
    return { status: 200, value: withConnection(device) };
  }, 1));
}
