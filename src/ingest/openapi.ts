/**
 * The OpenAPI 3.1 description served at /openapi.json and committed as
 * docs/openapi.json (a test checks the two agree). Request schemas come from
 * the same TypeBox objects the server validates with.
 */
import { schemasForOpenApi } from './schemas.js';
import { adminOpenApiPaths, adminSchemasForOpenApi } from './admin.js';
import { officeOpenApiPaths, officeSchemasForOpenApi } from '../office/routes.js';
import { ERROR_CODES } from '../core/errors.js';
import { RECIPIENT_STATES } from '../core/message.js';

const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });
const errorResponse = (description: string) => ({ description, content: json('Error') });

function strip(schema: unknown): unknown {
  // TypeBox adds symbol keys (Kind); JSON.stringify drops them already. Deep copy only.
  return JSON.parse(JSON.stringify(schema)) as unknown;
}

export function buildOpenApi(): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(schemasForOpenApi)) schemas[name] = strip(s);
  for (const [name, s] of Object.entries(adminSchemasForOpenApi)) schemas[name] = strip(s);
  for (const [name, s] of Object.entries(officeSchemasForOpenApi)) schemas[name] = strip(s);
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
            segments: {
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
  const auth = [{ bearer: [] }];
  const common4xx = {
    '400': errorResponse('BAD_JSON'),
    '401': errorResponse('UNAUTHORIZED'),
    '403': errorResponse('FORBIDDEN (tier, group, numbers or police not granted to the unit or narrowed by a parent; details name the field) or QUOTA_EXCEEDED'),
    '413': errorResponse('BODY_TOO_LARGE or TOO_MANY_RECIPIENTS'),
    '415': errorResponse('UNSUPPORTED_MEDIA_TYPE'),
    '422': errorResponse('VALIDATION, BAD_NUMBER, CONTENT_REJECTED (sensitive word) or CHANNEL_REFUSED (police message to an SMS-only person); details name the fields'),
    '503': errorResponse('NOT_READY or OVERLOADED'),
  };
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
      },
      schemas,
    },
    paths: {
      '/v1/messages': {
        post: {
          summary: 'Send one message to one or more numbers',
          security: auth,
          parameters: [{ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', maxLength: 200 }, description: 'A repeat with the same key returns the first answer and sends nothing again (header idempotent-replayed: true)' }],
          requestBody: { required: true, content: json('SendRequest') },
          responses: {
            '202': { description: 'Accepted: durable on disk; every recipient will reach a final state', content: json('Accepted') },
            '409': errorResponse('IDEMPOTENCY_CONFLICT: key reused with a different body'),
            ...common4xx,
          },
        },
      },
      '/v1/messages/batch': {
        post: {
          summary: 'Send up to server.maxBatchItems messages; per-item results',
          security: auth,
          requestBody: { required: true, content: json('BatchRequest') },
          responses: { '207': { description: 'Per-item results', content: json('BatchResult') }, ...common4xx },
        },
      },
      '/v1/messages/{id}': {
        get: {
          summary: 'Summary counts by state and a page of recipients',
          security: auth,
          parameters: [
            { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
            { name: 'cursor', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
          ],
          responses: { '200': { description: 'Status', content: json('MessageStatus') }, '404': errorResponse('NOT_FOUND'), '401': errorResponse('UNAUTHORIZED'), '422': errorResponse('VALIDATION') },
        },
        delete: {
          summary: 'Cancel a scheduled message before its time: every recipient ends rejected ("cancelled"), nothing is sent',
          security: auth,
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: '{ id, status: cancelled, recipients }' }, '404': errorResponse('NOT_FOUND'), '409': errorResponse('NOT_CANCELLABLE: already released to sending, or cancelled'), '401': errorResponse('UNAUTHORIZED') },
        },
      },
      '/healthz': { get: { summary: 'Liveness', responses: { '200': { description: 'alive' } } } },
      '/readyz': { get: { summary: 'Readiness: store and queue open, accepting', responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': { description: 'text exposition format' } } } },
      '/openapi.json': { get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1' } } } },
      ...adminOpenApiPaths(),
      ...officeOpenApiPaths(),
    },
  };
}
