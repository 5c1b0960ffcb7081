/**
 * Business-registration (and other approval) progress: workflow events in,
 * one SMS per stage change out, in order, exactly once.
 *
 *   POST /v1/workflow-events { system, caseId, stage, seq | occurredAt, applicant, missing?, readyAt?, params? }
 *
 *   office.cases          [tenant, system, caseId] → CaseRecord (current stage, contacts, timeline)
 *   office.cases.pending  [tenant, system, caseId, order] → event waiting for the ones before it
 *   office.cases.byid     [caseId, tenant, system] → null   (case queries by SMS)
 *
 * Order: by `seq` (an integer per case) or, without one, by `occurredAt`.
 * An event at or below the last applied order is a duplicate or stale: it
 * is recorded in the timeline and not sent. With `seq`, the next number
 * (last + 1; 1 for a new case) is applied at once and releases any
 * buffered successors; an event ahead of a gap — and every event ordered by
 * time — waits up to `office.workflow.reorderMs` for the ones before it,
 * then what is buffered is applied in order (a gap that never fills is
 * skipped). The buffer is durable, so a restart loses nothing.
 *
 * A stage's text is the tenant's template `workflow.<stage>` when it has
 * one, else `office.workflow.stages[stage]`; a stage with neither is
 * recorded without an SMS. Sends use the key `wf.<system>.<caseId>.<order>`,
 * so a retry after a crash never sends a stage twice.
 *
 * Case queries: an MO "CX <caseId>" from a number that is one of the case's
 * contacts gets the current stage back by SMS; any other number gets the
 * "not found" text (no details of someone else's case).
 */
