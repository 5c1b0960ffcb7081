/**
 * Helpers for directory tests: an admin client for the test gateway, and
 * building units, keys, people and groups through the admin API.
 */
import type { MessageStatus } from './api-types.js';
import type { RootDatabase } from 'lmdb';
import type { Test } from 'tap';
import { DirectoryStore } from '../../src/directory/store.js';
import { NO_GRANTS, type Actor, type Grants } from '../../src/directory/types.js';
import type { TestGateway } from './gateway.js';
import { tempEnv } from './temp-env.js';
import { responseBody } from './http.js';

export const ADMIN_KEY = 'test-admin-key-0123456789';
export const ADMIN_CONFIG = { admin: { keys: [{ key: ADMIN_KEY, name: 'root-admin' }] } };

export type Reply<T = unknown> = { status: number; json: T; headers: Headers };

export interface AdminClient {
  call<T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Reply<T>>;
  /** Like call, but throws unless the status is 2xx (setup steps). */
  must<T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T>;
  /** POST /v1/messages with a unit's key. */
  sendAs<T = unknown>(key: string, body: unknown): Promise<Reply<T>>;
  /** GET /v1/messages/{id} with a unit's key. */
  statusAs<T = MessageStatus>(key: string, id: string, query?: string): Promise<Reply<T>>;
  /** Poll the status with a unit's key until every recipient is final (bounded). */
  waitCompleteAs(key: string, id: string, timeoutMs?: number): Promise<MessageStatus>;
}

export function adminClient(gw: TestGateway, key = ADMIN_KEY): AdminClient {
  const call = async <T = unknown>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> => {
    const isText = typeof body === 'string' || body instanceof Uint8Array;
    const res = await fetch(gw.url + path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': isText ? 'text/csv' : 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: isText ? (body as string) : JSON.stringify(body) } : {}),
    });
    const json = (await responseBody(res)) as T;
    return { status: res.status, json, headers: res.headers };
  };
  return {
    call,
    async must<T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
      const r = await call<T>(method, path, body, headers);
      if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
      return r.json;
    },
    async statusAs<T = MessageStatus>(apiKey: string, id: string, query = 'limit=1000'): Promise<Reply<T>> {
      const res = await fetch(`${gw.url}/v1/messages/${id}?${query}`, { headers: { authorization: `Bearer ${apiKey}` } });
      return { status: res.status, json: (await res.json()) as T, headers: res.headers };
    },
    async waitCompleteAs(apiKey, id, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let last: MessageStatus | undefined;
      while (Date.now() < deadline) {
        const res = await fetch(`${gw.url}/v1/messages/${id}?limit=1000`, { headers: { authorization: `Bearer ${apiKey}` } });
        last = (await res.json()) as MessageStatus;
        if (res.status === 200 && last.status === 'complete') return last;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`message ${id} not complete after ${timeoutMs} ms: ${JSON.stringify(last)}`);
    },
    async sendAs<T = unknown>(apiKey: string, body: unknown): Promise<Reply<T>> {
      const res = await fetch(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await responseBody(res)) as T;
      return { status: res.status, json, headers: res.headers };
    },
  };
}

// ------------------------------------------------------- LMDB-level set-up


export const ROOT: Actor = { name: 'root-admin' };
export const TIERS = ['emergency', 'leadership', 'business', 'routine', 'bulk'];

export function tempDirectory(t: Test, opts: { now?: () => number; maxGroupMembers?: number } = {}): { env: RootDatabase; store: DirectoryStore } {
  const env = tempEnv(t);
  const store = DirectoryStore.open({
    env,
    tiers: TIERS,
    allowInternational: false,
    defaultSender: '10690000',
    maxGroupMembers: opts.maxGroupMembers ?? 1_000_000,
    reservedUnitIds: ['dev'],
    bootstrapSenders: [{ tenant: 'dev', sender: '10690001' }],
    ...(opts.now ? { now: opts.now } : {}),
  });
  return { env, store };
}

export function grants(g: Partial<Grants>): Grants {
  return { ...NO_GRANTS, ...g };
}

/** Distinct valid mobiles 139xxxxxxx6, different from numberAt's 138 range. */
export function mobileAt(n: number): string {
  return `139${String(10_000_000 + n * 10 + 6).slice(-8)}`;
}
