/**
 * Invariant 7 across hosts: two gateway hosts (each `smsgw start` with its
 * own data dir, so its own receipt store, replicated through one
 * nats-server), one SMSC simulator. The contract (README "Idempotency",
 * docs/openapi.json `Idempotency-Key`): a repeat within
 * `server.idempotencyTtl` returns the first answer (header
 * `idempotent-replayed: true`) and sends nothing again; the same key with
 * another body is 409; after the TTL the key makes a new message with a new
 * id that never writes into the older one. Here the repeat goes to the
 * *other* host, in the worst cases: at the same moment as the first (no
 * replication can have happened), right after the first's 202, and across
 * the boundary of the TTL window that keyed message ids are derived from.
 *
 * Before the keys were claimed in NATS (src/queue/nats/key-claims.ts), a
 * different body sent to host B while host A's rows were still on their way
 * was answered 202 under A's message id, and the queue's de-duplication
 * dropped its jobs: B's recipients were never sent (3 keys of 5 in a
 * probe), and B's store showed B's numbers under A's message.
 */
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireNatsServer } from '../support/nats-server.js';
import { api, waitComplete } from '../support/gateway-process.js';
import { numberAt, startNatsDeployment, startSimulator, until, type IngestProcess } from '../support/nats-deployment.js';
import type { MessageStatus } from '../support/api-types.js';

interface Accepted { readonly id: string; readonly recipients: number }
interface BatchAnswer { readonly results: readonly { readonly httpStatus: number; readonly id?: string; readonly replayed?: boolean; readonly error?: { readonly code: string } }[] }

const TTL_MS = 3_000;
const SECRETS = { dev: { current: 'test-callback-secret-0123456789ab' } };

/** One answer, reduced to what the contract speaks of. */
interface Answer { readonly status: number; readonly id?: string; readonly replayed: boolean; readonly code?: string }

async function send(url: string, key: string, body: { to: string[]; text: string; callbackUrl?: string }): Promise<Answer> {
  const r = await api<Accepted & { error?: { code: string } }>(url, 'POST', '/v1/messages', body, { 'idempotency-key': key });
  return { status: r.status, ...(r.status === 202 ? { id: r.json.id } : {}), replayed: r.headers.get('idempotent-replayed') === 'true', ...(r.json.error ? { code: r.json.error.code } : {}) };
}

/** The same send as the one item of a batch (its key in the item). */
async function sendInBatch(url: string, key: string, body: { to: string[]; text: string }): Promise<Answer> {
  const r = await api<BatchAnswer>(url, 'POST', '/v1/messages/batch', { messages: [{ ...body, idempotencyKey: key }] });
  const item = r.json.results[0];
  if (r.status !== 207 || item === undefined) throw new Error(`batch: ${r.status} ${JSON.stringify(r.json)}`);
  return { status: item.httpStatus, ...(item.id !== undefined ? { id: item.id } : {}), replayed: item.replayed === true, ...(item.error ? { code: item.error.code } : {}) };
}

/** The message as a host shows it, complete: its recipients' numbers (in order) and how many were delivered. */
async function shown(host: IngestProcess, id: string): Promise<{ to: string[]; delivered: number; recipients: number }> {
  const done = await waitComplete(host.url, id, 30_000, 100);
  const page = await api<MessageStatus>(host.url, 'GET', `/v1/messages/${id}?limit=100`);
  return { to: page.json.items.map((i) => i.to), delivered: done.summary.delivered, recipients: done.recipients };
}

