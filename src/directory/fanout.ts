/**
 * Fan-out: a group send's expansion job, taken by the dispatcher, becomes
 * recipient rows and recipient jobs.
 *
 *   expansion job (message, no recipients, expand: { group, unit, channel })
 *     ├─ already expanded (marker)? ─── yes ─▶ re-publish from the stored rows (idempotent)
 *     ▼ no
 *   expand the group (chunks, yielding) ─▶ route each distinct member:
 *       blocked for the unit or globally   → row final `rejected` (opted out), unless the tier ignores opt-out
 *       police:  preference sms            → row final `rejected`;  pda / both → PDA
 *       auto:    sms, both → SMS;  pda → PDA      (channel sms / pda force one)
 *       PDA route, PDA channel not wired   → row final `failed`
 *   write rows (chunks of plain puts) ─▶ completeExpansion (count, finals, expiry) ─▶ marker ─▶ flush
 *     ▼
 *   publish recipient jobs `<msgId>.<part>` (part = index / batchSize): the same ids on
 *   every redelivery, so the queue drops repeats; hand PDA members to the PDA channel
 *   (which ignores repeats) ─▶ the dispatcher acks the expansion job.
 *
 * Why a marker (dir.expansions) and not "rows exist": rows written by an
 * expansion that crashed half-way may be rewritten (nothing was sent for
 * them), but once recipient jobs may have been published the rows carry
 * progress (operator ids, receipts) and must never be rewritten. The marker
 * is written only after the rows and the count are committed, and before
 * the first recipient job is published.
 */
import type { Database, RootDatabase } from 'lmdb';
import { GatewayError } from '../core/errors.js';
import { encodeJob, workSubject, type Job, type JobExpansion, type JobMessage, type JobPdaItem, type JobRecipient } from '../core/job.js';
import { isFinal, type FinalState } from '../core/message.js';
import type { QueueMessage, WorkQueue } from '../queue/port.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { DirectoryStore } from './store.js';
import { numberTail, type GroupExpander } from './expansion.js';

/** One recipient handed to the PDA channel (src/pda/channel.ts `deliver` takes this shape). */
export type PdaDelivery = JobPdaItem;

/** The PDA channel as fan-out sees it. `deliver` must ignore recipients it already has (redelivery). */
export interface PdaHandoff {
  deliver(messages: readonly PdaDelivery[]): Promise<unknown>;
}

/** What fan-out needs from the receipt store. */
export interface FanoutReceipts {
  getMessage(id: string): { readonly tenant: string; readonly recipients: number } | undefined;
  putExpandedRecipients(messageId: string, from: number, rows: readonly { to: string; final?: { state: FinalState; error: string } }[]): void;
  completeExpansion(messageId: string, count: number, finals: readonly { index: number; state: FinalState }[]): Promise<void>;
  finalizeRecipients(messageId: string, items: readonly { index: number; state: FinalState; error: string }[]): Promise<void>;
  listRecipients(id: string, page: { cursor?: number; limit: number }): { items: Array<{ index: number; to: string; state: string }>; next?: number };
  flushed(): Promise<void>;
}

export interface FanoutDeps {
  readonly env: RootDatabase;
  readonly directory: DirectoryStore;
  readonly expander: GroupExpander;
  readonly receipts: FanoutReceipts;
  readonly queue: WorkQueue;
  readonly prefix: string;
  readonly batchSize: number;
  /** Tier name → priority (PDA priority: ≥ 80 flash, ≥ 50 urgent, else routine). */
  readonly tierPriority: ReadonlyMap<string, number>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly pda?: PdaHandoff;
  /** Yield between chunks of rows written / jobs built. */
  readonly pause: () => Promise<void>;
  /** Rows per chunk. */
  readonly chunk: number;
  /** Block lists larger than this are checked per member instead of loaded as a set. */
  readonly blockedSetMax?: number;
  /** Tiers whose messages reach numbers on the block list (tiers[].ignoreOptOut). */
  readonly optOutExemptTiers?: ReadonlySet<string>;
  readonly now?: () => number;
}

/** The routing of every member of one expansion, index = recipient index. */
export interface FanoutPlan {
  readonly numbers: string[];
  /** Members that end at expansion: index → final state and reason. */
  readonly finals: Map<number, { state: FinalState; error: string }>;
  /** Indices routed to the PDA channel, and their person ids. */
  readonly pda: number[];
  readonly pdaPersons: string[];
  readonly sms: number;
}

export interface PlanInput {
  readonly group: string;
  readonly unit?: string;
  readonly channel: 'sms' | 'pda' | 'auto';
  readonly classification?: string;
  readonly reject?: string;
  /** The tier ignores the block list (emergency warnings reach people who opted out). */
  readonly ignoreOptOut?: boolean;
}

