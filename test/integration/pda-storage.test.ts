/**
 * The outbox's storage layout (store.ts) against a live server:
 *  - a broadcast stores its body once, whatever the number of devices;
 *    acks, read reports and the expiry sweep leave no row behind in any
 *    table (outbox, bodies, recipients, unread, expiry, status);
 *  - an officer with two devices: delivered once, the other copy expires
 *    without a second final state; a device that never connects: expired;
 *  - status batches committed while the receipt store refused them are
 *    relayed after a restart, once each, in order;
 *  - a receipt store stalled long enough for the relay's memory to fill
 *    (over 100,000 updates): everything is still relayed once, in order.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { RootDatabase } from 'lmdb';
import { PdaClient } from '../../src/pda/client.js';
import { MemoryStatusSink, startPdaServer, type RunningPdaServer } from '../../src/pda/server.js';
import type { PdaMessage, PdaStatusSink, PdaStatusUpdate } from '../../src/pda/types.js';
import { pdaConfig } from '../support/pda.js';
import { until as pollUntil } from '../support/wait.js';

const HOUR = 3_600_000;
const BODY = '【市公安局指挥中心】全体值班警员：今晚22:00起全市开展夜间巡逻，请各单位按预案到岗，收到请确认。';


/** Poll every 10 ms (test/support/wait.ts), 20 s unless told. */
const until = (what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> => pollUntil(what, cond, timeoutMs, 10);

/** Rows of one of the channel's tables (keys only: the shared-structures entry is not an array key). */
function rows(env: RootDatabase, name: string): number {
  let n = 0;
  for (const key of env.openDB({ name, encoding: 'binary' }).getKeys({})) if (Array.isArray(key) || typeof key === 'number' || typeof key === 'string') n++;
  return n;
}

function msg(id: string, index: number, personId: string, over: Partial<PdaMessage> = {}): PdaMessage {
  return { messageId: id, index, personId, priority: 2, expiresAt: Date.now() + HOUR, classification: 'police', senderUnit: '市公安局指挥中心', body: BODY, ...over };
}

async function start(t: Test, dataDir: string, sink: PdaStatusSink, clock?: { offset: number }): Promise<RunningPdaServer> {
  const s = await startPdaServer({ dataDir, config: pdaConfig(), sink, logger: pino({ level: 'silent' }), ...(clock ? { now: () => Date.now() + clock.offset } : {}) });
  t.teardown(() => s.stop());
  return s;
}

t.test('a broadcast stores its body once; acks, reads and expiry leave no row behind', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-storage-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const clock = { offset: 0 };
  const sink = new MemoryStatusSink();
  const s = await start(t, dataDir, sink, clock);
  const N = 20;
  const keys: string[] = [];
  for (let i = 0; i < N; i++) keys.push((await s.channel.registry.register({ deviceId: `pda-${i}`, personId: `officer-${i}`, unit: 'u' })).key);
  const m1 = await s.channel.registry.register({ deviceId: 'pda-m1', personId: 'officer-m', unit: 'u' });
  await s.channel.registry.register({ deviceId: 'pda-m2', personId: 'officer-m', unit: 'u' });
  await s.channel.registry.register({ deviceId: 'pda-off', personId: 'officer-off', unit: 'u' });

  const clients: PdaClient[] = [];
  const got: number[] = [];
  for (let i = 0; i < N; i++) {
    const c = new PdaClient({ url: s.url, deviceId: `pda-${i}`, key: keys[i] as string, heartbeat: false, onMessage: (m) => got.push(m.seq) });
    await c.connect();
    clients.push(c);
  }
  const multi = new PdaClient({ url: s.url, deviceId: 'pda-m1', key: m1.key, heartbeat: false });
  await multi.connect();
  clients.push(multi);
  t.teardown(() => Promise.all(clients.map((c) => c.close())));

  const expiresAt = Date.now() + 60_000;
  const batch = [
    ...Array.from({ length: N }, (_, i) => msg('BC', i, `officer-${i}`, { expiresAt })),
    msg('BC', N, 'officer-m', { expiresAt }),
    msg('BC', N + 1, 'officer-off', { expiresAt }),
  ];
  const r = await s.channel.deliver(batch);
  t.same(r, { recipients: N + 2, duplicates: 0, copies: N + 3, undeliverable: 0, expired: 0 });
  t.equal(rows(s.env, 'pda.bodies'), 1, `one body row for ${N + 3} copies`);
  t.equal(rows(s.env, 'pda.expiry'), 1, 'one expiry row for the message');
  t.equal(rows(s.env, 'pda.outbox'), N + 3);

  await until('every connected device acked', () => sink.count('delivered-to-device') === N + 1);
  t.equal(got.length, N, 'each single device got it once');
  clients[0]?.read([1]);
  await until('the read report', () => sink.count('read') === 1);
  await s.channel.settled();
  t.equal(s.channel.store.outboxEntries, 2, 'left: the second device of the officer with two, and the device that never connected');
  t.equal(rows(s.env, 'pda.unread'), N, 'acked and not yet read (one was read)');

  clock.offset = 120_000;
  await s.channel.sweepExpired();
  await s.channel.settled();
  t.same(sink.of('BC', N).map((u) => u.state), ['queued', 'delivered-to-device'], 'two devices: delivered once; the other copy expired without a second final state');
  t.same(sink.of('BC', N + 1).map((u) => u.state), ['queued', 'expired'], 'a device that never connected: expired');
  t.same(sink.of('BC', 0).map((u) => u.state), ['queued', 'delivered-to-device', 'read']);
  for (const table of ['pda.outbox', 'pda.bodies', 'pda.expiry', 'pda.recipients', 'pda.unread', 'pda.status']) t.equal(rows(s.env, table), 0, `${table} is empty after expiry`);
  t.equal(s.channel.store.outboxEntries, 0);
  t.equal(s.channel.store.statusBacklog, 0);
  t.equal(s.channel.store.cursorOf('pda-m2')?.c, 0, 'the expired copy left the count of its device');
});

