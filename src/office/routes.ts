/**
 * HTTP (and WebSocket) routes of the mobile-office services, on the front
 * door's app and with its API keys (a key's tenant owns what it creates).
 *
 *   PUT    /v1/templates/{name}            save (validated)            200 | 201
 *   GET    /v1/templates[/{name}]          list / one
 *   DELETE /v1/templates/{name}
 *   POST   /v1/templates/{name}/preview    { params } → text, encoding, segments
 *   POST   /v1/meetings                    notice sent                 201
 *   GET    /v1/meetings[/{id}]             list / tally + per-person answers
 *   PATCH  /v1/meetings/{id}               change notice to everyone invited
 *   POST   /v1/meetings/{id}/cancel        cancel notice (or nothing, if the notice was still scheduled)
 *   POST   /v1/workflow-events             202 { status: applied | buffered | duplicate | stale }
 *   GET    /v1/cases/{system}/{caseId}     current stage and timeline
 *   GET    /v1/mo[?state=]  /v1/mo/{id}    MO messages (unmatched ones included)
 *   PUT|GET|DELETE /v1/mo/subscription     the tenant's callback URL for MO
 *   WS     /v1/mo/stream                   live MO of the tenant (JSON text frames)
 */
import type { HttpRequest, HttpResponse, TemplatedApp, us_socket_context_t, WebSocket } from 'uWebSockets.js';
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { maskNumber } from '../core/phone.js';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { countSegments } from '../core/segment.js';
import { PARAM_TYPES } from '../core/template.js';
import type { ResolvedConfig } from '../config/load.js';
import { asGatewayError, parseRfc3339 } from '../ingest/intake.js';
import { Exchange } from '../ingest/http.js';
import { requestFingerprint } from '../send/index.js';
import type { Principal } from '../core/send.js';
import { loadUws } from '../ingest/uws.js';
import { route, upgrade, validBody, type RouteEntry, type UpgradeDoor } from '../http/route.js';
import type { DirectoryStore } from '../directory/store.js';
import { effectiveSignature, signText } from '../directory/grants.js';
import type { Meetings, Meeting } from './meetings.js';
import { MO_STATES, type LiveSubscribers, type MoInbox, type MoRecord, type MoState } from './mo-inbox.js';
import type { TemplateStore } from './templates.js';
import { contactNumbers, type CaseRecord, type Workflow } from './workflow.js';

const NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
const Time = Type.String({ maxLength: 40, description: 'RFC 3339 with offset, e.g. 2026-11-23T09:30:00+08:00' });

export const TemplateBodySchema = Type.Object({
  body: Type.String({ minLength: 1, maxLength: 8000 }),
  params: Type.Optional(Type.Record(Type.String({ maxLength: 128 }), Type.Object({
    type: Type.Union(PARAM_TYPES.map((t) => Type.Literal(t))),
    required: Type.Optional(Type.Boolean()),
    maxLength: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })),
  }, { additionalProperties: false }), { maxProperties: 64 })),
  description: Type.Optional(Type.String({ maxLength: 500 })),
}, { additionalProperties: false });

export const PreviewSchema = Type.Object({
  params: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
}, { additionalProperties: false });

export const MeetingSchema = Type.Object({
  title: Type.String({ minLength: 1, maxLength: 100 }),
  time: Time,
  place: Type.String({ minLength: 1, maxLength: 100 }),
  note: Type.Optional(Type.String({ maxLength: 200 })),
  attendees: Type.Object({
    people: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 10000 })),
    groups: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 100 })),
    numbers: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 32 }), { maxItems: 10000 })),
  }, { additionalProperties: false }),
  replyBy: Type.Optional(Time),
  remindAt: Type.Optional(Time),
  scheduleAt: Type.Optional(Time),
  tier: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
}, { additionalProperties: false });

export const MeetingPatchSchema = Type.Object({
  title: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  time: Type.Optional(Time),
  place: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  note: Type.Optional(Type.String({ maxLength: 200 })),
}, { additionalProperties: false, minProperties: 1 });

export const CancelSchema = Type.Object({ note: Type.Optional(Type.String({ maxLength: 200 })) }, { additionalProperties: false });

