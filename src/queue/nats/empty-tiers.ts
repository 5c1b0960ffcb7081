/**
 * Which tiers a no-wait fetch may answer `[]` for without asking the server.
 *
 * The dispatcher polls every tier from the highest after each job (so an
 * emergency job never waits behind routine ones); on the embedded queue an
 * empty tier costs a local range read, on JetStream a pull round trip. In
 * `bench:e2e` most of those pulls came back empty (4 of ~5 per job): they
 * cost the gateway ~15–20 µs and nats-server ~9 µs of CPU per accepted
 * message (of ~160 and ~27), for nothing. So a tier whose pull found it drained (404, or 408 to a
 * no-wait pull) is remembered as empty until one of:
 *
 *   - work is announced on it: a publish by this process, or by any other
 *     (every NatsQueue publish is followed, once stored, by an empty core
 *     message on `<prefix>.ready.<tier>`, which every fetching queue follows);
 *   - this process settles one of its deliveries (an ack frees a
 *     max_ack_pending slot, a nak puts work back);
 *   - `recheckMs` pass: the bound for what nobody announces — a nak with a
 *     delay, a redelivery after ackWait, an announcement lost in a reconnect;
 *   - the connection drops (forget everything).
 *
 * A pull that was on its way while work was announced does not mark the
 * tier empty (the announcement may be for a message stored after the server
 * looked). Bounded: one entry per configured tier.
 */
export class EmptyTiers {
  /** When a pull last found the tier drained; absent: may have work. */
  private readonly drainedAt = new Map<string, number>();
  /** Announcements seen per tier, so a pull can tell whether one came while it was on its way. */
  private readonly announced = new Map<string, number>();

  constructor(
    private readonly tiers: ReadonlySet<string>,
    private readonly recheckMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** True: a no-wait fetch of `tier` may answer [] without a pull. */
  knownEmpty(tier: string): boolean {
    const at = this.drainedAt.get(tier);
    return at !== undefined && this.now() - at < this.recheckMs;
  }

  /** Taken before a pull, handed back to drained(). */
  mark(tier: string): number {
    return this.announced.get(tier) ?? 0;
  }

  /** The pull started at `mark` found nothing more to deliver. */
  drained(tier: string, mark: number): void {
    if (!this.tiers.has(tier) || (this.announced.get(tier) ?? 0) !== mark) return;
    this.drainedAt.set(tier, this.now());
  }

  /** Work may be there now. Unknown tiers are ignored (announcements come from other processes). */
  maybeWork(tier: string): void {
    if (!this.tiers.has(tier)) return;
    this.drainedAt.delete(tier);
    this.announced.set(tier, ((this.announced.get(tier) ?? 0) + 1) % Number.MAX_SAFE_INTEGER);
  }

  /** Nothing is known any more (disconnected: announcements may have been missed). */
  forget(): void {
    for (const tier of this.tiers) this.maybeWork(tier);
  }
}
