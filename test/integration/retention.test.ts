/**
 * Retention on a real LMDB environment with an injected clock: the sweep
 * removes exactly the final messages older than retention.messages (with
 * their recipient rows, receipt index rows, callback row and idempotency
 * answer) and the audit entries older than retention.audit, in bounded
 * steps, and never a message with a recipient that is not final — checked
 * with fast-check against a reference model of which rows survive.
 * Also: a key reused after a purge is a new message (invariant 7), and the
 * config refuses an audit retention below 180 days.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import fc from 'fast-check';
import { open, type RootDatabase } from 'lmdb';
import { pino } from 'pino';
import { ReceiptStore } from '../../src/receipts/store.js';
import { DirectoryStore } from '../../src/directory/store.js';
import { RetentionSweeper } from '../../src/storage/retention.js';
import { createMetrics, type Metrics } from '../../src/telemetry/metrics.js';
import { encodeMessage } from '../../src/receipts/records.js';
import { loadConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/core/errors.js';
import { keyedMessageId } from '../../src/send/service.js';
import type { MessageRecord } from '../../src/receipts/types.js';
import { openRowDatabase, RECIPIENT_ROW } from '../../src/receipts/row-codec.js';

const DAY = 86_400_000;
const T0 = 1_700_000_000_000;
const RETENTION = 180 * DAY;
const logger = pino({ level: 'silent' });

interface Env {
  env: RootDatabase;
  store: ReceiptStore;
  clock: { now: number };
  metrics: Metrics;
}

async function setup(): Promise<Env & { close(): Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-retention-'));
  const env = open({ path: dir, maxDbs: 64 });
  const clock = { now: T0 };
  const metrics = createMetrics({ defaultMetrics: false });
  const store = ReceiptStore.open({ env, metrics, logger, now: () => clock.now, earlyReceiptTtlMs: 60_000, receiptGraceMs: 5_000, expiryRowsPerCall: 7 });
  return {
    env, store, clock, metrics,
    async close() {
      await store.close();
      await env.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function record(id: string, recipients: number, createdAt: number, expiresAt: number, over: Partial<MessageRecord> = {}): MessageRecord {
  return { id, tenant: 'bureau', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 1, recipients, createdAt, expiresAt, ...over };
}

const numbers = (n: number, j: number): string[] => Array.from({ length: n }, (_, i) => `86139${String(j).padStart(4, '0')}${String(i).padStart(2, '0')}`);

/**
 * What happens to a message before the sweep:
 *   expired        its validity passes, the expiry sweep finalises every recipient (final)
 *   finalised      every recipient failed, then the expiry sweep passes (final)
 *   open           validity far ahead: recipients accepted, expiry entry kept (not final)
 *   finalTracked   every recipient failed but its expiry entry is still there (not final yet)
 *   replicaOpen    a replicated row from another host: no expiry entry here, recipients accepted (not final)
 */
const FATES = ['expired', 'finalised', 'open', 'finalTracked', 'replicaOpen'] as const;
type Fate = (typeof FATES)[number];
const isFinalFate = (f: Fate): boolean => f === 'expired' || f === 'finalised';

const messageArb = fc.record({
  recipients: fc.integer({ min: 1, max: 5 }),
  /** Days before the purge's cut-off (negative: younger than the retention). */
  ageDays: fc.integer({ min: -5, max: 5 }),
  fate: fc.constantFrom(...FATES),
  keyed: fc.boolean(),
  callback: fc.boolean(),
});

