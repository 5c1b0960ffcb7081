/**
 * Completion callbacks against a real receipt store (LMDB in a temp dir) and
 * a fake webhook poster: exactly one successful POST per message even with
 * two senders sharing the environment (two processes of a host), messages
 * finalised before the sender started are found by the sweep, failures are
 * retried to a final state, and nothing waits in memory beyond the bound.
 */
import t, { type Test } from 'tap';
import type { RootDatabase } from 'lmdb';
import { pino } from 'pino';
import { createMetrics } from '../../src/telemetry/metrics.js';
import type { ReceiptStore } from '../../src/receipts/store.js';
import { StatusCallbacks, type StatusCallbackOptions, type WebhookPoster } from '../../src/receipts/status-callbacks.js';
import type { MessageRecord, SegmentResult } from '../../src/receipts/types.js';
import type { DeliveryError } from '../../src/outbound/webhook.js';
import { eventually } from '../support/office.js';
import { tempReceiptStore } from '../support/receipt-store.js';

const T0 = Date.now();

const setup = (t: Test): { env: RootDatabase; store: ReceiptStore } => tempReceiptStore(t);

function sender(t: Test, env: RootDatabase, store: ReceiptStore, webhooks: WebhookPoster, over: Partial<StatusCallbackOptions> = {}): StatusCallbacks {
  const cb = new StatusCallbacks({
    env, store, webhooks, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
    attempts: 3, timeoutMs: 1000, concurrency: 8, perHost: 4, backoffMs: 10, maxBackoffMs: 40, tickMs: 20, sweepEveryMs: 50, ...over,
  });
  t.teardown(() => cb.close());
  return cb;
}

function message(id: string, recipients: number, host = 'hooks.example'): MessageRecord {
  return { id, tenant: 'oa', tier: 'routine', channel: 'sms', encoding: 'ucs2', segments: 1, recipients, createdAt: T0, expiresAt: T0 + 3_600_000, callbackUrl: `https://${host}/done?m=${id}` };
}

const numbers = (n: number): string[] => Array.from({ length: n }, (_, i) => `86138${String(i).padStart(8, '0')}`);
const finals = (id: string, n: number): SegmentResult[] =>
  Array.from({ length: n }, (_, index) => ({ kind: 'final', messageId: id, index, segment: 1, segments: 1, state: 'failed', error: 'test', at: T0 + 1000 }) as const);

/** Records POSTs; answers with `answer(id, attempt)`. */
function poster(answer: (id: string, attempt: number) => DeliveryError | undefined = () => undefined): WebhookPoster & { posts: Map<string, number>; ok: Map<string, number>; bodies: Map<string, unknown>; maxInflight: number } {
  const posts = new Map<string, number>();
  const ok = new Map<string, number>();
  const bodies = new Map<string, unknown>();
  let inflight = 0;
  const p = {
    posts, ok, bodies, maxInflight: 0,
    async post(_tenant: string, url: string, body: string): Promise<DeliveryError | undefined> {
      inflight++;
      p.maxInflight = Math.max(p.maxInflight, inflight);
      const id = new URL(url).searchParams.get('m')!;
      const n = (posts.get(id) ?? 0) + 1;
      posts.set(id, n);
      await new Promise((r) => setTimeout(r, 1));
      inflight--;
      const e = answer(id, n);
      if (e === undefined) {
        ok.set(id, (ok.get(id) ?? 0) + 1);
        bodies.set(id, JSON.parse(body));
      }
      return e;
    },
  };
  return p;
}

