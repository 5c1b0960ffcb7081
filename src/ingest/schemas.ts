/**
 * Request bodies of the HTTP API v1, as TypeBox schemas compiled once.
 * The same schemas feed /openapi.json, so the spec and the checks agree.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { STATUS_EVENTS } from '../core/message.js';
import { checkCallbackUrl } from '../outbound/webhook.js';
import { StringMemo } from '../core/memo.js';

export const IsoDurationString = Type.String({
  pattern: '^P(?!$)(\\d+D)?(T(?=\\d)(\\d+H)?(\\d+M)?(\\d+(\\.\\d+)?S)?)?$',
  description: 'ISO-8601 duration, e.g. PT1H',
  examples: ['PT1H'],
});

export const SendRequestSchema = Type.Object(
  {
    to: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 32 }), {
        minItems: 1,
        description: 'Mobile numbers: 13800138000, +8613800138000, 86 138 0013 8000 …',
      }),
    ),
    group: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Recipient group id (directory); expanded to its members when sent. Give one of `to`, `group`, `people`.' })),
    people: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        minItems: 1,
        description: 'Directory people by id: their mobiles are read from the gateway directory (no `direct` grant needed). A unit may name people of its own subtree; a bootstrap key only with groups ["*"]. An unknown id and one of another subtree answer alike (422 naming /people/<k>). Counts towards server.maxRecipientsPerRequest.',
      }),
    ),
    text: Type.Optional(Type.String({ minLength: 1, maxLength: 8000, description: 'Message body' })),
    template: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'Name of one of the tenant\'s templates (PUT /v1/templates/{name}); give `template` + `params` instead of `text`' })),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Values of the template\'s parameters; nested objects for dotted names (meeting.title)' })),
    tier: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    channel: Type.Optional(Type.Union([Type.Literal('sms'), Type.Literal('pda'), Type.Literal('auto')])),
    classification: Type.Optional(Type.Literal('police', { description: 'police: only over the PDA channel, never SMS; every recipient must have a PDA preference' })),
    validity: Type.Optional(IsoDurationString),
    scheduleAt: Type.Optional(Type.String({ maxLength: 40, description: 'RFC 3339 time with offset: accepted now (202, status scheduled), held durably, sent then; DELETE /v1/messages/{id} cancels it until then' })),
    reference: Type.Optional(Type.String({ maxLength: 128 })),
    callbackUrl: Type.Optional(Type.String({ maxLength: 2048, pattern: '^https?://', description: 'POSTed once with the summary when every recipient is final (signed; retried with back-off, callbacks.attempts; no user:password@; only targets callbacks.allow permits: docs/CALLBACKS.md). The tenant needs a signing secret (422 CALLBACK_SECRET_REQUIRED otherwise)' })),
    statusCallback: Type.Optional(Type.Object({
      url: Type.String({ maxLength: 2048, pattern: '^https?://', description: 'receives JSON arrays of per-recipient status events (same rules as callbackUrl)' }),
      events: Type.Optional(Type.Array(Type.Union([Type.Literal('submitted'), Type.Literal('final')]), { minItems: 1, maxItems: STATUS_EVENTS.length, description: 'submitted: the SMSC accepted the text; final: the recipient reached a final state. Default ["final"]' })),
    }, { additionalProperties: false, description: 'Per-recipient status events, many per POST (a JSON array), in order per recipient, durable, signed: docs/CALLBACKS.md' })),
  },
  { additionalProperties: false },
);
export type SendRequest = Static<typeof SendRequestSchema>;

export const BatchItemSchema = Type.Composite([
  SendRequestSchema,
  Type.Object({ idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }),
], { additionalProperties: false });
export type BatchItem = Static<typeof BatchItemSchema>;

export const BatchRequestSchema = Type.Object(
  { messages: Type.Array(Type.Unknown(), { minItems: 1, description: 'Up to server.maxBatchItems messages, each as POST /v1/messages' }) },
  { additionalProperties: false },
);

export const AcceptedSchema = Type.Object({
  id: Type.String(),
  recipients: Type.Integer({ description: 'Distinct recipients after normalisation' }),
  segments: Type.Integer({ description: 'SMS parts per recipient, counted at acceptance for the default (SMPP) plan: an estimate for recipients routed to a CMPP account, whose parts are planned per protocol (GET /v1/messages/{id} lists each recipient\'s parts as sent)' }),
  totalSegments: Type.Integer({ description: 'recipients × segments' }),
  encoding: Type.Union([Type.Literal('gsm7'), Type.Literal('ucs2')]),
  tier: Type.String(),
  status: Type.Union([Type.Literal('accepted'), Type.Literal('held'), Type.Literal('scheduled')], { description: 'held: a sensitive word matched and content.onMatch is hold; an admin releases or rejects it. scheduled: sent at scheduledAt, cancellable until then (DELETE /v1/messages/{id})' }),
  scheduledAt: Type.Optional(Type.String({ description: 'RFC 3339; present when status is scheduled' })),
});
export type Accepted = Static<typeof AcceptedSchema>;

export const ErrorSchema = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    details: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
  }),
});

const sendCheck = TypeCompiler.Compile(SendRequestSchema);
const batchItemCheck = TypeCompiler.Compile(BatchItemSchema);
const batchCheck = TypeCompiler.Compile(BatchRequestSchema);

export interface Checked<T> {
  readonly value?: T;
  readonly problems: FieldProblem[];
}

function check<T>(compiled: { Check(v: unknown): boolean; Errors(v: unknown): Iterable<{ path: string; message: string }> }, value: unknown, prefix = ''): Checked<T> {
  if (compiled.Check(value)) return { value: value as T, problems: [] };
  const problems: FieldProblem[] = [];
  for (const e of compiled.Errors(value)) {
    problems.push({ field: prefix + (e.path || '/'), message: e.message });
    if (problems.length >= 20) break;
  }
  return { problems };
}

const compiledSchemas = new Map<TSchema, ReturnType<typeof TypeCompiler.Compile>>();

/** The value when it fits `schema` (compiled once, cached); else VALIDATION naming up to 20 fields. */
export function validated<T extends TSchema>(schema: T, value: unknown): Static<T> {
  let c = compiledSchemas.get(schema);
  if (c === undefined) {
    c = TypeCompiler.Compile(schema);
    compiledSchemas.set(schema, c);
  }
  const r = check<Static<T>>(c, value);
  if (r.value === undefined) throw new GatewayError('VALIDATION', r.problems[0]?.message, { details: r.problems });
  return r.value;
}

