/**
 * Intake: turns a validated send request into durable state.
 *
 *   request ─▶ permission (tier) ─▶ normalise + de-duplicate numbers ─▶ count segments
 *           ─▶ message record + recipient rows (receipt store)
 *           ─▶ jobs of ≤ batchSize recipients (queue)           ─▶ both durable ─▶ 202
 *
 * With the embedded queue the receipt rows and the jobs are written in the
 * same event turn into the same LMDB environment, so they commit in one
 * transaction; the 202 waits for that transaction to be flushed to disk.
 * With NATS the receipt rows are flushed first and the jobs published after,
 * so a job never refers to rows that could be lost.
 *
 * Idempotency-Key: the message id is derived from (tenant, key), the stored
 * answer is replayed for a repeat, and a repeat while the first is still in
 * flight waits for the first's answer.
 */
import type { Logger } from 'pino';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import type { Channel, SmsEncoding, Tier } from '../core/message.js';
import { encodeJob, workSubject, type Job, type JobMessage, type JobRecipient } from '../core/job.js';
import { normalizeNumber } from '../core/phone.js';
import { countSegments, MAX_SEGMENTS } from '../core/segment.js';
import { parseIsoDuration } from '../core/duration.js';
import type { QueueMessage, WorkQueue } from '../queue/port.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ResolvedConfig } from '../config/load.js';
import type { Accepted, SendRequest } from './schemas.js';
import { idempotentMessageId, newMessageId } from './ids.js';
import { JobBatcher } from './job-batcher.js';
import { createHash } from 'node:crypto';

/** Who is calling: resolved from the API key. */
export interface Principal {
  readonly tenant: string;
  /** Allowed tier names, or null for all. */
  readonly tiers: ReadonlySet<string> | null;
  readonly sender: string;
}

/** What intake needs from the receipt store. */
export interface IntakeStore {
  putMessage(msg: IntakeMessageRecord, numbers: readonly string[]): void;
  putIdempotency(tenant: string, key: string, value: unknown, expiresAt: number): void;
  getIdempotency(tenant: string, key: string): unknown;
  getMessage(id: string): { tenant: string } | undefined;
  flushed(): Promise<void>;
}

export interface IntakeMessageRecord {
  id: string;
  tenant: string;
  tier: string;
  channel: Channel;
  encoding: SmsEncoding;
  segments: number;
  recipients: number;
  createdAt: number;
  expiresAt: number;
  group?: string;
  reference?: string;
  idempotencyKey?: string;
  callbackUrl?: string;
}

interface StoredIdempotency {
  fingerprint: string;
  response: Accepted;
}

/** A request that passed every check and is ready to be written. */
interface Prepared {
  record: IntakeMessageRecord;
  numbers: string[];
  /** The message split into chunks of ≤ queue.batchSize recipients, body once per chunk. */
  chunks: JobMessage[];
  response: Accepted;
  idempotencyKey?: string;
  fingerprint: string;
}

export type ItemResult = { ok: true; replayed: boolean; body: Accepted } | { ok: false; error: GatewayError };

export interface IntakeDeps {
  config: ResolvedConfig;
  store: IntakeStore;
  queue: WorkQueue;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
  /** Called after a write became durable (e.g. to wake a dispatcher in the same process). */
  onAccepted?: () => void;
}

export class Intake {
  private readonly config: ResolvedConfig;
  private readonly store: IntakeStore;
  private readonly queue: WorkQueue;
  private readonly metrics: Metrics;
  private readonly now: () => number;
  private readonly onAccepted: (() => void) | undefined;
  /** Coalesces small messages into shared jobs; undefined when queue.coalesce is off. */
  private readonly batcher: JobBatcher | undefined;
  /** Idempotency keys whose first request is still being written. Bounded by maxInflightRequests. */
  private readonly inflightKeys = new Map<string, { fingerprint: string; result: Promise<ItemResult> }>();
  private inflight = 0;

