/**
 * Intake first: while the send service has writes waiting for their commit
 * (a burst at the HTTP door, or any other producer), the dispatcher starts no
 * new jobs of the tiers that yield, so the one event loop spends itself on
 * making the burst durable (the 202s) before sending it. What is already in
 * flight goes on: submits in the bind windows, their receipts, callbacks.
 *
 * A hold starts only at a check that finds a write waiting (so a lone message
 * is fetched as soon as its write is done: the dispatcher is woken after the
 * write stops counting), and goes on through the short gaps of a flood, ending
 * at the first check that finds no write waiting and none ended for `quietMs`.
 *
 * Bounded, so a flood that never ends cannot starve the sends: one hold lasts
 * at most `maxHoldMs`; then the dispatcher fetches unheld for `maxHoldMs`
 * (under a sustained flood, sends get at least every other period, sharing the
 * loop with the intake as they do without the gate).
 * Tiers that do not yield (`tiers[].yieldToIntake`, false for `emergency` by
 * default) are never held.
 *
 * Bounded in what it leaves waiting too: no hold while the recipients
 * accepted here and not yet taken by the dispatcher (`backlog`) number
 * `maxBacklog` or more. The time bound alone does not bound the backlog under
 * a sustained flood (in the open periods the door and the sends share the
 * loop at one rate, so what a hold left waiting stays), and the store's pages
 * the dispatcher then reads grow with it. At the bound the dispatcher takes
 * work and the hold resumes once the backlog is under it again, so under a
 * flood the backlog stays near the bound.
 *
 * Pure: the clock is passed in; whether a write is in flight, when the last
 * one ended and the metrics sink are injected.
 */

/** A hold goes on while the last write ended less than this long ago (the gaps between a flood's commits are far shorter). */
export const INTAKE_QUIET_MS = 20;

export interface IntakeFirstOptions {
  /** Longest hold; 0 turns the gate off. */
  readonly maxHoldMs: number;
  /** Are writes of accepted work waiting for their commit now? */
  readonly writing: () => boolean;
  /** When the last write of accepted work ended (the clock `holds` is given). */
  readonly lastWriteEndedAt: () => number;
  /** Default INTAKE_QUIET_MS. */
  readonly quietMs?: number;
  /** Tiers held while the intake is busy. */
  readonly yieldingTiers: ReadonlySet<string>;
  /** Told when a hold starts and when it ends, with its length. */
  readonly onHold?: (holding: boolean, heldMs: number) => void;
  /** Recipients accepted here and not yet taken by the dispatcher (see `IntakeBacklog`). */
  readonly backlog?: () => number;
  /** No hold while `backlog()` is at least this; absent: no bound on the backlog. */
  readonly maxBacklog?: number;
}

/**
 * Recipients accepted by this process's send service and not yet taken by
 * its dispatcher: counted up as their write starts (before it can commit, so
 * before the dispatcher can take them), and down when a job is taken or that
 * write fails (never below zero: jobs written before a restart, redelivered
 * jobs, another process's jobs and group expansions are taken without having
 * been counted here).
 */
export class IntakeBacklog {
  private n = 0;

  /** `onChange`: told the new value after every change (a gauge). */
  constructor(private readonly onChange?: (value: number) => void) {}

  get value(): number {
    return this.n;
  }

  /** A write that puts `recipients` on the queue starts; negative: that write failed (none of it committed). */
  queued(recipients: number): void {
    this.n = Math.max(0, this.n + recipients);
    this.onChange?.(this.n);
  }

  /** The dispatcher took a job of `recipients`. */
  taken(recipients: number): void {
    this.queued(-recipients);
  }
}

export class IntakeFirstGate {
  /** When the current hold started; undefined while not holding. */
  private holdingSince: number | undefined;
  /** After a hold that reached its bound: no hold before this time. */
  private openUntil = -Infinity;

  constructor(private readonly o: IntakeFirstOptions) {}

  get holding(): boolean {
    return this.holdingSince !== undefined;
  }

  /** Should the dispatcher leave this tier unfetched now? */
  holds(tier: string, now: number): boolean {
    if (this.o.maxHoldMs <= 0 || !this.o.yieldingTiers.has(tier)) return false;
    if (now < this.openUntil) return false;
    if (this.o.maxBacklog !== undefined && this.o.backlog !== undefined && this.o.backlog() >= this.o.maxBacklog) {
      this.end(now);
      return false;
    }
    if (this.holdingSince === undefined) {
      if (!this.o.writing()) return false;
      this.holdingSince = now;
      this.o.onHold?.(true, 0);
      return true;
    }
    if (!this.o.writing() && !(now - this.o.lastWriteEndedAt() < (this.o.quietMs ?? INTAKE_QUIET_MS))) {
      this.end(now);
      return false;
    }
    // A clock that went back counts as a hold at its bound (never a longer one).
    if (now >= this.holdingSince && now - this.holdingSince < this.o.maxHoldMs) return true;
    this.end(now);
    this.openUntil = now + this.o.maxHoldMs;
    return false;
  }

  private end(now: number): void {
    const since = this.holdingSince;
    if (since === undefined) return;
    this.holdingSince = undefined;
    this.o.onHold?.(false, Math.max(0, now - since));
  }
}