t.test('two senders on one environment: every message POSTed once, in bounded concurrency', async (t) => {
  const { env, store } = setup(t);
  const p = poster();
  const a = sender(t, env, store, p);
  const b = sender(t, env, store, p);
  a.start();
  b.start();
  const ids: string[] = [];
  for (let i = 0; i < 600; i++) {
    const id = `m${String(i).padStart(4, '0')}`;
    const n = i % 50 === 0 ? 7 : 1; // a few multi-recipient messages
    store.putMessage(message(id, n, `h${i % 3}.example`), numbers(n));
    ids.push(id);
  }
  await store.flushed();
  // Finalise in slices, recipients of the large ones split across slices.
  const results = ids.flatMap((id) => finals(id, store.getMessage(id)!.recipients));
  for (let i = 0; i < results.length; i += 97) await store.recordSegments(results.slice(i, i + 97));
  await eventually(() => (p.ok.size === ids.length ? true : undefined), 'every callback', 30_000);
  await new Promise((r) => setTimeout(r, 200));
  t.equal([...p.posts.values()].filter((n) => n !== 1).length, 0, 'no message POSTed twice');
  t.equal(p.ok.size, 600);
  t.ok(p.maxInflight <= 16, `at most 2 × concurrency in flight (${p.maxInflight})`);
  t.match(p.bodies.get('m0050'), { id: 'm0050', status: 'complete', recipients: 7, summary: { failed: 7 } });
  for (const id of ids) t.equal(store.callbackState(id)?.state, 'done', id);
});

t.test('a multi-recipient message is called back only when its last recipient is final', async (t) => {
  const { env, store } = setup(t);
  const p = poster();
  sender(t, env, store, p).start();
  store.putMessage(message('big', 5), numbers(5));
  await store.flushed();
  await store.recordSegments(finals('big', 4));
  await new Promise((r) => setTimeout(r, 300));
  t.equal(p.posts.size, 0, 'four of five final: nothing yet (sweeps included)');
  await store.recordSegments(finals('big', 5).slice(4));
  await eventually(() => (p.ok.get('big') === 1 ? true : undefined), 'the callback');
});

t.test('messages complete before the sender starts are found by the sweep', async (t) => {
  const { env, store } = setup(t);
  for (let i = 0; i < 50; i++) store.putMessage(message(`old${i}`, i % 2 === 0 ? 1 : 3), numbers(i % 2 === 0 ? 1 : 3));
  await store.flushed();
  for (let i = 0; i < 50; i++) await store.recordSegments(finals(`old${i}`, i % 2 === 0 ? 1 : 3));
  const p = poster();
  sender(t, env, store, p).start();
  await eventually(() => (p.ok.size === 50 ? true : undefined), 'every old callback');
  t.ok([...p.posts.values()].every((n) => n === 1));
});

t.test('failures: retried with back-off, then failed for good with the reason', async (t) => {
  const { env, store } = setup(t);
  const p = poster((id, attempt) => (id === 'never' ? 'HTTP 503' : id === 'late' && attempt < 3 ? 'timeout' : undefined));
  sender(t, env, store, p).start();
  for (const id of ['never', 'late']) store.putMessage(message(id, 1), numbers(1));
  await store.flushed();
  await store.recordSegments([...finals('never', 1), ...finals('late', 1)]);
  await eventually(() => (store.callbackState('never')?.state === 'failed' && store.callbackState('late')?.state === 'done' ? true : undefined), 'both outcomes');
  t.same(store.callbackState('never'), { state: 'failed', attempts: 3, lastError: 'HTTP 503' });
  t.equal(p.posts.get('never'), 3, 'attempts bounded');
  t.equal(p.posts.get('late'), 3);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(p.posts.get('never'), 3, 'nothing after the final state');
});

t.test('a sender stopped mid-backlog: the next one sends the rest, none lost', async (t) => {
  const { env, store } = setup(t);
  for (let i = 0; i < 200; i++) store.putMessage(message(`r${i}`, 1), numbers(1));
  await store.flushed();
  const p = poster();
  const first = sender(t, env, store, p, { concurrency: 2, perHost: 2 });
  first.start();
  await store.recordSegments(Array.from({ length: 200 }, (_, i) => finals(`r${i}`, 1)[0]!));
  await eventually(() => (p.ok.size >= 5 ? true : undefined), 'a few callbacks');
  await first.close();
  const sentBefore = p.ok.size;
  const left = env.openDB<unknown, [number, string]>({ name: 'receipts.callbacks.due', encoding: 'msgpack' });
  t.ok([...left.getRange()].every(({ value }) => JSON.stringify(value) === JSON.stringify([0, 'https://hooks.example'])), 'what is left is due, with its origin');
  t.ok(sentBefore < 200, `stopped with a backlog (${sentBefore} sent)`);
  sender(t, env, store, p).start();
  await eventually(() => (p.ok.size === 200 ? true : undefined), 'the rest after the restart');
  t.ok([...p.ok.values()].every((n) => n === 1), 'each once');
});

