/**
 * LinkCore: what an SMPP Bind (src/smpp/bind.ts) and a CMPP link
 * (src/cmpp/link.ts) share — one connection to the carrier with a bounded
 * window, written once:
 *
 *   idle ─▶ connecting ─▶ binding (login sent) ─▶ bound ─▶ unbinding (logout) ─▶ closed
 *              ▲   (timeout / refused / error)          │  (close, error, dead link, peer logout)
 *              └──────── disconnected ◀─────────────────┘   back-off with full jitter
 *
 * The window: each submit takes a slot until its response (or a protocol
 * nack with its sequence number) comes back, or until responseTimeoutMs
 * passes. Outstanding requests (submits, the login, keep-alives, the logout)
 * live in one Map keyed by sequence number; Map iteration is insertion
 * order and every request has the same timeout, so one coarse sweep finds
 * the expired ones at its head and stops at the first live one: no timer per
 * PDU. Records are recycled (at most `window` spare) so the hot path
 * allocates less.
 *
 * Nothing outstanding is dropped silently: when the connection goes, every
 * outstanding submit is reported `lost` to the owner (the pool retries it on
 * another link).
 *
 * Reconnect: exponential back-off with full jitter (a fleet of links that
 * lost the same carrier does not come back in lock-step), reset once a
 * connection stayed bound stableAfterMs.
 *
 * Keep-alive: the sweep asks the protocol whether one is due
 * (`keepAliveDue`) and sends it (`sendKeepAlive`); no answer within
 * responseTimeoutMs drops the connection.
 *
 * What is the protocol's (the subclass's): opening a connection and wiring
 * its frames, the login / keep-alive / logout PDUs, where the sequence number
 * sits in an encoded submit, answering the peer's requests, and its metrics.
 */
import type { Logger } from '../telemetry/logger.js';
import type { LinkEvents, LinkState, PoolLink } from './pool.js';

/** The connection a link drives (SmppSession, CmppConnection). */
export interface CoreConnection {
  write(frame: Buffer): boolean;
  close(): void;
  destroy(): void;
  readonly isClosed: boolean;
  onClose(listener: () => void): void;
}

/** The link's settings from its account. */
export interface LinkCoreSettings {
  readonly account: string;
  readonly index: number;
  readonly window: number;
  readonly responseTimeoutMs: number;
  readonly reconnectInitialMs: number;
  readonly reconnectMaxMs: number;
}

export interface LinkCoreOptions {
  readonly logger: Logger;
  readonly now?: () => number;
  readonly random?: () => number;
  /** Sweep period for timeouts and keep-alive; default clamp(responseTimeoutMs / 4, 20, 250). */
  readonly sweepMs?: number;
  /** TCP (+TLS) connect must finish within this; default max(responseTimeoutMs, 5000). */
  readonly connectTimeoutMs?: number;
  /** A connection that stayed bound this long resets the reconnect back-off; default 1000. */
  readonly stableAfterMs?: number;
}

/** The link's metrics, in its protocol's family of the catalogue. */
export interface LinkMeters {
  reconnect(): void;
  timeout(): void;
  window(inFlight: number): void;
  up(bound: boolean): void;
}

/** Words for log lines and lastError: SMPP bind / enquire_link, CMPP CONNECT / ACTIVE_TEST. */
export interface LinkWords {
  /** 'SMPP bind lost' */
  readonly lost: string;
  /** 'enquire_link timeout' (lastError) */
  readonly keepAliveTimeout: string;
  /** 'no enquire_link_resp: link dead, reconnecting' */
  readonly keepAliveTimeoutLog: string;
  /** 'bind timeout' (lastError) */
  readonly loginTimeout: string;
  /** 'no bind response, reconnecting' */
  readonly loginTimeoutLog: string;
}

export const KIND_SUBMIT = 0;
export const KIND_KEEPALIVE = 1;
export const KIND_LOGIN = 2;
export const KIND_LOGOUT = 3;

export interface Outstanding<T> {
  kind: number;
  token: T | undefined;
  sentAt: number;
}

const MAX_SEQ = 0x7fffffff;

