/**
 * The background work of a callback sender (completion callbacks, status
 * events): a periodic tick that does not keep the process alive, and every
 * step it starts (claims, POSTs, outcome commits) tracked, so that `stop`
 * waits for them and a step that fails is logged instead of becoming an
 * unhandled rejection.
 */
import type { Logger } from 'pino';

export class Background {
  private timer: NodeJS.Timeout | undefined;
  private readonly pending = new Set<Promise<unknown>>();

  /** `what`: the log message of a failed step. */
  constructor(
    private readonly logger: Logger,
    private readonly what: string,
  ) {}

  /** Runs `tick` every `everyMs` (unref'd) and once now; false when already started. */
  start(tick: () => void, everyMs: number): boolean {
    if (this.timer !== undefined) return false;
    this.timer = setInterval(tick, everyMs);
    this.timer.unref();
    tick();
    return true;
  }

  /** Keeps `p` until it settles; its failure is logged. */
  track(p: Promise<unknown>): void {
    const tracked = p.catch((e: unknown) => this.logger.error({ err: e }, this.what)).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  /** Stops the tick and waits for every tracked step, including steps those start meanwhile. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
