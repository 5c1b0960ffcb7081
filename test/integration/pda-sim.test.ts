/**
 * The simulator and `smsgw pda-sim` against a live server: devices
 * provisioned through the admin API, receiving, reading, dropping and
 * reconnecting (seeded), every recipient ending delivered.
 */
import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { registerPdaCommands } from '../../src/pda/cli.js';
import { runPdaSim, seededRandom, startPdaSim } from '../../src/pda/sim.js';
import { startPdaHarness, type PdaHarness } from '../support/pda.js';

const ADMIN = 'sim-admin-key-0123456789';

const server = (t: Test): Promise<PdaHarness> => startPdaHarness(t, { pda: { adminKey: ADMIN } });

t.test('seeded random is repeatable', async (t) => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const xs = Array.from({ length: 5 }, () => a());
  t.same(xs, Array.from({ length: 5 }, () => b()));
  t.ok(xs.every((x) => x >= 0 && x < 1));
});

t.test('simulated PDAs provisioned by the admin API receive everything once, reading some, with drops', async (t) => {
  const s = await server(t);
  const sim = await startPdaSim({ url: s.url, devices: 12, adminKey: ADMIN, prefix: 'sq', seed: 3, dropProbability: 0.08, readProbability: 0.5, reconnectDelayMs: [5, 50], recordIds: true });
  t.teardown(() => sim.stop());
  await sim.allConnected();
  t.equal(s.channel.registry.list({ limit: 100 }).items.length, 12, 'registered through the admin API');
  const ids = Array.from({ length: 25 }, (_, i) => `S${i}`);
  for (const id of ids) {
    await s.channel.deliver(Array.from({ length: 12 }, (_, i) => ({
      messageId: id, index: i, personId: `sq-officer-${i}`, priority: 0 as const,
      expiresAt: Date.now() + 3_600_000, classification: 'police', senderUnit: '指挥中心', body: `通知 ${id}`,
    })));
  }
  const deadline = Date.now() + 30_000;
  while ([...sim.received.values()].some((r) => r.length < ids.length) && Date.now() < deadline) await sleep(20);
  // Received is not acknowledged: a device cut right after a frame acks it on its next session.
  while (s.channel.store.outboxEntries > 0 && Date.now() < deadline) await sleep(20);
  const stats = await sim.stop();
  for (const [dev, got] of sim.received) t.same(got, ids, `${dev}: all, in order, once`);
  t.ok(stats.drops > 0 && stats.connects > 12, `${stats.drops} drops, ${stats.connects} sessions, ${stats.duplicates} duplicates de-duplicated`);
  t.ok(stats.reads > 0, `${stats.reads} read reports`);
  await s.channel.settled();
  const deadline2 = Date.now() + 10_000;
  while (s.sink.count('delivered-to-device') < 300 && Date.now() < deadline2) await sleep(20);
  t.equal(s.sink.count('delivered-to-device'), 300, 'every recipient delivered, once');
  t.ok(s.sink.count('read') > 0 && s.sink.count('read') <= 300, `${s.sink.count('read')} read`);

  // A second run with the same prefix: the devices exist; the simulator rotates their keys.
  const again = await runPdaSim({ url: s.url, devices: 2, adminKey: ADMIN, prefix: 'sq', seed: 3, durationMs: 300 });
  t.equal(again.connects >= 2, true, 'existing devices re-provisioned with a new key');
});

t.test('smsgw pda-sim --devices N runs and prints its counters', async (t) => {
  const s = await server(t);
  const program = new Command('smsgw').exitOverride();
  registerPdaCommands(program);
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => {
    out.push(String(chunk));
    return true;
  });
  try {
    await program.parseAsync(['pda-sim', '--devices', '3', '--url', s.url, '--admin-key', ADMIN, '--duration', '1', '--drop', '0'], { from: 'user' });
  } finally {
    process.stdout.write = write;
  }
  const final = JSON.parse(out.find((l) => l.includes('"final"')) ?? '{}') as { devices?: number; connects?: number };
  t.equal(final.devices, 3);
  t.ok((final.connects ?? 0) >= 3, 'every device connected');
  t.equal(s.channel.registry.list({ limit: 10 }).items.length, 3);
});
