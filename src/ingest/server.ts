/**
 * The messages part of API v1, as a route table (src/http/route.ts):
 *
 *   POST   /v1/messages          one message           → 202 | 4xx
 *   POST   /v1/messages/batch    up to maxBatchItems    → 207 with per-item results
 *   GET    /v1/messages/{id}     summary + recipients (paginated)
 *   DELETE /v1/messages/{id}     cancel a scheduled message
 *
 * Auth, body limits, content type, JSON bounds and schema, draining and the
 * error envelope come from the mount (src/http/mount.ts); the handlers here
 * see a principal and a valid body.
 */
import { checkBatchItem, checkSend, SendRequestSchema, BatchRequestSchema, type SendRequest } from './schemas.js';
import type { Intake } from './intake.js';
import { GatewayError } from '../core/errors.js';
import { RECIPIENT_STATES, type RecipientState } from '../core/message.js';
import type { ResolvedConfig } from '../config/load.js';
import { route, type HttpRoute } from '../http/route.js';

export interface StatusStore {
  getMessage(id: string): StatusMessage | undefined;
  /** The completion callback's state, for a message sent with callbackUrl. */
  callbackState?(id: string): { state: string; attempts?: number; lastError?: string } | undefined;
  /** The per-recipient status events of a message sent with statusCallback: which, and how many were given up. */
  statusCallbackState?(id: string): { events: readonly string[]; failed?: number; lastError?: string } | undefined;
  summary(id: string): Record<RecipientState, number>;
  listRecipients(id: string, page: { cursor?: number; limit: number }): { items: StatusRecipient[]; next?: number };
}

export interface StatusMessage {
  id: string;
  tenant: string;
  tier: string;
  channel: string;
  encoding: string;
  segments: number;
  recipients: number;
  createdAt: number;
  expiresAt: number;
  reference?: string;
}

export interface StatusRecipient {
  index: number;
  to: string;
  state: RecipientState;
  acceptedAt: number;
  updatedAt: number;
  error?: string;
  segs: StatusSegment[];
  /** Rerouted: every attempt, oldest first (the last is the current one). */
  attempts?: readonly { state: string; segs: readonly StatusSegment[]; endedAt?: number; error?: string }[];
}

export interface StatusSegment {
  account?: string;
  opId?: string;
  state: string;
  submittedAt?: number;
  doneAt?: number;
  error?: string;
}

export interface MessageRouteDeps {
  readonly config: ResolvedConfig;
  readonly intake: Intake;
  readonly status: StatusStore;
  /** Scheduled messages (scheduleAt): shown as `scheduled` and cancellable with DELETE /v1/messages/{id}. */
  readonly scheduled?: ScheduledMessages | undefined;
}

export interface ScheduledMessages {
  dueAt(id: string): number | undefined;
  /** NOT_FOUND / NOT_CANCELLABLE as GatewayError. */
  cancel(id: string, tenant: string): Promise<{ recipients: number }>;
}

const MAX_PAGE = 1000;
/** The header of a replayed answer (shared: never written to). */
const REPLAYED: Readonly<Record<string, string>> = Object.freeze({ 'idempotent-replayed': 'true' });
const TAGS = ['messages'];
const ref = (schema: string, description: string) => ({ description, schema });

