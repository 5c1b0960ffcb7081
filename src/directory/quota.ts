/**
 * Recipient quotas of units: daily in LMDB, per minute in memory.
 *
 * A send by a unit is charged to the unit and to every ancestor that has a
 * quota (a parent's quota caps its whole subtree), and refused when any of
 * them would go over.
 *
 * - Daily (calendar day at `utcOffsetMinutes`, China: +480): counters
 *   `dir.quota [unit, day, host] → recipients`, checked and incremented
 *   inside one LMDB write transaction, so two gateway processes sharing the
 *   data directory cannot both take the last of a quota. A unit's use of a
 *   day is the sum over hosts: with replication (several hosts) each host
 *   writes only its own row and the others' rows arrive replicated
 *   (src/replication, RowLog) — one limit for the deployment, exact per
 *   host, shared with the replication lag (two hosts may both take the last
 *   of it within that lag). One host: host ''. Old days are swept.
 * - Per minute: a fixed one-minute window per unit in this process's memory.
 *   With N ingest processes a unit can send up to N × its per-minute quota;
 *   the daily quota is the hard, shared limit. (Documented in DIRECTORY.md.)
 *
 * A reservation is taken after every other check passed and given back
 * (`release`) when the accepted write then fails, so a refused or failed
 * request costs nothing.
 */
import type { Database, RootDatabase } from 'lmdb';
import { RowLog, versionKey, type ChangeLog } from '../replication/change-log.js';
import { GatewayError } from '../core/errors.js';
import type { QuotaLimit } from './grants.js';

/** Per-minute windows kept at most (units active in the current minute). */
export const MAX_MINUTE_WINDOWS = 100_000;

export interface Reservation {
  /** Give the recipients back (the write failed). Idempotent. */
  release(): Promise<void>;
}

/**
 * [unit, day, host]; [unit, day] in data written before counters were per host.
 * Parts are counted beside recipients under the day `YYYY-MM-DD#parts`
 * (sorts after the day itself, so neither range reads the other's rows, and
 * the day sweep removes both).
 */
type QuotaKey = [string, string, string] | [string, string];

export interface QuotaUsage {
  readonly unit: string;
  readonly day: string;
  readonly daily: number;
  readonly perMinute: number;
  /** SMS parts charged today (recipients × parts per recipient). */
  readonly dailyParts: number;
}

/** The ledger's day key of the parts counters of `day`. */
const partsDay = (day: string): string => `${day}#parts`;

const NOTHING: Reservation = { release: () => Promise.resolve() };

export class QuotaLedger {
  private readonly env: RootDatabase;
  private readonly daily: Database<number, QuotaKey>;
  private readonly rows: RowLog | undefined;
  private readonly log: ChangeLog | undefined;
  private readonly offsetMs: number;
  private readonly now: () => number;
  /** unit → [minute number, recipients in it]. */
  private readonly minutes = new Map<string, [number, number]>();

  constructor(opts: { env: RootDatabase; utcOffsetMinutes: number; now?: () => number; changeLog?: ChangeLog }) {
    this.env = opts.env;
    this.daily = opts.env.openDB<number, QuotaKey>({ name: 'dir.quota', encoding: 'msgpack' });
    this.offsetMs = opts.utcOffsetMinutes * 60_000;
    this.now = opts.now ?? Date.now;
    this.log = opts.changeLog;
    this.rows = opts.changeLog ? new RowLog(opts.changeLog, [this.daily]) : undefined;
  }

  /** Recipients charged to `unit` on `day` by every host (this one's row, and the others' replicated). */
  private usedOn(unit: string, day: string): number {
    let used = 0;
    // [unit, day] itself is a row written before counters were per host; [unit, day, host] the rest.
    for (const { value } of this.daily.getRange({ start: [unit, day], end: [unit, day, '\uffff'] })) used += value;
    return used;
  }

  /** Inside a write transaction: add `n` (or take it back) on this host's row, logged for the other hosts. */
  private charge(unit: string, day: string, n: number): void {
    const write = (): void => {
      // This host's row: its replication id, '' without replication.
      const key: QuotaKey = [unit, day, this.log?.host ?? ''];
      this.daily.putSync(key, Math.max(0, (this.daily.get(key) ?? 0) + n));
    };
    if (this.rows) this.rows.capture(write);
    else write();
  }

  /** Calendar day (YYYY-MM-DD) at the configured offset. */
  dayOf(at: number): string {
    return new Date(at + this.offsetMs).toISOString().slice(0, 10);
  }

  get minuteWindows(): number {
    return this.minutes.size;
  }

  usage(unit: string): QuotaUsage {
    const now = this.now();
    const day = this.dayOf(now);
    const m = this.minutes.get(unit);
    return { unit, day, daily: this.usedOn(unit, day), perMinute: m !== undefined && m[0] === Math.floor(now / 60_000) ? m[1] : 0, dailyParts: this.usedOn(unit, partsDay(day)) };
  }