  constructor(deps: IntakeDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.queue = deps.queue;
    this.metrics = deps.metrics;
    this.now = deps.now ?? Date.now;
    this.onAccepted = deps.onAccepted;
    const q = deps.config.queue;
    this.batcher = q.coalesce
      ? new JobBatcher({
          queue: deps.queue,
          prefix: q.prefix,
          // Embedded: coalesce what arrives in one event turn (LMDB group-commits anyway).
          flushMs: q.kind === 'nats' ? q.nats.flushMs : 0,
          maxRecipients: Math.min(q.batchSize, q.nats.flushRecipients),
          maxPendingRecipients: Math.max(10 * q.batchSize, 50_000),
          newJobId: () => `c.${newMessageId()}`,
          metrics: deps.metrics,
        })
      : undefined;
  }

  get inflightRequests(): number {
    return this.inflight;
  }

  /** One message (POST /v1/messages). Throws GatewayError for a refused request. */
  async accept(principal: Principal, request: SendRequest, idempotencyKey?: string): Promise<ItemResult> {
    const [result] = await this.acceptMany(principal, [{ request, idempotencyKey }]);
    if (!result) throw new GatewayError('INTERNAL', 'no result');
    return result;
  }

  /**
   * Several messages (POST /v1/messages/batch): each item is checked on its
   * own; all that pass are written together and share one flush.
   */
  async acceptMany(principal: Principal, items: readonly { request: SendRequest; idempotencyKey?: string | undefined; prefix?: string }[]): Promise<ItemResult[]> {
    if (this.inflight >= this.config.server.maxInflightRequests) throw new GatewayError('OVERLOADED');
    const results: (ItemResult | undefined)[] = new Array(items.length);
    const waits: Promise<void>[] = [];
    const toWrite: { index: number; prepared: Prepared }[] = [];
    const now = this.now();
    items.forEach((item, index) => {
      try {
        const prepared = this.prepare(principal, item.request, item.idempotencyKey, item.prefix ?? '', now);
        if (prepared.idempotencyKey !== undefined) {
          const replay = this.replay(principal.tenant, prepared);
          if (replay) {
            waits.push(replay.then((r) => void (results[index] = r)));
            return;
          }
        }
        toWrite.push({ index, prepared });
      } catch (e) {
        results[index] = { ok: false, error: asGatewayError(e) };
      }
    });
    if (toWrite.length > 0) {
      this.inflight++;
      this.metrics.ingestInflight.inc();
      const written = this.write(toWrite.map((w) => w.prepared));
      for (const w of toWrite) {
        const key = w.prepared.idempotencyKey;
        const p = written.then(
          (): ItemResult => ({ ok: true, replayed: false, body: w.prepared.response }),
          (e: unknown): ItemResult => ({ ok: false, error: asGatewayError(e) }),
        );
        if (key !== undefined) {
          const k = inflightKey(principal.tenant, key);
          this.inflightKeys.set(k, { fingerprint: w.prepared.fingerprint, result: p });
          void p.finally(() => this.inflightKeys.delete(k));
        }
        waits.push(p.then((r) => void (results[w.index] = r)));
      }
      this.metrics.idempotencyCacheSize.set(this.inflightKeys.size);
      void written.finally(() => {
        this.inflight--;
        this.metrics.ingestInflight.dec();
      }).catch(() => undefined);
    }
    await Promise.all(waits);
    return results.map((r) => r ?? { ok: false, error: new GatewayError('INTERNAL', 'item not processed') });
  }

  /** A repeat of a known key: the first answer, or 409 when the body differs. */
  private replay(tenant: string, prepared: Prepared): Promise<ItemResult> | undefined {
    const key = prepared.idempotencyKey as string;
    const pending = this.inflightKeys.get(inflightKey(tenant, key));
    const check = (stored: StoredIdempotency): ItemResult =>
      stored.fingerprint === prepared.fingerprint
        ? { ok: true, replayed: true, body: stored.response }
        : { ok: false, error: new GatewayError('IDEMPOTENCY_CONFLICT', 'Idempotency-Key was already used with a different request body') };
    if (pending) {
      return pending.result.then((r) => (r.ok ? check({ fingerprint: pending.fingerprint, response: r.body }) : r));
    }
    const stored = this.store.getIdempotency(tenant, key) as StoredIdempotency | undefined;
    return stored ? Promise.resolve(check(stored)) : undefined;
  }