t.test('the sweep removes exactly the old final messages and their rows, in bounded steps (reference model)', async (t) => {
  await t.resolves(fc.assert(fc.asyncProperty(fc.array(messageArb, { minLength: 1, maxLength: 10 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }), async (msgs, batchRows, maxRows, scan) => {
    const h = await setup();
    try {
      const cut = T0 + 10 * DAY;
      const purgeAt = cut + RETENTION;
      const far = purgeAt + 365 * DAY;
      const ids = msgs.map((_, j) => `M${String(j).padStart(3, '0')}`);
      for (const [j, m] of msgs.entries()) {
        const createdAt = cut - m.ageDays * DAY;
        const open = m.fate === 'open' || m.fate === 'finalTracked';
        const rec = record(ids[j]!, m.recipients, createdAt, open ? far : createdAt + 1_000, {
          ...(m.keyed ? { idempotencyKey: `key-${j}` } : {}),
          ...(m.callback ? { callbackUrl: 'https://example.org/cb' } : {}),
        });
        if (m.fate === 'replicaOpen') {
          // The rows replication writes for another host's message (receipts store, case 'm'): no expiry entry here.
          await h.env.openDB({ name: 'receipts.messages', encoding: 'msgpack' }).put(rec.id, { ...encodeMessage(rec), h: 'site-b' });
          const rows = h.env.openDB<unknown, [string, number]>({ name: 'receipts.recipients', encoding: 'msgpack' });
          for (const [i, n] of numbers(m.recipients, j).entries()) await rows.put([rec.id, i], { n, s: 'accepted', a: createdAt, u: createdAt, g: [] });
        } else {
          h.store.putMessage(rec, numbers(m.recipients, j));
        }
        // Answers that outlive everything here: only the purge of their message removes them.
        if (m.keyed) h.store.putIdempotency('bureau', `key-${j}`, { fingerprint: 'f', response: { id: rec.id } }, far * 2);
      }
      await h.store.flushed();
      // Recipient 0 of every local message was submitted: an operator-id index row.
      const local = msgs.flatMap((m, j) => (m.fate === 'replicaOpen' ? [] : [j]));
      await h.store.recordSegments(local.map((j) => ({ kind: 'submitted' as const, messageId: ids[j]!, index: 0, segment: 1, segments: 1, account: 'acc', opId: `op-${j}`, at: T0 })));
      for (const [j, m] of msgs.entries()) {
        if (m.fate === 'finalised' || m.fate === 'finalTracked') {
          // Recipient 0 (submitted) by its receipt, the others failed: every row final.
          const receipt = await h.store.applyReceipt({ account: 'acc', messageId: `op-${j}`, state: 'delivered', doneAt: T0 + 1 });
          if (receipt !== 'applied') throw new Error(`receipt ${receipt}`);
          await h.store.finalizeRecipients(ids[j]!, Array.from({ length: m.recipients }, (_, index) => ({ index, state: 'failed' as const, error: 'test' })));
        }
      }
      for (const [j, m] of msgs.entries()) {
        if (m.fate === 'finalTracked' && ![...Array(m.recipients).keys()].every((i) => ['delivered', 'failed'].includes(h.store.getRecipient(ids[j]!, i)?.state ?? ''))) throw new Error('finalTracked: not every row final');
      }
      h.clock.now = purgeAt;
      for (let k = 0; k < 1000 && (await h.store.expireDue()) > 0; k++);
      for (let k = 0; k < 1000 && (await h.store.expireDue()) > 0; k++);

      const sweeper = new RetentionSweeper({
        receipts: h.store,
        limits: { messagesMs: RETENTION, auditMs: RETENTION, batchRows, maxRowsPerSweep: maxRows, scanMessages: scan },
        metrics: h.metrics, logger, now: () => h.clock.now,
      });
      // Bounded: each sweep removes ≤ maxRows rows; enough sweeps to go round every message several times.
      let removed = 0;
      const bound = 10 * (msgs.length + 1) * (Math.ceil(6 / maxRows) + Math.ceil(msgs.length / scan) + 1);
      for (let k = 0; k < bound; k++) {
        const r = await sweeper.sweep();
        if (r.recipient > maxRows || r.message > maxRows) throw new Error(`a sweep removed more than maxRowsPerSweep: ${JSON.stringify(r)}`);
        removed += r.message;
      }
      const opids = h.env.openDB<unknown, [string, string]>({ name: 'receipts.opids', encoding: 'msgpack' });
      const answers = h.env.openDB<unknown, [string, string]>({ name: 'receipts.idempotency', encoding: 'msgpack' });
      const callbacks = h.env.openDB<unknown, string>({ name: 'receipts.callbacks', encoding: 'msgpack' });
      let expected = 0;
      for (const [j, m] of msgs.entries()) {
        const purged = m.ageDays >= 0 && isFinalFate(m.fate);
        if (purged) expected++;
        const id = ids[j]!;
        const what = `${id} ${JSON.stringify(m)} batch=${batchRows} max=${maxRows} scan=${scan}`;
        if ((h.store.getMessage(id) === undefined) !== purged) throw new Error(`message row: ${what}`);
        for (let i = 0; i < m.recipients; i++) {
          if ((h.store.getRecipient(id, i) === undefined) !== purged) throw new Error(`recipient ${i}: ${what}`);
        }
        if (m.fate !== 'replicaOpen' && (opids.get(['acc', `op-${j}`]) === undefined) !== purged) throw new Error(`receipt index: ${what}`);
        if (m.keyed && (answers.get(['bureau', `key-${j}`]) === undefined) !== purged) throw new Error(`idempotency answer: ${what}`);
        if (m.callback && m.fate !== 'replicaOpen' && (callbacks.get(id) === undefined) !== purged) throw new Error(`callback row: ${what}`);
      }
      if (removed !== expected) throw new Error(`removed ${removed} messages, the model says ${expected}`);
      return true;
    } finally {
      await h.close();
    }
  }), { numRuns: 60, seed: 180 }), 'model and store agree (60 runs)');
});

