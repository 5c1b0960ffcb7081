/**
 * The send service: every send path (the HTTP door, meetings, workflow
 * events, case-query answers, mail alerts) states a typed SendCommand and
 * comes here; one admission, one way to durable state.
 *
 *   commands ─▶ admission stages (per send, composed at wiring: stages.ts)
 *            ─▶ idempotency: replay a repeat, claim new keys
 *            ─▶ quota reserve (for what will really be written; given back if the write fails)
 *            ─▶ persist and enqueue: message record + recipient rows (receipt store)
 *                 + jobs of ≤ batchSize recipients (queue), durable together
 *                 through the queue port (persistTogether) ─▶ accepted
 *
 * Idempotency key: the stored answer is replayed for a repeat within the
 * TTL, and a repeat while the first is still in flight waits for the first's
 * answer. A repeat is "the same" when its fingerprint is: the HTTP door
 * fingerprints the request body; other senders the command. The message id
 * is derived from (tenant, key, TTL window) (`keyedMessageId`), so a retry
 * after a crash that lost the stored answer lands on the same message and the
 * same job ids; a key reused after its TTL is a new message with a new id and
 * never writes into, or publishes under, the older one (invariant 7).
 */
import type { Logger } from 'pino';
import { GatewayError, isStorageFailure } from '../core/errors.js';
import type { Channel, SmsEncoding, StatusCallback, Tier } from '../core/message.js';
import { encodeJob, workSubject, type Job, type JobMessage, type JobRecipient } from '../core/job.js';
import type { Principal, SendAccepted, SendCommand, SendShape } from '../core/send.js';
import type { DurableWrite, KeyClaimAnswer, QueueMessage, WorkQueue } from '../queue/port.js';
import { boundCounter, type BoundCounter, type Metrics } from '../telemetry/metrics.js';
import type { ResolvedConfig } from '../config/load.js';
import { quietUntil, type QuietHours } from '../directory/quiet-hours.js';
import { idempotentMessageId, newMessageId } from './ids.js';
import { JobBatcher } from './job-batcher.js';
import { runStages, runStagesNow, type DoorAdmission, type Draft, type GrantStage, type Parking, type Reservation, type Stage } from './stages.js';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

/** What the service needs from the receipt store. */
export interface SendStore {
  putMessage(msg: MessageRecord, numbers: readonly string[]): void;
  /** A group send: the message row only; the dispatcher writes recipient rows when it expands the group. */
  putPendingMessage(msg: MessageRecord): void;
  putIdempotency(tenant: string, key: string, value: unknown, expiresAt: number): void;
  getIdempotency(tenant: string, key: string): unknown;
  getMessage(id: string): { tenant: string; createdAt: number; fingerprint?: string } | undefined;
  flushed(): Promise<void>;
}

export interface MessageRecord {
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
  /** A keyed send's request fingerprint: a retry that finds the message must be the same request. */
  fingerprint?: string;
  callbackUrl?: string;
  statusCallback?: StatusCallback;
}

/** One send of a batch. */
export interface SendItem {
  readonly command: SendCommand;
  /** JSON-pointer prefix of the send's fields in error details (`/messages/3`). */
  readonly prefix?: string;
  /** What "the same request" means for its idempotency key; default: the command's. */
  readonly fingerprint?: string;
}

export type SendResult = { ok: true; replayed: boolean; body: SendAccepted } | { ok: false; error: GatewayError };

/**
 * What the services that send as a tenant (meetings, workflow events,
 * case-query answers, mail alerts) need of the send service.
 */
export interface Sends {
  /** The principal of a tenant, or undefined when it is neither a key's tenant nor a unit. */
  principalOf(tenant: string): Principal | undefined;
  /** The grant checks alone for a send of this shape by `tenant`; throws FORBIDDEN naming the grant. */
  authorize(tenant: string, shape: SendShape, prefix: string): void;
  /** Sends as `tenant`; per-item results in order; resolves when the accepted ones are durable. */
  sendAs(tenant: string, items: readonly SendItem[]): Promise<SendResult[]>;
}

/** The accepted answer (with whether it was a replay), or the refusal thrown. */
export function sendOrThrow(r: SendResult | undefined): SendAccepted & { readonly replayed: boolean } {
  if (!r) throw new GatewayError('INTERNAL', 'no result');
  if (!r.ok) throw r.error;
  return { ...r.body, replayed: r.replayed };
}

/** Charges quotas for a send that will be written (no-op without the directory). */
export type QuotaStage = (admission: DoorAdmission | undefined, recipients: number, parts: number) => Reservation | undefined | Promise<Reservation | undefined>;