export abstract class LinkCore<T, C extends CoreConnection> implements PoolLink<T> {
  readonly account: string;
  readonly index: number;
  readonly window: number;
  protected readonly log: Logger;
  protected readonly now: () => number;
  private readonly random: () => number;
  private readonly sweepMs: number;
  private readonly connectTimeoutMs: number;
  private readonly stableAfterMs: number;
  private readonly responseTimeoutMs: number;
  private readonly reconnectInitialMs: number;
  private readonly reconnectMaxMs: number;

  private _state: LinkState = 'idle';
  private stateSince = 0;
  protected conn: C | undefined;
  private seq = 0;
  private readonly outstanding = new Map<number, Outstanding<T>>();
  private readonly spare: Outstanding<T>[] = [];
  private _inFlight = 0;
  protected boundAt = 0;
  private reconnectAttempt = 0;
  /** Connection attempts so far (the first is not a reconnect). */
  protected connects = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  protected closing = false;
  private closePromise: Promise<void> | undefined;
  private drainWaiter: (() => void) | undefined;
  private logoutWaiter: (() => void) | undefined;
  protected _lastError: string | undefined;

  /** Byte offset of the sequence number in an encoded submit (SMPP 12, CMPP 8). */
  protected abstract readonly seqOffset: number;
  protected abstract readonly meters: LinkMeters;
  protected abstract readonly words: LinkWords;
  protected abstract readonly events: LinkEvents<T>;

  constructor(settings: LinkCoreSettings, options: LinkCoreOptions, logger: Logger) {
    this.account = settings.account;
    this.index = settings.index;
    this.window = settings.window;
    this.responseTimeoutMs = settings.responseTimeoutMs;
    this.reconnectInitialMs = settings.reconnectInitialMs;
    this.reconnectMaxMs = settings.reconnectMaxMs;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.sweepMs = options.sweepMs ?? Math.min(250, Math.max(20, Math.floor(settings.responseTimeoutMs / 4)));
    this.connectTimeoutMs = options.connectTimeoutMs ?? Math.max(settings.responseTimeoutMs, 5000);
    this.stableAfterMs = options.stableAfterMs ?? 1000;
    this.log = logger;
  }

  // ---------------------------------------------------------------- protocol hooks

  /** Open a connection and wire its frames (check `isCurrent(conn)` in every listener); call `beginLogin` on connect. */
  protected abstract openConnection(): C;
  /** Write the login PDU with `seq` (already tracked). */
  protected abstract writeLogin(conn: C, seq: number): void;
  /** Is a keep-alive due now (the link is bound)? */
  protected abstract keepAliveDue(now: number): boolean;
  /** Write a keep-alive with `seq` (already tracked). */
  protected abstract writeKeepAlive(conn: C, seq: number): void;
  /** Write the logout PDU with `seq` (already tracked). */
  protected abstract writeLogout(conn: C, seq: number): void;
  /** Every outstanding request is gone (connection lost or closed). */
  protected onOutstandingCleared(): void {}

  // ---------------------------------------------------------------- the port

  get state(): LinkState {
    return this._state;
  }

  /** Outstanding submits (window occupancy). */
  get inFlight(): number {
    return this._inFlight;
  }

  /** Window slots a submit can use now: 0 unless bound. */
  get freeWindow(): number {
    return this._state === 'bound' && !this.closing ? this.window - this._inFlight : 0;
  }

  /** The last login or connection failure (cleared once bound). */
  get lastError(): string | undefined {
    return this._lastError;
  }

  /** Begin connecting; reconnects on its own until close(). */
  start(): void {
    if (this._state !== 'idle') return;
    this.sweepTimer = setInterval(this.sweep, this.sweepMs);
    this.sweepTimer.unref();
    this.connect();
  }

  /**
   * Send one encoded submit (its sequence number is written here). Returns
   * false, taking nothing, when the link has no free slot or its connection
   * is gone; otherwise `events.submitDone(token, …)` follows exactly once.
   */
  submit(token: T, pdu: Buffer): boolean {
    const conn = this.conn;
    if (conn === undefined || this._state !== 'bound' || this.closing || this._inFlight >= this.window) return false;
    const seq = this.nextSeq();
    pdu.writeUInt32BE(seq, this.seqOffset);
    if (!conn.write(pdu)) return false;
    this.track(KIND_SUBMIT, seq, token);
    this._inFlight++;
    return true;
  }