  private prepare(principal: Principal, req: SendRequest, idempotencyKey: string | undefined, prefix: string, now: number): Prepared {
    const problems: FieldProblem[] = [];
    const tierName = req.tier ?? this.config.defaultTier;
    const tier: Tier | undefined = this.config.tierByName.get(tierName);
    if (!tier) {
      throw new GatewayError('VALIDATION', `unknown tier ${tierName}`, {
        details: [{ field: `${prefix}/tier`, message: `must be one of ${this.config.tierList.map((t) => t.name).join(', ')}` }],
      });
    }
    if (principal.tiers !== null && !principal.tiers.has(tier.name)) {
      throw new GatewayError('FORBIDDEN', `this API key may not send at tier ${tier.name}`, {
        details: [{ field: `${prefix}/tier`, message: `not granted; granted: ${[...principal.tiers].join(', ')}` }],
      });
    }
    const channel: Channel = req.channel ?? 'auto';
    if (channel === 'pda') {
      problems.push({ field: `${prefix}/channel`, message: 'the PDA channel is not enabled on this gateway' });
    }
    if (req.group !== undefined) problems.push({ field: `${prefix}/group`, message: 'recipient groups need the directory, which is not enabled on this gateway; send `to`' });
    if (req.template !== undefined) problems.push({ field: `${prefix}/template`, message: 'templates are not enabled on this gateway; send `text`' });
    if (req.scheduleAt !== undefined) problems.push({ field: `${prefix}/scheduleAt`, message: 'scheduled sending is not enabled on this gateway' });
    if (req.text === undefined && req.template === undefined) problems.push({ field: `${prefix}/text`, message: 'text is required' });
    if (req.to === undefined && req.group === undefined) problems.push({ field: `${prefix}/to`, message: 'give `to` (a list of numbers)' });
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });

    const to = req.to as string[];
    const text = req.text as string;
    if (to.length > this.config.server.maxRecipientsPerRequest) {
      throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${this.config.server.maxRecipientsPerRequest} recipients in one request`, {
        details: [{ field: `${prefix}/to`, message: `has ${to.length} items` }],
      });
    }
    const numbers: string[] = [];
    const seen = new Set<string>();
    const bad: FieldProblem[] = [];
    const allowInternational = this.config.numbers.allowInternational;
    for (let i = 0; i < to.length; i++) {
      const n = normalizeNumber(to[i] as string, { allowInternational });
      if (!n.ok) {
        if (bad.length < 20) bad.push({ field: `${prefix}/to/${i}`, message: n.reason });
        else if (bad.length === 20) bad.push({ field: `${prefix}/to`, message: 'more invalid numbers not listed' });
        continue;
      }
      if (!seen.has(n.number)) {
        seen.add(n.number);
        numbers.push(n.number);
      }
    }
    if (bad.length > 0) throw new GatewayError('BAD_NUMBER', `${bad.length > 20 ? 'more than 20' : bad.length} invalid number(s)`, { details: bad });

    const seg = countSegments(text);
    if (seg.count > MAX_SEGMENTS) {
      throw new GatewayError('VALIDATION', 'text is too long', { details: [{ field: `${prefix}/text`, message: `needs ${seg.count} parts; at most ${MAX_SEGMENTS}` }] });
    }
    let validityMs = tier.defaultValidityMs;
    if (req.validity !== undefined) {
      const v = parseIsoDuration(req.validity);
      if (v === undefined || v <= 0 || v > this.config.maxValidityMs) {
        throw new GatewayError('VALIDATION', 'validity out of range', {
          details: [{ field: `${prefix}/validity`, message: `must be a positive ISO-8601 duration up to ${this.config.sender.maxValidity}` }],
        });
      }
      validityMs = v;
    }

    const id = idempotencyKey !== undefined ? idempotentMessageId(principal.tenant, idempotencyKey) : newMessageId(now);
    const expiresAt = now + validityMs;
    const group = 'direct';
    const record: IntakeMessageRecord = {
      id,
      tenant: principal.tenant,
      tier: tier.name,
      channel,
      encoding: seg.encoding,
      segments: seg.count,
      recipients: numbers.length,
      createdAt: now,
      expiresAt,
      group,
      ...(req.reference !== undefined ? { reference: req.reference } : {}),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      ...(req.callbackUrl !== undefined ? { callbackUrl: req.callbackUrl } : {}),
    };
    const chunks: JobMessage[] = [];
    const batchSize = this.config.queue.batchSize;
    for (let start = 0; start < numbers.length; start += batchSize) {
      const recipients: JobRecipient[] = [];
      const end = Math.min(numbers.length, start + batchSize);
      for (let i = start; i < end; i++) recipients.push({ i, to: numbers[i] as string });
      chunks.push({ id, text, encoding: seg.encoding, sender: principal.sender, expiresAt, recipients });
    }
    const response: Accepted = {
      id,
      recipients: numbers.length,
      segments: seg.count,
      totalSegments: numbers.length * seg.count,
      encoding: seg.encoding,
      tier: tier.name,
      status: 'accepted',
    };
    const prepared: Prepared = {
      record,
      numbers,
      chunks,
      response,
      fingerprint: '',
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    };
    prepared.fingerprint = requestFingerprint(req);
    return prepared;
  }

  /**
   * Write receipts and jobs; resolves when both are durable.
   *
   * Requests with an Idempotency-Key get jobs with ids derived from the
   * message id (`<id>.<part>`), published directly: a retry after a crash
   * republishes the same ids and the queue de-duplicates them. Other
   * messages go through the JobBatcher (coalesced).
   */
  private async write(batch: readonly Prepared[]): Promise<void> {
    const now = this.now();
    const ttl = this.config.idempotencyTtlMs;
    const direct: QueueMessage[] = [];
    const coalesced: Prepared[] = [];
    const keyed: Prepared[] = [];
    for (const p of batch) {
      const isKeyed = p.idempotencyKey !== undefined;
      // A keyed retry after a crash may find its rows written (and progressed): keep them.
      if (!(isKeyed && this.store.getMessage(p.record.id))) this.store.putMessage(p.record, p.numbers);
      if (isKeyed) keyed.push(p);
      if (isKeyed || !this.batcher) {
        p.chunks.forEach((m, part) => {
          const job: Job = { v: 1, id: `${p.record.id}.${part}`, tier: p.record.tier, tenant: p.record.tenant, group: p.record.group ?? 'direct', createdAt: p.record.createdAt, messages: [m] };
          direct.push({ subject: workSubject(this.config.queue.prefix, job.tier, job.tenant, job.group), tier: job.tier, msgId: job.id, data: encodeJob(job) });
        });
      } else coalesced.push(p);
    }
    const putKeys = (): void => {
      for (const p of keyed) {
        const stored: StoredIdempotency = { fingerprint: p.fingerprint, response: p.response };
        this.store.putIdempotency(p.record.tenant, p.idempotencyKey as string, stored, now + ttl);
      }
    };
    const enqueue = (waits: Promise<void>[]): void => {
      if (direct.length > 0) waits.push(this.queue.publish(direct).then(() => undefined));
      for (const p of coalesced) {
        for (const m of p.chunks) waits.push((this.batcher as JobBatcher).add(p.record.tier, p.record.tenant, p.record.group ?? 'direct', p.record.createdAt, m));
      }
    };
    if (this.queue.kind === 'embedded') {
      // Rows, key records and direct jobs: same event turn, same LMDB environment → one transaction.
      putKeys();
      const waits: Promise<void>[] = [this.store.flushed()];
      enqueue(waits);
      await Promise.all(waits);
    } else {
      // Rows durable before any job can refer to them; key records after the jobs are durable.
      await this.store.flushed();
      const waits: Promise<void>[] = [];
      enqueue(waits);
      await Promise.all(waits);
      putKeys();
    }
    this.onAccepted?.();
    for (const p of batch) {
      this.metrics.acceptedMessages.inc({ tier: p.record.tier });
      this.metrics.acceptedRecipients.inc({ tier: p.record.tier }, p.record.recipients);
    }
  }
}

function inflightKey(tenant: string, key: string): string {
  return `${tenant}\u0000${key}`;
}

/** Requests are "the same" when their canonical JSON (keys sorted at every level) is the same. */
export function requestFingerprint(req: unknown): string {
  return createHash('sha256').update(canonicalJson(req)).digest('base64url');
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function asGatewayError(e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  return new GatewayError('INTERNAL', undefined, { cause: e });
}