export interface SendServiceDeps {
  readonly config: ResolvedConfig;
  readonly store: SendStore;
  readonly queue: WorkQueue;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** The grant stages (src/send/index.ts composes them from what is wired); synchronous. */
  readonly grants: readonly GrantStage[];
  /** The rest of admission, in order, after the grants. */
  readonly admission: readonly Stage[];
  /**
   * Directory people by id → their numbers, in order (the directory's
   * resolver; without the directory, one that refuses). Unknown and
   * out-of-scope ids answer alike (VALIDATION naming `/people/<k>`).
   */
  readonly people: (principal: Principal, ids: readonly string[], prefix: string) => readonly string[];
  /** What runs again, after the grants, when a held message is released (content rules). */
  readonly release: readonly Stage[];
  readonly quota: QuotaStage;
  /** The principal of a tenant (a bootstrap key's tenant or a directory unit), for services that send as one. */
  readonly principalOf: (tenant: string) => Principal | undefined;
  /** Whether the tenant's callbacks can be signed; absent: not checked (no webhook client wired). */
  readonly canSign?: (tenant: string) => boolean;
  /** Called after a write became durable (e.g. to wake a dispatcher in the same process). */
  readonly onAccepted?: () => void;
  /**
   * Called as a write starts with the recipients it puts on the queue (not those held or
   * scheduled, nor a group's, expanded later): before it can commit, so before a dispatcher can
   * take them; called again with the count negated if the write fails (nothing of it committed).
   */
  readonly onQueued?: (recipients: number) => void;
  /** How long a key's repeat waits for the first request's answer when another process holds the key (default KEY_ANSWER_WAIT_MS). */
  readonly keyAnswerWaitMs?: number;
  readonly now?: () => number;
}

/** An Idempotency-Key whose first request is being written: its repeats wait for `result`. */
interface InflightKey {
  readonly fingerprint: string;
  readonly result: Promise<SendResult>;
}

/** A key claimed by one send of a batch. */
interface Claim {
  readonly settle: (r: SendResult | Promise<SendResult>) => void;
  readonly key: string;
  readonly entry: InflightKey;
}

interface StoredIdempotency {
  fingerprint: string;
  response: SendAccepted;
}

/** A send that passed admission and is ready to be written. */
interface Prepared {
  record: MessageRecord;
  numbers: readonly string[];
  /** The message split into chunks of ≤ queue.batchSize recipients, body once per chunk. */
  chunks: JobMessage[];
  /** A group send: the one expansion job (chunks is empty). */
  expansion?: Job;
  /** Held or scheduled: where its jobs go instead of the queue. */
  park?: Parking;
  /** Held for review: its quota is charged when it is released (readmit), not now. */
  held: boolean;
  admission?: DoorAdmission;
  response: SendAccepted;
  idempotencyKey?: string;
  fingerprint: string;
}

/**
 * The sends of a batch still to write, narrowed: three parallel lists (each send's position in
 * the request, the send, its quota reservation: null refused, undefined none) keep the entries
 * for which `keep(k)` gives a send (which may replace the one at k).
 */
function narrow(
  index: readonly number[],
  toWrite: readonly Prepared[],
  reserved: readonly (Reservation | undefined | null)[],
  keep: (k: number) => Prepared | undefined,
): { index: number[]; toWrite: Prepared[]; reserved: Array<Reservation | undefined | null> } {
  const out = { index: [] as number[], toWrite: [] as Prepared[], reserved: [] as Array<Reservation | undefined | null> };
  for (let k = 0; k < toWrite.length; k++) {
    const p = keep(k);
    if (p === undefined) continue;
    out.index.push(index[k] as number);
    out.toWrite.push(p);
    out.reserved.push(reserved[k]);
  }
  return out;
}

export class SendService implements Sends {
  private readonly config: ResolvedConfig;
  private readonly store: SendStore;
  private readonly queue: WorkQueue;
  private readonly metrics: Metrics;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly batcher: JobBatcher | undefined;
  /** Idempotency keys whose first request is still being written. Bounded by maxInflightRequests. */
  private readonly inflightKeys = new Map<string, InflightKey>();
  private inflight = 0;
  /** Woken after each durable write; set once, by the wiring (a dispatcher in this process). */
  private accepted: (() => void) | undefined;
  private readonly queued: ((recipients: number) => void) | undefined;
  /** smsgw_accepted_messages_total / _recipients_total by tier, bound once per tier. */
  private readonly acceptedByTier = new Map<string, { readonly messages: BoundCounter; readonly recipients: BoundCounter }>();
  /** Each tier's quiet hours (config), by name: looked up per send. */
  private readonly quietHours = new Map<string, QuietHours | undefined>();

