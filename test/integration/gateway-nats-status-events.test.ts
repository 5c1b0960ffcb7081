/**
 * StatusEventPublisher against a real nats-server: final states become
 * batched JSON events on `<prefix>.status.<tenant>` in a limits stream;
 * the buffer is bounded and a dead server costs counted drops, never a
 * blocked caller; the receipt store's onFinal feeds it after commit.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { pino } from 'pino';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { requireNatsServer, startNatsServer } from '../support/nats-server.js';
import { StatusEventPublisher, statusSubject, type FinalStateSource, type StatusBatch } from '../../src/queue/nats/status-events.js';
import type { FinalState } from '../../src/core/message.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { ReceiptStore } from '../../src/receipts/store.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A stand-in for the receipt store's onFinal. */
class FakeSource implements FinalStateSource {
  private listener: ((messageId: string, index: number, state: FinalState, own: boolean) => void) | undefined;
  onFinal(listener: (messageId: string, index: number, state: FinalState, own: boolean) => void): void {
    this.listener = listener;
  }
  emit(messageId: string, index: number, state: FinalState, own = true): void {
    this.listener?.(messageId, index, state, own);
  }
}

/** Every status message in the stream, in order, with its subject. */
async function readStream(jsm: JetStreamManager, stream: string): Promise<Array<{ subject: string; batch: StatusBatch; msgId: string | undefined }>> {
  const info = await jsm.streams.info(stream);
  const out: Array<{ subject: string; batch: StatusBatch; msgId: string | undefined }> = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < 10_000; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (m) out.push({ subject: m.subject, batch: m.json<StatusBatch>(), msgId: m.header?.get('Nats-Msg-Id') });
  }
  return out;
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (check()) return;
    if (Date.now() >= deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await sleep(20);
  }
}

