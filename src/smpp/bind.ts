/**
 * One SMPP transceiver bind to an operator account: connect, bind, a bounded
 * window of outstanding submit_sm, keep-alive, reconnect.
 *
 *   idle ─▶ connecting ─▶ binding ─▶ bound ─▶ unbinding ─▶ closed
 *              ▲   (timeout/refused/error)      │  (close, error, dead link, SMSC unbind)
 *              └──────── disconnected ◀─────────┘   back-off with full jitter
 *
 * The window with its per-request timeouts, the keep-alive schedule, the
 * reconnect back-off and the graceful close are the link core's
 * (src/transport/link-core.ts, shared with the CMPP link): each submit_sm
 * takes a slot until its submit_sm_resp (or a generic_nack with its sequence
 * number) comes back, or until responseTimeoutMs passes; nothing outstanding
 * is ever dropped silently: when the connection goes, every outstanding
 * submit is reported `lost` to the owner (the BindPool, which retries it on
 * another bind). What is SMPP's is here: bind_transceiver, enquire_link,
 * unbind, and the SMSC's requests.
 *
 * The bind answers what the package leaves unanswered: the SMSC's
 * enquire_link, deliver_sm and data_sm (via the owner's `deliver`, whose
 * promise decides the command_status), unbind, and generic_nack for anything
 * it does not support. Each (re)connect uses a fresh SmppSession.
 */
import type { SmppAccountConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { KIND_KEEPALIVE, KIND_LOGIN, KIND_LOGOUT, KIND_SUBMIT, LinkCore, type LinkMeters, type LinkWords } from '../transport/link-core.js';
import type { LinkState } from '../transport/pool.js';
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

export type BindState = LinkState;

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

const WORDS: LinkWords = {
  lost: 'SMPP bind lost',
  keepAliveTimeout: 'enquire_link timeout',
  keepAliveTimeoutLog: 'no enquire_link_resp: link dead, reconnecting',
  loginTimeout: 'bind timeout',
  loginTimeoutLog: 'no bind response, reconnecting',
};

export class Bind<T> extends LinkCore<T, SmppSession> {
  protected readonly seqOffset = 12;
  protected readonly words = WORDS;
  protected readonly meters: LinkMeters;
  protected readonly events: BindEvents<T>;
  private readonly cfg: SmppAccountConfig;
  private readonly ca: string | Buffer | (string | Buffer)[] | undefined;
  private lastEnquireAt = 0;
  private strayNacks = 0;
  private deliverFailures = 0;

  constructor(options: BindOptions<T>) {
    const a = options.account;
    super(
      { account: a.name, index: options.index, window: a.window, responseTimeoutMs: a.responseTimeoutMs, reconnectInitialMs: a.reconnectInitialMs, reconnectMaxMs: a.reconnectMaxMs },
      options,
      options.logger.child({ account: a.name, bind: options.index }),
    );
    this.cfg = a;
    this.events = options.events;
    this.ca = options.ca;
    this.meters = smppMeters(options.metrics, a.name, options.index);
  }

  // ---------------------------------------------------------------- connect

  protected openConnection(): SmppSession {
    const session = SmppSession.connect({
      host: this.cfg.host,
      port: this.cfg.port,
      tls: this.cfg.tls,
      ...(this.ca !== undefined ? { ca: this.ca } : {}),
    });
    session.onConnect(() => {
      if (this.isCurrent(session)) this.beginLogin(session);
    });
    session.onPdu((pdu) => {
      if (this.isCurrent(session)) this.onPdu(session, pdu);
    });
    session.onError((err) => {
      if (!this.isCurrent(session)) return;
      this._lastError = (err as NodeJS.ErrnoException).code ?? err.message;
      // Refused connections repeat every back-off; debug keeps the log readable, smsgw_smpp_bind_up shows it.
      this.log.debug({ err: err.message }, 'SMPP connection error');
    });
    return session;
  }

  protected writeLogin(session: SmppSession, seq: number): void {
    session.write(
      encodeBind('bind_transceiver', seq, {
        system_id: this.cfg.systemId,
        password: this.cfg.password,
        system_type: this.cfg.systemType,
      }),
    );
  }

  protected keepAliveDue(now: number): boolean {
    if (now - this.lastEnquireAt < this.cfg.enquireLinkMs) return false;
    this.lastEnquireAt = now;
    return true;
  }

  protected writeKeepAlive(session: SmppSession, seq: number): void {
    session.write(encodeEmptyPdu(COMMAND_ID.enquire_link, seq));
  }

  protected writeLogout(session: SmppSession, seq: number): void {
    session.write(encodeEmptyPdu(COMMAND_ID.unbind, seq));
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
        this.peerLoggedOut(session);
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
    const e = this.takeOutstanding(seq);
    if (e === undefined) {
      // A response after its timeout, or a generic_nack for a PDU the SMSC could not even parse (seq 0).
      if (pdu.command === 'generic_nack') {
        // The SMSC could not parse something we sent: worth a warning, sampled so a storm cannot flood the log.
        if (this.strayNacks++ % 100 === 0) this.log.warn({ seq, status: statusName(pdu.command_status), total: this.strayNacks }, 'generic_nack for no outstanding request (sampled)');
      }
      else this.log.debug({ seq, command: pdu.command }, 'response for no outstanding request (late after timeout?)');
      return;
    }
    const { kind, token, sentAt } = e;
    this.recycle(e);
    switch (kind) {
      case KIND_SUBMIT:
        if (pdu.command === 'submit_sm_resp') {
          this.submitAnswered(token as T, 'resp', pdu.command_status, pdu.message_id ?? '', sentAt);
        } else {
          // generic_nack (or a confused SMSC answering another command) in place of submit_sm_resp.
          this.submitAnswered(token as T, 'nack', pdu.command === 'generic_nack' ? pdu.command_status : STATUS.ESME_RSYSERR, '', sentAt);
        }
        return;
      case KIND_KEEPALIVE:
        return; // liveness proven; nothing else to do
      case KIND_LOGIN:
        this.onBindResp(session, pdu);
        return;
      case KIND_LOGOUT:
        this.logoutAnswered();
        return;
    }
  }

  private onBindResp(session: SmppSession, pdu: IncomingPdu): void {
    if (pdu.command === 'bind_transceiver_resp' && pdu.command_status === STATUS.ESME_ROK) {
      this.lastEnquireAt = this.now();
      this.loggedIn();
      this.log.info({ smsc: pdu.system_id ?? '', attempt: this.connects }, 'SMPP bound (transceiver)');
      this.announceBound();
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
}

/** smsgw_smpp_* link metrics of one bind (none without a Metrics). */
function smppMeters(metrics: Metrics | undefined, account: string, index: number): LinkMeters {
  const labels = { account, bind: String(index) };
  const accountLabel = { account };
  return {
    reconnect: () => metrics?.reconnects.inc(accountLabel),
    timeout: () => metrics?.smppTimeouts.inc(accountLabel),
    window: (n) => metrics?.bindWindowOccupancy.set(labels, n),
    up: (bound) => metrics?.bindConnected.set(labels, bound ? 1 : 0),
  };
}
