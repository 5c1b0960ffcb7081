/**
 * Reference PDA client (Node, over the `ws` package): what a device does,
 * written down in code. Used by the simulator, the tests and the benchmark,
 * and the model for a device implementation.
 *
 * Delivery is at-least-once on the wire and exactly-once to the officer:
 * the client remembers what it has (cumulative ack + the sequences above
 * it, and a bounded set of recent message ids) across reconnects, shows a
 * message only the first time its id is seen, and acknowledges every copy
 * it receives, duplicates included, so the server can stop resending.
 *
 * Acks are batched: all MESSAGE frames that arrive in one event-loop turn
 * are acknowledged by one ACK frame (or sooner, every `ackEvery` frames).
 */
import WebSocket from 'ws';
import {
  CLOSE_REASON,
  MAX_ACK_LIST,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  WS_CLOSE_BASE,
  decodeFrame,
  encodeFrame,
  reasonName,
  type Frame,
  type MessageFrame,
  type WelcomeFrame,
} from './codec.js';
import { decodeDeviceKey, responseMac } from './keys.js';

/** Message ids remembered for de-duplication (beyond what the sequence numbers already cover). */
export const SEEN_IDS = 10_000;

/** What a device keeps across connections (on a real PDA: on disk). */
export interface PdaClientState {
  /** Every sequence ≤ lastAck is received (or settled by the server). */
  lastAck: number;
  /** Received sequences above lastAck. */
  readonly above: Set<number>;
  /** Recent message ids, oldest first (insertion order), at most SEEN_IDS. */
  readonly seenIds: Set<string>;
}

/**
 * Clients with an ACK due, flushed by one setImmediate for all of them: a
 * simulator holding 5,000 devices schedules one callback per event-loop
 * turn, not one per device.
 */
const ackDue = new Set<PdaClient>();
let ackFlushScheduled = false;

function flushDueAcks(): void {
  ackFlushScheduled = false;
  const due = [...ackDue];
  ackDue.clear();
  for (const c of due) c.ack();
}

export function newClientState(): PdaClientState {
  return { lastAck: 0, above: new Set(), seenIds: new Set() };
}

export interface PdaClientOptions {
  /** ws://host:port/v1/pda or wss://… */
  readonly url: string;
  readonly deviceId: string;
  /** The device key: 32 bytes, or its base64url form. */
  readonly key: Uint8Array | string;
  readonly state?: PdaClientState;
  /** A message seen for the first time (by id). */
  readonly onMessage?: (m: MessageFrame) => void;
  /** Every MESSAGE frame, before de-duplication (`duplicate` true when already seen). */
  readonly onFrame?: (m: MessageFrame, duplicate: boolean) => void;
  /** Send ACKs automatically (default true). */
  readonly autoAck?: boolean;
  /** Acknowledge at once when this many frames wait (default 64). */
  readonly ackEvery?: number;
  /** Protocol PINGs every WELCOME.heartbeatSec (default true). */
  readonly heartbeat?: boolean;
  readonly handshakeTimeoutMs?: number;
  readonly protocolVersion?: number;
  /** wss://: certificates to trust instead of the system's (PEM), e.g. a private CA or a self-signed server certificate. */
  readonly ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** For TLS test setups with a self-signed certificate. */
  readonly rejectUnauthorized?: boolean;
}

export interface PdaCloseInfo {
  /** WebSocket close code (4000 + reason for protocol closes; 1006 when the link died). */
  readonly code: number;
  /** Protocol close reason when there was one (from the CLOSE frame or the close code). */
  readonly reason?: number;
  readonly reasonName?: string;
  readonly text: string;
}

export class PdaClosedError extends Error {
  constructor(readonly info: PdaCloseInfo) {
    super(`PDA session closed: ${info.reasonName ?? `code ${info.code}`}${info.text ? ` (${info.text})` : ''}`);
    this.name = 'PdaClosedError';
  }
}

export class PdaClient {
  readonly state: PdaClientState;
  /** Resolves when the connection is gone, whoever closed it. */
  readonly closed: Promise<PdaCloseInfo>;
  welcome: WelcomeFrame | undefined;
  /** Counters: frames received, duplicates (by seq or id), ACK frames sent. */
  readonly counts = { messages: 0, duplicates: 0, acks: 0, pongs: 0 };

