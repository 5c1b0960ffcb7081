/**
 * One SMPP transceiver bind to an operator account: connect, bind, a bounded
 * window of outstanding submit_sm, keep-alive, reconnect.
 *
 *   idle ─▶ connecting ─▶ binding ─▶ bound ─▶ unbinding ─▶ closed
 *              ▲   (timeout/refused/error)      │  (close, error, dead link, SMSC unbind)
 *              └──────── disconnected ◀─────────┘   back-off with full jitter
 *
 * The window: each submit_sm takes a slot until its submit_sm_resp (or a
 * generic_nack with its sequence number) comes back, or until
 * responseTimeoutMs passes. Outstanding requests live in one Map keyed by
 * sequence number; Map iteration is insertion order and every request has
 * the same timeout, so one coarse sweep timer finds the expired ones at the
 * head and stops at the first live one: no timer per PDU.
 *
 * Nothing outstanding is ever dropped silently: when the connection goes,
 * every outstanding submit is reported `lost` to the owner (the BindPool,
 * which retries it on another bind).
 *
 * The bind answers what the package leaves unanswered: the SMSC's
 * enquire_link, deliver_sm and data_sm (via the owner's `deliver`, whose
 * promise decides the command_status), unbind, and generic_nack for anything
 * it does not support. Each (re)connect uses a fresh SmppSession.
 */
