/**
 * One CMPP connection of an SP account to an ISMG: CONNECT, a bounded window
 * of outstanding CMPP_SUBMIT, ACTIVE_TEST both ways, TERMINATE, reconnect.
 *
 *   idle ─▶ connecting ─▶ binding (CONNECT sent) ─▶ bound ─▶ unbinding (TERMINATE) ─▶ closed
 *              ▲   (timeout / refused / error)          │  (close, error, dead link, ISMG TERMINATE)
 *              └──────── disconnected ◀─────────────────┘   back-off with full jitter
 *
 * As the SMPP Bind: outstanding requests live in one Map keyed by
 * Sequence_Id in send order, one coarse sweep finds the timed-out ones at its
 * head; nothing outstanding is dropped silently (a lost connection reports
 * every outstanding submit `lost` to the pool, which retries it).
 *
 * Authentication: AuthenticatorSource = MD5(SP_Id + 9 × 0x00 + secret +
 * MMDDHHMMSS). The ISMG's AuthenticatorISMG is checked and a mismatch is
 * logged as a warning, not a failure: ISMGs differ in how they compute it
 * (1- or 4-octet Status in 3.0, some send zeros). A refused CONNECT names its
 * status (CMPP_CONNECT_AUTH_FAILED, …) as lastError and reconnects with back-off.
 *
 * Liveness: after `activeTestMs` without any frame from the ISMG, an
 * ACTIVE_TEST; no ACTIVE_TEST_RESP within responseTimeoutMs → reconnect. The
 * ISMG's ACTIVE_TEST is answered at once. A DELIVER is answered with
 * DELIVER_RESP (echoing its Msg_Id) only once the owner's promise resolves
 * with the Result (0 after the durable write).
 */