  private readonly ws: WebSocket;
  private readonly key: Buffer;
  private readonly pendingAck = new Set<number>();
  private needAck = false;
  private ackScheduled = false;
  private closeFrame: { reason: number; text: string } | undefined;
  private resolveClosed!: (info: PdaCloseInfo) => void;
  private connectWaiter: { resolve: (w: WelcomeFrame) => void; reject: (e: Error) => void } | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private pingToken = 0;
  private cut = false;
  private readonly pingWaiters = new Map<number, { at: number; resolve: (ms: number) => void }>();

  constructor(private readonly opts: PdaClientOptions) {
    this.state = opts.state ?? newClientState();
    this.key = typeof opts.key === 'string' ? decodeDeviceKey(opts.key) : Buffer.from(opts.key);
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.ws = new WebSocket(opts.url, {
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      ...(opts.ca !== undefined ? { ca: opts.ca as string | Buffer | Array<string | Buffer> } : {}),
      ...(opts.rejectUnauthorized !== undefined ? { rejectUnauthorized: opts.rejectUnauthorized } : {}),
    });
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('open', () => {
      this.send({ type: 'hello', version: opts.protocolVersion ?? PROTOCOL_VERSION, deviceId: opts.deviceId, lastAck: this.state.lastAck });
    });
    this.ws.on('message', (data: Buffer, isBinary: boolean) => this.onData(data, isBinary));
    this.ws.on('error', () => {
      // Always followed by 'close', which settles everything.
    });
    this.ws.on('close', (code: number, reason: Buffer) => this.onClose(code, reason.toString('utf8')));
  }

  /** Resolves on WELCOME; rejects with PdaClosedError if the session ends first. */
  connect(): Promise<WelcomeFrame> {
    if (this.welcome) return Promise.resolve(this.welcome);
    return new Promise((resolve, reject) => {
      this.connectWaiter = { resolve, reject };
      this.handshakeTimer = setTimeout(() => {
        this.terminate();
      }, this.opts.handshakeTimeoutMs ?? 10_000);
      this.handshakeTimer.unref();
    });
  }

  /** Send an ACK now for everything received and not yet acknowledged. */
  ack(): void {
    if (this.ackScheduled) {
      this.ackScheduled = false;
      ackDue.delete(this);
    }
    if (!this.needAck || this.ws.readyState !== WebSocket.OPEN) return;
    let above: number[];
    if (this.pendingAck.size === 1) {
      // The common case (one message this turn): no sort.
      const only = this.pendingAck.values().next().value as number;
      above = only > this.state.lastAck ? [only] : [];
    } else above = [...this.pendingAck].filter((s) => s > this.state.lastAck).sort((a, b) => a - b);
    const selective = above.length > MAX_ACK_LIST ? above.slice(0, MAX_ACK_LIST) : above;
    this.pendingAck.clear();
    if (above.length > MAX_ACK_LIST) for (const s of above.slice(MAX_ACK_LIST)) this.pendingAck.add(s);
    this.needAck = this.pendingAck.size > 0;
    this.send({ type: 'ack', cumulative: this.state.lastAck, selective });
    this.counts.acks++;
    if (this.needAck) this.scheduleAck();
  }

  /** Report that the officer opened these messages (by sequence). */
  read(seqs: readonly number[]): void {
    const sorted = [...new Set(seqs)].sort((a, b) => a - b);
    for (let i = 0; i < sorted.length; i += MAX_ACK_LIST) this.send({ type: 'read', seqs: sorted.slice(i, i + MAX_ACK_LIST) });
  }

  /** Round trip of a protocol PING, in ms. */
  ping(): Promise<number> {
    const token = (this.pingToken = (this.pingToken + 1) >>> 0);
    return new Promise((resolve) => {
      this.pingWaiters.set(token, { at: performance.now(), resolve });
      this.send({ type: 'ping', token });
    });
  }