import type { Database, RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { setNewest } from '../core/bounded-map.js';
import { parseKeyword } from '../core/mo.js';
import { normalizeNumber } from '../core/phone.js';
import { compileConfigText, renderText, type CompiledTemplate } from '../core/template.js';
import type { ResolvedConfig } from '../config/load.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { MoContext, MoHandler, MoRouted } from './mo-inbox.js';
import type { Schedule } from './schedule.js';
import { sendOrThrow, type Sends } from '../send/service.js';
import type { TemplateStore } from './templates.js';

export interface WorkflowEvent {
  readonly system: string;
  readonly caseId: string;
  readonly stage: string;
  readonly stageName?: string;
  readonly seq?: number;
  /** Epoch ms. */
  readonly occurredAt?: number;
  readonly contacts: readonly string[];
  readonly applicantName?: string;
  readonly missing?: readonly string[];
  readonly readyAt?: number;
  readonly params?: Readonly<Record<string, unknown>>;
  readonly receivedAt: number;
}

export type TimelineOutcome = 'sent' | 'recorded' | 'failed' | 'duplicate' | 'stale';

export interface TimelineEntry {
  readonly order: number;
  readonly stage: string;
  readonly stageName?: string;
  readonly occurredAt?: number;
  readonly receivedAt: number;
  readonly appliedAt: number;
  readonly outcome: TimelineOutcome;
  readonly messageId?: string;
  readonly missing?: readonly string[];
  readonly readyAt?: number;
  readonly error?: string;
}

export interface CaseRecord {
  readonly tenant: string;
  readonly system: string;
  readonly caseId: string;
  readonly ordering: 'seq' | 'time';
  /** Order of the last applied event (0: none yet). */
  readonly lastOrder: number;
  readonly stage?: string;
  readonly stageName?: string;
  readonly contacts: readonly string[];
  readonly applicantName?: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly timeline: readonly TimelineEntry[];
}

export type EventStatus = 'applied' | 'buffered' | 'duplicate' | 'stale';

export interface WorkflowDeps {
  readonly env: RootDatabase;
  readonly config: ResolvedConfig;
  readonly sends: Sends;
  readonly schedule: Schedule;
  readonly templates: TemplateStore;
  /**
   * True once a message has left the gateway (no recipient still accepted or
   * queued). A case's next stage is submitted only after its previous one
   * has, so the phone receives the stages in order.
   */
  readonly left: (messageId: string) => boolean;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
}

const FLUSH_TASK = 'workflow.flush';
/** Longest wait for a case's previous stage to leave before the next is sent anyway. */
const ORDER_WAIT_MS = 10_000;
/** Cases being changed at once (a per-case lock each). */
const MAX_LOCKS = 10_000;

type CaseKey = [string, string, string];

export class Workflow implements MoHandler {
  readonly name = 'case-query';
  private readonly cases: Database<CaseRecord, CaseKey>;
  private readonly pending: Database<WorkflowEvent, [string, string, string, number]>;
  private readonly byId: Database<null, [string, string, string]>;
  private readonly now: () => number;
  private readonly stageTexts = new Map<string, CompiledTemplate>();
  private readonly queryReply: CompiledTemplate;
  private readonly queryUnknown: CompiledTemplate;
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly events: Counter<'status'>;
  private readonly keyword: string;

  constructor(private readonly deps: WorkflowDeps) {
    const { env, config } = deps;
    this.cases = env.openDB<CaseRecord, CaseKey>({ name: 'office.cases', encoding: 'msgpack' });
    this.pending = env.openDB<WorkflowEvent, [string, string, string, number]>({ name: 'office.cases.pending', encoding: 'msgpack' });
    this.byId = env.openDB<null, [string, string, string]>({ name: 'office.cases.byid', encoding: 'msgpack' });
    this.now = deps.now ?? Date.now;
    const w = config.office.workflow;
    for (const [stage, text] of Object.entries(w.stages)) this.stageTexts.set(stage, compileConfigText(text, `office.workflow.stages.${stage}`));
    this.queryReply = compileConfigText(w.queryReplyText, 'office.workflow.queryReplyText');
    this.queryUnknown = compileConfigText(w.queryUnknownText, 'office.workflow.queryUnknownText');
    this.keyword = config.office.mo.caseQueryKeyword;
    this.events = deps.metrics.workflowEvents;
    deps.schedule.onTask(FLUSH_TASK, (payload) => {
      const k = payload as CaseKey;
      return this.withLock(k, () => this.flush(k, true));
    });
  }

  get(tenant: string, system: string, caseId: string): CaseRecord | undefined {
    return this.cases.get([tenant, system, caseId]);
  }

  /** Take one event; resolves when its effect (and any SMS) is durable. */
  async accept(tenant: string, event: WorkflowEvent): Promise<{ status: EventStatus; case: CaseRecord }> {
    // The applicant's numbers come from the caller: refused at once without the `workflow` grant
    // (each send is admitted again with origin `workflow` when it is applied, maybe much later).
    this.deps.sends.authorize(tenant, { tier: this.deps.config.office.workflow.tier, channel: 'auto', origin: 'workflow' }, '');
    const key: CaseKey = [tenant, event.system, event.caseId];
    if (this.locks.size >= MAX_LOCKS && !this.locks.has(key.join('\u0000'))) throw new GatewayError('OVERLOADED', 'too many cases being updated at once');
    const r = await this.withLock(key, () => this.acceptLocked(key, event));
    this.events.inc({ status: r.status });
    return r;
  }

  private async acceptLocked(key: CaseKey, event: WorkflowEvent): Promise<{ status: EventStatus; case: CaseRecord }> {
    const ordering = event.seq !== undefined ? 'seq' : 'time';
    const order = event.seq ?? event.occurredAt;
    // The route refuses an event with neither (422); a caller of accept() must give one too.
    if (order === undefined) throw new GatewayError('VALIDATION', 'give seq or occurredAt', { details: [{ field: '/seq', message: 'give seq (preferred) or occurredAt' }] });
    let c = this.cases.get(key) ?? this.newCase(key, ordering, event);
    if (c.ordering !== ordering) {
      throw new GatewayError('VALIDATION', `case ${event.caseId} is ordered by ${c.ordering === 'seq' ? 'seq' : 'occurredAt'}`, { details: [{ field: c.ordering === 'seq' ? '/seq' : '/occurredAt', message: `this case's events carry ${c.ordering === 'seq' ? 'seq' : 'occurredAt (and no seq)'}` }] });
    }
    if (order <= c.lastOrder || this.pending.get([...key, order]) !== undefined) {
      const status: EventStatus = this.seen(c, order) || this.pending.get([...key, order]) !== undefined ? 'duplicate' : 'stale';
      c = this.withEntry(c, { order, stage: event.stage, receivedAt: event.receivedAt, appliedAt: this.now(), outcome: status, ...optional(event) });
      await this.cases.put(key, c);
      return { status, case: c };
    }
    const next = c.ordering === 'seq' && order === c.lastOrder + 1;
    if (next || this.deps.config.office.workflow.reorderMs === 0) {
      c = await this.apply(c, event, order);
      // Buffered successors that are now next in line.
      c = await this.drain(key, c, false);
      return { status: 'applied', case: c };
    }
    // Wait for the events before it (durably), at most reorderMs.
    await this.deps.env.transaction(() => {
      this.pending.putSync([...key, order], event);
      if (!this.cases.get(key)) this.cases.putSync(key, c);
      this.byId.putSync([event.caseId, key[0], key[1]], null);
    });
    const taskId = `wf.${key.join('.')}`;
    // A flush already due (possibly running now) would miss this event: schedule a fresh one.
    const due = this.deps.schedule.dueAt(taskId);
    if (due === undefined || due <= this.now()) await this.deps.schedule.addTask(taskId, FLUSH_TASK, this.now() + this.deps.config.office.workflow.reorderMs, key);
    return { status: 'buffered', case: this.cases.get(key) ?? c };
  }

  /** Apply buffered events: contiguous ones only, or (`all`, when the wait is over) everything in order. */
  private async flush(key: CaseKey, all: boolean): Promise<void> {
    const c = this.cases.get(key);
    if (!c) return;
    await this.drain(key, c, all);
  }

  private async drain(key: CaseKey, start: CaseRecord, all: boolean): Promise<CaseRecord> {
    let c = start;
    for (let guard = 0; guard < 10_000; guard++) {
      let first: { order: number; event: WorkflowEvent } | undefined;
      for (const { key: k, value } of this.pending.getRange({ start: [...key, -Infinity], end: [...key, Infinity], limit: 1 })) first = { order: k[3], event: value };
      if (!first) break;
      if (first.order <= c.lastOrder) {
        // Superseded while it waited (an event after it was applied): stale, not sent.
        c = this.withEntry(c, { order: first.order, stage: first.event.stage, receivedAt: first.event.receivedAt, appliedAt: this.now(), outcome: this.seen(c, first.order) ? 'duplicate' : 'stale', ...optional(first.event) });
        await this.deps.env.transaction(() => {
          this.pending.removeSync([...key, first.order]);
          this.cases.putSync(key, c);
        });
        continue;
      }
      if (!all && !(c.ordering === 'seq' && first.order === c.lastOrder + 1)) break;
      c = await this.apply(c, first.event, first.order, [...key, first.order]);
    }
    return c;
  }

  /** Send the stage's SMS (when it has a text) and record the stage; removes `pendingKey` in the same write. */
  private async apply(c: CaseRecord, event: WorkflowEvent, order: number, pendingKey?: [string, string, string, number]): Promise<CaseRecord> {
    const key: CaseKey = [c.tenant, c.system, c.caseId];
    const contacts = event.contacts.length > 0 ? event.contacts : c.contacts;
    let outcome: TimelineOutcome = 'recorded';
    let messageId: string | undefined;
    let error: string | undefined;
    const text = this.stageText(c.tenant, event);
    if (text !== undefined && contacts.length > 0) {
      await this.previousLeft(c);
      try {
        // The applicant's numbers came with the event (the caller's): admitted with origin `workflow`.
        const sent = sendOrThrow((await this.deps.sends.sendAs(c.tenant, [{
          command: {
            recipients: { kind: 'numbers', numbers: contacts, origin: 'workflow' },
            content: { kind: 'text', text }, tier: this.deps.config.office.workflow.tier, channel: 'auto',
            idempotencyKey: `wf.${c.system}.${c.caseId}.${order}`.slice(0, 200),
            reference: `case:${c.system}/${c.caseId}`,
          },
        }]))[0]);
        outcome = 'sent';
        messageId = sent.id;
      } catch (e) {
        outcome = 'failed';
        error = e instanceof GatewayError ? `${e.code}: ${e.message}` : String(e);
      }
    }
    const next = this.withEntry({
      ...c,
      lastOrder: order,
      stage: event.stage,
      contacts,
      updatedAt: this.now(),
      ...(event.stageName !== undefined ? { stageName: event.stageName } : {}),
      ...(event.applicantName !== undefined ? { applicantName: event.applicantName } : {}),
    }, {
      order, stage: event.stage, receivedAt: event.receivedAt, appliedAt: this.now(), outcome,
      ...optional(event),
      ...(messageId !== undefined ? { messageId } : {}),
      ...(error !== undefined ? { error } : {}),
    });
    await this.deps.env.transaction(() => {
      this.cases.putSync(key, next);
      this.byId.putSync([c.caseId, c.tenant, c.system], null);
      if (pendingKey) this.pending.removeSync(pendingKey);
    });
    return next;
  }

  /** An event of this order was applied before (a repeat, not an older one). */
  private seen(c: CaseRecord, order: number): boolean {
    return c.timeline.some((e) => e.order === order && (e.outcome === 'sent' || e.outcome === 'recorded' || e.outcome === 'failed'));
  }

  /** Wait (bounded) until the case's last stage message has been submitted, so stages arrive in order. */
  private async previousLeft(c: CaseRecord): Promise<void> {
    let last: string | undefined;
    for (let i = c.timeline.length - 1; i >= 0 && last === undefined; i--) if (c.timeline[i]?.outcome === 'sent') last = c.timeline[i]?.messageId;
    if (last === undefined) return;
    const deadline = Date.now() + ORDER_WAIT_MS;
    while (!this.deps.left(last) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }

  private stageText(tenant: string, event: WorkflowEvent): string | undefined {
    const values = {
      ...(event.params ?? {}),
      system: event.system, caseId: event.caseId, stage: event.stage, stageName: event.stageName ?? event.stage,
      missing: event.missing ?? [], ...(event.readyAt !== undefined ? { readyAt: event.readyAt } : {}),
      applicant: event.applicantName ?? '',
    };
    const own = this.deps.templates.get(tenant, `workflow.${event.stage}`);
    if (own) return this.deps.templates.render(tenant, `workflow.${event.stage}`, values);
    const t = this.stageTexts.get(event.stage);
    return t ? renderText(t, values, this.deps.config.directory.utcOffsetMinutes) : undefined;
  }

  private newCase(key: CaseKey, ordering: 'seq' | 'time', event: WorkflowEvent): CaseRecord {
    const now = this.now();
    return {
      tenant: key[0], system: key[1], caseId: key[2], ordering, lastOrder: 0, contacts: event.contacts, createdAt: now, updatedAt: now, timeline: [],
      ...(event.applicantName !== undefined ? { applicantName: event.applicantName } : {}),
    };
  }

  private withEntry(c: CaseRecord, e: TimelineEntry): CaseRecord {
    const max = this.deps.config.office.workflow.maxTimeline;
    const timeline = [...c.timeline, e];
    return { ...c, timeline: timeline.length > max ? timeline.slice(timeline.length - max) : timeline };
  }

  private async withLock<T>(key: CaseKey, run: () => Promise<T>): Promise<T> {
    const k = key.join('\u0000');
    const before = this.locks.get(k) ?? Promise.resolve();
    const mine = before.then(run, run);
    const tail = mine.catch(() => undefined);
    this.locks.set(k, tail);
    try {
      return await mine;
    } finally {
      if (this.locks.get(k) === tail) this.locks.delete(k);
    }
  }

  // ---------------------------------------------------------------- case queries (MoHandler)

  /** Per-number reply windows (bounded: the oldest number is forgotten past CX_MAX_NUMBERS). */
  private readonly cxWindows = new Map<string, { start: number; count: number }>();

  private cxAllowed(from: string): boolean {
    const now = Date.now();
    const w = this.cxWindows.get(from);
    if (w !== undefined && now - w.start < CX_WINDOW_MS) {
      if (w.count >= CX_REPLIES_PER_WINDOW) return false;
      w.count++;
      return true;
    }
    setNewest(this.cxWindows, from, { start: now, count: 1 }, CX_MAX_NUMBERS);
    this.deps.metrics.caseQueryWindows.set(this.cxWindows.size);
    return true;
  }

  async handle(mo: MoContext): Promise<MoRouted | undefined> {
    const kw = parseKeyword(mo.text, [this.keyword]);
    if (!kw) return undefined;
    // Bounded: a case id is at most CX_MAX_ARGUMENT characters; the reply echoes no more than that.
    const caseId = (kw.argument.split(' ')[0] ?? '').slice(0, CX_MAX_ARGUMENT);
    const n = normalizeNumber(mo.source, { allowInternational: true });
    const from = n.ok ? n.number : mo.source;
    // At most CX_REPLIES_PER_WINDOW answers per number per window: a phone cannot make the gateway spam (or cost) by asking.
    if (!this.cxAllowed(from)) {
      this.deps.metrics.caseQueryRefused.inc();
      return { route: this.name, state: 'handled', detail: 'case query not answered: too many from this number (rate limit)' };
    }
    let best: CaseRecord | undefined;
    if (caseId.length > 0) {
      // Only the receiving tenant's cases: a query sent to X's code never reads (or answers from) Y's.
      for (const key of this.byId.getKeys({ start: [caseId, mo.tenant, ''], end: [caseId, mo.tenant, '\uffff'], limit: 100 })) {
        const c = this.cases.get([key[1], key[2], caseId]);
        if (!c || !c.contacts.includes(from) || c.stage === undefined) continue;
        if (!best || c.updatedAt > best.updatedAt) best = c;
      }
    }
    const offset = this.deps.config.directory.utcOffsetMinutes;
    const text = best
      ? renderText(this.queryReply, { caseId, system: best.system, stage: best.stage ?? '', stageName: best.stageName ?? best.stage ?? '', updatedAt: best.updatedAt }, offset)
      : renderText(this.queryUnknown, { caseId }, offset);
    // An answer to the number that just wrote in, from the receiving code: a `reply`, to that number only.
    const sent = sendOrThrow((await this.deps.sends.sendAs(mo.tenant, [{
      command: {
        recipients: { kind: 'numbers', numbers: [from], origin: 'reply' },
        content: { kind: 'text', text }, tier: this.deps.config.office.workflow.tier, channel: 'auto',
        idempotencyKey: `cx.${mo.id}`, reference: 'case-query',
      },
    }]))[0]);
    return { route: this.name, state: 'handled', ...(best ? { ref: `${best.system}/${caseId}` } : {}), detail: best ? `answered ${best.stage ?? ''} (${sent.id})` : `no case ${caseId} for this number (${sent.id})` };
  }
}

/** Longest case id a CX query reads (and echoes). */
export const CX_MAX_ARGUMENT = 32;
/** Case-query answers one number gets per window. */
export const CX_REPLIES_PER_WINDOW = 5;
export const CX_WINDOW_MS = 10 * 60_000;
/** Numbers whose windows are remembered (bounded memory). */
const CX_MAX_NUMBERS = 10_000;

function optional(e: WorkflowEvent): Partial<TimelineEntry> {
  return {
    ...(e.stageName !== undefined ? { stageName: e.stageName } : {}),
    ...(e.occurredAt !== undefined ? { occurredAt: e.occurredAt } : {}),
    ...(e.missing !== undefined ? { missing: e.missing } : {}),
    ...(e.readyAt !== undefined ? { readyAt: e.readyAt } : {}),
  };
}

/** Normalise and check an event's contacts; problems name the field. */
export function contactNumbers(raw: readonly string[], allowInternational: boolean, problems: FieldProblem[]): string[] {
  const out: string[] = [];
  raw.forEach((r, k) => {
    const n = normalizeNumber(r, { allowInternational });
    if (!n.ok) problems.push({ field: `/applicant/mobiles/${k}`, message: n.reason });
    else if (!out.includes(n.number)) out.push(n.number);
  });
  return out;
}
