/**
 * A gateway started in-process from config overrides alone (no SMSC
 * simulator of the test's own unless it passes accounts), with a JSON
 * request helper under one API key and a bounded wait for completion. The
 * tests that need a particular transport (a CMPP account against a
 * CmppSimulator, the built-in ISMG simulator) start it through this, so the
 * start, teardown and HTTP plumbing are written once.
 */
import type { Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type Gateway } from '../../src/app/gateway.js';
import type { MessageStatus } from './api-types.js';
import { responseBody } from './http.js';
import { until } from './wait.js';

export interface ConfiguredGateway {
  readonly gateway: Gateway;
  readonly url: string;
  readonly dataDir: string;
  /** A JSON request with `Authorization: Bearer <key>`; the body parsed as JSON when it is JSON. */
  readonly request: <T = unknown>(method: string, path: string, body?: unknown) => Promise<{ status: number; json: T }>;
  /** Polls GET /v1/messages/{id} until every recipient is final (bounded: `timeoutMs`, default 30 s). */
  readonly waitComplete: (id: string, timeoutMs?: number) => Promise<MessageStatus>;
}

export interface ConfiguredGatewayOptions {
  /** Config overrides on top of: a fresh data dir, silent log, 127.0.0.1 on a free port. */
  readonly overrides: Record<string, unknown>;
  /** The API key the request helper sends. */
  readonly key: string;
  /** Prefix of the data dir's name under the OS temp dir. */
  readonly prefix?: string;
  /** Run at teardown after the gateway stopped and before its data dir is removed (e.g. stop a simulator). */
  readonly afterStop?: () => Promise<void>;
}

export async function startConfiguredGateway(t: Test, o: ConfiguredGatewayOptions): Promise<ConfiguredGateway> {
  const dataDir = mkdtempSync(join(tmpdir(), o.prefix ?? 'smsgw-gw-'));
  const config = loadConfig({
    env: {},
    overrides: { dataDir, log: { level: 'silent' }, server: { host: '127.0.0.1', port: 0 }, ...o.overrides },
  });
  const gateway = await startGateway(config, { logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await gateway.stop();
    await o.afterStop?.();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${gateway.port}`;
  const request = async <T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${o.key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await responseBody(res)) as T };
  };
  const waitComplete = async (id: string, timeoutMs = 30_000): Promise<MessageStatus> => {
    let last: MessageStatus | undefined;
    try {
      await until(`message ${id} complete`, async () => {
        const r = await request<MessageStatus>('GET', `/v1/messages/${id}?limit=1000`);
        last = r.json;
        return r.status === 200 && last.status === 'complete';
      }, timeoutMs);
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(last?.summary)}`);
    }
    return last!;
  };
  return { gateway, url, dataDir, request, waitComplete };
}