export const WorkflowEventSchema = Type.Object({
  system: Type.String({ pattern: '^[^/\\s]{1,64}$', description: 'The sending system, e.g. 市场监管 or scjg-djxt (no / or spaces); appears in stage texts as {{system}}' }),
  caseId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }),
  stage: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'Stage code; its SMS text is office.workflow.stages[stage] or the tenant template workflow.<stage>' }),
  stageName: Type.Optional(Type.String({ maxLength: 64, description: 'Human name of the stage (shown in case queries)' })),
  seq: Type.Optional(Type.Integer({ minimum: 1, description: 'Order of this event within the case (1, 2, 3 …); preferred' })),
  occurredAt: Type.Optional(Time),
  applicant: Type.Object({
    name: Type.Optional(Type.String({ maxLength: 100 })),
    mobile: Type.Optional(Type.String({ maxLength: 32 })),
    mobiles: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 10 })),
  }, { additionalProperties: false }),
  missing: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 50 })),
  readyAt: Type.Optional(Time),
  params: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
}, { additionalProperties: false });

export const SubscriptionSchema = Type.Object({
  callbackUrl: Type.String({ maxLength: 2048, pattern: '^https?://' }),
}, { additionalProperties: false });


export interface OfficeRouteDeps {
  readonly config: ResolvedConfig;
  readonly templates: TemplateStore;
  readonly meetings: Meetings;
  readonly workflow: Workflow;
  readonly inbox: MoInbox;
  readonly directory: DirectoryStore;
  readonly live: LiveMoSubscribers;
  readonly logger: Logger;
}

function time(v: string | undefined, field: string): number | undefined {
  if (v === undefined) return undefined;
  const t = parseRfc3339(v);
  if (t === undefined) throw new GatewayError('VALIDATION', `${field.slice(1)} must be an RFC 3339 time with an offset`, { details: [{ field, message: 'e.g. 2026-11-23T09:30:00+08:00' }] });
  return t;
}

export function pageLimit(query: URLSearchParams): number {
  const raw = query.get('limit');
  const n = raw === null ? 100 : Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new GatewayError('VALIDATION', 'limit must be an integer from 1 to 1000', { details: [{ field: 'limit', message: 'an integer from 1 to 1000' }] });
  return n;
}

