/**
 * Dispatcher: queue → segments → SMSC, and the record that makes it safe.
 *
 *   fetch (highest tier first, restart from the top after every fetch)
 *     └▶ job ─▶ for each recipient × segment:
 *                 already has an operator id or a final state?  → skip  (redelivery is harmless)
 *                 past validity?                                → final `expired`
 *                 no route (routing table, src/dispatch/router.ts)? → final `failed`
 *                 else submit (bounded by maxInflightSegments)  → record result
 *        all results committed ─▶ ack      (any `unavailable` → nak with delay)
 *
 * A group send arrives as one expansion job (`job.expand`): the fan-out
 * (src/directory/fanout.ts) expands it into recipient rows and recipient
 * jobs, which come back through here. A message classified `police` never
 * reaches a transport (invariant 3): the fan-out hands it to the PDA
 * channel, or its recipients end `rejected`. A recipient on the block list
 * ends `rejected` (opted out), checked right before sending. A tier inside
 * its quiet hours is not fetched.
 *
 * Invariant 1 (DESIGN.md): work is acked to the queue only after its result
 * is recorded. Because each segment's operator id is recorded before the ack,
 * a job redelivered after a crash re-submits only segments that never got a
 * submit_sm_resp: duplicates are bounded by what was in flight.
 */
import type { Logger } from 'pino';
import { decodeJob, jobRecipientCount, type Job, type JobMessage, type JobPdaItem, type JobRecipient } from '../core/job.js';
import { isFinal, type FinalState, type SegmentRecord, type Tier } from '../core/message.js';
import type { SegmentProfile, SubmitOutcome } from '../core/ports.js';
import { buildSegments, segmentReference, type Segment } from '../core/segment.js';
import { placeSignature, type SignaturePosition } from '../core/signature.js';
import { maskNumber } from '../core/phone.js';
import { operatorOf } from '../core/route.js';
import { GatewayError } from '../core/errors.js';
import type { Delivery, WorkQueue, DeadLetter } from '../queue/port.js';
import { boundCounter, boundHistogram, type BoundCounter, type BoundHistogram, type Metrics } from '../telemetry/metrics.js';
import type { RoutedAccount, Router } from './router.js';
import { Slots } from './slots.js';

export type SegmentResult =
  | { kind: 'submitted'; messageId: string; index: number; segment: number; segments: number; account: string; opId: string; at: number; reroute?: string }
  | { kind: 'final'; messageId: string; index: number; segment: number; segments: number; state: FinalState; error: string; at: number };

/** What dispatch needs from the receipt store. */
export interface DispatchStore {
  getSegment(messageId: string, index: number, segment: number): SegmentRecord | undefined;
  /** Every part recorded for a recipient, part 1 first; empty when none is. */
  getSegments(messageId: string, index: number): readonly SegmentRecord[];
  markQueued(messageId: string, indices: readonly number[]): void;
  recordSegments(results: readonly SegmentResult[]): Promise<void>;
  finalizeRecipients(messageId: string, items: readonly { index: number; state: FinalState; error: string }[]): Promise<void>;
  /** Reroute (src/core/reroute.ts): a recipient waiting for or in its second attempt; undefined for any other. */
  rerouteOf?(messageId: string, index: number): { readonly rule: string; readonly firstAccounts: readonly string[]; readonly final: boolean } | undefined;
  /** Keep the text a second attempt sends (before the first submit of a message armed for reroute). */
  keepForReroute?(m: JobMessage): Promise<void>;
  /** Second attempts that cannot be made: the first attempt's result stands. */
  endReroutes?(messageId: string, indices: readonly number[]): Promise<void>;
  /** Is the recipient in a final state (a reroute job checks before sending)? */
  getRecipient?(messageId: string, index: number): { readonly state: string } | undefined;
}

/**
 * Several hosts (receipt replication, docs/DEPLOY.md): what this host must
 * have seen of the others' changes before it works on a job.
 */
export interface DispatchReplica {
  /** Does this host have the message's row (accepted on another host: replicated yet)? */
  has(messageId: string): boolean;
  /** Resolves true once every change published so far is applied here; false after the configured wait. */
  caughtUp(): Promise<boolean>;
}

