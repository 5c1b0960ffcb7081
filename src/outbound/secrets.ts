/**
 * Signing secrets of callbacks, per tenant: bootstrap tenants from config
 * (`callbacks.secrets`), units through the admin API (PATCH /v1/admin/units/{id}
 * with `callbackSecret`), which the directory keeps (`dir.callbackSecrets`,
 * DirectoryStore.setCallbackSecret: replicated to every host like the other
 * directory rows, and audited without the secret). Two secrets may be valid
 * during a change: setting a new one keeps the old as `previous` until it is
 * dropped; the gateway signs with the current one, receivers accept either
 * (docs/CALLBACKS.md).
 *
 * Read order: the directory's row, then `callbacks.secrets` (rows an earlier
 * version kept per host, read-only now), then the config.
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

/** Tenants whose legacy row (or its absence) is kept in memory (cleared when full). */
const MAX_LEGACY_ROWS = 4096;

export class CallbackSecrets implements SigningSecrets {
  /** Rows of an earlier version (per host, not replicated): read only. */
  private readonly legacy: Database<StoredSecret, string>;
  /**
   * What `legacy` holds per tenant (null: nothing), read once: no version
   * that shares the environment writes it any more (every process of a host
   * runs one version, docs/DEPLOY.md), and it is read for every callback
   * POST and every send with a callback of a tenant without a directory row.
   */
  private readonly legacyRows = new Map<string, StoredSecret | null>();
  private units: (tenant: string) => StoredSecret | undefined = () => undefined;

  constructor(env: RootDatabase, private readonly fromConfig: Readonly<Record<string, { readonly current: string; readonly previous?: string }>>) {
    this.legacy = env.openDB<StoredSecret, string>({ name: 'callbacks.secrets', encoding: 'msgpack' });
  }

  /** The directory's secrets (wired once the directory is open). */
  useDirectory(lookup: (tenant: string) => StoredSecret | undefined): void {
    this.units = lookup;
  }

  /** The config's secret of a bootstrap tenant (kept valid as `previous` when a first admin secret is set). */
  configSecret(tenant: string): { readonly current: string } | undefined {
    return this.fromConfig[tenant];
  }

  private admin(tenant: string): StoredSecret | undefined {
    return this.units(tenant) ?? this.legacyRow(tenant);
  }

  private legacyRow(tenant: string): StoredSecret | undefined {
    let row = this.legacyRows.get(tenant);
    if (row === undefined) {
      if (this.legacyRows.size >= MAX_LEGACY_ROWS) this.legacyRows.clear();
      row = this.legacy.get(tenant) ?? null;
      this.legacyRows.set(tenant, row);
    }
    return row ?? undefined;
  }

  currentSecret(tenant: string): string | undefined {
    return this.admin(tenant)?.current ?? this.fromConfig[tenant]?.current;
  }

  /** Every secret a receiver should accept now (current first). */
  validSecrets(tenant: string): string[] {
    const s = this.admin(tenant) ?? this.fromConfig[tenant];
    return s === undefined ? [] : [s.current, ...(s.previous !== undefined ? [s.previous] : [])];
  }

  view(tenant: string): SecretView {
    const s = this.admin(tenant);
    if (s !== undefined) return { set: true, previous: s.previous !== undefined, source: 'admin', updatedAt: s.updatedAt };
    const c = this.fromConfig[tenant];
    return c !== undefined ? { set: true, previous: c.previous !== undefined, source: 'config' } : { set: false, previous: false };
  }
}
