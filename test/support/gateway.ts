/**
 * Start a whole gateway in-process for an integration test: its own temp
 * data dir, HTTP on a free loopback port, and an SMSC simulator on a free
 * port that the test can inspect and steer. Everything is torn down with the
 * test.
 */
import type { MessageStatus } from './api-types.js';
import type { Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { deepMerge, loadConfig } from '../../src/config/load.js';
import { startGateway, simulatorAccount, type Gateway } from '../../src/app/gateway.js';
import { SmscSimulator, type SmscSimulatorOptions } from '../../src/smpp/simulator.js';
import type { SmppAccountConfig } from '../../src/config/schema.js';
import { responseBody } from './http.js';
import { TEST_API_KEYS, TEST_KEY } from './keys.js';

export { DEV_KEY, TEST_API_KEYS, TEST_KEY } from './keys.js';

export interface TestGateway {
  readonly gateway: Gateway;
  readonly simulator: SmscSimulator;
  readonly url: string;
  readonly dataDir: string;
  request<T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; json: T; headers: Headers }>;
  send<T = unknown>(body: unknown, headers?: Record<string, string>): Promise<{ status: number; json: T; headers: Headers }>;
  /** Poll GET /v1/messages/{id} until every recipient is final (bounded). */
  waitComplete(id: string, timeoutMs?: number): Promise<MessageStatus>;
}

export interface TestGatewayOptions {
  /** Config overrides (deep-merged). */
  config?: Record<string, unknown>;
  simulator?: SmscSimulatorOptions;
  /** Overrides of the SMPP account pointing at the simulator. */
  account?: Partial<SmppAccountConfig>;
}

export async function startTestGateway(t: Test, options: TestGatewayOptions = {}): Promise<TestGateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-it-'));
  const simulator = new SmscSimulator({ port: 0, host: '127.0.0.1', systemId: 'smsgw', password: 'secret', dlrDelayMs: 10, ...options.simulator });
  const { port: simPort } = await simulator.start();
  const base = loadConfig({ env: {}, overrides: { dataDir, log: { level: 'silent' } } });
  const account: SmppAccountConfig = { ...simulatorAccount(base, simPort), reconnectInitialMs: 20, reconnectMaxMs: 200, ...options.account };
  const config = loadConfig({
    env: {},
    overrides: deepMerge(
      {
        dataDir,
        log: { level: 'silent' },
        server: { host: '127.0.0.1', port: 0 },
        auth: { apiKeys: TEST_API_KEYS as never },
        simulator: { enabled: false },
        smpp: { accounts: [account] as unknown as never },
        dispatch: { expirySweepMs: 200 },
      },
      (options.config ?? {}) as never,
    ),
  });
  const gateway = await startGateway(config, { logger: pino({ level: 'silent' }) });
  const url = `http://127.0.0.1:${gateway.port}`;
  t.teardown(async () => {
    await gateway.stop();
    await simulator.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const request = async <T = unknown>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: T; headers: Headers }> => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${TEST_KEY}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const json = (await responseBody(res)) as T;
    return { status: res.status, json, headers: res.headers };
  };

  return {
    gateway,
    simulator,
    url,
    dataDir,
    request,
    send: <T = unknown>(body: unknown, headers?: Record<string, string>) => request<T>('POST', '/v1/messages', body, headers),
    async waitComplete(id, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let last: MessageStatus | undefined;
      while (Date.now() < deadline) {
        const r = await request<MessageStatus>('GET', `/v1/messages/${id}?limit=1000`);
        last = r.json;
        if (r.status === 200 && last.status === 'complete') return last;
        await new Promise((res) => setTimeout(res, 50));
      }
      throw new Error(`message ${id} not complete after ${timeoutMs} ms: ${JSON.stringify(last?.summary)}`);
    },
  };
}

/** Distinct valid China Mobile numbers: 1380000xxxx style, `n` from 0. Suffix-steered simulator behaviours are avoided unless asked. */
export function numberAt(n: number, prefix = '138'): string {
  return `${prefix}${String(10_000_000 + n * 10 + 6).slice(-8)}`;
}