export interface DispatcherOptions {
  readonly fetchBatch: number;
  readonly maxInflightSegments: number;
  /** Jobs held at once (fetched, not yet acked). */
  readonly maxInflightJobs: number;
  /** How long to wait when every tier is empty before polling again (a wake() cuts it short). */
  readonly idleWaitMs: number;
  /** Queue ack wait: long jobs send working() at a third of it. */
  readonly ackWaitMs: number;
  /** Back-off for naks when the transport is closing or a job cannot be processed now. */
  readonly nakDelayMs: number;
}

/** Group fan-out and police routing (src/directory/fanout.ts). */
export interface DispatchFanout {
  run(job: Job): Promise<'done'>;
  routePolice(job: Job, m: JobMessage): Promise<void>;
  deadLettered(job: Job, reason: string): Promise<void>;
}

/** The reason recorded for a recipient over the per-recipient frequency cap. */
export const FREQUENCY_CAP_REASON = 'frequency cap: this unit has sent this number its daily maximum (directory.frequencyCap.perDay)';

/** The reason recorded for a recipient on the block list. */
export const OPTED_OUT_REASON = 'opted out (block list)';

export interface DispatcherDeps {
  queue: WorkQueue;
  store: DispatchStore;
  router: Router;
  /** Highest priority first. */
  tiers: readonly Tier[];
  options: DispatcherOptions;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
  /** Expands group sends, routes police messages; absent: both are refused. */
  fanout?: DispatchFanout;
  /** Per job: is a number on the block list for this tenant? */
  optOut?: (tenant: string) => (to: string) => boolean;
  /** Tiers whose messages reach numbers on the block list (tiers[].ignoreOptOut: emergency warnings). */
  optOutExemptTiers?: ReadonlySet<string>;
  /** Per-recipient frequency cap (src/directory/frequency.ts): charges a message to numbers, returns those over the cap. */
  frequency?: {
    applies(tier: string): boolean;
    admit(tenant: string, tier: string, messageId: string, numbers: readonly string[]): Promise<ReadonlySet<string>>;
  };
  /** Is the tier inside its quiet hours now (not fetched)? */
  quiet?: (tier: string, now: number) => boolean;
  /** Intake first (src/dispatch/intake-first.ts): is the tier held back now while accepted work waits for its commit? */
  intakeFirst?: { holds(tier: string, now: number): boolean };
  /** Told the recipients of each job taken (decoded), for intake first's backlog bound. */
  onTaken?: (recipients: number) => void;
  /** Replication between hosts: absent on one host. */
  replica?: DispatchReplica;
  /** This process's PDA channel, for PDA hand-off jobs from other hosts (tier PDA_HANDOFF_TIER). */
  pdaLocal?: { deliver(items: readonly JobPdaItem[]): Promise<unknown> };
}

interface JobRun {
  readonly job: Job;
  readonly priority: number;
  readonly blocked: ((to: string) => boolean) | undefined;
  /** One per segment handed to a transport; each resolves once its result is in `writes` (or there is none to write). */
  readonly submits: Promise<void>[];
  readonly writes: Promise<void>[];
  retry: boolean;
}

interface ActiveJob {
  delivery: Delivery;
  lastProgress: number;
}

export class Dispatcher {
  private readonly slots: Slots;
  private readonly active = new Set<ActiveJob>();
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private lastReplicaWarning = -Infinity;
  private progressTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly priority: Map<string, number>;
  private readonly log: Logger;
  /** Per-segment metrics, bound once (a labelled inc/observe hashes its labels on every call). */
  private readonly segmentsBy: Readonly<Record<'accepted' | 'rejected' | 'expired' | 'unavailable' | 'already-recorded', BoundCounter>>;
  private readonly acceptToSubmit: BoundHistogram;
  private readonly releaseSlot = (): void => this.slots.release();

  constructor(private readonly deps: DispatcherDeps) {
    const segments = deps.metrics.dispatchSegments;
    this.segmentsBy = {
      accepted: boundCounter(segments, { outcome: 'accepted' }),
      rejected: boundCounter(segments, { outcome: 'rejected' }),
      expired: boundCounter(segments, { outcome: 'expired' }),
      unavailable: boundCounter(segments, { outcome: 'unavailable' }),
      'already-recorded': boundCounter(segments, { outcome: 'already-recorded' }),
    };
    this.acceptToSubmit = boundHistogram(deps.metrics.acceptToSubmitSeconds, {});
    this.slots = new Slots(deps.options.maxInflightSegments);
    this.now = deps.now ?? Date.now;
    this.priority = new Map(deps.tiers.map((t) => [t.name, t.priority]));
    this.log = deps.logger.child({ part: 'dispatch' });
    deps.queue.onDeadLetter((dl) => this.onDeadLetter(dl));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.pullLoop().catch((e: unknown) => {
      this.log.fatal({ err: e }, 'dispatch loop stopped');
      throw e;
    });
    const every = Math.max(250, Math.floor(this.deps.options.ackWaitMs / 3));
    this.progressTimer = setInterval(() => this.keepAlive(every), every);
    this.progressTimer.unref();
  }

