/**
 * Helpers for the mobile-office tests: a city unit with a sub-unit and
 * people, the texts each phone received (multipart SMS re-assembled from the
 * simulator's submit_sm records), and bounded-concurrency MO injection.
 */
import type { Test } from 'tap';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from './gateway.js';
import { adminClient, ADMIN_CONFIG, mobileAt, type AdminClient } from './directory.js';
import type { SmscSimulator, SubmitRecord } from '../../src/smpp/simulator.js';
import { deepMerge } from '../../src/config/load.js';

export const ALL_GRANTS = { tiers: ['*'], groups: ['*'], direct: true, police: false, dailyQuota: null, perMinuteQuota: null };
/** The city's sender code and the office's extension: replies go to 1069000211. */
export const CITY_SENDER = '10690002';
export const OFFICE_SENDER = '1069000211';
export const SIGNATURE = '【市政府办公厅】';

export interface OfficeFixture {
  readonly gw: TestGateway;
  readonly admin: AdminClient;
  /** API key of unit `office` (sub-unit of `city`, extension 11). */
  readonly key: string;
  /** Calls the gateway with the office key. */
  readonly call: <T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; json: T }>;
}

/** A gateway with unit city (sender 10690002, signature) → office (extension 11) and `people` people p0… in office. */
export async function officeFixture(t: Test, people: number, options: TestGatewayOptions = {}): Promise<OfficeFixture> {
  const gw = await startTestGateway(t, {
    ...options,
    simulator: { recentCapacity: 20_000, ...options.simulator },
    config: deepMerge(ADMIN_CONFIG, (options.config ?? {}) as never),
  });
  const admin = adminClient(gw);
  await admin.must('POST', '/v1/admin/units', { id: 'city', name: '市政府办公厅', sender: CITY_SENDER, signature: SIGNATURE, grants: ALL_GRANTS });
  await admin.must('POST', '/v1/admin/units', { id: 'office', name: '综合处', parent: 'city', extension: '11', grants: ALL_GRANTS });
  if (people > 0) {
    const csv = ['id,name,mobile,unit', ...Array.from({ length: people }, (_, i) => `p${i},人员${i},${mobileAt(i)},office`)].join('\n');
    await admin.must('POST', '/v1/admin/people/import', csv);
  }
  const key = (await admin.must<{ key: string }>('POST', '/v1/admin/units/office/keys', { label: 'office-test' })).key;
  const call: OfficeFixture['call'] = (method, path, body, headers = {}) => gw.request(method, path, body, { authorization: `Bearer ${key}`, ...headers });
  return { gw, admin, key, call };
}

/** Normalised (86…) form of mobileAt(i). */
export function phone(i: number): string {
  return `86${mobileAt(i)}`;
}

/** Every text each destination received, multipart messages re-assembled, in arrival order. */
export function receivedTexts(sim: SmscSimulator): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const open = new Map<string, { total: number; parts: Map<number, string> }>();
  const records: SubmitRecord[] = sim.recentSubmits();
  for (const r of records) {
    const list = out.get(r.destinationAddr) ?? [];
    out.set(r.destinationAddr, list);
    if ((r.esmClass & 0x40) === 0) {
      list.push(r.text);
      continue;
    }
    const ud = r.shortMessage;
    const ref = ud[3] as number;
    const total = ud[4] as number;
    const seq = ud[5] as number;
    const k = `${r.destinationAddr}/${ref}/${total}`;
    const o = open.get(k) ?? { total, parts: new Map<number, string>() };
    o.parts.set(seq, r.text);
    open.set(k, o);
    if (o.parts.size === total) {
      list.push(Array.from({ length: total }, (_, i) => o.parts.get(i + 1) ?? '').join(''));
      open.delete(k);
    }
  }
  return out;
}

/** Run `fn` over items with at most `width` at once. */
export async function inBatches<T>(items: readonly T[], width: number, fn: (item: T, index: number) => Promise<unknown>): Promise<void> {
  for (let from = 0; from < items.length; from += width) {
    await Promise.all(items.slice(from, from + width).map((x, k) => fn(x, from + k)));
  }
}

/** Poll until `check` returns a value (bounded). */
export async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
