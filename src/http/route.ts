/**
 * Routes as data. Every HTTP route of every part is one entry of a table the
 * part exports: method, path, auth realm, body kind with its limit, the body
 * schema, a write flag, the documented responses and the handler. The
 * composition root mounts the tables (src/http/mount.ts); from the same
 * entries come safe path decoding, 404 vs 405 with Allow, content-type rules,
 * JSON depth/size bounds, the error envelope, metric labels and
 * docs/openapi.json (src/http/openapi.ts).
 *
 * A table is static (no deps): handlers get the part's deps in their
 * context, so the API document is built without starting anything.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Principal } from '../core/send.js';
import type { Actor } from '../directory/types.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * Who may call a route:
 *  - sending: a tenant's API key (config auth.apiKeys or issued by the directory) → Principal;
 *  - admin: an admin key (config admin.keys) → Actor (a unit: a delegated admin);
 *  - pdaAdmin: the PDA provisioning key (pda.adminKey);
 *  - none: open (ops, the API document; the PDA protocol authenticates inside its own hello).
 */
export type Realm = 'sending' | 'admin' | 'pdaAdmin' | 'none';

export interface Identities {
  sending: Principal;
  admin: Actor;
  pdaAdmin: true;
  none: undefined;
}

/** Body limit: the config's `server.maxBodyBytes`, `directory.maxImportBytes`, or a fixed number of bytes. */
export type BodyLimit = 'body' | 'import' | number;

export type BodySpec =
  | {
      readonly kind: 'json';
      /** Component name in the API document. */
      readonly name: string;
      readonly schema: TSchema;
      /** False: the schema documents the body and the handler checks it (its own messages). Default true: the mount validates (422). */
      readonly check?: boolean;
      /** An empty body reads as this value (e.g. {} where every field is optional); absent: an empty body is BAD_JSON. */
      readonly emptyAs?: unknown;
      readonly limit?: BodyLimit;
    }
  | { readonly kind: 'csv'; readonly limit: BodyLimit; readonly description: string };

/** A documented response: its description, and the component schema of its JSON body if any. */
export type ResponseDoc = string | { readonly description: string; readonly schema?: string; readonly contentType?: string };

export type Reply =
  | { readonly status: number; readonly body: unknown; readonly headers?: Readonly<Record<string, string>> }
  | { readonly status: 204; readonly headers?: Readonly<Record<string, string>> }
  | { readonly status: number; readonly text: string; readonly contentType: string; readonly headers?: Readonly<Record<string, string>> };

export interface ParamDoc {
  readonly name: string;
  readonly schema?: Record<string, unknown>;
  readonly description?: string;
  readonly required?: boolean;
}

export interface RouteCtxBase<D, B> {
  readonly deps: D;
  /** Path parameters in path order, percent-decoded (malformed: 400 BAD_PATH before the handler). */
  readonly params: string[];
  readonly query: URLSearchParams;
  readonly idempotencyKey: string;
  readonly contentType: string;
  /** The JSON body, bounded, parsed and (unless check: false) valid against the entry's schema. */
  readonly json: B;
  /** Same value, for handlers written `await body()`. */
  readonly body: () => Promise<B>;
  /** The raw body of a CSV route. */
  readonly raw: Buffer | undefined;
}

export type RouteCtx<D, R extends Realm, B> = RouteCtxBase<D, B> & { readonly who: Identities[R] } & (R extends 'sending' ? { readonly principal: Principal } : unknown) & (R extends 'admin' ? { readonly actor: Actor } : unknown);

interface EntryCommon {
  readonly method: Method;
  /** OpenAPI form: /v1/meetings/{id}. */
  readonly path: string;
  readonly realm: Realm;
  readonly summary: string;
  readonly tags: readonly string[];
  /** Documented query parameters: the mount checks each value against its schema (src/http/query.ts, 422); a handler may check more. */
  readonly query?: readonly ParamDoc[];
  /** Documented request headers (e.g. Idempotency-Key). */
  readonly headers?: readonly ParamDoc[];
  /** Documented path parameter schemas by name (default: a string). */
  readonly paramSchemas?: Readonly<Record<string, Record<string, unknown>>>;
  /** Success and route-specific error responses; the mount's own errors (400, 401, 413, 415, 422, 503) are added from the entry. */
  readonly responses: Readonly<Record<string, ResponseDoc>>;
}

