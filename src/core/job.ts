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
  /** `police`: never submitted over SMPP (DESIGN invariant 3); the dispatcher refuses it. */
  readonly classification?: string;
}

/**
 * A group send: the job carries the message with no recipients and this
 * instruction; the dispatcher expands the group when it takes the job,
 * writes the recipient rows and publishes recipient jobs
 * (`<message id>.<part>`), then acks this one (src/directory/fanout.ts).
 */
export interface JobExpansion {
  /** Group id to expand. */
  readonly group: string;
  /** Sending directory unit (block-list scopes); absent for a bootstrap (config) key. */
  readonly unit?: string;
  /** The request's channel: auto (each person's preference), sms or pda. */
  readonly channel: 'sms' | 'pda' | 'auto';
  /** Set when a held message is rejected on review: every member is recorded `rejected` with this reason; nothing is sent. */
  readonly reject?: string;
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
  /** Present on a group send's expansion job (exactly one message, no recipients). */
  readonly expand?: JobExpansion;
  /**
   * A PDA hand-off job (tier PDA_HANDOFF_TIER, no messages): recipients another
   * host's dispatcher routed to PDAs, for a process with the PDA channel.
   */
  readonly pda?: readonly JobPdaItem[];
  /** A second attempt's job (reroute, src/core/reroute.ts): its recipients are sent only once this host has seen their reroute. */
  readonly reroute?: 1;
}

/** One recipient for the PDA channel (the shape src/pda/channel.ts `deliver` takes). */
export interface JobPdaItem {
  readonly messageId: string;
  readonly index: number;
  readonly personId: string;
  readonly priority: 0 | 1 | 2;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly classification: string;
  readonly senderUnit: string;
  readonly body: string;
}

/**
 * Internal tier of PDA hand-off jobs (queue.nats.replication.pdaHandoff):
 * fetched only by processes with the PDA channel. Not a valid configured
 * tier name (those start with a letter), so it never collides with one.
 */
export const PDA_HANDOFF_TIER = '_pda';

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
