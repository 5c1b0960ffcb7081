/**
 * MoInbox against LMDB in a temp dir, with a controlled clock: parts that
 * arrive at once are assembled exactly once, records past retention are
 * swept, a full parts table keeps new parts alone (never dropped).
 */
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { MoInbox, MO_RETENTION_MS, type MoHandler } from '../../src/office/mo-inbox.js';
import type { MobileOriginated } from '../../src/core/ports.js';
import { tempEnv } from '../support/temp-env.js';

function inbox(t: Test, opts: { maxOpenParts?: number; handlers?: MoHandler[] } = {}): { box: MoInbox; clock: { now: number } } {
  const env = tempEnv(t);
  const clock = { now: Date.parse('2026-11-22T08:00:00Z') };
  const box = new MoInbox({
    env, senders: () => new Map([['10690002', 'city']]), handlers: opts.handlers ?? [],
    partTimeoutMs: 60_000, maxOpenParts: opts.maxOpenParts ?? 100, callbackAttempts: 2, callbackTimeoutMs: 1000, maxPendingForwards: 10, webhooks: { post: async () => 'connection failed' },
    metrics: createMetrics(), logger: pino({ level: 'silent' }), now: () => clock.now,
  });
  return { box, clock };
}

const part = (seq: number, total: number, text: string, ref = 9): MobileOriginated => ({
  account: 'sim', source: '8613900000016', destination: '10690002', text, receivedAt: Date.now(), part: { ref, total, seq },
});

t.test('parts arriving at once are assembled exactly once', async (t) => {
  const seen: string[] = [];
  const { box } = inbox(t, { handlers: [{ name: 'probe', handle: async (mo) => { seen.push(mo.text); return { route: 'probe', state: 'handled' }; } }] });
  await Promise.all([part(2, 3, 'B'), part(1, 3, 'A'), part(3, 3, 'C'), part(2, 3, 'B')].map((p) => box.receive(p)));
  t.same(seen, ['ABC'], 'one assembled message, handled once');
  t.equal(box.list('city', 'handled', { limit: 10 }).items.length, 1);
});

t.test('records past retention are swept; recent ones stay', async (t) => {
  const { box, clock } = inbox(t);
  await box.receive({ account: 'sim', source: '8613900000016', destination: '10690002', text: 'old', receivedAt: clock.now });
  clock.now += MO_RETENTION_MS + 1000;
  await box.receive({ account: 'sim', source: '8613900000016', destination: '10690002', text: 'new', receivedAt: clock.now });
  t.equal(await box.sweepOld(), 1);
  t.same(box.list('city', 'unmatched', { limit: 10 }).items.map((m) => m.text), ['new']);
});

t.test('with the parts table full, a new part is kept on its own, not dropped', async (t) => {
  const { box } = inbox(t, { maxOpenParts: 1 });
  await box.receive(part(1, 2, 'first-half', 1));
  await box.receive(part(1, 2, 'other', 2));
  const kept = box.list('city', 'unmatched', { limit: 10 }).items;
  t.equal(kept.length, 1);
  t.match(kept[0], { text: 'other', detail: /kept alone/ });
});

t.test('MO to a code nobody owns is kept under no tenant', async (t) => {
  const { box } = inbox(t);
  await box.receive({ account: 'sim', source: '8613900000016', destination: '10699999', text: 'hi', receivedAt: Date.now() });
  t.match(box.list('', 'unmatched', { limit: 10 }).items, [{ text: 'hi', detail: /no tenant's sender code matches 10699999/ }]);
});

t.test('two processes sharing one environment never overwrite each other\'s MO (same clock, same ids)', async (t) => {
  const env = tempEnv(t);
  const fixed = Date.parse('2026-11-22T08:00:00Z');
  const make = (): MoInbox => new MoInbox({
    env, senders: () => new Map([['10690002', 'city']]), handlers: [],
    partTimeoutMs: 60_000, maxOpenParts: 100, callbackAttempts: 2, callbackTimeoutMs: 1000, maxPendingForwards: 10, webhooks: { post: async () => 'connection failed' },
    metrics: createMetrics(), logger: pino({ level: 'silent' }), now: () => fixed,
  });
  const a = make();
  const b = make();
  const mo = (text: string): MobileOriginated => ({ account: 'sim', source: '8613900000016', destination: '10690002', text, receivedAt: fixed });
  await Promise.all([a.receive(mo('a1')), b.receive(mo('b1')), a.receive(mo('a2')), b.receive(mo('b2'))]);
  const texts = a.list('city', 'unmatched', { limit: 10 }).items.map((m) => m.text).sort();
  t.same(texts, ['a1', 'a2', 'b1', 'b2'], 'all four kept');
});
