/**
 * A token bucket for submit rates (an operator account's TPS).
 *
 * Tokens refill continuously at `ratePerSec` up to `burst`. The clock is
 * injected so the bucket is pure and testable; callers pass `Date.now` or
 * `performance.now`-style milliseconds.
 */
export class TokenBucket {
  readonly ratePerSec: number;
  readonly burst: number;
  private readonly now: () => number;
  private tokens: number;
  private last: number;

  /**
   * @param ratePerSec tokens added per second; 0 (or less) means unlimited.
   * @param burst bucket size: the most tokens that can be taken at once after idling (at least 1).
   */
  constructor(ratePerSec: number, burst: number, now: () => number) {
    if (!Number.isFinite(ratePerSec)) throw new RangeError(`rate must be finite, got ${ratePerSec}`);
    this.ratePerSec = Math.max(0, ratePerSec);
    this.burst = Math.max(1, burst);
    this.now = now;
    this.tokens = this.burst;
    this.last = now();
  }

  get unlimited(): boolean {
    return this.ratePerSec === 0;
  }

  /**
   * Take `n` tokens. Returns 0 when granted, else the milliseconds until `n`
   * tokens will be available (nothing is taken then). `n` above the burst is
   * clamped to the burst, otherwise it could never be granted.
   */
  tryTake(n = 1): number {
    if (this.ratePerSec === 0) return 0;
    const want = Math.min(n, this.burst);
    this.refill();
    if (this.tokens >= want) {
      this.tokens -= want;
      return 0;
    }
    // ceil, and at least 1 ms: a caller that sleeps the answer must find the tokens there.
    return Math.max(1, Math.ceil(((want - this.tokens) * 1000) / this.ratePerSec));
  }

  /** Tokens available now (fractional). */
  available(): number {
    if (this.ratePerSec === 0) return Infinity;
    this.refill();
    return this.tokens;
  }

  private refill(): void {
    const t = this.now();
    const elapsed = t - this.last;
    // A clock that steps backwards must not mint or destroy tokens.
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSec) / 1000);
    }
    this.last = t;
  }
}
