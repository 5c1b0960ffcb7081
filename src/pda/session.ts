/**
 * One PDA connection: the protocol state machine, independent of uWS (the
 * route adapts a uWS WebSocket to `SessionSocket`).
 *
 *   await-hello ──HELLO──▶ await-response ──RESPONSE ok──▶ ready ──▶ closed
 *        └────────── anything else, bad frame, timeout ──────────────┘
 *
 * In `ready` the session streams the device's outbox: the highest lane
 * (priority) first, each lane in sequence order, at most `window` frames
 * unacknowledged and only while uWS holds less than `highWaterBytes` for
 * this socket (the rest waits for `drain`). Nothing is lost when a
 * connection dies: the outbox only shrinks on a committed ack; the next
 * session sends again whatever was not acknowledged.
 *
 * Every way out goes through `close(reason)`: a CLOSE frame with the reason,
 * then the WebSocket close code 4000 + reason. A malformed frame costs its
 * own session only.
 */
import type { Logger } from '../telemetry/logger.js';
import {
  CLIENT_FRAMES,
  CLOSE_REASON,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  WS_CLOSE_BASE,
  closeText,
  decodeFrame,
  encodeFrame,
  reasonName,
  type AckFrame,
  type CloseReason,
  type Frame,
  type HelloFrame,
  type ResponseFrame,
} from './codec.js';
import { newNonce } from './keys.js';
import type { PdaChannel } from './channel.js';
import { LANES } from './store.js';

export type SendOutcome = 'ok' | 'backpressure' | 'dropped';

/** What a session needs from its transport. */
export interface SessionSocket {
  /** Send one binary frame. */
  send(frame: Uint8Array): SendOutcome;
  /** Bytes buffered for this socket and not yet written. */
  bufferedAmount(): number;
  /** Run `fn` with writes batched into as few syscalls as possible. */
  cork(fn: () => void): void;
  /** Close with a WebSocket close code and short reason. Must call back `socketClosed` (synchronously or later). */
  end(code: number, reason: string): void;
}

export type SessionPhase = 'await-hello' | 'await-response' | 'ready' | 'closed';

export interface SessionLimits {
  readonly maxInboundFrameBytes: number;
  readonly helloTimeoutMs: number;
  readonly window: number;
  readonly highWaterBytes: number;
  /** In flight frames with no ack for this long: SLOW_CONSUMER. */
  readonly ackTimeoutMs: number;
  readonly heartbeatSec: number;
  /** Ack/read frames queued for the next commit, per session; more: PROTOCOL_ERROR (flooding). */
  readonly maxQueuedAcks: number;
}

let nextSessionId = 1;

export class PdaSession {
  readonly id = nextSessionId++;
  phase: SessionPhase = 'await-hello';
  deviceId: string | undefined;
  readonly openedAt: number;
  /** Why it closed (reason name), once closed. */
  closedAs: string | undefined;

  private nonce: Buffer | undefined;
  private nonceSentAt = 0;
  /** The client already has everything ≤ this (HELLO lastAck): not sent again. */
  private skipThrough = 0;
  /** seq → lane of MESSAGE frames sent and not yet acknowledged. */
  readonly inflight = new Map<number, number>();
  /** Highest sequence sent per lane in this session. */
  private readonly laneSent: number[] = new Array<number>(LANES).fill(0);
  /** Highest sequence sent in this session / in earlier sessions (from the cursor). */
  sentHigh = 0;
  private earlierSentHigh = 0;
  private lastProgressAt = 0;
  private pumping = false;
  /**
   * Every sequence below this is settled. Exact at WELCOME; afterwards a
   * valid lower bound (sequences only grow), refreshed when expiry opens a
   * hole — so the MESSAGE frames' floor costs no read per frame.
   */
  private floor = 1;
  /** Every sequence ≤ this is gone from the outbox (or being removed by a queued ack): acks above it need no scan below it. */
  private settledThrough = 0;
  queuedAcks = 0;

  constructor(
    private readonly socket: SessionSocket,
    private readonly channel: PdaChannel,
    private readonly limits: SessionLimits,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.openedAt = now();
  }

  // ---------------------------------------------------------------- transport events

  /** One WebSocket message. `data` is only valid during this call (uWS). */
  onMessage(data: ArrayBuffer | Uint8Array, isBinary: boolean): void {
    if (this.phase === 'closed') return;
    if (!isBinary) {
      this.channel.countFrame('text');
      this.close(CLOSE_REASON.PROTOCOL_ERROR, 'text frames are not part of the protocol');
      return;
    }
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const r = decodeFrame(bytes, this.limits.maxInboundFrameBytes);
    if (!r.ok) {
      this.channel.countFrame('invalid');
      this.close(r.reason, r.detail);
      return;
    }
    const f = r.frame;
    this.channel.countFrame(f.type);
    if (!CLIENT_FRAMES.has(f.type)) {
      this.close(CLOSE_REASON.PROTOCOL_ERROR, `${f.type} is a server frame`);
      return;
    }
    try {
      this.dispatch(f);
    } catch (e) {
      // A bug here must cost this session only, never the process.
      this.logger.error({ err: e, deviceId: this.deviceId, frame: f.type }, 'PDA session failed on a frame');
      this.close(CLOSE_REASON.INTERNAL, 'internal error');
    }
  }

