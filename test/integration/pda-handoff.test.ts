/**
 * Fresh appends handed from the commit to a live session (session.ts
 * `appended`): a session that has sent everything sends new entries
 * without reading them back; one that has not (a backlog, a full window)
 * reads. Either way each message arrives once, flash before urgent before
 * routine, and the sequences stay those of append order.
 */
import t, { type Test } from 'tap';
import type { MessageFrame } from '../../src/pda/codec.js';
import { PdaClient } from '../../src/pda/client.js';
import type { PdaMessage, PdaPriority } from '../../src/pda/types.js';
import { startPdaHarness, type PdaHarness } from '../support/pda.js';
import { until as pollUntil } from '../support/wait.js';

const server = (t: Test, over: Record<string, unknown> = {}): Promise<PdaHarness> => startPdaHarness(t, { pda: over });

/** Poll every 10 ms (test/support/wait.ts), 10_000 ms unless told. */
const until = (what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> => pollUntil(what, cond, timeoutMs, 10);

function msg(id: string, personId: string, priority: PdaPriority): PdaMessage {
  return { messageId: id, index: 0, personId, priority, expiresAt: Date.now() + 3_600_000, classification: 'police', senderUnit: '指挥中心', body: `警情 ${id}` };
}

/** Priority first (2, 1, 0), then sequence: the order of the wire. */
const wireOrder = (a: MessageFrame, b: MessageFrame): number => b.priority - a.priority || a.seq - b.seq;

t.test('an idle session gets one deliver of mixed priorities once each, in priority order, window by window', async (t) => {
  const s = await server(t, { window: 4 });
  const { key } = await s.channel.registry.register({ deviceId: 'pda-h', personId: 'off-h', unit: 'u' });
  const got: MessageFrame[] = [];
  const c = new PdaClient({ url: s.url, deviceId: 'pda-h', key, heartbeat: false, onFrame: (m) => got.push(m) });
  await c.connect();
  t.teardown(() => c.close());
  const plan: PdaPriority[] = [0, 2, 1, 0, 2, 0, 1, 2, 0, 0];
  await s.channel.deliver(plan.map((p, i) => msg(`A${i}`, 'off-h', p)));
  await until('all 10', () => got.length >= plan.length);
  await s.channel.settled();
  t.equal(got.length, plan.length, 'each sent once (no frame twice)');
  t.same(got.map((m) => m.seq).sort((a, b) => a - b), plan.map((_, i) => i + 1), 'sequences 1..10, those of append order');
  t.same(got.map((m) => m.messageId), [...got].sort(wireOrder).map((m) => m.messageId), 'flash, then urgent, then routine; each in sequence order');
  t.same(got.slice(0, 3).map((m) => m.priority), [2, 2, 2], 'the flash ones first');
  await until('all acked', () => s.channel.store.outboxEntries === 0);

  // Idle again: the next delivers go straight from the commit; still once each.
  for (let round = 0; round < 3; round++) await s.channel.deliver([msg(`B${round}`, 'off-h', 2), msg(`C${round}`, 'off-h', 0)]);
  await until('6 more', () => got.length >= plan.length + 6);
  await s.channel.settled();
  const later = got.slice(plan.length);
  t.equal(later.length, 6);
  t.same(later.map((m) => m.seq), [11, 12, 13, 14, 15, 16]);
  t.equal(c.counts.duplicates, 0);
  t.equal(s.sink.count('delivered-to-device'), 16);
});

t.test('a session with a backlog reads; appends that arrive meanwhile are sent once, after what was there', async (t) => {
  const s = await server(t, { window: 3 });
  const { key } = await s.channel.registry.register({ deviceId: 'pda-b', personId: 'off-b', unit: 'u' });
  await s.channel.deliver(Array.from({ length: 12 }, (_, i) => msg(`OLD${i}`, 'off-b', 0)));
  const got: MessageFrame[] = [];
  let appended = false;
  const c = new PdaClient({
    url: s.url, deviceId: 'pda-b', key, heartbeat: false,
    onFrame: (m) => {
      got.push(m);
      if (got.length === 2 && !appended) {
        appended = true;
        void s.channel.deliver([msg('NEW-ROUTINE', 'off-b', 0), msg('NEW-FLASH', 'off-b', 2)]);
      }
    },
  });
  await c.connect();
  t.teardown(() => c.close());
  await until('all 14', () => got.length >= 14);
  await s.channel.settled();
  t.equal(got.length, 14, 'each once');
  t.equal(new Set(got.map((m) => m.seq)).size, 14);
  const ids = got.map((m) => m.messageId);
  t.ok(ids.indexOf('NEW-FLASH') < ids.indexOf('OLD11'), 'the flash one jumps the routine backlog');
  t.same(ids.filter((id) => id.startsWith('OLD') || id === 'NEW-ROUTINE'), [...Array.from({ length: 12 }, (_, i) => `OLD${i}`), 'NEW-ROUTINE'], 'routine ones in append order');
  await until('outbox empty', () => s.channel.store.outboxEntries === 0);
});
