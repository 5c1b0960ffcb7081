/**
 * Hands committed PDA status updates (the `pda.status` rows, one per
 * transaction) to the receipt store, in order, at least once: rows are
 * removed only after the sink resolved. A failing sink is retried with doubling back-off; the rows wait
 * durably meanwhile (their number is the `smsgw_pda_status_backlog` gauge,
 * and past `pda.maxStatusBacklog` the channel refuses new deliveries).
 */
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { PdaStore, StatusBatch } from './store.js';
import type { PdaStatusSink } from './types.js';

export interface StatusRelayOptions {
  /** Updates per sink call. */
  readonly batch: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
}

export class StatusRelay {
  private running: Promise<void> | undefined;
  private again = false;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Removals of relayed rows not yet committed. */
  private readonly removals = new Set<Promise<void>>();

  constructor(
    private readonly store: PdaStore,
    private readonly sink: PdaStatusSink,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly opts: StatusRelayOptions = { batch: 5000, retryInitialMs: 100, retryMaxMs: 10_000 },
  ) {
    this.retryMs = opts.retryInitialMs;
  }

  /** New rows were committed: relay them soon. */
  kick(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.retryTimer) return; // a retry is already scheduled
    this.running = this.run().finally(() => {
      this.running = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        this.kick();
      }
    });
  }

  /** Resolves when nothing is being relayed or removed (rows may remain after a sink failure). */
  async idle(): Promise<void> {
    while (this.running || this.removals.size > 0) {
      await this.running;
      await Promise.all([...this.removals]);
    }
  }

  /** Stop; one last attempt to relay what is committed, then leave the rest for the next start. */
  async close(): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.idle();
    if (!this.closed && this.store.statusBacklog > 0) {
      // Cleared when done: idle() waits while `running` is set.
      this.running = this.run().finally(() => {
        this.running = undefined;
      });
      await this.idle();
    }
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private async run(): Promise<void> {
    // Bounded per run: a long backlog is relayed in several runs, each kicked by the last.
    for (let round = 0; round < 100; round++) {
      // Whole transactions' batches (from memory while the relay keeps up), at least `batch` updates when there are.
      const batches = this.store.readStatus(this.opts.batch);
      if (batches.length === 0) return;
      const updates = batches.length === 1 ? (batches[0] as StatusBatch).updates : batches.flatMap((b) => b.updates);
      try {
        // Sink calls of at most `batch` updates; a failure retries the whole set (the sink ignores repeats).
        for (let from = 0; from < updates.length; from += this.opts.batch) {
          await this.sink.recordPdaStates(from === 0 && updates.length <= this.opts.batch ? updates : updates.slice(from, from + this.opts.batch));
        }
      } catch (e) {
        this.metrics.pdaStatusRelayFailures.inc();
        this.logger.warn({ err: e, updates: updates.length, retryMs: this.retryMs }, 'PDA status relay: the receipt store refused a batch; retrying');
        this.scheduleRetry();
        return;
      }
      this.retryMs = this.opts.retryInitialMs;
      // Not awaited: the next batch goes to the sink while these rows are deleted. A removal that fails
      // leaves rows that the next start relays again (the sink ignores states it already has).
      const removal = this.store.removeStatus(batches).catch((e: unknown) => {
        this.metrics.pdaStatusRelayFailures.inc();
        this.logger.error({ err: e }, 'PDA status relay: cannot remove relayed rows; they will be relayed again after a restart');
      });
      this.removals.add(removal);
      void removal.finally(() => this.removals.delete(removal));
      if (updates.length < this.opts.batch) return;
    }
    this.again = true;
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.opts.retryMaxMs, this.retryMs * 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delay);
    this.retryTimer.unref();
  }
}