  onDrain(): void {
    this.pump();
  }

  /** The WebSocket is gone (closed by us, by the peer, by the idle timeout). */
  socketClosed(code: number): void {
    if (this.phase !== 'closed') {
      this.phase = 'closed';
      this.closedAs = code === 1006 ? 'connection-lost' : code === 1000 || code === 1001 ? 'peer-closed' : `peer-${code}`;
      this.channel.sessionEnded(this, this.closedAs);
    }
  }

  /** Once a second: handshake deadline and stalled acks. */
  tick(now: number): void {
    if (this.phase === 'await-hello' || this.phase === 'await-response') {
      if (now - this.openedAt > this.limits.helloTimeoutMs) this.close(CLOSE_REASON.HANDSHAKE_TIMEOUT, `no handshake within ${this.limits.helloTimeoutMs} ms`);
    } else if (this.phase === 'ready' && this.inflight.size > 0 && now - this.lastProgressAt > this.limits.ackTimeoutMs) {
      this.close(CLOSE_REASON.SLOW_CONSUMER, `no acknowledgement for ${this.limits.ackTimeoutMs} ms`);
    }
  }

  /** End the session with a reason: CLOSE frame, then WebSocket close 4000 + reason. */
  close(reason: CloseReason, detail: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closedAs = reasonName(reason);
    const text = closeText(detail);
    this.channel.sessionEnded(this, this.closedAs);
    try {
      this.socket.send(encodeFrame({ type: 'close', reason, text }));
      this.socket.end(WS_CLOSE_BASE + reason, text);
    } catch (e) {
      // The socket may already be gone (closed by the peer in the same turn): nothing left to tell it.
      this.logger.debug({ err: e, deviceId: this.deviceId }, 'PDA socket already closed');
    }
  }

  // ---------------------------------------------------------------- protocol

  private dispatch(f: Frame): void {
    switch (f.type) {
      case 'hello':
        if (this.phase !== 'await-hello') return this.close(CLOSE_REASON.PROTOCOL_ERROR, 'hello after the handshake started');
        return this.hello(f);
      case 'response':
        if (this.phase !== 'await-response') return this.close(CLOSE_REASON.PROTOCOL_ERROR, 'response without a pending challenge');
        return this.response(f);
      case 'close':
        return this.close(CLOSE_REASON.NORMAL, 'closed by the device');
      default:
        break;
    }
    if (this.phase !== 'ready') return this.close(CLOSE_REASON.PROTOCOL_ERROR, `${f.type} before the handshake completed`);
    switch (f.type) {
      case 'ack':
        return this.ack(f);
      case 'read':
        if (!this.channel.queueRead(this, f.seqs)) this.close(CLOSE_REASON.PROTOCOL_ERROR, 'too many unprocessed acknowledgements');
        return;
      case 'ping':
        this.socket.send(encodeFrame({ type: 'pong', token: f.token }));
        return;
      case 'pong':
        return;
      default:
        return;
    }
  }

  private hello(f: HelloFrame): void {
    if (f.version < MIN_PROTOCOL_VERSION) {
      this.close(CLOSE_REASON.UNSUPPORTED_VERSION, `protocol ${f.version} is not supported (${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION})`);
      return;
    }
    this.deviceId = f.deviceId;
    this.skipThrough = f.lastAck;
    this.nonce = newNonce();
    this.nonceSentAt = this.now();
    this.phase = 'await-response';
    const ttlMs = Math.max(0, this.limits.helloTimeoutMs - (this.nonceSentAt - this.openedAt));
    this.socket.send(encodeFrame({ type: 'challenge', version: Math.min(f.version, PROTOCOL_VERSION), ttlMs, nonce: this.nonce }));
  }

  private response(f: ResponseFrame): void {
    // Single use: whatever the outcome, this nonce is gone.
    const nonce = this.nonce as Buffer;
    this.nonce = undefined;
    const deviceId = this.deviceId as string;
    if (this.now() - this.openedAt > this.limits.helloTimeoutMs) {
      this.channel.countHandshake('timeout');
      this.close(CLOSE_REASON.HANDSHAKE_TIMEOUT, 'the challenge expired');
      return;
    }
    const verdict = this.channel.registry.authenticate(deviceId, nonce, f.mac);
    if (!verdict.ok) {
      this.channel.countHandshake(verdict.outcome);
      this.close(verdict.reason, verdict.reason === CLOSE_REASON.AUTH_FAILED ? 'authentication failed' : reasonName(verdict.reason));
      return;
    }
    this.channel.countHandshake('ok');
    this.phase = 'ready';
    this.earlierSentHigh = this.channel.store.cursorOf(deviceId)?.s ?? 0;
    this.channel.sessionReady(this);
    if (this.phase !== 'ready') return; // refused while attaching (shutting down)
    const cursor = this.channel.store.cursorOf(deviceId);
    this.floor = this.channel.store.floor(deviceId);
    this.settledThrough = this.floor - 1;
    this.socket.send(encodeFrame({
      type: 'welcome',
      floor: this.floor,
      backlog: cursor?.c ?? 0,
      heartbeatSec: this.limits.heartbeatSec,
      serverTime: this.now(),
    }));
    if (this.skipThrough > 0) this.ack({ type: 'ack', cumulative: this.skipThrough, selective: [] });
    this.pump();
  }

