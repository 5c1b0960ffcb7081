/**
 * Meeting notices with replies.
 *
 *   POST /v1/meetings → invitees resolved (people, groups, numbers; grants
 *   checked) → meeting + invitee rows (one transaction) → notice SMS through
 *   the send service (idempotent keys `meeting.<id>.notice.<k>`) → 201.
 *   Invitees the caller named by number are sent as `caller` numbers (grant
 *   `direct`, checked again on every send); people and group members as
 *   `directory` numbers.
 *
 *   office.meetings       id → Meeting
 *   office.invitees       [meetingId, mobile] → Invitee
 *   office.meet.bynum     [tenant, mobile, createdAt, meetingId] → replyBy
 *
 * Replies (MO "1", "2", "2 reason", 参加/不参加/请假) are matched through the
 * owning tenant (the sender code the phone replied to) and the phone's
 * number. When that number is invited to several of the tenant's meetings,
 * the most recently created meeting whose reply window is open wins; when
 * none is open, the reply is recorded as late on the most recent one and
 * not counted. A later reply replaces an earlier one (people change their
 * minds); the tally always counts each invitee once.
 *
 * Reminders go to invitees without an answer at `remindAt`; a change sends
 * the change text to everyone invited; a cancellation sends the cancel text —
 * or, when the notice is still scheduled, cancels the notice so nothing is
 * sent at all.
 */