  /** New work may be there (ingest calls this after a 202 in the same process). */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  get inflightJobs(): number {
    return this.active.size;
  }

  /**
   * Stop fetching and let jobs in flight finish (their segments are in the
   * bind windows); after `graceMs`, whatever is left is abandoned unacked and
   * will be redelivered — the receipt store check prevents re-submitting what
   * already has an operator id.
   */
  async stop(graceMs: number): Promise<void> {
    this.running = false;
    this.wake();
    if (this.progressTimer) clearInterval(this.progressTimer);
    await this.loop?.catch(() => undefined);
    const deadline = this.now() + graceMs;
    while (this.active.size > 0 && this.now() < deadline) await sleep(20);
  }

  private async pullLoop(): Promise<void> {
    const { queue, tiers, options } = this.deps;
    while (this.running) {
      const room = options.maxInflightJobs - this.active.size;
      if (room <= 0 || this.slots.free === 0) {
        await this.idle(options.idleWaitMs);
        continue;
      }
      let fetched = false;
      for (const tier of tiers) {
        const now = this.now();
        if (this.deps.quiet?.(tier.name, now) || this.deps.intakeFirst?.holds(tier.name, now) === true) continue;
        const deliveries = await queue.fetch(tier.name, Math.min(room, options.fetchBatch), 0);
        if (!this.running) {
          for (const d of deliveries) d.nak(0);
          return;
        }
        if (deliveries.length > 0) {
          fetched = true;
          for (const d of deliveries) this.process(d);
          break; // back to the highest tier: an emergency job never waits behind routine ones
        }
      }
      if (!fetched) await this.idle(options.idleWaitMs);
      else await this.slots.whenFree();
    }
  }

  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private keepAlive(every: number): void {
    const now = this.now();
    for (const a of this.active) {
      if (now - a.lastProgress >= every) {
        a.delivery.working();
        a.lastProgress = now;
      }
    }
  }

  private process(delivery: Delivery): void {
    const active: ActiveJob = { delivery, lastProgress: this.now() };
    this.active.add(active);
    this.deps.metrics.dispatchJobsInflight.set(this.active.size);
    this.runJob(delivery).then(
      async (outcome) => {
        if (outcome === 'done') await delivery.ack();
        else delivery.nak(this.deps.options.nakDelayMs);
      },
      (e: unknown) => {
        // Not decodable, or the store refused a write: give it back with a delay;
        // maxDeliver bounds the retries and dead-letters it with every recipient failed.
        this.log.error({ err: e, job: delivery.msgId, deliveries: delivery.deliveryCount }, 'job failed; will be redelivered');
        delivery.nak(this.deps.options.nakDelayMs);
      },
    ).catch((e: unknown) => {
      this.log.error({ err: e, job: delivery.msgId }, 'ack failed; the job will be redelivered and its sent segments skipped');
    }).finally(() => {
      this.active.delete(active);
      this.deps.metrics.dispatchJobsInflight.set(this.active.size);
    });
  }