  /**
   * Graceful close: stop taking submits, wait (up to drainMs, default
   * responseTimeoutMs) for outstanding responses, log out (waiting up to
   * responseTimeoutMs for its response), then drop the connection. Whatever
   * is still outstanding then is reported `lost`.
   */
  close(drainMs: number = this.responseTimeoutMs): Promise<void> {
    this.closePromise ??= this.doClose(drainMs);
    return this.closePromise;
  }

  /** Drop the connection now (tests, or a caller that knows the link is dead); it reconnects unless closing. */
  dropConnection(): void {
    this.conn?.destroy();
  }

  // ---------------------------------------------------------------- for the protocol

  protected isCurrent(conn: C): boolean {
    return this.conn === conn;
  }

  /** The connection is up: send the login. */
  protected beginLogin(conn: C): void {
    this.setState('binding');
    const seq = this.nextSeq();
    this.track(KIND_LOGIN, seq, undefined);
    this.writeLogin(conn, seq);
  }

  /** The login was accepted: bound. Returns false when the link is closing (it logs out at once). */
  protected loggedIn(): boolean {
    this._lastError = undefined;
    this.boundAt = this.now();
    this.setState('bound');
    return !this.closing;
  }

  /** After loggedIn: tell the owner (or close, when closing). */
  protected announceBound(): void {
    if (this.closing) {
      void this.close();
      return;
    }
    this.events.ready(this);
  }

  /** The peer logs out: answered by the protocol; the connection is closing. */
  protected peerLoggedOut(conn: C): void {
    this.setState('unbinding');
    conn.close();
  }

  /** The outstanding request `seq`, removed; undefined when none (late after its timeout). Call `recycle` after reading it. */
  protected takeOutstanding(seq: number): Outstanding<T> | undefined {
    const e = this.outstanding.get(seq);
    if (e === undefined) return undefined;
    this.outstanding.delete(seq);
    return e;
  }

  /** A submit's answer (taken with takeOutstanding): frees its slot, tells the owner. */
  protected submitAnswered(token: T, kind: 'resp' | 'nack', status: number, messageId: string, sentAt: number): void {
    this._inFlight--;
    this.events.submitDone(token, kind, status, messageId, sentAt);
    if (this.closing) this.wakeDrainIfIdle();
    else this.events.ready(this);
  }

  /** The logout was answered. */
  protected logoutAnswered(): void {
    this.wakeLogout();
  }

  protected recycle(e: Outstanding<T>): void {
    e.token = undefined;
    if (this.spare.length < this.window) this.spare.push(e);
  }