t.test('a long backlog to one slow host does not hold back the callbacks of another host behind it', async (t) => {
  const { env, store } = setup(t);
  const slow = 'slow.example';
  // The other host's first attempts fail: their retries are due keys that sort after the whole backlog
  // (a completion can be leased at once while its host has room; a retry has to be found by the walk).
  const p = poster((id, attempt) => (id.startsWith('b') && attempt === 1 ? 'HTTP 503' : undefined));
  let releaseSlow: () => void = () => undefined;
  const slowGate = new Promise<void>((r) => { releaseSlow = r; });
  // The slow host answers only once the test lets it: its backlog stays due while the other host's callbacks are made.
  const gated: WebhookPoster = {
    async post(tenant, url, body) {
      if (url.includes(slow)) await slowGate;
      return p.post(tenant, url, body);
    },
  };
  sender(t, env, store, gated, { concurrency: 8, perHost: 4 }).start();
  const slowIds = Array.from({ length: 3000 }, (_, i) => `a${String(i).padStart(5, '0')}`);
  for (const id of slowIds) store.putMessage(message(id, 1, slow), numbers(1));
  const fastIds = Array.from({ length: 40 }, (_, i) => `b${String(i).padStart(3, '0')}`);
  for (const id of fastIds) store.putMessage(message(id, 1, 'fast.example'), numbers(1));
  await store.flushed();
  // The slow host's messages complete first, so every one of their due keys sorts before the fast host's.
  for (let i = 0; i < slowIds.length; i += 500) await store.recordSegments(slowIds.slice(i, i + 500).flatMap((id) => finals(id, 1)));
  await new Promise((r) => setTimeout(r, 50));
  await store.recordSegments(fastIds.flatMap((id) => finals(id, 1)));
  await eventually(() => (fastIds.every((id) => p.ok.get(id) === 1) ? true : undefined), 'every callback to the other host, retried', 10_000);
  t.equal([...p.ok.keys()].filter((id) => id.startsWith('a')).length, 0, 'the slow host has answered none yet');
  releaseSlow();
  await eventually(() => (p.ok.size === slowIds.length + fastIds.length ? true : undefined), 'the slow host\'s backlog once it answers', 60_000);
  t.ok(slowIds.every((id) => p.posts.get(id) === 1), 'each of the slow host\'s once');
  t.ok(fastIds.every((id) => p.posts.get(id) === 2), 'each of the other host\'s twice (the failure, then the retry)');
});

t.test('due keys written by an older version (value without the origin) are still called back once', async (t) => {
  const { env, store } = setup(t);
  const ids = ['old-a', 'old-b', 'old-c'];
  for (const id of ids) store.putMessage(message(id, 1, id === 'old-b' ? 'other.example' : 'hooks.example'), numbers(1));
  await store.flushed();
  await store.recordSegments(ids.flatMap((id) => finals(id, 1)));
  // As an older version left them: the row marked complete and its due key holding 0 (no origin).
  const due = env.openDB<number, [number, string]>({ name: 'receipts.callbacks.due', encoding: 'msgpack' });
  await env.transaction(() => {
    for (const id of ids) {
      const row = store.callbacks.get(id)!;
      store.callbacks.putSync(id, { ...row, completedAt: T0, nextAt: T0 });
      due.putSync([T0, id], 0);
    }
  });
  const p = poster();
  sender(t, env, store, p).start();
  await eventually(() => (p.ok.size === ids.length ? true : undefined), 'every old key called back');
  await new Promise((r) => setTimeout(r, 200));
  t.same([...p.posts.values()], [1, 1, 1], 'once each');
  for (const id of ids) t.equal(store.callbackState(id)?.state, 'done', id);
  t.equal(due.getCount(), 0, 'no key left');
});

/** Every final state a recipient can end in, and each recipient's results: a receipt after the submit, or the gateway's own final. */
const FINALS = ['delivered', 'undeliverable', 'expired', 'rejected', 'failed'] as const;

