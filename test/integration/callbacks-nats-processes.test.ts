/**
 * Completion callbacks and status events (docs/CALLBACKS.md) sent by two
 * gateway processes at once: `smsgw start` twice (role all: API and
 * dispatch) on one data dir (one LMDB environment) and one nats-server, one
 * SMSC simulator, callback receivers on their own loopback ports (origins).
 * Both processes mark completions, claim due callbacks and lease event lanes
 * from the same tables, towards the same origins.
 *
 * 1. Both running: every message's callback is POSTed, signed, with its
 *    complete summary; once to a receiver that answers 2xx, once more per
 *    failed attempt to a flaky one, exactly `callbacks.attempts` times to a
 *    dead one (then `failed` in the status API of either process); every
 *    status event once, a recipient's `submitted` before its `final`.
 * 2. kill -9 of one process while its POSTs are on the wire (the receivers
 *    hold them): nothing is lost. The other process sends what the dead one
 *    had leased once its leases lapse (`callbacks.timeoutMs` + 30 s); a POST
 *    is repeated only when the earlier one died unanswered with its process,
 *    never after a 2xx.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireNatsServer } from '../support/nats-server.js';
import { api, waitComplete } from '../support/gateway-process.js';
import { numberAt, startNatsDeployment, startSimulator, until, type IngestProcess } from '../support/nats-deployment.js';
import { startCallbackSink, type CallbackSink, type SinkRequest } from '../support/callback-sink.js';
import type { MessageStatus } from '../support/api-types.js';

const SECRET = 'test-callback-secret-0123456789ab';
const ATTEMPTS = 3;
const TIMEOUT_MS = 3_000;
/** The kill test's: longer than its POSTs are held before the kill, on a loaded machine too. */
const KILL_TIMEOUT_MS = 15_000;
/** The callback settings every deployment of this file runs with. */
const CALLBACKS = { secrets: { dev: { current: SECRET } }, allow: ['127.0.0.1/32'], attempts: ATTEMPTS, backoffMs: 100, maxBackoffMs: 400, timeoutMs: TIMEOUT_MS };
/** status-callbacks.ts / event-callbacks.ts LEASE_MARGIN_MS. */
const LEASE_MARGIN_MS = 30_000;

interface Completion { readonly id: string; readonly status: string; readonly recipients: number; readonly summary: Record<string, number> }
interface StatusEvent { readonly messageId: string; readonly index: number; readonly event: 'submitted' | 'final'; readonly state: string }

const completionOf = (r: SinkRequest): Completion => r.json as Completion;
const eventsOf = (r: SinkRequest): StatusEvent[] => r.json as StatusEvent[];

/** A number the simulator answers with an undeliverable receipt (last four digits 0005). */
const undeliverable = (m: number): string => `138${String(m).padStart(4, '0')}0005`;