  constructor(private readonly deps: SendServiceDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.queue = deps.queue;
    this.metrics = deps.metrics;
    this.now = deps.now ?? Date.now;
    this.log = deps.logger;
    this.accepted = deps.onAccepted;
    this.queued = deps.onQueued;
    for (const t of deps.config.tiers) if (!this.quietHours.has(t.name)) this.quietHours.set(t.name, t.quietHours);
    const q = deps.config.queue;
    this.batcher = q.coalesce
      ? new JobBatcher({
          queue: deps.queue,
          prefix: q.prefix,
          // The queue adapter says how long small jobs may linger (nothing here asks which adapter it is).
          flushMs: deps.queue.lingerMs,
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

  /** The principal a service sends as, or undefined when the tenant is neither a key's tenant nor a unit. */
  principalOf(tenant: string): Principal | undefined {
    return this.deps.principalOf(tenant);
  }

  /**
   * The grant stage alone, for a service that takes work now and sends later
   * (workflow events): a send it could never make is refused when the work comes in.
   */
  authorize(tenant: string, shape: SendShape, prefix: string): void {
    authorizeWith(this.deps.grants, this.config, this.deps.principalOf, tenant, shape, prefix, this.now());
  }

  /**
   * Admission again for a held message an admin releases: the grants (as
   * the tenant holds them now), the content rules (a word now on the reject
   * list refuses it), then the quota, charged now. Throws the refusal
   * (FORBIDDEN, CONTENT_REJECTED, QUOTA_EXCEEDED…); resolves with the
   * reservation to give back if the release then fails to publish.
   */
  async readmit(tenant: string, held: { readonly shape: SendShape; readonly body: string; readonly recipients: number; readonly segments?: number }): Promise<Reservation | undefined> {
    const principal = this.deps.principalOf(tenant);
    if (!principal) throw new GatewayError('FORBIDDEN', `tenant ${tenant} is neither an API key's tenant nor a directory unit`);
    const shape = held.shape;
    const tier = this.config.tierByName.get(shape.tier);
    if (!tier) throw new GatewayError('VALIDATION', `unknown tier ${shape.tier}`, { details: [{ field: '/tier', message: 'not a configured tier' }] });
    const command: SendCommand = {
      recipients: shape.group !== undefined ? { kind: 'group', group: shape.group } : { kind: 'numbers', numbers: [], origin: shape.origin ?? 'caller' },
      tier: shape.tier, channel: shape.channel, content: { kind: 'text', text: held.body },
      ...(shape.classification !== undefined ? { classification: shape.classification } : {}),
    };
    const d = draftOf(principal, command, '', this.now(), tier);
    for (const stage of this.deps.grants) stage(d);
    await runStages(this.deps.release, d);
    return this.deps.quota(d.admission, held.recipients, held.recipients * (held.segments ?? 1));
  }

  /** Sends as a tenant (a service's own sends). Unknown tenant: every item FORBIDDEN. */
  async sendAs(tenant: string, items: readonly SendItem[]): Promise<SendResult[]> {
    const principal = this.deps.principalOf(tenant);
    if (!principal) {
      const error = new GatewayError('FORBIDDEN', `tenant ${tenant} is neither an API key's tenant nor a directory unit`);
      return items.map(() => ({ ok: false as const, error }));
    }
    return this.send(principal, items);
  }

  /**
   * Several sends of one principal: each is admitted on its own; all that
   * pass are written together and share one flush. Per-item results, in order.
   */
  async send(principal: Principal, items: readonly SendItem[]): Promise<SendResult[]> {
    if (this.inflight >= this.config.server.maxInflightRequests) throw new GatewayError('OVERLOADED');
    const n = items.length;
    const results = new Array<SendResult | undefined>(n);
    const now = this.now();
    // Admission: synchronous unless a stage waits (a group send counts its members); the sends
    // that wait do so together. (Loops and lazily made arrays, not a promise per send: this is
    // the per-request path of the HTTP door.)
    const prepared = new Array<Prepared | undefined>(n);
    let admitting: Promise<void>[] | undefined;
    for (let i = 0; i < n; i++) {
      try {
        const p = this.prepare(principal, items[i] as SendItem, now);
        if (p instanceof Promise) {
          (admitting ??= []).push(p.then(
            (x) => void (prepared[i] = x),
            (e: unknown) => void (results[i] = { ok: false, error: asGatewayError(e) }),
          ));
        } else prepared[i] = p;
      } catch (e) {
        results[i] = { ok: false, error: asGatewayError(e) };
      }
    }
    if (admitting !== undefined) await (admitting.length === 1 ? admitting[0] : Promise.all(admitting));
    const tenant = principal.tenant;
    let waits: Promise<void>[] | undefined;
    // Claim every idempotency key now, in the same synchronous step as its replay check and
    // before any await, so a concurrent repeat (or a repeat in this batch) waits for this answer.
    let claims: Map<number, Claim> | undefined;
    // The sends to write: their indices in `items`, and what admission made of them.
    let index: number[] = [];
    let toWrite: Prepared[] = [];
    for (let i = 0; i < n; i++) {
      const p = prepared[i];
      if (p === undefined) continue;
      const key = p.idempotencyKey;
      if (key !== undefined) {
        const replay = this.replay(tenant, p);
        if (replay) {
          (waits ??= []).push(replay.then((x) => void (results[i] = x)));
          continue;
        }
        (claims ??= new Map()).set(i, this.claim(tenant, key, p.fingerprint));
      }
      index.push(i);
      toWrite.push(p);
    }
    // Keys in flight: counted when claimed and when released, not on every send.
    if (claims !== undefined) this.metrics.idempotencyCacheSize.set(this.inflightKeys.size);
    // Quotas are charged last, for what will really be written, and given back if the write fails.
    // A held message is charged when it is released (readmit): what waits for review costs nothing yet.
    // null: refused (its result is set).
    const charged = new Array<Reservation | undefined | null>(toWrite.length);
    let charging: Promise<void>[] | undefined;
    const refuse = (k: number, e: unknown): void => {
      const refused: SendResult = { ok: false, error: asGatewayError(e) };
      results[index[k] as number] = refused;
      claims?.get(index[k] as number)?.settle(refused);
      charged[k] = null;
    };
    for (let k = 0; k < toWrite.length; k++) {
      const p = toWrite[k] as Prepared;
      if (p.held) continue;
      try {
        const q = this.deps.quota(p.admission, p.record.recipients, p.record.recipients * p.record.segments);
        if (q instanceof Promise) (charging ??= []).push(q.then((r) => void (charged[k] = r), (e: unknown) => refuse(k, e)));
        else charged[k] = q;
      } catch (e) {
        refuse(k, e);
      }
    }
    if (charging !== undefined) await (charging.length === 1 ? charging[0] : Promise.all(charging));
    // `index`, `toWrite` and `reserved` stay parallel: narrowed together (a reservation follows its send).
    let reserved = charged;
    if (reserved.includes(null)) ({ index, toWrite, reserved } = narrow(index, toWrite, reserved, (k) => (reserved[k] === null ? undefined : toWrite[k])));
    let keyed = false;
    for (const p of toWrite) if (p.idempotencyKey !== undefined) keyed = true;
    // Keys claimed among every process and host sharing the queue, before anything is written: a
    // repeat sent to another process than the first gets 409 or the first answer, never a second write.
    // (Requests without a key, the common case, skip the await: no extra turn on the hot path.)
    if (keyed) {
      const across = await Promise.all(toWrite.map((p) => (p.idempotencyKey === undefined ? Promise.resolve(undefined) : this.claimAcross(tenant, p))));
      ({ index, toWrite, reserved } = narrow(index, toWrite, reserved, (k) => {
        const c = across[k];
        if (c === undefined) return toWrite[k];
        if ('write' in c) return c.write;
        const i = index[k] as number;
        results[i] = c.result;
        claims?.get(i)?.settle(c.result);
        reserved[k]?.release().catch((e: unknown) => this.log.error({ err: e }, 'could not give back quota of a repeated Idempotency-Key'));
        return undefined;
      }));
    }
    let reservations: Reservation[] | undefined;
    for (const r of reserved) if (r !== null && r !== undefined) (reservations ??= []).push(r);
    if (toWrite.length > 0) {
      this.inflight++;
      this.metrics.ingestInflight.inc();
      let recipientsQueued = 0;
      if (this.queued !== undefined) {
        for (let k = 0; k < toWrite.length; k++) {
          const p = toWrite[k] as Prepared;
          if (p.park === undefined) recipientsQueued += p.numbers.length;
        }
        this.queued(recipientsQueued);
      }
      const written = this.write(toWrite);
      if (claims !== undefined) {
        for (let k = 0; k < toWrite.length; k++) {
          const claim = claims.get(index[k] as number);
          if (claim === undefined) continue;
          const body = (toWrite[k] as Prepared).response;
          claim.settle(written.then(
            (): SendResult => ({ ok: true, replayed: false, body }),
            (e: unknown): SendResult => ({ ok: false, error: asGatewayError(e) }),
          ));
        }
      }
      let failure: unknown;
      let failed = false;
      try {
        await written;
      } catch (e) {
        failed = true;
        failure = e;
      } finally {
        this.inflight--;
        this.metrics.ingestInflight.dec();
      }
      // After the count: a dispatcher holding back for the intake (dispatch.intakeFirstMs) sees this write done.
      if (!failed) this.accepted?.();
      else if (this.queued !== undefined) this.queued(-recipientsQueued);
      if (failed && reservations !== undefined) {
        const give = reservations;
        void Promise.resolve().then(() => Promise.all(give.map((r) => r.release()))).catch((e: unknown) => {
          this.log.error({ err: e }, 'could not give back quota after a failed write');
        });
      }
      for (let k = 0; k < toWrite.length; k++) {
        results[index[k] as number] = failed ? { ok: false, error: asGatewayError(failure) } : { ok: true, replayed: false, body: (toWrite[k] as Prepared).response };
        // The key's answer is stored (written with the rows) or the write failed: its repeats
        // from now on, even one sent as soon as this resolves, no longer wait for this request.
        const claim = claims?.get(index[k] as number);
        if (claim !== undefined) this.release(claim.key, claim.entry);
      }
    }
    if (waits !== undefined) await Promise.all(waits);
    for (let i = 0; i < n; i++) if (results[i] === undefined) results[i] = { ok: false, error: new GatewayError('INTERNAL', 'item not processed') };
    return results as SendResult[];
  }

  /** Claims a key for its first request: a repeat meanwhile waits for the answer given with `settle`. */
  private claim(tenant: string, key: string, fingerprint: string): Claim {
    const k = inflightKey(tenant, key);
    let settle!: (r: SendResult | Promise<SendResult>) => void;
    const result = new Promise<SendResult>((resolve) => (settle = resolve));
    const entry = { fingerprint, result };
    this.inflightKeys.set(k, entry);
    void result.finally(() => this.release(k, entry));
    return { settle, key: k, entry };
  }

  /** A claimed key answered: its repeats now find the stored answer (or write anew). */
  private release(k: string, entry: InflightKey): void {
    if (this.inflightKeys.get(k) !== entry) return;
    this.inflightKeys.delete(k);
    this.metrics.idempotencyCacheSize.set(this.inflightKeys.size);
  }

  /** A repeat of a known key: the first answer, or 409 when the request differs. */
  private replay(tenant: string, prepared: Prepared): Promise<SendResult> | undefined {
    const key = prepared.idempotencyKey as string;
    const pending = this.inflightKeys.get(inflightKey(tenant, key));
    if (pending) {
      return pending.result.then((r) => (r.ok ? answerTo(prepared, { fingerprint: pending.fingerprint, response: r.body }) : r));
    }
    const stored = this.store.getIdempotency(tenant, key) as StoredIdempotency | undefined;
    return stored ? Promise.resolve(answerTo(prepared, stored)) : undefined;
  }

  /**
   * The key claimed among every process sharing the queue (WorkQueue.claimKey).
   * Won: write. Taken with another fingerprint: 409. Taken by the same
   * request (another process or host has it, or this one had it before a
   * crash): its answer reaches this store through the shared environment or
   * replication, normally within milliseconds, and is replayed; when none
   * comes within KEY_ANSWER_WAIT_MS (its process died before answering, its
   * write failed, or its host is away) this is a retry of it, written under
   * its id: rows only if absent, jobs de-duplicated by the queue. (The wait
   * is wall-clock time: it waits for other processes, not for this one's clock.)
   */
  private async claimAcross(tenant: string, p: Prepared): Promise<{ write: Prepared } | { result: SendResult }> {
    const key = p.idempotencyKey as string;
    let answer: KeyClaimAnswer;
    try {
      answer = await this.queue.claimKey({ tenant, key, id: p.record.id, fingerprint: p.fingerprint, at: p.record.createdAt, ttlMs: this.config.idempotencyTtlMs });
    } catch (e) {
      return { result: { ok: false, error: asGatewayError(e) } };
    }
    if (answer.won) return { write: p };
    if (answer.fingerprint !== p.fingerprint) return { result: { ok: false, error: idempotencyConflict() } };
    const waitMs = this.deps.keyAnswerWaitMs ?? KEY_ANSWER_WAIT_MS;
    const deadline = Date.now() + waitMs;
    for (let round = 0; round <= waitMs / KEY_ANSWER_POLL_MS; round++) {
      const stored = this.store.getIdempotency(tenant, key) as StoredIdempotency | undefined;
      if (stored) return { result: answerTo(p, stored) };
      if (Date.now() >= deadline) break;
      await sleep(KEY_ANSWER_POLL_MS);
    }
    this.log.warn({ tenant, messageId: answer.id }, 'Idempotency-Key taken by the same request elsewhere, no answer here in time: written as its retry');
    return { write: answer.id === p.record.id ? p : withId(p, answer.id) };
  }

  private draft(principal: Principal, command: SendCommand, prefix: string, now: number, tier: Tier): Draft {
    return draftOf(principal, command, prefix, now, tier);
  }

  /** A send through admission: at once, or a promise when a stage waits (a group's member count). */
  private prepare(principal: Principal, item: SendItem, now: number): Prepared | Promise<Prepared> {
    let command = item.command;
    const prefix = item.prefix ?? '';
    if ((command.callbackUrl !== undefined || command.statusCallback !== undefined) && this.deps.canSign && !this.deps.canSign(principal.tenant)) {
      // Nothing leaves unsigned (docs/CALLBACKS.md): refused until the tenant has a signing secret.
      throw new GatewayError('CALLBACK_SECRET_REQUIRED', `tenant ${principal.tenant} has no callback signing secret: set one (callbacks.secrets, or PATCH /v1/admin/units/{id} callbackSecret) before using callbacks`, {
        details: [{ field: `${prefix}/${command.callbackUrl !== undefined ? 'callbackUrl' : 'statusCallback'}`, message: 'the tenant has no signing secret' }],
      });
    }
    const tier = this.config.tierByName.get(command.tier);
    if (!tier) {
      throw new GatewayError('VALIDATION', `unknown tier ${command.tier}`, {
        details: [{ field: `${prefix}/tier`, message: `must be one of ${this.config.tierList.map((t) => t.name).join(', ')}` }],
      });
    }
    const named = command.recipients.kind === 'numbers' ? command.recipients.numbers.length : command.recipients.kind === 'people' ? command.recipients.people.length : 0;
    if (named > this.config.server.maxRecipientsPerRequest) {
      throw new GatewayError('TOO_MANY_RECIPIENTS', `at most ${this.config.server.maxRecipientsPerRequest} recipients in one request`, {
        details: [{ field: `${prefix}/${command.recipients.kind === 'people' ? 'people' : 'to'}`, message: `has ${named} items` }],
      });
    }
    if (command.recipients.kind === 'people') {
      // The grants first (tier, unit enabled), then the ids read from the gateway's own directory:
      // the numbers are the directory's (origin directory), never the caller's.
      const pre = this.draft(principal, command, prefix, now, tier);
      for (const stage of this.deps.grants) stage(pre);
      const numbers = this.deps.people(principal, command.recipients.people, prefix);
      command = { ...command, recipients: { kind: 'numbers', numbers, origin: 'directory' } };
    }
    const r = command.recipients;
    const d = this.draft(principal, command, prefix, now, tier);
    // A reply needs no number grant because it goes back to the one number that wrote in, and only there.
    if (r.kind === 'numbers' && r.origin === 'reply' && d.numbers.length !== 1) {
      throw new GatewayError('FORBIDDEN', 'a reply goes only to the one number that wrote in', { details: [{ field: `${prefix}/to`, message: `has ${d.numbers.length} numbers` }] });
    }
    if (r.kind === 'numbers' && d.numbers.length === 0) throw new GatewayError('VALIDATION', 'no recipients', { details: [{ field: `${prefix}/to`, message: 'give at least one number' }] });
    if (command.validityMs !== undefined && (!(command.validityMs > 0) || command.validityMs > this.config.maxValidityMs)) {
      throw new GatewayError('VALIDATION', 'validity out of range', {
        details: [{ field: `${prefix}/validity`, message: `must be a positive ISO-8601 duration up to ${this.config.sender.maxValidity}` }],
      });
    }
    for (const stage of this.deps.grants) stage(d);
    const admitted = runStagesNow(this.deps.admission, d);
    return admitted === undefined ? this.prepared(principal, command, item.fingerprint, d, now, tier) : admitted.then(() => this.prepared(principal, command, item.fingerprint, d, now, tier));
  }

  /** What is written for a send that passed admission. */
  private prepared(principal: Principal, command: SendCommand, itemFingerprint: string | undefined, d: Draft, now: number, tier: Tier): Prepared {
    const r = command.recipients;
    const seg = d.segments;
    if (seg === undefined) throw new GatewayError('INTERNAL', 'admission wired without the parts stage');
    const sender = d.admission?.sender ?? principal.sender;
    const validityMs = command.validityMs ?? tier.defaultValidityMs;
    const key = command.idempotencyKey;
    // Only a keyed send is ever compared with an earlier one.
    const fingerprint = key === undefined ? '' : itemFingerprint ?? commandFingerprint(command);
    const id = key !== undefined ? keyedMessageId(this.store, principal.tenant, key, fingerprint, now, this.config.idempotencyTtlMs) : newMessageId(now);
    // Quiet hours: a tier that must not be sent now waits; its validity starts when it may be sent.
    const startAt = d.scheduleAt ?? now;
    const quiet = this.quietHours.get(tier.name);
    const sendableAt = quiet === undefined ? startAt : quietUntil(quiet, startAt, this.config.directory.utcOffsetMinutes) ?? startAt;
    const expiresAt = sendableAt + validityMs;
    const group = r.kind === 'group' ? r.group : 'direct';
    // Optional fields assigned in the order the spreads used to add them (same objects, no temporaries).
    const record: MessageRecord = {
      id,
      tenant: principal.tenant,
      tier: tier.name,
      channel: command.channel,
      encoding: seg.encoding,
      segments: seg.count,
      recipients: d.recipients,
      createdAt: now,
      expiresAt,
      group,
    };
    if (command.reference !== undefined) record.reference = command.reference;
    if (key !== undefined) {
      record.idempotencyKey = key;
      record.fingerprint = fingerprint;
    }
    if (command.callbackUrl !== undefined) record.callbackUrl = command.callbackUrl;
    if (command.statusCallback !== undefined) record.statusCallback = command.statusCallback;
    const chunks: JobMessage[] = [];
    let expansion: Job | undefined;
    const classification = command.classification;
    const text = d.text;
    if (r.kind === 'group') {
      expansion = {
        v: 1, id: `${id}.x`, tier: tier.name, tenant: principal.tenant, group, createdAt: now,
        messages: [jobMessage(id, text, seg.encoding, sender, expiresAt, [], classification)],
        expand: { group, channel: command.channel, ...(d.admission?.unit !== undefined ? { unit: d.admission.unit } : {}) },
      };
    } else {
      const batchSize = this.config.queue.batchSize;
      for (let start = 0; start < d.numbers.length; start += batchSize) {
        const rs: JobRecipient[] = [];
        const end = Math.min(d.numbers.length, start + batchSize);
        for (let i = start; i < end; i++) rs.push({ i, to: d.numbers[i] as string });
        chunks.push(jobMessage(id, text, seg.encoding, sender, expiresAt, rs, classification));
      }
    }
    const response: SendAccepted = {
      id,
      recipients: d.recipients,
      segments: seg.count,
      totalSegments: d.recipients * seg.count,
      encoding: seg.encoding,
      tier: tier.name,
      status: d.held !== undefined ? 'held' : d.scheduleAt !== undefined ? 'scheduled' : 'accepted',
    };
    if (d.scheduleAt !== undefined) (response as { scheduledAt?: string }).scheduledAt = new Date(d.scheduleAt).toISOString();
    const prepared: Prepared = { record, numbers: d.numbers, chunks, response, fingerprint, held: d.held !== undefined };
    if (expansion !== undefined) prepared.expansion = expansion;
    if (d.park !== undefined) prepared.park = d.park;
    if (d.admission !== undefined) prepared.admission = d.admission;
    if (key !== undefined) prepared.idempotencyKey = key;
    return prepared;
  }

  /**
   * Persist and enqueue; resolves when rows and jobs are durable.
   *
   * Keyed sends get jobs with ids derived from the message id
   * (`<id>.<part>`), published directly: a retry after a crash republishes
   * the same ids and the queue de-duplicates them. Other messages go
   * through the JobBatcher (coalesced).
   */
  private async write(batch: readonly Prepared[]): Promise<void> {
    const now = this.now();
    const w = new BatchWrite(this.store, this.queue, this.batcher, now + this.config.idempotencyTtlMs);
    const prefix = this.config.queue.prefix;
    // Before any row is written: this turn's coalesced jobs then commit with the rows (job-batcher.ts).
    this.batcher?.armTurn();
    for (const p of batch) {
      const isKeyed = p.idempotencyKey !== undefined;
      // A keyed retry after a crash may find its rows written (and progressed): keep them.
      if (!(isKeyed && this.store.getMessage(p.record.id))) {
        if (p.expansion) this.store.putPendingMessage(p.record);
        else this.store.putMessage(p.record, p.numbers);
      }
      if (isKeyed) (w.keyed ??= []).push(p);
      // Parked messages and group sends never coalesce: a parked message's jobs are parked whole,
      // and an expansion job must keep its own deterministic id.
      if (isKeyed || !this.batcher || p.expansion || p.park) {
        const jobs: QueueMessage[] = [];
        if (p.expansion) {
          const job = p.expansion;
          jobs.push({ subject: workSubject(prefix, job.tier, job.tenant, job.group), tier: job.tier, msgId: job.id, data: encodeJob(job) });
        }
        p.chunks.forEach((m, part) => {
          const job: Job = { v: 1, id: `${p.record.id}.${part}`, tier: p.record.tier, tenant: p.record.tenant, group: p.record.group ?? 'direct', createdAt: p.record.createdAt, messages: [m] };
          jobs.push({ subject: workSubject(prefix, job.tier, job.tenant, job.group), tier: job.tier, msgId: job.id, data: encodeJob(job) });
        });
        if (p.park) {
          // Held for review or until its time (a keyed retry of a message already released parks
          // nothing new: the queue de-duplicates its deterministic job ids).
          const r = p.record;
          p.park({ id: r.id, tenant: r.tenant, tier: r.tier, expiresAt: r.expiresAt, recipients: r.recipients, jobs, ...(p.expansion ? { group: r.group } : {}) }, now);
        } else (w.direct ??= []).push(...jobs);
      } else (w.coalesced ??= []).push(p);
    }
    // Rows (written above, in this event turn), key records and jobs: durable together (the queue port orders them).
    await this.queue.persistTogether(w);
    for (const p of batch) {
      const counts = this.acceptedCounts(p.record.tier);
      counts.messages.inc();
      counts.recipients.inc(p.record.recipients);
    }
  }

  private acceptedCounts(tier: string): { readonly messages: BoundCounter; readonly recipients: BoundCounter } {
    let c = this.acceptedByTier.get(tier);
    if (c === undefined) {
      c = { messages: boundCounter(this.metrics.acceptedMessages, { tier }), recipients: boundCounter(this.metrics.acceptedRecipients, { tier }) };
      this.acceptedByTier.set(tier, c);
    }
    return c;
  }
}

/**
 * One write's rows, key records and jobs as the queue port takes them
 * (WorkQueue.persistTogether): methods of one object, not an object and a
 * closure each per send.
 */
class BatchWrite implements DurableWrite {
  /** Jobs published as they are (keyed sends: ids derived from the message id). */
  direct: QueueMessage[] | undefined;
  /** Sends whose messages go through the JobBatcher. */
  coalesced: Prepared[] | undefined;
  /** Sends whose key answers are stored with (or after) the jobs. */
  keyed: Prepared[] | undefined;

  constructor(
    private readonly store: SendStore,
    private readonly queue: WorkQueue,
    private readonly batcher: JobBatcher | undefined,
    private readonly keysExpireAt: number,
  ) {}

  rowsDurable(): Promise<void> {
    return this.store.flushed();
  }

  publish(): Promise<void> {
    // Coalesced messages of one job share its promise: wait for each distinct one once.
    let one: Promise<unknown> | undefined;
    let more: Set<Promise<unknown>> | undefined;
    if (this.direct !== undefined) one = this.queue.publish(this.direct);
    if (this.coalesced !== undefined) {
      const batcher = this.batcher as JobBatcher;
      for (const p of this.coalesced) {
        const r = p.record;
        for (const m of p.chunks) {
          const w = batcher.add(r.tier, r.tenant, r.group ?? 'direct', r.createdAt, m);
          if (one === undefined) one = w;
          else if (w !== one) (more ??= new Set([one])).add(w);
        }
      }
    }
    return (more !== undefined ? Promise.all(more) : one ?? Promise.resolve()).then(noop);
  }

  after(): void {
    if (this.keyed === undefined) return;
    for (const p of this.keyed) {
      const stored: StoredIdempotency = { fingerprint: p.fingerprint, response: p.response };
      this.store.putIdempotency(p.record.tenant, p.idempotencyKey as string, stored, this.keysExpireAt);
    }
  }
}

/** A job's message (the keys in the order encodeJob has always written them). */
function jobMessage(id: string, text: string, encoding: SmsEncoding, sender: string, expiresAt: number, recipients: JobRecipient[], classification: string | undefined): JobMessage {
  return classification === undefined
    ? { id, text, encoding, sender, expiresAt, recipients }
    : { id, text, encoding, sender, expiresAt, recipients, classification };
}

/** One send as the stages see it: distinct numbers (with their positions in the command), the shape. */
function draftOf(principal: Principal, command: SendCommand, prefix: string, now: number, tier: Tier): Draft {
    const numbers: string[] = [];
    const positions: number[] = [];
    const r = command.recipients;
    if (r.kind === 'numbers' && r.numbers.length === 1) {
      numbers.push(r.numbers[0] as string);
      positions.push(0);
    } else if (r.kind === 'numbers') {
      const seen = new Set<string>();
      r.numbers.forEach((n, i) => {
        if (seen.has(n)) return;
        seen.add(n);
        numbers.push(n);
        positions.push(i);
      });
    }
    const body = command.content.kind === 'text' ? command.content.text : '';
    return {
      principal, command, prefix, now, tier, channel: command.channel, numbers, positions, body, text: body, recipients: numbers.length,
      shape: {
        tier: tier.name,
        channel: command.channel,
        ...(r.kind === 'group' ? { group: r.group } : { origin: r.kind === 'people' ? 'directory' as const : r.origin }),
        ...(command.classification !== undefined ? { classification: command.classification } : {}),
      },
    };
  }

/**
 * The grant stages alone for a send of this shape by `tenant` (throws the
 * refusal): for work taken now and sent later (workflow events, scheduled
 * messages when they are due).
 */
export function authorizeWith(grants: readonly GrantStage[], config: ResolvedConfig, principalOf: (tenant: string) => Principal | undefined, tenant: string, shape: SendShape, prefix: string, now: number): void {
  const principal = principalOf(tenant);
  if (!principal) throw new GatewayError('FORBIDDEN', `tenant ${tenant} is neither an API key's tenant nor a directory unit`);
  const tier = config.tierByName.get(shape.tier);
  if (!tier) throw new GatewayError('VALIDATION', `unknown tier ${shape.tier}`, { details: [{ field: `${prefix}/tier`, message: 'not a configured tier' }] });
  const command: SendCommand = {
    recipients: shape.group !== undefined ? { kind: 'group', group: shape.group } : { kind: 'numbers', numbers: [], origin: shape.origin ?? 'directory' },
    tier: shape.tier, channel: shape.channel, content: { kind: 'text', text: '' },
    ...(shape.classification !== undefined ? { classification: shape.classification } : {}),
  };
  const d = draftOf(principal, command, prefix, now, tier);
  for (const stage of grants) stage(d);
}

/**
 * The message id of a keyed send that found no stored answer (none yet, or
 * its TTL has passed). Ids are derived from (tenant, key, TTL, window) with
 * window = floor(now / TTL):
 *
 *   - a message of this key accepted less than one TTL ago (this window or
 *     the previous one) is a retry whose answer was lost in a crash: the
 *     same id, so its rows are kept and its jobs de-duplicated by the queue;
 *     a different request under the key is IDEMPOTENCY_CONFLICT;
 *   - otherwise this window's id. A use one TTL or more after the last one is
 *     always in a later window, so it is a new message with a new id: it
 *     never writes into, or publishes under, the older message. Two hosts
 *     taking the same key at once derive the same id (NATS de-duplicates the
 *     jobs); a message found under this window's id yet older than the TTL
 *     (a clock set back) is left alone and a fresh time-based id used.
 */
export function keyedMessageId(store: Pick<SendStore, 'getMessage'>, tenant: string, key: string, fingerprint: string, now: number, ttlMs: number): string {
  const ttl = Math.max(1, ttlMs);
  const window = Math.floor(now / ttl);
  let fresh = '';
  for (const w of [window - 1, window]) {
    const id = idempotentMessageId(tenant, key, `${ttl}/${w}`);
    const existing = store.getMessage(id);
    if (w === window) fresh = existing === undefined ? id : newMessageId(now);
    if (existing === undefined || existing.tenant !== tenant || existing.createdAt + ttl <= now) continue;
    if (existing.fingerprint !== fingerprint) throw idempotencyConflict();
    return id;
  }
  return fresh;
}

/** A repeat of a key whose first answer is `stored`: that answer for the same request, 409 for another. */
function answerTo(p: Prepared, stored: StoredIdempotency): SendResult {
  return stored.fingerprint === p.fingerprint ? { ok: true, replayed: true, body: stored.response } : { ok: false, error: idempotencyConflict() };
}

/** A keyed send's first request, taken by another process, gives its answer within this (ms) before this one writes as its retry. */
const KEY_ANSWER_WAIT_MS = 5_000;
const KEY_ANSWER_POLL_MS = 10;

function idempotencyConflict(): GatewayError {
  return new GatewayError('IDEMPOTENCY_CONFLICT', 'Idempotency-Key was already used with a different request body');
}

/** The same prepared send under another message id (the one its key's claim holds). */
function withId(p: Prepared, id: string): Prepared {
  return {
    ...p,
    record: { ...p.record, id },
    chunks: p.chunks.map((m) => ({ ...m, id })),
    response: { ...p.response, id },
    ...(p.expansion !== undefined ? { expansion: { ...p.expansion, id: `${id}.x`, messages: p.expansion.messages.map((m) => ({ ...m, id })) } } : {}),
  };
}

const noop = (): void => undefined;

function inflightKey(tenant: string, key: string): string {
  return `${tenant}\u0000${key}`;
}

/** Requests are "the same" when their canonical JSON (keys sorted at every level) is the same. */
export function requestFingerprint(req: unknown): string {
  return createHash('sha256').update(canonicalJson(req)).digest('base64url');
}

/** A command's fingerprint (its idempotency key left out: it is the key). */
export function commandFingerprint(command: SendCommand): string {
  const { idempotencyKey: _key, ...rest } = command;
  return requestFingerprint(rest);
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
  if (e instanceof GatewayError) {
    // A store's wrapper around a failed commit: the client sees the storage state, not a bug.
    if (e.code === 'INTERNAL' && isStorageFailure(e.cause)) return new GatewayError('STORAGE_FULL', undefined, { cause: e });
    return e;
  }
  if (isStorageFailure(e)) return new GatewayError('STORAGE_FULL', undefined, { cause: e });
  return new GatewayError('INTERNAL', undefined, { cause: e });
}