import type { Database, RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { parseMeetingReply, type MeetingAnswer } from '../core/mo.js';
import { normalizeNumber } from '../core/phone.js';
import { parseIsoDuration } from '../core/duration.js';
import { compileConfigText, renderText, type CompiledTemplate } from '../core/template.js';
import type { ResolvedConfig } from '../config/load.js';
import type { DirectoryStore } from '../directory/store.js';
import type { GroupExpander } from '../directory/expansion.js';
import type { Principal, SendShape } from '../core/send.js';
import { idempotentMessageId, newMessageId } from '../send/ids.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { MoContext, MoHandler, MoRouted } from './mo-inbox.js';
import type { Schedule } from './schedule.js';
import { sendOrThrow, type Sends } from '../send/service.js';
import { trackWrite } from '../storage/health.js';

export interface Meeting {
  readonly id: string;
  readonly tenant: string;
  readonly title: string;
  readonly time: number;
  readonly place: string;
  readonly note?: string;
  readonly tier: string;
  readonly replyBy: number;
  readonly remindAt?: number;
  /** When the notice is (or was) sent; absent: at creation. */
  readonly scheduleAt?: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly state: 'open' | 'cancelled';
  readonly invited: number;
  /** Message ids of the notice (one per chunk of recipients). */
  readonly notices: readonly string[];
  /** Message ids of reminders, changes and the cancellation. */
  readonly followUps: readonly string[];
  readonly version: number;
  /** With an Idempotency-Key: the creating request's fingerprint (a repeat with another body is 409). */
  readonly fingerprint?: string;
}

export interface Invitee {
  readonly mobile: string;
  readonly personId?: string;
  readonly name?: string;
  readonly answer?: MeetingAnswer;
  readonly reason?: string;
  readonly answeredAt?: number;
  /** A reply that came after the window: recorded, not counted. */
  readonly late?: { readonly answer: MeetingAnswer; readonly reason?: string; readonly at: number };
  readonly replies?: number;
  /** A group member outside the inviting unit's subtree: shown masked, without name or id (the unit may not read that person). */
  readonly hidden?: true;
  /** Invited only by number (`attendees.numbers`), not as a person or group member: each send needs `direct`. */
  readonly byNumber?: true;
}

export interface MeetingInput {
  readonly title: string;
  readonly time: number;
  readonly place: string;
  readonly note?: string;
  readonly people?: readonly string[];
  readonly groups?: readonly string[];
  readonly numbers?: readonly string[];
  readonly replyBy?: number;
  readonly remindAt?: number;
  readonly scheduleAt?: number;
  readonly tier?: string;
}

export interface Tally {
  readonly invited: number;
  readonly attend: number;
  readonly absent: number;
  readonly noReply: number;
  readonly late: number;
}

/** What meetings need of the directory's door rules. */
export interface MeetingRules {
  admit(principal: Principal, shape: SendShape, prefix: string): unknown;
}

export interface MeetingsDeps {
  readonly env: RootDatabase;
  readonly config: ResolvedConfig;
  readonly directory: DirectoryStore;
  readonly expander: GroupExpander;
  readonly rules: MeetingRules;
  readonly sends: Sends;
  readonly schedule: Schedule;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
}

const REMIND_TASK = 'meeting.remind';
/** Rows written per transaction when a big meeting is stored. */
const WRITE_CHUNK = 20_000;

export class Meetings implements MoHandler {
  readonly name = 'meeting-reply';
  private readonly meetings: Database<Meeting, string>;
  private readonly invitees: Database<Invitee, [string, string]>;
  private readonly byNumber: Database<number, [string, string, number, string]>;
  private readonly byTenant: Database<null, [string, number, string]>;
  private readonly now: () => number;
  private readonly texts: { notice: CompiledTemplate; reminder: CompiledTemplate; change: CompiledTemplate; cancel: CompiledTemplate };
  private readonly replies: Counter<'outcome'>;

  constructor(private readonly deps: MeetingsDeps) {
    const { env, config } = deps;
    this.meetings = env.openDB<Meeting, string>({ name: 'office.meetings', encoding: 'msgpack' });
    this.invitees = env.openDB<Invitee, [string, string]>({ name: 'office.invitees', encoding: 'msgpack' });
    this.byNumber = env.openDB<number, [string, string, number, string]>({ name: 'office.meet.bynum', encoding: 'msgpack' });
    this.byTenant = env.openDB<null, [string, number, string]>({ name: 'office.meet.bytenant', encoding: 'msgpack' });
    this.now = deps.now ?? Date.now;
    const m = config.office.meetings;
    this.texts = {
      notice: compileConfigText(m.noticeText, 'office.meetings.noticeText'),
      reminder: compileConfigText(m.reminderText, 'office.meetings.reminderText'),
      change: compileConfigText(m.changeText, 'office.meetings.changeText'),
      cancel: compileConfigText(m.cancelText, 'office.meetings.cancelText'),
    };
    this.replies = deps.metrics.meetingReplies;
    deps.schedule.onTask(REMIND_TASK, (payload) => this.remind((payload as { id: string }).id));
  }

  get(id: string): Meeting | undefined {
    return this.meetings.get(id);
  }

  /** Create and send the notice. A repeat with the same idempotency key returns the first meeting (and finishes its notice). */
  async create(principal: Principal, input: MeetingInput, idempotencyKey?: string, fingerprint?: string): Promise<{ meeting: Meeting; replayed: boolean }> {
    const now = this.now();
    const tenant = principal.tenant;
    const id = idempotencyKey !== undefined ? `mtg_${idempotentMessageId(tenant, `meeting:${idempotencyKey}`)}` : `mtg_${newMessageId(now)}`;
    const existing = this.meetings.get(id);
    if (existing) {
      if (existing.tenant !== tenant) throw new GatewayError('IDEMPOTENCY_CONFLICT', 'Idempotency-Key was already used');
      // The same key with another body is a conflict, as for messages (meetings created before the
      // fingerprint was kept have none: they replay).
      if (existing.fingerprint !== undefined && fingerprint !== undefined && existing.fingerprint !== fingerprint) {
        throw new GatewayError('IDEMPOTENCY_CONFLICT', 'Idempotency-Key was already used with a different request body');
      }
      // A meeting's key lasts as long as the meeting. Its notices went out (their ids are on it):
      // a repeat, however late, sends nothing again — after idempotencyTtl the notices' own keys
      // would make new messages. Only a meeting whose notices were never recorded finishes them.
      if (existing.notices.length > 0) return { meeting: existing, replayed: true };
      return { meeting: await this.sendNotices(existing), replayed: true };
    }
    const cfg = this.deps.config.office.meetings;
    const tier = input.tier ?? cfg.tier;
    const problems: FieldProblem[] = [];
    if (!this.deps.config.tierByName.has(tier)) problems.push({ field: '/tier', message: `unknown tier ${tier}` });
    if (input.time <= now) problems.push({ field: '/time', message: 'the meeting must be in the future' });
    const replyBy = input.replyBy ?? Math.min(input.time, now + parseWindow(cfg.defaultReplyWindow));
    if (replyBy <= now) problems.push({ field: '/replyBy', message: 'must be in the future' });
    if (input.remindAt !== undefined && (input.remindAt <= (input.scheduleAt ?? now) || input.remindAt >= replyBy)) problems.push({ field: '/remindAt', message: 'must fall after the notice is sent and before replyBy' });
    if (input.scheduleAt !== undefined && input.scheduleAt >= replyBy) problems.push({ field: '/scheduleAt', message: 'the notice must go out before replyBy' });
    if ((input.people?.length ?? 0) + (input.groups?.length ?? 0) + (input.numbers?.length ?? 0) === 0) problems.push({ field: '/attendees', message: 'invite at least one person, group or number' });
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems });

    const invited = await this.resolveAttendees(principal, tier, input);
    const meeting: Meeting = {
      id, tenant, title: input.title, time: input.time, place: input.place, tier, replyBy,
      ...(input.note !== undefined ? { note: input.note } : {}),
      ...(input.remindAt !== undefined ? { remindAt: input.remindAt } : {}),
      ...(input.scheduleAt !== undefined ? { scheduleAt: input.scheduleAt } : {}),
      createdAt: now, updatedAt: now, state: 'open', invited: invited.length, notices: [], followUps: [], version: 1,
      ...(idempotencyKey !== undefined && fingerprint !== undefined ? { fingerprint } : {}),
    };
    // Invitees and the number index first, the meeting row last: a meeting that exists is complete.
    for (let from = 0; from < invited.length; from += WRITE_CHUNK) {
      const chunk = invited.slice(from, from + WRITE_CHUNK);
      await this.deps.env.transaction(() => {
        for (const inv of chunk) {
          this.invitees.putSync([id, inv.mobile], inv);
          this.byNumber.putSync([tenant, inv.mobile, now, id], replyBy);
        }
      });
    }
    await this.deps.env.transaction(() => {
      this.meetings.putSync(id, meeting);
      this.byTenant.putSync([tenant, now, id], null);
    });
    let sent: Meeting;
    try {
      sent = await this.sendNotices(meeting);
    } catch (e) {
      // Refused (quota, content, grants): nothing was sent, so the meeting is not kept.
      await this.forget(meeting, invited.map((i) => i.mobile));
      throw e;
    }
    if (input.remindAt !== undefined) await this.deps.schedule.addTask(`${id}.remind`, REMIND_TASK, input.remindAt, { id });
    return { meeting: sent, replayed: false };
  }

  private async forget(m: Meeting, mobiles: readonly string[]): Promise<void> {
    for (let from = 0; from < mobiles.length; from += WRITE_CHUNK) {
      const chunk = mobiles.slice(from, from + WRITE_CHUNK);
      await this.deps.env.transaction(() => {
        for (const mobile of chunk) {
          this.invitees.removeSync([m.id, mobile]);
          this.byNumber.removeSync([m.tenant, mobile, m.createdAt, m.id]);
        }
      });
    }
    await this.deps.env.transaction(() => {
      this.meetings.removeSync(m.id);
      this.byTenant.removeSync([m.tenant, m.createdAt, m.id]);
    });
  }

  /** Per-person answers, a page at a time (cursor: the last mobile). */
  people(id: string, q: { cursor?: string; limit: number; answer?: MeetingAnswer | 'none' }): { items: Invitee[]; next?: string } {
    const items: Invitee[] = [];
    let next: string | undefined;
    for (const { key, value } of this.invitees.getRange({ start: [id, q.cursor === undefined ? '' : `${q.cursor}\u0000`], end: [id, '\uffff'] })) {
      if (q.answer !== undefined && (q.answer === 'none' ? value.answer !== undefined : value.answer !== q.answer)) continue;
      if (items.length === q.limit) {
        next = items[items.length - 1]?.mobile;
        break;
      }
      items.push({ ...value, mobile: key[1] });
    }
    return next !== undefined ? { items, next } : { items };
  }

  tally(id: string): Tally {
    let invited = 0;
    let attend = 0;
    let absent = 0;
    let late = 0;
    for (const { value: v } of this.invitees.getRange({ start: [id, ''], end: [id, '\uffff'] })) {
      invited++;
      if (v.answer === 'attend') attend++;
      else if (v.answer === 'absent') absent++;
      if (v.late) late++;
    }
    return { invited, attend, absent, noReply: invited - attend - absent, late };
  }

  /** The tenant's meetings, newest first (cursor: the last id of the previous page). */
  list(tenant: string, q: { cursor?: string; limit: number }): { items: Meeting[]; next?: string } {
    const items: Meeting[] = [];
    let next: string | undefined;
    const after = q.cursor !== undefined ? this.meetings.get(q.cursor) : undefined;
    const start: [string, number, string] = after && after.tenant === tenant ? [tenant, after.createdAt, after.id] : [tenant, Number.MAX_SAFE_INTEGER, ''];
    for (const key of this.byTenant.getKeys({ start, end: [tenant, 0, ''], reverse: true, limit: q.limit + 2 })) {
      if (after && key[2] === after.id) continue;
      if (items.length === q.limit) {
        next = items[items.length - 1]?.id;
        break;
      }
      const m = this.meetings.get(key[2]);
      if (m) items.push(m);
    }
    return next !== undefined ? { items, next } : { items };
  }

  /** Change time, place, title or note: everyone invited gets the change text. */
  async change(tenant: string, id: string, patch: { title?: string; time?: number; place?: string; note?: string }): Promise<Meeting> {
    const m = this.owned(tenant, id);
    if (m.state === 'cancelled') throw new GatewayError('NOT_CANCELLABLE', `meeting ${id} was cancelled`);
    if (patch.time !== undefined && patch.time <= this.now()) throw new GatewayError('VALIDATION', 'the meeting must be in the future', { details: [{ field: '/time', message: 'must be in the future' }] });
    const version = m.version + 1;
    const next: Meeting = {
      ...m,
      ...(patch.title !== undefined ? { title: patch.title } : {}),
      ...(patch.time !== undefined ? { time: patch.time } : {}),
      ...(patch.place !== undefined ? { place: patch.place } : {}),
      ...(patch.note !== undefined ? { note: patch.note } : {}),
      version,
      updatedAt: this.now(),
    };
    await this.meetings.put(id, next);
    const sent = await this.sendToInvitees(next, this.texts.change, `change.${version}`, () => true);
    const withIds: Meeting = { ...next, followUps: [...next.followUps, ...sent].slice(-100) };
    await this.meetings.put(id, withIds);
    return withIds;
  }

  /** Cancel: the cancel text to everyone — or, if the notice has not gone out yet, nothing at all. */
  async cancel(tenant: string, id: string, note?: string): Promise<Meeting> {
    const m = this.owned(tenant, id);
    if (m.state === 'cancelled') throw new GatewayError('NOT_CANCELLABLE', `meeting ${id} is already cancelled`);
    const next: Meeting = { ...m, state: 'cancelled', updatedAt: this.now(), ...(note !== undefined ? { note } : {}), version: m.version + 1 };
    await this.meetings.put(id, next);
    await this.deps.schedule.removeTask(`${id}.remind`);
    let unsent = 0;
    for (const noticeId of m.notices) {
      if (this.deps.schedule.dueAt(noticeId) === undefined) continue;
      try {
        await this.deps.schedule.cancel(noticeId, tenant, `meeting ${id} cancelled before its notice was sent`);
        unsent++;
      } catch (e) {
        if (!(e instanceof GatewayError && e.code === 'NOT_CANCELLABLE')) throw e;
      }
    }
    if (unsent === m.notices.length && m.notices.length > 0) return next;
    const sent = await this.sendToInvitees(next, this.texts.cancel, 'cancel', () => true);
    const withIds: Meeting = { ...next, followUps: [...next.followUps, ...sent].slice(-100) };
    await this.meetings.put(id, withIds);
    return withIds;
  }

  // ---------------------------------------------------------------- replies (MoHandler)

  // eslint-disable-next-line @typescript-eslint/require-await -- implements the async MoHandler; async keeps a throw a rejection, as its callers expect
  async handle(mo: MoContext): Promise<MoRouted | undefined> {
    const reply = parseMeetingReply(mo.text);
    if (!reply) return undefined;
    const mobile = normalized(mo.source);
    if (mobile === undefined) return undefined;
    const at = mo.receivedAt;
    let open: { id: string; createdAt: number } | undefined;
    let latest: { id: string; createdAt: number } | undefined;
    // Newest first; bounded (a number is rarely invited to more than a few open meetings).
    for (const { key, value: replyBy } of this.byNumber.getRange({ start: [mo.tenant, mobile, Number.MAX_SAFE_INTEGER, ''], end: [mo.tenant, mobile, 0, ''], reverse: true, limit: 200 })) {
      const m = this.meetings.get(key[3]);
      if (!m || m.state === 'cancelled') continue;
      if (m.scheduleAt !== undefined && m.scheduleAt > at) continue; // notice not sent yet
      latest ??= { id: m.id, createdAt: key[2] };
      if (at <= replyBy) {
        open = { id: m.id, createdAt: key[2] };
        break;
      }
    }
    const target = open ?? latest;
    if (!target) return undefined;
    const key: [string, string] = [target.id, mobile];
    const inv = this.invitees.get(key);
    if (!inv) return undefined;
    // Not awaited: the MO record written after this commits with or after it, and the SMSC's
    // deliver_sm_resp waits for that (one commit per reply instead of two).
    if (open) {
      trackWrite(this.deps.env, this.invitees.put(key, {
        ...withoutAnswer(inv), answer: reply.answer, answeredAt: at, replies: (inv.replies ?? 0) + 1,
        ...(reply.reason !== undefined ? { reason: reply.reason } : {}),
      }), 'meetings');
      this.replies.inc({ outcome: 'counted' });
      return { route: this.name, state: 'handled', ref: target.id, detail: reply.answer };
    }
    trackWrite(this.deps.env, this.invitees.put(key, { ...inv, late: { answer: reply.answer, at, ...(reply.reason !== undefined ? { reason: reply.reason } : {}) }, replies: (inv.replies ?? 0) + 1 }), 'meetings');
    this.replies.inc({ outcome: 'late' });
    return { route: this.name, state: 'late', ref: target.id, detail: `${reply.answer}, after the reply window closed` };
  }

  // ---------------------------------------------------------------- internals

  private owned(tenant: string, id: string): Meeting {
    const m = this.meetings.get(id);
    if (!m || m.tenant !== tenant) throw new GatewayError('NOT_FOUND', `no meeting ${id}`);
    return m;
  }

  private async resolveAttendees(principal: Principal, tier: string, input: MeetingInput): Promise<Invitee[]> {
    const max = this.deps.config.office.meetings.maxAttendees;
    const byMobile = new Map<string, Invitee>();
    const add = (inv: Invitee): void => {
      const had = byMobile.get(inv.mobile);
      if (had !== undefined) {
        // Also a person or group member: the directory vouches for the number.
        if (had.byNumber && !inv.byNumber) {
          const { byNumber: _caller, ...rest } = had;
          byMobile.set(inv.mobile, { ...rest, ...inv });
        }
        return;
      }
      if (byMobile.size >= max) throw new GatewayError('TOO_MANY_RECIPIENTS', `a meeting may invite at most ${max} people`, { details: [{ field: '/attendees', message: `more than ${max} after expanding groups (office.meetings.maxAttendees)` }] });
      byMobile.set(inv.mobile, inv);
    };
    // Names and ids of invitees are shown only for people the unit may read: those of its own subtree.
    const readable = (unit: string): boolean => principal.unit !== undefined && this.deps.directory.isWithin(unit, principal.unit);
    const base: Omit<SendShape, 'group' | 'origin'> = { tier, channel: 'sms' };
    (input.groups ?? []).forEach((group, k) => {
      this.deps.rules.admit(principal, { ...base, group }, `/attendees/groups/${k}`);
    });
    if ((input.numbers?.length ?? 0) > 0) this.deps.rules.admit(principal, { ...base, origin: 'caller' }, '/attendees/numbers');
    else this.deps.rules.admit(principal, { ...base, origin: 'directory' }, '');
    const problems: FieldProblem[] = [];
    (input.people ?? []).forEach((pid, k) => {
      const p = this.deps.directory.getPerson(pid);
      // Unknown and another subtree's person answer alike.
      if (!p || (principal.unit !== undefined && !this.deps.directory.isWithin(p.unit, principal.unit))) problems.push({ field: `/attendees/people/${k}`, message: `no person ${pid}` });
      else add({ mobile: p.mobile, personId: p.id, name: p.name });
    });
    (input.numbers ?? []).forEach((raw, k) => {
      const n = normalizeNumber(raw, { allowInternational: this.deps.config.numbers.allowInternational });
      if (!n.ok) problems.push({ field: `/attendees/numbers/${k}`, message: n.reason });
      else {
        // The caller gave the number: it learns nothing more about it than it may read (no directory oracle).
        const p = this.deps.directory.personByMobile(n.number);
        add(p && readable(p.unit) ? { mobile: n.number, personId: p.id, name: p.name, byNumber: true } : { mobile: n.number, byNumber: true });
      }
    });
    if (problems.length > 0) throw new GatewayError('VALIDATION', problems[0]?.message, { details: problems.slice(0, 20) });
    for (const [k, group] of (input.groups ?? []).entries()) {
      const visited: { id: string; packed: string }[] = [];
      try {
        await this.deps.expander.expand(group, (personId, packed) => {
          visited.push({ id: personId, packed });
          if (visited.length > max) return false;
          return true;
        });
      } catch (e) {
        if (e instanceof GatewayError && e.code === 'NOT_FOUND') throw new GatewayError('NOT_FOUND', `no group ${group}`, { details: [{ field: `/attendees/groups/${k}`, message: `no group ${group}` }] });
        throw e;
      }
      for (const v of visited) {
        const p = this.deps.directory.getPerson(v.id);
        add(p && readable(p.unit) ? { mobile: v.packed.slice(1), personId: v.id, name: p.name } : { mobile: v.packed.slice(1), hidden: true });
      }
    }
    return [...byMobile.values()];
  }

  /** Send (or finish sending) the notice; idempotent per chunk. */
  private async sendNotices(m: Meeting): Promise<Meeting> {
    if (m.state === 'cancelled') return m;
    const ids = await this.sendToInvitees(m, this.texts.notice, 'notice', () => true, m.scheduleAt);
    if (ids.length === m.notices.length && ids.every((x, k) => m.notices[k] === x)) return m;
    const next: Meeting = { ...m, notices: ids };
    await this.meetings.put(m.id, next);
    return next;
  }

  private async remind(id: string): Promise<void> {
    const m = this.meetings.get(id);
    if (!m || m.state === 'cancelled' || this.now() > m.replyBy) return;
    const sent = await this.sendToInvitees(m, this.texts.reminder, 'remind', (inv) => inv.answer === undefined);
    if (sent.length > 0) await this.meetings.put(id, { ...m, followUps: [...m.followUps, ...sent].slice(-100) });
  }

  /** One text to the invitees that `want`, in chunks of ≤ maxRecipientsPerRequest; returns the message ids. */
  private async sendToInvitees(m: Meeting, template: CompiledTemplate, purpose: string, want: (inv: Invitee) => boolean, scheduleAt?: number): Promise<string[]> {
    const text = renderText(template, { title: m.title, time: m.time, place: m.place, note: m.note ?? '', code: m.id.slice(-6) }, this.deps.config.directory.utcOffsetMinutes);
    const per = this.deps.config.server.maxRecipientsPerRequest;
    // Chunks of one origin each: numbers the caller named need `direct` on every send.
    const chunks: { to: string[]; origin: 'directory' | 'caller' }[] = [];
    const open: Record<'directory' | 'caller', { to: string[]; origin: 'directory' | 'caller' } | undefined> = { directory: undefined, caller: undefined };
    for (const { key, value } of this.invitees.getRange({ start: [m.id, ''], end: [m.id, '\uffff'] })) {
      if (!want(value)) continue;
      const origin = value.byNumber ? 'caller' : 'directory';
      let last = open[origin];
      if (last === undefined || last.to.length >= per) chunks.push((last = open[origin] = { to: [], origin }));
      last.to.push(key[1]);
    }
    if (chunks.length === 0) return [];
    const results = await this.deps.sends.sendAs(m.tenant, chunks.map((c, k) => ({
      prefix: `/office/${k}`,
      command: {
        recipients: { kind: 'numbers', numbers: c.to, origin: c.origin },
        content: { kind: 'text', text },
        tier: m.tier, channel: 'auto', reference: `meeting:${m.id}`,
        idempotencyKey: `meeting.${m.id}.${purpose}.${k}`,
        ...(scheduleAt !== undefined && scheduleAt > this.now() ? { scheduleAt } : {}),
      },
    })));
    return results.map((r) => sendOrThrow(r).id);
  }
}

function withoutAnswer(inv: Invitee): Invitee {
  const { answer: _a, reason: _r, answeredAt: _t, ...rest } = inv;
  return rest;
}

function normalized(source: string): string | undefined {
  const n = normalizeNumber(source, { allowInternational: true });
  return n.ok ? n.number : undefined;
}

function parseWindow(iso: string): number {
  return parseIsoDuration(iso) ?? 86_400_000;
}
