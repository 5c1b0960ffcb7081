/**
 * NewMailAlerter: turns a received mail into SMS alerts for the people it
 * is for, under the rate cap and quiet hours (decisions: core/mail-alert.ts),
 * and sends the digests when they are due.
 *
 * One mail:
 *   for each opted-in person, synchronously: already seen (LMDB or in flight)? → skip;
 *     decide (alert now | fold into the digest); write the new state (overlay + LMDB);
 *     a folded mail is marked seen in the same write
 *   the alerts of the mail: ONE send-service sendAs (resolves when durable; each with
 *     idempotency key mail:a:<person>:<mail key>, so a retry after a crash sends nothing twice)
 *   sent → marked seen;  refused for now (overloaded, quota) → folded into the digest, due in 1 s
 *   then wait until every write of the mail is flushed → the SMTP answer (250)
 *
 * Digests: a timer (every pollMs) reads the due index; per due person the send is
 * marked (text, key mail:d:<person>:<digest id>, mails covered) and committed before
 * ONE sendMany for all of them; sent → covered mails leave the digest.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { GatewayError } from '../../core/errors.js';
import {
  afterSend, afterTransientFailure, arrive, digestValues, dueStep, fold,
  type DigestSend, type MailSummary, type PendingDigest, type PersonMailState,
} from '../../core/mail-alert.js';
import { renderText, type CompiledTemplate } from '../../core/template.js';
import { quietUntil, type QuietHours } from '../../directory/quiet-hours.js';
import type { DirectoryStore } from '../../directory/store.js';
import type { Person } from '../../directory/types.js';
import type { SendItem, Sends } from '../../send/service.js';
import type { MailAlertStore } from './store.js';
import type { MailMetrics } from './metrics.js';

/** Digests that may wait at once; a mail that would start one more is answered 451 (the mail server retries). */
export const DEFAULT_MAX_PENDING_DIGESTS = 100_000;
/** How often due digests are looked for. */
export const DEFAULT_POLL_MS = 250;
/** An alert refused for now is retried (as a digest of one) this much later. */
export const ALERT_RETRY_MS = 1000;
/** Failed attempts after which a digest is given up (counted as failed). */
export const MAX_DIGEST_ATTEMPTS = 20;
/** Due digests sent per sendMany. */
const DUE_BATCH = 500;
/** De-duplication marks removed per sweep. */
const SEEN_SWEEP = 10_000;

export interface AlerterOptions {
  readonly tenant: string;
  readonly tier: string;
  readonly windowMs: number;
  readonly quietHours: QuietHours | undefined;
  readonly utcOffsetMinutes: number;
  readonly dedupeTtlMs: number;
  readonly alertText: CompiledTemplate;
  readonly digestText: CompiledTemplate;
  readonly maxPendingDigests: number;
  readonly pollMs: number;
}

export interface AlerterDeps {
  readonly store: MailAlertStore;
  readonly directory: DirectoryStore;
  readonly sends: Sends;
  readonly metrics: MailMetrics;
  readonly logger: Logger;
  readonly now: () => number;
}

/** A received mail, reduced to what alerts need. */
export interface IncomingMail {
  /** De-duplication key (hash of the Message-ID). */
  readonly key: string;
  readonly summary: MailSummary;
  /** Opted-in people it is for, each once. */
  readonly people: readonly Person[];
}

export interface MailResult {
  readonly alerted: number;
  readonly folded: number;
  readonly duplicates: number;
  readonly failed: number;
  /** People skipped because the pending-digest bound was reached: answer "try again later". */
  readonly deferred: number;
}

type SendResult = { ok: true } | { ok: false; error: GatewayError };

export class NewMailAlerter {
  private readonly o: AlerterOptions;
  private readonly d: AlerterDeps;
  /** `<mail key>\0<person id>` being handled now (a concurrent copy of the mail is a duplicate). */
  private readonly inflight = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;
  private idSeq = 0;
  private readonly idPrefix = randomBytes(4).toString('base64url');
  private lastErrorLog = 0;
  private suppressedErrors = 0;

