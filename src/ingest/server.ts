/**
 * The front door: uWebSockets.js HTTP routes of API v1.
 *
 *   POST /v1/messages          one message           → 202 | 4xx
 *   POST /v1/messages/batch    up to maxBatchItems    → 207 with per-item results
 *   GET  /v1/messages/{id}     summary + recipients (paginated)
 *   GET  /healthz /readyz /metrics /openapi.json
 *
 * Every failure becomes a JSON error naming the field (GatewayError.toJSON);
 * a bad request never throws out of a handler.
 */
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Logger } from 'pino';
import { createUwsApp, listenUws, loadUws } from './uws.js';
import { Exchange, parseJson, pathParams, readBody } from './http.js';
import { ApiKeyRing, type DirectoryKeys } from './auth.js';
import { asGatewayError, type Intake } from './intake.js';
import type { Principal } from '../core/send.js';
import { checkBatch, checkBatchItem, checkSend, type SendRequest } from './schemas.js';
import { GatewayError } from '../core/errors.js';
import { RECIPIENT_STATES, type RecipientState } from '../core/message.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ResolvedConfig } from '../config/load.js';
import { buildOpenApi } from './openapi.js';

export interface StatusStore {
  getMessage(id: string): StatusMessage | undefined;
  /** The completion callback's state, for a message sent with callbackUrl. */
  callbackState?(id: string): { state: string; attempts?: number; lastError?: string } | undefined;
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
  segs: { opId?: string; state: string; submittedAt?: number; doneAt?: number; error?: string }[];
}

export interface Readiness {
  ready(): { ready: boolean; detail: Record<string, unknown> };
}

export interface FrontDoorDeps {
  config: ResolvedConfig;
  intake: Intake;
  status: StatusStore;
  metrics: Metrics;
  logger: Logger;
  readiness: Readiness;
  /** API keys issued by the directory, looked up after the bootstrap keys of config. */
  directoryKeys?: DirectoryKeys;
  /** More routes on the same app (admin, office, PDA), registered before the catch-all. */
  extraRoutes?: (app: TemplatedApp, door: DoorContext) => void;
  /** Scheduled messages (scheduleAt): shown as `scheduled` and cancellable with DELETE /v1/messages/{id}. */
  scheduled?: ScheduledMessages;
}

export interface ScheduledMessages {
  dueAt(id: string): number | undefined;
  /** NOT_FOUND / NOT_CANCELLABLE as GatewayError. */
  cancel(id: string, tenant: string): Promise<{ recipients: number }>;
}

/** What routes added through `extraRoutes` share with the front door. */
export interface DoorContext {
  /** The principal of an Authorization header value (API keys of config and of the directory), or a 401/403 GatewayError. */
  authenticate(header: string): Principal;
  /** False while draining (answer 503 NOT_READY to new writes). */
  accepting(): boolean;
  /** Count a finished request in smsgw_http_requests_total. */
  count(route: string, ex: Exchange): void;
}

const MAX_PAGE = 1000;

export class FrontDoor {
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private readonly keys: ApiKeyRing;
  private accepting = true;
  private readonly openapi: string;
  port = 0;

  constructor(private readonly deps: FrontDoorDeps) {
    this.app = createUwsApp(deps.config.server.tls);
    this.keys = new ApiKeyRing(deps.config.auth.apiKeys, deps.config.sender.defaultSource, deps.directoryKeys);
    this.openapi = JSON.stringify(buildOpenApi());
    this.routes();
  }

  async listen(host: string, port: number): Promise<number> {
    const bound = await listenUws(this.app, host, port);
    this.listenSocket = bound.socket;
    this.port = bound.port;
    return this.port;
  }

  /** Stop accepting new sends (503) while in-flight ones finish. */
  drain(): void {
    this.accepting = false;
  }