if (requireNatsServer(t)) {
  t.test('events are batched per tenant onto <prefix>.status.<tenant> in a bounded limits stream', async (t) => {
    const server = await startNatsServer({ jetstream: true });
    t.teardown(() => server.destroy());
    const admin: NatsConnection = await connect({ servers: [server.url] });
    t.teardown(() => admin.close());
    const jsm = await jetstreamManager(admin);
    const metrics = createMetrics({ defaultMetrics: false });
    const source = new FakeSource();
    const tenants = new Map<string, string>();
    const publisher = await StatusEventPublisher.start({
      servers: [server.url],
      source,
      tenantOf: (id) => tenants.get(id),
      options: { prefix: 'smsgw', stream: 'SMSGW_STATUS', replicas: 1, maxAgeMs: 3_600_000, maxBytes: 8 * 1024 * 1024, maxEventsPerMessage: 100 },
      metrics,
    });

    const info = await jsm.streams.info('SMSGW_STATUS');
    t.equal(info.config.retention, 'limits', 'limits retention');
    t.equal(info.config.discard, 'old', 'oldest events go first');
    t.equal(info.config.max_age, 3_600_000 * 1_000_000, 'bounded age');
    t.equal(info.config.max_bytes, 8 * 1024 * 1024, 'bounded bytes');
    t.same(info.config.subjects, ['smsgw.status.>'], 'one wildcard subject per prefix');

    // Three tenants, 1,500 events over several event-loop turns; the last turn is still buffered when stop() is called.
    const expected = new Map<string, Set<string>>();
    for (let m = 0; m < 30; m++) {
      const id = `msg-${m}`;
      const tenant = ['city-oa', 'police', 'bureau.7'][m % 3] as string;
      tenants.set(id, tenant);
      for (let i = 0; i < 50; i++) {
        const state: FinalState = i % 10 === 9 ? 'undeliverable' : 'delivered';
        source.emit(id, i, state);
        const key = statusSubject('smsgw', tenant);
        if (!expected.has(key)) expected.set(key, new Set());
        expected.get(key)?.add(`${id}/${i}/${state}`);
      }
      if (m % 10 === 9) await sleep(5);
    }
    source.emit('orphan', 0, 'failed'); // no stored tenant: counted, not published
    await publisher.stop();

    const stats = publisher.stats();
    t.equal(stats.published, 1_500, 'every event published (stop() flushed the last turn)');
    t.equal(stats['no-tenant'], 1, 'the event without a tenant is counted');
    t.equal(stats.buffered, 0, 'nothing left buffered');
    const metricText = await metrics.registry.getSingleMetricAsString('smsgw_status_events_total');
    t.match(metricText, /smsgw_status_events_total\{outcome="published"\} 1500/, 'counted in the metric');

    const msgs = await readStream(jsm, 'SMSGW_STATUS');
    t.ok(msgs.length >= 15 && msgs.length < 1_500, `${msgs.length} NATS messages carry 1,500 events (batched)`);
    t.equal(new Set(msgs.map((m) => m.msgId)).size, msgs.length, 'each batch has its own Nats-Msg-Id');
    const seen = new Map<string, string[]>();
    let badShape = 0;
    for (const m of msgs) {
      if (m.batch.v !== 1 || statusSubject('smsgw', m.batch.tenant) !== m.subject || m.batch.events.length > 100) badShape++;
      for (const e of m.batch.events) {
        if (!Number.isInteger(e.at) || e.at <= 0) badShape++;
        if (!seen.has(m.subject)) seen.set(m.subject, []);
        seen.get(m.subject)?.push(`${e.messageId}/${e.index}/${e.state}`);
      }
    }
    t.equal(badShape, 0, 'v1 batches, subject names the batch tenant, ≤ maxEventsPerMessage events, times in epoch ms');
    t.same([...seen.keys()].sort(), ['smsgw.status.bureau_7', 'smsgw.status.city-oa', 'smsgw.status.police'], 'one subject per tenant (dots in a tenant made safe)');
    for (const [subject, events] of seen) {
      t.equal(events.length, expected.get(subject)?.size, `${subject}: each event once`);
      t.same(new Set(events), expected.get(subject), `${subject}: exactly the tenant's events`);
    }
    // No phone number on the wire: an event is its message id, index, state and time, nothing else. (A substring
    // test for '86138' checked nothing this source could send, and matched an epoch-ms time in a CI run.)
    const fields = new Set(msgs.flatMap((m) => m.batch.events.flatMap((e) => Object.keys(e))));
    t.same([...fields].sort(), ['at', 'index', 'messageId', 'state'], 'no phone numbers on the wire: events carry only id, index, state, time');
  });

  t.test('bounded: a full buffer drops and counts, a dead server costs counted failures, never a blocked caller', async (t) => {
    const server = await startNatsServer({ jetstream: true });
    t.teardown(() => server.destroy());
    const source = new FakeSource();
    const publisher = await StatusEventPublisher.start({
      servers: [server.url],
      source,
      tenantOf: () => 'dev',
      options: { prefix: 'smsgw', stream: 'S_STATUS', replicas: 1, maxBuffered: 100, maxEventsPerMessage: 50, publishAttempts: 2, publishTimeoutMs: 300, closeGraceMs: 0 },
    });
    t.teardown(() => publisher.stop());

    await server.kill('SIGKILL');
    // 1,000 final states in one synchronous burst: the listener returns every time.
    let emitted = 0;
    for (let i = 0; i < 1_000; i++, emitted++) source.emit('m-1', i, 'delivered');
    t.equal(publisher.stats()['dropped-full'], 900, 'past maxBuffered, events are dropped and counted');
    t.equal(publisher.stats().buffered, 100, 'the buffer holds its bound');
    await until('buffered events given up on', () => publisher.stats()['dropped-failed'] === 100, 15_000);
    t.equal(publisher.stats().published, 0, 'nothing published while the server is down');

    await server.restart();
    for (let i = 0; i < 100 && publisher.stats().published === 0; i++, emitted++) {
      source.emit('m-2', i, 'expired');
      await sleep(100);
    }
    t.ok(publisher.stats().published > 0, 'publishing resumes after the server is back');
    const s = publisher.stats();
    t.equal(s.published + s['dropped-full'] + s['dropped-failed'] + s.buffered, emitted, 'every event is accounted for');
  });

  t.test('the receipt store feeds it: final states committed in LMDB arrive on the tenant subject', async (t) => {
    const server = await startNatsServer({ jetstream: true });
    t.teardown(() => server.destroy());
    const dir = mkdtempSync(join(tmpdir(), 'smsgw-status-'));
    const env = open({ path: join(dir, 'gateway.lmdb'), maxDbs: 32, compression: false });
    const metrics = createMetrics({ defaultMetrics: false });
    const logger = pino({ level: 'silent' });
    const store = ReceiptStore.open({ env, metrics, logger, earlyReceiptTtlMs: 60_000, receiptGraceMs: 60_000 });
    t.teardown(async () => {
      await store.close();
      await env.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const publisher = await StatusEventPublisher.start({
      servers: [server.url],
      source: store,
      tenantOf: (id) => store.getMessage(id)?.tenant,
      options: { prefix: 'smsgw', stream: 'SMSGW_STATUS', replicas: 1 },
      metrics,
      logger,
    });
    t.teardown(() => publisher.stop());

    const now = Date.now();
    store.putMessage(
      { id: 'm-store-1', tenant: 'city-oa', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 1, recipients: 4, createdAt: now, expiresAt: now + 3_600_000 },
      ['8613800000016', '8613800000026', '8613800000036', '8613800000046'],
    );
    await store.flushed();
    await store.finalizeRecipients('m-store-1', [
      { index: 0, state: 'failed', error: 'test' },
      { index: 2, state: 'rejected', error: 'test' },
      { index: 3, state: 'expired', error: 'test' },
    ]);
    await until('three events published', () => publisher.stats().published === 3, 10_000);
    const admin = await connect({ servers: [server.url] });
    t.teardown(() => admin.close());
    const msgs = await readStream(await jetstreamManager(admin), 'SMSGW_STATUS');
    const events = msgs.flatMap((m) => m.batch.events.map((e) => ({ subject: m.subject, messageId: e.messageId, index: e.index, state: e.state })));
    t.same(
      events.sort((a, b) => a.index - b.index),
      [
        { subject: 'smsgw.status.city-oa', messageId: 'm-store-1', index: 0, state: 'failed' },
        { subject: 'smsgw.status.city-oa', messageId: 'm-store-1', index: 2, state: 'rejected' },
        { subject: 'smsgw.status.city-oa', messageId: 'm-store-1', index: 3, state: 'expired' },
      ],
      'one event per recipient that became final, after commit',
    );
  });
}