  /** Resolves 'done' when every segment's result is committed, 'retry' when some must be retried later. */
  private async runJob(delivery: Delivery): Promise<'done' | 'retry'> {
    let job: Job;
    try {
      job = decodeJob(delivery.data);
    } catch (e) {
      await delivery.term(`undecodable job: ${(e as Error).message}`);
      throw e;
    }
    this.deps.onTaken?.(jobRecipientCount(job));
    if (this.deps.replica !== undefined && !(await replicaReady(this.deps.replica, job, delivery.deliveryCount))) {
      const now = this.now();
      if (now - this.lastReplicaWarning >= 10_000) {
        this.lastReplicaWarning = now;
        this.log.warn({ job: job.id, deliveries: delivery.deliveryCount }, 'other hosts\' receipt changes not applied here yet; job given back for later');
      }
      return 'retry';
    }
    if (job.pda !== undefined) {
      // Recipients another host routed to PDAs: only a process with the channel fetches these.
      if (!this.deps.pdaLocal) throw new GatewayError('INTERNAL', `job ${job.id} is a PDA hand-off but this process has no PDA channel`);
      await this.deps.pdaLocal.deliver(job.pda);
      return 'done';
    }
    if (job.expand !== undefined) {
      if (!this.deps.fanout) throw new GatewayError('INTERNAL', `job ${job.id} is a group expansion but no directory fan-out is wired`);
      return this.deps.fanout.run(job);
    }
    const priority = this.priority.get(job.tier) ?? 0;
    const blocked = this.deps.optOutExemptTiers?.has(job.tier) === true ? undefined : this.deps.optOut?.(job.tenant);
    const run: JobRun = { job, priority, blocked, submits: [], writes: [], retry: false };
    // Messages of a coalesced job go out back to back: only slot waits pace them.
    for (const m of job.messages) await this.runMessage(run, m);
    await Promise.all(run.submits);
    await Promise.all(run.writes);
    return run.retry ? 'retry' : 'done';
  }