import type { SmppAccountConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import {
  COMMAND_ID,
  STATUS,
  SmppSession,
  encodeBind,
  encodeEmptyPdu,
  encodeMessageIdResp,
  isResponse,
  statusName,
  type IncomingPdu,
  type MessageBody,
  type PduHeader,
} from './wire.js';

export type BindState = 'idle' | 'connecting' | 'binding' | 'bound' | 'unbinding' | 'disconnected' | 'closed';

/**
 * How an outstanding submit_sm ended, from the bind's point of view:
 *  - `resp`: a submit_sm_resp (status may be an error);
 *  - `nack`: a generic_nack with its sequence number;
 *  - `timeout`: no answer within responseTimeoutMs (the SMSC may still have accepted it);
 *  - `lost`: the connection went with it outstanding (likewise).
 */
export type SubmitResultKind = 'resp' | 'nack' | 'timeout' | 'lost';

/** A deliver_sm or data_sm from the SMSC. */
export type InboundMessagePdu = PduHeader & MessageBody & { readonly command: 'deliver_sm' | 'data_sm' };

export interface BindEvents<T> {
  /**
   * Exactly once per accepted `submit()` token. `status` and `messageId` are
   * meaningful for `resp` and `nack`; `sentAt` is the clock reading at send.
   */
  submitDone(token: T, kind: SubmitResultKind, status: number, messageId: string, sentAt: number): void;
  /** The bind can take more: it just bound, or window slots were freed. */
  ready(bind: Bind<T>): void;
  /**
   * A deliver_sm/data_sm arrived. Resolve with the command_status of the
   * response (ESME_ROK, or ESME_RX_T_APPN to have the SMSC retry); the
   * response is sent only then. A rejection is answered ESME_RX_T_APPN.
   */
  deliver(pdu: InboundMessagePdu, bind: Bind<T>): Promise<number>;
  /** State transitions, for metrics and the pool's bookkeeping. */
  stateChanged?(bind: Bind<T>, state: BindState): void;
}

export interface BindOptions<T> {
  readonly account: SmppAccountConfig;
  /** Bind number within its account (a metric label). */
  readonly index: number;
  readonly events: BindEvents<T>;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  /** Clock in epoch ms; default Date.now. */
  readonly now?: () => number;
  /** [0, 1) for reconnect jitter; default Math.random. */
  readonly random?: () => number;
  /** Sweep period for timeouts and keep-alive; default clamp(responseTimeoutMs / 4, 20, 250). */
  readonly sweepMs?: number;
  /** TCP (+TLS) connect must finish within this; default max(responseTimeoutMs, 5000). */
  readonly connectTimeoutMs?: number;
  /** A session that stayed bound this long resets the reconnect back-off; default 1000. */
  readonly stableAfterMs?: number;
  /** Extra TLS trust anchors (private CA). */
  readonly ca?: string | Buffer | (string | Buffer)[];
}

const KIND_SUBMIT = 0;
const KIND_ENQUIRE = 1;
const KIND_BIND = 2;
const KIND_UNBIND = 3;

interface Outstanding<T> {
  kind: number;
  token: T | undefined;
  sentAt: number;
}

const MAX_SEQ = 0x7fffffff;

export class Bind<T> {
  readonly account: string;
  readonly index: number;
  readonly window: number;
  private readonly cfg: SmppAccountConfig;
  private readonly events: BindEvents<T>;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sweepMs: number;
  private readonly connectTimeoutMs: number;
  private readonly stableAfterMs: number;
  private readonly ca: string | Buffer | (string | Buffer)[] | undefined;
  private readonly labels: { account: string; bind: string };

  private _state: BindState = 'idle';
  private stateSince = 0;
  private session: SmppSession | undefined;
  private seq = 0;
  private readonly outstanding = new Map<number, Outstanding<T>>();
  /** Recycled Outstanding records (at most `window` of them) so the hot path allocates less. */
  private readonly spare: Outstanding<T>[] = [];
  private _inFlight = 0;
  private lastEnquireAt = 0;
  private boundAt = 0;
  private reconnectAttempt = 0;
  private connects = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private drainWaiter: (() => void) | undefined;
  private unbindWaiter: (() => void) | undefined;
  private _lastError: string | undefined;
  private strayNacks = 0;
  private deliverFailures = 0;

  constructor(options: BindOptions<T>) {
    this.cfg = options.account;
    this.account = options.account.name;
    this.index = options.index;
    this.window = options.account.window;
    this.events = options.events;
    this.metrics = options.metrics;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.sweepMs = options.sweepMs ?? Math.min(250, Math.max(20, Math.floor(options.account.responseTimeoutMs / 4)));
    this.connectTimeoutMs = options.connectTimeoutMs ?? Math.max(options.account.responseTimeoutMs, 5000);
    this.stableAfterMs = options.stableAfterMs ?? 1000;
    this.ca = options.ca;
    this.labels = { account: this.account, bind: String(this.index) };
    this.log = options.logger.child({ account: this.account, bind: this.index });
  }

  get state(): BindState {
    return this._state;
  }

  /** Outstanding submit_sm (window occupancy). */
  get inFlight(): number {
    return this._inFlight;
  }

  /** Window slots a submit can use now: 0 unless bound. */
  get freeWindow(): number {
    return this._state === 'bound' && !this.closing ? this.window - this._inFlight : 0;
  }

  /** The last bind or connection failure, e.g. `ESME_RINVPASWD` (cleared on a successful bind). */
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
   * Send one encoded submit_sm (its sequence number is written into bytes
   * 12..15 here). Returns false, taking nothing, when the bind has no free
   * slot or its socket is gone; otherwise `events.submitDone(token, …)`
   * follows exactly once.
   */
  submit(token: T, pdu: Buffer): boolean {
    const session = this.session;
    if (session === undefined || this._state !== 'bound' || this.closing || this._inFlight >= this.window) return false;
    const seq = this.nextSeq();
    pdu.writeUInt32BE(seq, 12);
    if (!session.write(pdu)) return false;
    this.track(KIND_SUBMIT, seq, token);
    this._inFlight++;
    return true;
  }

  /**
   * Graceful close: stop taking submits, wait (up to drainMs, default
   * responseTimeoutMs) for outstanding responses, unbind (waiting up to
   * responseTimeoutMs for unbind_resp), then drop the connection. Whatever is
   * still outstanding then is reported `lost`.
   */
  close(drainMs: number = this.cfg.responseTimeoutMs): Promise<void> {
    this.closePromise ??= this.doClose(drainMs);
    return this.closePromise;
  }

  /** Drop the connection now (tests, or a caller that knows the link is dead); it reconnects unless closing. */
  dropConnection(): void {
    this.session?.destroy();
  }

  // ---------------------------------------------------------------- connect

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.closing) return;
    if (this.connects++ > 0) this.metrics?.reconnects.inc({ account: this.account });
    this.setState('connecting');
    this.seq = 0;
    const session = SmppSession.connect({
      host: this.cfg.host,
      port: this.cfg.port,
      tls: this.cfg.tls,
      ...(this.ca !== undefined ? { ca: this.ca } : {}),
    });
    this.session = session;
    session.onConnect(() => {
      if (this.session === session) this.sendBind(session);
    });
    session.onPdu((pdu) => {
      if (this.session === session) this.onPdu(session, pdu);
    });
    session.onError((err) => {
      if (this.session !== session) return;
      this._lastError = (err as NodeJS.ErrnoException).code ?? err.message;
      // Refused connections repeat every back-off; debug keeps the log readable, bindConnected shows it.
      this.log.debug({ err: err.message }, 'SMPP connection error');
    });
    session.onClose(() => this.onSessionClosed(session));
  }

  private sendBind(session: SmppSession): void {
    this.setState('binding');
    const seq = this.nextSeq();
    this.track(KIND_BIND, seq, undefined);
    session.write(
      encodeBind('bind_transceiver', seq, {
        system_id: this.cfg.systemId,
        password: this.cfg.password,
        system_type: this.cfg.systemType,
      }),
    );
  }

  private onSessionClosed(session: SmppSession): void {
    if (this.session !== session) return;
    this.session = undefined;
    const wasBound = this._state === 'bound' || this._state === 'unbinding';
    const boundFor = wasBound ? this.now() - this.boundAt : 0;
    const unexpected = this._state === 'bound' && !this.closing;
    // Leave `bound` before reporting losses, so the owner does not pick this bind to retry them.
    this.setState(this.closing ? 'closed' : 'disconnected');
    if (unexpected) this.log.warn({ boundForMs: boundFor, outstanding: this._inFlight, error: this._lastError }, 'SMPP bind lost');
    this.failOutstanding();
    if (this.closing) return;
    if (boundFor >= this.stableAfterMs) this.reconnectAttempt = 0;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    // Exponential back-off with full jitter: a fleet of binds that lost the
    // same SMSC does not come back in lock-step.
    const ceiling = Math.min(this.cfg.reconnectMaxMs, this.cfg.reconnectInitialMs * 2 ** Math.min(this.reconnectAttempt, 30));
    this.reconnectAttempt++;
    const delay = Math.floor(this.random() * ceiling);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private failOutstanding(): void {
    if (this.outstanding.size === 0) return;
    // Detach first: submitDone may lead the owner to call submit() on other binds (never this one: not bound).
    const entries = [...this.outstanding.values()];
    this.outstanding.clear();
    this._inFlight = 0;
    for (const e of entries) {
      if (e.kind === KIND_SUBMIT) this.events.submitDone(e.token as T, 'lost', 0, '', e.sentAt);
      else if (e.kind === KIND_UNBIND) this.wakeUnbind();
    }
    this.wakeDrain();
  }

  // ---------------------------------------------------------------- inbound

  private onPdu(session: SmppSession, pdu: IncomingPdu): void {
    if (isResponse(pdu)) {
      this.onResponse(session, pdu);
      return;
    }
    switch (pdu.command) {
      case 'enquire_link':
        session.write(encodeEmptyPdu(COMMAND_ID.enquire_link_resp, pdu.sequence_number));
        return;
      case 'deliver_sm':
      case 'data_sm':
        this.onDeliver(session, pdu);
        return;
      case 'unbind':
        this.log.info('SMSC unbound the session');
        session.write(encodeEmptyPdu(COMMAND_ID.unbind_resp, pdu.sequence_number));
        this.setState('unbinding');
        session.close();
        return;
      case 'alert_notification':
        return; // no response is defined for it
      default:
        session.write(encodeEmptyPdu(COMMAND_ID.generic_nack, pdu.sequence_number, STATUS.ESME_RINVCMDID));
        this.log.debug({ command: pdu.command }, 'unsupported request from SMSC answered generic_nack');
    }
  }

  private onResponse(session: SmppSession, pdu: IncomingPdu): void {
    const seq = pdu.sequence_number;
    const e = this.outstanding.get(seq);
    if (e === undefined) {
      // A response after its timeout, or a generic_nack for a PDU the SMSC could not even parse (seq 0).
      if (pdu.command === 'generic_nack') {
        // The SMSC could not parse something we sent: worth a warning, sampled so a storm cannot flood the log.
        if (this.strayNacks++ % 100 === 0) this.log.warn({ seq, status: statusName(pdu.command_status), total: this.strayNacks }, 'generic_nack for no outstanding request (sampled)');
      }
      else this.log.debug({ seq, command: pdu.command }, 'response for no outstanding request (late after timeout?)');
      return;
    }
    this.outstanding.delete(seq);
    const { kind, token, sentAt } = e;
    this.recycle(e);
    switch (kind) {
      case KIND_SUBMIT: {
        this._inFlight--;
        if (pdu.command === 'submit_sm_resp') {
          this.events.submitDone(token as T, 'resp', pdu.command_status, pdu.message_id ?? '', sentAt);
        } else {
          // generic_nack (or a confused SMSC answering another command) in place of submit_sm_resp.
          this.events.submitDone(token as T, 'nack', pdu.command === 'generic_nack' ? pdu.command_status : STATUS.ESME_RSYSERR, '', sentAt);
        }
        if (this.closing) this.wakeDrainIfIdle();
        else this.events.ready(this);
        return;
      }
      case KIND_ENQUIRE:
        return; // liveness proven; nothing else to do
      case KIND_BIND:
        this.onBindResp(session, pdu);
        return;
      case KIND_UNBIND:
        this.wakeUnbind();
        return;
    }
  }

  private onBindResp(session: SmppSession, pdu: IncomingPdu): void {
    if (pdu.command === 'bind_transceiver_resp' && pdu.command_status === STATUS.ESME_ROK) {
      this._lastError = undefined;
      this.boundAt = this.now();
      this.lastEnquireAt = this.boundAt;
      this.setState('bound');
      this.log.info({ smsc: pdu.system_id ?? '', attempt: this.connects }, 'SMPP bound (transceiver)');
      if (this.closing) {
        void this.close();
        return;
      }
      this.events.ready(this);
      return;
    }
    const error = statusName(pdu.command_status);
    // A refused bind is an operator problem (credentials, account disabled): an error, logged when it
    // starts or changes rather than on every back-off retry; the bind keeps retrying.
    if (error !== this._lastError) this.log.error({ status: error, command: pdu.command }, 'SMSC refused the bind');
    else this.log.debug({ status: error }, 'SMSC refused the bind again');
    this._lastError = error;
    session.destroy();
  }

  private onDeliver(session: SmppSession, pdu: InboundMessagePdu): void {
    const seq = pdu.sequence_number;
    const respId = pdu.command === 'data_sm' ? COMMAND_ID.data_sm_resp : COMMAND_ID.deliver_sm_resp;
    let result: Promise<number>;
    try {
      result = this.events.deliver(pdu, this);
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (status) => {
        session.write(encodeMessageIdResp(respId, seq, status));
      },
      (err: unknown) => {
        if (this.deliverFailures++ % 100 === 0) {
          this.log.warn({ err: err instanceof Error ? err.message : String(err), total: this.deliverFailures }, 'deliver_sm handler failed; answered ESME_RX_T_APPN (sampled)');
        }
        session.write(encodeMessageIdResp(respId, seq, STATUS.ESME_RX_T_APPN));
      },
    );
  }

  // ---------------------------------------------------------------- sweep

  private readonly sweep = (): void => {
    const now = this.now();
    const timeout = this.cfg.responseTimeoutMs;
    let freed = false;
    for (const [seq, e] of this.outstanding) {
      if (now - e.sentAt < timeout) break; // insertion order = send order, one timeout for all
      this.outstanding.delete(seq);
      const { kind, token, sentAt } = e;
      this.recycle(e);
      if (kind === KIND_SUBMIT) {
        this._inFlight--;
        freed = true;
        this.metrics?.smppTimeouts.inc({ account: this.account });
        this.events.submitDone(token as T, 'timeout', 0, '', sentAt);
      } else if (kind === KIND_ENQUIRE) {
        this._lastError = 'enquire_link timeout';
        this.log.warn({ timeoutMs: timeout }, 'no enquire_link_resp: link dead, reconnecting');
        this.session?.destroy();
        return;
      } else if (kind === KIND_BIND) {
        this._lastError = 'bind timeout';
        this.log.warn({ timeoutMs: timeout }, 'no bind response, reconnecting');
        this.session?.destroy();
        return;
      } else {
        this.wakeUnbind();
      }
    }
    if (this._state === 'connecting' && now - this.stateSince > this.connectTimeoutMs) {
      this._lastError = 'connect timeout';
      this.session?.destroy();
    }
    if (this._state === 'bound' && this.session !== undefined && now - this.lastEnquireAt >= this.cfg.enquireLinkMs) {
      this.lastEnquireAt = now;
      const seq = this.nextSeq();
      this.track(KIND_ENQUIRE, seq, undefined);
      this.session.write(encodeEmptyPdu(COMMAND_ID.enquire_link, seq));
    }
    this.metrics?.bindWindowOccupancy.set(this.labels, this._inFlight);
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
    const session = this.session;
    if (session !== undefined && this._state === 'bound') {
      this.setState('unbinding');
      const seq = this.nextSeq();
      this.track(KIND_UNBIND, seq, undefined);
      session.write(encodeEmptyPdu(COMMAND_ID.unbind, seq));
      await this.waitFor((wake) => (this.unbindWaiter = wake), this.cfg.responseTimeoutMs);
      this.unbindWaiter = undefined;
    }
    if (this.session !== undefined) {
      const s = this.session;
      await new Promise<void>((resolve) => {
        s.onClose(resolve);
        if (s.isClosed) resolve();
        else s.destroy();
      });
    }
    // A session that never connected (or was between reconnects) has no close event to do this.
    this.failOutstanding();
    this.setState('closed');
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.metrics?.bindWindowOccupancy.set(this.labels, 0);
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

  private wakeUnbind(): void {
    const w = this.unbindWaiter;
    this.unbindWaiter = undefined;
    w?.();
  }

  // ---------------------------------------------------------------- helpers

  private nextSeq(): number {
    // Skip numbers still outstanding after a wrap (needs 2^31 PDUs on one session; cheap to be right).
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

  private recycle(e: Outstanding<T>): void {
    e.token = undefined;
    if (this.spare.length < this.window) this.spare.push(e);
  }

  private setState(state: BindState): void {
    if (this._state === state) return;
    this._state = state;
    this.stateSince = this.now();
    this.metrics?.bindConnected.set(this.labels, state === 'bound' ? 1 : 0);
    this.events.stateChanged?.(this, state);
  }
}