t.test('metrics: rows purged by kind, sweep duration, skipped messages', async (t) => {
  const h = await setup();
  t.teardown(() => h.close());
  h.store.putMessage(record('OLD', 3, T0, T0 + 1_000), numbers(3, 1));
  h.store.putMessage(record('NEW', 1, T0 + 100 * DAY, T0 + 100 * DAY + 1_000), numbers(1, 2));
  h.store.putMessage(record('STUCK', 2, T0, T0 + 1_000), numbers(2, 3));
  await h.store.flushed();
  h.clock.now = T0 + 200 * DAY;
  while ((await h.store.expireDue()) > 0);
  // STUCK: as if a replicated row never got its finals (no expiry entry, recipients accepted).
  const expiry = h.env.openDB<number, [number, string]>({ name: 'receipts.expiry', encoding: 'msgpack' });
  t.equal(expiry.get([T0 + 1_000, 'STUCK']), undefined, 'its expiry entry is gone after the expiry sweep');
  const recipients = openRowDatabase<{ s: string }, [string, number]>(h.env, 'receipts.recipients', RECIPIENT_ROW);
  await recipients.put(['STUCK', 1], { ...(recipients.get(['STUCK', 1]) as object), s: 'submitted' });
  const sweeper = new RetentionSweeper({
    receipts: h.store, limits: { messagesMs: RETENTION, auditMs: RETENTION, batchRows: 2, maxRowsPerSweep: 100, scanMessages: 100 },
    metrics: h.metrics, logger, now: () => h.clock.now,
  });
  const r = await sweeper.sweep();
  t.match(r, { message: 1, recipient: 3, skipped: 1 });
  t.ok(h.store.getMessage('NEW'), 'younger than the retention: kept');
  t.ok(h.store.getMessage('STUCK') && h.store.getRecipient('STUCK', 0), 'a message with a recipient not final: kept whole');
  const text = await h.metrics.registry.metrics();
  t.match(text, /smsgw_retention_purged_rows_total\{kind="message"\} 1/);
  t.match(text, /smsgw_retention_purged_rows_total\{kind="recipient"\} 3/);
  t.match(text, /smsgw_retention_skipped_messages_total 1/);
  t.match(text, /smsgw_retention_sweep_seconds_count 1/);
});