export interface HttpRoute<D = never> extends EntryCommon {
  readonly kind: 'http';
  readonly body?: BodySpec;
  /** Refused with 503 NOT_READY while the gateway drains. */
  readonly write: boolean;
  readonly handle: (ctx: RouteCtx<D, Realm, unknown> & { principal: Principal; actor: Actor }) => Promise<Reply> | Reply;
}

/** A WebSocket upgrade: documented and counted in the table, attached with its own uWS behaviour. */
export interface UpgradeRoute<D = never> extends EntryCommon {
  readonly kind: 'upgrade';
  readonly attach: (app: TemplatedApp, deps: D, door: UpgradeDoor) => void;
}

export type RouteEntry<D = never> = HttpRoute<D> | UpgradeRoute<D>;

/** What an upgrade handler may ask of the mount. */
export interface UpgradeDoor {
  authenticate(realm: 'sending', header: string): Principal;
}

/**
 * The JSON body of a route whose table entry names `schema` (and leaves
 * `check` on): the mount has validated it already, so this only gives it the
 * schema's type. The schema in the table is the one check; a handler never
 * validates its body again.
 */
export function validBody<S extends TSchema>(_schema: S, json: unknown): Static<S> {
  return json;
}

/** One HTTP route, typed by its realm and body schema; erased to HttpRoute<D> for the table. */
export function route<D, R extends Realm, B = undefined>(def: {
  method: Method;
  path: string;
  realm: R;
  summary: string;
  tags: readonly string[];
  body?: BodySpec;
  write?: boolean;
  query?: readonly ParamDoc[];
  headers?: readonly ParamDoc[];
  paramSchemas?: Readonly<Record<string, Record<string, unknown>>>;
  responses: Readonly<Record<string, ResponseDoc>>;
  handle: (ctx: RouteCtx<D, R, B>) => Promise<Reply> | Reply;
}): HttpRoute<D> {
  return { ...def, kind: 'http', write: def.write ?? false, handle: def.handle as unknown as HttpRoute<D>['handle'] };
}

export function upgrade<D>(def: Omit<UpgradeRoute<D>, 'kind' | 'method'>): UpgradeRoute<D> {
  return { ...def, kind: 'upgrade', method: 'GET' };
}

/**
 * Longest path parameter (percent-decoded) and longest value of a documented
 * string query parameter without its own maxLength or enum, in characters.
 * Every id, name and cursor of the API is far shorter (ids: 64, PDA person
 * ids: 128, cursors: two ids); a longer value can name nothing, and would
 * reach the stores as a key past LMDB's key size (an INTERNAL before this bound).
 */
export const MAX_PARAM_CHARS = 256;

/** The schema a path or query parameter is checked against (and documented with): strings get MAX_PARAM_CHARS unless they bound themselves. */
export function boundedParamSchema(schema: Readonly<Record<string, unknown>> | undefined): Readonly<Record<string, unknown>> {
  const s = schema ?? { type: 'string' };
  const type = s['type'];
  if ((type === undefined || type === 'string') && s['maxLength'] === undefined && s['enum'] === undefined) return { ...s, maxLength: MAX_PARAM_CHARS };
  return s;
}

/** The uWS pattern of an OpenAPI path: /v1/meetings/{id} → /v1/meetings/:id. */
export function uwsPattern(path: string): string {
  return path.replace(/\{(\w+)\}/g, ':$1');
}

export function pathParamNames(path: string): string[] {
  return [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string);
}

/** The metric label of a route: `METHOD /path/{param}`. */
export function routeLabel(r: { method: Method; path: string }): string {
  return `${r.method} ${r.path}`;
}

/** A table bound to the deps its handlers need. */
export interface MountedTable {
  readonly routes: readonly RouteEntry<unknown>[];
  readonly deps: unknown;
}

export function bind<D>(routes: readonly RouteEntry<D>[], deps: D): MountedTable {
  return { routes: routes as unknown as readonly RouteEntry<unknown>[], deps };
}
