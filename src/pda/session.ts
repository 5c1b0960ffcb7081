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
import { LANES, type UnsentEntry } from './store.js';

export type SendOutcome = 'ok' | 'backpressure' | 'dropped';

/** What a session needs from its transport. */
export interface SessionSocket {
  /** Send one binary frame. Must copy it (or write it out) before returning: the caller reuses the bytes. */
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
  /** seq → what was sent under it (lane, entry), for MESSAGE frames not yet acknowledged. */
  readonly inflight = new Map<number, UnsentEntry>();
  /** Highest sequence sent per lane in this session. */
  private readonly laneSent: number[] = new Array<number>(LANES).fill(0);
  /** Highest sequence sent in this session / in earlier sessions (from the cursor). */
  sentHigh = 0;
  private earlierSentHigh = 0;
  private lastProgressAt = 0;
  private pumping = false;
  /**
   * Entries in the device's outbox as of the latest commit that changed it
   * (read at WELCOME, then told by the channel after every commit): when
   * every one is in flight, a pump has nothing to read.
   */
  private outboxCount = 0;
  /**
   * Every committed entry of every lane has been read (sent or skipped) by
   * this session, as far as the commits it was told about go: the last pass
   * read each lane to its end, and every append since was sent whole from
   * `appended`. Only then may fresh appends be sent without a read — they
   * are the only unsent entries. Any pass or hand-off that stops early
   * clears it; the next full pass sets it again.
   */
  private drained = false;
  /** A hand-off arrived while a pass was running: pump again after it. */
  private repump = false;
  /** The hand-off being sent (`sendFresh`). */
  private fresh: readonly UnsentEntry[] = [];
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
    // A Buffer view of uWS's ArrayBuffer (no copy; the decoder would wrap a plain Uint8Array once more).
    const bytes = data instanceof Uint8Array ? data : Buffer.from(data);
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
      // The steady state's frame, an ACK on a ready session, skips the dispatch that also holds the handshake.
      if (f.type === 'ack' && this.phase === 'ready') this.ack(f);
      else this.dispatch(f);
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
    this.channel.sessionReady(this);
    if (this.phase !== 'ready') return; // refused while attaching (shutting down)
    const cursor = this.channel.store.cursorOf(deviceId);
    this.earlierSentHigh = cursor?.s ?? 0;
    this.outboxCount = cursor?.c ?? 0;
    // Nothing committed for this device yet: whatever comes next comes through `appended`, in commit order.
    this.drained = this.outboxCount === 0;
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

  /** What this session sent under a sequence still in flight (lets the ack transaction skip the lookups). */
  sentAs(seq: number): UnsentEntry | undefined {
    return this.inflight.get(seq);
  }

  /** A commit changed the device's outbox: it now holds `entries`. */
  outboxChanged(entries: number): void {
    this.outboxCount = entries;
  }

  /** Another process changed this device's outbox: take its count from the store and send what is new. */
  outboxFromStore(): void {
    if (this.phase !== 'ready' || this.deviceId === undefined) return;
    const cur = this.channel.store.cursorOf(this.deviceId);
    if (cur !== undefined) this.outboxCount = cur.c;
    this.pump();
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
    if (this.phase !== 'ready') return;
    if (this.pumping) {
      this.repump = true;
      return;
    }
    const p = this.pass;
    p.room = this.limits.window - this.inflight.size;
    // Entries not yet accounted for (committed count minus those in flight): none, no pass (the common case
    // after an ack). Stale by acks committed but not yet applied here, it can only skip a pass too early,
    // and applying those acks pumps again.
    if (p.room <= 0 || this.outboxCount - this.inflight.size <= 0) return;
    this.run(this.sendPass);
  }

  /**
   * A commit appended `fresh` to this device's outbox (sequence order). When
   * everything before was sent (`drained`), these are the only unsent
   * entries: sent as they are, highest lane first — the broadcast path, no
   * read. Otherwise a normal pass.
   */
  appended(fresh: readonly UnsentEntry[]): void {
    if (this.phase !== 'ready') return;
    if (this.pumping) {
      this.drained = false;
      this.repump = true;
      return;
    }
    if (!this.drained) {
      this.pump();
      return;
    }
    this.fresh = fresh.length > 1 ? [...fresh].sort((a, b) => b.lane - a.lane || a.seq - b.seq) : fresh;
    this.pass.room = this.limits.window - this.inflight.size;
    this.run(this.sendFresh);
    this.fresh = [];
  }

