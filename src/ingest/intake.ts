/**
 * Intake: turns a validated send request into durable state.
 *
 *   request ─▶ permission (tier) ─▶ normalise + de-duplicate numbers ─▶ count segments
 *           ─▶ message record + recipient rows (receipt store)
 *           ─▶ jobs of ≤ batchSize recipients (queue)           ─▶ both durable ─▶ 202
 *
 * Rows and jobs are made durable together through the queue port
 * (`persistTogether`): with the embedded queue they are written in the same
 * event turn into the same LMDB environment and commit in one transaction;
 * with NATS the receipt rows are flushed first and the jobs published after,
 * so a job never refers to rows that could be lost. The 202 waits for both.
 *
 * Idempotency-Key: the message id is derived from (tenant, key), the stored
 * answer is replayed for a repeat, and a repeat while the first is still in
 * flight waits for the first's answer.
 */
import type { Logger } from 'pino';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import type { Channel, SmsEncoding, Tier } from '../core/message.js';
import type { Principal, RecipientOrigin, SendShape } from '../core/send.js';
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
import { quietUntil } from '../directory/quiet-hours.js';
import { createHash } from 'node:crypto';

/** What the door rules decided for one request (opaque to intake beyond these). */
export interface DoorAdmission {
  readonly sender: string;
  readonly unit?: string;
}

/**
 * The directory's rules at the door (src/directory/policy.ts): grants,
 * content, police routing, group counts, quotas. Without them, groups and
 * police messages are refused (422) and only tier grants apply.
 */
export interface DoorRules {
  readonly pdaEnabled: boolean;
  admit(principal: Principal, shape: SendShape, prefix: string): DoorAdmission;
  /** The text as sent (signature in front); `held` names the sensitive word when the message must be reviewed. */
  render(admission: DoorAdmission, text: string, prefix: string): { text: string; held?: string };
  checkDirectPolice(numbers: readonly string[], prefix: string, indexOf: (k: number) => number): void;
  countGroup(group: string, shape: SendShape, prefix: string): Promise<number>;
  reserve(admission: DoorAdmission, recipients: number): Promise<{ release(): Promise<void> }>;
}

/** Where held messages' jobs are parked instead of published (src/directory/held.ts). */
export interface HeldSink {
  hold(record: {
    id: string; tenant: string; tier: string; heldAt: number; expiresAt: number; word: string; recipients: number; group?: string; jobs: readonly QueueMessage[];
  }): void;
}

/** What intake needs from the receipt store. */
export interface IntakeStore {
  putMessage(msg: IntakeMessageRecord, numbers: readonly string[]): void;
  /** A group send: the message row only; the dispatcher writes recipient rows when it expands the group. */
  putPendingMessage(msg: IntakeMessageRecord): void;
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
  /** A group send: the one expansion job (chunks is empty). */
  expansion?: Job;
  /** Sensitive word that holds the message for review. */
  held?: string;
  /** Epoch ms: the jobs are parked until then. */
  scheduleAt?: number;
  admission?: DoorAdmission;
  response: Accepted;
  idempotencyKey?: string;
  fingerprint: string;
}

/** One send of acceptMany. */
export interface AcceptItem {
  readonly request: SendRequest;
  readonly idempotencyKey?: string | undefined;
  /** JSON-pointer prefix of the item's fields in error details (`/messages/3`). */
  readonly prefix?: string;
  /**
   * Where `to` came from (src/core/send.ts); it decides the grant needed.
   * Default `caller` (grant `direct`). Services set `directory` for numbers
   * they read from the directory, `workflow` for an event's applicant
   * numbers, `reply` for the one number that just wrote in.
   */
  readonly origin?: RecipientOrigin;
}

export type ItemResult = { ok: true; replayed: boolean; body: Accepted } | { ok: false; error: GatewayError };

export interface IntakeDeps {
  config: ResolvedConfig;
  store: IntakeStore;
  queue: WorkQueue;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
  /** How long small messages may wait to share a job (0: what arrives in one event turn). */
  lingerMs?: number;
  /** Called after a write became durable (e.g. to wake a dispatcher in the same process). */
  onAccepted?: () => void;
  /** Directory rules (grants, groups, content, quotas); absent: tier grants only. */
  rules?: DoorRules;
  /** Held-for-review messages go here (with rules whose content.onMatch is hold). */
  held?: HeldSink;
  /** Messages with scheduleAt park their jobs here until their time; absent: scheduleAt is refused. */
  scheduled?: ScheduleSink;
  /** Named templates (`template` + `params`); absent: `template` is refused. */
  templates?: TemplateRenderer;
}

