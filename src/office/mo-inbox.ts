/**
 * Two-way SMS: every mobile-originated message (deliver_sm that is not a
 * receipt) is stored, re-assembled when it came in parts, and routed.
 *
 *   deliver_sm ─▶ part? ─▶ office.mo.parts until all parts are in (timeout → kept as a fragment)
 *              ─▶ office.mo (record, durable before deliver_sm_resp)
 *              ─▶ owner: the tenant whose sender code is the longest prefix of the destination
 *              ─▶ handlers, in order: opt-out (TD) · case query (CX <id>) · meeting reply (1 / 2 reason)
 *              ─▶ otherwise forwarded: the owner's callback URL (durable outbox, bounded retries)
 *                 and/or its live WebSocket subscribers
 *              ─▶ otherwise `unmatched`: kept and listed (GET /v1/mo?state=unmatched)
 *
 *   office.mo        seq → MoRecord
 *   office.mo.idx    [tenant | '', state, seq] → null     (lists by state)
 *   office.mo.parts  [source, destination, ref, total, seq] → { text, at }
 *   office.mo.subs   tenant → { callbackUrl }
 *   office.mo.fwd    [nextAt, seq] → attempts             (forwards waiting)
 *
 * The SMSC gets its deliver_sm_resp only after the record (and the
 * handler's effect) is durable; a redelivered part is recognised by its key.
 */
