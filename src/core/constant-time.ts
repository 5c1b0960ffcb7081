/**
 * Comparing secrets (keys, passwords, authenticators) in constant time: both
 * sides are hashed (SHA-256, so lengths do not show either) and the digests
 * compared with crypto.timingSafeEqual. Every check of a presented secret
 * goes through a key ring (digest lookup) or this; never `===` or
 * Buffer.equals (test/unit/constant-time.test.ts scans src for them).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export function sameSecret(a: string | Uint8Array, b: string | Uint8Array): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}