t.test('status batches the receipt store refused before a restart are relayed after it, once, in order', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-storage-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const refusing = new MemoryStatusSink();
  refusing.failNext = Number.MAX_SAFE_INTEGER;
  const first = await startPdaServer({ dataDir, config: pdaConfig(), sink: refusing, logger: pino({ level: 'silent' }) });
  await first.channel.registry.register({ deviceId: 'pda-r', personId: 'officer-r', unit: 'u' });
  for (let b = 0; b < 3; b++) await first.channel.deliver(Array.from({ length: 10 }, (_, i) => msg(`R${b}`, i, 'officer-r')));
  await first.channel.deliver([msg('NOBODY', 0, 'officer-none')]);
  t.equal(first.channel.store.statusBacklog, 31, '31 updates waiting');
  await first.stop();
  t.equal(refusing.updates.length, 0, 'none reached the refusing receipt store');

  const sink = new MemoryStatusSink();
  const s = await start(t, dataDir, sink);
  await until('the backlog relayed', () => s.channel.store.statusBacklog === 0 && sink.updates.length === 31);
  t.same(sink.updates.map((u) => `${u.messageId}#${u.index}:${u.state}`), [
    ...[0, 1, 2].flatMap((b) => Array.from({ length: 10 }, (_, i) => `R${b}#${i}:queued`)),
    'NOBODY#0:undeliverable',
  ], 'each once, in commit order');
  t.match(sink.of('NOBODY', 0)[0], { error: /no active PDA device/ }, 'with its reason');
});

t.test('a receipt store stalled past the relay memory (100,000 updates): all relayed once, in order', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-storage-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const seen: PdaStatusUpdate[] = [];
  const stalled: PdaStatusSink = {
    async recordPdaStates(updates) {
      await gate;
      seen.push(...updates);
    },
  };
  const s = await start(t, dataDir, stalled);
  const CALLS = 6;
  const PER_CALL = 20_000;
  // Recipients without a device: one `undeliverable` update each, nothing else (cheap to make many).
  for (let c = 0; c < CALLS; c++) await s.channel.deliver(Array.from({ length: PER_CALL }, (_, i) => msg(`S${c}`, i, `nobody-${i}`)));
  t.equal(s.channel.store.statusBacklog, CALLS * PER_CALL, 'all waiting');
  open();
  await until('the backlog relayed', () => s.channel.store.statusBacklog === 0, 60_000);
  await s.channel.deliver([msg('AFTER', 0, 'nobody')]);
  await until('the next one relayed', () => seen.length === CALLS * PER_CALL + 1);
  let inOrder = true;
  for (let k = 0; k < CALLS * PER_CALL; k++) {
    const u = seen[k] as PdaStatusUpdate;
    if (u.messageId !== `S${Math.floor(k / PER_CALL)}` || u.index !== k % PER_CALL || u.state !== 'undeliverable') {
      inOrder = false;
      t.fail(`update ${k}: ${u.messageId}#${u.index} ${u.state}`);
      break;
    }
  }
  t.ok(inOrder, `${CALLS * PER_CALL} updates, each once, in commit order`);
  t.equal(seen[CALLS * PER_CALL]?.messageId, 'AFTER', 'and the relay is back to normal after catching up');
});
