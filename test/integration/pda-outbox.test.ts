/**
 * Store and forward against a live server: backlog after reconnect (in order,
 * exactly once), priority jumps with consistent sequences, acks and reads
 * reported as statuses, expiry, the outbox cap, idempotent deliver,
 * several devices per officer, status relay retries, and a restart.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { MessageFrame } from '../../src/pda/codec.js';
import { PdaClient, newClientState } from '../../src/pda/client.js';
import { MemoryStatusSink, startPdaServer, type RunningPdaServer } from '../../src/pda/server.js';
import type { PdaMessage, PdaPriority } from '../../src/pda/types.js';
import { pdaConfig, startPdaHarness, type PdaHarness } from '../support/pda.js';
import { until as pollUntil } from '../support/wait.js';

const HOUR = 3_600_000;

const server = (t: Test, over: Record<string, unknown> = {}, extra: { clock?: { offset: number }; dataDir?: string; keep?: boolean } = {}): Promise<PdaHarness> =>
  startPdaHarness(t, { pda: over, ...extra });

function msg(id: string, personId: string, over: Partial<PdaMessage> = {}): PdaMessage {
  return { messageId: id, index: 0, personId, priority: 0, expiresAt: Date.now() + HOUR, classification: 'police', senderUnit: '市公安局指挥中心', body: `警情 ${id}`, ...over };
}

/** Connect, collect new messages until `n` arrived (bounded), then close gracefully (acks flushed). */
async function receive(s: RunningPdaServer, deviceId: string, key: string, n: number, state = newClientState()): Promise<{ got: MessageFrame[]; client: PdaClient }> {
  const got: MessageFrame[] = [];
  const client = new PdaClient({ url: s.url, deviceId, key, state, onMessage: (m) => got.push(m) });
  await client.connect();
  const deadline = Date.now() + 10_000;
  while (got.length < n && Date.now() < deadline) await sleep(10);
  return { got, client };
}

