/**
 * The durable state of new-mail alerts, in named databases of the gateway's
 * LMDB environment:
 *
 *   office.mail.state    personId                  → PersonMailState (last SMS, pending digest)
 *   office.mail.due      [dueAt, personId]         → 1     (pending digests by due time)
 *   office.mail.seen     [messageKey, personId]    → at    (de-duplication per Message-ID and person)
 *   office.mail.seenAt   [at, messageKey, personId] → 1    (its expiry order)
 *
 * Every change of a person's state is written at once (`write`), and the
 * latest written state is also kept in memory until its commit is visible
 * (the overlay), so concurrent mails for one person see each other's
 * decisions without waiting for LMDB: the decisions are synchronous, the
 * writes are group-committed (every put of one event turn is one
 * transaction). The overlay holds only states with a write in flight, so it
 * is bounded by the mails in flight.
 */
import type { Database, RootDatabase } from 'lmdb';
import type { PersonMailState } from '../../core/mail-alert.js';
import { envFlushed } from '../../storage/health.js';
import { entryCount } from '../../storage/entry-count.js';

/** Named databases opened here (size the environment's maxDbs with it). */
export const MAIL_DBS = 4;

const noop = (): void => undefined;

export class MailAlertStore {
  private readonly env: RootDatabase;
  private readonly states: Database<PersonMailState, string>;
  private readonly due: Database<1, [number, string]>;
  private readonly seen: Database<number, [string, string]>;
  private readonly seenAt: Database<1, [number, string, string]>;
  /** personId → latest state written and not yet visible in LMDB, with its write number. */
  private readonly overlay = new Map<string, { state: PersonMailState | undefined; v: number }>();
  private writes = 0;
  /** Pending digests (entries of office.mail.due). */
  private pendingCount: number;
  private readonly outstanding = new Set<Promise<unknown>>();

  constructor(env: RootDatabase) {
    this.env = env;
    const db = <V, K extends import('lmdb').Key>(name: string): Database<V, K> => env.openDB<V, K>({ name, encoding: 'msgpack' });
    this.states = db('office.mail.state');
    this.due = db('office.mail.due');
    this.seen = db('office.mail.seen');
    this.seenAt = db('office.mail.seenAt');
    this.pendingCount = entryCount(this.due);
  }

  /** Pending digests now. */
  get pending(): number {
    return this.pendingCount;
  }

  state(personId: string): PersonMailState | undefined {
    const o = this.overlay.get(personId);
    return o !== undefined ? o.state : this.states.get(personId);
  }

  /** Has this mail (by key) already been handled for this person? */
  wasSeen(messageKey: string, personId: string): boolean {
    return this.seen.get([messageKey, personId]) !== undefined;
  }

  /**
   * Store a person's new state (undefined: nothing left to remember). The
   * returned promise resolves when it is committed (visible, not yet fsynced).
   */
  write(personId: string, next: PersonMailState | undefined): Promise<unknown> {
    const prev = this.state(personId);
    const prevDue = prev?.pending?.dueAt;
    const nextDue = next?.pending?.dueAt;
    const writes: Promise<unknown>[] = [];
    if (prevDue !== nextDue) {
      if (prevDue !== undefined) {
        writes.push(this.due.remove([prevDue, personId]));
        this.pendingCount--;
      }
      if (nextDue !== undefined) {
        writes.push(this.due.put([nextDue, personId], 1));
        this.pendingCount++;
      }
    }
    writes.push(next === undefined || isEmpty(next) ? this.states.remove(personId) : this.states.put(personId, next));
    const v = ++this.writes;
    this.overlay.set(personId, { state: next, v });
    const done = Promise.all(writes);
    this.track(done.then(() => {
      if (this.overlay.get(personId)?.v === v) this.overlay.delete(personId);
    }, () => {
      // The write failed (environment closed): drop the overlay so reads show what LMDB has.
      if (this.overlay.get(personId)?.v === v) this.overlay.delete(personId);
    }));
    return done;
  }

  /** Remember that this mail was handled for this person (until `sweepSeen` removes it). */
  markSeen(messageKey: string, personId: string, at: number): Promise<unknown> {
    const done = Promise.all([this.seen.put([messageKey, personId], at), this.seenAt.put([at, messageKey, personId], 1)]);
    this.track(done.catch(noop));
    return done;
  }

  /** Resolves when everything written so far is on disk (take it right after the writes). */
  flushed(): Promise<void> {
    return envFlushed(this.env);
  }

  /** People whose digest is due at `now`, earliest first. */
  dueAt(now: number, limit: number): string[] {
    const out: string[] = [];
    for (const key of this.due.getKeys({ start: [0, ''], end: [now, '\uffff'], limit })) out.push(key[1]);
    return out;
  }

  /** The earliest due time, or undefined. */
  nextDue(): number | undefined {
    for (const key of this.due.getKeys({ limit: 1 })) return key[0];
    return undefined;
  }

  /** Forget de-duplication marks taken before `before` (at most `limit` per call). Returns how many. */
  async sweepSeen(before: number, limit: number): Promise<number> {
    const old = [...this.seenAt.getKeys({ start: [0, '', ''], end: [before, '', ''], limit })];
    const writes: Promise<unknown>[] = [];
    for (const [at, key, person] of old) {
      writes.push(this.seenAt.remove([at, key, person]));
      // A later mark for the same pair (the mail came again after the TTL) stays.
      if (this.seen.get([key, person]) === at) writes.push(this.seen.remove([key, person]));
    }
    await Promise.all(writes);
    return old.length;
  }

  /** Let issued writes finish (before the environment closes). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.outstanding]);
  }

  private track(p: Promise<unknown>): void {
    this.outstanding.add(p);
    void p.finally(() => this.outstanding.delete(p));
  }
}

function isEmpty(s: PersonMailState): boolean {
  return s.lastSentAt === undefined && s.pending === undefined;
}
