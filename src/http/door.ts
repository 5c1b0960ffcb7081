/**
 * A uWS listener with route tables mounted on it: the front door (every
 * part's table) or the monitoring listener of a process without the API
 * (the ops table only). Draining flips `accepting`, which write routes and
 * /readyz read.
 */
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { createUwsApp, listenUws, loadUws } from '../ingest/uws.js';
import { mountTables, type Door } from './mount.js';
import type { MountedTable } from './route.js';

export interface HttpDoorOptions extends Omit<Door, 'accepting'> {
  readonly tls?: { keyFile: string; certFile: string; passphrase?: string | undefined } | undefined;
}

export class HttpDoor {
  private readonly app: TemplatedApp;
  private socket: us_listen_socket | null = null;
  private open = true;
  port = 0;

  constructor(private readonly options: HttpDoorOptions) {
    this.app = createUwsApp(options.tls);
  }

  /** False once draining. */
  get accepting(): boolean {
    return this.open;
  }

  /** Mount the tables (once, before listen); the 404/405 fallback is derived from them. */
  mount(tables: readonly MountedTable[]): this {
    mountTables(this.app, tables, { ...this.options, accepting: () => this.open });
    return this;
  }

  async listen(host: string, port: number): Promise<number> {
    const bound = await listenUws(this.app, host, port);
    this.socket = bound.socket;
    this.port = bound.port;
    return this.port;
  }

  /** Stop accepting new writes (503) while in-flight ones finish. */
  drain(): void {
    this.open = false;
  }

  close(): void {
    if (this.socket) {
      loadUws().us_listen_socket_close(this.socket);
      this.socket = null;
    }
  }
}
