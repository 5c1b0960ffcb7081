/**
 * Receipt replication between hosts (src/receipts/change-log.ts,
 * src/queue/nats/receipt-replication.ts) over a real nats-server: three
 * receipt stores, each in its own LMDB environment (three "hosts"), each
 * with its relay and applier. Changes made on one host show on the others:
 * messages, submits, receipts (before or after the submit they match),
 * idempotency keys, expiry (decided by the message's own host), PDA
 * states; final states are announced everywhere, `own` only on the
 * message's host; a restarted applier resumes at its stored position and
 * applies nothing twice; the outboxes drain.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { open } from 'lmdb';
import { ChangeLog, checkReplicaHost } from '../../src/replication/change-log.js';
import { ReceiptStore } from '../../src/receipts/store.js';
import type { MessageRecord } from '../../src/receipts/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { outcomeCount, startReplicaHost, startReplicationNats, startReplication } from '../support/replication.js';
import { until } from '../support/nats-deployment.js';
import { tempEnv } from '../support/temp-env.js';

function message(id: string, recipients: number, over: Partial<MessageRecord> = {}): MessageRecord {
  const now = Date.now();
  return {
    id, tenant: 'city-oa', tier: 'routine', channel: 'sms', encoding: 'gsm7', segments: 1, recipients,
    createdAt: now, expiresAt: now + 3_600_000, ...over,
  };
}

const numbers = (n: number, base: number): string[] => Array.from({ length: n }, (_, i) => `861380000${String(base + i).padStart(4, '0')}`);


t.test('receipt changes made on any host reach every other host', async (tt) => {
  const nats = await startReplicationNats(tt);
  if (!nats) return;
  const a = await startReplicaHost(tt, 'host-a', nats);
  const b = await startReplicaHost(tt, 'host-b', nats);
  const c = await startReplicaHost(tt, 'host-c', nats);

  // Accepted on A: the message and its rows appear on B and C.
  a.store.putMessage(message('M1', 3), numbers(3, 0));
  a.store.putIdempotency('city-oa', 'req-1', { id: 'M1' }, Date.now() + 60_000);
  await a.store.flushed();
  await until('M1 on B and C', () => b.store.getMessage('M1') !== undefined && c.store.getMessage('M1') !== undefined, 10_000);
  tt.equal(b.store.getRecipient('M1', 2)?.to, '8613800000002', 'recipient rows come with the message');
  tt.same(c.store.getIdempotency('city-oa', 'req-1'), { id: 'M1' }, 'an Idempotency-Key taken on A is known on C');
  tt.equal(b.store.getMessage('M1')?.recipients, 3);

  // Submitted on B (its dispatcher); a receipt for recipient 0 reaches A, which may not know the submit yet.
  const at = Date.now();
  await b.store.recordSegments([0, 1, 2].map((i) => ({ kind: 'submitted' as const, messageId: 'M1', index: i, segment: 1, segments: 1, account: 'sim', opId: `op-${i}`, at })));
  const r0 = await a.store.applyReceipt({ account: 'sim', messageId: 'op-0', state: 'delivered', doneAt: at + 5 });
  tt.ok(r0 === 'applied' || r0 === 'early', `the receipt is applied or kept early on A (${r0})`);
  // A receipt on C for recipient 1, after C has seen the submit.
  await until('submit of recipient 1 on C', () => c.store.getSegment('M1', 1, 1)?.opId === 'op-1', 10_000);
  tt.equal(await c.store.applyReceipt({ account: 'sim', messageId: 'op-1', state: 'undeliverable', doneAt: at + 6, error: 'absent subscriber' }), 'applied');

  for (const h of [a, b, c]) {
    await until(`recipients 0 and 1 final on ${h.name}`, () => h.store.getRecipient('M1', 0)?.state === 'delivered' && h.store.getRecipient('M1', 1)?.state === 'undeliverable', 10_000);
    tt.equal(h.store.getRecipient('M1', 2)?.state, 'submitted', `${h.name}: recipient 2 still waits for its receipt`);
    tt.equal(h.store.getSegment('M1', 0, 1)?.opId, 'op-0', `${h.name}: the operator id is replicated`);
    tt.equal(h.store.getRecipient('M1', 1)?.error, 'absent subscriber');
  }

  // Expiry: decided by the message's own host only, then replicated.
  a.store.putMessage(message('M2', 2, { createdAt: Date.now() - 10_000, expiresAt: Date.now() - 1 }), numbers(2, 100));
  await a.store.flushed();
  await until('M2 on B', () => b.store.getMessage('M2') !== undefined, 10_000);
  tt.equal(await b.store.expireDue(), 0, 'B does not expire a message accepted on A');
  tt.equal(await a.store.expireDue(), 2, 'A expires both recipients of M2');
  await until('M2 expired on B and C', () => [b, c].every((h) => h.store.getRecipient('M2', 0)?.state === 'expired' && h.store.getRecipient('M2', 1)?.state === 'expired'), 10_000);

  // Final states are announced on every host; `own` only on A, the message's host.
  await until('every final announced on every host', () => [a, b, c].every((h) => h.finals.length === 4), 10_000);
  for (const h of [a, b, c]) {
    tt.same(h.finals.map((f) => `${f.id}/${f.index}:${f.state}`).sort(), ['M1/0:delivered', 'M1/1:undeliverable', 'M2/0:expired', 'M2/1:expired'], `${h.name}: each final announced once`);
    tt.ok(h.finals.every((f) => f.own === (h === a)), `${h.name}: own is ${h === a}`);
  }

  // PDA states recorded on C reach A.
  a.store.putMessage(message('M3', 1, { channel: 'pda' }), numbers(1, 200));
  await a.store.flushed();
  await until('M3 on C', () => c.store.getMessage('M3') !== undefined, 10_000);
  await c.store.recordPdaStates([{ messageId: 'M3', index: 0, state: 'delivered-to-device', at: Date.now(), deviceId: 'pda-7', seq: 3 }]);
  await until('M3 delivered on A', () => a.store.getRecipient('M3', 0)?.state === 'delivered', 10_000);
  tt.equal(a.store.getSegment('M3', 0, 1)?.opId, 'pda-7:3');

  // Outboxes drain; nothing named a missing row; no receipt was counted twice.
  await until('outboxes empty', () => [a, b, c].every((h) => h.log.waiting === 0), 10_000);
  for (const h of [a, b, c]) {
    tt.equal(await outcomeCount(h.metrics, 'smsgw_replication_ops_total', 'missing'), 0, `${h.name}: no operation named a missing row`);
    tt.equal(h.store.stats().duplicateReceipts, 0, `${h.name}: no receipt applied twice`);
  }
});

t.test('a restarted applier resumes at its stored position and applies nothing twice', async (tt) => {
  const nats = await startReplicationNats(tt);
  if (!nats) return;
  const a = await startReplicaHost(tt, 'host-a', nats);
  const b = await startReplicaHost(tt, 'host-b', nats);

  a.store.putMessage(message('R1', 50), numbers(50, 0));
  await a.store.flushed();
  await until('R1 on B', () => b.store.getMessage('R1') !== undefined, 10_000);
  const position = b.store.replicaPosition();
  tt.ok(position !== undefined && position[0] >= 1, 'B stored its position');

  // B's applier stops; A goes on: 50 receipts' worth of submits and receipts.
  await b.replication?.stop();
  const at = Date.now();
  for (let i = 0; i < 50; i++) {
    await a.store.recordSegments([{ kind: 'submitted', messageId: 'R1', index: i, segment: 1, segments: 1, account: 'sim', opId: `r-${i}`, at }]);
    await a.store.applyReceipt({ account: 'sim', messageId: `r-${i}`, state: 'delivered', doneAt: at + 1 });
  }
  await until('A outbox published', () => a.log.waiting === 0, 10_000);
  tt.equal(b.store.getRecipient('R1', 49)?.state, 'accepted', 'B saw nothing while its applier was stopped');

  // A second process of host B would do the same: a fresh applier from the stored position.
  b.replication = await startReplication(b, nats);
  // Listeners run after the commit that readers already see: wait for the announcements, then count.
  await until('R1 delivered on B and announced', () => b.store.summary('R1').delivered === 50 && b.finals.filter((f) => f.id === 'R1').length >= 50, 10_000);
  tt.equal(b.finals.filter((f) => f.id === 'R1').length, 50, 'each final announced once on B');
  tt.equal(b.store.stats().duplicateReceipts, 0, 'no receipt applied twice');

  // And a third applier of the same host (say, the ingest process beside the dispatcher) skips everything.
  const extra = await startReplication(b, nats);
  tt.teardown(() => extra.stop());
  tt.ok(await extra.caughtUp(10_000), 'the extra applier catches up');
  tt.same([b.replication?.relaying, extra.relaying], [true, false], 'one relay per host publishes the outbox; the other process stands by');
  // The relaying process stops: the one standing by takes the lease and publishes B's next changes.
  await b.replication?.stop();
  b.replication = undefined;
  b.store.putIdempotency('city-oa', 'after-handover', { id: 'R1' }, Date.now() + 60_000);
  await b.store.flushed();
  await until('B\'s change on A after the handover', () => a.store.getIdempotency('city-oa', 'after-handover') !== undefined, 10_000);
  tt.ok(extra.relaying, 'the standby relays now');
  tt.equal(b.finals.filter((f) => f.id === 'R1').length, 50, 'still one final each');
  tt.ok(await outcomeCount(b.metrics, 'smsgw_replication_ops_total', 'skipped') > 0, 'the repeats were skipped by position');
  tt.equal(b.store.stats().duplicateReceipts, 0);
});

t.test('a data dir replicates as one host: other ids and processes without replication are refused', async (tt) => {
  const env = tempEnv(tt);
  tt.doesNotThrow(() => checkReplicaHost(env, undefined), 'a data dir never replicated opens without replication');
  tt.doesNotThrow(() => checkReplicaHost(env, 'host-a'), 'the first host id is recorded');
  tt.doesNotThrow(() => checkReplicaHost(env, 'host-a'), 'the same host id again');
  tt.throws(() => checkReplicaHost(env, 'host-b'), { code: 'CONFIG_INVALID', message: /replicated as host "host-a", not "host-b"/ });
  tt.throws(() => checkReplicaHost(env, undefined), { code: 'CONFIG_INVALID', message: /needs queue\.nats\.replication\.enabled with host "host-a"/ });
  tt.throws(() => new ChangeLog(env, 'bad host!'), /must match/);
});

t.test('an entry written in a transaction sorts after every entry already committed (other processes\' included)', async (tt) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smsgw-repl-order-'));
  const env = open({ path: dir, maxDbs: 32 });
  const log = new ChangeLog(env, 'host-a');
  const store = ReceiptStore.open({ env, metrics: createMetrics({ defaultMetrics: false }), logger: createLogger({ level: 'silent' }), earlyReceiptTtlMs: 600_000, receiptGraceMs: 0, changeLog: log });
  tt.teardown(async () => {
    await store.close();
    await env.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  store.putMessage(message('O1', 1), numbers(1, 0));
  await store.flushed();
  // Another process of the host committed an entry whose clock reads one second ahead of ours.
  const ahead = Date.now() * 1000 + 1_000_000;
  await log.outbox.put([ahead, 999_999, 0], { v: 1, h: 'host-a', ops: [{ k: 'q', id: 'O1', idx: [0], at: Date.now() }] });
  await store.recordSegments([{ kind: 'submitted', messageId: 'O1', index: 0, segment: 1, segments: 1, account: 'sim', opId: 'o-1', at: Date.now() }]);
  const keys = log.oldest(10).map((e) => e.key);
  tt.equal(keys.length, 3, 'the message, the other process\'s entry, the submit');
  tt.same(log.oldest(10).map((e) => e.value.ops[0]?.k), ['m', 'q', 's'], 'in the order they were committed');
  tt.ok(keys[2]![0] > ahead, 'the submit sorts after the entry committed before it, whatever the clocks');
});