export const PAGE_QUERY = [
  { name: 'cursor', schema: { type: 'string' }, description: 'the `next` of the previous page' },
  { name: 'limit', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
];
const IDEMPOTENCY_HEADER = { name: 'Idempotency-Key', schema: { type: 'string', maxLength: 200 } };

/** The office part's routes (templates, meetings, workflow, MO), mounted by the composition root. */
export const OFFICE_ROUTES: readonly RouteEntry<OfficeRouteDeps>[] = [
  // ---------------------------------------------------------------- templates
  route<OfficeRouteDeps, 'sending'>({
    method: 'PUT', path: '/v1/templates/{name}', realm: 'sending', tags: ['templates'], write: true,
    summary: 'Save a template (validated: every placeholder a declared parameter, filters fit their types)',
    body: { kind: 'json', name: 'TemplateBody', schema: TemplateBodySchema },
    responses: { '200': 'updated', '201': 'created', '422': 'TEMPLATE_INVALID' },
    handle: async ({ deps, principal, params, json }) => {
    const name = templateName(params[0]);
    const input = validBody(TemplateBodySchema, json);
    const r = await deps.templates.put(principal.tenant, name, input);
    return { status: r.created ? 201 : 200, body: templateView(r.template) };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/templates', realm: 'sending', tags: ['templates'],
    summary: "The tenant's templates",
    query: PAGE_QUERY,
    responses: { '200': '{ items, next? }' },
    handle: ({ deps, principal, query }) => {
    const cursor = query.get('cursor') ?? undefined;
    const page = deps.templates.list(principal.tenant, { limit: pageLimit(query), ...(cursor !== undefined ? { cursor } : {}) });
    return { status: 200, body: { items: page.items.map(templateView), ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/templates/{name}', realm: 'sending', tags: ['templates'],
    summary: 'One template',
    responses: { '200': 'the template', '404': 'NOT_FOUND', '422': 'VALIDATION: not a template name' },
    handle: ({ deps, principal, params }) => {
    const t = deps.templates.get(principal.tenant, templateName(params[0]));
    if (!t) throw new GatewayError('NOT_FOUND', `no template ${params[0] ?? ''}`);
    return { status: 200, body: templateView(t) };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'DELETE', path: '/v1/templates/{name}', realm: 'sending', tags: ['templates'], write: true,
    summary: 'Delete a template',
    responses: { '200': '{ name, deleted }', '404': 'NOT_FOUND', '422': 'VALIDATION: not a template name' },
    handle: async ({ deps, principal, params }) => {
    await deps.templates.remove(principal.tenant, templateName(params[0]));
    return { status: 200, body: { name: params[0], deleted: true } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'POST', path: '/v1/templates/{name}/preview', realm: 'sending', tags: ['templates'],
    summary: 'Render with params: the text as sent (signature included), its encoding and SMS parts',
    body: { kind: 'json', name: 'TemplatePreview', schema: PreviewSchema },
    responses: { '200': '{ text, encoding, segments, characters, signature? }', '404': 'NOT_FOUND', '422': 'TEMPLATE_PARAMS (details name each parameter)' },
    handle: ({ deps, principal, params, json }) => {
    const input = validBody(PreviewSchema, json);
    const text = deps.templates.render(principal.tenant, templateName(params[0]), input.params ?? {});
    const chain = principal.unit !== undefined ? deps.directory.unitChain(principal.unit) : undefined;
    const signature = chain ? effectiveSignature(chain) : undefined;
    const sent = signText(text, signature);
    const seg = countSegments(sent);
    return { status: 200, body: { text: sent, encoding: seg.encoding, segments: seg.count, characters: Array.from(sent).length, ...(sent !== text && signature !== undefined ? { signature } : {}) } };
    },
  }),

  // ---------------------------------------------------------------- meetings
  route<OfficeRouteDeps, 'sending'>({
    method: 'POST', path: '/v1/meetings', realm: 'sending', tags: ['meetings'], write: true,
    summary: 'Create a meeting and send its notice (or schedule it); replies 1 / 2 [reason] are matched back',
    body: { kind: 'json', name: 'Meeting', schema: MeetingSchema },
    headers: [IDEMPOTENCY_HEADER],
    responses: { '201': 'the meeting with its notice message ids', '200': 'a repeat of the Idempotency-Key: the first meeting', '409': 'IDEMPOTENCY_CONFLICT: the Idempotency-Key was used with a different body', '403': 'FORBIDDEN: a group or numbers not granted', '404': 'NOT_FOUND: a group', '413': 'TOO_MANY_RECIPIENTS' },
    handle: async ({ deps, principal, json, idempotencyKey }) => {
    const raw = json;
    const m = validBody(MeetingSchema, raw);
    const at = time(m.time, '/time') as number;
    const replyBy = time(m.replyBy, '/replyBy');
    const remindAt = time(m.remindAt, '/remindAt');
    const scheduleAt = time(m.scheduleAt, '/scheduleAt');
    const r = await deps.meetings.create(principal, {
      title: m.title, time: at, place: m.place,
      ...(m.note !== undefined ? { note: m.note } : {}),
      ...(m.attendees.people !== undefined ? { people: m.attendees.people } : {}),
      ...(m.attendees.groups !== undefined ? { groups: m.attendees.groups } : {}),
      ...(m.attendees.numbers !== undefined ? { numbers: m.attendees.numbers } : {}),
      ...(replyBy !== undefined ? { replyBy } : {}),
      ...(remindAt !== undefined ? { remindAt } : {}),
      ...(scheduleAt !== undefined ? { scheduleAt } : {}),
      ...(m.tier !== undefined ? { tier: m.tier } : {}),
    }, idempotencyKey === '' ? undefined : idempotencyKey, requestFingerprint(raw));
    return { status: r.replayed ? 200 : 201, body: meetingView(r.meeting) };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/meetings', realm: 'sending', tags: ['meetings'],
    summary: "The tenant's meetings",
    query: PAGE_QUERY,
    responses: { '200': '{ items, next? }' },
    handle: ({ deps, principal, query }) => {
    const cursor = query.get('cursor') ?? undefined;
    const page = deps.meetings.list(principal.tenant, { limit: pageLimit(query), ...(cursor !== undefined ? { cursor } : {}) });
    return { status: 200, body: { items: page.items.map(meetingView), ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/meetings/{id}', realm: 'sending', tags: ['meetings'],
    summary: 'The meeting, its tally { invited, attend, absent, noReply, late } and a page of per-person answers',
    query: [{ name: 'answer', schema: { type: 'string', enum: ['attend', 'absent', 'none'] } }, ...PAGE_QUERY],
    responses: { '200': 'meeting + tally + people', '404': 'NOT_FOUND', '422': 'VALIDATION (answer, limit)' },
    handle: ({ deps, principal, params, query }) => {
    const m = deps.meetings.get(params[0] ?? '');
    if (!m || m.tenant !== principal.tenant) throw new GatewayError('NOT_FOUND', `no meeting ${params[0] ?? ''}`);
    return { status: 200, body: meetingDetail(deps.meetings, m, query) };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'PATCH', path: '/v1/meetings/{id}', realm: 'sending', tags: ['meetings'], write: true,
    summary: 'Change title, time, place or note: the change notice goes to everyone invited',
    body: { kind: 'json', name: 'MeetingPatch', schema: MeetingPatchSchema },
    responses: { '200': 'the meeting', '404': 'NOT_FOUND', '409': 'NOT_CANCELLABLE: the meeting was cancelled' },
    handle: async ({ deps, principal, params, json }) => {
    const p = validBody(MeetingPatchSchema, json);
    const t = time(p.time, '/time');
    const m = await deps.meetings.change(principal.tenant, params[0] ?? '', {
      ...(p.title !== undefined ? { title: p.title } : {}),
      ...(t !== undefined ? { time: t } : {}),
      ...(p.place !== undefined ? { place: p.place } : {}),
      ...(p.note !== undefined ? { note: p.note } : {}),
    });
    return { status: 200, body: meetingView(m) };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'POST', path: '/v1/meetings/{id}/cancel', realm: 'sending', tags: ['meetings'], write: true,
    summary: 'Cancel: the cancel notice to everyone invited, or nothing at all if the notice was still scheduled (an empty body is {})',
    body: { kind: 'json', name: 'MeetingCancel', schema: CancelSchema, emptyAs: {} },
    responses: { '200': 'the meeting', '404': 'NOT_FOUND', '409': 'NOT_CANCELLABLE: already cancelled' },
    handle: async ({ deps, principal, params, json }) => {
    const c = validBody(CancelSchema, json); // an empty body is {} (emptyAs)
    const m = await deps.meetings.cancel(principal.tenant, params[0] ?? '', c.note);
    return { status: 200, body: meetingView(m) };
    },
  }),

  // ---------------------------------------------------------------- workflow
  route<OfficeRouteDeps, 'sending'>({
    method: 'POST', path: '/v1/workflow-events', realm: 'sending', tags: ['workflow'], write: true,
    summary: 'A stage change of a case (business registration, approvals): one SMS per stage, in order, exactly once',
    body: { kind: 'json', name: 'WorkflowEvent', schema: WorkflowEventSchema },
    responses: { '202': '{ system, caseId, status: applied | buffered | duplicate | stale, stage, messageId? }' },
    handle: async ({ deps, principal, json }) => {
    const e = validBody(WorkflowEventSchema, json);
    const problems: FieldProblem[] = [];
    const occurredAt = time(e.occurredAt, '/occurredAt');
    const readyAt = time(e.readyAt, '/readyAt');
    if (e.seq === undefined && occurredAt === undefined) problems.push({ field: '/seq', message: 'give seq (preferred) or occurredAt, so events can be put in order' });
    const raw = [...(e.applicant.mobile !== undefined ? [e.applicant.mobile] : []), ...(e.applicant.mobiles ?? [])];
    const contacts = contactNumbers(raw, deps.config.numbers.allowInternational, problems);
    if (raw.length === 0) problems.push({ field: '/applicant/mobile', message: 'the applicant\'s mobile number is required' });
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });
    const r = await deps.workflow.accept(principal.tenant, {
      system: e.system, caseId: e.caseId, stage: e.stage, contacts, receivedAt: Date.now(),
      ...(e.stageName !== undefined ? { stageName: e.stageName } : {}),
      ...(e.seq !== undefined ? { seq: e.seq } : {}),
      ...(occurredAt !== undefined ? { occurredAt } : {}),
      ...(e.applicant.name !== undefined ? { applicantName: e.applicant.name } : {}),
      ...(e.missing !== undefined ? { missing: e.missing } : {}),
      ...(readyAt !== undefined ? { readyAt } : {}),
      ...(e.params !== undefined ? { params: e.params } : {}),
    });
    const last = r.case.timeline[r.case.timeline.length - 1];
    return { status: 202, body: { system: e.system, caseId: e.caseId, status: r.status, stage: r.case.stage ?? null, ...(r.status === 'applied' && last?.messageId !== undefined ? { messageId: last.messageId } : {}) } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/cases/{system}/{caseId}', realm: 'sending', tags: ['workflow'],
    summary: 'Current stage and timeline of a case',
    responses: { '200': 'case', '404': 'NOT_FOUND' },
    handle: ({ deps, principal, params }) => {
    const c = deps.workflow.get(principal.tenant, params[0] ?? '', params[1] ?? '');
    if (!c) throw new GatewayError('NOT_FOUND', `no case ${params[0] ?? ''}/${params[1] ?? ''}`);
    return { status: 200, body: caseView(c) };
    },
  }),

  // ---------------------------------------------------------------- MO
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/mo', realm: 'sending', tags: ['mo'],
    summary: 'MO messages of the tenant in one state (default unmatched), newest first',
    query: [{ name: 'state', schema: { type: 'string', enum: [...MO_STATES] } }, ...PAGE_QUERY],
    responses: { '200': '{ items, next? }', '422': 'VALIDATION (state, cursor, limit)' },
    handle: ({ deps, principal, query }) => {
    const state = (query.get('state') ?? 'unmatched') as MoState;
    if (!MO_STATES.includes(state)) throw new GatewayError('VALIDATION', `state must be one of ${MO_STATES.join(', ')}`, { details: [{ field: 'state', message: MO_STATES.join(', ') }] });
    const cursorRaw = query.get('cursor');
    const cursor = cursorRaw === null ? undefined : Number(cursorRaw);
    if (cursor !== undefined && !Number.isSafeInteger(cursor)) throw new GatewayError('VALIDATION', 'cursor is the `next` of the previous page', { details: [{ field: 'cursor', message: 'an integer' }] });
    const page = deps.inbox.list(principal.tenant, state, { limit: pageLimit(query), ...(cursor !== undefined ? { cursor } : {}) });
    return { status: 200, body: { items: page.items.map(moView), ...(page.next !== undefined ? { next: String(page.next) } : {}) } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'PUT', path: '/v1/mo/subscription', realm: 'sending', tags: ['mo'], write: true,
    summary: 'Set the callback URL MO messages no handler took are POSTed to (retried, bounded)',
    body: { kind: 'json', name: 'MoSubscription', schema: SubscriptionSchema },
    responses: { '200': '{ callbackUrl }' },
    handle: async ({ deps, principal, json }) => {
    const s = validBody(SubscriptionSchema, json);
    await deps.inbox.subscribe(principal.tenant, s.callbackUrl);
    return { status: 200, body: { callbackUrl: s.callbackUrl } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/mo/subscription', realm: 'sending', tags: ['mo'],
    summary: 'The callback URL',
    responses: { '200': '{ callbackUrl, updatedAt }', '404': 'NOT_FOUND' },
    handle: ({ deps, principal }) => {
    const s = deps.inbox.subscription(principal.tenant);
    if (!s) throw new GatewayError('NOT_FOUND', 'no MO callback URL is set');
    return { status: 200, body: { callbackUrl: s.callbackUrl, updatedAt: iso(s.updatedAt) } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'DELETE', path: '/v1/mo/subscription', realm: 'sending', tags: ['mo'], write: true,
    summary: 'Remove the callback URL',
    responses: { '200': '{ deleted }', '404': 'NOT_FOUND' },
    handle: async ({ deps, principal }) => {
    if (!(await deps.inbox.unsubscribe(principal.tenant))) throw new GatewayError('NOT_FOUND', 'no MO callback URL is set');
    return { status: 200, body: { deleted: true } };
    },
  }),
  route<OfficeRouteDeps, 'sending'>({
    method: 'GET', path: '/v1/mo/{id}', realm: 'sending', tags: ['mo'],
    summary: 'One MO message',
    responses: { '200': 'MO', '404': 'NOT_FOUND' },
    handle: ({ deps, principal, params }) => {
    const r = deps.inbox.get(params[0] ?? '');
    if (!r || r.tenant !== principal.tenant) throw new GatewayError('NOT_FOUND', `no MO message ${params[0] ?? ''}`);
    return { status: 200, body: moView(r) };
    },
  }),
  upgrade<OfficeRouteDeps>({
    path: '/v1/mo/stream', realm: 'sending', tags: ['mo'],
    summary: 'WebSocket upgrade (Authorization: Bearer): live MO of the tenant as JSON text frames',
    responses: { '101': 'switching protocols' },
    attach: (app, deps, door) => attachMoStream(app, door, deps.live, deps.directory),
  }),

  // Global admins (config admin.keys without a unit) see MO that no tenant owns (`tenant` omitted) or any tenant's.
  route<OfficeRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/mo', realm: 'admin', tags: ['admin'],
    summary: 'Global admins: MO of no tenant (tenant omitted: sent to a code nobody owns) or of one tenant, by state',
    query: [{ name: 'tenant', schema: { type: 'string' } }, { name: 'state', schema: { type: 'string', enum: [...MO_STATES] } }, ...PAGE_QUERY],
    responses: { '200': '{ items, next? }', '403': 'FORBIDDEN: a delegated (unit) admin', '422': 'VALIDATION (state, limit)' },
    handle: ({ deps, actor, query }) => {
      if (actor.unit !== undefined) throw new GatewayError('FORBIDDEN', 'only a global admin may list MO across tenants');
      const state = (query.get('state') ?? 'unmatched') as MoState;
      if (!MO_STATES.includes(state)) throw new GatewayError('VALIDATION', `state must be one of ${MO_STATES.join(', ')}`, { details: [{ field: 'state', message: MO_STATES.join(', ') }] });
      const cursorRaw = query.get('cursor');
      const cursor = cursorRaw === null ? undefined : Number(cursorRaw);
      const page = deps.inbox.list(query.get('tenant') ?? '', state, { limit: pageLimit(query), ...(cursor !== undefined && Number.isSafeInteger(cursor) ? { cursor } : {}) });
      return { status: 200, body: { items: page.items.map(moView), ...(page.next !== undefined ? { next: String(page.next) } : {}) } };
    },
  }),
];

/** A meeting with its tally and a page of per-person answers (GET /v1/meetings/{id}; a deleted unit's archive shows the same). */
export function meetingDetail(meetings: Meetings, m: Meeting, query: URLSearchParams): Record<string, unknown> {
  const answer = query.get('answer');
  if (answer !== null && !['attend', 'absent', 'none'].includes(answer)) throw new GatewayError('VALIDATION', 'answer must be attend, absent or none', { details: [{ field: 'answer', message: 'attend, absent or none' }] });
  const cursor = query.get('cursor') ?? undefined;
  const page = meetings.people(m.id, { limit: pageLimit(query), ...(cursor !== undefined ? { cursor } : {}), ...(answer !== null ? { answer: answer as 'attend' } : {}) });
  return {
    ...meetingView(m),
    tally: meetings.tally(m.id),
    people: page.items.map((p) => ({
      mobile: p.hidden === true ? maskNumber(p.mobile) : p.mobile,
      ...(p.personId !== undefined ? { personId: p.personId } : {}),
      ...(p.name !== undefined ? { name: p.name } : {}),
      answer: p.answer ?? 'none',
      ...(p.reason !== undefined ? { reason: p.reason } : {}),
      ...(p.answeredAt !== undefined ? { answeredAt: iso(p.answeredAt) } : {}),
      ...(p.late ? { lateReply: { answer: p.late.answer, at: iso(p.late.at), ...(p.late.reason !== undefined ? { reason: p.late.reason } : {}) } } : {}),
    })),
    ...(page.next !== undefined ? { next: page.next } : {}),
  };
}

/** A case's current stage and timeline (GET /v1/cases/{system}/{caseId}; a deleted unit's archive shows the same). */
export function caseView(c: CaseRecord): Record<string, unknown> {
  return {
    system: c.system, caseId: c.caseId, stage: c.stage ?? null, stageName: c.stageName ?? c.stage ?? null, ordering: c.ordering,
    ...(c.applicantName !== undefined ? { applicant: c.applicantName } : {}),
    contacts: c.contacts, createdAt: iso(c.createdAt), updatedAt: iso(c.updatedAt),
    timeline: c.timeline.map((t) => ({
      order: t.order, stage: t.stage, outcome: t.outcome, receivedAt: iso(t.receivedAt), appliedAt: iso(t.appliedAt),
      ...(t.stageName !== undefined ? { stageName: t.stageName } : {}),
      ...(t.occurredAt !== undefined ? { occurredAt: iso(t.occurredAt) } : {}),
      ...(t.messageId !== undefined ? { messageId: t.messageId } : {}),
      ...(t.missing !== undefined ? { missing: t.missing } : {}),
      ...(t.readyAt !== undefined ? { readyAt: iso(t.readyAt) } : {}),
      ...(t.error !== undefined ? { error: t.error } : {}),
    })),
  };
}

function templateName(raw: string | undefined): string {
  const name = raw ?? '';
  if (!new RegExp(NAME).test(name)) throw new GatewayError('VALIDATION', 'a template name is letters, digits, _ . - (1–64)', { details: [{ field: 'name', message: NAME }] });
  return name;
}

const iso = (t: number): string => new Date(t).toISOString();

export function templateView(t: { name: string; body: string; params: unknown; description?: string; createdAt: number; updatedAt: number }): unknown {
  return { name: t.name, body: t.body, params: t.params, ...(t.description !== undefined ? { description: t.description } : {}), createdAt: iso(t.createdAt), updatedAt: iso(t.updatedAt) };
}

export function meetingView(m: Meeting): Record<string, unknown> {
  return {
    id: m.id, title: m.title, time: iso(m.time), place: m.place, state: m.state, tier: m.tier, invited: m.invited,
    replyBy: iso(m.replyBy),
    ...(m.note !== undefined ? { note: m.note } : {}),
    ...(m.remindAt !== undefined ? { remindAt: iso(m.remindAt) } : {}),
    ...(m.scheduleAt !== undefined ? { scheduleAt: iso(m.scheduleAt) } : {}),
    notices: m.notices, followUps: m.followUps, createdAt: iso(m.createdAt), updatedAt: iso(m.updatedAt),
  };
}

export function moView(r: MoRecord): unknown {
  return {
    id: r.id, from: r.source, to: r.destination, text: r.text, receivedAt: iso(r.receivedAt), state: r.state,
    ...(r.route !== undefined ? { route: r.route } : {}),
    ...(r.ref !== undefined ? { ref: r.ref } : {}),
    ...(r.detail !== undefined ? { detail: r.detail } : {}),
    ...(r.parts !== undefined ? { parts: r.parts } : {}),
    ...(r.forwardAttempts !== undefined ? { forwardAttempts: r.forwardAttempts } : {}),
  };
}

// ---------------------------------------------------------------- live MO over WebSocket

/** `authorization`: the header the stream was opened with, re-checked while it lives (the key can be revoked). */
type StreamData = { tenant: string; authorization: string };

/**
 * WebSocket close codes of the MO stream when its key stops being good
 * (documented in docs/ERRORS.md): the session follows the key.
 */
export const STREAM_CLOSE = {
  /** The key was revoked, expired, or no longer exists (its unit deleted). */
  KEY: 4401,
  /** The key's unit, or a unit above it, is disabled. */
  DISABLED: 4403,
} as const;

/** How often live sessions re-check their key: a revoked key's stream closes within this (plus one tick). */
export const STREAM_RECHECK_MS = 250;

export type StreamCheck = (data: StreamData) => { code: number; reason: string } | undefined;

/** Live MO subscribers per tenant (bounded); a slow subscriber is dropped, never waited for. */
export class LiveMoSubscribers implements LiveSubscribers {
  private readonly byTenant = new Map<string, Set<WebSocket<StreamData>>>();
  private total = 0;

  constructor(private readonly maxPerTenant = 16, private readonly maxTotal = 1000) {}

  add(ws: WebSocket<StreamData>): boolean {
    const tenant = ws.getUserData().tenant;
    const set = this.byTenant.get(tenant) ?? new Set();
    if (set.size >= this.maxPerTenant || this.total >= this.maxTotal) return false;
    set.add(ws);
    this.byTenant.set(tenant, set);
    this.total++;
    return true;
  }

  remove(ws: WebSocket<StreamData>): void {
    const tenant = ws.getUserData().tenant;
    const set = this.byTenant.get(tenant);
    if (set?.delete(ws)) this.total--;
    if (set && set.size === 0) this.byTenant.delete(tenant);
  }

  push(tenant: string, record: MoRecord): number {
    const set = this.byTenant.get(tenant);
    if (!set) return 0;
    const frame = JSON.stringify(moView(record));
    let n = 0;
    for (const ws of set) {
      // 1: sent; 0: buffered (backpressure); 2: dropped. Only a send counts as delivered.
      if (ws.send(frame, false) === 1) n++;
    }
    return n;
  }

  get size(): number {
    return this.total;
  }

  /**
   * Re-check every subscriber's key every `everyMs`: a stream whose key was
   * revoked or expired, or whose unit was disabled or deleted, is closed
   * with the code `check` names. Bounded: at most maxTotal sockets a tick.
   */
  follow(check: StreamCheck, everyMs = STREAM_RECHECK_MS): void {
    this.stop();
    this.timer = setInterval(() => this.recheck(check), everyMs);
    this.timer.unref();
  }

  /** One pass (the timer's; tests call it too). Returns how many streams it closed. */
  recheck(check: StreamCheck): number {
    const closing: Array<[WebSocket<StreamData>, { code: number; reason: string }]> = [];
    for (const set of this.byTenant.values()) {
      for (const ws of set) {
        const verdict = check(ws.getUserData());
        if (verdict) closing.push([ws, verdict]);
      }
    }
    // Ended after the walk: end() runs the close handler, which edits the sets.
    for (const [ws, v] of closing) ws.end(v.code, v.reason);
    return closing.length;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private timer: NodeJS.Timeout | undefined;
}

/** Is the stream's key still good: it authenticates, and its unit chain is enabled? */
function streamCheck(door: UpgradeDoor, directory: DirectoryStore): StreamCheck {
  return (data) => {
    let principal: Principal;
    try {
      principal = door.authenticate('sending', data.authorization);
    } catch (e) {
      const err = asGatewayError(e);
      return { code: STREAM_CLOSE.KEY, reason: err.code };
    }
    if (principal.unit !== undefined) {
      const chain = directory.unitChain(principal.unit);
      if (chain === undefined) return { code: STREAM_CLOSE.KEY, reason: 'UNAUTHORIZED' };
      if (chain.some((u) => u.disabled)) return { code: STREAM_CLOSE.DISABLED, reason: 'unit disabled' };
    }
    return undefined;
  };
}

function attachMoStream(app: TemplatedApp, door: UpgradeDoor, live: LiveMoSubscribers, directory: DirectoryStore): void {
  const uws = loadUws();
  const check = streamCheck(door, directory);
  live.follow(check);
  app.ws<StreamData>('/v1/mo/stream', {
    compression: uws.DISABLED,
    maxPayloadLength: 1024,
    maxBackpressure: 1024 * 1024,
    closeOnBackpressureLimit: 1,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
      let principal: Principal;
      try {
        principal = door.authenticate('sending', req.getHeader('authorization'));
      } catch (e) {
        // Answered as every route's refusal is (status line, JSON error, WWW-Authenticate on a 401).
        new Exchange(res).error(asGatewayError(e));
        return;
      }
      res.upgrade<StreamData>({ tenant: principal.tenant, authorization: req.getHeader('authorization') }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
    },
    open: (ws) => {
      // A disabled unit's key authenticates but may not listen: closed at once, like a later disable.
      const verdict = check(ws.getUserData());
      if (verdict) ws.end(verdict.code, verdict.reason);
      else if (!live.add(ws)) ws.end(1013, 'too many MO subscribers');
    },
    message: () => undefined,
    close: (ws) => live.remove(ws),
  });
}