t.test('the summary a callback carries from its completion is the store\'s summary (one recipient: the final that completed it; several: read then)', async (t) => {
  const { env, store } = setup(t);
  const p = poster();
  sender(t, env, store, p).start();
  const ids: string[] = [];
  // One-recipient messages ending in each final state, by receipt (2 parts) and by the gateway's own final.
  for (const [k, state] of FINALS.entries()) {
    for (const via of ['dlr', 'own']) {
      const id = `one-${state}-${via}`;
      store.putMessage({ ...message(id, 1), segments: 2, reference: `ref "${k}" 报告` }, numbers(1));
      ids.push(id);
    }
  }
  // Several recipients, mixed states.
  store.putMessage(message('mixed', 5), numbers(5));
  ids.push('mixed');
  await store.flushed();
  for (const [k, state] of FINALS.entries()) {
    const dlr = `one-${state}-dlr`;
    await store.recordSegments([1, 2].map((segment) => ({ kind: 'submitted', messageId: dlr, index: 0, segment, segments: 2, account: 'acc', opId: `op${k}-${segment}`, at: T0 + 100 }) as const));
    for (const segment of [1, 2]) await store.applyReceipt({ account: 'acc', messageId: `op${k}-${segment}`, state: segment === 1 ? 'delivered' : state, doneAt: T0 + 200 });
    const own = `one-${state}-own`;
    await store.recordSegments([1, 2].map((segment) => ({ kind: 'final', messageId: own, index: 0, segment, segments: 2, state, error: 'test', at: T0 + 300 }) as const));
  }
  await store.recordSegments(FINALS.map((state, index) => ({ kind: 'final', messageId: 'mixed', index, segment: 1, segments: 1, state, error: 'test', at: T0 + 400 }) as const));
  await eventually(() => (p.ok.size === ids.length ? true : undefined), 'every callback');
  for (const id of ids) {
    const msg = store.getMessage(id)!;
    const body = p.bodies.get(id) as { id: string; reference?: string; recipients: number; summary: unknown; status: string; completedAt: string };
    t.same(body.summary, store.summary(id), `${id}: the summary posted is the store's`);
    t.equal(body.recipients, msg.recipients, id);
    t.equal(body.reference, msg.reference, id);
    t.equal(body.status, 'complete');
    t.ok(Date.parse(body.completedAt) >= T0, id);
  }
  t.same((p.bodies.get('one-rejected-own') as { summary: unknown }).summary, { accepted: 0, queued: 0, submitted: 0, delivered: 0, undeliverable: 0, expired: 0, rejected: 1, failed: 0 });
  t.ok([...p.posts.values()].every((n) => n === 1), 'each once');
});

t.test('a process that dies after marking, before its POST: the lease falls due and another process POSTs it once, with the same body', async (t) => {
  const { env, store } = setup(t);
  // The first process marks and leases at once (nothing read between), then dies at its POST: its lease key stays.
  let reached = 0;
  const dying: WebhookPoster = {
    post() {
      reached++;
      throw new Error('process died');
    },
  };
  const first = sender(t, env, store, dying);
  first.start();
  const ids = ['c1', 'c2', 'c3'];
  for (const id of ids) store.putMessage({ ...message(id, id === 'c3' ? 3 : 1), reference: `r-${id}` }, numbers(id === 'c3' ? 3 : 1));
  await store.flushed();
  await store.recordSegments(ids.flatMap((id) => finals(id, id === 'c3' ? 3 : 1)));
  await eventually(() => (reached === ids.length ? true : undefined), 'every POST reached');
  await first.close();
  const due = env.openDB<unknown, [number, string]>({ name: 'receipts.callbacks.due', encoding: 'msgpack' });
  t.equal(due.getCount(), ids.length, 'the leases are left');
  t.same([...due.getRange()].map(({ value }) => value), ids.map(() => [process.pid, 'https://hooks.example']), 'each names its leasing process and origin');
  for (const id of ids) t.equal(store.callbackState(id)?.state, 'waiting', `${id} still waiting`);
  // Another process, once the leases have run out (its clock past timeout + margin): reads the message and row itself.
  const p = poster();
  sender(t, env, store, p, { now: () => Date.now() + 120_000 }).start();
  await eventually(() => (p.ok.size === ids.length ? true : undefined), 'every callback by the next process');
  await new Promise((r) => setTimeout(r, 200));
  t.same([...p.posts.values()], [1, 1, 1], 'once each');
  t.equal(due.getCount(), 0, 'no key left');
  t.match(p.bodies.get('c1'), { id: 'c1', reference: 'r-c1', status: 'complete', recipients: 1, summary: { failed: 1, delivered: 0 } });
  t.match(p.bodies.get('c3'), { id: 'c3', reference: 'r-c3', recipients: 3, summary: { failed: 3 } });
  for (const id of ids) t.equal(store.callbackState(id)?.state, 'done', id);
});

