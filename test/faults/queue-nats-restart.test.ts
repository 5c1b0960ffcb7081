/**
 * The NATS adapter across a graceful nats-server restart (SIGTERM, same port
 * and store): the client reconnects by itself, un-acked work comes back,
 * acked work does not, operations during the outage either wait it out
 * (within their bounds) or fail with QUEUE_UNAVAILABLE.
 */
import t, { type Test } from 'tap';
import { requireNatsServer, startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { conformanceOptions } from '../support/queue-conformance.js';
import { NatsQueue, type NatsQueueTuning } from '../../src/queue/nats/queue.js';
import { isGatewayError } from '../../src/core/errors.js';
import type { Delivery, QueueMessage, QueueOptions, WorkQueue } from '../../src/queue/port.js';

const enc = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const msg = (id: string): QueueMessage => ({ subject: 'conf.work.normal.t1.g1', tier: 'normal', msgId: id, data: enc.encode(id) });
const LIMITS = { maxBytes: 64 * 1024 * 1024, deadMaxBytes: 16 * 1024 * 1024 };
/** Short bounds so an outage shows up as a rejection within the test's time. */
const TUNING: Partial<NatsQueueTuning> = { publishAttemptTimeoutMs: 1_000, publishBudgetMs: 10_000, apiTimeoutMs: 1_000, confirmAttempts: 2 };

/** Fetches until `expected` deliveries arrived or `boundMs` passed. */
async function collect(queue: WorkQueue, tier: string, expected: number, boundMs: number): Promise<Delivery[]> {
  const out: Delivery[] = [];
  const until = Date.now() + boundMs;
  for (let i = 0; i < 1_000 && Date.now() < until && out.length < expected; i++) {
    out.push(...(await queue.fetch(tier, 500, 1_000)));
  }
  return out;
}

/** depth() once the client has reconnected (bounded). */
async function depthWhenBack(queue: WorkQueue, tier: string, boundMs = 15_000): Promise<number> {
  const until = Date.now() + boundMs;
  let last: unknown;
  for (let i = 0; i < 500 && Date.now() < until; i++) {
    try {
      return await queue.depth(tier);
    } catch (e) {
      last = e;
      await sleep(100);
    }
  }
  throw new Error(`queue not back: ${String(last)}`);
}

if (requireNatsServer(t)) {
  const open = async (tt: Test, overrides: Partial<QueueOptions> = {}): Promise<{ server: NatsServerHandle; queue: NatsQueue }> => {
    const server = await startNatsServer({ jetstream: true });
    tt.teardown(() => server.destroy());
    const queue = await NatsQueue.connect({ servers: [server.url], stream: 'RESTART', replicas: 1, options: conformanceOptions(overrides), limits: LIMITS, tuning: TUNING });
    tt.teardown(() => queue.close({ graceMs: 0 }));
    return { server, queue };
  };

  t.test('graceful restart: un-acked work comes back, acked work does not', async (t) => {
    const { server, queue } = await open(t, { ackWaitMs: 2_000 });
    await queue.publish(Array.from({ length: 30 }, (_, i) => msg(`g-${i}`)));
    const first = await collect(queue, 'normal', 30, 10_000);
    t.equal(first.length, 30, 'all delivered before the restart');
    await Promise.all(first.slice(0, 10).map((d) => d.ack()));
    await server.stop();
    await server.restart();
    t.equal(await depthWhenBack(queue, 'normal'), 20, 'the 20 un-acked are still stored (the client reconnected by itself)');
    const after = await collect(queue, 'normal', 20, 20_000);
    t.same(await queue.fetch('normal', 10, 500), [], 'nothing more');
    const ids = after.map((d) => d.msgId).sort();
    t.same(ids, Array.from({ length: 20 }, (_, i) => `g-${i + 10}`).sort(), 'exactly the un-acked ones, once each');
    t.ok(after.every((d) => d.deliveryCount >= 2), 'as redeliveries');
    await Promise.all(after.map((d) => d.ack()));
    t.equal(await queue.depth('normal'), 0, 'empty at the end');
  });

  t.test('during the outage: fetch waits and returns [], ack rejects QUEUE_UNAVAILABLE, publish rides it out', async (t) => {
    const { server, queue } = await open(t, { ackWaitMs: 2_000 });
    await queue.publish([msg('o-1')]);
    const [d] = await queue.fetch('normal', 1, 5_000);
    t.equal(d?.msgId, 'o-1');
    await server.kill('SIGTERM');
    t.same(await queue.fetch('normal', 5, 500), [], 'fetch resolves [] after its wait');
    const ackErr = await d?.ack().then(() => undefined, (e: unknown) => e);
    t.ok(isGatewayError(ackErr) && ackErr.code === 'QUEUE_UNAVAILABLE', `ack not confirmed: QUEUE_UNAVAILABLE (${String(ackErr)})`);
    // publish while the server is down; it comes back within the publish budget
    const pending = queue.publish([msg('o-2')]);
    await sleep(1_500);
    await server.restart();
    const [r] = await pending;
    t.equal(r?.duplicate, false, 'the publish made during the outage resolved after the restart');
    const after = await collect(queue, 'normal', 2, 20_000);
    t.same(after.map((x) => x.msgId).sort(), ['o-1', 'o-2'], 'the unconfirmed ack is redelivered, the new one delivered');
    await Promise.all(after.map((x) => x.ack()));
  });

  t.test('dedupe across a server restart holds for messages still stored, not for acked ones (nats-server behaviour)', async (t) => {
    const { server, queue } = await open(t, { ackWaitMs: 30_000 });
    await queue.publish([msg('k-acked'), msg('k-stored')]);
    const got = await collect(queue, 'normal', 2, 10_000);
    await got.find((d) => d.msgId === 'k-acked')?.ack();
    const before = await queue.publish([msg('k-acked'), msg('k-stored')]);
    t.same(before.map((r) => r.duplicate), [true, true], 'before the restart both are duplicates (in-memory window)');
    await server.stop();
    await server.restart();
    await depthWhenBack(queue, 'normal');
    const after = await queue.publish([msg('k-stored'), msg('k-acked')]);
    t.equal(after[0]?.duplicate, true, 'a msgId whose message is still stored is still a duplicate');
    // The server rebuilds its duplicate window from the messages it still holds; an acked
    // message is gone from a workqueue stream, so its msgId is forgotten. Callers must not
    // rely on msgId dedupe for work that was already acked once the server restarted.
    t.comment(`re-publish of an acked msgId after a server restart: duplicate=${String(after[1]?.duplicate)} (2.9.10: false)`);
    t.type(after[1]?.duplicate, 'boolean');
  });
}
