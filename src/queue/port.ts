/**
 * The queue port: the shape of NATS JetStream work-queue semantics, which the
 * embedded LMDB adapter reproduces on one node.
 *
 *   publish ──▶ stream (durable, de-duplicated by msgId within a window)
 *                 │  subjects  <prefix>.work.<tier>.<tenant>.<group>
 *                 ▼
 *   fetch(tier, max) ──▶ Delivery ── ack()        removed for good
 *                                  ├─ nak(delay)   redelivered after delay
 *                                  ├─ working()    extends the ack deadline
 *                                  ├─ (no answer)  redelivered after ackWait
 *                                  └─ term(reason) moved to the dead-letter subject
 *
 * After `maxDeliver` deliveries without an ack a message is dead-lettered by
 * the adapter itself and reported through `onDeadLetter`, so the owner can
 * give every recipient in it a final state.
 */

export interface QueueMessage {
  /** Full subject, `<prefix>.work.<tier>.<tenant>.<group>`. */
  readonly subject: string;
  /** Tier name (also the second token of the subject); selects the consumer. */
  readonly tier: string;
  /** De-duplication id (Nats-Msg-Id); a second publish with it is dropped within the window. */
  readonly msgId: string;
  readonly data: Uint8Array;
}

export interface PublishResult {
  readonly msgId: string;
  /** Stream sequence (adapter-specific, monotonic per stream). */
  readonly seq: number;
  /** True when the msgId was seen inside the duplicates window and nothing was stored. */
  readonly duplicate: boolean;
}

export interface Delivery {
  readonly subject: string;
  readonly tier: string;
  readonly msgId: string;
  readonly seq: number;
  readonly data: Uint8Array;
  /** 1 on first delivery, incremented on every redelivery. */
  readonly deliveryCount: number;
  /** Remove for good. Resolves once the removal is durable (embedded) or acknowledged by the server (NATS). */
  ack(): Promise<void>;
  /** Give it back; redelivered no sooner than `delayMs` later. */
  nak(delayMs?: number): void;
  /** Still working on it: reset the ack deadline. */
  working(): void;
  /** Give up: move to the dead-letter subject with a reason; not redelivered. */
  term(reason: string): Promise<void>;
}

export interface DeadLetter {
  readonly subject: string;
  readonly tier: string;
  readonly msgId: string;
  readonly data: Uint8Array;
  readonly deliveryCount: number;
  readonly reason: string;
}

export interface QueueOptions {
  /** Subject prefix, default `smsgw`. */
  readonly prefix: string;
  /** Tier names, highest priority first. Consumers exist per tier. */
  readonly tiers: readonly string[];
  /** Redeliver when not acked within this many ms. */
  readonly ackWaitMs: number;
  /** After this many deliveries without ack, dead-letter. */
  readonly maxDeliver: number;
  /** Upper bound of un-acked deliveries per tier consumer. */
  readonly maxAckPending: number;
  /** Window within which a repeated msgId is a duplicate. */
  readonly duplicateWindowMs: number;
}

/**
 * Rows in a store and the jobs that refer to them, made durable together
 * (WorkQueue.persistTogether). The caller has written the rows in this event
 * turn; each adapter orders the rest so that a job never exists while the
 * rows it refers to could still be lost, and an answer written by `after`
 * (an idempotency record: "this was accepted") never outlives a lost job.
 */
export interface DurableWrite {
  /** Resolves when the rows written so far are on disk. */
  readonly rowsDurable: () => Promise<void>;
  /** Publish the jobs (called in the event turn the adapter chooses); resolves when they are durable. */
  readonly publish: () => Promise<void>;
  /** Write the rows that must become durable only with the jobs or after them. */
  readonly after: () => void;
}

/** An Idempotency-Key's first request, as the send service is about to write it (WorkQueue.claimKey). */
export interface KeyClaim {
  readonly tenant: string;
  readonly key: string;
  /** The message id the request takes, its fingerprint ("the same request"), and when it was made (epoch ms). */
  readonly id: string;
  readonly fingerprint: string;
  readonly at: number;
  /** The key's TTL: a claim made this long before `at` has lapsed and is taken over. */
  readonly ttlMs: number;
}

/** Won: this request is the key's first within its TTL. Otherwise the first one's id, fingerprint and time. */
export type KeyClaimAnswer =
  | { readonly won: true }
  | { readonly won: false; readonly id: string; readonly fingerprint: string; readonly at: number };

export interface WorkQueue {
  /** For reports (readiness, logs) only: behaviour differences live behind the methods below. */
  readonly kind: 'embedded' | 'nats';
  /**
   * How long small jobs may wait to share one publish (the send service's
   * JobBatcher). Embedded: 0, what arrives in one event turn (LMDB
   * group-commits anyway); NATS: the configured flush linger.
   */
  readonly lingerMs: number;
  /**
   * Make rows and jobs durable together; resolves when both are.
   * Embedded (the same LMDB environment): `after`, the flush and the publish
   * in the same event turn, so they commit in one transaction. NATS: the rows
   * are flushed first, then the jobs published, then `after` written.
   */
  persistTogether(write: DurableWrite): Promise<void>;
  /**
   * Claim an Idempotency-Key for its TTL among every process that shares the
   * queue, before anything of the request is written: of two processes (or
   * hosts) claiming one key at once, one wins; the other learns the winner's
   * id and fingerprint (and answers 409, or the first answer). Embedded (one
   * process per data dir): always won, the send service's in-memory claims
   * already order repeats. NATS: a claim stream (src/queue/nats/key-claims.ts).
   * Rejects QUEUE_UNAVAILABLE when the claim cannot be confirmed.
   */
  claimKey(claim: KeyClaim): Promise<KeyClaimAnswer>;
  /** Resolves when every message is durable (or recognised as a duplicate). Order of results = order of input. */
  publish(messages: readonly QueueMessage[]): Promise<PublishResult[]>;
  /**
   * Up to `max` deliveries from one tier, waiting at most `waitMs` for the
   * first one. Resolves with an empty array on timeout or close.
   */
  fetch(tier: string, max: number, waitMs: number): Promise<Delivery[]>;
  /** Messages stored and not yet acked (including in flight), for one tier. */
  depth(tier: string): Promise<number>;
  /** Called for each message dead-lettered by maxDeliver or term(). */
  onDeadLetter(handler: (dl: DeadLetter) => void | Promise<void>): void;
  /** Stop handing out work; wake pending fetches with []. In-flight deliveries may still ack. */
  close(): Promise<void>;
}