  /** Queue every segment of one message for submission; resolves once all are handed over (not done). */
  private async runMessage(run: JobRun, m: JobMessage): Promise<void> {
    const { store, router, metrics } = this.deps;
    const { job, submits, writes } = run;
    if (m.classification === 'police') {
      this.policeMessage(run, m);
      return;
    }
    // Encode once per message, segment profile and signature position (the parts depend
    // on the account's protocol: CMPP has no GSM 03.38); per recipient only the UDH
    // reference byte changes.
    // One recipient (the usual message of a coalesced job): its parts are built with its own
    // UDH reference, and sent as built, instead of built with 0 and copied to set the reference.
    const only = m.recipients.length === 1 ? m.recipients[0] : undefined;
    const parts = new MessageParts(m, only !== undefined ? segmentReference(m.id, only.i) : 0);
    // Created on first use: most messages have no final result here and no reroute.
    let finals: SegmentResult[] | undefined;
    store.markQueued(m.id, m.recipients.map((r) => r.i));
    // Frequency cap: one charge per message for the recipients about to be sent (idempotent per message id).
    const admitting = this.admitCap(run, m);
    const overCap = admitting === undefined ? undefined : await admitting;
    // Routing context once per message: the sender's unit chain and the tier.
    const routeMessage = { tier: job.tier, units: router.unitsOf(job.tenant) };
    /** Recipients whose second attempt has no account of another carrier: their first result stands. */
    let noReroute: number[] | undefined;
    let textKept = false;
    // Rows are looked at for a reroute only when some rule has it on, or for a reroute job: no
    // extra read per recipient otherwise (a first job redelivered after every reroute rule was
    // removed sends a waiting recipient's second attempt as a first one's would go).
    const reroutes = job.reroute === 1 || router.rerouteOn;
    for (const r of m.recipients) {
      // A second attempt (reroute, src/core/reroute.ts): the rule's reroute accounts of another carrier.
      const second = reroutes ? store.rerouteOf?.(m.id, r.i) : undefined;
      if (second === undefined && job.reroute === 1) {
        // A reroute job on a host that has not seen the reroute yet (replication): later; already final: nothing to do.
        const row = store.getRecipient?.(m.id, r.i);
        if (row !== undefined && !isFinal(row.state)) run.retry = true;
        continue;
      }
      if (second?.final === true) {
        this.segmentsBy['already-recorded'].inc();
        continue;
      }
      const route = second === undefined
        ? router.route(r.to, routeMessage, this.now())
        : { operator: operatorOf(r.to), rule: second.rule, accounts: router.rerouteTargets(second.rule, r.to, second.firstAccounts) };
      if (second !== undefined && route.accounts.length === 0) {
        (noReroute ??= []).push(r.i);
        continue;
      }
      let account = route.accounts[0];
      // Parts as this recipient's account sends them; without a route, as the default (SMPP) plan.
      // Parts already recorded (a redelivery): stay with the account that holds them, whose plan
      // they follow — the part count may differ between protocols (a 150-character ASCII text is
      // one SMPP part and two CMPP parts), and the store keeps one count per recipient.
      // The recipient's parts as recorded, read once (a 3-part recipient read its row four times
      // here, a decode each); read again only after waiting for a slot, when other submits of
      // this job may have been recorded meanwhile.
      let recorded = store.getSegments(m.id, r.i);
      if (account && recorded[0] !== undefined) {
        const most = Math.max(parts.get('smpp', undefined).length, parts.get('cmpp', undefined).length, parts.get('cmpp-gb18030', undefined).length);
        account = samePartsAccount(store, m.id, r.i, most, route.accounts, router) ?? account;
      }
      // Armed for reroute: the rule has it on and another carrier's account could take a second attempt.
      const armed = second === undefined && 'reroute' in route && route.reroute !== undefined && account !== undefined
        && router.rerouteTargets(route.reroute, r.to, [account.name]).length > 0 ? route.reroute : undefined;
      if (armed !== undefined && !textKept && store.keepForReroute) {
        textKept = true;
        writes.push(store.keepForReroute(m));
      }
      const template = parts.get(account?.transport.segmentProfile ?? 'smpp', account?.signaturePosition);
      const count = template.length;
      const optedOut = run.blocked?.(r.to) ?? false;
      for (let s = 1; s <= count; s++) {
        const existing = recorded[s - 1];
        if (existing && (existing.opId !== undefined || isFinal(existing.state))) {
          this.segmentsBy['already-recorded'].inc();
          continue;
        }
        const now = this.now();
        if (optedOut) {
          (finals ??= []).push({ kind: 'final', messageId: m.id, index: r.i, segment: s, segments: count, state: 'rejected', error: OPTED_OUT_REASON, at: now });
          metrics.dispatchSegments.inc({ outcome: 'opted-out' });
          continue;
        }
        if (overCap?.has(r.to) === true) {
          (finals ??= []).push({ kind: 'final', messageId: m.id, index: r.i, segment: s, segments: count, state: 'rejected', error: FREQUENCY_CAP_REASON, at: now });
          metrics.dispatchSegments.inc({ outcome: 'frequency-cap' });
          continue;
        }
        if (now >= m.expiresAt) {
          (finals ??= []).push({ kind: 'final', messageId: m.id, index: r.i, segment: s, segments: count, state: 'expired', error: 'validity period passed before submission', at: now });
          metrics.dispatchSegments.inc({ outcome: 'expired' });
          continue;
        }
        if (!account) {
          (finals ??= []).push({ kind: 'final', messageId: m.id, index: r.i, segment: s, segments: count, state: 'failed', error: `no route: no account serves operator ${route.operator} for tier ${job.tier}`, at: now });
          metrics.dispatchSegments.inc({ outcome: 'no-route' });
          continue;
        }
        const seg = template[s - 1] as Segment;
        const payload = count === 1 || r === only ? seg.payload : withReference(seg.payload, segmentReference(m.id, r.i));
        // The slot is held from submit until the result is committed: at any
        // moment at most maxInflightSegments segments are "sent but not
        // durably recorded", which bounds the duplicates a crash can cause.
        const slot = this.slots.acquire(job.tenant);
        if (slot !== undefined) {
          await slot;
          recorded = store.getSegments(m.id, r.i);
        }
        submits.push(this.submitSegment(run, m, r, account, s, count, armed, seg, payload));
      }
    }
    if (finals !== undefined) writes.push(store.recordSegments(finals));
    if (noReroute !== undefined && store.endReroutes) {
      metrics.dispatchSegments.inc({ outcome: 'no-reroute-account' }, noReroute.length);
      writes.push(store.endReroutes(m.id, noReroute));
    }
  }

  /** Invariant 3: a police message never goes by SMPP. The PDA channel takes it, or every recipient is refused. */
  private policeMessage(run: JobRun, m: JobMessage): void {
    const { store, metrics, fanout } = this.deps;
    metrics.dispatchSegments.inc({ outcome: 'police-not-sms' }, m.recipients.length);
    run.writes.push(fanout
      ? fanout.routePolice(run.job, m)
      : store.finalizeRecipients(m.id, m.recipients.map((r) => ({ index: r.i, state: 'rejected' as const, error: 'police messages never go by SMS, and the PDA channel is not enabled' }))));
  }