import type { Database, RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import { assembleParts, ownerOfDestination } from '../core/mo.js';
import type { MobileOriginated } from '../core/ports.js';
import { maskNumber } from '../core/phone.js';
import type { WebhookPoster } from '../receipts/status-callbacks.js';
import { checkCallbackUrl } from '../outbound/webhook.js';
import { GatewayError } from '../core/errors.js';
import type { Metrics } from '../telemetry/metrics.js';
import { trackWrite } from '../storage/health.js';
import { entryCount } from '../storage/entry-count.js';

export type MoState = 'handled' | 'late' | 'forward-pending' | 'forwarded' | 'forward-failed' | 'unmatched';
export const MO_STATES: readonly MoState[] = ['handled', 'late', 'forward-pending', 'forwarded', 'forward-failed', 'unmatched'];

export interface MoRecord {
  readonly id: string;
  readonly account: string;
  readonly source: string;
  readonly destination: string;
  readonly text: string;
  readonly receivedAt: number;
  /** Owning tenant (by destination); absent when no sender code matches. */
  readonly tenant?: string;
  readonly state: MoState;
  /** Which handler took it: opt-out, case-query, meeting-reply, callback, websocket. */
  readonly route?: string;
  /** What it refers to (meeting id, case key). */
  readonly ref?: string;
  readonly detail?: string;
  /** Number of parts it was re-assembled from (long messages). */
  readonly parts?: number;
  readonly forwardAttempts?: number;
}

/** What an MO handler gets. */
export interface MoContext {
  readonly id: string;
  readonly tenant: string;
  readonly source: string;
  readonly destination: string;
  /** Digits the phone sent after the tenant's sender code. */
  readonly suffix: string;
  readonly text: string;
  readonly receivedAt: number;
}

export interface MoRouted {
  readonly route: string;
  readonly state: 'handled' | 'late';
  readonly ref?: string;
  readonly detail?: string;
}

/** A handler returns undefined when the message is not for it. */
export interface MoHandler {
  readonly name: string;
  handle(mo: MoContext): Promise<MoRouted | undefined>;
}

export interface LiveSubscribers {
  /** Push to the tenant's live subscribers; how many got it. */
  push(tenant: string, record: MoRecord): number;
}

export interface MoInboxDeps {
  readonly env: RootDatabase;
  /** sender code → tenant (bootstrap keys' senders and every unit's effective sender). */
  readonly senders: () => ReadonlyMap<string, string>;
  readonly handlers: readonly MoHandler[];
  readonly live?: LiveSubscribers;
  readonly partTimeoutMs: number;
  readonly maxOpenParts: number;
  readonly callbackAttempts: number;
  readonly callbackTimeoutMs: number;
  readonly maxPendingForwards: number;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Outbound POSTs (target policy, signing; src/outbound/webhook.ts). */
  readonly webhooks: WebhookPoster;
}

/** MO records are kept this long, then swept. */
export const MO_RETENTION_MS = 90 * 86_400_000;
/** Forwards attempted at once. */
const FORWARD_CONCURRENCY = 16;

export class MoInbox {
  private readonly records: Database<MoRecord, number>;
  private readonly index: Database<null, [string, string, number]>;
  private readonly parts: Database<{ text: string; at: number }, [string, string, number, number, number]>;
  private readonly subs: Database<{ callbackUrl: string; updatedAt: number }, string>;
  private readonly forwards: Database<number, [number, number]>;
  private readonly now: () => number;
  private readonly log: Logger;
  private lastSeq = 0;
  private openParts: number;
  private pendingForwards: number;
  private forwarding = 0;
  private sweeping = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly received: Counter<'route'>;
  private readonly openPartsGauge: Gauge;
  private readonly forwardGauge: Gauge;

  constructor(private readonly deps: MoInboxDeps) {
    const { env } = deps;
    this.records = env.openDB<MoRecord, number>({ name: 'office.mo', encoding: 'msgpack' });
    this.index = env.openDB<null, [string, string, number]>({ name: 'office.mo.idx', encoding: 'msgpack' });
    this.parts = env.openDB<{ text: string; at: number }, [string, string, number, number, number]>({ name: 'office.mo.parts', encoding: 'msgpack' });
    this.subs = env.openDB<{ callbackUrl: string; updatedAt: number }, string>({ name: 'office.mo.subs', encoding: 'msgpack' });
    this.forwards = env.openDB<number, [number, number]>({ name: 'office.mo.fwd', encoding: 'msgpack' });
    this.now = deps.now ?? Date.now;
    this.log = deps.logger;
    for (const key of this.records.getKeys({ reverse: true, limit: 1 })) this.lastSeq = key;
    this.openParts = entryCount(this.parts);
    this.pendingForwards = entryCount(this.forwards);
    this.received = deps.metrics.moMessages;
    this.openPartsGauge = deps.metrics.moOpenParts;
    this.forwardGauge = deps.metrics.moPendingForwards;
    this.openPartsGauge.set(this.openParts);
    this.forwardGauge.set(this.pendingForwards);
  }

  start(): void {
    if (this.timer) return;
    let ticks = 0;
    this.timer = setInterval(() => {
      void this.forwardDue().catch((e: unknown) => this.log.error({ err: e }, 'MO forwarding failed'));
      // Every ~2 s: parts whose set never completed (a scan of at most 10,000 rows).
      if (ticks % 10 === 0) void this.sweepParts().catch((e: unknown) => this.log.error({ err: e }, 'MO parts sweep failed'));
      // Once a minute: drop records past retention (bounded per run).
      if (++ticks % 300 === 0) void this.sweepOld().catch((e: unknown) => this.log.error({ err: e }, 'MO retention sweep failed'));
    }, 200);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (let i = 0; i < 500 && this.forwarding > 0; i++) await new Promise((r) => setTimeout(r, 10));
  }

  /** The BindPool's MO handler: resolves once the MO is durable and routed (then deliver_sm_resp OK). */
  async receive(mo: MobileOriginated): Promise<void> {
    if (mo.part === undefined) {
      await this.accept(mo, mo.text, undefined);
      return;
    }
    const { ref, total, seq } = mo.part;
    if (this.openParts >= this.deps.maxOpenParts) {
      // No room to wait for the rest: keep the part on its own, visibly.
      await this.accept(mo, mo.text, undefined, `part ${seq} of ${total} kept alone: ${this.openParts} parts already waiting (office.mo.maxOpenParts)`);
      return;
    }
    const base: [string, string, number, number] = [mo.source, mo.destination, ref, total];
    const had = this.parts.get([...base, seq]) !== undefined;
    await this.parts.put([...base, seq], { text: mo.text, at: mo.receivedAt });
    if (!had) this.setOpenParts(this.openParts + 1);
    this.received.inc({ route: 'part' });
    // Serialised by LMDB: exactly one caller sees the set complete and takes it.
    const whole = await this.deps.env.transaction(() => {
      const got: { seq: number; text: string }[] = [];
      for (const { key, value } of this.parts.getRange({ start: [...base, 0], end: [...base, 256] })) got.push({ seq: key[4], text: value.text });
      const text = assembleParts(total, got);
      if (text === undefined) return undefined;
      for (const g of got) this.parts.removeSync([...base, g.seq]);
      return { text, removed: got.length };
    });
    if (whole === undefined) return;
    this.setOpenParts(this.openParts - whole.removed);
    await this.accept(mo, whole.text, total);
  }

  get(id: string): MoRecord | undefined {
    const seq = Number(id);
    return Number.isSafeInteger(seq) ? this.records.get(seq) : undefined;
  }

  /** A tenant's MO messages in a state, newest first. `tenant` '' lists those with no owner. */
  list(tenant: string, state: MoState, q: { cursor?: number; limit: number }): { items: MoRecord[]; next?: number } {
    const items: MoRecord[] = [];
    let next: number | undefined;
    const end: [string, string, number] = [tenant, state, q.cursor ?? Number.MAX_SAFE_INTEGER];
    for (const key of this.index.getKeys({ start: end, end: [tenant, state, 0], reverse: true, limit: q.limit + 1 })) {
      if (key[2] === q.cursor) continue;
      if (items.length === q.limit) {
        next = items[items.length - 1] === undefined ? undefined : Number(items[items.length - 1]?.id);
        break;
      }
      const r = this.records.get(key[2]);
      if (r) items.push(r);
    }
    return next !== undefined ? { items, next } : { items };
  }

  subscription(tenant: string): { callbackUrl: string; updatedAt: number } | undefined {
    return this.subs.get(tenant);
  }

  /**
   * Refuses (VALIDATION, 422) a URL with user information (user:password@) or no host,
   * and (CALLBACK_SECRET_REQUIRED, 422) a tenant without a signing secret: nothing leaves unsigned.
   */
  async subscribe(tenant: string, callbackUrl: string): Promise<void> {
    const why = checkCallbackUrl(callbackUrl);
    if (why !== undefined) throw new GatewayError('VALIDATION', `callbackUrl ${why}`, { details: [{ field: '/callbackUrl', message: `callbackUrl ${why}` }] });
    if (this.deps.webhooks.canSign && !this.deps.webhooks.canSign(tenant)) {
      throw new GatewayError('CALLBACK_SECRET_REQUIRED', `tenant ${tenant} has no callback signing secret: set one before subscribing`, { details: [{ field: '/callbackUrl', message: 'the tenant has no signing secret' }] });
    }
    await this.subs.put(tenant, { callbackUrl, updatedAt: this.now() });
  }

  async unsubscribe(tenant: string): Promise<boolean> {
    return this.subs.remove(tenant);
  }

  // ---------------------------------------------------------------- routing

  private async accept(mo: MobileOriginated, text: string, parts: number | undefined, note?: string): Promise<void> {
    const owner = ownerOfDestination(mo.destination, this.deps.senders());
    const base = {
      id: String(this.nextSeq()), account: mo.account, source: mo.source, destination: mo.destination, text, receivedAt: mo.receivedAt,
      ...(owner ? { tenant: owner.tenant } : {}),
      ...(parts !== undefined ? { parts } : {}),
    };
    let record: MoRecord;
    if (!owner) {
      record = { ...base, state: 'unmatched', detail: note ?? `no tenant's sender code matches ${mo.destination}` };
    } else if (note !== undefined) {
      record = { ...base, state: 'unmatched', detail: note };
    } else {
      const ctx: MoContext = { id: base.id, tenant: owner.tenant, source: mo.source, destination: mo.destination, suffix: owner.suffix, text, receivedAt: mo.receivedAt };
      let routed: MoRouted | undefined;
      try {
        for (const h of this.deps.handlers) {
          routed = await h.handle(ctx);
          if (routed) break;
        }
        record = routed
          ? { ...base, state: routed.state, route: routed.route, ...(routed.ref !== undefined ? { ref: routed.ref } : {}), ...(routed.detail !== undefined ? { detail: routed.detail } : {}) }
          : this.forward(base, owner.tenant);
      } catch (e) {
        // A handler failed (e.g. its answer was refused): the MO is still kept, visibly.
        record = { ...base, state: 'unmatched', detail: `handler failed: ${e instanceof Error ? e.message : String(e)}` };
      }
    }
    // One write, after routing: it commits with (or after) the handler's own writes, and the
    // deliver_sm_resp waits for it. A crash before it means no resp: the SMSC delivers again.
    await this.insert(record);
    this.received.inc({ route: record.route ?? 'unmatched' });
    this.deps.metrics.dispatchSegments.inc({ outcome: 'mo-received' });
  }

  /**
   * Store a new record under its id; when another process sharing this LMDB
   * environment took that id meanwhile, under the next free one (bounded).
   */
  private async insert(record: MoRecord): Promise<void> {
    let r = record;
    for (let attempt = 0; attempt < 100; attempt++) {
      const seq = Number(r.id);
      const row = r;
      const done = await this.records.ifNoExists(seq, () => {
        const env = this.deps.env;
        trackWrite(env, this.index.put([row.tenant ?? '', row.state, seq], null), 'mo inbox');
        trackWrite(env, this.records.put(seq, row), 'mo inbox');
        if (row.state === 'forward-pending') trackWrite(env, this.forwards.put([this.now(), seq], 0), 'mo inbox');
      });
      if (done) return;
      for (const key of this.records.getKeys({ reverse: true, limit: 1 })) if (key > this.lastSeq) this.lastSeq = key;
      r = { ...r, id: String(this.nextSeq()) };
    }
    throw new Error('could not find a free MO id in 100 attempts');
  }

  /** Live push and/or the callback outbox; unmatched when the tenant has neither. */
  private forward(base: Omit<MoRecord, 'state'>, tenant: string): MoRecord {
    const live = this.deps.live?.push(tenant, { ...base, state: 'forwarded', route: 'websocket' }) ?? 0;
    const sub = this.subs.get(tenant);
    if (sub) {
      if (this.pendingForwards >= this.deps.maxPendingForwards) {
        return { ...base, state: 'forward-failed', route: 'callback', detail: `forward backlog full (${this.pendingForwards}, office.mo.maxPendingForwards)${live > 0 ? `; pushed to ${live} live subscriber(s)` : ''}` };
      }
      // The outbox entry is written with the record (insert), under its final id.
      this.setPendingForwards(this.pendingForwards + 1);
      return { ...base, state: 'forward-pending', route: 'callback', forwardAttempts: 0 };
    }
    if (live > 0) return { ...base, state: 'forwarded', route: 'websocket', detail: `pushed to ${live} live subscriber(s)` };
    return { ...base, state: 'unmatched', detail: 'no handler matched and the tenant has no callback URL or live subscriber' };
  }

  private write(previous: MoState | undefined, record: MoRecord): Promise<boolean> {
    const seq = Number(record.id);
    const tenant = record.tenant ?? '';
    if (previous !== undefined && previous !== record.state) trackWrite(this.deps.env, this.index.remove([tenant, previous, seq]), 'mo inbox');
    trackWrite(this.deps.env, this.index.put([tenant, record.state, seq], null), 'mo inbox');
    return this.records.put(seq, record);
  }

  /** A fresh id: time-ordered (ms × 1000 + a counter); insert() moves on if another process took it. */
  private nextSeq(): number {
    const seq = Math.max(this.lastSeq + 1, this.now() * 1000);
    this.lastSeq = seq;
    return seq;
  }

  // ---------------------------------------------------------------- forwarding

  /** POST due forwards to their callback URLs (bounded concurrency, bounded attempts). */
  async forwardDue(): Promise<void> {
    if (this.closed || this.pendingForwards === 0) return;
    const now = this.now();
    const due: [number, number][] = [];
    for (const key of this.forwards.getKeys({ start: [0, 0], end: [now + 1, 0], limit: FORWARD_CONCURRENCY - this.forwarding })) due.push(key);
    await Promise.all(due.map((key) => this.forwardOne(key)));
  }

  private async forwardOne(key: [number, number]): Promise<void> {
    this.forwarding++;
    try {
      const [, seq] = key;
      const record = this.records.get(seq);
      const attempts = (this.forwards.get(key) ?? 0) + 1;
      const sub = record?.tenant !== undefined ? this.subs.get(record.tenant) : undefined;
      if (!record || !sub) {
        // Unsubscribed meanwhile: the MO stays visible as unmatched.
        await this.forwards.remove(key);
        this.setPendingForwards(this.pendingForwards - 1);
        if (record) await this.write(record.state, { ...record, state: 'unmatched', detail: 'callback removed before it could be forwarded' });
        return;
      }
      const error = await this.deps.webhooks.post(record.tenant ?? '', sub.callbackUrl, JSON.stringify({
        id: record.id, from: record.source, to: record.destination, text: record.text, receivedAt: new Date(record.receivedAt).toISOString(),
        ...(record.parts !== undefined ? { parts: record.parts } : {}),
      }), this.deps.callbackTimeoutMs);
      if (error === undefined) {
        await this.forwards.remove(key);
        this.setPendingForwards(this.pendingForwards - 1);
        await this.write(record.state, { ...record, state: 'forwarded', forwardAttempts: attempts });
      } else if (attempts >= this.deps.callbackAttempts) {
        await this.forwards.remove(key);
        this.setPendingForwards(this.pendingForwards - 1);
        await this.write(record.state, { ...record, state: 'forward-failed', forwardAttempts: attempts, detail: `${error} (after ${attempts} attempts)` });
      } else {
        const next = this.now() + Math.min(60_000, 250 * 2 ** attempts);
        await this.deps.env.transaction(() => {
          this.forwards.removeSync(key);
          this.forwards.putSync([next, seq], attempts);
        });
        await this.write(record.state, { ...record, forwardAttempts: attempts, detail: error });
      }
    } catch (e) {
      this.log.error({ err: e }, 'MO forward step failed; retried on the next tick');
    } finally {
      this.forwarding--;
    }
  }

  /** Remove MO records older than MO_RETENTION_MS (at most 10,000 a run; forwards still pending are kept). */
  async sweepOld(): Promise<number> {
    const cutoff = (this.now() - MO_RETENTION_MS) * 1000;
    const old: MoRecord[] = [];
    for (const { key, value } of this.records.getRange({ end: cutoff, limit: 10_000 })) {
      if (value.state !== 'forward-pending') old.push(value);
      if (key >= cutoff) break;
    }
    if (old.length === 0) return 0;
    await this.deps.env.transaction(() => {
      for (const r of old) {
        const seq = Number(r.id);
        this.records.removeSync(seq);
        this.index.removeSync([r.tenant ?? '', r.state, seq]);
      }
    });
    return old.length;
  }

  // ---------------------------------------------------------------- parts

  /** Parts older than partTimeoutMs: their sets are kept as fragments (unmatched), not lost. */
  async sweepParts(): Promise<void> {
    if (this.closed || this.openParts === 0 || this.sweeping) return;
    this.sweeping = true;
    try {
      await this.sweepStaleParts();
    } finally {
      this.sweeping = false;
    }
  }

  private async sweepStaleParts(): Promise<void> {
    const cutoff = this.now() - this.deps.partTimeoutMs;
    const stale = new Map<string, { base: [string, string, number, number]; got: { seq: number; text: string; at: number }[] }>();
    let scanned = 0;
    for (const { key, value } of this.parts.getRange({})) {
      if (++scanned > 10_000) break;
      const base: [string, string, number, number] = [key[0], key[1], key[2], key[3]];
      const k = base.join('\u0000');
      const e = stale.get(k) ?? { base, got: [] };
      e.got.push({ seq: key[4], text: value.text, at: value.at });
      stale.set(k, e);
    }
    for (const { base, got } of stale.values()) {
      if (got.every((g) => g.at > cutoff)) continue;
      const taken = await this.deps.env.transaction(() => {
        let n = 0;
        for (const g of got) if (this.parts.removeSync([...base, g.seq])) n++;
        return n;
      });
      if (taken === 0) continue;
      this.setOpenParts(this.openParts - taken);
      got.sort((a, b) => a.seq - b.seq);
      const [source, destination, , total] = base;
      await this.accept(
        { account: '', source, destination, text: '', receivedAt: got[0]?.at ?? this.now() },
        got.map((g) => g.text).join(''),
        got.length,
        `incomplete long message: parts ${got.map((g) => g.seq).join(',')} of ${total} arrived; the rest did not within ${this.deps.partTimeoutMs} ms`,
      );
      this.log.warn({ from: maskNumber(source), parts: got.length, total }, 'incomplete long MO kept as a fragment');
    }
  }

  private setOpenParts(n: number): void {
    this.openParts = Math.max(0, n);
    this.openPartsGauge.set(this.openParts);
  }

  private setPendingForwards(n: number): void {
    this.pendingForwards = Math.max(0, n);
    this.forwardGauge.set(this.pendingForwards);
  }
}