  /** Graceful: CLOSE frame, then the WebSocket close. */
  close(): Promise<PdaCloseInfo> {
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ack();
      this.send({ type: 'close', reason: CLOSE_REASON.NORMAL, text: 'bye' });
      this.ws.close(WS_CLOSE_BASE + CLOSE_REASON.NORMAL, 'bye');
    } else if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    return this.closed;
  }

  /** Abrupt: drop the TCP connection (a tunnel, a dead battery). Nothing more is sent or taken in. */
  terminate(): void {
    // Frames already read from the socket would still be parsed and emitted: a cut link delivers nothing more.
    this.cut = true;
    this.ws.terminate();
  }

  /** Stop reading from the socket (a slow device): the server must hold back, not drop. */
  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  /** Raw bytes on the socket (tests and fuzzing). */
  sendRaw(bytes: Uint8Array | string, binary = true): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes, { binary });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  // ---------------------------------------------------------------- internals

  private send(f: Frame): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(encodeFrame(f), { binary: true });
  }

  private scheduleAck(): void {
    if (this.ackScheduled || this.opts.autoAck === false) return;
    this.ackScheduled = true;
    ackDue.add(this);
    if (!ackFlushScheduled) {
      ackFlushScheduled = true;
      setImmediate(flushDueAcks);
    }
  }

  private onData(data: Buffer, isBinary: boolean): void {
    if (this.cut) return;
    if (!isBinary) return this.protocolError('text frame from the server');
    const r = decodeFrame(data);
    if (!r.ok) return this.protocolError(r.detail);
    const f = r.frame;
    switch (f.type) {
      case 'challenge': {
        if (!f.nonce) return;
        this.send({ type: 'response', mac: responseMac(this.key, f.nonce, this.opts.deviceId) });
        return;
      }
      case 'welcome': {
        this.welcome = f;
        this.settleFloor(f.floor);
        if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
        if (this.opts.heartbeat !== false && f.heartbeatSec > 0) {
          this.heartbeatTimer = setInterval(() => this.send({ type: 'ping', token: 0 }), f.heartbeatSec * 1000);
          this.heartbeatTimer.unref();
        }
        this.connectWaiter?.resolve(f);
        this.connectWaiter = undefined;
        return;
      }
      case 'message':
        return this.onMessage(f);
      case 'ping':
        this.send({ type: 'pong', token: f.token });
        return;
      case 'pong': {
        this.counts.pongs++;
        const w = this.pingWaiters.get(f.token);
        if (w) {
          this.pingWaiters.delete(f.token);
          w.resolve(performance.now() - w.at);
        }
        return;
      }
      case 'close':
        this.closeFrame = { reason: f.reason, text: f.text };
        return;
      default:
        return this.protocolError(`${f.type} is a client frame`);
    }
  }

  private onMessage(f: MessageFrame): void {
    const st = this.state;
    this.settleFloor(f.floor);
    this.counts.messages++;
    const haveSeq = f.seq <= st.lastAck || st.above.has(f.seq);
    const haveId = st.seenIds.has(f.messageId);
    if (!haveSeq) {
      st.above.add(f.seq);
      while (st.above.has(st.lastAck + 1)) {
        st.above.delete(st.lastAck + 1);
        st.lastAck++;
      }
    }
    const duplicate = haveSeq || haveId;
    if (duplicate) this.counts.duplicates++;
    else {
      st.seenIds.add(f.messageId);
      if (st.seenIds.size > SEEN_IDS) st.seenIds.delete(st.seenIds.values().next().value as string);
    }
    // Acknowledge every copy, duplicates too: the server resends until it hears an ack.
    this.pendingAck.add(f.seq);
    this.needAck = true;
    this.opts.onFrame?.(f, duplicate);
    if (!duplicate) this.opts.onMessage?.(f);
    if (this.pendingAck.size >= (this.opts.ackEvery ?? 64)) this.ack();
    else this.scheduleAck();
  }

  /** Everything below `floor` is settled on the server: our cumulative ack may move past holes. */
  private settleFloor(floor: number): void {
    const st = this.state;
    if (floor - 1 > st.lastAck) {
      st.lastAck = floor - 1;
      for (const s of st.above) if (s <= st.lastAck) st.above.delete(s);
      while (st.above.has(st.lastAck + 1)) {
        st.above.delete(st.lastAck + 1);
        st.lastAck++;
      }
    }
  }

  private protocolError(detail: string): void {
    this.closeFrame = { reason: CLOSE_REASON.PROTOCOL_ERROR, text: detail.slice(0, 100) };
    this.send({ type: 'close', reason: CLOSE_REASON.PROTOCOL_ERROR, text: this.closeFrame.text });
    this.ws.close(WS_CLOSE_BASE + CLOSE_REASON.PROTOCOL_ERROR, 'protocol error');
  }

  private onClose(code: number, text: string): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    const reason = this.closeFrame?.reason ?? (code >= WS_CLOSE_BASE && code < WS_CLOSE_BASE + 100 ? code - WS_CLOSE_BASE : undefined);
    const info: PdaCloseInfo = {
      code,
      text: this.closeFrame?.text ?? text,
      ...(reason !== undefined ? { reason, reasonName: reasonName(reason) } : {}),
    };
    for (const w of this.pingWaiters.values()) w.resolve(NaN);
    this.pingWaiters.clear();
    if (this.connectWaiter) {
      this.connectWaiter.reject(new PdaClosedError(info));
      this.connectWaiter = undefined;
    }
    this.resolveClosed(info);
  }
}