interface Marker {
  /** Recipients. */
  n: number;
  /** PDA indices and person ids. */
  p: number[];
  q: string[];
  /** Epoch ms written (for the sweep). */
  a: number;
}

export const OPTED_OUT = 'opted out (block list)';
export const NO_PDA = 'channel preference pda, but the PDA channel is not enabled on this gateway';
export const POLICE_SMS_ONLY = 'police message: the person has an SMS-only channel preference (police messages never go by SMS)';
export const PDA_SMS_ONLY = 'sent with channel pda: the person has an SMS-only channel preference';

/** The PDA protocol carries the sender unit's name in at most this many UTF-8 bytes. */
const MAX_SENDER_UNIT_BYTES = 128;

/** Jobs handed to one queue.publish call. */
const PUBLISH_BATCH = 32;
/** Recipients per PDA deliver call (the channel's own bound is 20,000). */
const PDA_BATCH = 10_000;

export class GroupFanout {
  private readonly markers: Database<Marker, string>;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly deps: FanoutDeps) {
    this.markers = deps.env.openDB<Marker, string>({ name: 'dir.expansions', encoding: 'msgpack' });
    this.now = deps.now ?? Date.now;
    this.log = deps.logger.child({ part: 'fanout' });
  }

  /**
   * Route every member of the group (pure with respect to the receipt store:
   * reads the directory only). Exposed for the benchmark.
   */
  async plan(input: PlanInput): Promise<FanoutPlan> {
    const { directory, expander } = this.deps;
    const scopes = ['*', ...(input.unit !== undefined ? (directory.unitChain(input.unit) ?? []).map((u) => u.id) : [])];
    // Block lists are short next to big groups: one read of the set beats a lookup per member,
    // and the set of their number tails answers "certainly not blocked" without hashing a string.
    const blocked = directory.blockedSet(scopes, this.deps.blockedSetMax ?? 200_000);
    const tails = blocked !== undefined ? new Set([...blocked].map((n) => numberTail(` ${n}`))) : undefined;
    const isBlocked = blocked !== undefined
      ? (n: string, tail: number) => (tails as Set<number>).has(tail) && blocked.has(n)
      : (n: string) => directory.isBlocked(n, scopes);
    const numbers: string[] = [];
    const finals = new Map<number, { state: FinalState; error: string }>();
    const pda: number[] = [];
    const pdaPersons: string[] = [];
    const police = input.classification === 'police';
    const pdaWired = this.deps.pda !== undefined;
    let sms = 0;
    const rejected = input.reject !== undefined ? { state: 'rejected' as const, error: input.reject } : undefined;
    await expander.expand(input.group, (pid, packed, tail) => {
      const i = numbers.length;
      const mobile = packed.slice(1);
      numbers.push(mobile);
      if (rejected) {
        finals.set(i, rejected);
        return;
      }
      if (!input.ignoreOptOut && isBlocked(mobile, tail)) {
        finals.set(i, { state: 'rejected', error: OPTED_OUT });
        return;
      }
      const pref = packed.charCodeAt(0); // s, p, b
      let toPda: boolean;
      if (police) {
        if (pref === 0x73) {
          finals.set(i, { state: 'rejected', error: POLICE_SMS_ONLY });
          return;
        }
        toPda = true;
      } else if (input.channel === 'sms') toPda = false;
      else if (input.channel === 'pda') {
        if (pref === 0x73) {
          finals.set(i, { state: 'rejected', error: PDA_SMS_ONLY });
          return;
        }
        toPda = true;
      } else toPda = pref === 0x70;
      if (!toPda) {
        sms++;
        return;
      }
      if (!pdaWired) {
        finals.set(i, { state: 'failed', error: NO_PDA });
        return;
      }
      pda.push(i);
      pdaPersons.push(pid);
    });
    return { numbers, finals, pda, pdaPersons, sms };
  }

  /** Run one expansion job to the point where it may be acked. Throws to have it redelivered. */
  async run(job: Job): Promise<'done'> {
    const exp = job.expand as JobExpansion;
    const m = job.messages[0];
    if (m === undefined || job.messages.length !== 1) throw new GatewayError('INTERNAL', `expansion job ${job.id} must carry exactly one message`);
    const started = this.now();
    const msg = this.deps.receipts.getMessage(m.id);
    if (msg === undefined) throw new GatewayError('INTERNAL', `expansion job ${job.id}: no message ${m.id} in the receipt store`);
    let marker = this.markers.get(m.id);
    let plan: FanoutPlan | undefined;
    if (marker === undefined) {
      plan = await this.plan({ group: exp.group, channel: exp.channel, ...(exp.unit !== undefined ? { unit: exp.unit } : {}), ...(m.classification !== undefined ? { classification: m.classification } : {}), ...(exp.reject !== undefined ? { reject: exp.reject } : {}), ...(this.deps.optOutExemptTiers?.has(job.tier) === true ? { ignoreOptOut: true } : {}) });
      marker = await this.record(m.id, plan);
      this.count(plan);
      this.deps.metrics.fanoutExpansions.inc({ outcome: exp.reject !== undefined ? 'rejected-on-review' : 'expanded' });
    } else {
      this.deps.metrics.fanoutExpansions.inc({ outcome: 'replayed' });
    }
    if (exp.reject === undefined) {
      await this.publish(job, m, marker, plan);
      if (marker.p.length > 0 && this.deps.pda) await this.handToPda(job, m, marker, exp);
    }
    this.deps.metrics.fanoutSeconds.observe((this.now() - started) / 1000);
    return 'done';
  }

  /**
   * A police message sent to numbers (not a group): its recipients go to
   * their owners' PDAs, or end `rejected` when the PDA channel is not
   * wired or the number's owner has no PDA preference. Never SMS.
   */
  async routePolice(job: Job, m: JobMessage): Promise<void> {
    const refused: { index: number; state: FinalState; error: string }[] = [];
    const deliveries: PdaDelivery[] = [];
    for (const r of m.recipients) {
      const p = this.deps.directory.personByMobile(r.to);
      if (!this.deps.pda) refused.push({ index: r.i, state: 'rejected', error: 'police messages never go by SMS, and the PDA channel is not enabled' });
      else if (p === undefined || p.channel === 'sms') refused.push({ index: r.i, state: 'rejected', error: POLICE_SMS_ONLY });
      else deliveries.push(this.pdaDelivery(job, m, r.i, p.id));
    }
    if (refused.length > 0) await this.deps.receipts.finalizeRecipients(m.id, refused);
    for (let i = 0; i < deliveries.length; i += PDA_BATCH) await this.deps.pda?.deliver(deliveries.slice(i, i + PDA_BATCH));
  }

  /** The queue gave up on an expansion job: a message never expanded ends with no recipients (logged). */
  async deadLettered(job: Job, reason: string): Promise<void> {
    const m = job.messages[0];
    if (m === undefined || this.markers.get(m.id) !== undefined) return;
    this.deps.metrics.fanoutExpansions.inc({ outcome: 'dead-lettered' });
    this.log.error({ job: job.id, message: m.id, group: job.expand?.group, reason }, 'group expansion dead-lettered before it completed; the message ends with no recipients');
    await this.deps.receipts.completeExpansion(m.id, 0, []);
  }

  /** Remove markers older than `maxAgeMs` (their expansion jobs were acked long ago). At most `limit`. */
  async sweepMarkers(maxAgeMs: number, limit = 10_000): Promise<number> {
    const cutoff = this.now() - maxAgeMs;
    let removed = 0;
    const old: string[] = [];
    for (const { key, value } of this.markers.getRange({})) {
      if (value.a < cutoff) old.push(key);
      if (old.length >= limit) break;
    }
    // Issued together: lmdb commits them in one batch.
    await Promise.all(old.map((k) => this.markers.remove(k).then(() => void removed++)));
    return removed;
  }

  /** Write rows, commit the count and finals, then the marker; resolves when all of it is durable. */
  private async record(messageId: string, plan: FanoutPlan): Promise<Marker> {
    const { receipts, chunk, pause } = this.deps;
    const n = plan.numbers.length;
    for (let from = 0; from < n; from += chunk) {
      const end = Math.min(n, from + chunk);
      const rows: { to: string; final?: { state: FinalState; error: string } }[] = [];
      for (let i = from; i < end; i++) {
        const f = plan.finals.get(i);
        rows.push(f !== undefined ? { to: plan.numbers[i] as string, final: f } : { to: plan.numbers[i] as string });
      }
      receipts.putExpandedRecipients(messageId, from, rows);
      if (end < n) await pause();
    }
    await receipts.flushed();
    const finals: { index: number; state: FinalState }[] = [];
    for (const [index, f] of plan.finals) finals.push({ index, state: f.state });
    await receipts.completeExpansion(messageId, n, finals);
    const marker: Marker = { n, p: plan.pda, q: plan.pdaPersons, a: this.now() };
    await this.markers.put(messageId, marker);
    await receipts.flushed();
    return marker;
  }

  /** Recipient jobs for every SMS-routed, not-yet-final recipient, with deterministic ids. */
  private async publish(job: Job, m: JobMessage, marker: Marker, plan: FanoutPlan | undefined): Promise<void> {
    const { batchSize, prefix, queue, pause } = this.deps;
    const pdaSet = marker.p.length > 0 ? new Set(marker.p) : undefined;
    const subject = workSubject(prefix, job.tier, job.tenant, job.group);
    let pending: QueueMessage[] = [];
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const out = pending;
      pending = [];
      await queue.publish(out);
    };
    const emit = async (part: number, recipients: JobRecipient[]): Promise<void> => {
      if (recipients.length === 0) return;
      const body: Job = {
        v: 1, id: `${m.id}.${part}`, tier: job.tier, tenant: job.tenant, group: job.group, createdAt: job.createdAt,
        messages: [{ id: m.id, text: m.text, encoding: m.encoding, sender: m.sender, expiresAt: m.expiresAt, recipients }],
      };
      pending.push({ subject, tier: job.tier, msgId: body.id, data: encodeJob(body) });
      if (pending.length >= PUBLISH_BATCH) {
        await flush();
        await pause();
      }
    };
    if (plan !== undefined) {
      for (let part = 0, from = 0; from < marker.n; part++, from += batchSize) {
        const recipients: JobRecipient[] = [];
        const end = Math.min(marker.n, from + batchSize);
        for (let i = from; i < end; i++) {
          if (plan.finals.has(i) || pdaSet?.has(i)) continue;
          recipients.push({ i, to: plan.numbers[i] as string });
        }
        await emit(part, recipients);
      }
    } else {
      // Redelivered after the marker: the rows are the record (recipients already final are skipped).
      let part = 0;
      let recipients: JobRecipient[] = [];
      let cursor: number | undefined = 0;
      for (let pages = 0; cursor !== undefined && pages <= marker.n; pages++) {
        const page = this.deps.receipts.listRecipients(m.id, { cursor, limit: 1000 });
        for (const r of page.items) {
          if (r.index >= marker.n) break;
          const p = Math.floor(r.index / batchSize);
          if (p !== part) {
            await emit(part, recipients);
            part = p;
            recipients = [];
          }
          if (!isFinal(r.state) && !pdaSet?.has(r.index)) recipients.push({ i: r.index, to: r.to });
        }
        cursor = page.next;
      }
      await emit(part, recipients);
    }
    await flush();
  }

  private async handToPda(job: Job, m: JobMessage, marker: Marker, exp: JobExpansion): Promise<void> {
    const deliveries: PdaDelivery[] = [];
    for (let k = 0; k < marker.p.length; k++) {
      deliveries.push(this.pdaDelivery(job, m, marker.p[k] as number, marker.q[k] as string, exp.unit));
      if (deliveries.length >= PDA_BATCH) {
        await this.deps.pda?.deliver(deliveries.splice(0));
        await this.deps.pause();
      }
    }
    if (deliveries.length > 0) await this.deps.pda?.deliver(deliveries);
  }

  private pdaDelivery(job: Job, m: JobMessage, index: number, personId: string, unit?: string): PdaDelivery {
    const priority = this.deps.tierPriority.get(job.tier) ?? 0;
    const senderUnit = utf8Prefix(this.deps.directory.getUnit(unit ?? job.tenant)?.name ?? job.tenant, MAX_SENDER_UNIT_BYTES);
    return {
      messageId: m.id,
      index,
      personId,
      priority: priority >= 80 ? 2 : priority >= 50 ? 1 : 0,
      createdAt: job.createdAt,
      expiresAt: m.expiresAt,
      classification: m.classification ?? 'general',
      senderUnit,
      body: m.text,
    };
  }

  private count(plan: FanoutPlan): void {
    const { metrics } = this.deps;
    let blocked = 0;
    let refused = 0;
    let noPda = 0;
    for (const f of plan.finals.values()) {
      if (f.error === OPTED_OUT) blocked++;
      else if (f.error === NO_PDA) noPda++;
      else refused++;
    }
    if (plan.sms > 0) metrics.fanoutRecipients.inc({ route: 'sms' }, plan.sms);
    if (plan.pda.length > 0) metrics.fanoutRecipients.inc({ route: 'pda' }, plan.pda.length);
    if (blocked > 0) metrics.fanoutRecipients.inc({ route: 'blocked' }, blocked);
    if (refused > 0) metrics.fanoutRecipients.inc({ route: 'refused' }, refused);
    if (noPda > 0) metrics.fanoutRecipients.inc({ route: 'no-pda' }, noPda);
  }
}

/** The longest prefix of `s` that fits `max` UTF-8 bytes, never splitting a character. */
function utf8Prefix(s: string, max: number): string {
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + n > max) break;
    bytes += n;
    end += ch.length;
  }
  return s.slice(0, end);
}
