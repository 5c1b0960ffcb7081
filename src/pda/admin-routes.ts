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
import { Type } from '@sinclair/typebox';
import { GatewayError } from '../core/errors.js';
import { parseIsoDuration } from '../core/duration.js';
import { route, type HttpRoute } from '../http/route.js';
import type { Logger } from '../telemetry/logger.js';
import type { PdaChannel } from './channel.js';
import { MAX_LIST_PAGE, checkDeviceId, checkPersonId, checkUnit } from './device-registry.js';
import type { DeviceState, DeviceView } from './types.js';

export const PDA_ADMIN_PREFIX = '/v1/admin/pda/devices';
/** Shortest admin key accepted. */
export const MIN_ADMIN_KEY_LENGTH = 16;
const MAX_ADMIN_BODY = 16 * 1024;

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

export interface PdaAdminRouteDeps {
  readonly channel: PdaChannel;
  readonly logger: Logger;
}

/** `Authorization: Bearer <pda.adminKey>` → the pdaAdmin realm; an empty key disables the API (401). */
export function pdaAdminRealm(adminKey: string): ((authorization: string) => true) | undefined {
  if (adminKey !== '' && adminKey.length < MIN_ADMIN_KEY_LENGTH) {
    throw new GatewayError('CONFIG_INVALID', `pda.adminKey must be at least ${MIN_ADMIN_KEY_LENGTH} characters (or empty to disable the PDA admin API)`, {
      details: [{ field: '/pda/adminKey', message: `at least ${MIN_ADMIN_KEY_LENGTH} characters` }],
    });
  }
  if (adminKey === '') return undefined;
  const expected = digest(adminKey);
  return (h: string) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (!m || !timingSafeEqual(digest(m[1] as string), expected)) throw new GatewayError('UNAUTHORIZED', 'missing or wrong PDA admin key');
    return true;
  };
}

// Bodies are checked by the handlers (their messages name each field); the schemas document them.
const DeviceCreateSchema = Type.Object({ deviceId: Type.String(), personId: Type.String(), unit: Type.String(), keyTtl: Type.Optional(Type.String({ description: 'ISO-8601 duration, e.g. P90D' })) }, { additionalProperties: false });
const DeviceStateSchema = Type.Object({ state: Type.Union([Type.Literal('active'), Type.Literal('lost'), Type.Literal('revoked')]), reason: Type.Optional(Type.String()) }, { additionalProperties: false });
const DeviceKeySchema = Type.Object({ keyTtl: Type.Optional(Type.String({ description: 'ISO-8601 duration, e.g. P90D' })) }, { additionalProperties: false });
const DeviceAssignmentSchema = Type.Object({ personId: Type.String(), unit: Type.String() }, { additionalProperties: false });