  /**
   * Frequency cap: one charge per message for the recipients about to be sent (idempotent per
   * message id); the numbers over the cap. Undefined when no cap applies to the job's tier.
   * (Apart from runMessage so that its locals do not widen runMessage's frame, kept across awaits.)
   */
  private admitCap(run: JobRun, m: JobMessage): Promise<ReadonlySet<string>> | undefined {
    const { frequency, store } = this.deps;
    const { job } = run;
    if (frequency?.applies(job.tier) !== true) return undefined;
    const numbers: string[] = [];
    for (const r of m.recipients) {
      if (run.blocked?.(r.to) === true) continue;
      const first = store.getSegment(m.id, r.i, 1);
      if (first && (first.opId !== undefined || isFinal(first.state))) continue;
      numbers.push(r.to);
    }
    return frequency.admit(job.tenant, job.tier, m.id, numbers);
  }

  /**
   * Hand one segment to its account's transport (its slot is held) and queue its result's write
   * (in run.writes); the slot is released once the write settles (or at once when there is nothing
   * to write). One async call per
   * segment: no then/finally closures and no chained promises, and the caller's locals are not
   * captured (runMessage's context is not kept alive by every segment in flight).
   */
  private async submitSegment(run: JobRun, m: JobMessage, r: JobRecipient, account: RoutedAccount, s: number, count: number, armed: string | undefined, seg: Segment, payload: Uint8Array): Promise<void> {
    let outcome: SubmitOutcome;
    try {
      outcome = await account.transport.submit({
        destination: r.to,
        source: account.sourceFor ? account.sourceFor(m.sender) : m.sender,
        payload,
        dataCoding: seg.dataCoding,
        esmClass: seg.esmClass,
        registeredDelivery: true,
        priority: run.priority,
        deadline: m.expiresAt,
      });
    } catch (e) {
      // A transport bug must not lose the segment: retry the job later.
      this.log.error({ err: e, to: maskNumber(r.to) }, 'submit threw; the job will be retried');
      run.retry = true;
      this.slots.release();
      return;
    }
    let w: Promise<void>;
    try {
      this.deps.router.observe(account.name, outcome);
      const result = this.toResult(run.job, m, r.i, s, count, outcome, armed);
      if (!result) {
        run.retry = true;
        this.slots.release();
        return;
      }
      // One result per call: the store group-commits everything queued in this turn.
      w = this.deps.store.recordSegments([result]);
    } catch (e) {
      this.slots.release();
      throw e;
    }
    // The job is acked only after its writes (runJob awaits them after the submits), so this
    // segment is done once its write is in the list; the slot is held until the write settles.
    run.writes.push(w);
    w.then(this.releaseSlot, this.releaseSlot);
  }

  private toResult(job: Job, m: JobMessage, index: number, segment: number, segments: number, outcome: SubmitOutcome, reroute?: string): SegmentResult | undefined {
    const at = this.now();
    this.segmentsBy[outcome.kind].inc();
    switch (outcome.kind) {
      case 'accepted':
        this.acceptToSubmit.observe((at - job.createdAt) / 1000);
        return {
          kind: 'submitted', messageId: m.id, index, segment, segments, account: outcome.account, opId: outcome.messageId, at,
          ...(outcome.sentAt === undefined ? undefined : { sentAt: outcome.sentAt }),
          ...(reroute === undefined ? undefined : { reroute }),
        };
      case 'rejected':
        return { kind: 'final', messageId: m.id, index, segment, segments, state: 'rejected', error: outcome.reason, at };
      case 'expired':
        return { kind: 'final', messageId: m.id, index, segment, segments, state: 'expired', error: outcome.reason, at };
      case 'unavailable':
        return undefined;
    }
  }

  /** A job the queue gave up on: every recipient in it that is not final fails, with the reason. */
  private async onDeadLetter(dl: DeadLetter): Promise<void> {
    this.deps.metrics.queueDeadLetters.inc({ tier: dl.tier });
    let job: Job;
    try {
      job = decodeJob(dl.data);
    } catch (e) {
      this.log.error({ err: e, job: dl.msgId }, 'dead-lettered job is not decodable; its recipients are in the receipt store and will expire');
      return;
    }
    const error = `dead-lettered after ${dl.deliveryCount} deliveries: ${dl.reason}`;
    if (job.expand !== undefined) {
      await this.deps.fanout?.deadLettered(job, error);
      return;
    }
    if (job.pda !== undefined) {
      const byMessage = new Map<string, number[]>();
      for (const p of job.pda) {
        const list = byMessage.get(p.messageId);
        if (list) list.push(p.index);
        else byMessage.set(p.messageId, [p.index]);
      }
      for (const [id, indices] of byMessage) await this.deps.store.finalizeRecipients(id, indices.map((index) => ({ index, state: 'failed' as const, error })));
    }
    for (const m of job.messages) {
      await this.deps.store.finalizeRecipients(m.id, m.recipients.map((r) => ({ index: r.i, state: 'failed' as const, error })));
    }
    this.log.warn({ job: dl.msgId, recipients: jobRecipientCount(job), reason: dl.reason }, 'job dead-lettered; recipients failed');
  }
}

