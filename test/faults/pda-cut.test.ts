/**
 * Connections cut in the middle of a batch: frames delivered but not
 * acknowledged, acknowledgements lost on the way. Nothing may be lost; a
 * message may arrive twice on the wire, and the client shows it once (by id).
 */
import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { PdaClient, newClientState } from '../../src/pda/client.js';
import { PdaSim } from '../../src/pda/sim.js';
import type { PdaMessage, PdaPriority } from '../../src/pda/types.js';
import { startPdaHarness, type PdaHarness } from '../support/pda.js';
import { until as pollUntil } from '../support/wait.js';

const server = (t: Test, over: Record<string, unknown> = {}): Promise<PdaHarness> => startPdaHarness(t, { pda: over });

const msg = (id: string, personId: string, priority: PdaPriority = 0, index = 0): PdaMessage => ({
  messageId: id, index, personId, priority, expiresAt: Date.now() + 3_600_000, classification: 'police', senderUnit: 'u', body: `body ${id}`,
});

/** Poll every 10 ms (test/support/wait.ts), 15_000 ms unless told. */
const until = (what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> => pollUntil(what, cond, timeoutMs, 10);

t.test('cut after the k-th frame of a 200-message batch, before its ack: no loss, shown once', async (t) => {
  const s = await server(t, { window: 32 });
  for (const k of [1, 17, 32, 33, 150]) {
    const dev = `pda-k${k}`;
    const { key } = await s.channel.registry.register({ deviceId: dev, personId: `off-${k}`, unit: 'u' });
    const ids = Array.from({ length: 200 }, (_, i) => `K${k}-${i}`);
    await s.channel.deliver(ids.map((id) => msg(id, `off-${k}`)));
    const state = newClientState();
    const shown: string[] = [];
    let frames = 0;
    const first = new PdaClient({
      url: s.url, deviceId: dev, key, state,
      onMessage: (m) => shown.push(m.messageId),
      onFrame: () => {
        if (++frames === k) first.terminate();
      },
    });
    await first.connect();
    await first.closed;
    t.ok(shown.length >= 1 && shown.length <= k, `k=${k}: ${shown.length} shown before the cut`);
    const second = new PdaClient({ url: s.url, deviceId: dev, key, state, onMessage: (m) => shown.push(m.messageId) });
    await second.connect();
    await until(`k=${k}: all 200`, () => shown.length >= 200);
    await until(`k=${k}: outbox empty`, () => s.channel.store.cursorOf(dev)?.c === 0);
    t.same(shown, ids, `k=${k}: every message once, in order`);
    t.ok(second.counts.duplicates >= 0, `k=${k}: ${second.counts.duplicates} redelivered frame(s) de-duplicated by the client`);
    await second.close();
  }
  await s.channel.settled();
  t.equal(s.sink.count('delivered-to-device'), 1000, 'each recipient reported delivered once');
});

t.test('acks lost with the connection: what HELLO lastAck does not cover comes again, shown once', async (t) => {
  const s = await server(t);
  const { key } = await s.channel.registry.register({ deviceId: 'pda-a', personId: 'off-a', unit: 'u' });
  // Ten routine messages (seq 1..10), then a flash one (seq 11) that goes out first.
  await s.channel.deliver([...Array.from({ length: 10 }, (_, i) => msg(`A${i}`, 'off-a')), msg('FLASH', 'off-a', 2)]);
  const state = newClientState();
  const shown: string[] = [];
  let frames = 0;
  // No automatic ack: frames are received, no ACK ever leaves; the link dies after 4 frames.
  const first = new PdaClient({
    url: s.url, deviceId: 'pda-a', key, state, autoAck: false,
    onMessage: (m) => shown.push(m.messageId),
    onFrame: () => {
      if (++frames === 4) first.terminate();
    },
  });
  await first.connect();
  await first.closed;
  t.same(shown, ['FLASH', 'A0', 'A1', 'A2']);
  t.equal(s.channel.store.cursorOf('pda-a')?.c, 11, 'nothing acknowledged: all still in the outbox');
  t.equal(state.lastAck, 3, 'the device holds 1..3 contiguously');
  t.same([...state.above], [11], 'and 11 above them');
  const second = new PdaClient({ url: s.url, deviceId: 'pda-a', key, state, onMessage: (m) => shown.push(m.messageId) });
  await second.connect();
  await until('outbox empty', () => s.channel.store.cursorOf('pda-a')?.c === 0);
  t.equal(second.counts.duplicates, 1, 'FLASH (seq 11) came again: lastAck 3 does not cover it; the client acked it and did not show it');
  t.same(shown, ['FLASH', ...Array.from({ length: 10 }, (_, i) => `A${i}`)], 'each shown once');
  await second.close();

  // A device that lost its state (reinstalled) gets only what is still unacknowledged.
  await s.channel.deliver([msg('A10', 'off-a')]);
  const again: string[] = [];
  const c = new PdaClient({ url: s.url, deviceId: 'pda-a', key, state: newClientState(), onMessage: (m) => again.push(m.messageId) });
  await c.connect();
  await until('A10', () => again.length === 1);
  t.same(again, ['A10']);
  t.equal(c.state.lastAck, 12, 'the floor moved its cumulative ack past the settled sequences');
  await c.close();
});

t.test('20 devices dropping at random while batches keep coming: each gets everything once', async (t) => {
  const s = await server(t, { window: 16 });
  const N = 20;
  const devices = await Promise.all(Array.from({ length: N }, async (_, i) => {
    const { key } = await s.channel.registry.register({ deviceId: `churn-${i}`, personId: `cop-${i}`, unit: 'u' });
    return { deviceId: `churn-${i}`, key };
  }));
  const sim = new PdaSim({ url: s.url, devices, seed: 7, dropProbability: 0.05, readProbability: 0.3, reconnectDelayMs: [5, 60], recordIds: true, heartbeat: false }, devices).start();
  t.teardown(() => sim.stop());
  await sim.allConnected();
  const expected: string[] = [];
  for (let b = 0; b < 8; b++) {
    const batch: PdaMessage[] = [];
    for (let j = 0; j < 10; j++) {
      const id = `W${b}-${j}`;
      expected.push(id);
      for (let i = 0; i < N; i++) batch.push(msg(id, `cop-${i}`, (j % 4 === 0 ? 2 : 0), i));
    }
    await s.channel.deliver(batch);
    await sleep(30);
  }
  await until('every device has every message', () => [...sim.received.values()].every((ids) => ids.length >= expected.length), 30_000);
  await until('every outbox empty', () => s.channel.store.outboxEntries === 0, 30_000);
  const stats = await sim.stop();
  t.ok(stats.drops > 0, `${stats.drops} connections cut mid-stream, ${stats.connects} sessions, ${stats.duplicates} duplicate frames de-duplicated`);
  for (const [dev, ids] of sim.received) {
    t.equal(ids.length, expected.length, `${dev}: no duplicate shown`);
    t.same([...ids].sort(), [...expected].sort(), `${dev}: no loss`);
  }
  await s.channel.settled();
  t.equal(s.sink.count('delivered-to-device'), expected.length * N, 'delivered reported once per recipient');
  t.equal(s.sink.count('queued'), expected.length * N);
});
