/**
 * Message ids: 26 characters of Crockford base32, time-ordered (48-bit ms
 * timestamp then 80 random bits, like a ULID), so ids sort by acceptance
 * time in LMDB ranges and logs.
 *
 * With an Idempotency-Key the id is derived from (tenant, key, generation)
 * instead, so a retried request after a crash maps onto the same message, the
 * same receipt rows and the same queue de-duplication ids: end-to-end
 * idempotent. The send service takes the generation from the time window of
 * one idempotency TTL (`keyedMessageId` in service.ts): a key reused after its
 * TTL gets a new id, never the older message's.
 */
import { createHash, randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/**
 * Random bytes are drawn 4 KiB at a time: one getrandom() per ~400 ids
 * instead of one per id (it was 10% of ingest CPU under load).
 */
const POOL = Buffer.alloc(4096);
let poolOffset = POOL.length;
const head = Buffer.alloc(16);

/** The alphabet as bytes, and where an id's characters are put before they become one string. */
const CODES = Buffer.from(ALPHABET, 'latin1');
const OUT = Buffer.alloc(64);

/**
 * The first `chars` base32 characters of `bytes` (at most 64). Written as bytes and
 * read as one flat string: not 26 one-character concatenations per id.
 */
function base32(bytes: Uint8Array, chars: number): string {
  let n = 0;
  let acc = 0;
  let bits = 0;
  for (let k = 0; k < bytes.length; k++) {
    acc = (acc << 8) | (bytes[k] as number);
    bits += 8;
    while (bits >= 5 && n < chars) {
      bits -= 5;
      OUT[n++] = CODES[(acc >>> bits) & 31] as number;
    }
    acc &= (1 << bits) - 1;
  }
  if (n < chars && bits > 0) OUT[n++] = CODES[(acc << (5 - bits)) & 31] as number;
  return OUT.toString('latin1', 0, n);
}

export function newMessageId(now: number = Date.now()): string {
  if (poolOffset + 10 > POOL.length) {
    randomFillSync(POOL);
    poolOffset = 0;
  }
  head.writeUIntBE(now, 0, 6);
  POOL.copy(head, 6, poolOffset, poolOffset + 10);
  poolOffset += 10;
  return base32(head, 26);
}

/**
 * The id a keyed request maps to. `generation` (absent for meetings, whose
 * key lives as long as the meeting) separates uses of the same key that must
 * not share a message.
 */
export function idempotentMessageId(tenant: string, key: string, generation?: string): string {
  const h = createHash('sha256').update(tenant).update('\u0000').update(key);
  if (generation !== undefined) h.update('\u0000').update(generation);
  const digest = h.digest();
  // 'I' is not in the Crockford alphabet, so a derived id can never equal a time-based one.
  return 'I' + base32(digest, 25);
}
