/**
 * A Delivery backed by one JetStream message. Acks go to the message's reply
 * subject (`$JS.ACK.<stream>.<consumer>.<deliveries>.<stream seq>...`):
 *
 *   ack()      `+ACK` as a request: resolves when the server confirms it
 *              (the "double ack"), retried with a bound, so a resolved ack
 *              means the workqueue stream has dropped the message. The
 *              server also confirms an ack of an already-acked message, so
 *              a retry after a lost confirmation is safe.
 *   nak(d)     `-NAK {"delay": ns}` fire-and-forget (the port's nak is void;
 *              if it is lost the message comes back after ackWait anyway).
 *              On the last allowed delivery (deliveryCount = maxDeliver) the
 *              queue dead-letters instead.
 *   working()  `+WPI` fire-and-forget: resets the ack deadline.
 *   term(r)    dead letter first (durable in the dead stream), then `+TERM`
 *              as a confirmed request, then the dead-letter handlers.
 *
 * `+TERM <reason>` is only understood from nats-server 2.11: 2.9.10 answers
 * it but ignores it (the message is redelivered), so the reason never goes
 * to the server; it travels in the dead letter's headers.
 */
import type { Msg } from '@nats-io/transport-node';
import { nanos } from '@nats-io/transport-node';
import type { Delivery } from '../port.js';

export interface AckInfo {
  readonly stream: string;
  readonly consumer: string;
  readonly deliveryCount: number;
  readonly streamSeq: number;
}

/**
 * Parse a JetStream ack subject. Two layouts exist:
 *   $JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending>               (9 tokens)
 *   $JS.ACK.<domain>.<acchash>.<stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending>[.<rand>]
 */
export function parseAckSubject(reply: string): AckInfo | undefined {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const base = t.length === 9 ? 2 : t.length >= 11 ? 4 : -1;
  if (base < 0) return undefined;
  const stream = t[base];
  const consumer = t[base + 1];
  const dc = Number(t[base + 2]);
  const seq = Number(t[base + 3]);
  if (stream === undefined || consumer === undefined || !Number.isSafeInteger(dc) || !Number.isSafeInteger(seq)) return undefined;
  return { stream, consumer, deliveryCount: dc, streamSeq: seq };
}

/**
 * True for nats-server versions that can deliver a message again as new,
 * delivery count 1, after losing a redelivery (before 2.10.14:
 * nats-io/nats-server#5305; see the maxDeliver part of queue.ts). An
 * unreadable version counts as affected.
 */
export function deliveryCountMayReset(version: string): boolean {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return true;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (major !== 2) return major < 2;
  return minor < 10 || (minor === 10 && patch < 14);
}

/** What a delivery needs from its queue. */
export interface DeliveryHost {
  /** Send an ack-protocol payload and wait for the server's confirmation (bounded retries). */
  confirm(reply: string, payload: string): Promise<void>;
  /** Send an ack-protocol payload without waiting. */
  send(reply: string, payload: string): void;
  /** Give it back (or, on its last allowed delivery, dead-letter it). */
  nak(d: NatsDelivery, delayMs: number | undefined): void;
  /** Dead-letter it (durable), then `+TERM` it, then tell the handlers. */
  terminate(d: NatsDelivery, reason: string): Promise<void>;
  /** Called once when the delivery is settled (acked, naked, termed or expired). */
  settled(d: NatsDelivery): void;
  /** Called on every working() so the queue can move its deadlines. */
  touched(d: NatsDelivery): void;
}

export const ACK = '+ACK';
export const TERM = '+TERM';
export const WORKING = '+WPI';

export function nakPayload(delayMs: number | undefined): string {
  return delayMs !== undefined && delayMs > 0 ? `-NAK ${JSON.stringify({ delay: nanos(Math.ceil(delayMs)) })}` : '-NAK';
}

export class NatsDelivery implements Delivery {
  readonly subject: string;
  readonly tier: string;
  readonly msgId: string;
  readonly seq: number;
  readonly data: Uint8Array;
  readonly deliveryCount: number;
  readonly reply: string;
  /** Last time this delivery was handed out or touched (ms since epoch). */
  lastTouch: number;
  private state: 'open' | 'acking' | 'acked' | 'naked' | 'terming' | 'termed' | 'expired' = 'open';
  private pending: Promise<void> | undefined;

  constructor(
    private readonly host: DeliveryHost,
    tier: string,
    msg: Msg,
    info: AckInfo,
    now: number,
  ) {
    this.subject = msg.subject;
    this.tier = tier;
    this.msgId = msg.headers?.get('Nats-Msg-Id') ?? '';
    this.seq = info.streamSeq;
    this.data = msg.data;
    this.deliveryCount = info.deliveryCount;
    this.reply = msg.reply ?? '';
    this.lastTouch = now;
  }

  get isAcked(): boolean {
    return this.state === 'acked';
  }

  get isSettled(): boolean {
    return this.state === 'acked' || this.state === 'naked' || this.state === 'termed' || this.state === 'expired';
  }

  /**
   * The queue gives up on it (its last allowed delivery went unanswered past
   * ackWait). True when it was still open; later ack/nak/term are no-ops.
   */
  expire(): boolean {
    if (this.state !== 'open') return false;
    this.state = 'expired';
    this.host.settled(this);
    return true;
  }

  /**
   * Idempotent: a second ack() shares the first one's outcome. After nak() or
   * term() it is a no-op (the message is no longer ours to ack).
   */
  ack(): Promise<void> {
    if (this.pending && (this.state === 'acking' || this.state === 'acked')) return this.pending;
    if (this.state !== 'open') return Promise.resolve();
    this.state = 'acking';
    this.pending = this.host.confirm(this.reply, ACK).then(
      () => {
        this.state = 'acked';
        this.host.settled(this);
      },
      (e: unknown) => {
        // not confirmed: the caller may try again; otherwise it is redelivered after ackWait
        this.state = 'open';
        this.pending = undefined;
        throw e;
      },
    );
    return this.pending;
  }

  nak(delayMs?: number): void {
    if (this.state !== 'open') return;
    this.state = 'naked';
    this.host.nak(this, delayMs);
    this.host.settled(this);
  }

  working(): void {
    if (this.state !== 'open' && this.state !== 'acking' && this.state !== 'terming') return;
    this.host.send(this.reply, WORKING);
    this.host.touched(this);
  }

  term(reason: string): Promise<void> {
    if (this.pending && (this.state === 'terming' || this.state === 'termed')) return this.pending;
    if (this.state !== 'open') return Promise.resolve();
    this.state = 'terming';
    this.pending = this.host.terminate(this, reason).then(
      () => {
        this.state = 'termed';
        this.host.settled(this);
      },
      (e: unknown) => {
        this.state = 'open';
        this.pending = undefined;
        throw e;
      },
    );
    return this.pending;
  }
}
