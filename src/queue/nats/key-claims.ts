/**
 * Idempotency-Key claims shared by every process and host of a NATS
 * deployment (WorkQueue.claimKey, src/queue/port.ts).
 *
 *   stream <stream>_KEYS   subjects <prefix>.keys.<sha256(tenant, key) base64url>
 *                          limits retention, one message per subject, max_age = the key's TTL
 *
 * A claim is a publish that succeeds only while its subject holds nothing
 * newer than what the claimer saw (Nats-Expected-Last-Subject-Sequence: 0
 * for a key nobody holds), so of two processes claiming one key at the same
 * moment exactly one wins; the other reads the winner's claim (its message
 * id, request fingerprint and time). A claim older than the TTL has lapsed:
 * it is replaced the same way, expecting its sequence (the server also
 * drops it after max_age).
 *
 * Why: each host's receipt store learns another host's keys only through
 * replication, milliseconds later; without a shared claim a repeat (or a
 * different body under the same key) sent to another host within that lag
 * was accepted under the same message id, and the queue's de-duplication
 * then dropped its jobs: a 202 for a message never sent
 * (test/integration/idempotency-nats-hosts.test.ts).
 */
import { createHash } from 'node:crypto';
import { nanos } from '@nats-io/transport-node';
import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { GatewayError } from '../../core/errors.js';
import type { KeyClaim, KeyClaimAnswer } from '../port.js';

/** JSStreamWrongLastSequenceErr: the subject holds a newer message than expected. */
const WRONG_LAST_SEQUENCE = 10071;
/** Rounds of publish / read before giving up (each lost round means the subject changed under us). */
const CLAIM_ROUNDS = 4;

export function keysStreamName(stream: string): string {
  return `${stream}_KEYS`;
}

export function keysStreamConfig(stream: string, prefix: string, replicas: number, ttlMs: number, maxMsgSize: number): Partial<StreamConfig> & { name: string } {
  const maxAgeMs = Math.max(1_000, ttlMs);
  return {
    name: keysStreamName(stream),
    description: 'smsgw Idempotency-Key claims: the first request of each key within its TTL, across processes and hosts',
    subjects: [`${prefix}.keys.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
    discard: DiscardPolicy.Old,
    max_age: nanos(maxAgeMs),
    max_msgs: -1,
    max_bytes: -1,
    max_msg_size: maxMsgSize,
    max_consumers: -1,
    max_msgs_per_subject: 1,
    duplicate_window: nanos(Math.min(120_000, maxAgeMs)),
  };
}

/** What a claim stores (JSON). */
interface StoredClaim {
  readonly i: string;
  readonly f: string;
  readonly a: number;
}

export function keySubject(prefix: string, tenant: string, key: string): string {
  return `${prefix}.keys.${createHash('sha256').update(tenant).update('\u0000').update(key).digest('base64url')}`;
}

export async function claimKey(
  js: JetStreamClient,
  jsm: JetStreamManager,
  o: { readonly stream: string; readonly prefix: string; readonly timeoutMs: number },
  claim: KeyClaim,
): Promise<KeyClaimAnswer> {
  const stream = keysStreamName(o.stream);
  const subject = keySubject(o.prefix, claim.tenant, claim.key);
  const data = new TextEncoder().encode(JSON.stringify({ i: claim.id, f: claim.fingerprint, a: claim.at } satisfies StoredClaim));
  let expect = 0;
  for (let round = 0; round < CLAIM_ROUNDS; round++) {
    try {
      await js.publish(subject, data, { expect: { streamName: stream, lastSubjectSequence: expect }, timeout: o.timeoutMs });
      return { won: true };
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === WRONG_LAST_SEQUENCE)) throw unavailable(e);
    }
    let held;
    try {
      held = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    } catch (e) {
      throw unavailable(e);
    }
    if (held === null) {
      expect = 0; // dropped (max_age) between the publish and the read
      continue;
    }
    const c = readClaim(held.data);
    if (c === undefined || c.a + claim.ttlMs <= claim.at) {
      expect = held.seq; // lapsed (or unreadable): replace exactly that one
      continue;
    }
    return { won: false, id: c.i, fingerprint: c.f, at: c.a };
  }
  throw new GatewayError('QUEUE_UNAVAILABLE', `Idempotency-Key claim kept changing under ${CLAIM_ROUNDS} attempts; retry`);
}

function readClaim(data: Uint8Array): StoredClaim | undefined {
  try {
    const c = JSON.parse(new TextDecoder().decode(data)) as Partial<StoredClaim> | null;
    return c !== null && typeof c.i === 'string' && typeof c.f === 'string' && typeof c.a === 'number' ? { i: c.i, f: c.f, a: c.a } : undefined;
  } catch {
    return undefined;
  }
}

function unavailable(e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  return new GatewayError('QUEUE_UNAVAILABLE', `Idempotency-Key claim not confirmed: ${String(e)}`, { cause: e });
}