  close(): void {
    if (this.listenSocket) {
      loadUws().us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
  }

  private count(route: string, ex: Exchange): void {
    this.deps.metrics.httpRequests.inc({ route, status: String(ex.status || 499) });
  }

  private routes(): void {
    const { app } = this;
    app.post('/v1/messages', (res, req) => this.postMessage(res, req));
    app.post('/v1/messages/batch', (res, req) => this.postBatch(res, req));
    app.get('/v1/messages/:id', (res, req) => this.getMessage(res, req));
    app.get('/healthz', (res) => {
      const ex = new Exchange(res);
      ex.json(200, { status: 'ok' });
    });
    app.get('/readyz', (res) => {
      const ex = new Exchange(res);
      const r = this.deps.readiness.ready();
      const ready = r.ready && this.accepting;
      ex.json(ready ? 200 : 503, { ready, accepting: this.accepting, ...r.detail });
    });
    app.get('/metrics', (res) => {
      const ex = new Exchange(res);
      this.deps.metrics.registry.metrics().then(
        (text) => ex.send(200, text, this.deps.metrics.registry.contentType),
        (e: unknown) => ex.error(asGatewayError(e)),
      );
    });
    app.get('/openapi.json', (res) => new Exchange(res).send(200, this.openapi));
    app.del('/v1/messages/:id', (res, req) => this.cancelMessage(res, req));
    this.deps.extraRoutes?.(app, {
      authenticate: (header) => this.keys.authenticate(header),
      accepting: () => this.accepting,
      count: (route, ex) => this.count(route, ex),
    });
    app.any('/*', (res, req) => {
      const ex = new Exchange(res);
      const url = req.getUrl();
      const known = ['/v1/messages', '/v1/messages/batch', '/healthz', '/readyz', '/metrics', '/openapi.json'];
      if (known.includes(url) || url.startsWith('/v1/messages/')) ex.error(new GatewayError('METHOD_NOT_ALLOWED', `${req.getMethod().toUpperCase()} is not allowed on ${url}`));
      else ex.error(new GatewayError('NOT_FOUND', `no route ${url}`));
      this.count('other', ex);
    });
  }

  /**
   * Headers and auth are read synchronously: `req` dies when the handler
   * returns. A request refused at auth still has its body drained before the
   * answer, so the keep-alive connection stays usable.
   */
  private begin(res: HttpResponse, req: HttpRequest, route: string, hasBody: boolean, nParams = 0): { ex: Exchange; principal?: Principal; params: string[]; idempotencyKey: string; contentType: string } {
    const ex = new Exchange(res);
    const authorization = req.getHeader('authorization');
    const idempotencyKey = req.getHeader('idempotency-key');
    const contentType = req.getHeader('content-type');
    try {
      // A malformed percent-escape is 400 BAD_PATH, before auth.
      const params = pathParams(req, nParams);
      const principal = this.keys.authenticate(authorization);
      return { ex, principal, params, idempotencyKey, contentType };
    } catch (e) {
      const err = asGatewayError(e);
      const answer = (): void => {
        ex.error(err, err.status === 401 ? { 'www-authenticate': 'Bearer' } : undefined);
        this.count(route, ex);
      };
      if (hasBody) readBody(ex, req, this.deps.config.server.maxBodyBytes).then(answer, answer);
      else answer();
      return { ex, params: [], idempotencyKey, contentType };
    }
  }

  private postMessage(res: HttpResponse, req: HttpRequest): void {
    const route = 'POST /v1/messages';
    const { ex, principal, idempotencyKey, contentType } = this.begin(res, req, route, true);
    if (!principal) return;
    const body = readBody(ex, req, this.deps.config.server.maxBodyBytes);
    body.catch(() => undefined); // observed below; never an unhandled rejection if an earlier check throws
    void (async () => {
      try {
        checkContentType(contentType);
        if (!this.accepting) throw new GatewayError('NOT_READY', 'the gateway is shutting down');
        if (idempotencyKey.length > 200) throw new GatewayError('VALIDATION', 'Idempotency-Key is too long', { details: [{ field: 'Idempotency-Key', message: 'at most 200 characters' }] });
        const json = parseJson(await body);
        const checked = checkSend(json);
        if (!checked.value) throw new GatewayError('VALIDATION', checked.problems[0]?.message, { details: checked.problems });
        const result = await this.deps.intake.accept(principal, checked.value, idempotencyKey === '' ? undefined : idempotencyKey);
        if (result.ok) ex.json(202, result.body, result.replayed ? { 'idempotent-replayed': 'true' } : undefined);
        else ex.error(result.error);
      } catch (e) {
        this.fail(ex, e);
      }
      this.count(route, ex);
    })();
  }

  private postBatch(res: HttpResponse, req: HttpRequest): void {
    const route = 'POST /v1/messages/batch';
    const { ex, principal, contentType } = this.begin(res, req, route, true);
    if (!principal) return;
    const body = readBody(ex, req, this.deps.config.server.maxBodyBytes);
    body.catch(() => undefined); // observed below; never an unhandled rejection if an earlier check throws
    void (async () => {
      try {
        checkContentType(contentType);
        if (!this.accepting) throw new GatewayError('NOT_READY', 'the gateway is shutting down');
        const json = parseJson(await body);
        const checked = checkBatch(json);
        if (!checked.value) throw new GatewayError('VALIDATION', checked.problems[0]?.message, { details: checked.problems });
        const messages = checked.value.messages;
        const max = this.deps.config.server.maxBatchItems;
        if (messages.length > max) {
          throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${max} messages in one batch`, { details: [{ field: '/messages', message: `has ${messages.length} items` }] });
        }
        const results: ({ index: number; httpStatus: number } & Record<string, unknown>)[] = new Array(messages.length);
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
        const accepted = valid.length > 0 ? await this.deps.intake.acceptMany(principal, valid) : [];
        accepted.forEach((r, k) => {
          const index = (valid[k] as { index: number }).index;
          results[index] = r.ok
            ? { index, httpStatus: 202, ...r.body, ...(r.replayed ? { replayed: true } : {}) }
            : { index, httpStatus: r.error.status, status: 'rejected', ...r.error.toJSON() };
        });
        const acceptedCount = results.filter((r) => r.httpStatus === 202).length;
        ex.json(207, { accepted: acceptedCount, rejected: results.length - acceptedCount, results });
      } catch (e) {
        this.fail(ex, e);
      }
      this.count(route, ex);
    })();
  }

  private getMessage(res: HttpResponse, req: HttpRequest): void {
    const route = 'GET /v1/messages/{id}';
    const { ex, principal, params } = this.begin(res, req, route, false, 1);
    if (!principal) return;
    const id = params[0] ?? '';
    const query = new URLSearchParams(req.getQuery() ?? '');
    try {
      const problems = [];
      const limitRaw = query.get('limit');
      const cursorRaw = query.get('cursor');
      const limit = limitRaw === null ? 100 : Number(limitRaw);
      const cursor = cursorRaw === null ? 0 : Number(cursorRaw);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) problems.push({ field: 'limit', message: `an integer from 1 to ${MAX_PAGE}` });
      if (!Number.isInteger(cursor) || cursor < 0) problems.push({ field: 'cursor', message: 'a non-negative integer from the previous page\'s `next`' });
      if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });
      const msg = this.deps.status.getMessage(id);
      // Another tenant's message is "not found": do not reveal that it exists.
      if (!msg || msg.tenant !== principal.tenant) throw new GatewayError('NOT_FOUND', `no message ${id}`);
      const summary = this.deps.status.summary(id);
      const scheduledAt = this.deps.scheduled?.dueAt(id);
      const page = this.deps.status.listRecipients(id, { cursor, limit });
      const final = summary.delivered + summary.undeliverable + summary.expired + summary.rejected + summary.failed;
      ex.json(200, {
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
        ...callbackView(this.deps.status.callbackState?.(id)),
        summary: Object.fromEntries(RECIPIENT_STATES.map((s) => [s, summary[s] ?? 0])),
        items: page.items.map((r) => ({
          index: r.index,
          to: r.to,
          state: r.state,
          acceptedAt: new Date(r.acceptedAt).toISOString(),
          updatedAt: new Date(r.updatedAt).toISOString(),
          ...(r.error !== undefined ? { error: r.error } : {}),
          segments: r.segs.map((s) => ({
            state: s.state,
            ...(s.opId !== undefined ? { operatorMessageId: s.opId } : {}),
            ...(s.submittedAt !== undefined ? { submittedAt: new Date(s.submittedAt).toISOString() } : {}),
            ...(s.doneAt !== undefined ? { doneAt: new Date(s.doneAt).toISOString() } : {}),
            ...(s.error !== undefined ? { error: s.error } : {}),
          })),
        })),
        ...(page.next !== undefined ? { next: page.next } : {}),
      });
    } catch (e) {
      this.fail(ex, e);
    }
    this.count(route, ex);
  }

  /** DELETE /v1/messages/{id}: cancel a scheduled message that has not been released yet. */
  private cancelMessage(res: HttpResponse, req: HttpRequest): void {
    const route = 'DELETE /v1/messages/{id}';
    const { ex, principal, params } = this.begin(res, req, route, false, 1);
    if (!principal) return;
    const id = params[0] ?? '';
    void (async () => {
      try {
        if (!this.deps.scheduled) throw new GatewayError('NOT_CANCELLABLE', 'only scheduled messages can be cancelled, and scheduling is not enabled');
        const r = await this.deps.scheduled.cancel(id, principal.tenant);
        ex.json(200, { id, status: 'cancelled', recipients: r.recipients });
      } catch (e) {
        this.fail(ex, e);
      }
      this.count(route, ex);
    })();
  }

  private fail(ex: Exchange, e: unknown): void {
    const err = asGatewayError(e);
    if (err.code === 'INTERNAL') this.deps.logger.error({ err: err.cause ?? err }, 'request failed');
    ex.error(err);
  }
}

function callbackView(c: { state: string; attempts?: number; lastError?: string } | undefined): { callback?: Record<string, unknown> } {
  if (c === undefined) return {};
  return { callback: { state: c.state, ...(c.attempts !== undefined && c.attempts > 0 ? { attempts: c.attempts } : {}), ...(c.lastError !== undefined ? { lastError: c.lastError } : {}) } };
}

function checkContentType(contentType: string): void {
  if (contentType !== '' && !/^application\/json\b/i.test(contentType)) {
    throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', `content-type ${contentType} is not application/json`);
  }
}