export const MESSAGE_ROUTES: readonly HttpRoute<MessageRouteDeps>[] = [
  route<MessageRouteDeps, 'sending'>({
    method: 'POST', path: '/v1/messages', realm: 'sending', tags: TAGS, write: true,
    summary: 'Send one message to one or more numbers',
    // Checked by checkSend (the schema and the callbackUrl rules), in the handler.
    body: { kind: 'json', name: 'SendRequest', schema: SendRequestSchema, check: false },
    headers: [{ name: 'Idempotency-Key', schema: { type: 'string', maxLength: 200 }, description: 'A repeat with the same key returns the first answer and sends nothing again (header idempotent-replayed: true)' }],
    responses: {
      '202': ref('Accepted', 'Accepted: durable on disk; every recipient will reach a final state'),
      '403': 'FORBIDDEN (tier, group, numbers or police not granted to the unit or narrowed by a parent; details name the field) or QUOTA_EXCEEDED',
      '409': 'IDEMPOTENCY_CONFLICT: key reused with a different body',
      '413': 'TOO_MANY_RECIPIENTS',
      '422': 'VALIDATION, BAD_NUMBER, TEXT_INVALID (lone surrogate or control character), TOO_MANY_PARTS (over sender.maxSegments), TEMPLATE_PARAMS, CONTENT_REJECTED (sensitive word) or CHANNEL_REFUSED (police message to an SMS-only person); details name the fields',
      '503': 'OVERLOADED',
    },
    handle: async ({ deps, principal, json, idempotencyKey }) => {
        const checked = checkSend(json);
        if (!checked.value) throw new GatewayError('VALIDATION', checked.problems[0]?.message, { details: checked.problems });
      const result = await deps.intake.accept(principal, checked.value, idempotencyKey === '' ? undefined : idempotencyKey);
      if (!result.ok) throw result.error;
      return result.replayed ? { status: 202, body: result.body, headers: REPLAYED } : { status: 202, body: result.body };
    },
  }),
  route<MessageRouteDeps, 'sending', { messages: unknown[] }>({
    method: 'POST', path: '/v1/messages/batch', realm: 'sending', tags: TAGS, write: true,
    summary: 'Send up to server.maxBatchItems messages; per-item results',
    body: { kind: 'json', name: 'BatchRequest', schema: BatchRequestSchema },
    responses: { '207': ref('BatchResult', 'Per-item results'), '403': 'FORBIDDEN or QUOTA_EXCEEDED', '413': 'TOO_MANY_RECIPIENTS (more than maxBatchItems items, or more than maxRecipientsPerRequest numbers summed over the items)', '503': 'OVERLOADED' },
    handle: async ({ deps, principal, json }) => {
        const messages = json.messages;
        const max = deps.config.server.maxBatchItems;
        if (messages.length > max) {
          throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${max} messages in one batch`, { details: [{ field: '/messages', message: `has ${messages.length} items` }] });
        }
        // The recipient cap is per request, not per item: the numbers (and people) named over the whole batch.
        const named = recipientsNamed(messages);
        if (named > deps.config.server.maxRecipientsPerRequest) {
          throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${deps.config.server.maxRecipientsPerRequest} recipients in one request (summed over the batch)`, {
            details: [{ field: '/messages', message: `names ${named} recipients over ${messages.length} items` }],
          });
        }
        const results = new Array<{ index: number; httpStatus: number } & Record<string, unknown>>(messages.length);
        const valid: { index: number; request: SendRequest; idempotencyKey?: string; prefix: string }[] = [];
        messages.forEach((m, index) => {
          const prefix = `/messages/${index}`;
          const c = checkBatchItem(m, prefix);
          if (!c.value) {
            const err = new GatewayError('VALIDATION', c.problems[0]?.message, { details: c.problems });
            results[index] = { index, httpStatus: err.status, status: 'rejected', ...err.toJSON() };
            return;
          }
          const { idempotencyKey, ...request } = c.value;
          valid.push({ index, request, prefix, ...(idempotencyKey !== undefined ? { idempotencyKey } : {}) });
        });
        const accepted = valid.length > 0 ? await deps.intake.acceptMany(principal, valid) : [];
        accepted.forEach((r, k) => {
          const index = (valid[k] as { index: number }).index;
          results[index] = r.ok
            ? { index, httpStatus: 202, ...r.body, ...(r.replayed ? { replayed: true } : {}) }
            : { index, httpStatus: r.error.status, status: 'rejected', ...r.error.toJSON() };
        });
        const acceptedCount = results.filter((r) => r.httpStatus === 202).length;
        return { status: 207, body: { accepted: acceptedCount, rejected: results.length - acceptedCount, results } };
    },
  }),
  route<MessageRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/messages/{id}', realm: 'sending', tags: TAGS,
    summary: 'Summary counts by state and a page of recipients',
    query: [
      { name: 'cursor', schema: { type: 'integer', minimum: 0 } },
      { name: 'limit', schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: 100 } },
    ],
    responses: { '200': ref('MessageStatus', 'Status'), '404': 'NOT_FOUND', '422': 'VALIDATION (cursor, limit)' },
    handle: ({ deps, principal, params, query }) => {
      const id = params[0] ?? '';
      const page = recipientPage(query);
      const msg = deps.status.getMessage(id);
      // Another tenant's message is "not found": do not reveal that it exists.
      if (!msg || msg.tenant !== principal.tenant) throw new GatewayError('NOT_FOUND', `no message ${id}`);
      return { status: 200, body: messageStatusView(deps, msg, page) };
    },
  }),
  /** DELETE /v1/messages/{id}: cancel a scheduled message that has not been released yet. */
  route<MessageRouteDeps, 'sending'>({
    method: 'DELETE', path: '/v1/messages/{id}', realm: 'sending', tags: TAGS, write: true,
    summary: 'Cancel a scheduled message before its time: every recipient ends rejected ("cancelled"), nothing is sent',
    responses: { '200': '{ id, status: cancelled, recipients }', '404': 'NOT_FOUND', '409': 'NOT_CANCELLABLE: already released to sending, or cancelled' },
    handle: async ({ deps, principal, params }) => {
      const id = params[0] ?? '';
      if (!deps.scheduled) throw new GatewayError('NOT_CANCELLABLE', 'only scheduled messages can be cancelled, and scheduling is not enabled');
      const r = await deps.scheduled.cancel(id, principal.tenant);
      return { status: 200, body: { id, status: 'cancelled', recipients: r.recipients } };
    },
  }),
];

