/**
 * Named templates per tenant (unit), validated when saved.
 *
 *   office.templates  [tenant, name] → StoredTemplate
 *
 * A send names a template with `template` + `params`; the tenant's own
 * template is used, else the nearest one up its unit chain (a bureau's
 * sub-units share the bureau's templates). Compiled templates are cached
 * (bounded, keyed by tenant, name and update time).
 */
import type { Database, RootDatabase } from 'lmdb';
import { RowLog, type ChangeLog } from '../replication/change-log.js';
import { GatewayError } from '../core/errors.js';
import { setBounded } from '../core/bounded-map.js';
import { compileTemplate, renderTemplate, type CompiledTemplate, type ParamSpec } from '../core/template.js';

export interface StoredTemplate {
  readonly name: string;
  readonly body: string;
  readonly params: Readonly<Record<string, ParamSpec>>;
  readonly description?: string;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface TemplateStoreDeps {
  readonly env: RootDatabase;
  readonly maxPerTenant: number;
  readonly maxBodyChars: number;
  readonly utcOffsetMinutes: number;
  /** The tenant's ancestors, nearest first (directory units); empty for a bootstrap tenant. */
  readonly ancestorsOf: (tenant: string) => readonly string[];
  readonly now?: () => number;
  /** Several hosts: template changes are replicated row by row (src/replication/change-log.ts). */
  readonly changeLog?: ChangeLog;
}

/** Compiled templates kept in memory. */
const CACHE_ENTRIES = 1000;

export class TemplateStore {
  private readonly db: Database<StoredTemplate, [string, string]>;
  private readonly cache = new Map<string, CompiledTemplate>();
  private readonly now: () => number;
  private readonly rows: RowLog | undefined;

  constructor(private readonly deps: TemplateStoreDeps) {
    this.db = deps.env.openDB<StoredTemplate, [string, string]>({ name: 'office.templates', encoding: 'msgpack' });
    this.now = deps.now ?? Date.now;
    this.rows = deps.changeLog ? new RowLog(deps.changeLog, [this.db]) : undefined;
  }

  /** Validate and save; `created` is false for an update. TEMPLATE_INVALID names the problem. */
  async put(tenant: string, name: string, input: { body: string; params?: Readonly<Record<string, ParamSpec>>; description?: string }): Promise<{ template: StoredTemplate; created: boolean }> {
    if (input.body.length > this.deps.maxBodyChars) {
      throw new GatewayError('TEMPLATE_INVALID', `the body is longer than ${this.deps.maxBodyChars} characters`, { details: [{ field: '/body', message: `at most ${this.deps.maxBodyChars} characters (office.templates.maxBodyChars)` }] });
    }
    const params = input.params ?? {};
    const compiled = compileTemplate(input.body, params);
    if (!compiled.ok) throw new GatewayError('TEMPLATE_INVALID', compiled.problems[0]?.message, { details: compiled.problems });
    return this.deps.env.transaction(() => this.captured(() => {
      const before = this.db.get([tenant, name]);
      if (!before && this.count(tenant) >= this.deps.maxPerTenant) {
        throw new GatewayError('VALIDATION', `at most ${this.deps.maxPerTenant} templates per tenant`, { details: [{ field: '/name', message: 'delete unused templates first (office.templates.maxPerUnit)' }] });
      }
      const at = this.now();
      const template: StoredTemplate = {
        name,
        body: input.body,
        params,
        ...(input.description !== undefined ? { description: input.description } : {}),
        createdAt: before?.createdAt ?? at,
        updatedAt: at,
      };
      this.db.putSync([tenant, name], template);
      return { template, created: before === undefined };
    }));
  }

  private captured<T>(fn: () => T): T {
    return this.rows ? this.rows.capture(fn) : fn();
  }

  get(tenant: string, name: string): StoredTemplate | undefined {
    return this.db.get([tenant, name]);
  }

  list(tenant: string, q: { cursor?: string; limit: number }): { items: StoredTemplate[]; next?: string } {
    const items: StoredTemplate[] = [];
    let next: string | undefined;
    for (const { key, value } of this.db.getRange({ start: [tenant, q.cursor ?? ''], end: [tenant, '\uffff'] })) {
      if (q.cursor !== undefined && key[1] === q.cursor) continue;
      if (items.length === q.limit) {
        next = items[items.length - 1]?.name;
        break;
      }
      items.push(value);
    }
    return next !== undefined ? { items, next } : { items };
  }

  async remove(tenant: string, name: string): Promise<void> {
    const removed = await this.deps.env.transaction(() => this.captured(() => this.db.removeSync([tenant, name])));
    if (!removed) throw new GatewayError('NOT_FOUND', `no template ${name}`);
  }

  /** Render the tenant's template `name` (or the nearest ancestor's); NOT_FOUND / TEMPLATE_PARAMS naming the field. */
  render(tenant: string, name: string, params: Readonly<Record<string, unknown>>, prefix = ''): string {
    const found = this.resolve(tenant, name);
    if (!found) throw new GatewayError('NOT_FOUND', `no template ${name}`, { details: [{ field: `${prefix}/template`, message: `no template ${name} for ${tenant} or its parent units` }] });
    const r = renderTemplate(found, params, { utcOffsetMinutes: this.deps.utcOffsetMinutes }, `${prefix}/params`);
    if (!r.ok) throw new GatewayError('TEMPLATE_PARAMS', r.problems[0]?.message, { details: r.problems });
    return r.text;
  }

  private resolve(tenant: string, name: string): CompiledTemplate | undefined {
    for (const owner of [tenant, ...this.deps.ancestorsOf(tenant)]) {
      const stored = this.db.get([owner, name]);
      if (!stored) continue;
      const key = `${owner}\u0000${name}\u0000${stored.updatedAt}`;
      let c = this.cache.get(key);
      if (!c) {
        const compiled = compileTemplate(stored.body, stored.params);
        if (!compiled.ok) throw new GatewayError('TEMPLATE_INVALID', `stored template ${name} no longer compiles: ${compiled.problems[0]?.message ?? ''}`);
        c = compiled.template;
        setBounded(this.cache, key, c, CACHE_ENTRIES);
      }
      return c;
    }
    return undefined;
  }

  private count(tenant: string): number {
    let n = 0;
    for (const _ of this.db.getKeys({ start: [tenant, ''], end: [tenant, '\uffff'], limit: this.deps.maxPerTenant + 1 })) n++;
    return n;
  }
}
