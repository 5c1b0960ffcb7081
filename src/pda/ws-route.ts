/**
 * `/v1/pda` on the gateway's uWS app (App, or SSLApp when TLS is
 * configured: the route is the same). Adapts each uWS WebSocket to a
 * `SessionSocket` and forwards its events to the session; everything else
 * is in session.ts / channel.ts.
 *
 * uWS settings and why:
 *  - maxPayloadLength: twice `pda.maxInboundFrameBytes` (at least 64 KiB), so
 *    a frame over our own limit reaches the session and is refused with
 *    FRAME_TOO_LARGE and a reason; only a frame over the uWS limit is cut by
 *    uWS itself (close 1009).
 *  - maxBackpressure = `pda.maxBackpressureBytes`, closeOnBackpressureLimit
 *    off: the session stops writing at a quarter of it and resumes on
 *    `drain`, so uWS never has to drop a frame.
 *  - idleTimeout = `pda.idleTimeoutSec` with automatic pings: a dead link
 *    is noticed even when the device has nothing to say.
 *  - compression off: bodies are short and mostly CJK text; per-socket
 *    deflate state would cost more memory than it saves at 50k sessions.
 */
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import { loadUws } from '../ingest/uws.js';
import { Exchange } from '../ingest/http.js';
import { GatewayError } from '../core/errors.js';
import { upgrade, type UpgradeRoute } from '../http/route.js';
import { CLOSE_REASON, WS_CLOSE_BASE } from './codec.js';
import type { PdaChannel } from './channel.js';
import type { PdaSession, SendOutcome, SessionSocket } from './session.js';

export const PDA_PATH = '/v1/pda';
/** Optional WebSocket subprotocol; echoed when the client offers it. */
export const PDA_SUBPROTOCOL = 'smsgw-pda.1';

export interface PdaRouteDeps {
  readonly channel: PdaChannel;
  /** Defaults to /v1/pda. */
  readonly path?: string;
}

export interface PdaServer {
  readonly path: string;
  readonly channel: PdaChannel;
  /** Sessions open now (any phase). */
  readonly sessions: number;
}

interface UserData {
  session: PdaSession | undefined;
  socket: UwsSocket | undefined;
}

class UwsSocket implements SessionSocket {
  closed = false;
  constructor(private readonly ws: WebSocket<UserData>) {}

  send(frame: Uint8Array): SendOutcome {
    if (this.closed) return 'dropped';
    const r = this.ws.send(frame, true, false) as number | boolean;
    // uWS ≥ 20: 1 sent, 0 buffered (backpressure), 2 dropped (over maxBackpressure). Older builds: boolean.
    if (r === 1 || r === true) return 'ok';
    if (r === 0 || r === false) return 'backpressure';
    return 'dropped';
  }

  bufferedAmount(): number {
    return this.closed ? 0 : this.ws.getBufferedAmount();
  }

  cork(fn: () => void): void {
    if (this.closed) fn();
    else this.ws.cork(fn);
  }

  end(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.end(code, reason);
  }
}

export function attachPdaRoutes(app: TemplatedApp, deps: PdaRouteDeps): PdaServer {
  const uws = loadUws();
  const { channel } = deps;
  const path = deps.path ?? PDA_PATH;
  const c = channel.config;
  app.ws<UserData>(path, {
    compression: uws.DISABLED,
    maxPayloadLength: Math.max(64 * 1024, 2 * c.maxInboundFrameBytes),
    maxBackpressure: c.maxBackpressureBytes,
    closeOnBackpressureLimit: 0,
    idleTimeout: c.idleTimeoutSec,
    sendPingsAutomatically: true,
    upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
      // Refuse before the upgrade when full: a 503 costs less than a session.
      // The answer is the error catalogue's, written as every route's is (Exchange), and the
      // connection closes after it: the client asked for an upgrade, not for a keep-alive.
      if (channel.isClosing || channel.sessionCount >= c.maxSessions) {
        const e = channel.isClosing
          ? new GatewayError('PDA_CLOSED', 'the PDA channel is closing: no new sessions')
          : new GatewayError('OVERLOADED', `the PDA channel holds its ${c.maxSessions} sessions: no more now`);
        new Exchange(res).sendAndClose(e.status, e.toJSON());
        return;
      }
      const offered = req.getHeader('sec-websocket-protocol');
      const protocol = offered.split(',').map((p) => p.trim()).includes(PDA_SUBPROTOCOL) ? PDA_SUBPROTOCOL : '';
      res.upgrade<UserData>(
        { session: undefined, socket: undefined },
        req.getHeader('sec-websocket-key'),
        protocol,
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      const socket = new UwsSocket(ws);
      const session = channel.newSession(socket);
      if (!session) {
        ws.getUserData().socket = socket;
        socket.end(WS_CLOSE_BASE + CLOSE_REASON.OVERLOADED, 'overloaded');
        return;
      }
      const data = ws.getUserData();
      data.session = session;
      data.socket = socket;
    },
    message: (ws, message, isBinary) => {
      ws.getUserData().session?.onMessage(message, isBinary);
    },
    drain: (ws) => {
      ws.getUserData().session?.onDrain();
    },
    close: (ws, code) => {
      const data = ws.getUserData();
      const session = data.session;
      data.session = undefined;
      // From here on the uWS socket must not be touched.
      if (data.socket) data.socket.closed = true;
      session?.socketClosed(code);
    },
  });
  return {
    path,
    channel,
    get sessions() {
      return channel.sessionCount;
    },
  };
}

/** The PDA protocol's entry in the route table: the upgrade is open; the device authenticates in its hello (docs/pda-protocol.md). */
export const PDA_ROUTES: readonly UpgradeRoute<PdaRouteDeps>[] = [
  upgrade<PdaRouteDeps>({
    path: PDA_PATH, realm: 'none', tags: ['pda'],
    summary: `WebSocket upgrade for police PDA devices (binary protocol, subprotocol ${PDA_SUBPROTOCOL}); the device key is checked in the hello frame`,
    responses: { '101': 'switching protocols', '503': 'PDA_CLOSED or OVERLOADED: no more sessions now' },
    attach: (app, deps) => void attachPdaRoutes(app, deps),
  }),
];
