/**
 * Bearer API keys → Principal. Keys are held as SHA-256 digests, so the
 * lookup's timing depends on the digest, not on how much of a key matched.
 */
import { hash } from 'node:crypto';
import type { ApiKeyConfig } from '../config/schema.js';
import type { Principal } from '../core/send.js';
import { GatewayError } from '../core/errors.js';

/** Keys issued by the directory (hashed in LMDB); undefined when the key is not one of them. */
export interface DirectoryKeys {
  principalFor(key: string): Principal | undefined;
}

export class ApiKeyRing {
  private readonly byDigest = new Map<string, Principal>();

  constructor(keys: readonly ApiKeyConfig[], defaultSender: string, private readonly directory?: DirectoryKeys) {
    for (const k of keys) this.byDigest.set(digest(k.key), principalOfKey(k, defaultSender));
  }

  /** The principal for an `Authorization` header value, or a 401 error. */
  authenticate(header: string): Principal {
    if (header.length === 0) throw new GatewayError('UNAUTHORIZED', 'missing Authorization: Bearer <api key>');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m || m[1] === undefined) throw new GatewayError('UNAUTHORIZED', 'Authorization must be "Bearer <api key>"');
    // Bootstrap keys from config first, then the directory's (revoked / expired ones are refused there, by name).
    const p = this.byDigest.get(digest(m[1])) ?? this.directory?.principalFor(m[1]);
    if (!p) throw new GatewayError('UNAUTHORIZED', 'unknown API key');
    return p;
  }
}

/** The principal of a bootstrap key from config (auth.apiKeys). */
export function principalOfKey(k: ApiKeyConfig, defaultSender: string): Principal {
  const groups = k.groups === undefined ? undefined : k.groups.includes('*') ? null : new Set(k.groups);
  return {
    tenant: k.tenant,
    tiers: k.tiers.includes('*') ? null : new Set(k.tiers),
    sender: k.sender ?? defaultSender,
    ...(groups !== undefined ? { groups } : {}),
  };
}

function digest(key: string): string {
  // One-shot: no Hash object per request.
  return hash('sha256', key, 'base64');
}
