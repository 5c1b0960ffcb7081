/**
 * The OpenAPI 3.1 document, generated from the route tables: served at
 * /openapi.json and committed as docs/openapi.json (`npm run openapi`; a
 * test checks the served document equals the file and covers every entry of
 * every table). Request schemas are the TypeBox objects the mount validates
 * with; the errors every route can answer (400 BAD_PATH, 401, 413, 415, 422,
 * 503 NOT_READY, 500) are derived from the entry, so they cannot drift.
 */
import { ERROR_CODES } from '../core/errors.js';
import { RECIPIENT_STATES } from '../core/message.js';
import { schemasForOpenApi } from '../ingest/schemas.js';
import { MESSAGE_ROUTES } from '../ingest/server.js';
import { ADMIN_HTTP_ROUTES } from '../ingest/admin.js';
import { OFFICE_ROUTES } from '../office/routes.js';
import { ARCHIVE_ROUTES } from '../office/archive-routes.js';
import { PDA_ROUTES } from '../pda/ws-route.js';
import { PDA_ADMIN_ROUTES } from '../pda/admin-routes.js';
import { DOC_ROUTES, OPS_ROUTES } from './ops.js';
import { boundedParamSchema, pathParamNames, routeLabel, type Realm, type RouteEntry } from './route.js';

/** Every table of every part, in the order the composition root mounts them. */
export const API_TABLES: readonly (readonly RouteEntry<never>[])[] = [
  OPS_ROUTES, DOC_ROUTES, MESSAGE_ROUTES, OFFICE_ROUTES, PDA_ROUTES, PDA_ADMIN_ROUTES, ADMIN_HTTP_ROUTES, ARCHIVE_ROUTES,
];

export function allRoutes(): RouteEntry<never>[] {
  return API_TABLES.flat();
}

const SECURITY: Record<Realm, unknown[] | undefined> = {
  sending: [{ bearer: [] }],
  admin: [{ admin: [] }],
  pdaAdmin: [{ pdaAdmin: [] }],
  none: undefined,
};