  // ---------------------------------------------------------------- connect

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closing) return;
    if (this.connects++ > 0) this.meters.reconnect();
    this.setState('connecting');
    this.seq = 0;
    const conn = this.openConnection();
    this.conn = conn;
    conn.onClose(() => this.connectionClosed(conn));
  }

  private connectionClosed(conn: C): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    const wasBound = this._state === 'bound' || this._state === 'unbinding';
    const boundFor = wasBound ? this.now() - this.boundAt : 0;
    const unexpected = this._state === 'bound' && !this.closing;
    // Leave `bound` before reporting losses, so the owner does not pick this link to retry them.
    this.setState(this.closing ? 'closed' : 'disconnected');
    if (unexpected) this.log.warn({ boundForMs: boundFor, outstanding: this._inFlight, error: this._lastError }, this.words.lost);
    this.failOutstanding();
    if (this.closing) return;
    if (boundFor >= this.stableAfterMs) this.reconnectAttempt = 0;
    const ceiling = Math.min(this.reconnectMaxMs, this.reconnectInitialMs * 2 ** Math.min(this.reconnectAttempt, 30));
    this.reconnectAttempt++;
    this.reconnectTimer = setTimeout(() => this.connect(), Math.floor(this.random() * ceiling));
  }

  private failOutstanding(): void {
    this.onOutstandingCleared();
    if (this.outstanding.size === 0) return;
    // Detach first: submitDone may lead the owner to call submit() on other links (never this one: not bound).
    const entries = [...this.outstanding.values()];
    this.outstanding.clear();
    this._inFlight = 0;
    for (const e of entries) {
      if (e.kind === KIND_SUBMIT) this.events.submitDone(e.token as T, 'lost', 0, '', e.sentAt);
      else if (e.kind === KIND_LOGOUT) this.wakeLogout();
    }
    this.wakeDrain();
  }

  // ---------------------------------------------------------------- sweep

  private readonly sweep = (): void => {
    const now = this.now();
    const timeout = this.responseTimeoutMs;
    let freed = false;
    for (const [seq, e] of this.outstanding) {
      if (now - e.sentAt < timeout) break; // insertion order = send order, one timeout for all
      this.outstanding.delete(seq);
      const { kind, token, sentAt } = e;
      this.recycle(e);
      if (kind === KIND_SUBMIT) {
        this._inFlight--;
        freed = true;
        this.meters.timeout();
        this.events.submitDone(token as T, 'timeout', 0, '', sentAt);
      } else if (kind === KIND_KEEPALIVE) {
        this._lastError = this.words.keepAliveTimeout;
        this.log.warn({ timeoutMs: timeout }, this.words.keepAliveTimeoutLog);
        this.conn?.destroy();
        return;
      } else if (kind === KIND_LOGIN) {
        this._lastError = this.words.loginTimeout;
        this.log.warn({ timeoutMs: timeout }, this.words.loginTimeoutLog);
        this.conn?.destroy();
        return;
      } else {
        this.wakeLogout();
      }
    }
    if (this._state === 'connecting' && now - this.stateSince > this.connectTimeoutMs) {
      this._lastError = 'connect timeout';
      this.conn?.destroy();
    }
    const conn = this.conn;
    if (this._state === 'bound' && conn !== undefined && this.keepAliveDue(now)) {
      const seq = this.nextSeq();
      this.track(KIND_KEEPALIVE, seq, undefined);
      this.writeKeepAlive(conn, seq);
    }
    this.meters.window(this._inFlight);
    if (freed) {
      if (this.closing) this.wakeDrainIfIdle();
      else this.events.ready(this);
    }
  };

  // ---------------------------------------------------------------- close

  private async doClose(drainMs: number): Promise<void> {
    this.closing = true;
    if (this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
    }
    if (this._state === 'bound' && this._inFlight > 0) {
      await this.waitFor((wake) => (this.drainWaiter = wake), drainMs);
      this.drainWaiter = undefined;
    }
    const conn = this.conn;
    if (conn !== undefined && this._state === 'bound') {
      this.setState('unbinding');
      const seq = this.nextSeq();
      this.track(KIND_LOGOUT, seq, undefined);
      this.writeLogout(conn, seq);
      await this.waitFor((wake) => (this.logoutWaiter = wake), this.responseTimeoutMs);
      this.logoutWaiter = undefined;
    }
    if (this.conn !== undefined) {
      const c = this.conn;
      await new Promise<void>((resolve) => {
        c.onClose(resolve);
        if (c.isClosed) resolve();
        else c.destroy();
      });
    }
    // A connection that never came up (or was between reconnects) has no close event to do this.
    this.failOutstanding();
    this.setState('closed');
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.meters.window(0);
  }

  private waitFor(register: (wake: () => void) => void, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      register(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wakeDrainIfIdle(): void {
    if (this._inFlight === 0) this.wakeDrain();
  }

  private wakeDrain(): void {
    const w = this.drainWaiter;
    this.drainWaiter = undefined;
    w?.();
  }

  private wakeLogout(): void {
    const w = this.logoutWaiter;
    this.logoutWaiter = undefined;
    w?.();
  }

  // ---------------------------------------------------------------- helpers

  private nextSeq(): number {
    // Skip numbers still outstanding after a wrap (needs 2^31 PDUs on one connection; cheap to be right).
    do {
      this.seq = this.seq >= MAX_SEQ ? 1 : this.seq + 1;
    } while (this.outstanding.has(this.seq));
    return this.seq;
  }

  private track(kind: number, seq: number, token: T | undefined): void {
    const e = this.spare.pop();
    if (e !== undefined) {
      e.kind = kind;
      e.token = token;
      e.sentAt = this.now();
      this.outstanding.set(seq, e);
    } else {
      this.outstanding.set(seq, { kind, token, sentAt: this.now() });
    }
  }

  protected setState(state: LinkState): void {
    if (this._state === state) return;
    this._state = state;
    this.stateSince = this.now();
    this.meters.up(state === 'bound');
    this.events.stateChanged?.(this, state);
  }
}