/** Where scheduled messages' jobs wait (src/office/schedule.ts). */
export interface ScheduleSink {
  readonly maxAheadMs: number;
  park(entry: { id: string; tenant: string; dueAt: number; recipients: number; group?: string; jobs: readonly QueueMessage[] }): void;
}

/** Renders a tenant's named template (src/office/templates.ts); throws NOT_FOUND / TEMPLATE_PARAMS naming the field. */
export interface TemplateRenderer {
  render(tenant: string, name: string, params: Readonly<Record<string, unknown>>, prefix: string): string;
}

export class Intake {
  private readonly config: ResolvedConfig;
  private readonly store: IntakeStore;
  private readonly queue: WorkQueue;
  private readonly metrics: Metrics;
  private readonly now: () => number;
  private readonly onAccepted: (() => void) | undefined;
  private readonly rules: DoorRules | undefined;
  private readonly log: Logger;
  private readonly held: HeldSink | undefined;
  private readonly scheduled: ScheduleSink | undefined;
  private readonly templates: TemplateRenderer | undefined;
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
    this.rules = deps.rules;
    this.log = deps.logger;
    this.held = deps.held;
    this.scheduled = deps.scheduled;
    this.templates = deps.templates;
    const q = deps.config.queue;
    this.batcher = q.coalesce
      ? new JobBatcher({
          queue: deps.queue,
          prefix: q.prefix,
          // Embedded: coalesce what arrives in one event turn (LMDB group-commits anyway).
          flushMs: deps.lingerMs ?? 0,
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

  /**
   * The grant checks alone (tier, and the directory's rules for the shape):
   * for a service that takes work now and sends later (workflow events), so
   * a send it could never make is refused when the work comes in.
   */
  authorize(principal: Principal, shape: SendShape, prefix: string): void {
    if (principal.tiers !== null && !principal.tiers.has(shape.tier)) {
      throw new GatewayError('FORBIDDEN', `this API key may not send at tier ${shape.tier}`, {
        details: [{ field: `${prefix}/tier`, message: `not granted; granted: ${[...principal.tiers].join(', ')}` }],
      });
    }
    this.rules?.admit(principal, shape, prefix);
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
  async acceptMany(principal: Principal, items: readonly AcceptItem[]): Promise<ItemResult[]> {
    if (this.inflight >= this.config.server.maxInflightRequests) throw new GatewayError('OVERLOADED');
    const results: (ItemResult | undefined)[] = new Array(items.length);
    const waits: Promise<void>[] = [];
    let toWrite: { index: number; prepared: Prepared }[] = [];
    const now = this.now();
    // Group sends count their members (asynchronously, in chunks); everything else prepares at once.
    const prepared = await Promise.all(items.map((item) =>
      this.prepare(principal, item.request, item.idempotencyKey, item.prefix ?? '', now, item.origin ?? 'caller').then(
        (p): { ok: true; p: Prepared } => ({ ok: true, p }),
        (e: unknown): { ok: false; e: unknown } => ({ ok: false, e }),
      )));
    prepared.forEach((r, index) => {
      if (!r.ok) {
        results[index] = { ok: false, error: asGatewayError(r.e) };
        return;
      }
      if (r.p.idempotencyKey !== undefined) {
        const replay = this.replay(principal.tenant, r.p);
        if (replay) {
          waits.push(replay.then((x) => void (results[index] = x)));
          return;
        }
      }
      toWrite.push({ index, prepared: r.p });
    });
    // Claim every idempotency key now, in the same synchronous step as its replay check and
    // before any await, so a concurrent repeat (or a repeat in this batch) waits for this answer.
    const claims = new Map<number, (r: ItemResult | Promise<ItemResult>) => void>();
    toWrite = toWrite.filter((w) => {
      const key = w.prepared.idempotencyKey;
      if (key === undefined) return true;
      const k = inflightKey(principal.tenant, key);
      const pending = this.inflightKeys.get(k);
      if (pending) {
        const replay = this.replay(principal.tenant, w.prepared) as Promise<ItemResult>;
        waits.push(replay.then((x) => void (results[w.index] = x)));
        return false;
      }
      let settle!: (r: ItemResult | Promise<ItemResult>) => void;
      const result = new Promise<ItemResult>((resolve) => (settle = resolve));
      this.inflightKeys.set(k, { fingerprint: w.prepared.fingerprint, result });
      void result.finally(() => this.inflightKeys.delete(k));
      claims.set(w.index, settle);
      return true;
    });
    this.metrics.idempotencyCacheSize.set(this.inflightKeys.size);
    // Quotas are charged last, for what will really be written, and given back if the write fails.
    const reservations: { release(): Promise<void> }[] = [];
    if (this.rules && toWrite.length > 0) {
      const rules = this.rules;
      const reserved = await Promise.all(toWrite.map((w) =>
        w.prepared.admission === undefined
          ? Promise.resolve(undefined)
          : rules.reserve(w.prepared.admission, w.prepared.record.recipients).then(
            (res) => res,
            (e: unknown) => {
              const refused: ItemResult = { ok: false, error: asGatewayError(e) };
              results[w.index] = refused;
              claims.get(w.index)?.(refused);
              return null;
            },
          )));
      toWrite = toWrite.filter((_, k) => reserved[k] !== null);
      for (const res of reserved) if (res) reservations.push(res);
    }
    if (toWrite.length > 0) {
      this.inflight++;
      this.metrics.ingestInflight.inc();
      const written = this.write(toWrite.map((w) => w.prepared));
      if (reservations.length > 0) {
        written.catch(() => Promise.all(reservations.map((r) => r.release()))).catch((e: unknown) => {
          this.log.error({ err: e }, 'could not give back quota after a failed write');
        });
      }
      for (const w of toWrite) {
        const p = written.then(
          (): ItemResult => ({ ok: true, replayed: false, body: w.prepared.response }),
          (e: unknown): ItemResult => ({ ok: false, error: asGatewayError(e) }),
        );
        claims.get(w.index)?.(p);
        waits.push(p.then((r) => void (results[w.index] = r)));
      }
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

  private async prepare(principal: Principal, req: SendRequest, idempotencyKey: string | undefined, prefix: string, now: number, origin: RecipientOrigin): Promise<Prepared> {
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
    const rules = this.rules;
    const channel: Channel = req.channel ?? 'auto';
    const classification = req.classification;
    if (channel === 'pda' && !rules?.pdaEnabled) {
      problems.push({ field: `${prefix}/channel`, message: 'the PDA channel is not enabled on this gateway' });
    } else if (channel === 'pda' && req.to !== undefined && classification !== 'police') {
      problems.push({ field: `${prefix}/channel`, message: 'channel pda goes to a group (each member\'s PDA) or with classification police; for numbers use sms or auto' });
    }
    if (req.group !== undefined && !rules) problems.push({ field: `${prefix}/group`, message: 'recipient groups need the directory, which is not enabled on this gateway; send `to`' });
    if (req.group !== undefined && req.to !== undefined) problems.push({ field: `${prefix}/group`, message: 'give either `to` or `group`, not both' });
    if (classification !== undefined && !rules) problems.push({ field: `${prefix}/classification`, message: 'classified messages need the directory, which is not enabled on this gateway' });
    if (req.template !== undefined && !this.templates) problems.push({ field: `${prefix}/template`, message: 'templates are not enabled on this gateway; send `text`' });
    if (req.template !== undefined && req.text !== undefined) problems.push({ field: `${prefix}/template`, message: 'give either `text` or `template` (with `params`), not both' });
    if (req.params !== undefined && req.template === undefined) problems.push({ field: `${prefix}/params`, message: '`params` go with `template`' });
    let scheduleAt: number | undefined;
    if (req.scheduleAt !== undefined) {
      const at = parseRfc3339(req.scheduleAt);
      if (!this.scheduled) problems.push({ field: `${prefix}/scheduleAt`, message: 'scheduled sending is not enabled on this gateway' });
      else if (at === undefined) problems.push({ field: `${prefix}/scheduleAt`, message: 'must be an RFC 3339 time with an offset, e.g. 2026-11-23T09:00:00+08:00' });
      else if (at > now + this.scheduled.maxAheadMs) problems.push({ field: `${prefix}/scheduleAt`, message: `at most ${Math.round(this.scheduled.maxAheadMs / 86_400_000)} days ahead (office.schedule.maxAhead)` });
      // A time in the past (or now) is sent at once, like a message without scheduleAt.
      else if (at > now) scheduleAt = at;
    }
    if (req.text === undefined && req.template === undefined) problems.push({ field: `${prefix}/text`, message: 'text (or template) is required' });
    if (req.to === undefined && req.group === undefined) problems.push({ field: `${prefix}/to`, message: rules ? 'give `to` (a list of numbers) or `group`' : 'give `to` (a list of numbers)' });
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });

    const shape: SendShape = {
      tier: tier.name,
      // Where the numbers came from decides the grant they need (direct, workflow, none).
      ...(req.to !== undefined ? { origin } : {}),
      channel,
      ...(req.group !== undefined ? { group: req.group } : {}),
      ...(classification !== undefined ? { classification } : {}),
    };
    const admission = rules?.admit(principal, shape, prefix);
    const sender = admission?.sender ?? principal.sender;

    const numbers: string[] = [];
    let positions: number[] | undefined;
    if (req.to !== undefined) {
      const to = req.to;
      if (to.length > this.config.server.maxRecipientsPerRequest) {
        throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${this.config.server.maxRecipientsPerRequest} recipients in one request`, {
          details: [{ field: `${prefix}/to`, message: `has ${to.length} items` }],
        });
      }
      const seen = new Set<string>();
      const bad: FieldProblem[] = [];
      const allowInternational = this.config.numbers.allowInternational;
      if (classification !== undefined) positions = [];
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
          positions?.push(i);
        }
      }
      if (bad.length > 0) throw new GatewayError('BAD_NUMBER', `${bad.length > 20 ? 'more than 20' : bad.length} invalid number(s)`, { details: bad });
      // A reply needs no number grant because it goes back to the one number that wrote in, and only there.
      if (origin === 'reply' && numbers.length !== 1) {
        throw new GatewayError('FORBIDDEN', 'a reply goes only to the one number that wrote in', { details: [{ field: `${prefix}/to`, message: `has ${numbers.length} numbers` }] });
      }
    }

    const body = req.template !== undefined
      ? (this.templates as TemplateRenderer).render(principal.tenant, req.template, req.params ?? {}, prefix)
      : (req.text as string);
    const rendered = rules && admission ? rules.render(admission, body, prefix) : { text: body };
    const text = rendered.text;
    const seg = countSegments(text);
    if (seg.count > MAX_SEGMENTS) {
      throw new GatewayError('VALIDATION', 'text is too long', { details: [{ field: `${prefix}/${req.template !== undefined ? 'template' : 'text'}`, message: `needs ${seg.count} parts; at most ${MAX_SEGMENTS}${text !== body ? ' (with the unit\'s signature)' : ''}` }] });
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
    if (classification === 'police' && rules && numbers.length > 0) rules.checkDirectPolice(numbers, prefix, (k) => positions?.[k] ?? k);
    // The count is async (a big group is read in chunks); it is the last check before ids are taken.
    const recipients = req.group !== undefined && rules ? await rules.countGroup(req.group, shape, prefix) : numbers.length;
    if (req.group !== undefined && recipients === 0) {
      throw new GatewayError('VALIDATION', `group ${req.group} has no members`, { details: [{ field: `${prefix}/group`, message: 'has no members' }] });
    }

    const id = idempotencyKey !== undefined ? idempotentMessageId(principal.tenant, idempotencyKey) : newMessageId(now);
    // Quiet hours: a tier that must not be sent now waits; its validity starts when it may be sent.
    const tierConfig = this.config.tiers.find((t) => t.name === tier.name);
    const startAt = scheduleAt ?? now;
    const sendableAt = quietUntil(tierConfig?.quietHours, startAt, this.config.directory.utcOffsetMinutes) ?? startAt;
    const expiresAt = sendableAt + validityMs;
    const group = req.group ?? 'direct';
    const record: IntakeMessageRecord = {
      id,
      tenant: principal.tenant,
      tier: tier.name,
      channel,
      encoding: seg.encoding,
      segments: seg.count,
      recipients,
      createdAt: now,
      expiresAt,
      group,
      ...(req.reference !== undefined ? { reference: req.reference } : {}),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      ...(req.callbackUrl !== undefined ? { callbackUrl: req.callbackUrl } : {}),
    };
    const chunks: JobMessage[] = [];
    let expansion: Job | undefined;
    const cls = classification !== undefined ? { classification } : {};
    if (req.group !== undefined) {
      expansion = {
        v: 1, id: `${id}.x`, tier: tier.name, tenant: principal.tenant, group, createdAt: now,
        messages: [{ id, text, encoding: seg.encoding, sender, expiresAt, recipients: [], ...cls }],
        expand: { group, channel, ...(admission?.unit !== undefined ? { unit: admission.unit } : {}) },
      };
    } else {
      const batchSize = this.config.queue.batchSize;
      for (let start = 0; start < numbers.length; start += batchSize) {
        const rs: JobRecipient[] = [];
        const end = Math.min(numbers.length, start + batchSize);
        for (let i = start; i < end; i++) rs.push({ i, to: numbers[i] as string });
        chunks.push({ id, text, encoding: seg.encoding, sender, expiresAt, recipients: rs, ...cls });
      }
    }
    const response: Accepted = {
      id,
      recipients,
      segments: seg.count,
      totalSegments: recipients * seg.count,
      encoding: seg.encoding,
      tier: tier.name,
      status: rendered.held !== undefined ? 'held' : scheduleAt !== undefined ? 'scheduled' : 'accepted',
      ...(scheduleAt !== undefined ? { scheduledAt: new Date(scheduleAt).toISOString() } : {}),
    };
    const prepared: Prepared = {
      record,
      numbers,
      chunks,
      response,
      fingerprint: '',
      ...(expansion !== undefined ? { expansion } : {}),
      ...(rendered.held !== undefined ? { held: rendered.held } : {}),
      ...(scheduleAt !== undefined ? { scheduleAt } : {}),
      ...(admission !== undefined ? { admission } : {}),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    };
    // Only a keyed request is ever compared with an earlier one.
    if (idempotencyKey !== undefined) prepared.fingerprint = requestFingerprint(req);
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
    const prefix = this.config.queue.prefix;
    for (const p of batch) {
      const isKeyed = p.idempotencyKey !== undefined;
      // A keyed retry after a crash may find its rows written (and progressed): keep them.
      if (!(isKeyed && this.store.getMessage(p.record.id))) {
        if (p.expansion) this.store.putPendingMessage(p.record);
        else this.store.putMessage(p.record, p.numbers);
      }
      if (isKeyed) keyed.push(p);
      // Held messages and group sends never coalesce: a held message's jobs are parked whole,
      // and an expansion job must keep its own deterministic id.
      if (isKeyed || !this.batcher || p.expansion || p.held !== undefined || p.scheduleAt !== undefined) {
        const jobs: QueueMessage[] = [];
        if (p.expansion) {
          const job = p.expansion;
          jobs.push({ subject: workSubject(prefix, job.tier, job.tenant, job.group), tier: job.tier, msgId: job.id, data: encodeJob(job) });
        }
        p.chunks.forEach((m, part) => {
          const job: Job = { v: 1, id: `${p.record.id}.${part}`, tier: p.record.tier, tenant: p.record.tenant, group: p.record.group ?? 'direct', createdAt: p.record.createdAt, messages: [m] };
          jobs.push({ subject: workSubject(prefix, job.tier, job.tenant, job.group), tier: job.tier, msgId: job.id, data: encodeJob(job) });
        });
        if (p.scheduleAt !== undefined && p.held === undefined) {
          // Parked until its time (a keyed retry of a message already released parks nothing new:
          // the queue de-duplicates its deterministic job ids).
          const r = p.record;
          if (!this.scheduled) throw new GatewayError('INTERNAL', 'a scheduled message but no schedule is wired');
          this.scheduled.park({ id: r.id, tenant: r.tenant, dueAt: p.scheduleAt, recipients: r.recipients, jobs, ...(p.expansion ? { group: r.group as string } : {}) });
        } else if (p.held !== undefined) {
          if (!this.held) throw new GatewayError('INTERNAL', 'a message is held for review but no held store is wired');
          const r = p.record;
          this.held.hold({
            id: r.id, tenant: r.tenant, tier: r.tier, heldAt: now, expiresAt: r.expiresAt, word: p.held, recipients: r.recipients, jobs,
            ...(p.expansion ? { group: r.group as string } : {}),
          });
        } else direct.push(...jobs);
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
    // Rows (written above, in this event turn), key records and jobs: durable together (the queue port orders them).
    await this.queue.persistTogether({
      rowsDurable: () => this.store.flushed(),
      publish: () => {
        const waits: Promise<void>[] = [];
        enqueue(waits);
        return Promise.all(waits).then(() => undefined);
      },
      after: putKeys,
    });
    this.onAccepted?.();
    for (const p of batch) {
      this.metrics.acceptedMessages.inc({ tier: p.record.tier });
      this.metrics.acceptedRecipients.inc({ tier: p.record.tier }, p.record.recipients);
    }
  }
}

/** Epoch ms of an RFC 3339 time with an explicit offset, or undefined. */
export function parseRfc3339(v: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
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
