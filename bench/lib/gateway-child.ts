/**
 * The gateway as a child process for the benchmarks that run whole systems
 * (bench:peer, bench:http, bench:callbacks): one config (embedded queue, one
 * SMPP account on the simulator, one bind × `window`, a bench tenant with a
 * callback signing secret, loopback callbacks allowed), started with the
 * given entry point and Node flags, ready once /readyz answers.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './report.js';
import { stopChild, waitFor } from './processes.js';

/** The API key the bench tenant's requests carry. */
export const BENCH_KEY = 'bench-key-0123456789';

export interface GatewayChildOptions {
  /** A fresh directory: the config file and the data directory go in it. */
  readonly dir: string;
  readonly simPort: number;
  /** The entry point: dist/cli/main.js of this or another build, or src/cli/main.ts (then run through tsx). */
  readonly main: string;
  readonly nodeArgs?: readonly string[];
  readonly window: number;
  readonly readyTimeoutMs?: number;
}

export interface GatewayChild {
  readonly url: string;
  readonly metricsUrl: string;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export async function startGatewayChild(o: GatewayChildOptions): Promise<GatewayChild> {
  const port = await freePort();
  const configFile = join(o.dir, 'gateway.json');
  writeFileSync(configFile, JSON.stringify({
    dataDir: join(o.dir, 'data'),
    log: { level: 'warn' },
    server: { host: '127.0.0.1', port },
    auth: { apiKeys: [{ key: BENCH_KEY, tenant: 'bench', tiers: ['*'] }] },
    simulator: { enabled: false },
    smpp: {
      accounts: [
        { name: 'sim', host: '127.0.0.1', port: o.simPort, systemId: 'smsgw', password: 'secret', systemType: '', tls: false, binds: 1, window: o.window, tps: 0, responseTimeoutMs: 10000, enquireLinkMs: 30000, reconnectInitialMs: 100, reconnectMaxMs: 2000, throttleBackoffMs: 50, operators: ['*'] },
      ],
    },
    // Loopback targets are refused unless allowed; callbacks are signed, so the tenant needs a secret.
    callbacks: { allow: ['127.0.0.1/32'], secrets: { bench: { current: 'bench-callback-secret-0123456789' } } },
  }));
  const viaTsx = o.main.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...viaTsx, ...(o.nodeArgs ?? []), o.main, 'start', '--config', configFile], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env } });
  // A gateway that dies mid-run says how (the run's figures are then void; the bench reports them as missing).
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`\nthe gateway (pid ${child.pid}) exited during the run: ${signal !== null ? `signal ${signal}` : `code ${code}`}\n`);
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor('gateway', async () => (await fetch(`${url}/readyz`)).ok, o.readyTimeoutMs ?? 30_000);
  return { url, metricsUrl: `${url}/metrics`, pid: child.pid, stop: () => { stopping = true; return stopChild(child); } };
}
