/**
 * Signing secrets of callbacks, per tenant: bootstrap tenants from config
 * (`callbacks.secrets`), units through the admin API (PATCH /v1/admin/units/{id}
 * with `callbackSecret`). Two secrets may be valid during a change: setting a
 * new one keeps the old as `previous` until it is dropped; the gateway signs
 * with the current one, receivers accept either (docs/CALLBACKS.md).
 *
 * On disk (the gateway's LMDB environment; per host, not replicated):
 *
 *   callbacks.secrets   tenant → { current, previous?, updatedAt }
 *
 * A secret set through the admin API wins over the config one for the same
 * tenant. Secrets are never logged and never returned by the API after they
 * are set (the view says only whether one is set).
 */
import type { Database, RootDatabase } from 'lmdb';
import type { SigningSecrets } from './webhook.js';

export interface StoredSecret {
  readonly current: string;
  readonly previous?: string;
  readonly updatedAt: number;
}

/** What the admin API shows of a tenant's secrets. */
export interface SecretView {
  readonly set: boolean;
  readonly previous: boolean;
  readonly source?: 'config' | 'admin';
  readonly updatedAt?: number;
}

export class CallbackSecrets implements SigningSecrets {
  private readonly db: Database<StoredSecret, string>;

  constructor(env: RootDatabase, private readonly fromConfig: Readonly<Record<string, { readonly current: string; readonly previous?: string }>>, private readonly now: () => number = Date.now) {
    this.db = env.openDB<StoredSecret, string>({ name: 'callbacks.secrets', encoding: 'msgpack' });
  }

  currentSecret(tenant: string): string | undefined {
    return this.db.get(tenant)?.current ?? this.fromConfig[tenant]?.current;
  }

  /** Every secret a receiver should accept now (current first). */
  validSecrets(tenant: string): string[] {
    const s = this.db.get(tenant) ?? this.fromConfig[tenant];
    return s === undefined ? [] : [s.current, ...(s.previous !== undefined ? [s.previous] : [])];
  }

  /** A new current secret; the old current one stays valid as `previous` (rotation). */
  async rotate(tenant: string, secret: string): Promise<void> {
    const old = this.db.get(tenant) ?? this.fromConfig[tenant];
    const previous = old !== undefined && old.current !== secret ? old.current : old?.previous; // not a secret check (rotation: is the new secret the current one)
    await this.db.put(tenant, { current: secret, ...(previous !== undefined ? { previous } : {}), updatedAt: this.now() });
  }

  /** The change is over: only the current secret is valid. */
  async dropPrevious(tenant: string): Promise<void> {
    const s = this.db.get(tenant);
    if (s !== undefined && s.previous !== undefined) await this.db.put(tenant, { current: s.current, updatedAt: this.now() });
  }

  /** No secret from the admin API any more (the config one, if any, applies again). */
  async remove(tenant: string): Promise<void> {
    await this.db.remove(tenant);
  }

  view(tenant: string): SecretView {
    const s = this.db.get(tenant);
    if (s !== undefined) return { set: true, previous: s.previous !== undefined, source: 'admin', updatedAt: s.updatedAt };
    const c = this.fromConfig[tenant];
    return c !== undefined ? { set: true, previous: c.previous !== undefined, source: 'config' } : { set: false, previous: false };
  }
}
