/**
 * Send and read back over a gateway process's HTTP API, for the multi-process
 * receipts tests (issue 12): messages of 1,000 recipients each, read back in
 * pages of 1,000 (bounded).
 */
import type { MessageStatus, RecipientView } from './api-types.js';
import { api } from './gateway-process.js';
import { numberOf } from './receipt-check.js';

export const PER_MESSAGE = 1000;
/** On a shared 2-core machine a child process may answer receipts slowly: the SMSC re-sends later and never gives up (a dropped receipt is the SMSC's loss, not the gateway's). */
export const PATIENT = { dlrRetryMs: 5000, dlrMaxAttempts: 50 } as const;

export interface Row {
  readonly to: string;
  readonly state: string | undefined;
}

/** One page of GET /v1/messages/{id}, as read here. */
type Page = { readonly items?: readonly RecipientView[]; readonly next?: string | number };

/** Every recipient of `id`, in pages of 1000 (bounded). */
export async function recipients(url: string, id: string): Promise<Row[]> {
  const out: Row[] = [];
  let cursor: number | undefined = 0;
  for (let i = 0; i < 100 && cursor !== undefined; i++) {
    const r: { status: number; json: Page } = await api<Page>(url, 'GET', `/v1/messages/${encodeURIComponent(id)}?limit=1000&cursor=${cursor}`);
    for (const item of r.json.items ?? []) out.push({ to: String(item.to), state: item.state });
    cursor = typeof r.json.next === 'number' ? r.json.next : r.json.next !== undefined ? Number(r.json.next) : undefined;
  }
  return out;
}

/** `messages` messages of PER_MESSAGE recipients each (numberOf(0) on), each one 202 or an error. */
export async function send(url: string, messages: number, text: string): Promise<string[]> {
  const ids: string[] = [];
  for (let m = 0; m < messages; m++) {
    const to = Array.from({ length: PER_MESSAGE }, (_, i) => numberOf(m * PER_MESSAGE + i));
    const r = await api<{ id: string }>(url, 'POST', '/v1/messages', { to, text: `${text} ${m}` });
    if (r.status !== 202) throw new Error(`message ${m}: ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    ids.push(r.json.id);
  }
  return ids;
}

/** Whether every message reads `complete` (one cheap page each). */
export function allComplete(url: string, ids: readonly string[]): () => Promise<boolean> {
  return async () => {
    for (const id of ids) {
      const r = await api<MessageStatus>(url, 'GET', `/v1/messages/${encodeURIComponent(id)}?limit=1`);
      if (r.json.status !== 'complete') return false;
    }
    return true;
  };
}
