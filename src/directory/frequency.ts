/**
 * Per-recipient frequency cap: at most `perDay` messages from one unit
 * (tenant) to one number per calendar day (directory.utcOffsetMinutes), a
 * carriers' rule against harassing a number. Checked by the dispatcher right
 * before sending; a recipient over the cap ends `rejected`. Tiers in
 * `exemptTiers` (emergency by default) are neither checked nor counted.
 *
 *   dir.freq  [day, tenant, number, host] → message ids sent (≤ perDay)
 *
 * Storing the message ids, not a count, makes the charge idempotent: a job
 * redelivered after a crash finds its own id and is admitted again without a
 * second charge. One limit across hosts like the daily quotas
 * (src/directory/quota.ts): each host writes only its own row, the others'
 * rows arrive replicated (RowLog), and the use is the union over hosts —
 * exact per host, shared with the replication lag. One transaction per
 * message of a job (not per recipient); old days are swept.
 */
import type { Database, RootDatabase } from 'lmdb';
import { RowLog, versionKey, type ChangeLog } from '../replication/change-log.js';

type FreqKey = [string, string, string, string];

export interface FrequencyCapOptions {
  readonly env: RootDatabase;
  /** Messages per unit per number per day; 0: no cap. */
  readonly perDay: number;
  readonly exemptTiers: ReadonlySet<string>;
  readonly utcOffsetMinutes: number;
  readonly changeLog?: ChangeLog;
  readonly now?: () => number;
}

/** The decision for one number, given the ids already charged today (pure). */
export function frequencyDecision(charged: ReadonlySet<string>, messageId: string, perDay: number): 'again' | 'admit' | 'over' {
  if (charged.has(messageId)) return 'again';
  return charged.size < perDay ? 'admit' : 'over';
}

export class FrequencyCap {
  private readonly env: RootDatabase;
  private readonly db: Database<string[], FreqKey>;
  private readonly rows: RowLog | undefined;
  private readonly log: ChangeLog | undefined;
  private readonly offsetMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: FrequencyCapOptions) {
    this.env = opts.env;
    this.db = opts.env.openDB<string[], FreqKey>({ name: 'dir.freq', encoding: 'msgpack' });
    this.offsetMs = opts.utcOffsetMinutes * 60_000;
    this.now = opts.now ?? Date.now;
    this.log = opts.changeLog;
    this.rows = opts.changeLog ? new RowLog(opts.changeLog, [this.db]) : undefined;
  }

  get enabled(): boolean {
    return this.opts.perDay > 0;
  }

  /** Is this tier capped at all? */
  applies(tier: string): boolean {
    return this.opts.perDay > 0 && !this.opts.exemptTiers.has(tier);
  }

  dayOf(at: number): string {
    return new Date(at + this.offsetMs).toISOString().slice(0, 10);
  }

  /** Message ids charged to (tenant, number) today by every host. */
  private charged(day: string, tenant: string, number: string): Set<string> {
    const ids = new Set<string>();
    for (const { value } of this.db.getRange({ start: [day, tenant, number], end: [day, tenant, number, '\uffff'] })) for (const id of value) ids.add(id);
    return ids;
  }

  /**
   * Charge `messageId` to each number (one write transaction) and return the
   * numbers over the cap (not charged). Numbers already charged with this
   * message id pass again without a second charge.
   */
  async admit(tenant: string, tier: string, messageId: string, numbers: readonly string[]): Promise<ReadonlySet<string>> {
    const over = new Set<string>();
    if (!this.applies(tier) || numbers.length === 0) return over;
    const day = this.dayOf(this.now());
    const host = this.log?.host ?? '';
    const perDay = this.opts.perDay;
    await this.env.childTransaction(() => {
      const write = (): void => {
        for (const n of numbers) {
          const decision = frequencyDecision(this.charged(day, tenant, n), messageId, perDay);
          if (decision === 'over') over.add(n);
          else if (decision === 'admit') {
            const key: FreqKey = [day, tenant, n, host];
            this.db.putSync(key, [...(this.db.get(key) ?? []), messageId]);
          }
        }
      };
      if (this.rows) this.rows.capture(write);
      else write();
    });
    return over;
  }

  /** Remove rows of days before `keepDays` ago (at most `limit`). */
  sweepDays(keepDays: number, limit = 10_000): Promise<number> {
    const oldest = this.dayOf(this.now() - keepDays * 86_400_000);
    return this.env.childTransaction(() => {
      let removed = 0;
      for (const key of [...this.db.getKeys({ end: [oldest], limit })]) {
        this.db.removeSync(key);
        this.log?.rowVersions.removeSync(versionKey('dir.freq', key));
        removed++;
      }
      return removed;
    });
  }
}
