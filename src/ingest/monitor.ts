/**
 * The monitoring listener of a process without the API (`--role dispatch`):
 * /healthz, /readyz and /metrics on server.port, nothing else, so a dispatch
 * process can be health-checked and scraped like any other.
 */
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { createUwsApp, listenUws, loadUws } from './uws.js';
import { Exchange } from './http.js';
import { GatewayError } from '../core/errors.js';
import { asGatewayError } from './intake.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Readiness } from './server.js';

export class MonitorDoor {
  private readonly app: TemplatedApp;
  private socket: us_listen_socket | null = null;
  private draining = false;
  port = 0;

  constructor(private readonly deps: { metrics: Metrics; readiness: Readiness; tls?: { keyFile: string; certFile: string; passphrase?: string | undefined } | undefined }) {
    const app = createUwsApp(deps.tls);
    app.get('/healthz', (res) => new Exchange(res).json(200, { status: 'ok' }));
    app.get('/readyz', (res) => {
      const r = this.deps.readiness.ready();
      const ready = r.ready && !this.draining;
      new Exchange(res).json(ready ? 200 : 503, { ready, ...r.detail });
    });
    app.get('/metrics', (res) => {
      const ex = new Exchange(res);
      this.deps.metrics.registry.metrics().then(
        (text) => ex.send(200, text, this.deps.metrics.registry.contentType),
        (e: unknown) => ex.error(asGatewayError(e)),
      );
    });
    app.any('/*', (res, req) => new Exchange(res).error(new GatewayError('NOT_FOUND', `no route ${req.getUrl()} (monitoring listener of a dispatch process)`)));
    this.app = app;
  }

  async listen(host: string, port: number): Promise<number> {
    const bound = await listenUws(this.app, host, port);
    this.socket = bound.socket;
    this.port = bound.port;
    return this.port;
  }

  drain(): void {
    this.draining = true;
  }

  close(): void {
    if (this.socket) loadUws().us_listen_socket_close(this.socket);
    this.socket = null;
  }
}
