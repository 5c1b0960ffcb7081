/**
 * Load uWebSockets.js. uWS is not published on npm under its own name; the
 * project depends on `@trufflesuite/uws-js-unofficial` (aliased as
 * `uWebSockets.js`; Node 20 binaries, glibc 2.36). A newer build,
 * `@btc-vision/uwebsockets.js`, has Node 22/24 binaries but needs glibc 2.38:
 * when it is installed and loads, it is preferred; otherwise we fall back.
 */
import { createRequire } from 'node:module';

type Uws = typeof import('uWebSockets.js');

const require = createRequire(import.meta.url);
let loaded: { uws: Uws; name: string } | undefined;

export const UWS_CANDIDATES = ['@btc-vision/uwebsockets.js', 'uWebSockets.js'] as const;

export function loadUws(): Uws {
  if (loaded) return loaded.uws;
  const failures: string[] = [];
  for (const name of UWS_CANDIDATES) {
    try {
      loaded = { uws: require(name) as Uws, name };
      return loaded.uws;
    } catch (e) {
      failures.push(`${name}: ${(e as Error).message.split('\n')[0] ?? ''}`);
    }
  }
  throw new Error(`cannot load uWebSockets.js (${failures.join('; ')})`);
}

export function uwsPackageName(): string | undefined {
  return loaded?.name;
}

/** A uWS app: TLS (SSLApp) when key and certificate files are configured, else plain. */
export function createUwsApp(tls?: { keyFile: string; certFile: string; passphrase?: string | undefined }): import('uWebSockets.js').TemplatedApp {
  const uws = loadUws();
  if (!tls) return uws.App();
  return uws.SSLApp({ key_file_name: tls.keyFile, cert_file_name: tls.certFile, ...(tls.passphrase !== undefined ? { passphrase: tls.passphrase } : {}) });
}

/** Listen and resolve with the socket and the port actually bound (port 0 picks a free one). */
export function listenUws(app: import('uWebSockets.js').TemplatedApp, host: string, port: number): Promise<{ socket: import('uWebSockets.js').us_listen_socket; port: number }> {
  const uws = loadUws();
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (!socket) reject(new Error(`cannot listen on ${host}:${port}`));
      else resolve({ socket, port: uws.us_socket_local_port(socket) });
    });
  });
}