/** Poll every 10 ms (test/support/wait.ts), 10_000 ms unless told. */
const until = (what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> => pollUntil(what, cond, timeoutMs, 10);

t.test('a connected device receives, acks and reads; the statuses follow', async (t) => {
  const s = await server(t);
  const { key } = await s.channel.registry.register({ deviceId: 'pda-1', personId: 'off-1', unit: 'u' });
  const got: MessageFrame[] = [];
  const c = new PdaClient({ url: s.url, deviceId: 'pda-1', key, onMessage: (m) => got.push(m) });
  await c.connect();
  const r = await s.channel.deliver([msg('M1', 'off-1', { body: '请速到人民路口集合' })]);
  t.same(r, { recipients: 1, duplicates: 0, copies: 1, undeliverable: 0, expired: 0 });
  await until('the message', () => got.length === 1);
  const m = got[0] as MessageFrame;
  t.equal(m.body, '请速到人民路口集合');
  t.equal(m.senderUnit, '市公安局指挥中心');
  t.equal(m.classification, 'police');
  t.equal(m.seq, 1);
  await until('delivered-to-device', () => s.sink.count('delivered-to-device') === 1);
  c.read([m.seq]);
  await until('read', () => s.sink.count('read') === 1);
  const states = s.sink.of('M1', 0);
  t.same(states.map((u) => u.state), ['queued', 'delivered-to-device', 'read']);
  t.equal(states[1]?.deviceId, 'pda-1');
  t.equal(states[1]?.seq, 1);
  t.equal(s.channel.store.outboxEntries, 0, 'acked entries leave the outbox');
  await c.close();
});

t.test('an offline device receives its backlog in order, exactly once, after reconnecting', async (t) => {
  const s = await server(t);
  const { key } = await s.channel.registry.register({ deviceId: 'pda-o', personId: 'off-o', unit: 'u' });
  const ids = Array.from({ length: 150 }, (_, i) => `B${String(i).padStart(3, '0')}`);
  // Three deliver batches while the device is away.
  for (let b = 0; b < 3; b++) await s.channel.deliver(ids.slice(b * 50, b * 50 + 50).map((id) => msg(id, 'off-o')));
  t.equal(s.channel.store.outboxEntries, 150);
  const state = newClientState();
  const first = await receive(s, 'pda-o', key, 150, state);
  t.same(first.got.map((m) => m.messageId), ids, 'all 150, in append order');
  t.same(first.got.map((m) => m.seq), ids.map((_, i) => i + 1), 'sequences 1..150');
  t.equal(first.client.counts.duplicates, 0);
  await first.client.close();
  await s.channel.settled();
  t.equal(s.channel.store.outboxEntries, 0);
  t.equal(s.sink.count('delivered-to-device'), 150);
  const again = await receive(s, 'pda-o', key, 0, state);
  await sleep(100);
  t.same(again.got, [], 'nothing again on the next connection');
  t.equal(again.client.welcome?.backlog, 0);
  await again.client.close();
});

t.test('priority jumps the queue on the wire; sequences stay those of append order', async (t) => {
  const s = await server(t);
  const { key } = await s.channel.registry.register({ deviceId: 'pda-p', personId: 'off-p', unit: 'u' });
  const plan: Array<[string, PdaPriority]> = [['r1', 0], ['r2', 0], ['u1', 1], ['r3', 0], ['f1', 2], ['u2', 1], ['f2', 2]];
  await s.channel.deliver(plan.map(([id, priority]) => msg(id, 'off-p', { priority })));
  const { got, client } = await receive(s, 'pda-p', key, plan.length);
  t.same(got.map((m) => m.messageId), ['f1', 'f2', 'u1', 'u2', 'r1', 'r2', 'r3'], 'flash, then urgent, then routine');
  t.same(got.map((m) => m.seq), [5, 7, 3, 6, 1, 2, 4], 'each keeps the sequence it got at append');
  t.same(got.map((m) => m.priority), [2, 2, 1, 1, 0, 0, 0]);
  await until('all acked', () => s.channel.store.outboxEntries === 0);
  t.equal(client.state.lastAck, 7, 'the cumulative ack covers everything despite the wire order');
  t.equal(client.state.above.size, 0);
  await client.close();
});

t.test('a flash message sent while a routine backlog drains goes out before the rest of it', async (t) => {
  const s = await server(t, { window: 4 });
  const { key } = await s.channel.registry.register({ deviceId: 'pda-w', personId: 'off-w', unit: 'u' });
  await s.channel.deliver(Array.from({ length: 40 }, (_, i) => msg(`r${i}`, 'off-w')));
  const got: string[] = [];
  let flashSent = false;
  const c = new PdaClient({
    url: s.url, deviceId: 'pda-w', key,
    onMessage: (m) => {
      got.push(m.messageId);
      if (got.length === 8 && !flashSent) {
        flashSent = true;
        void s.channel.deliver([msg('FLASH', 'off-w', { priority: 2 })]);
      }
    },
  });
  await c.connect();
  await until('all 41', () => got.length === 41);
  const at = got.indexOf('FLASH');
  t.ok(at >= 8 && at < 8 + 4 + 4, `the flash message arrived at position ${at}, within a window or so of its append, not after the 32 routine ones left`);
  t.same(got.filter((x) => x !== 'FLASH'), Array.from({ length: 40 }, (_, i) => `r${i}`), 'routine ones still in order');
  await c.close();
});

t.test('a slow device: uWS backpressure holds the pump back, drain resumes it, nothing is dropped', async (t) => {
  const s = await server(t, { window: 4096, maxBackpressureBytes: 65536, maxBodyBytes: 4096 });
  const { key } = await s.channel.registry.register({ deviceId: 'pda-slow', personId: 'off-slow', unit: 'u' });
  const body = '慢'.repeat(1300); // 3,900 bytes
  // More than loopback socket buffers hold (several MB), so uWS itself must buffer and then wait.
  const ids = Array.from({ length: 4000 }, (_, i) => `L${i}`);
  await s.channel.deliver(ids.map((id) => msg(id, 'off-slow', { body })));
  const got: string[] = [];
  const c = new PdaClient({ url: s.url, deviceId: 'pda-slow', key, onMessage: (m) => got.push(m.messageId) });
  await c.connect();
  c.pause();
  await sleep(300);
  const sent = await s.metrics.registry.getSingleMetricAsString('smsgw_pda_messages_sent_total');
  const whileStalled = Number(/kind="first"\} (\d+)/.exec(sent)?.[1] ?? 0);
  t.ok(whileStalled < ids.length, `while the device read nothing the server sent ${whileStalled} of ${ids.length} (15 MB) and waited`);
  c.resume();
  await until('all 4000', () => got.length === ids.length, 30_000);
  t.same(got, ids, 'all of them, in order, once');
  await c.close();
});

t.test('expired messages are not delivered and are reported expired', async (t) => {
  const clock = { offset: 0 };
  const s = await server(t, {}, { clock });
  const { key } = await s.channel.registry.register({ deviceId: 'pda-e', personId: 'off-e', unit: 'u' });
  const now = Date.now();
  await s.channel.deliver([
    msg('E-short', 'off-e', { expiresAt: now + 60_000 }),
    msg('E-long', 'off-e', { expiresAt: now + 10 * HOUR }),
    msg('E-dead', 'off-e', { expiresAt: now - 1 }),
  ]);
  clock.offset = 120_000;
  await s.channel.sweepExpired();
  await s.channel.settled();
  t.same(s.sink.of('E-short', 0).map((u) => u.state), ['queued', 'expired']);
  t.match(s.sink.of('E-short', 0)[1]?.error, /expiry/);
  t.same(s.sink.of('E-dead', 0).map((u) => u.state), ['expired'], 'already past its expiry at deliver');
  const { got, client } = await receive(s, 'pda-e', key, 1);
  t.same(got.map((m) => m.messageId), ['E-long']);
  t.equal(got[0]?.floor, 2, 'the floor tells the device that sequence 1 is settled');
  await until('ack', () => s.sink.count('delivered-to-device') === 1);
  t.equal(client.state.lastAck, 2);
  await client.close();
});