/**
 * Several hosts: a job is safe to work on here when this host has its
 * messages' rows and, for a redelivered job, every change other hosts
 * published before now (a segment another host's dispatcher submitted is
 * then seen as submitted and skipped). A first delivery whose rows are here
 * goes at once.
 */
export async function replicaReady(
  replica: DispatchReplica,
  job: Pick<Job, 'messages' | 'pda'>,
  deliveries: number,
  /** Rows still missing once caught up: the accepting host's relay may not have published them yet (it runs just after its commit). Look again this many times… */
  polls = 50,
  /** …this far apart (at most 1 s in all by default), then give the job back. */
  pollMs = 20,
): Promise<boolean> {
  const present = (): boolean => job.messages.every((m) => replica.has(m.id)) && (job.pda ?? []).every((p) => replica.has(p.messageId));
  if (deliveries <= 1 && present()) return true;
  if (!(await replica.caughtUp())) return false;
  for (let i = 0; i < polls && !present(); i++) await sleep(pollMs);
  return present();
}

/**
 * A redelivered multi-part recipient whose earlier parts went through one
 * account: the rest go there too when it is still a candidate and up (a
 * phone joins parts by UDH reference; parts split across carriers may not
 * be joined).
 */
function samePartsAccount<A extends { readonly name: string }>(store: DispatchStore, messageId: string, index: number, count: number, candidates: readonly A[], router: Pick<Router, 'isAccountUp'>): A | undefined {
  for (let s = 1; s <= count; s++) {
    const name = store.getSegment(messageId, index, s)?.account;
    if (name === undefined) continue;
    const c = candidates.find((a) => a.name === name);
    return c !== undefined && router.isAccountUp(c.name) ? c : undefined;
  }
  return undefined;
}

/**
 * A message's parts, encoded once per segment profile and signature position (the parts depend
 * on the account's protocol: CMPP has no GSM 03.38); per recipient only the UDH reference byte
 * changes. Built on first use.
 */
class MessageParts {
  private smpp: Segment[] | undefined;
  private cmpp: Segment[] | undefined;
  private gb: Segment[] | undefined;
  /** Signature at the end, by profile (rare). */
  private end: Map<SegmentProfile, Segment[]> | undefined;

  constructor(private readonly m: JobMessage, private readonly ref: number) {}

  get(profile: SegmentProfile, position: SignaturePosition | undefined): Segment[] {
    const front = this.front(profile);
    if (position !== 'end') return front;
    let t = this.end?.get(profile);
    if (t !== undefined) return t;
    // An account that wants the 【signature】 at the end: same characters moved, same part count.
    const { m } = this;
    const moved = placeSignature(m.text, 'end');
    t = moved === m.text ? front : buildSegments(moved, m.encoding, this.ref, profile);
    // Parts never split a surrogate pair, so a move can shift a boundary: then keep the counted (front) form.
    if (t.length !== front.length) t = front;
    (this.end ??= new Map()).set(profile, t);
    return t;
  }

  private front(profile: SegmentProfile): Segment[] {
    const { m } = this;
    switch (profile) {
      case 'smpp':
        return (this.smpp ??= buildSegments(m.text, m.encoding, this.ref, profile));
      case 'cmpp':
        return (this.cmpp ??= buildSegments(m.text, m.encoding, this.ref, profile));
      case 'cmpp-gb18030':
        return (this.gb ??= buildSegments(m.text, m.encoding, this.ref, profile));
    }
  }
}

/** Copy a multi-part payload and set its UDH reference byte (05 00 03 [ref] count seq). */
function withReference(payload: Uint8Array, ref: number): Uint8Array {
  const copy = payload.slice();
  copy[3] = ref;
  return copy;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
