/**
 * One CMPP connection of an SP account to an ISMG: CONNECT, a bounded window
 * of outstanding CMPP_SUBMIT, ACTIVE_TEST both ways, TERMINATE, reconnect.
 *
 *   idle ─▶ connecting ─▶ binding (CONNECT sent) ─▶ bound ─▶ unbinding (TERMINATE) ─▶ closed
 *              ▲   (timeout / refused / error)          │  (close, error, dead link, ISMG TERMINATE)
 *              └──────── disconnected ◀─────────────────┘   back-off with full jitter
 *
 * The window with its per-request timeouts, the keep-alive schedule, the
 * reconnect back-off and the graceful close are the link core's
 * (src/transport/link-core.ts, shared with the SMPP Bind): outstanding
 * requests live in one Map keyed by Sequence_Id in send order, one coarse
 * sweep finds the timed-out ones at its head; nothing outstanding is dropped
 * silently (a lost connection reports every outstanding submit `lost` to the
 * pool, which retries it).
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
import { sameSecret } from '../core/constant-time.js';
import type { Metrics } from '../telemetry/metrics.js';
import { KIND_KEEPALIVE, KIND_LOGIN, KIND_LOGOUT, KIND_SUBMIT, LinkCore, type LinkMeters, type LinkWords } from '../transport/link-core.js';
import type { LinkEvents } from '../transport/pool.js';
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

export function versionOf(account: Pick<CmppAccountConfig, 'protocol'>): CmppVersion {
  return account.protocol === 'cmpp2' ? 2 : 3;
}

const WORDS: LinkWords = {
  lost: 'CMPP link lost',
  keepAliveTimeout: 'ACTIVE_TEST timeout',
  keepAliveTimeoutLog: 'no ACTIVE_TEST_RESP: link dead, reconnecting',
  loginTimeout: 'CONNECT timeout',
  loginTimeoutLog: 'no CONNECT_RESP, reconnecting',
};

export class CmppLink<T> extends LinkCore<T, CmppConnection> {
  readonly version: CmppVersion;
  protected readonly seqOffset = 8;
  protected readonly words = WORDS;
  protected readonly meters: LinkMeters;
  protected readonly events: CmppLinkEvents<T>;
  private readonly cfg: CmppAccountConfig;
  private readonly metrics: Metrics | undefined;
  private lastHeardAt = 0;
  private activeOutstanding = false;
  private authSent: Uint8Array | undefined;
  private badFrames = 0;
  private deliverFailures = 0;

  constructor(options: CmppLinkOptions<T>) {
    const a = options.account;
    super(
      { account: a.name, index: options.index, window: a.window, responseTimeoutMs: a.responseTimeoutMs, reconnectInitialMs: a.reconnectInitialMs, reconnectMaxMs: a.reconnectMaxMs },
      options,
      options.logger.child({ account: a.name, link: options.index }),
    );
    this.cfg = a;
    this.version = versionOf(a);
    this.events = options.events;
    this.metrics = options.metrics;
    this.meters = cmppMeters(options.metrics, a.name, options.index);
  }

  // ---------------------------------------------------------------- connect

  protected openConnection(): CmppConnection {
    const conn = CmppConnection.connect(this.cfg.host, this.cfg.port, this.version);
    conn.onConnect(() => {
      if (this.isCurrent(conn)) this.beginLogin(conn);
    });
    conn.onPdu((pdu) => {
      if (!this.isCurrent(conn)) return;
      this.lastHeardAt = this.now();
      this.onPdu(conn, pdu);
    });
    conn.onBadFrame((bad) => {
      if (!this.isCurrent(conn)) return;
      this.lastHeardAt = this.now();
      if (this.badFrames++ % 100 === 0) this.log.warn({ error: bad.error, commandId: bad.commandId, total: this.badFrames }, 'undecodable CMPP frame from the ISMG (sampled)');
      if (bad.commandId === COMMAND.DELIVER) {
        // Answer it so the ISMG does not re-send a frame that will never parse; the Msg_Id is unknown.
        conn.write(encodePdu({ command: 'deliver_resp', sequenceId: bad.sequenceId, msgId: '0', result: DELIVER_BAD_STRUCTURE }, this.version));
        this.metrics?.cmppDelivers.inc({ account: this.account, kind: 'bad', result: String(DELIVER_BAD_STRUCTURE) });
      }
    });
    conn.onError((err) => {
      if (!this.isCurrent(conn)) return;
      this._lastError = (err as NodeJS.ErrnoException).code ?? err.message;
      this.log.debug({ err: err.message }, 'CMPP connection error');
    });
    return conn;
  }

  protected writeLogin(conn: CmppConnection, seq: number): void {
    const ts = timestampText(this.now(), this.cfg.utcOffsetMinutes);
    const auth = authenticatorSource(this.cfg.spId, this.cfg.sharedSecret, ts);
    this.authSent = auth;
    conn.write(encodePdu({ command: 'connect', sequenceId: seq, sourceAddr: this.cfg.spId, authenticatorSource: auth, version: VERSION_BYTE[this.version], timestamp: Number(ts) }, this.version));
  }

  protected keepAliveDue(now: number): boolean {
    if (this.activeOutstanding || now - this.lastHeardAt < this.cfg.activeTestMs) return false;
    this.activeOutstanding = true;
    return true;
  }

  protected writeKeepAlive(conn: CmppConnection, seq: number): void {
    conn.write(encodePdu({ command: 'active_test', sequenceId: seq }, this.version));
  }

  protected writeLogout(conn: CmppConnection, seq: number): void {
    conn.write(encodePdu({ command: 'terminate', sequenceId: seq }, this.version));
  }

  protected override onOutstandingCleared(): void {
    this.activeOutstanding = false;
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
        this.peerLoggedOut(conn);
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
    const e = this.takeOutstanding(pdu.sequenceId);
    if (e === undefined) {
      this.log.debug({ seq: pdu.sequenceId, command: pdu.command }, 'response for no outstanding request (late after timeout?)');
      return;
    }
    const { kind, token, sentAt } = e;
    this.recycle(e);
    switch (kind) {
      case KIND_SUBMIT:
        if (pdu.command === 'submit_resp') this.submitAnswered(token as T, 'resp', pdu.result, pdu.msgId, sentAt);
        else this.submitAnswered(token as T, 'nack', 2, '', sentAt); // answered with another command
        return;
      case KIND_KEEPALIVE:
        this.activeOutstanding = false;
        return;
      case KIND_LOGIN:
        if (pdu.command === 'connect_resp') this.onConnectResp(conn, pdu.status, pdu.authenticatorIsmg, pdu.version);
        return;
      case KIND_LOGOUT:
        this.logoutAnswered();
        return;
    }
  }

  private onConnectResp(conn: CmppConnection, status: number, ismg: Uint8Array, version: number): void {
    if (status === 0) {
      if (this.authSent !== undefined) {
        const expected = authenticatorIsmg(this.version, 0, this.authSent, this.cfg.sharedSecret);
        if (!sameSecret(expected, ismg)) {
          // ISMGs differ (Status width, zeros): a mismatch is worth knowing, not worth refusing the link.
          this.log.warn('AuthenticatorISMG does not match MD5(Status + AuthenticatorSource + secret); link kept');
        }
      }
      if (version !== VERSION_BYTE[this.version]) this.log.warn({ ismgVersion: `0x${version.toString(16)}` }, 'ISMG answered with another CMPP version; link kept');
      this.loggedIn();
      this.lastHeardAt = this.boundAt;
      this.log.info({ attempt: this.connects, version: this.version === 3 ? '3.0' : '2.0' }, 'CMPP connected');
      this.announceBound();
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
}

/** smsgw_cmpp_* link metrics of one link (none without a Metrics). */
function cmppMeters(metrics: Metrics | undefined, account: string, index: number): LinkMeters {
  const labels = { account, link: String(index) };
  const accountLabel = { account };
  return {
    reconnect: () => metrics?.cmppReconnects.inc(accountLabel),
    timeout: () => metrics?.cmppTimeouts.inc(accountLabel),
    window: (n) => metrics?.cmppWindowOccupancy.set(labels, n),
    up: (bound) => metrics?.cmppLinkUp.set(labels, bound ? 1 : 0),
  };
}