if (requireNatsServer(t)) {
  const posts: Array<{ id: string; status: string; recipients: number; delivered: number }> = [];
  const sink = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const b = JSON.parse(body) as { id: string; status: string; recipients: number; summary: { delivered: number } };
      posts.push({ id: b.id, status: b.status, recipients: b.recipients, delivered: b.summary.delivered });
      res.writeHead(204).end();
    });
  });

  t.before(async () => {
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  });
  t.teardown(() => new Promise<void>((r) => sink.close(() => r())));

  let deploymentReady: Promise<{ a: IngestProcess; b: IngestProcess; submits: (n: string) => number }> | undefined;
  /** Host A and host B (role all: API and dispatch), started once for every subtest below. */
  const hosts = (): Promise<{ a: IngestProcess; b: IngestProcess; submits: (n: string) => number }> => {
    deploymentReady ??= (async () => {
      const deployment = await startNatsDeployment(t, {
        overrides: { server: { idempotencyTtl: `PT${TTL_MS / 1000}S` }, callbacks: { secrets: SECRETS, allow: ['127.0.0.1/32'] } },
      });
      const sim = await startSimulator(t);
      const a = await deployment.startAll(sim, { name: 'host-a', host: 'host-a' });
      const b = await deployment.startAll(sim, { name: 'host-b', host: 'host-b' });
      return { a, b, submits: (n: string) => sim.stats().submitsByDestination.get(`86${n}`) ?? 0 };
    })();
    return deploymentReady;
  };

  t.test('another body under the same key, sent to the other host at the same moment: one is accepted, the other 409, and the accepted one is sent once', async (t) => {
    const { a, b, submits } = await hosts();
    const KEYS = 8;
    const outcomes = await Promise.all(Array.from({ length: KEYS }, async (_, k) => {
      const key = `race-${k}`;
      const bodyA = { to: [numberAt(1_000 + k * 10)], text: `Meeting moved to room ${k}.` };
      // B's body: two other recipients, so a mix-up shows in the counts; every other key through the batch route.
      const bodyB = { to: [numberAt(1_000 + k * 10 + 1), numberAt(1_000 + k * 10 + 2)], text: `Meeting cancelled ${k}.` };
      const [fromA, fromB] = await Promise.all([send(a.url, key, bodyA), k % 2 === 0 ? send(b.url, key, bodyB) : sendInBatch(b.url, key, bodyB)]);
      return { key, bodyA, bodyB, fromA, fromB };
    }));
    for (const { key, bodyA, bodyB, fromA, fromB } of outcomes) {
      t.same([fromA.status, fromB.status].sort(), [202, 409], `${key}: one accepted, one refused (A ${fromA.status}, B ${fromB.status})`);
      const refused = fromA.status === 409 ? fromA : fromB;
      t.equal(refused.code, 'IDEMPOTENCY_CONFLICT', `${key}: the refusal is IDEMPOTENCY_CONFLICT`);
      const winner = fromA.status === 202 ? { answer: fromA, body: bodyA } : { answer: fromB, body: bodyB };
      const loser = winner.body === bodyA ? bodyB : bodyA;
      const id = winner.answer.id ?? '';
      for (const host of [a, b]) {
        const s = await shown(host, id);
        t.same(s.to, winner.body.to.map((n) => `86${n}`), `${key}: ${host.name} shows the accepted body's recipients under ${id}`);
        t.equal(s.delivered, winner.body.to.length, `${key}: ${host.name}: every one of them delivered`);
      }
      for (const n of winner.body.to) t.equal(submits(n), 1, `${key}: ${n} (accepted) got its SMS once`);
      for (const n of loser.to) t.equal(submits(n), 0, `${key}: ${n} (refused) got nothing`);
    }
  });

  t.test('the same body sent to both hosts at the same moment: one message, the first answer replayed, each recipient once, one callback', async (t) => {
    const { a, b, submits } = await hosts();
    const callbackUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/done`;
    const KEYS = 6;
    const ids: string[] = [];
    for (let k = 0; k < KEYS; k++) {
      const key = `same-${k}`;
      const body = { to: [numberAt(2_000 + k * 10), numberAt(2_000 + k * 10 + 1)], text: `Duty roster ${k} is out.`, callbackUrl };
      const [fromA, fromB] = await Promise.all([send(a.url, key, body), send(b.url, key, body)]);
      t.same([fromA.status, fromB.status], [202, 202], `${key}: both answered 202`);
      t.ok(fromA.id !== undefined && fromA.id === fromB.id, `${key}: one message id (${fromA.id} / ${fromB.id})`);
      t.same([fromA.replayed, fromB.replayed].sort(), [false, true], `${key}: one answer is the first, the other its replay`);
      ids.push(fromA.id ?? '');
      for (const host of [a, b]) t.equal((await shown(host, fromA.id ?? '')).delivered, 2, `${key}: complete on ${host.name}`);
      for (const n of body.to) t.equal(submits(n), 1, `${key}: ${n} got its SMS once`);
    }
    await until('a callback for every message', () => ids.every((id) => posts.some((p) => p.id === id)), 30_000);
    // A second owner would call back on its own sweep (at start and every 30 s) or as its finals arrive: give it time.
    await sleep(2_000);
    for (const id of ids) {
      const mine = posts.filter((p) => p.id === id);
      t.equal(mine.length, 1, `${id}: one completion callback (one host owns the message)`);
      t.match(mine[0], { status: 'complete', recipients: 2, delivered: 2 });
    }
  });

  t.test('a repeat on the other host within the TTL (across the TTL window boundary), then after the TTL: replay, 409, then a new message that leaves the old one alone', async (t) => {
    const { a, b, submits } = await hosts();
    const second = { to: [numberAt(3_100), numberAt(3_101), numberAt(3_102)], text: 'Flood gates stay open tonight.' };
    let first = { to: [] as string[], text: '' };
    // Keyed ids are derived from the TTL window (floor(now / TTL)): the first request goes in at the end
    // of a window, the repeat to the other host just after its boundary, well within the TTL. Tried again
    // with a fresh key (at most 3 times) if the first request was late and landed in the next window itself.
    let key = '';
    let onA: Answer | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      key = `across-ttl-${attempt}`;
      first = { to: [numberAt(3_000 + attempt * 10), numberAt(3_001 + attempt * 10)], text: `Flood gates close at 18:0${attempt}.` };
      const toBoundary = TTL_MS - (Date.now() % TTL_MS);
      await sleep(toBoundary < 300 ? toBoundary + TTL_MS - 150 : toBoundary - 150);
      onA = await send(a.url, key, first);
      t.equal(onA.status, 202, `host A accepts the first use of ${key}`);
      const createdAt = Date.parse((await api<MessageStatus>(a.url, 'GET', `/v1/messages/${onA.id ?? ''}?limit=1`)).json.createdAt ?? '');
      const left = TTL_MS - (Date.now() % TTL_MS);
      if (Math.floor(createdAt / TTL_MS) === Math.floor(Date.now() / TTL_MS) && left < TTL_MS / 2) await sleep(left + 5);
      if (Math.floor(createdAt / TTL_MS) < Math.floor(Date.now() / TTL_MS)) break;
      t.comment(`${key}: accepted at ${createdAt % TTL_MS} ms into a window, no boundary before the repeat; again`);
      onA = undefined;
    }
    if (onA === undefined) throw new Error('the first use never landed before a window boundary in 3 attempts');
    const repeatOnB = await send(b.url, key, first);
    t.same(repeatOnB, { status: 202, id: onA.id, replayed: true }, 'host B, in the next window: the first answer, replayed');
    const otherOnB = await send(b.url, key, second);
    t.same([otherOnB.status, otherOnB.code], [409, 'IDEMPOTENCY_CONFLICT'], 'host B: another body within the TTL is 409');
    const firstId = onA.id ?? '';
    for (const host of [a, b]) t.same(await shown(host, firstId), { to: first.to.map((n) => `86${n}`), delivered: 2, recipients: 2 }, `${host.name}: the first message`);

    // After the TTL: a new message with a new id, whichever host takes it; the repeat on the other host replays it.
    await sleep(TTL_MS + 200);
    const afterOnB = await send(b.url, key, second);
    t.equal(afterOnB.status, 202, 'host B: the key after its TTL is accepted');
    t.not(afterOnB.id, firstId, 'as a new message with a new id');
    t.equal(afterOnB.replayed, false);
    const repeatOnA = await send(a.url, key, second);
    t.same(repeatOnA, { status: 202, id: afterOnB.id, replayed: true }, 'host A, at once: the new answer, replayed');
    const oldOnA = await send(a.url, key, first);
    t.same([oldOnA.status, oldOnA.code], [409, 'IDEMPOTENCY_CONFLICT'], 'host A: the first body under the key is now a conflict');
    const secondId = afterOnB.id ?? '';
    for (const host of [a, b]) {
      t.same(await shown(host, secondId), { to: second.to.map((n) => `86${n}`), delivered: 3, recipients: 3 }, `${host.name}: the new message`);
      t.same(await shown(host, firstId), { to: first.to.map((n) => `86${n}`), delivered: 2, recipients: 2 }, `${host.name}: the old message untouched`);
    }
    await sleep(300);
    for (const n of [...first.to, ...second.to]) t.equal(submits(n), 1, `${n}: one SMS`);
  });
}