  /**
   * Charge `n` recipients and `parts` SMS parts (default: one each) to every
   * limit, or throw QUOTA_EXCEEDED naming the first limit that would be
   * passed. Parts have a daily limit (`dailyParts`), checked and charged in
   * the same transaction as the recipients'.
   */
  async reserve(limits: readonly QuotaLimit[], n: number, parts = n): Promise<Reservation> {
    if (limits.length === 0 || n <= 0) return NOTHING;
    const now = this.now();
    const minute = Math.floor(now / 60_000);
    const perMinute = limits.filter((l) => l.perMinute !== null);
    for (const l of perMinute) {
      const used = this.minuteUsed(l.unit, minute);
      if (used + n > (l.perMinute as number)) {
        const retryAfter = Math.max(1, Math.ceil(((minute + 1) * 60_000 - now) / 1000));
        throw new GatewayError('QUOTA_EXCEEDED', `unit ${l.unit}: per-minute quota of ${l.perMinute} recipients would be exceeded`, {
          details: [{ field: '/quota/perMinute', message: `unit ${l.unit}: ${used} of ${l.perMinute} used this minute; this message needs ${n}; retry after ${retryAfter} s` }],
        });
      }
    }
    if (this.minutes.size + perMinute.length > MAX_MINUTE_WINDOWS) this.sweepMinutes(minute);
    for (const l of perMinute) this.minutes.set(l.unit, [minute, this.minuteUsed(l.unit, minute) + n]);
    const giveBackMinute = (): void => {
      for (const l of perMinute) {
        const m = this.minutes.get(l.unit);
        if (m !== undefined && m[0] === minute) m[1] = Math.max(0, m[1] - n);
      }
    };

    const dailyLimits = limits.filter((l) => l.daily !== null);
    const partsLimits = limits.filter((l) => (l.dailyParts ?? null) !== null);
    if (dailyLimits.length === 0 && partsLimits.length === 0) return once(() => {
      giveBackMinute();
      return Promise.resolve();
    });
    const day = this.dayOf(now);
    const pday = partsDay(day);
    try {
      await this.env.childTransaction(() => {
        for (const l of dailyLimits) {
          const used = this.usedOn(l.unit, day);
          if (used + n > (l.daily as number)) {
            throw new GatewayError('QUOTA_EXCEEDED', `unit ${l.unit}: daily quota of ${l.daily} recipients would be exceeded`, {
              details: [{ field: '/quota/daily', message: `unit ${l.unit}: ${used} of ${l.daily} used on ${day}; this message needs ${n}` }],
            });
          }
        }
        for (const l of partsLimits) {
          const used = this.usedOn(l.unit, pday);
          if (used + parts > (l.dailyParts as number)) {
            throw new GatewayError('QUOTA_EXCEEDED', `unit ${l.unit}: daily quota of ${l.dailyParts} SMS parts would be exceeded`, {
              details: [{ field: '/quota/dailyParts', message: `unit ${l.unit}: ${used} of ${l.dailyParts} parts used on ${day}; this message needs ${parts} (recipients × parts)` }],
            });
          }
        }
        for (const l of dailyLimits) this.charge(l.unit, day, n);
        for (const l of partsLimits) this.charge(l.unit, pday, parts);
      });
    } catch (e) {
      giveBackMinute();
      throw e;
    }
    return once(async () => {
      giveBackMinute();
      await this.env.childTransaction(() => {
        for (const l of dailyLimits) this.charge(l.unit, day, -n);
        for (const l of partsLimits) this.charge(l.unit, pday, -parts);
      });
    });
  }

  /** Remove daily counters of days before `keepDays` ago (at most `limit` rows). */
  sweepDays(keepDays: number, limit = 10_000): Promise<number> {
    const oldest = this.dayOf(this.now() - keepDays * 86_400_000);
    return this.env.childTransaction(() => {
      let removed = 0;
      for (const key of [...this.daily.getKeys({ limit: limit * 4 })]) {
        if (key[1] < oldest) {
          this.daily.removeSync(key);
          // Every host sweeps its own copy of every host's rows: not replicated, and the version goes too.
          this.log?.rowVersions.removeSync(versionKey('dir.quota', key));
          if (++removed >= limit) break;
        }
      }
      return removed;
    });
  }

  private minuteUsed(unit: string, minute: number): number {
    const m = this.minutes.get(unit);
    return m !== undefined && m[0] === minute ? m[1] : 0;
  }

  private sweepMinutes(minute: number): void {
    for (const [unit, m] of this.minutes) if (m[0] !== minute) this.minutes.delete(unit);
  }
}

function once(fn: () => Promise<void>): Reservation {
  let done: Promise<void> | undefined;
  return { release: () => (done ??= fn()) };
}