t.test('the outbox cap refuses further copies: undeliverable, counted', async (t) => {
  const s = await server(t, { outboxMaxPerDevice: 3 });
  await s.channel.registry.register({ deviceId: 'pda-c', personId: 'off-c', unit: 'u' });
  const r = await s.channel.deliver(Array.from({ length: 5 }, (_, i) => msg(`C${i}`, 'off-c')));
  t.equal(r.copies, 3);
  t.equal(r.undeliverable, 2);
  await s.channel.settled();
  t.same(s.sink.of('C4', 0).map((u) => u.state), ['undeliverable']);
  t.match(s.sink.of('C4', 0)[0]?.error, /full/);
  t.match(await s.metrics.registry.getSingleMetricAsString('smsgw_pda_outbox_refused_total'), /reason="outbox-full"\} 2/);
  t.match(await s.metrics.registry.getSingleMetricAsString('smsgw_pda_outbox_entries'), / 3$/m);
});

t.test('deliver is idempotent per recipient; bad input is refused whole', async (t) => {
  const s = await server(t);
  await s.channel.registry.register({ deviceId: 'pda-i', personId: 'off-i', unit: 'u' });
  const batch = [msg('I1', 'off-i'), msg('I1', 'off-i', { index: 1 })];
  t.same(await s.channel.deliver(batch), { recipients: 2, duplicates: 0, copies: 2, undeliverable: 0, expired: 0 });
  t.same(await s.channel.deliver(batch), { recipients: 2, duplicates: 2, copies: 0, undeliverable: 0, expired: 0 }, 'a redelivered job appends nothing');
  await t.rejects(s.channel.deliver([msg('ok', 'off-i'), msg('bad id', 'off-i', { body: 'x'.repeat(5000) })]), {
    code: 'VALIDATION',
    details: [{ field: '/1/messageId' }, { field: '/1/body' }],
  });
  await t.rejects(s.channel.deliver([{ ...msg('both', 'off-i'), deviceIds: ['pda-i'] }]), { code: 'VALIDATION' });
  t.equal(s.channel.store.outboxEntries, 2, 'nothing of the refused batch was written');
  const none = await s.channel.deliver([msg('N1', 'nobody')]);
  t.equal(none.undeliverable, 1, 'an officer without a device');
  await s.channel.settled();
  t.match(s.sink.of('N1', 0)[0], { state: 'undeliverable', error: /no active PDA device/ });
});

t.test('an officer with two devices: both get it, delivered is reported once', async (t) => {
  const s = await server(t);
  const a = await s.channel.registry.register({ deviceId: 'pda-2a', personId: 'off-2', unit: 'u' });
  const b = await s.channel.registry.register({ deviceId: 'pda-2b', personId: 'off-2', unit: 'u' });
  await s.channel.deliver([msg('D1', 'off-2')]);
  const ra = await receive(s, 'pda-2a', a.key, 1);
  const rb = await receive(s, 'pda-2b', b.key, 1);
  t.equal(ra.got.length, 1);
  t.equal(rb.got.length, 1);
  await until('both acked', () => s.channel.store.outboxEntries === 0);
  await s.channel.settled();
  t.same(s.sink.of('D1', 0).map((u) => u.state), ['queued', 'delivered-to-device']);
  await ra.client.close();
  await rb.client.close();
  const direct = await s.channel.deliver([{ ...msg('D2', 'x'), personId: undefined, deviceIds: ['pda-2b', 'pda-2b', 'pda-none'] }]);
  t.equal(direct.copies, 1, 'deviceIds: de-duplicated, inactive or unknown ones skipped');
});

t.test('status relay: a failing receipt store is retried; nothing is lost', async (t) => {
  const s = await server(t);
  await s.channel.registry.register({ deviceId: 'pda-s', personId: 'off-s', unit: 'u' });
  s.sink.failNext = 3;
  await s.channel.deliver(Array.from({ length: 20 }, (_, i) => msg(`S${i}`, 'off-s')));
  await until('the relay to get through', () => s.sink.count('queued') === 20);
  t.ok(s.sink.calls >= 4, `retried (${s.sink.calls} calls)`);
  t.match(await s.metrics.registry.getSingleMetricAsString('smsgw_pda_status_relay_failures_total'), / 3$/m);
  await until('backlog drained', () => s.channel.store.statusBacklog === 0);
});

t.test('the outbox survives a restart', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-restart-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = pdaConfig();
  const first = await startPdaServer({ dataDir, config, sink: new MemoryStatusSink(), logger: pino({ level: 'silent' }) });
  const { key } = await first.channel.registry.register({ deviceId: 'pda-z', personId: 'off-z', unit: 'u' });
  await first.channel.deliver(Array.from({ length: 30 }, (_, i) => msg(`Z${i}`, 'off-z', { priority: (i % 3) as PdaPriority })));
  await first.stop();
  const s = await server(t, {}, { dataDir, keep: true });
  const { got, client } = await receive(s, 'pda-z', key, 30);
  t.equal(new Set(got.map((m) => m.messageId)).size, 30, 'all 30 after the restart');
  await client.close();
});