  /** Run a send pass corked, with the socket's buffered amount and the sendable limit. */
  private run(pass: () => void): void {
    const p = this.pass;
    // What uWS holds for this socket, plus what this pass wrote since it last asked: asked again only once
    // that could reach the high-water mark (a broadcast's one small frame never asks twice).
    p.buffered = this.socket.bufferedAmount();
    if (p.buffered >= this.limits.highWaterBytes) {
      // Full: `drain` pumps again (with a read: what was handed over now is not sent).
      this.drained = false;
      return;
    }
    // Appended but not yet flushed: not sent (store.write says why); the flush pumps again.
    p.sendable = this.channel.sendableThrough(this.deviceId as string);
    this.pumping = true;
    const before = this.inflight.size;
    try {
      this.socket.cork(pass);
    } finally {
      this.pumping = false;
      this.channel.inflightChanged(this.inflight.size - before);
    }
    if (this.repump) {
      this.repump = false;
      this.pump();
    }
  }

  /**
   * Send one entry read from the outbox or handed over: false when the pass
   * must stop (window, socket, not yet flushed). `laneSent` has moved past it.
   */
  private sendEntry(u: UnsentEntry, now: number): boolean {
    const p = this.pass;
    if (p.room <= 0 || p.buffered >= this.limits.highWaterBytes || u.seq > p.sendable) return false;
    const previous = this.laneSent[u.lane] as number;
    this.laneSent[u.lane] = u.seq;
    // Already with the client, or past its expiry (the sweep reports it): not sent.
    if (u.seq <= this.skipThrough || u.entry.x <= now) return true;
    // The text is stored (and encoded) once per message; only seq, floor and flags differ per device.
    const body = u.body ?? this.channel.store.bodyOf(u.entry);
    if (body === undefined) return true; // expired and swept since the read
    const redelivery = u.seq <= this.earlierSentHigh;
    const frame = this.channel.messageTemplate(u, body).stamp(u.seq, Math.min(this.floor, u.seq), redelivery);
    const outcome = this.socket.send(frame);
    if (outcome === 'dropped') {
      this.laneSent[u.lane] = previous;
      return false;
    }
    if (this.inflight.size === 0) this.lastProgressAt = now;
    this.inflight.set(u.seq, u);
    if (u.seq > this.sentHigh) this.sentHigh = u.seq;
    this.channel.countSent(redelivery);
    p.room--;
    if (outcome === 'backpressure') {
      p.buffered = this.limits.highWaterBytes;
      return true;
    }
    p.buffered += frame.length;
    if (p.buffered >= this.limits.highWaterBytes) p.buffered = this.socket.bufferedAmount();
    return true;
  }

  /** State of the pump pass in progress (one object per session, not one per pass). */
  private readonly pass = { room: 0, buffered: 0, sendable: 0 };

  /** The corked part of `pump` (bound once: no closure per pass). */
  private readonly sendPass = (): void => {
    const p = this.pass;
    const dev = this.deviceId as string;
    const now = this.now();
    this.drained = false;
    let exhausted = 0;
    // Every lane is read to its end (an empty lane costs one small range read): that is what proves
    // `drained`. The committed count only decides whether a pass happens at all (pump).
    for (let lane = LANES - 1; lane >= 0 && p.room > 0; lane--) {
      for (let rounds = 0; p.room > 0 && rounds < 64; rounds++) {
        const asked = p.room;
        const batch = this.channel.store.unsent(dev, lane, this.laneSent[lane] as number, asked);
        for (const u of batch) if (!this.sendEntry(u, now)) return;
        if (batch.length < asked) {
          // The lane had no more (a later append comes through `appended`).
          exhausted++;
          break;
        }
      }
    }
    if (exhausted === LANES) this.drained = true;
  };

  /** The corked part of `appended`. */
  private readonly sendFresh = (): void => {
    const now = this.now();
    const list = this.fresh;
    for (let i = 0; i < list.length; i++) {
      const u = list[i] as UnsentEntry;
      if (u.seq <= (this.laneSent[u.lane] as number)) continue; // a pass read it already
      if (!this.sendEntry(u, now)) {
        this.drained = false;
        return;
      }
    }
  };
}