  constructor(options: AlerterOptions, deps: AlerterDeps) {
    this.o = options;
    this.d = deps;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.pollMs);
    this.timer.unref();
    this.sweeper = setInterval(() => {
      this.sweeping ??= this.sweep().finally(() => (this.sweeping = undefined));
    }, 60_000);
    this.sweeper.unref();
    this.d.metrics.pendingDigests.set(this.d.store.pending);
    void this.tick();
  }

  /** Stop the timers and wait for a running digest round. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.sweeper) clearInterval(this.sweeper);
    await Promise.all([this.ticking, this.sweeping]);
  }

  /** Handle one mail; resolves when everything it caused is durable. */
  async handle(mail: IncomingMail): Promise<MailResult> {
    const { store, metrics } = this.d;
    const now = this.d.now();
    const quietEnd = quietUntil(this.o.quietHours, now, this.o.utcOffsetMinutes);
    const writes: Promise<unknown>[] = [];
    const claimed: string[] = [];
    const alerts: { person: Person; message: SendItem }[] = [];
    let folded = 0;
    let duplicates = 0;
    let deferred = 0;
    let failed = 0;
    let retried = 0;
    const newId = (): string => this.newId();
    for (const person of mail.people) {
      const claim = `${mail.key}\u0000${person.id}`;
      if (this.inflight.has(claim) || store.wasSeen(mail.key, person.id)) {
        duplicates++;
        continue;
      }
      const a = arrive(store.state(person.id), mail.summary, { now, windowMs: this.o.windowMs, quietEnd, newId });
      if (a.kind === 'fold' && a.newDigest && store.pending >= this.o.maxPendingDigests) {
        deferred++;
        continue;
      }
      this.inflight.add(claim);
      claimed.push(claim);
      writes.push(store.write(person.id, a.next));
      if (a.kind === 'alert') {
        alerts.push({ person, message: this.message(person, `mail:a:${person.id}:${mail.key}`, this.o.alertText, { sender: mail.summary.sender, subject: mail.summary.subject }) });
      } else {
        folded++;
        writes.push(store.markSeen(mail.key, person.id, now));
      }
    }
    // The folds (state + seen mark) must be on disk before the answer; their flush runs while the alerts are sent.
    const durable = writes.length > 0 ? Promise.all([...writes, store.flushed()]) : undefined;
    const after: Promise<unknown>[] = [];
    let settled = false;
    try {
      if (alerts.length > 0) {
        const [results] = await Promise.all([this.sendMany(alerts.map((a) => a.message)), durable]);
        const at = this.d.now();
        const refused: Promise<unknown>[] = [];
        results.forEach((r, i) => {
          const person = (alerts[i] as { person: Person }).person;
          if (r.ok) {
            metrics.alerts.inc({ kind: 'alert' });
          } else if (isTransient(r.error)) {
            // Not written: it waits as a digest of one (a durable entry) and is retried shortly.
            refused.push(store.write(person.id, fold(store.state(person.id), mail.summary, at + ALERT_RETRY_MS, newId).next));
            folded++;
            retried++;
            metrics.alerts.inc({ kind: 'retried' });
          } else {
            failed++;
            metrics.alerts.inc({ kind: 'failed' });
          }
          after.push(store.markSeen(mail.key, person.id, now));
        });
        if (refused.length > 0) await Promise.all([...refused, ...after, store.flushed()]);
      } else {
        await durable;
      }
      settled = true;
    } finally {
      // A sent alert's seen mark need not be flushed before the answer: should it be lost in a
      // crash, a later copy of the mail re-sends under the same idempotency key and the intake
      // answers with the first message. The claims stay until the marks are visible.
      const release = (): void => {
        for (const c of claimed) this.inflight.delete(c);
      };
      if (settled && after.length > 0) void Promise.all(after).then(release, release);
      else release();
    }
    if (folded > 0) metrics.alerts.inc({ kind: 'folded' }, folded);
    if (duplicates > 0) metrics.alerts.inc({ kind: 'duplicate' }, duplicates);
    metrics.pendingDigests.set(store.pending);
    return { alerted: alerts.length - failed - retried, folded, duplicates, failed, deferred };
  }

  /** Send the digests that are due (one round; also run by the timer). */
  tick(): Promise<void> {
    if (this.ticking || this.stopped) return this.ticking ?? Promise.resolve();
    this.ticking = this.sendDue().catch((e: unknown) => this.logError(e, 'sending due mail digests failed')).finally(() => {
      this.ticking = undefined;
      this.d.metrics.pendingDigests.set(this.d.store.pending);
    });
    return this.ticking;
  }

  private async sendDue(): Promise<void> {
    const { store, directory, metrics } = this.d;
    // Bounded rounds: a round's entries either leave the due range or are not due anymore.
    for (let round = 0; round < 20 && !this.stopped; round++) {
      const now = this.d.now();
      const ids = store.dueAt(now, DUE_BATCH);
      if (ids.length === 0) return;
      const quietEnd = quietUntil(this.o.quietHours, now, this.o.utcOffsetMinutes);
      const marks: Promise<unknown>[] = [];
      const sends: { id: string; send: DigestSend; message: SendItem; kind: 'alert' | 'digest' }[] = [];
      for (const id of ids) {
        const state = store.state(id);
        const p = state?.pending;
        if (p === undefined || p.dueAt > now) continue;
        const person = directory.getPerson(id);
        if (person === undefined || !person.mailAlerts) {
          // Opted out (or removed) since: the digest is dropped, nothing is sent.
          marks.push(store.write(id, afterSend(state, p.count, undefined, this.o.windowMs, () => this.newId())));
          metrics.alerts.inc({ kind: 'dropped' });
          continue;
        }
        const step = dueStep(state, now, quietEnd, (d) => `mail:d:${id}:${d.id}`, (d) => this.digestText(d));
        if (step.kind === 'none') continue;
        if (step.next !== state) marks.push(store.write(id, step.next));
        if (step.kind === 'postpone') continue;
        const { send } = step;
        sends.push({ id, send, kind: send.count === 1 ? 'alert' : 'digest', message: this.item(person, send.key, send.text, 'mail-digest') });
      }
      // The marks are committed before the send: after a crash the same text goes under the same key.
      await Promise.all(marks);
      if (sends.length > 0) {
        const results = await this.sendMany(sends.map((s) => s.message));
        const at = this.d.now();
        const writes: Promise<unknown>[] = [];
        results.forEach((r, i) => {
          const s = sends[i] as (typeof sends)[number];
          const state = store.state(s.id);
          if (r.ok) {
            writes.push(store.write(s.id, afterSend(state, s.send.count, at, this.o.windowMs, () => this.newId())));
            metrics.alerts.inc({ kind: s.kind === 'alert' ? 'alert' : 'digest' });
          } else if (isTransient(r.error) && (state?.pending?.attempts ?? 0) + 1 < MAX_DIGEST_ATTEMPTS) {
            if (state) writes.push(store.write(s.id, afterTransientFailure(state, at)));
            metrics.alerts.inc({ kind: 'retried' });
          } else {
            writes.push(store.write(s.id, afterSend(state, s.send.count, undefined, this.o.windowMs, () => this.newId())));
            metrics.alerts.inc({ kind: 'failed' });
          }
        });
        await Promise.all(writes);
      }
      if (ids.length < DUE_BATCH) return;
    }
  }

  private async sweep(): Promise<void> {
    try {
      // Bounded: at most 10 batches a minute; what is left waits for the next sweep.
      for (let i = 0; i < 10 && !this.stopped; i++) {
        if ((await this.d.store.sweepSeen(this.d.now() - this.o.dedupeTtlMs, SEEN_SWEEP)) < SEEN_SWEEP) break;
      }
    } catch (e) {
      this.logError(e, 'sweeping mail de-duplication marks failed');
    }
  }

  private async sendMany(messages: readonly SendItem[]): Promise<SendResult[]> {
    try {
      const results = await this.d.sends.sendAs(this.o.tenant, messages);
      return results.map((r) => (r.ok ? { ok: true as const } : { ok: false as const, error: r.error }));
    } catch (e) {
      const error = e instanceof GatewayError ? e : new GatewayError('INTERNAL', 'sending the alerts failed', { cause: e });
      return messages.map(() => ({ ok: false as const, error }));
    }
  }

  private message(person: Person, key: string, template: CompiledTemplate, values: Record<string, unknown>): SendItem {
    return this.item(person, key, renderText(template, values, this.o.utcOffsetMinutes), 'mail-alert');
  }

  /** One SMS to a person the directory knows (their own mobile): a `directory` number. */
  private item(person: Person, key: string, text: string, reference: string): SendItem {
    return {
      command: {
        recipients: { kind: 'numbers', numbers: [person.mobile], origin: 'directory' },
        content: { kind: 'text', text }, tier: this.o.tier, channel: 'auto', idempotencyKey: key, reference,
      },
    };
  }

  private digestText(p: PendingDigest): string {
    const { kind, values } = digestValues(p);
    return renderText(kind === 'alert' ? this.o.alertText : this.o.digestText, values, this.o.utcOffsetMinutes);
  }

  private newId(): string {
    return `${this.d.now().toString(36)}${this.idPrefix}${(this.idSeq++).toString(36)}`;
  }

  /** Unexpected failures: logged, at most once per 10 s (never per message). */
  private logError(e: unknown, msg: string): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) {
      this.suppressedErrors++;
      return;
    }
    this.d.logger.error({ err: e, suppressed: this.suppressedErrors }, msg);
    this.lastErrorLog = now;
    this.suppressedErrors = 0;
  }
}

/** Refusals that may pass later: the gateway overloaded or not ready, a quota, storage trouble. */
export function isTransient(e: GatewayError): boolean {
  return e.status >= 500 || e.code === 'QUOTA_EXCEEDED';
}

export type { PersonMailState };
