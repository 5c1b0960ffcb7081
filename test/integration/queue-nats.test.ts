/**
 * The NATS JetStream adapter against a real nats-server (own process, free
 * port, temp store): the shared WorkQueue conformance suite, then what only
 * this adapter has (the dead-letter stream, the advisory backup path, the
 * layout checks at connect, a full stream, no-wait fetches of drained tiers
 * answered without a pull).
 */
import t, { type Test } from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { requireNatsServer, startNatsServer } from '../support/nats-server.js';
import { queueConformance, conformanceOptions } from '../support/queue-conformance.js';
import { NatsQueue, DEAD_HEADERS } from '../../src/queue/nats/queue.js';
import type { NatsStreamLimits } from '../../src/queue/nats/stream-setup.js';
import { consumerName } from '../../src/queue/nats/stream-setup.js';
import { isGatewayError } from '../../src/core/errors.js';
import type { DeadLetter, QueueMessage, QueueOptions } from '../../src/queue/port.js';

/** Small limits: the server reserves max_bytes against its store. */
const TEST_LIMITS: Partial<NatsStreamLimits> = { maxBytes: 64 * 1024 * 1024, deadMaxBytes: 16 * 1024 * 1024 };
const enc = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

if (requireNatsServer(t)) {
  const server = await startNatsServer({ jetstream: true });
  t.teardown(() => server.destroy());
  const admin = await connect({ servers: [server.url], maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  t.teardown(() => admin.close());
  const jsm = await jetstreamManager(admin);

  const dropStreams = async (m: JetStreamManager, stream: string): Promise<void> => {
    for (const name of [stream, `${stream}_DEAD`, `${stream}_KEYS`]) await m.streams.delete(name).catch(() => false);
  };

  let streams = 0;
  queueConformance(t, 'nats', async (options) => {
    const stream = `CONF_${++streams}`;
    const open = (): Promise<NatsQueue> => NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options, limits: TEST_LIMITS });
    let current = await open();
    return {
      queue: current,
      // a gateway process exit (the connection goes, nothing is acked) and a nats-server
      // restart on the same store, together
      restart: async () => {
        await current.close({ graceMs: 0 });
        await server.stop();
        await server.restart();
        current = await open();
        return current;
      },
      cleanup: async () => {
        await current.close({ graceMs: 0 });
        await dropStreams(jsm, stream);
      },
    };
  });

  const openOwn = async (tt: Test, overrides: Partial<QueueOptions> = {}, limits: Partial<NatsStreamLimits> = TEST_LIMITS): Promise<{ queue: NatsQueue; stream: string; options: QueueOptions }> => {
    const stream = `OWN_${++streams}`;
    const options = conformanceOptions(overrides);
    const queue = await NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options, limits });
    tt.teardown(async () => {
      await queue.close({ graceMs: 0 });
      await dropStreams(jsm, stream);
    });
    return { queue, stream, options };
  };
  const msg = (tier: string, id: string): QueueMessage => ({ subject: `conf.work.${tier}.t1.g1`, tier, msgId: id, data: enc.encode(id) });

  t.test('nats: the stream layout', async (t) => {
    const { stream, options } = await openOwn(t);
    const work = await jsm.streams.info(stream);
    t.equal(work.config.retention, 'workqueue');
    t.equal(work.config.storage, 'file');
    t.equal(work.config.discard, 'new', 'a full work stream refuses, never drops accepted work');
    t.same(work.config.subjects, ['conf.work.>']);
    t.equal(work.config.duplicate_window, options.duplicateWindowMs * 1_000_000);
    const dead = await jsm.streams.info(`${stream}_DEAD`);
    t.equal(dead.config.retention, 'limits');
    t.same(dead.config.subjects, ['conf.dead.>']);
    const keys = await jsm.streams.info(`${stream}_KEYS`);
    t.equal(keys.config.retention, 'limits');
    t.same(keys.config.subjects, ['conf.keys.>']);
    t.equal(keys.config.max_msgs_per_subject, 1, 'one claim per key');
    t.equal(keys.config.max_age, 86_400_000 * 1_000_000, 'claims kept for the Idempotency-Key TTL (default one day)');
    for (const tier of options.tiers) {
      const ci = await jsm.consumers.info(stream, consumerName(tier));
      t.equal(ci.config.filter_subject, `conf.work.${tier}.>`, `${tier} consumer filter`);
      t.equal(ci.config.ack_policy, 'explicit');
      t.equal(ci.config.max_deliver, -1, 'maxDeliver is enforced by the adapter');
      t.equal(ci.config.max_ack_pending, options.maxAckPending);
      t.equal(ci.config.ack_wait, options.ackWaitMs * 1_000_000);
    }
  });

  t.test('nats: connect is idempotent and updates what may change', async (t) => {
    const { stream, options } = await openOwn(t);
    const again = await NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options: { ...options, ackWaitMs: 4000, maxAckPending: 77 }, limits: TEST_LIMITS });
    await again.close({ graceMs: 0 });
    const ci = await jsm.consumers.info(stream, consumerName('urgent'));
    t.equal(ci.config.ack_wait, 4000 * 1_000_000, 'ack_wait updated');
    t.equal(ci.config.max_ack_pending, 77, 'max_ack_pending updated');
    // a stream that cannot take the layout (retention cannot change) is a config error, not a crash
    await jsm.streams.add({ name: 'LIMITS_ONLY', subjects: ['clash.work.>'] });
    t.teardown(() => jsm.streams.delete('LIMITS_ONLY').catch(() => false));
    const err = await NatsQueue.connect({ servers: [server.url], stream: 'LIMITS_ONLY', replicas: 1, options: { ...options, prefix: 'clash' }, limits: TEST_LIMITS }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(isGatewayError(err) && err.code === 'CONFIG_INVALID', 'CONFIG_INVALID for an incompatible existing stream');
  });

  t.test('nats: Idempotency-Key claims: one winner among concurrent claimers, the winner\'s id for the others, a lapsed claim taken over', async (t) => {
    const { queue, stream, options } = await openOwn(t);
    // A second connection on the same stream: another process.
    const other = await NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options, limits: TEST_LIMITS });
    t.teardown(() => other.close({ graceMs: 0 }));
    const ttlMs = 60_000;
    const at = Date.now();
    const claim = (q: NatsQueue, id: string, fingerprint: string, when = at): ReturnType<NatsQueue['claimKey']> => q.claimKey({ tenant: 't1', key: 'k-1', id, fingerprint, at: when, ttlMs });
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => claim(i % 2 === 0 ? queue : other, `id-${i}`, `fp-${i}`)));
    const won = answers.flatMap((a, i) => (a.won ? [i] : []));
    t.equal(won.length, 1, 'exactly one of ten concurrent claims wins');
    const w = won[0]!;
    for (const a of answers) if (!a.won) t.same(a, { won: false, id: `id-${w}`, fingerprint: `fp-${w}`, at }, 'the others learn the winner\'s claim');
    t.same(await claim(other, 'id-late', 'fp-late'), { won: false, id: `id-${w}`, fingerprint: `fp-${w}`, at }, 'a later claim within the TTL loses too');
    t.same(await other.claimKey({ tenant: 't2', key: 'k-1', id: 'x', fingerprint: 'f', at, ttlMs }), { won: true }, 'keys are per tenant');
    t.same(await claim(queue, 'id-next', 'fp-next', at + ttlMs), { won: true }, 'a claim made a TTL or more after the first takes the key over');
    t.same(await claim(other, 'id-after', 'fp-after', at + ttlMs + 1), { won: false, id: 'id-next', fingerprint: 'fp-next', at: at + ttlMs }, 'and holds it');
    t.equal((await jsm.streams.info(`${stream}_KEYS`)).state.messages, 2, 'one claim per key is kept');
    await queue.close({ graceMs: 0 });
    await t.rejects(claim(queue, 'id-closed', 'fp'), { code: 'QUEUE_CLOSED' }, 'a closed queue claims nothing');
  });

  t.test('nats: unknown tiers and subjects are refused', async (t) => {
    const { queue } = await openOwn(t);
    await t.rejects(queue.publish([{ subject: 'conf.work.nope.t.g', tier: 'nope', msgId: 'x', data: enc.encode('x') }]), { code: 'INTERNAL' });
    await t.rejects(queue.publish([{ subject: 'conf.work.bulk.t.g', tier: 'urgent', msgId: 'x', data: enc.encode('x') }]), { code: 'INTERNAL' });
    await t.rejects(queue.fetch('nope', 1, 0), { code: 'INTERNAL' });
  });

  t.test('nats: fetch with waitMs 0 answers at once, also when empty', async (t) => {
    const { queue } = await openOwn(t);
    t.same(await queue.fetch('urgent', 10, 0), [], 'empty');
    await queue.publish([msg('urgent', 'w0-a'), msg('urgent', 'w0-b')]);
    const got = await queue.fetch('urgent', 10, 0);
    t.same(got.map((d) => d.msgId), ['w0-a', 'w0-b'], 'what is stored, fewer than max');
    await Promise.all(got.map((d) => d.ack()));
  });

  t.test('nats: a drained tier is pulled again only once work is announced, settled, or emptyTierRecheckMs passed', async (t) => {
    const { queue: publisher, stream, options } = await openOwn(t);
    // a long recheck: only announcements and settlements can bring a pull before the test ends
    const fetcher = await NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options, limits: TEST_LIMITS, tuning: { emptyTierRecheckMs: 600_000 } });
    t.teardown(() => fetcher.close({ graceMs: 0 }));
    // every pull request of the urgent tier, as the server receives it
    let pulls = 0;
    const watch = admin.subscribe(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumerName('urgent')}`, { callback: () => void pulls++ });
    t.teardown(() => watch.unsubscribe());
    await admin.flush();

    t.same(await fetcher.fetch('urgent', 10, 0), [], 'empty');
    for (let i = 0; i < 20; i++) t.same(await fetcher.fetch('urgent', 10, 0), [], `still empty (${i})`);
    await admin.flush();
    t.equal(pulls, 1, 'one pull: the tier was known drained for the next 20 no-wait fetches');
    t.same(await fetcher.fetch('urgent', 10, 200), [], 'a fetch that may wait always asks the server');
    await admin.flush();
    t.equal(pulls, 2);

    // another process publishes: its announcement brings the next no-wait fetch to the server
    await publisher.publish([msg('urgent', 'announced')]);
    let got: Awaited<ReturnType<NatsQueue['fetch']>> = [];
    for (let i = 0; i < 200 && got.length === 0; i++) {
      got = await fetcher.fetch('urgent', 10, 0);
      if (got.length === 0) await sleep(10);
    }
    t.same(got.map((d) => d.msgId), ['announced'], 'delivered on the announcement, long before the recheck');
    // settling a delivery makes the tier worth a pull again (an ack frees a max_ack_pending slot)
    t.same(await fetcher.fetch('urgent', 10, 0), [], 'drained again');
    await admin.flush();
    const beforeAck = pulls;
    await got[0]?.ack();
    t.same(await fetcher.fetch('urgent', 10, 0), []);
    await admin.flush();
    t.equal(pulls, beforeAck + 1, 'pulled after the ack');

    // work nobody announced (stored by another client) is found once emptyTierRecheckMs pass
    const rechecking = await NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options, limits: TEST_LIMITS, tuning: { emptyTierRecheckMs: 200 } });
    t.teardown(() => rechecking.close({ graceMs: 0 }));
    t.same(await rechecking.fetch('urgent', 10, 0), [], 'empty');
    await jetstream(admin).publish('conf.work.urgent.t1.g1', enc.encode('silent'), { msgID: 'silent' });
    let silent: Awaited<ReturnType<NatsQueue['fetch']>> = [];
    for (let i = 0; i < 500 && silent.length === 0; i++) {
      silent = await rechecking.fetch('urgent', 10, 0);
      if (silent.length === 0) await sleep(10);
    }
    t.same(silent.map((d) => d.msgId), ['silent'], 'found by the recheck');
    await Promise.all(silent.map((d) => d.ack()));
  });

  t.test('nats: dead letters land in the dead stream with their reason', async (t) => {
    const { queue, stream } = await openOwn(t, { maxDeliver: 1, ackWaitMs: 1000 });
    const dead: DeadLetter[] = [];
    queue.onDeadLetter((dl) => {
      dead.push(dl);
    });
    await queue.publish([msg('bulk', 'dl-term'), msg('bulk', 'dl-nak')]);
    const got = await queue.fetch('bulk', 2, 5_000);
    t.same(got.map((d) => d.msgId), ['dl-term', 'dl-nak']);
    await got[0]?.term('bad template\r\nsecond line');
    got[1]?.nak(); // the last allowed delivery (maxDeliver 1): dead-lettered instead of redelivered
    for (let i = 0; i < 100 && dead.length < 2; i++) await sleep(50);
    t.same(dead.map((d) => [d.msgId, d.deliveryCount]).sort(), [['dl-nak', 1], ['dl-term', 1]]);
    const info = await jsm.streams.info(`${stream}_DEAD`);
    t.equal(info.state.messages, 2, 'two dead letters stored');
    const first = await jsm.streams.getMessage(`${stream}_DEAD`, { seq: 1 });
    t.equal(first?.subject, 'conf.dead.bulk.t1.g1', 'dead subject keeps tier, tenant and group');
    t.equal(first?.header.get(DEAD_HEADERS.reason), 'bad template second line', 'reason on one header line');
    t.equal(first?.header.get(DEAD_HEADERS.msgId), 'dl-term');
    t.equal(first?.header.get(DEAD_HEADERS.subject), 'conf.work.bulk.t1.g1');
    t.equal(new TextDecoder().decode(first?.data), 'dl-term', 'data kept');
    t.equal((await jsm.streams.info(stream)).state.messages, 0, 'gone from the work stream');
  });

  t.test('nats: a delivery past maxDeliver seen by fetch is dead-lettered, not handed out', async (t) => {
    // Another process had it maxDeliver times and died: this instance never armed a deadline for it.
    const { queue, stream, options } = await openOwn(t, { maxDeliver: 2, ackWaitMs: 1000 });
    const other = await NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options, limits: TEST_LIMITS });
    await other.publish([msg('normal', 'orphan')]);
    const a = await other.fetch('normal', 1, 5_000);
    t.equal(a[0]?.deliveryCount, 1);
    a[0]?.nak(0);
    const b = await other.fetch('normal', 1, 5_000);
    t.equal(b[0]?.deliveryCount, 2);
    await other.close({ graceMs: 0 }); // dies holding the last delivery: its deadline goes with it
    const dead: DeadLetter[] = [];
    queue.onDeadLetter((dl) => {
      dead.push(dl);
    });
    const got: string[] = [];
    for (let i = 0; i < 10 && dead.length === 0; i++) got.push(...(await queue.fetch('normal', 5, 1_000)).map((d) => d.msgId));
    t.same(got, [], 'never handed out a third time');
    t.equal(dead.length, 1, 'dead-lettered');
    t.equal(dead[0]?.deliveryCount, 2, 'reported with the deliveries the callers saw');
    t.equal((await jsm.streams.info(stream)).state.messages, 0, 'gone from the work stream');
  });

  t.test('nats: a fetch that may wait leaves no pull request waiting on the server', async (t) => {
    // nats-server before 2.10.14 (nats-io/nats-server#5305) loses a redelivery it picks while the
    // only waiting pull request is expired and not yet swept, and hands the message out again as
    // new (delivery count 1): a long poll that expired as an ackWait ran out brought a job back past
    // maxDeliver. So the waiting is done on the client, with no-wait pulls that never expire.
    const { queue, stream } = await openOwn(t, { maxDeliver: 3, ackWaitMs: 1000 });
    const requests: unknown[] = [];
    const watch = admin.subscribe(`$JS.API.CONSUMER.MSG.NEXT.${stream}.>`, { callback: (_e, m) => void requests.push(m.json()) });
    t.teardown(() => watch.unsubscribe());
    await admin.flush();
    const waiting = async (): Promise<number> => (await jsm.consumers.info(stream, consumerName('normal'))).num_waiting;

    // an empty tier: the fetch waits, the server holds nothing for it
    const first = queue.fetch('normal', 5, 3_000);
    await sleep(300);
    t.equal(await waiting(), 0, 'no request waiting on the server while the fetch waits');
    // work published meanwhile (by another client) wakes it through the announcement
    const other = await NatsQueue.connect({ servers: [server.url], stream, replicas: 1, options: conformanceOptions({ maxDeliver: 3, ackWaitMs: 1000 }), limits: TEST_LIMITS });
    t.teardown(() => other.close({ graceMs: 0 }));
    await other.publish([msg('normal', 'waited-for')]);
    const got = await first;
    t.same(got.map((d) => [d.msgId, d.deliveryCount]), [['waited-for', 1]], 'handed to the waiting fetch');
    // unanswered: a redelivery after ackWait is found by a waiting fetch (nobody announces it)
    const again = await queue.fetch('normal', 5, 5_000);
    t.same(again.map((d) => [d.msgId, d.deliveryCount]), [['waited-for', 2]], 'the redelivery, counted');
    t.equal(await waiting(), 0, 'still nothing waiting on the server');
    await Promise.all(again.map((d) => d.ack()));
    t.same(await queue.fetch('normal', 5, 300), [], 'acked: gone');

    await admin.flush();
    t.ok(requests.length >= 3, `pull requests seen (${requests.length})`);
    const expiring = requests.filter((r) => typeof r !== 'object' || r === null || 'expires' in r || (r as { no_wait?: unknown }).no_wait !== true);
    t.same(expiring, [], 'every pull request is no-wait, without expires');
  });

  t.test('nats: what the server sends a parked pull after its fetch answered goes to the next fetch, counted once', async (t) => {
    // A no-wait pull that finds work it may not deliver yet (max_ack_pending reached) stays on the
    // server and is served when a slot frees, after the fetch that sent it has answered.
    const { queue } = await openOwn(t, { maxAckPending: 2, ackWaitMs: 30_000 });
    await queue.publish(['pk-0', 'pk-1', 'pk-2', 'pk-3'].map((id) => msg('normal', id)));
    const first = await queue.fetch('normal', 10, 0);
    t.same(first.map((d) => [d.msgId, d.deliveryCount]), [['pk-0', 1], ['pk-1', 1]], 'maxAckPending handed out');
    await first[0]?.ack();
    await sleep(300); // what the freed slot brings comes while no fetch is open
    const second = await queue.fetch('normal', 10, 2_000);
    t.same(second.map((d) => [d.msgId, d.deliveryCount]), [['pk-2', 1]], 'handed to the next fetch as a first delivery');
    await Promise.all([...first.slice(1), ...second].map((d) => d.ack()));
    const rest: Array<[string, number]> = [];
    for (let i = 0; i < 10 && rest.length === 0; i++) rest.push(...(await queue.fetch('normal', 10, 1_000)).map((d): [string, number] => [d.msgId, d.deliveryCount]));
    t.same(rest, [['pk-3', 1]], 'and the last one, also delivered once');
    t.equal(await queue.depth('normal'), 1, 'nothing else in flight');
  });

  t.test('nats: a delivery the server counts from 1 again is counted on from what this process handed out', async (t) => {
    // nats-server before 2.10.14 (nats-io/nats-server#5305): a redelivery picked while the only
    // waiting pull request is gone with its connection is lost, and the last message delivered as
    // new is delivered again with delivery count 1. Made to happen here: a pull request left by a
    // client that closed, and a server-side ack_wait (2 s) shorter than the adapter's, so the server
    // redelivers the last allowed delivery while this process still holds it.
    const { queue, stream } = await openOwn(t, { maxDeliver: 2, ackWaitMs: 30_000 });
    await jsm.consumers.update(stream, consumerName('normal'), { ack_wait: 2_000_000_000 });
    const dead: DeadLetter[] = [];
    queue.onDeadLetter((dl) => {
      dead.push(dl);
    });
    await queue.publish([msg('normal', 'recounted')]);
    const [first] = await queue.fetch('normal', 1, 5_000);
    t.equal(first?.deliveryCount, 1);
    first?.nak(0);
    const [last] = await queue.fetch('normal', 1, 5_000);
    t.equal(last?.deliveryCount, 2, 'the last allowed delivery, held unanswered');
    const heldAt = Date.now();

    const ghost = await connect({ servers: [server.url] });
    ghost.subscribe('ghost.pull');
    ghost.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumerName('normal')}`, JSON.stringify({ batch: 1, expires: 60_000_000_000 }), { reply: 'ghost.pull' });
    await ghost.flush();
    await sleep(200); // the server has taken the request in while its client was there
    await ghost.close();
    // Nothing may look at the consumer until the server redelivers (2 s after `last`): a consumer
    // info or a pull would sweep the dead request. Midway to the next redelivery (4 s), the depth
    // (a consumer info, as the gateway's metrics do) brings the server to count the held message as
    // undelivered again, and the next pull gets it with delivery count 1.
    await sleep(Math.max(0, heldAt + 3_000 - Date.now()));
    t.comment(`depth ${await queue.depth('normal')} (2: the server went back, 1: it did not)`);

    const got: Array<[string, number]> = [];
    for (let i = 0; i < 10 && dead.length === 0; i++) got.push(...(await queue.fetch('normal', 5, 1_000)).map((d): [string, number] => [d.msgId, d.deliveryCount]));
    t.same(got, [], 'not handed out a third time');
    t.same(dead.map((d) => [d.msgId, d.deliveryCount]), [['recounted', 2]], 'dead-lettered once, with the deliveries the caller saw');
    t.equal((await jsm.streams.info(stream)).state.messages, 0, 'gone from the work stream');
    t.equal((await jsm.streams.info(`${stream}_DEAD`)).state.messages, 1, 'stored in the dead stream');
  });

  t.test('nats: MAX_DELIVERIES advisory is a backup for a consumer with a server-side max_deliver', async (t) => {
    const { queue, stream } = await openOwn(t, { maxDeliver: 5, ackWaitMs: 1000 });
    // an operator set a finite max_deliver: the server gives up on its own after 1 delivery
    await jsm.consumers.update(stream, consumerName('urgent'), { max_deliver: 1 });
    const dead: DeadLetter[] = [];
    queue.onDeadLetter((dl) => {
      dead.push(dl);
    });
    await queue.publish([msg('urgent', 'adv-1')]);
    const [d] = await queue.fetch('urgent', 1, 5_000);
    t.equal(d?.deliveryCount, 1);
    // unanswered: the server would redeliver, finds max_deliver reached, sends the advisory when a pull comes
    for (let i = 0; i < 40 && dead.length === 0; i++) await queue.fetch('urgent', 1, 250);
    t.equal(dead.length, 1, 'dead-lettered from the advisory');
    t.equal(dead[0]?.msgId, 'adv-1');
    t.equal((await jsm.streams.info(stream)).state.messages, 0, 'deleted from the work stream');
    t.equal((await jsm.streams.info(`${stream}_DEAD`)).state.messages, 1, 'stored in the dead stream');
  });

  t.test('nats: a full work stream refuses publishes with OVERLOADED', async (t) => {
    const { queue } = await openOwn(t, {}, { ...TEST_LIMITS, maxMsgs: 3 });
    await queue.publish([msg('bulk', 'f1'), msg('bulk', 'f2'), msg('bulk', 'f3')]);
    const err = await queue.publish([msg('bulk', 'f4')]).then(() => undefined, (e: unknown) => e);
    t.ok(isGatewayError(err) && err.code === 'OVERLOADED', `OVERLOADED (${String(err)})`);
    const got = await queue.fetch('bulk', 10, 1_000);
    t.same(got.map((d) => d.msgId), ['f1', 'f2', 'f3'], 'stored work untouched');
    await Promise.all(got.map((d) => d.ack()));
    const after = await queue.publish([msg('bulk', 'f4')]);
    t.equal(after[0]?.duplicate, false, 'room again after acks');
  });

  t.test('nats: publish after close is QUEUE_CLOSED; connect to nothing is QUEUE_UNAVAILABLE', async (t) => {
    const { queue } = await openOwn(t);
    await queue.close();
    await t.rejects(queue.publish([msg('bulk', 'late')]), { code: 'QUEUE_CLOSED' });
    await t.rejects(
      NatsQueue.connect({ servers: ['nats://127.0.0.1:1'], stream: 'X', replicas: 1, options: conformanceOptions(), tuning: { connectTimeoutMs: 1000 } }),
      { code: 'QUEUE_UNAVAILABLE' },
    );
  });
}