t.test('a message purged while its POST is on the wire: a failed answer leaves no callback row behind', async (t) => {
  const { env, store } = setup(t);
  let answer: (e: DeliveryError | undefined) => void = () => undefined;
  let posted = 0;
  const gated: WebhookPoster = {
    post() {
      posted++;
      return new Promise((r) => { answer = r; });
    },
  };
  sender(t, env, store, gated).start();
  // Old and past its validity: once final and swept by the expiry sweep it is what the retention purge removes.
  store.putMessage({ ...message('gone', 1), createdAt: T0 - 20_000, expiresAt: T0 - 10_000 }, numbers(1));
  await store.flushed();
  await store.recordSegments(finals('gone', 1));
  await eventually(() => (posted === 1 ? true : undefined), 'the POST');
  for (let k = 0; k < 10 && (await store.expireDue()) > 0; k++);
  const purged = await store.purgeFinalMessages(T0, { scan: 100, batchRows: 100, maxRows: 100 });
  t.equal(purged.messages, 1, 'the message is purged');
  t.equal(purged.callbacks, 1, 'with its callback row');
  answer('HTTP 503');
  const due = env.openDB<unknown, [number, string]>({ name: 'receipts.callbacks.due', encoding: 'msgpack' });
  await eventually(() => (due.getCount() === 0 ? true : undefined), 'the lease removed');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(store.callbacks.get('gone'), undefined, 'no row written back for a purged message');
  t.equal(due.getCount(), 0, 'no retry scheduled');
  t.equal(posted, 1);
});

/** Counts the store's message and summary lookups (the POST path of a key not carried does both). */
function countReads(t: Test, store: ReceiptStore): { messages: number; summaries: number } {
  const n = { messages: 0, summaries: 0 };
  const getMessage = store.getMessage.bind(store);
  const acceptedMessage = store.acceptedMessage.bind(store);
  const summary = store.summary.bind(store);
  store.getMessage = (id) => {
    n.messages++;
    return getMessage(id);
  };
  store.acceptedMessage = (id) => {
    n.messages++;
    return acceptedMessage(id);
  };
  store.summary = (id) => {
    n.summaries++;
    return summary(id);
  };
  t.teardown(() => {
    store.getMessage = getMessage;
    store.acceptedMessage = acceptedMessage;
    store.summary = summary;
  });
  return n;
}

/** A poster that holds every POST until `open()`; then it answers like `p`. */
function gatedPoster(p: WebhookPoster): WebhookPoster & { waiting: () => number; open: () => void } {
  const gate: Array<() => void> = [];
  let opened = false;
  return {
    post: (tenant, url, body) => (opened ? p.post(tenant, url, body) : new Promise((r) => gate.push(() => r(p.post(tenant, url, body))))),
    waiting: () => gate.length,
    open: () => {
      opened = true;
      for (const go of gate.splice(0)) go();
    },
  };
}

const remembered = (cb: StatusCallbacks): string[] => [...(cb as unknown as { dueInMemory: Map<string, Map<string, unknown>> }).dueInMemory.values()].flatMap((q) => [...q.keys()]);

/**
 * `n` one-recipient messages to one origin completed at once, behind a gated poster, with one sender of
 * concurrency 8: 16 held at most (half of 4 × 8), 4 of them on the wire, 128 remembered at most (16 × 8);
 * resolves once the first four POSTs wait at the gate and the sender remembers `remember` keys. `before`
 * runs after the messages are written, before they complete.
 */