/** A gauge or counter of one process (`name{labels} value` in /metrics). */
async function metric(p: IngestProcess, line: string): Promise<number> {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  const m = new RegExp(`^${line.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function status(p: IngestProcess, id: string): Promise<MessageStatus> {
  return (await api<MessageStatus>(p.url, 'GET', `/v1/messages/${id}?limit=10`)).json;
}

/** Requests of a sink about one message id (completion callbacks). */
function callbacksFor(sink: CallbackSink, id: string): SinkRequest[] {
  return sink.requests.filter((r) => completionOf(r).id === id);
}

if (requireNatsServer(t)) {
  t.test('two processes, both running: each callback POSTed and complete; retries bounded per origin; each status event once, in order', async (t) => {
    const deployment = await startNatsDeployment(t, {
      overrides: {
        queue: { coalesce: false },
        callbacks: { ...CALLBACKS, events: { lingerMs: 50 } },
      },
    });
    const sim = await startSimulator(t);
    const procs = [await deployment.startAll(sim, { name: 'p1' }), await deployment.startAll(sim, { name: 'p2' })] as const;

    const ok = await startCallbackSink(t, SECRET, () => 204);
    const failedOnce = new Set<string>();
    const flaky = await startCallbackSink(t, SECRET, (r) => {
      const id = completionOf(r).id;
      if (failedOnce.has(id)) return 204;
      failedOnce.add(id);
      return 503;
    });
    const dead = await startCallbackSink(t, SECRET, () => 500);
    const events = await startCallbackSink(t, SECRET, () => 204);
    const sinks = [ok, flaky, dead] as const;

    const MESSAGES = 60;
    const sent: Array<{ id: string; sink: CallbackSink; recipients: number; events: boolean }> = [];
    for (let m = 0; m < MESSAGES; m++) {
      const n = 1 + (m % 3);
      const to = Array.from({ length: n }, (_, j) => (j === 1 && m % 4 === 0 ? undeliverable(m) : numberAt(m * 10 + j)));
      const sink = sinks[m % 3]!;
      const withEvents = Math.floor(m / 3) % 2 === 0;
      const body = {
        to, text: `Callback check ${m}.`, reference: `ref-${m}`, callbackUrl: `${sink.origin}/done`,
        ...(withEvents ? { statusCallback: { url: `${events.origin}/events`, events: ['submitted', 'final'] } } : {}),
      };
      const r = await api<{ id: string }>(procs[m % 2]!.url, 'POST', '/v1/messages', body);
      t.equal(r.status, 202, `message ${m} accepted by ${procs[m % 2]!.name}`);
      sent.push({ id: r.json.id, sink, recipients: n, events: withEvents });
    }
    for (const s of sent) await waitComplete(procs[0].url, s.id, 30_000, 50);

    // Settled: a 2xx for every message of ok and flaky, ATTEMPTS POSTs for every one of dead, every event answered.
    const eventKeys = new Set<string>();
    for (const s of sent) if (s.events) for (let i = 0; i < s.recipients; i++) for (const e of ['submitted', 'final']) eventKeys.add(`${s.id}/${i}/${e}`);
    const delivered = (): Set<string> => new Set(events.requests.filter((r) => r.status === 204).flatMap((r) => eventsOf(r).map((e) => `${e.messageId}/${e.index}/${e.event}`)));
    await until('every callback settled and every event delivered', () =>
      sent.every((s) => {
        const rs = callbacksFor(s.sink, s.id);
        return s.sink === dead ? rs.length >= ATTEMPTS : rs.some((r) => r.status === 204);
      }) && [...eventKeys].every((k) => delivered().has(k)), 60_000, 100);
    // Late repeats (a second sender, a sweep) would come now: give them time.
    await sleep(1_500);

    const all = [...sinks, events].flatMap((s) => s.requests);
    t.equal(all.filter((r) => !r.signed).length, 0, `all ${all.length} POSTs signed with the tenant's secret, timestamps fresh`);
    for (const s of sent) {
      const rs = callbacksFor(s.sink, s.id);
      const st = await status(procs[0], s.id);
      const expected = s.sink === ok ? [204] : s.sink === flaky ? [503, 204] : Array<number>(ATTEMPTS).fill(500);
      t.same(rs.map((r) => r.status), expected, `${s.id} (${s.sink === ok ? 'ok' : s.sink === flaky ? 'flaky' : 'dead'} origin): POSTs answered ${JSON.stringify(expected)}`);
      for (const r of rs) {
        t.same(completionOf(r), { ...completionOf(r), id: s.id, status: 'complete', recipients: s.recipients, summary: st.summary }, `${s.id}: the body is the complete summary`);
      }
      const want = s.sink === dead ? { state: 'failed', attempts: ATTEMPTS, lastError: 'HTTP 500' } : { state: 'done' };
      for (const p of procs) t.same((await status(p, s.id)).callback, want, `${s.id}: ${p.name} shows the callback ${want.state}`);
    }
    // Status events: each once, a recipient's submitted before its final, the final state the status API's.
    const seen = new Map<string, number[]>();
    for (const r of events.requests) {
      t.equal(r.status, 204);
      eventsOf(r).forEach((e, k) => {
        const key = `${e.messageId}/${e.index}/${e.event}`;
        seen.set(key, [...(seen.get(key) ?? []), r.n * 1_000 + k]);
      });
    }
    t.same([...seen.keys()].sort(), [...eventKeys].sort(), 'exactly the events asked for');
    t.same([...seen.values()].filter((v) => v.length > 1), [], 'each event POSTed once');
    for (const s of sent.filter((x) => x.events)) {
      const st = await status(procs[1], s.id);
      for (let i = 0; i < s.recipients; i++) {
        const sub = seen.get(`${s.id}/${i}/submitted`)?.[0] ?? Infinity;
        const fin = seen.get(`${s.id}/${i}/final`)?.[0] ?? -1;
        t.ok(sub < fin, `${s.id}/${i}: submitted before final`);
        const finalEvent = events.requests.flatMap((r) => eventsOf(r)).find((e) => e.messageId === s.id && e.index === i && e.event === 'final');
        t.equal(finalEvent?.state, st.items.find((x) => x.index === i)?.state, `${s.id}/${i}: the final event carries the recipient's state`);
      }
    }
    // Both processes did send (the point of the test): each delivered some callbacks itself.
    const byProcess = await Promise.all(procs.map((p) => metric(p, 'smsgw_status_callbacks_total{outcome="delivered"}')));
    t.ok(byProcess.every((n) => n > 0), `completion callbacks delivered by each process: ${JSON.stringify(byProcess)}`);
    t.equal(byProcess.reduce((a, b) => a + b, 0), (MESSAGES / 3) * 2, 'and together one per message of the ok and flaky origins');
  });

  t.test('one message whose recipients are made final by both processes: its callback is not lost (found by the sweep), once, complete', async (t) => {
    const deployment = await startNatsDeployment(t, {
      overrides: {
        queue: { coalesce: false, batchSize: 25 },
        dispatch: { fetchBatch: 1 },
        callbacks: CALLBACKS,
      },
    });
    // One simulator per process, standing for one account (ids kept apart): receipts come back to the
    // session that submitted, so each simulator's count is what its process made final.
    const sims = await Promise.all([0, 1].map((i) => startSimulator(t, { firstMessageId: 1_000_000 + i * 100_000_000 })));
    const p1 = await deployment.startAll(sims[0]!, { name: 'p1' });
    await deployment.startAll(sims[1]!, { name: 'p2' });
    const ok = await startCallbackSink(t, SECRET, () => 204);
    const N = 400;
    const r = await api<{ id: string }>(p1.url, 'POST', '/v1/messages', { to: Array.from({ length: N }, (_, i) => numberAt(8_000 + i)), text: 'Split completion check.', callbackUrl: `${ok.origin}/done` });
    t.equal(r.status, 202);
    const id = r.json.id;
    await waitComplete(p1.url, id, 60_000, 50);
    const completeAt = Date.now();
    const split = sims.map((s) => s.stats().submits);
    t.ok(split.every((n) => n > 0) && split[0]! + split[1]! === N, `both processes submitted (and so made final) part of it: ${JSON.stringify(split)}`);
    // Neither process saw every final of it itself: the waiting-row sweep (at start, then every 30 s) notices it.
    await until('its callback', () => callbacksFor(ok, id).length > 0, 30_000 + 10_000, 100);
    t.comment(`callback ${Date.now() - completeAt} ms after the message was seen complete`);
    await sleep(1_500);
    const rs = callbacksFor(ok, id);
    t.equal(rs.length, 1, 'POSTed once');
    t.match(completionOf(rs[0]!), { id, status: 'complete', recipients: N, summary: { delivered: N } });
    t.ok(rs[0]!.signed, 'signed');
  });

  t.test('kill -9 of one of the two processes with callbacks and event batches on the wire: none lost, repeated only where a POST died unanswered', async (t) => {
    const deployment = await startNatsDeployment(t, {
      overrides: {
        queue: { coalesce: false },
        // Held POSTs must not time out before the kill is counted: a timed-out POST of the live
        // process is reset at the sink too, and would be taken for one that died with p1.
        callbacks: { ...CALLBACKS, timeoutMs: KILL_TIMEOUT_MS, events: { lingerMs: 50 } },
      },
    });
    const sim = await startSimulator(t);
    const [p1, p2] = [await deployment.startAll(sim, { name: 'p1' }), await deployment.startAll(sim, { name: 'p2' })];
    // Both receivers hold every request until the kill.
    const done = await startCallbackSink(t, SECRET, () => 'hold');
    const events = await startCallbackSink(t, SECRET, () => 'hold');

    const MESSAGES = 40;
    const ids: string[] = [];
    for (let m = 0; m < MESSAGES; m++) {
      const body = { to: [numberAt(5_000 + m)], text: `Kill check ${m}.`, callbackUrl: `${done.origin}/done`, statusCallback: { url: `${events.origin}/events`, events: ['submitted', 'final'] } };
      const r = await api<{ id: string }>((m % 2 === 0 ? p1 : p2).url, 'POST', '/v1/messages', body);
      t.equal(r.status, 202);
      ids.push(r.json.id);
    }
    for (const id of ids) await waitComplete(p2.url, id, 30_000, 50);
    const inflight = (p: IngestProcess): Promise<number> => metric(p, 'smsgw_status_callbacks_inflight');
    // The process that records a message's last receipt POSTs its callback; which one that is, is the
    // queue's business (both, or one, may have taken the jobs). The one with more on the wire is killed.
    await until('completion callbacks on the wire', async () => (await inflight(p1)) + (await inflight(p2)) > 0, 20_000, 100);
    await until('the POSTs on the wire have arrived', async () => done.held() === (await inflight(p1)) + (await inflight(p2)), 10_000, 50);
    await sleep(300); // event lanes: their first batches out too
    const [n1, n2] = [await inflight(p1), await inflight(p2)];
    const [victim, survivor, victimInflight] = n1 >= n2 ? [p1, p2, n1] : [p2, p1, n2];
    t.comment(`at the kill: ${done.held()} callbacks held (${n1} by p1, ${n2} by p2; ${victim === p1 ? 'p1' : 'p2'} killed), ${events.held()} event batches held`);

    await victim.kill('SIGKILL');
    await until('the dead process\'s connections closed', () => done.requests.filter((r) => r.reset).length >= victimInflight, 10_000, 20);
    const diedWithVictim = new Set(done.requests.filter((r) => r.reset).map((r) => completionOf(r).id));
    t.equal(diedWithVictim.size, victimInflight, 'exactly the dead process\'s POSTs died unanswered');
    // The receivers come back to normal: what is held is answered, the rest at once.
    done.answer(() => 204);
    events.answer(() => 204);
    done.release(204);
    events.release(204);

    const eventKeys = new Set(ids.flatMap((id) => [`${id}/0/submitted`, `${id}/0/final`]));
    const answered = (): SinkRequest[] => events.requests.filter((r) => r.status === 204);
    await until('every callback and every event answered 2xx (the dead process\'s leases lapse first)', () =>
      ids.every((id) => callbacksFor(done, id).some((r) => r.status === 204))
      && answered().flatMap((r) => eventsOf(r).map((e) => `${e.messageId}/${e.index}/${e.event}`)).filter((k) => eventKeys.has(k)).length >= eventKeys.size,
    KILL_TIMEOUT_MS + LEASE_MARGIN_MS + 15_000, 200);
    await sleep(1_500);

    t.equal([...done.requests, ...events.requests].filter((r) => !r.signed).length, 0, 'every POST signed');
    for (const id of ids) {
      const rs = callbacksFor(done, id);
      t.equal(rs.filter((r) => r.status === 204).length, 1, `${id}: one 2xx`);
      t.equal(rs[rs.length - 1]?.status, 204, `${id}: nothing after it`);
      t.ok(rs.slice(0, -1).every((r) => r.reset), `${id}: any earlier POST died unanswered`);
      t.equal(rs.length, diedWithVictim.has(id) ? 2 : 1, `${id}: ${diedWithVictim.has(id) ? 'repeated once (it was on the wire of the dead process)' : 'POSTed once'}`);
      t.match(completionOf(rs[rs.length - 1]!), { id, status: 'complete', recipients: 1, summary: { delivered: 1 } });
      t.same((await status(survivor, id)).callback, { state: 'done' }, `${id}: done`);
    }
    // Events: each delivered; repeated only inside a batch that died unanswered; per recipient in order.
    const firstOk = new Map<string, number>();
    const deliveredTimes = new Map<string, number>();
    for (const r of answered()) {
      for (const e of eventsOf(r)) {
        const k = `${e.messageId}/${e.index}/${e.event}`;
        deliveredTimes.set(k, (deliveredTimes.get(k) ?? 0) + 1);
        if (!firstOk.has(k)) firstOk.set(k, r.n * 1_000 + eventsOf(r).indexOf(e));
      }
    }
    t.same([...eventKeys].filter((k) => deliveredTimes.get(k) !== 1), [], 'every event answered 2xx exactly once');
    const unanswered = events.requests.filter((r) => r.status !== 204);
    t.ok(unanswered.every((r) => r.reset), `event batches not answered 2xx (${unanswered.length}) all died with the process`);
    for (const id of ids) t.ok((firstOk.get(`${id}/0/submitted`) ?? Infinity) <= (firstOk.get(`${id}/0/final`) ?? -1), `${id}: submitted delivered no later than final`);
  });
}