export const PDA_ADMIN_ROUTES: readonly HttpRoute<PdaAdminRouteDeps>[] = [
  route<PdaAdminRouteDeps, 'pdaAdmin'>({
    method: 'POST', path: '/v1/admin/pda/devices', realm: 'pdaAdmin', tags: ['pda-admin'], write: true,
    summary: 'Register a device: its key is in this answer only',
    body: { kind: 'json', name: 'PdaDeviceCreate', schema: DeviceCreateSchema, check: false, emptyAs: null, limit: MAX_ADMIN_BODY },
    responses: { '201': '{ device, key }', '409': 'PDA_DEVICE_EXISTS' },
    handle: async ({ deps, json: body }) => {
      const { channel, logger } = deps;
      const registry = channel.registry;
      const withConnection = (d: DeviceView): DeviceView & { connected: boolean } => ({ ...d, connected: channel.isConnected(d.id) });
    const b = fields(body, ['deviceId', 'personId', 'unit', 'keyTtl']);
    const ttl = keyTtl(b['keyTtl']);
    const issued = await registry.register({
      deviceId: checkDeviceId(b['deviceId']),
      personId: checkPersonId(b['personId']),
      unit: checkUnit(b['unit']),
      ...(ttl !== undefined ? { keyTtlMs: ttl } : {}),
    });
    logger.info({ deviceId: issued.device.id, personId: issued.device.personId }, 'PDA device registered');
    return { status: 201, body: { device: withConnection(issued.device), key: issued.key } };
    },
  }),
  route<PdaAdminRouteDeps, 'pdaAdmin'>({
    method: 'GET', path: '/v1/admin/pda/devices', realm: 'pdaAdmin', tags: ['pda-admin'],
    summary: 'Devices, filtered by person, unit or state',
    query: [{ name: 'person', schema: { type: 'string' } }, { name: 'unit', schema: { type: 'string' } }, { name: 'state', schema: { type: 'string', enum: ['active', 'lost', 'revoked'] } }, { name: 'cursor', schema: { type: 'string' } }, { name: 'limit', schema: { type: 'integer', minimum: 1, maximum: MAX_LIST_PAGE } }],
    responses: { '200': '{ items, next? }', '422': 'VALIDATION (limit, state, person, cursor)' },
    handle: ({ deps, query }) => {
      const { channel } = deps;
      const registry = channel.registry;
      const withConnection = (d: DeviceView): DeviceView & { connected: boolean } => ({ ...d, connected: channel.isConnected(d.id) });
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
    return { status: 200, body: { items: page.items.map(withConnection), ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  }),
  route<PdaAdminRouteDeps, 'pdaAdmin'>({
    method: 'GET', path: '/v1/admin/pda/devices/{id}', realm: 'pdaAdmin', tags: ['pda-admin'],
    summary: 'One device, with whether it is connected now',
    responses: { '200': 'device', '404': 'NOT_FOUND', '422': 'VALIDATION: not a device id' },
    handle: ({ deps, params }) => {
      const { channel } = deps;
      const registry = channel.registry;
      const withConnection = (d: DeviceView): DeviceView & { connected: boolean } => ({ ...d, connected: channel.isConnected(d.id) });
    const id = checkDeviceId(params[0], 'id');
    const d = registry.get(id);
    if (!d) throw new GatewayError('NOT_FOUND', `no PDA device ${id}`);
    return { status: 200, body: withConnection(d) };
    },
  }),
  route<PdaAdminRouteDeps, 'pdaAdmin'>({
    method: 'POST', path: '/v1/admin/pda/devices/{id}/state', realm: 'pdaAdmin', tags: ['pda-admin'], write: true,
    summary: 'Mark a device active, lost or revoked (lost/revoked: its key stops working; reactivating issues a new key)',
    body: { kind: 'json', name: 'PdaDeviceState', schema: DeviceStateSchema, check: false, emptyAs: null, limit: MAX_ADMIN_BODY },
    responses: { '200': '{ device, key? }', '404': 'NOT_FOUND', '409': 'PDA_DEVICE_STATE' },
    handle: async ({ deps, params, json: body }) => {
      const { channel, logger } = deps;
      const registry = channel.registry;
      const withConnection = (d: DeviceView): DeviceView & { connected: boolean } => ({ ...d, connected: channel.isConnected(d.id) });
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
    return { status: 200, body: { device: withConnection(out.device), ...(out.key !== undefined ? { key: out.key } : {}) } };
    },
  }),
  route<PdaAdminRouteDeps, 'pdaAdmin'>({
    method: 'POST', path: '/v1/admin/pda/devices/{id}/key', realm: 'pdaAdmin', tags: ['pda-admin'], write: true,
    summary: 'Rotate the device key (the old one stops working); an empty body is {}',
    body: { kind: 'json', name: 'PdaDeviceKey', schema: DeviceKeySchema, check: false, emptyAs: {}, limit: MAX_ADMIN_BODY },
    responses: { '200': '{ device, key }', '404': 'NOT_FOUND', '409': 'PDA_DEVICE_STATE' },
    handle: async ({ deps, params, json: body }) => {
      const { channel, logger } = deps;
      const registry = channel.registry;
      const withConnection = (d: DeviceView): DeviceView & { connected: boolean } => ({ ...d, connected: channel.isConnected(d.id) });
    const id = checkDeviceId(params[0], 'id');
    const b = fields(body ?? {}, ['keyTtl']);
    const issued = await registry.rotateKey(id, keyTtl(b['keyTtl']));
    logger.info({ deviceId: id, keyVersion: issued.device.keyVersion }, 'PDA device key rotated');
    return { status: 200, body: { device: withConnection(issued.device), key: issued.key } };
    },
  }),
  route<PdaAdminRouteDeps, 'pdaAdmin'>({
    method: 'POST', path: '/v1/admin/pda/devices/{id}/assignment', realm: 'pdaAdmin', tags: ['pda-admin'], write: true,
    summary: 'Hand the device to another person or unit',
    body: { kind: 'json', name: 'PdaDeviceAssignment', schema: DeviceAssignmentSchema, check: false, emptyAs: null, limit: MAX_ADMIN_BODY },
    responses: { '200': 'device', '404': 'NOT_FOUND', '409': 'PDA_DEVICE_STATE' },
    handle: async ({ deps, params, json: body }) => {
      const { channel, logger } = deps;
      const registry = channel.registry;
      const withConnection = (d: DeviceView): DeviceView & { connected: boolean } => ({ ...d, connected: channel.isConnected(d.id) });
    const id = checkDeviceId(params[0], 'id');
    const b = fields(body, ['personId', 'unit']);
    const device = await registry.reassign(id, { personId: checkPersonId(b['personId']), unit: checkUnit(b['unit']) });
    logger.info({ deviceId: id, personId: device.personId }, 'PDA device reassigned');
    return { status: 200, body: withConnection(device) };
    },
  }),
];