const jsonRef = (name: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${name}` } } });

function strip(schema: unknown): unknown {
  // TypeBox adds symbol keys (Kind); JSON.stringify drops them. Deep copy only.
  return JSON.parse(JSON.stringify(schema)) as unknown;
}

/** The error codes the mount itself answers for an entry, by status. */
function derivedErrors(r: RouteEntry<never>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const add = (status: string, code: string): void => void (out[status] ??= []).push(code);
  if (pathParamNames(r.path).length > 0) add('400', 'BAD_PATH');
  if (r.kind === 'upgrade') add('426', 'UPGRADE_REQUIRED');
  if (r.kind === 'http') {
    if (r.body?.kind === 'json') add('400', 'BAD_JSON');
    if (r.body !== undefined) {
      add('413', 'BODY_TOO_LARGE');
      add('415', 'UNSUPPORTED_MEDIA_TYPE');
    }
    if (r.body?.kind === 'json' || r.headers?.some((h) => h.name === 'Idempotency-Key') || (r.query?.length ?? 0) > 0) add('422', 'VALIDATION');
    if (r.body?.kind === 'json') add('422', 'JSON_TOO_LARGE');
    if (r.write) {
      add('503', 'NOT_READY');
      add('503', 'STORAGE_FULL');
    }
    add('500', 'INTERNAL');
  }
  if (r.realm !== 'none') add('401', 'UNAUTHORIZED');
  return out;
}

function operation(r: RouteEntry<never>, schemas: Record<string, unknown>): Record<string, unknown> {
  const parameters = [
    ...pathParamNames(r.path).map((name) => ({ name, in: 'path', required: true, schema: boundedParamSchema(r.paramSchemas?.[name]) })),
    ...(r.query ?? []).map((q) => ({ name: q.name, in: 'query', required: q.required ?? false, schema: boundedParamSchema(q.schema), ...(q.description !== undefined ? { description: q.description } : {}) })),
    ...(r.headers ?? []).map((h) => ({ name: h.name, in: 'header', required: h.required ?? false, schema: h.schema ?? { type: 'string' }, ...(h.description !== undefined ? { description: h.description } : {}) })),
  ];
  let requestBody: Record<string, unknown> | undefined;
  if (r.kind === 'http' && r.body?.kind === 'json') {
    const known = schemas[r.body.name];
    const mine = strip(r.body.schema);
    if (known !== undefined && JSON.stringify(known) !== JSON.stringify(mine)) throw new Error(`two different schemas are named ${r.body.name}`);
    schemas[r.body.name] = mine;
    requestBody = { required: r.body.emptyAs === undefined, content: jsonRef(r.body.name) };
  } else if (r.kind === 'http' && r.body?.kind === 'csv') {
    requestBody = { required: true, description: r.body.description, content: { 'text/csv': { schema: { type: 'string' } } } };
  }
  const responses: Record<string, unknown> = {};
  for (const [status, doc] of Object.entries(r.responses)) {
    const d = typeof doc === 'string' ? { description: doc } : doc;
    const isError = Number(status) >= 400;
    responses[status] = {
      description: d.description,
      ...(d.schema !== undefined ? { content: jsonRef(d.schema) } : isError ? { content: jsonRef('Error') } : d.contentType !== undefined ? { content: { [d.contentType]: { schema: { type: 'string' } } } } : {}),
    };
  }
  for (const [status, codes] of Object.entries(derivedErrors(r))) {
    const existing = responses[status] as { description: string } | undefined;
    const missing = codes.filter((c) => existing === undefined || !existing.description.includes(c));
    if (missing.length === 0) continue;
    responses[status] = { description: existing ? `${existing.description}; or ${missing.join(', ')}` : missing.join(' or '), content: jsonRef('Error') };
  }
  const security = SECURITY[r.realm];
  return {
    operationId: routeLabel(r),
    summary: r.summary,
    tags: [...r.tags],
    ...(security !== undefined ? { security } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(requestBody !== undefined ? { requestBody } : {}),
    responses: Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b))),
  };
}

/** A recipient's parts in the status view (GET /v1/messages/{id}). */
const SEGMENTS = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      state: { type: 'string' },
      operatorMessageId: { type: 'string' },
      submittedAt: { type: 'string', format: 'date-time' },
      doneAt: { type: 'string', format: 'date-time' },
      error: { type: 'string' },
    },
  },
};

export function buildOpenApi(): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(schemasForOpenApi)) schemas[name] = strip(s);
  schemas['MessageStatus'] = {
    type: 'object',
    required: ['id', 'tier', 'recipients', 'segments', 'status', 'summary', 'items'],
    properties: {
      id: { type: 'string' },
      tier: { type: 'string' },
      channel: { type: 'string' },
      encoding: { type: 'string', enum: ['gsm7', 'ucs2'] },
      segments: { type: 'integer' },
      recipients: { type: 'integer' },
      createdAt: { type: 'string', format: 'date-time' },
      expiresAt: { type: 'string', format: 'date-time' },
      reference: { type: 'string' },
      status: { type: 'string', enum: ['scheduled', 'in-progress', 'complete'] },
      scheduledAt: { type: 'string', format: 'date-time', description: 'present while scheduled' },
      callback: {
        type: 'object',
        description: 'present when the message was sent with callbackUrl: the completion callback (one POST once every recipient is final)',
        properties: { state: { type: 'string', enum: ['waiting', 'failed', 'done'] }, attempts: { type: 'integer' }, lastError: { type: 'string' } },
      },
      statusCallback: {
        type: 'object',
        description: 'present when the message was sent with statusCallback: the events asked for, and how many were given up after callbacks.attempts (lastError: refused target, timeout, connection failed, HTTP <status>, no signing secret)',
        properties: { events: { type: 'array', items: { type: 'string', enum: ['submitted', 'final'] } }, failed: { type: 'integer' }, lastError: { type: 'string' } },
      },
      summary: { type: 'object', properties: Object.fromEntries(RECIPIENT_STATES.map((s) => [s, { type: 'integer' }])) },
      items: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            index: { type: 'integer' },
            to: { type: 'string' },
            state: { type: 'string', enum: [...RECIPIENT_STATES] },
            acceptedAt: { type: 'string', format: 'date-time' },
            updatedAt: { type: 'string', format: 'date-time' },
            error: { type: 'string' },
            segments: { ...SEGMENTS, description: 'the parts of the current (last) attempt' },
            attempts: {
              type: 'array',
              maxItems: 2,
              description: 'present when the recipient was rerouted (a routing rule\'s reroute: a receipt UNDELIV/REJECTD, tried once more through another carrier\'s account): every attempt, oldest first, each with its own parts as planned for its account; the last is the current one, whose state is the recipient\'s',
              items: {
                type: 'object',
                required: ['attempt', 'state', 'segments'],
                properties: {
                  attempt: { type: 'integer', minimum: 1, maximum: 2 },
                  state: { type: 'string', enum: [...RECIPIENT_STATES] },
                  account: { type: 'string', description: 'the account its parts went through' },
                  endedAt: { type: 'string', format: 'date-time', description: 'absent while the attempt is open' },
                  error: { type: 'string' },
                  segments: SEGMENTS,
                },
              },
            },
          },
        },
      },
      next: { type: 'integer', description: 'cursor of the next page; absent on the last page' },
    },
  };
  schemas['BatchResult'] = {
    type: 'object',
    properties: {
      accepted: { type: 'integer' },
      rejected: { type: 'integer' },
      results: { type: 'array', items: { type: 'object', description: 'per item, in request order: { index, httpStatus: 202, ...Accepted } or { index, httpStatus: 4xx, status: "rejected", error }' } },
    },
  };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of allRoutes()) {
    const method = r.method.toLowerCase();
    const at = (paths[r.path] ??= {});
    if (at[method] !== undefined) throw new Error(`two routes for ${routeLabel(r)}`);
    at[method] = operation(r, schemas);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Government SMS mobile-office gateway',
      version: '1.0.0',
      description: `Error codes: ${Object.keys(ERROR_CODES).join(', ')}`,
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'API key: a unit\'s key issued by the admin API, or a bootstrap key from config auth.apiKeys' },
        admin: { type: 'http', scheme: 'bearer', description: 'Admin key from config admin.keys (/v1/admin/...)' },
        pdaAdmin: { type: 'http', scheme: 'bearer', description: 'PDA provisioning key, config pda.adminKey (/v1/admin/pda/...)' },
      },
      schemas: Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b))),
    },
    paths,
  };
}