  private ack(f: AckFrame): void {
    if (f.cumulative <= this.settledThrough && f.selective.length === 0) return;
    // Acks of one session are applied in order, so the next one need not look below this one's cumulative.
    const from = this.settledThrough;
    if (!this.channel.queueAck(this, f.cumulative, f.selective, from)) {
      this.close(CLOSE_REASON.PROTOCOL_ERROR, 'too many unprocessed acknowledgements');
      return;
    }
    if (f.cumulative > this.settledThrough) this.settledThrough = f.cumulative;
  }

  /** Lane of a sequence in flight (a hint for the ack transaction). */
  laneOf(seq: number): number | undefined {
    return this.inflight.get(seq);
  }

  /** An ack of this session was committed. */
  acknowledged(cumulative: number, selective: readonly number[]): void {
    const before = this.inflight.size;
    if (cumulative > 0) for (const seq of this.inflight.keys()) if (seq <= cumulative) this.inflight.delete(seq);
    for (const seq of selective) this.inflight.delete(seq);
    this.channel.inflightChanged(this.inflight.size - before);
    this.lastProgressAt = this.now();
    this.pump();
  }

  /** These sequences left the outbox (expired): free their window slots. */
  expired(seqs: readonly number[]): void {
    const before = this.inflight.size;
    for (const seq of seqs) this.inflight.delete(seq);
    this.channel.inflightChanged(this.inflight.size - before);
    // Expiry opens holes: tell the device (via the floor) so its cumulative ack can move past them.
    if (this.phase === 'ready') this.floor = Math.max(this.floor, this.channel.store.floor(this.deviceId as string));
    this.pump();
  }

  /** Send what the window and the socket allow: highest lane first, each lane in sequence order. */
  pump(): void {
    if (this.phase !== 'ready' || this.pumping) return;
    const dev = this.deviceId as string;
    let room = this.limits.window - this.inflight.size;
    if (room <= 0 || this.socket.bufferedAmount() >= this.limits.highWaterBytes) return;
    this.pumping = true;
    const before = this.inflight.size;
    // Entries not yet accounted for (committed count minus those in flight): once every one has been seen,
    // the lower lanes need no read. Stale by acks committed but not yet applied here, it can only stop a
    // pump early, and applying those acks pumps again.
    let unaccounted = (this.channel.store.cursorOf(dev)?.c ?? 0) - this.inflight.size;
    // Appended but not yet flushed: not sent (store.write says why); the flush pumps again.
    const sendable = this.channel.sendableThrough(dev);
    try {
      this.socket.cork(() => {
        const now = this.now();
        for (let lane = LANES - 1; lane >= 0 && room > 0 && unaccounted > 0; lane--) {
          lanes: for (let rounds = 0; room > 0 && unaccounted > 0 && rounds < 64; rounds++) {
            const batch = this.channel.store.unsent(dev, lane, this.laneSent[lane] as number, room);
            if (batch.length === 0) break;
            for (const u of batch) {
              if (u.seq > sendable) break lanes;
              const previous = this.laneSent[lane] as number;
              this.laneSent[lane] = u.seq;
              unaccounted--;
              // Already with the client, or past its expiry (the sweep reports it): not sent.
              if (u.seq <= this.skipThrough || u.entry.x <= now) continue;
              const e = u.entry;
              const frame = encodeFrame({
                type: 'message', seq: u.seq, redelivery: u.seq <= this.earlierSentHigh, floor: Math.min(this.floor, u.seq),
                priority: lane, createdAt: e.t, expiresAt: e.x, messageId: e.m, classification: e.c, senderUnit: e.u, body: e.b,
              });
              const outcome = this.socket.send(frame);
              if (outcome === 'dropped') {
                this.laneSent[lane] = previous;
                return;
              }
              if (this.inflight.size === 0) this.lastProgressAt = now;
              this.inflight.set(u.seq, lane);
              if (u.seq > this.sentHigh) this.sentHigh = u.seq;
              this.channel.countSent(u.seq <= this.earlierSentHigh);
              room--;
              if (outcome === 'backpressure' || this.socket.bufferedAmount() >= this.limits.highWaterBytes) return;
            }
          }
        }
      });
    } finally {
      this.pumping = false;
      this.channel.inflightChanged(this.inflight.size - before);
    }
  }
}

