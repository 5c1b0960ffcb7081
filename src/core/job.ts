/**
 * A Job is the unit of work on the queue: one body, many recipients.
 *
 * A message to N recipients becomes ceil(N / batchSize) jobs, each carrying the
 * body once and up to `batchSize` recipients, so a 500k broadcast is ~1,000
 * queue entries rather than 500k copies of the text. Several small messages of
 * the same (tier, tenant, group) may share one job (ingest coalescing).
 *
 * Jobs are encoded as JSON bytes so every queue adapter (embedded LMDB, NATS
 * JetStream) carries the same payload.
 */
import type { SmsEncoding } from './message.js';

export interface JobRecipient {
  /** Index of the recipient within its message (stable key in the receipt store). */
  readonly i: number;
  /** Normalised number, digits only, with country code (e.g. 8613800138000). */
  readonly to: string;
}

export interface JobMessage {
  readonly id: string;
  readonly text: string;
  readonly encoding: SmsEncoding;
  /** Source address (sender code / extension). */
  readonly sender: string;
  /** Epoch ms after which no segment may be submitted and open ones expire. */
  readonly expiresAt: number;
  readonly recipients: readonly JobRecipient[];
}

export interface Job {
  readonly v: 1;
  /** Unique job id; also the queue de-duplication id (Nats-Msg-Id). */
  readonly id: string;
  readonly tier: string;
  readonly tenant: string;
  readonly group: string;
  readonly createdAt: number;
  readonly messages: readonly JobMessage[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJob(job: Job): Uint8Array {
  return encoder.encode(JSON.stringify(job));
}

export function decodeJob(bytes: Uint8Array): Job {
  const job = JSON.parse(decoder.decode(bytes)) as Job;
  if (job.v !== 1 || typeof job.id !== 'string' || !Array.isArray(job.messages)) {
    throw new TypeError('not a v1 job');
  }
  return job;
}

/** Subject tokens may not contain `.`, `*`, `>` or white space. */
export function subjectToken(s: string): string {
  const t = s.replace(/[.*>\s]/g, '_');
  return t.length === 0 ? '_' : t;
}

/** `smsgw.work.<tier>.<tenant>.<group>` */
export function workSubject(prefix: string, tier: string, tenant: string, group: string): string {
  return `${prefix}.work.${subjectToken(tier)}.${subjectToken(tenant)}.${subjectToken(group)}`;
}

/** Number of recipients across a job's messages. */
export function jobRecipientCount(job: Job): number {
  let n = 0;
  for (const m of job.messages) n += m.recipients.length;
  return n;
}
