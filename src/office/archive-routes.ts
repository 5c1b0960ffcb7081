/**
 * Archives of deleted units (issue 17), for global admins only:
 *
 *   GET /v1/admin/archives/{unit}                          the tombstone + MO subscription left behind
 *   GET /v1/admin/archives/{unit}/templates                its templates (paged)
 *   GET /v1/admin/archives/{unit}/meetings[/{id}]          its meetings / one with tally and answers
 *   GET /v1/admin/archives/{unit}/mo?state=                its MO inbox (paged)
 *   GET /v1/admin/archives/{unit}/cases/{system}/{caseId}  one workflow case
 *   GET /v1/admin/archives/{unit}/messages/{id}            one message with its recipients
 *
 * Tenant data is keyed by the unit id, and a deleted unit's id is tombstoned
 * and never reused (src/directory/store.ts), so what the unit left stays under
 * the dead id: no later unit can reach it through the sending API, and only
 * these read-only routes show it. `{unit}` must be a tombstoned id (a live
 * unit's data is read through its own keys): anything else is 404. A
 * delegated admin is refused (403) whatever the id, so the answer tells it
 * nothing about which ids were deleted.
 */
import { GatewayError } from '../core/errors.js';
import { route, type RouteEntry } from '../http/route.js';
import type { Actor } from '../directory/types.js';
import type { DirectoryStore } from '../directory/store.js';
import { messageStatusView, recipientPage, type ScheduledMessages, type StatusStore } from '../ingest/server.js';
import type { Meetings } from './meetings.js';
import { MO_STATES, type MoInbox, type MoState } from './mo-inbox.js';
import type { TemplateStore } from './templates.js';
import type { Workflow } from './workflow.js';
import { caseView, meetingDetail, meetingView, moView, PAGE_QUERY, pageLimit, templateView } from './routes.js';

export interface ArchiveRouteDeps {
  readonly directory: DirectoryStore;
  readonly templates: TemplateStore;
  readonly meetings: Meetings;
  readonly workflow: Workflow;
  readonly inbox: MoInbox;
  readonly status: StatusStore;
  readonly scheduled?: ScheduledMessages | undefined;
}

const TAGS = ['admin'];
const RESPONSES = { '403': 'FORBIDDEN: a delegated (unit) admin', '404': 'NOT_FOUND: no deleted unit with this id, or nothing of it with this id' };

/** The deleted unit the path names; 403 for a delegated admin, 404 for an id that is not tombstoned. */
function archived(deps: ArchiveRouteDeps, actor: Actor, raw: string | undefined): string {
  if (actor.unit !== undefined) throw new GatewayError('FORBIDDEN', 'only a global admin reads the archives of deleted units');
  const id = raw ?? '';
  if (deps.directory.getTombstone(id) === undefined) throw new GatewayError('NOT_FOUND', `no deleted unit ${id}`);
  return id;
}