/**
 * checkCallbackUrl's answer per URL (a pure function of the string): a
 * tenant sends the same callback URL again and again, and this saves a
 * WHATWG URL parse per request.
 */
const CALLBACK_URL_CHECKS = new StringMemo('callback_url_checks', 256, checkCallbackUrl);

/** A callbackUrl (or statusCallback.url) of the right form but with user information (user:password@) or no host is refused here too (422). */
function withCallbackUrl<T extends { callbackUrl?: string; statusCallback?: { url: string } }>(c: Checked<T>, prefix = ''): Checked<T> {
  const url = c.value?.callbackUrl;
  const why = url !== undefined ? CALLBACK_URL_CHECKS.get(url) : undefined;
  if (why !== undefined) return { problems: [{ field: `${prefix}/callbackUrl`, message: `callbackUrl ${why}` }] };
  const events = c.value?.statusCallback?.url;
  const whyEvents = events !== undefined ? CALLBACK_URL_CHECKS.get(events) : undefined;
  return whyEvents === undefined ? c : { problems: [{ field: `${prefix}/statusCallback/url`, message: `statusCallback.url ${whyEvents}` }] };
}

export const checkSend = (v: unknown): Checked<SendRequest> => withCallbackUrl(check<SendRequest>(sendCheck, v));
export const checkBatchItem = (v: unknown, prefix: string): Checked<BatchItem> => withCallbackUrl(check<BatchItem>(batchItemCheck, v, prefix), prefix);
export const checkBatch = (v: unknown): Checked<{ messages: unknown[] }> => check(batchCheck, v);

export const schemasForOpenApi: Record<string, TSchema> = {
  SendRequest: SendRequestSchema,
  BatchItem: BatchItemSchema,
  BatchRequest: BatchRequestSchema,
  Accepted: AcceptedSchema,
  Error: ErrorSchema,
};