function segmentView(s: StatusSegment): Record<string, unknown> {
  return {
    state: s.state,
    ...(s.opId !== undefined ? { operatorMessageId: s.opId } : {}),
    ...(s.submittedAt !== undefined ? { submittedAt: new Date(s.submittedAt).toISOString() } : {}),
    ...(s.doneAt !== undefined ? { doneAt: new Date(s.doneAt).toISOString() } : {}),
    ...(s.error !== undefined ? { error: s.error } : {}),
  };
}

function statusCallbackView(c: { events: readonly string[]; failed?: number; lastError?: string } | undefined): { statusCallback?: Record<string, unknown> } {
  if (c === undefined) return {};
  return { statusCallback: { events: c.events, failed: c.failed ?? 0, ...(c.lastError !== undefined ? { lastError: c.lastError } : {}) } };
}

function callbackView(c: { state: string; attempts?: number; lastError?: string } | undefined): { callback?: Record<string, unknown> } {
  if (c === undefined) return {};
  return { callback: { state: c.state, ...(c.attempts !== undefined && c.attempts > 0 ? { attempts: c.attempts } : {}), ...(c.lastError !== undefined ? { lastError: c.lastError } : {}) } };
}

/**
 * Recipients a batch names: the lengths of its items' `to` (and `people`)
 * lists, before any item is checked (a group counts 0 here: its members are
 * counted, and capped, by the quotas). Repeats count: the cap is on what the
 * request carries.
 */
export function recipientsNamed(messages: readonly unknown[]): number {
  let n = 0;
  for (const m of messages) {
    if (m === null || typeof m !== 'object') continue;
    const { to, people } = m as { to?: unknown; people?: unknown };
    if (Array.isArray(to)) n += to.length;
    if (Array.isArray(people)) n += people.length;
  }
  return n;
}

/** `cursor` and `limit` of a page of recipients, checked (422 VALIDATION). */
export function recipientPage(query: URLSearchParams): { cursor: number; limit: number } {
  const problems = [];
  const limitRaw = query.get('limit');
  const cursorRaw = query.get('cursor');
  const limit = limitRaw === null ? 100 : Number(limitRaw);
  const cursor = cursorRaw === null ? 0 : Number(cursorRaw);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) problems.push({ field: 'limit', message: `an integer from 1 to ${MAX_PAGE}` });
  if (!Number.isInteger(cursor) || cursor < 0) problems.push({ field: 'cursor', message: 'a non-negative integer from the previous page\'s `next`' });
  if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });
  return { cursor, limit };
}

/** A message's status body (GET /v1/messages/{id}; the admin archive of a deleted unit shows the same). */
export function messageStatusView(deps: { status: StatusStore; scheduled?: ScheduledMessages | undefined }, msg: StatusMessage, q: { cursor: number; limit: number }): Record<string, unknown> {
  const id = msg.id;
  const summary = deps.status.summary(id);
  const scheduledAt = deps.scheduled?.dueAt(id);
  const page = deps.status.listRecipients(id, q);
  const final = summary.delivered + summary.undeliverable + summary.expired + summary.rejected + summary.failed;
  return {
    id: msg.id,
    tier: msg.tier,
    channel: msg.channel,
    encoding: msg.encoding,
    segments: msg.segments,
    recipients: msg.recipients,
    createdAt: new Date(msg.createdAt).toISOString(),
    expiresAt: new Date(msg.expiresAt).toISOString(),
    ...(msg.reference !== undefined ? { reference: msg.reference } : {}),
    status: final === msg.recipients ? 'complete' : scheduledAt !== undefined ? 'scheduled' : 'in-progress',
    ...(scheduledAt !== undefined ? { scheduledAt: new Date(scheduledAt).toISOString() } : {}),
    ...callbackView(deps.status.callbackState?.(id)),
    ...statusCallbackView(deps.status.statusCallbackState?.(id)),
    summary: Object.fromEntries(RECIPIENT_STATES.map((s) => [s, summary[s] ?? 0])),
    items: page.items.map((r) => ({
      index: r.index,
      to: r.to,
      state: r.state,
      acceptedAt: new Date(r.acceptedAt).toISOString(),
      updatedAt: new Date(r.updatedAt).toISOString(),
      ...(r.error !== undefined ? { error: r.error } : {}),
      segments: r.segs.map(segmentView),
      ...(r.attempts !== undefined ? {
        attempts: r.attempts.map((a, i) => {
          const account = a.segs.find((s) => s.account !== undefined)?.account;
          return {
            attempt: i + 1,
            state: a.state,
            ...(account !== undefined ? { account } : {}),
            ...(a.endedAt !== undefined ? { endedAt: new Date(a.endedAt).toISOString() } : {}),
            ...(a.error !== undefined ? { error: a.error } : {}),
            segments: a.segs.map(segmentView),
          };
        }),
      } : {}),
    })),
    ...(page.next !== undefined ? { next: page.next } : {}),
  };
}