import type { CmppAccountConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { LinkEvents, LinkState, PoolLink } from '../transport/pool.js';
import {
  COMMAND,
  VERSION_BYTE,
  authenticatorIsmg,
  authenticatorSource,
  connectStatusName,
  encodePdu,
  timestampText,
  type CmppPdu,
  type CmppVersion,
  type DeliverPdu,
} from './codec.js';
import { CmppConnection } from './connection.js';

/** DELIVER_RESP Result for "try again later" (9: other error; the ISMG re-sends). */
export const DELIVER_RETRY_RESULT = 9;
/**
 * DELIVER_RESP Result while storage is full (8: flow control). The
 * specification has no "temporary" Result; 8 is the one an ISMG reads as
 * "the peer cannot take it now", so it keeps the report / MO and re-sends.
 */
export const DELIVER_STORAGE_FULL_RESULT = 8;
/** DELIVER_RESP Result for a DELIVER we could not parse (1: message structure error). */
export const DELIVER_BAD_STRUCTURE = 1;

export interface CmppLinkEvents<T> extends LinkEvents<T> {
  /** A DELIVER arrived; resolve with the DELIVER_RESP Result (0 once durable). A rejection answers DELIVER_RETRY_RESULT. */
  deliver(pdu: DeliverPdu): Promise<number>;
}

export interface CmppLinkOptions<T> {
  readonly account: CmppAccountConfig;
  readonly index: number;
  readonly events: CmppLinkEvents<T>;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly now?: () => number;
  readonly random?: () => number;
  /** Sweep period; default clamp(responseTimeoutMs / 4, 20, 250). */
  readonly sweepMs?: number;
  /** TCP connect must finish within this; default max(responseTimeoutMs, 5000). */
  readonly connectTimeoutMs?: number;
  /** Connected this long resets the reconnect back-off; default 1000. */
  readonly stableAfterMs?: number;
}

const KIND_SUBMIT = 0;
const KIND_ACTIVE = 1;
const KIND_CONNECT = 2;
const KIND_TERMINATE = 3;

interface Outstanding<T> {
  kind: number;
  token: T | undefined;
  sentAt: number;
}

const MAX_SEQ = 0x7fffffff;

export function versionOf(account: Pick<CmppAccountConfig, 'protocol'>): CmppVersion {
  return account.protocol === 'cmpp2' ? 2 : 3;
}

export class CmppLink<T> implements PoolLink<T> {
  readonly account: string;
  readonly index: number;
  readonly window: number;
  readonly version: CmppVersion;
  private readonly cfg: CmppAccountConfig;
  private readonly events: CmppLinkEvents<T>;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sweepMs: number;
  private readonly connectTimeoutMs: number;
  private readonly stableAfterMs: number;
  private readonly labels: { account: string; link: string };

  private _state: LinkState = 'idle';
  private stateSince = 0;
  private conn: CmppConnection | undefined;
  private seq = 0;
  private readonly outstanding = new Map<number, Outstanding<T>>();
  private _inFlight = 0;
  private lastHeardAt = 0;
  private activeOutstanding = false;
  private boundAt = 0;
  private reconnectAttempt = 0;
  private connects = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private drainWaiter: (() => void) | undefined;
  private terminateWaiter: (() => void) | undefined;
  private _lastError: string | undefined;
  private authSent: Uint8Array | undefined;
  private badFrames = 0;
  private deliverFailures = 0;

  constructor(options: CmppLinkOptions<T>) {
    this.cfg = options.account;
    this.account = options.account.name;
    this.index = options.index;
    this.window = options.account.window;
    this.version = versionOf(options.account);
    this.events = options.events;
    this.metrics = options.metrics;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.sweepMs = options.sweepMs ?? Math.min(250, Math.max(20, Math.floor(options.account.responseTimeoutMs / 4)));
    this.connectTimeoutMs = options.connectTimeoutMs ?? Math.max(options.account.responseTimeoutMs, 5000);
    this.stableAfterMs = options.stableAfterMs ?? 1000;
    this.labels = { account: this.account, link: String(this.index) };
    this.log = options.logger.child({ account: this.account, link: this.index });
  }

  get state(): LinkState {
    return this._state;
  }

  get inFlight(): number {
    return this._inFlight;
  }

  get freeWindow(): number {
    return this._state === 'bound' && !this.closing ? this.window - this._inFlight : 0;
  }

  get lastError(): string | undefined {
    return this._lastError;
  }

  start(): void {
    if (this._state !== 'idle') return;
    this.sweepTimer = setInterval(this.sweep, this.sweepMs);
    this.sweepTimer.unref();
    this.connect();
  }

  /** Send one encoded CMPP_SUBMIT (Sequence_Id written into octets 8..11 here). */
  submit(token: T, pdu: Buffer): boolean {
    const conn = this.conn;
    if (conn === undefined || this._state !== 'bound' || this.closing || this._inFlight >= this.window) return false;
    const seq = this.nextSeq();
    pdu.writeUInt32BE(seq, 8);
    if (!conn.write(pdu)) return false;
    this.track(KIND_SUBMIT, seq, token);
    this._inFlight++;
    return true;
  }

  /** Graceful: stop taking submits, wait for outstanding responses (≤ responseTimeoutMs), TERMINATE, close. */
  close(drainMs: number = this.cfg.responseTimeoutMs): Promise<void> {
    this.closePromise ??= this.doClose(drainMs);
    return this.closePromise;
  }

  /** Drop the connection now (tests); it reconnects unless closing. */
  dropConnection(): void {
    this.conn?.destroy();
  }

  // ---------------------------------------------------------------- connect

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closing) return;
    if (this.connects++ > 0) this.metrics?.cmppReconnects.inc({ account: this.account });
    this.setState('connecting');
    this.seq = 0;
    const conn = CmppConnection.connect(this.cfg.host, this.cfg.port, this.version);
    this.conn = conn;
    conn.onConnect(() => {
      if (this.conn === conn) this.sendConnect(conn);
    });
    conn.onPdu((pdu) => {
      if (this.conn !== conn) return;
      this.lastHeardAt = this.now();
      this.onPdu(conn, pdu);
    });
    conn.onBadFrame((bad) => {
      if (this.conn !== conn) return;
      this.lastHeardAt = this.now();
      if (this.badFrames++ % 100 === 0) this.log.warn({ error: bad.error, commandId: bad.commandId, total: this.badFrames }, 'undecodable CMPP frame from the ISMG (sampled)');
      if (bad.commandId === COMMAND.DELIVER) {
        // Answer it so the ISMG does not re-send a frame that will never parse; the Msg_Id is unknown.
        conn.write(encodePdu({ command: 'deliver_resp', sequenceId: bad.sequenceId, msgId: '0', result: DELIVER_BAD_STRUCTURE }, this.version));
        this.metrics?.cmppDelivers.inc({ account: this.account, kind: 'bad', result: String(DELIVER_BAD_STRUCTURE) });
      }
    });
    conn.onError((err) => {
      if (this.conn !== conn) return;
      this._lastError = (err as NodeJS.ErrnoException).code ?? err.message;
      this.log.debug({ err: err.message }, 'CMPP connection error');
    });
    conn.onClose(() => this.onClosed(conn));
  }

  private sendConnect(conn: CmppConnection): void {
    this.setState('binding');
    const now = this.now();
    const ts = timestampText(now, this.cfg.utcOffsetMinutes);
    const auth = authenticatorSource(this.cfg.spId, this.cfg.sharedSecret, ts);
    this.authSent = auth;
    const seq = this.nextSeq();
    this.track(KIND_CONNECT, seq, undefined);
    conn.write(encodePdu({ command: 'connect', sequenceId: seq, sourceAddr: this.cfg.spId, authenticatorSource: auth, version: VERSION_BYTE[this.version], timestamp: Number(ts) }, this.version));
  }

  private onClosed(conn: CmppConnection): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    const wasBound = this._state === 'bound' || this._state === 'unbinding';
    const boundFor = wasBound ? this.now() - this.boundAt : 0;
    const unexpected = this._state === 'bound' && !this.closing;
    this.setState(this.closing ? 'closed' : 'disconnected');
    if (unexpected) this.log.warn({ boundForMs: boundFor, outstanding: this._inFlight, error: this._lastError }, 'CMPP link lost');
    this.failOutstanding();
    if (this.closing) return;
    if (boundFor >= this.stableAfterMs) this.reconnectAttempt = 0;
    const ceiling = Math.min(this.cfg.reconnectMaxMs, this.cfg.reconnectInitialMs * 2 ** Math.min(this.reconnectAttempt, 30));
    this.reconnectAttempt++;
    this.reconnectTimer = setTimeout(() => this.connect(), Math.floor(this.random() * ceiling));
  }

  private failOutstanding(): void {
    this.activeOutstanding = false;
    if (this.outstanding.size === 0) return;
    const entries = [...this.outstanding.values()];
    this.outstanding.clear();
    this._inFlight = 0;
    for (const e of entries) {
      if (e.kind === KIND_SUBMIT) this.events.submitDone(e.token as T, 'lost', 0, '', e.sentAt);
      else if (e.kind === KIND_TERMINATE) this.wakeTerminate();
    }
    this.wakeDrain();
  }

  // ---------------------------------------------------------------- inbound

  private onPdu(conn: CmppConnection, pdu: CmppPdu): void {
    switch (pdu.command) {
      case 'active_test':
        conn.write(encodePdu({ command: 'active_test_resp', sequenceId: pdu.sequenceId, reserved: 0 }, this.version));
        return;
      case 'deliver':
        this.onDeliver(conn, pdu);
        return;
      case 'terminate':
        this.log.info('ISMG terminated the link');
        conn.write(encodePdu({ command: 'terminate_resp', sequenceId: pdu.sequenceId }, this.version));
        this.setState('unbinding');
        conn.close();
        return;
      case 'connect_resp':
      case 'submit_resp':
      case 'active_test_resp':
      case 'terminate_resp':
        this.onResponse(conn, pdu);
        return;
      default:
        // connect / submit / deliver_resp: not something an ISMG sends an SP.
        if (this.badFrames++ % 100 === 0) this.log.warn({ command: pdu.command, total: this.badFrames }, 'unexpected CMPP request from the ISMG ignored (sampled)');
    }
  }

  private onResponse(conn: CmppConnection, pdu: CmppPdu): void {
    const e = this.outstanding.get(pdu.sequenceId);
    if (e === undefined) {
      this.log.debug({ seq: pdu.sequenceId, command: pdu.command }, 'response for no outstanding request (late after timeout?)');
      return;
    }
    this.outstanding.delete(pdu.sequenceId);
    switch (e.kind) {
      case KIND_SUBMIT: {
        this._inFlight--;
        if (pdu.command === 'submit_resp') this.events.submitDone(e.token as T, 'resp', pdu.result, pdu.msgId, e.sentAt);
        else this.events.submitDone(e.token as T, 'nack', 2, '', e.sentAt); // answered with another command
        if (this.closing) this.wakeDrainIfIdle();
        else this.events.ready(this);
        return;
      }
      case KIND_ACTIVE:
        this.activeOutstanding = false;
        return;
      case KIND_CONNECT:
        if (pdu.command === 'connect_resp') this.onConnectResp(conn, pdu.status, pdu.authenticatorIsmg, pdu.version);
        return;
      case KIND_TERMINATE:
        this.wakeTerminate();
        return;
    }
  }

  private onConnectResp(conn: CmppConnection, status: number, ismg: Uint8Array, version: number): void {
    if (status === 0) {
      if (this.authSent !== undefined) {
        const expected = authenticatorIsmg(this.version, 0, this.authSent, this.cfg.sharedSecret);
        if (!Buffer.from(expected).equals(Buffer.from(ismg))) {
          // ISMGs differ (Status width, zeros): a mismatch is worth knowing, not worth refusing the link.
          this.log.warn('AuthenticatorISMG does not match MD5(Status + AuthenticatorSource + secret); link kept');
        }
      }
      if (version !== VERSION_BYTE[this.version]) this.log.warn({ ismgVersion: `0x${version.toString(16)}` }, 'ISMG answered with another CMPP version; link kept');
      this._lastError = undefined;
      this.boundAt = this.now();
      this.lastHeardAt = this.boundAt;
      this.setState('bound');
      this.log.info({ attempt: this.connects, version: this.version === 3 ? '3.0' : '2.0' }, 'CMPP connected');
      if (this.closing) {
        void this.close();
        return;
      }
      this.events.ready(this);
      return;
    }
    const error = connectStatusName(status);
    if (error !== this._lastError) this.log.error({ status: error }, 'CMPP_CONNECT_FAILED: the ISMG refused CMPP_CONNECT');
    else this.log.debug({ status: error }, 'the ISMG refused CMPP_CONNECT again');
    this._lastError = error;
    conn.destroy();
  }

  private onDeliver(conn: CmppConnection, pdu: DeliverPdu): void {
    let result: Promise<number>;
    try {
      result = this.events.deliver(pdu);
    } catch (err) {
      result = Promise.reject(err);
    }
    const answer = (r: number): void => {
      conn.write(encodePdu({ command: 'deliver_resp', sequenceId: pdu.sequenceId, msgId: pdu.msgId, result: r }, this.version));
    };
    result.then(answer, (err: unknown) => {
      if (this.deliverFailures++ % 100 === 0) {
        this.log.warn({ err: err instanceof Error ? err.message : String(err), total: this.deliverFailures }, 'DELIVER handler failed; answered retry (sampled)');
      }
      answer(DELIVER_RETRY_RESULT);
    });
  }

  // ---------------------------------------------------------------- sweep

  private readonly sweep = (): void => {
    const now = this.now();
    const timeout = this.cfg.responseTimeoutMs;
    let freed = false;
    for (const [seq, e] of this.outstanding) {
      if (now - e.sentAt < timeout) break;
      this.outstanding.delete(seq);
      if (e.kind === KIND_SUBMIT) {
        this._inFlight--;
        freed = true;
        this.metrics?.cmppTimeouts.inc({ account: this.account });
        this.events.submitDone(e.token as T, 'timeout', 0, '', e.sentAt);
      } else if (e.kind === KIND_ACTIVE) {
        this._lastError = 'ACTIVE_TEST timeout';
        this.log.warn({ timeoutMs: timeout }, 'no ACTIVE_TEST_RESP: link dead, reconnecting');
        this.conn?.destroy();
        return;
      } else if (e.kind === KIND_CONNECT) {
        this._lastError = 'CONNECT timeout';
        this.log.warn({ timeoutMs: timeout }, 'no CONNECT_RESP, reconnecting');
        this.conn?.destroy();
        return;
      } else {
        this.wakeTerminate();
      }
    }
    if (this._state === 'connecting' && now - this.stateSince > this.connectTimeoutMs) {
      this._lastError = 'connect timeout';
      this.conn?.destroy();
    }
    if (this._state === 'bound' && this.conn !== undefined && !this.activeOutstanding && now - this.lastHeardAt >= this.cfg.activeTestMs) {
      this.activeOutstanding = true;
      const seq = this.nextSeq();
      this.track(KIND_ACTIVE, seq, undefined);
      this.conn.write(encodePdu({ command: 'active_test', sequenceId: seq }, this.version));
    }
    this.metrics?.cmppWindowOccupancy.set(this.labels, this._inFlight);
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
      this.track(KIND_TERMINATE, seq, undefined);
      conn.write(encodePdu({ command: 'terminate', sequenceId: seq }, this.version));
      await this.waitFor((wake) => (this.terminateWaiter = wake), this.cfg.responseTimeoutMs);
      this.terminateWaiter = undefined;
    }
    if (this.conn !== undefined) {
      const c = this.conn;
      await new Promise<void>((resolve) => {
        c.onClose(resolve);
        if (c.isClosed) resolve();
        else c.destroy();
      });
    }
    this.failOutstanding();
    this.setState('closed');
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.metrics?.cmppWindowOccupancy.set(this.labels, 0);
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

  private wakeTerminate(): void {
    const w = this.terminateWaiter;
    this.terminateWaiter = undefined;
    w?.();
  }

  private nextSeq(): number {
    do {
      this.seq = this.seq >= MAX_SEQ ? 1 : this.seq + 1;
    } while (this.outstanding.has(this.seq));
    return this.seq;
  }

  private track(kind: number, seq: number, token: T | undefined): void {
    this.outstanding.set(seq, { kind, token, sentAt: this.now() });
  }

  private setState(state: LinkState): void {
    if (this._state === state) return;
    this._state = state;
    this.stateSince = this.now();
    this.metrics?.cmppLinkUp.set(this.labels, state === 'bound' ? 1 : 0);
    this.events.stateChanged?.(this, state);
  }
}