t.test('audit entries older than retention.audit are removed oldest first, the newest always kept', async (t) => {
  const h = await setup();
  t.teardown(() => h.close());
  const dir = DirectoryStore.open({ env: h.env, tiers: ['routine'], allowInternational: false, defaultSender: '10690000', maxGroupMembers: 100, now: () => h.clock.now });
  const actor = { name: 'ops' };
  // 20 entries, one a day.
  for (let d = 0; d < 20; d++) {
    h.clock.now = T0 + d * DAY;
    await dir.recordAudit(actor, 'test.action', 'thing', `t${d}`, { detail: { d } });
  }
  const sweeper = new RetentionSweeper({
    receipts: h.store, audit: dir, limits: { messagesMs: RETENTION, auditMs: RETENTION, batchRows: 3, maxRowsPerSweep: 7, scanMessages: 10 },
    metrics: h.metrics, logger, now: () => h.clock.now,
  });
  // Cut-off between day 11 and 12: entries of days 0–11 go, 12 entries, in steps of ≤ 7.
  h.clock.now = T0 + 11 * DAY + RETENTION + 1;
  const first = await sweeper.sweep();
  t.equal(first.audit, 7, 'bounded by maxRowsPerSweep');
  const second = await sweeper.sweep();
  t.equal(second.audit, 5);
  t.equal((await sweeper.sweep()).audit, 0);
  const left = dir.queryAudit({ limit: 100 }).items.map((e) => e.targetId).reverse();
  t.same(left, Array.from({ length: 8 }, (_, k) => `t${12 + k}`), 'exactly the younger entries remain');
  t.same(dir.queryAudit({ targetType: 'thing', targetId: 't3', limit: 10 }).items, [], 'the per-target index goes too');
  // Everything old: the newest entry stays so the sequence goes on.
  h.clock.now = T0 + 1000 * DAY;
  while ((await sweeper.sweep()).audit > 0);
  t.same(dir.queryAudit({ limit: 100 }).items.map((e) => e.targetId), ['t19']);
  await dir.recordAudit(actor, 'test.action', 'thing', 'after', {});
  t.same(dir.queryAudit({ limit: 2 }).items.map((e) => e.seq), [21, 20], 'sequence numbers keep growing');
});

t.test('a key reused after its message was purged is a new message (invariant 7 across a purge)', async (t) => {
  const h = await setup();
  t.teardown(() => h.close());
  const ttl = DAY;
  const first = keyedMessageId(h.store, 'bureau', 'K', 'fp', T0, ttl);
  h.store.putMessage(record(first, 1, T0, T0 + 1_000, { idempotencyKey: 'K', fingerprint: 'fp' }), numbers(1, 1));
  h.store.putIdempotency('bureau', 'K', { fingerprint: 'fp', response: { id: first } }, T0 + ttl);
  await h.store.flushed();
  h.clock.now = T0 + RETENTION + DAY;
  while ((await h.store.expireDue()) > 0);
  const sweeper = new RetentionSweeper({
    receipts: h.store, limits: { messagesMs: RETENTION, auditMs: RETENTION, batchRows: 10, maxRowsPerSweep: 100, scanMessages: 100 },
    metrics: h.metrics, logger, now: () => h.clock.now,
  });
  t.match(await sweeper.sweep(), { message: 1, idempotency: 1 });
  t.equal(h.store.getMessage(first), undefined, 'purged');
  const again = keyedMessageId(h.store, 'bureau', 'K', 'fp', h.clock.now, ttl);
  t.not(again, first, 'a new id, not the purged message\'s');
});

t.test('config: retention defaults, audit below 180 days refused at start, messages not shorter than the idempotency TTL', async (t) => {
  const c = loadConfig({ env: {} });
  t.equal(c.retentionMs.messages, RETENTION);
  t.equal(c.retentionMs.audit, RETENTION);
  const refused = (overrides: Record<string, unknown>, field: string): void => {
    try {
      loadConfig({ env: {}, overrides });
      t.fail(`expected CONFIG_INVALID for ${field}`);
    } catch (e) {
      t.ok(e instanceof GatewayError && e.code === 'CONFIG_INVALID' && e.details?.some((d) => d.field === field), `${field}: ${(e as Error).message}`);
    }
  };
  refused({ retention: { audit: 'P179D' } }, '/retention/audit');
  refused({ retention: { audit: 'PT1H' } }, '/retention/audit');
  refused({ retention: { messages: 'P1D' } }, '/retention/messages');
  t.equal(loadConfig({ env: {}, overrides: { retention: { messages: 'P30D', audit: 'P365D' } } }).retentionMs.audit, 365 * DAY, 'longer is fine');
});