export const ARCHIVE_ROUTES: readonly RouteEntry<ArchiveRouteDeps>[] = [
  route<ArchiveRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/archives/{unit}', realm: 'admin', tags: TAGS,
    summary: "Global admins: a deleted unit's tombstone and the MO subscription it left",
    responses: { '200': '{ unit: tombstone, subscription? }', ...RESPONSES },
    handle: ({ deps, actor, params }) => {
      const id = archived(deps, actor, params[0]);
      const grave = deps.directory.getTombstone(id);
      const sub = deps.inbox.subscription(id);
      return { status: 200, body: { unit: { ...grave, deletedAt: new Date(grave?.deletedAt ?? 0).toISOString() }, ...(sub ? { subscription: { callbackUrl: sub.callbackUrl, updatedAt: new Date(sub.updatedAt).toISOString() } } : {}) } };
    },
  }),
  route<ArchiveRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/archives/{unit}/templates', realm: 'admin', tags: TAGS,
    summary: "Global admins: a deleted unit's templates",
    query: PAGE_QUERY,
    responses: { '200': '{ items, next? }', ...RESPONSES },
    handle: ({ deps, actor, params, query }) => {
      const id = archived(deps, actor, params[0]);
      const cursor = query.get('cursor') ?? undefined;
      const page = deps.templates.list(id, { limit: pageLimit(query), ...(cursor !== undefined ? { cursor } : {}) });
      return { status: 200, body: { items: page.items.map(templateView), ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  }),
  route<ArchiveRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/archives/{unit}/meetings', realm: 'admin', tags: TAGS,
    summary: "Global admins: a deleted unit's meetings",
    query: PAGE_QUERY,
    responses: { '200': '{ items, next? }', ...RESPONSES },
    handle: ({ deps, actor, params, query }) => {
      const id = archived(deps, actor, params[0]);
      const cursor = query.get('cursor') ?? undefined;
      const page = deps.meetings.list(id, { limit: pageLimit(query), ...(cursor !== undefined ? { cursor } : {}) });
      return { status: 200, body: { items: page.items.map(meetingView), ...(page.next !== undefined ? { next: page.next } : {}) } };
    },
  }),
  route<ArchiveRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/archives/{unit}/meetings/{id}', realm: 'admin', tags: TAGS,
    summary: "Global admins: one of a deleted unit's meetings, its tally and a page of answers",
    query: [{ name: 'answer', schema: { type: 'string', enum: ['attend', 'absent', 'none'] } }, ...PAGE_QUERY],
    responses: { '200': 'meeting + tally + people', ...RESPONSES },
    handle: ({ deps, actor, params, query }) => {
      const id = archived(deps, actor, params[0]);
      const m = deps.meetings.get(params[1] ?? '');
      if (!m || m.tenant !== id) throw new GatewayError('NOT_FOUND', `no meeting ${params[1] ?? ''} of ${id}`);
      return { status: 200, body: meetingDetail(deps.meetings, m, query) };
    },
  }),
  route<ArchiveRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/archives/{unit}/mo', realm: 'admin', tags: TAGS,
    summary: "Global admins: a deleted unit's MO inbox in one state (default unmatched), newest first",
    query: [{ name: 'state', schema: { type: 'string', enum: [...MO_STATES] } }, ...PAGE_QUERY],
    responses: { '200': '{ items, next? }', ...RESPONSES, '422': 'VALIDATION (state, cursor, limit)' },
    handle: ({ deps, actor, params, query }) => {
      const id = archived(deps, actor, params[0]);
      const state = (query.get('state') ?? 'unmatched') as MoState;
      if (!MO_STATES.includes(state)) throw new GatewayError('VALIDATION', `state must be one of ${MO_STATES.join(', ')}`, { details: [{ field: 'state', message: MO_STATES.join(', ') }] });
      const cursorRaw = query.get('cursor');
      const cursor = cursorRaw === null ? undefined : Number(cursorRaw);
      if (cursor !== undefined && !Number.isSafeInteger(cursor)) throw new GatewayError('VALIDATION', 'cursor is the `next` of the previous page', { details: [{ field: 'cursor', message: 'an integer' }] });
      const page = deps.inbox.list(id, state, { limit: pageLimit(query), ...(cursor !== undefined ? { cursor } : {}) });
      return { status: 200, body: { items: page.items.map(moView), ...(page.next !== undefined ? { next: String(page.next) } : {}) } };
    },
  }),
  route<ArchiveRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/archives/{unit}/cases/{system}/{caseId}', realm: 'admin', tags: TAGS,
    summary: "Global admins: one of a deleted unit's workflow cases",
    responses: { '200': 'case', ...RESPONSES },
    handle: ({ deps, actor, params }) => {
      const id = archived(deps, actor, params[0]);
      const c = deps.workflow.get(id, params[1] ?? '', params[2] ?? '');
      if (!c) throw new GatewayError('NOT_FOUND', `no case ${params[1] ?? ''}/${params[2] ?? ''} of ${id}`);
      return { status: 200, body: caseView(c) };
    },
  }),
  route<ArchiveRouteDeps, 'admin'>({
    method: 'GET', path: '/v1/admin/archives/{unit}/messages/{id}', realm: 'admin', tags: TAGS,
    summary: "Global admins: one of a deleted unit's messages, its summary and a page of recipients",
    query: [
      { name: 'cursor', schema: { type: 'integer', minimum: 0 } },
      { name: 'limit', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
    ],
    responses: { '200': 'message status', ...RESPONSES, '422': 'VALIDATION (cursor, limit)' },
    handle: ({ deps, actor, params, query }) => {
      const id = archived(deps, actor, params[0]);
      const page = recipientPage(query);
      const msg = deps.status.getMessage(params[1] ?? '');
      if (!msg || msg.tenant !== id) throw new GatewayError('NOT_FOUND', `no message ${params[1] ?? ''} of ${id}`);
      return { status: 200, body: messageStatusView(deps, msg, page) };
    },
  }),
];
