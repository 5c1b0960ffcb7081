/**
 * Retention: rows are kept for a set time, then removed by a sweep.
 *
 *   every retention.sweepMs, one bounded sweep:
 *     messages  created ≤ now − retention.messages and final (no expiry entry,
 *               every recipient final): recipients, receipt index rows that
 *               still point at them, callback row, idempotency answer, then the
 *               message row (ReceiptStore.purgeFinalMessages); a page of
 *               retention.scanMessages message rows a sweep, going round
 *     idempotency answers past server.idempotencyTtl (ReceiptStore.sweepIdempotency)
 *     audit     entries recorded ≤ now − retention.audit (≥ 180 days), oldest
 *               first, with their per-target index rows (DirectoryStore.purgeAudit)
 *
 * Every write operation removes at most retention.batchRows rows, a sweep at
 * most retention.maxRowsPerSweep; the rest waits for the next sweep. A
 * message with a recipient that is not final is never removed, however old
 * (counted in smsgw_retention_skipped_messages_total). Rows removed by kind:
 * smsgw_retention_purged_rows_total; sweep time: smsgw_retention_sweep_seconds.
 * Each host sweeps its own rows (replicated rows included): nothing of it is
 * replicated.
 */
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { PurgeCounts } from '../receipts/store.js';

export interface RetentionLimits {
  readonly messagesMs: number;
  readonly auditMs: number;
  readonly batchRows: number;
  readonly maxRowsPerSweep: number;
  readonly scanMessages: number;
}

export interface RetentionDeps {
  readonly receipts: {
    purgeFinalMessages(before: number, limits: { scan: number; batchRows: number; maxRows: number }): Promise<PurgeCounts>;
    sweepIdempotency(): Promise<number>;
  };
  /** Absent: no audit log in this process. */
  readonly audit?: { purgeAudit(before: number, limit: number): Promise<number> };
  readonly limits: RetentionLimits;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => number;
}

/** Rows one sweep removed, by kind (the metric's labels). */
export interface SweepResult {
  readonly message: number;
  readonly recipient: number;
  readonly receipt_index: number;
  readonly callback: number;
  readonly idempotency: number;
  readonly audit: number;
  /** Old messages left because a recipient is not final. */
  readonly skipped: number;
}

export class RetentionSweeper {
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepResult> | undefined;

  constructor(private readonly deps: RetentionDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** One bounded sweep; a sweep asked for while one runs shares it. */
  sweep(): Promise<SweepResult> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Sweep every `everyMs` (unref'd); failures are logged, the storage state is the health module's. */
  start(everyMs: number): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.sweep().catch((e: unknown) => this.deps.logger.error({ err: e }, 'retention sweep failed'));
    }, everyMs);
    this.timer.unref();
  }

  /** Stop the timer and wait for a sweep in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async run(): Promise<SweepResult> {
    const { limits, metrics } = this.deps;
    const end = metrics.retentionSweepSeconds.startTimer();
    try {
      const now = this.now();
      const batch = Math.max(1, limits.batchRows);
      const p = await this.deps.receipts.purgeFinalMessages(now - limits.messagesMs, { scan: limits.scanMessages, batchRows: batch, maxRows: limits.maxRowsPerSweep });
      let left = Math.max(0, limits.maxRowsPerSweep - p.recipients - p.messages);
      const idempotency = p.idempotency + await this.deps.receipts.sweepIdempotency();
      let audit = 0;
      if (this.deps.audit) {
        const before = now - limits.auditMs;
        // Bounded: each round removes up to `batch` entries; a short round means none older is left.
        while (left > 0) {
          const n = await this.deps.audit.purgeAudit(before, Math.min(batch, left));
          audit += n;
          left -= n;
          if (n < Math.min(batch, left + n)) break;
        }
      }
      const result: SweepResult = {
        message: p.messages, recipient: p.recipients, receipt_index: p.receiptIndex, callback: p.callbacks, idempotency, audit, skipped: p.skipped,
      };
      for (const kind of ['message', 'recipient', 'receipt_index', 'callback', 'idempotency', 'audit'] as const) {
        if (result[kind] > 0) metrics.retentionPurgedRows.inc({ kind }, result[kind]);
      }
      if (p.skipped > 0) metrics.retentionSkippedMessages.inc(p.skipped);
      if (result.message + result.audit > 0) this.deps.logger.info({ purged: result }, 'retention sweep removed old rows');
      return result;
    } finally {
      end();
    }
  }
}