async function completedBehindGate(t: Test, n: number, prefix: string, remember: number, before: (store: ReceiptStore) => void = () => undefined) {
  const { env, store } = setup(t);
  const p = poster();
  const gated = gatedPoster(p);
  const cb = sender(t, env, store, gated);
  cb.start();
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);
  for (const id of ids) store.putMessage(message(id, 1), numbers(1));
  await store.flushed();
  before(store);
  await store.recordSegments(ids.flatMap((id) => finals(id, 1)));
  await eventually(() => (gated.waiting() === 4 && remembered(cb).length === remember ? true : undefined), `four on the wire, twelve more held, ${remember} remembered`);
  const due = env.openDB<unknown, [number, string]>({ name: 'receipts.callbacks.due', encoding: 'msgpack' });
  t.equal(due.getCount(), ids.length, 'every completion has its key on disk');
  return { env, store, p, gated, cb, ids, due };
}

t.test('completions beyond what can be held at once are remembered: POSTed once each, without reading their message again', async (t) => {
  let reads = { messages: 0, summaries: 0 };
  const { store, p, gated, cb, ids, due } = await completedBehindGate(t, 120, 'b', 120 - 16, (s) => {
    reads = countReads(t, s);
  });
  gated.open();
  await eventually(() => (p.ok.size === ids.length ? true : undefined), 'every callback');
  await new Promise((r) => setTimeout(r, 100));
  t.ok([...p.posts.values()].every((n) => n === 1), 'each once');
  t.equal(reads.messages, ids.length, 'each message looked up once, at its completion: none again for its POST');
  t.equal(reads.summaries, 0, 'no summary read (one recipient: the final that completed it)');
  t.equal(remembered(cb).length, 0, 'nothing left remembered');
  t.equal(due.getCount(), 0, 'no key left');
  for (const id of ids) t.equal(store.callbackState(id)?.state, 'done', id);
  t.match(p.bodies.get('b119'), { id: 'b119', status: 'complete', recipients: 1, summary: { failed: 1 } });
});

t.test('remembered keys: beyond the bound they wait on disk only; one whose callback row is gone (purged) is not POSTed', async (t) => {
  // 16 held, 128 remembered, 156 on disk only.
  const { env, store, p, gated, cb, ids, due } = await completedBehindGate(t, 300, 'k', 128);
  // Ten remembered ones lose their callback row, as the retention purge removes it with the message.
  const purged = new Set(remembered(cb).slice(0, 10));
  await env.transaction(() => {
    for (const id of purged) store.callbacks.removeSync(id);
  });
  gated.open();
  await eventually(() => (p.ok.size === ids.length - purged.size ? true : undefined), 'every callback whose row is there', 30_000);
  await eventually(() => (due.getCount() === 0 ? true : undefined), 'no key left');
  await new Promise((r) => setTimeout(r, 200));
  for (const id of ids) t.equal(p.posts.get(id) ?? 0, purged.has(id) ? 0 : 1, id);
  t.equal(remembered(cb).length, 0, 'nothing left remembered');
});

t.test('remembered keys another process takes first are POSTed once, by that process', async (t) => {
  const { env, store, p, gated, cb: first, ids } = await completedBehindGate(t, 120, 'o', 104);
  const keep = new Set(remembered(first));
  // A second process of the host walks the due keys and takes every one it finds.
  const p2 = poster();
  const second = sender(t, env, store, p2, { concurrency: 256, perHost: 64 });
  second.start();
  await eventually(() => (p2.ok.size === keep.size ? true : undefined), 'the second process POSTs the remembered ones');
  gated.open();
  await eventually(() => (p.ok.size + p2.ok.size === ids.length ? true : undefined), 'every callback');
  await new Promise((r) => setTimeout(r, 300));
  for (const id of ids) t.equal((p.posts.get(id) ?? 0) + (p2.posts.get(id) ?? 0), 1, `${id} once`);
  for (const id of keep) t.equal(p.posts.get(id) ?? 0, 0, `${id}: not by the process that remembered it`);
  t.equal(remembered(first).length, 0, 'nothing left remembered');
});
