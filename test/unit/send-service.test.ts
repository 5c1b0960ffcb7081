/**
 * The send service with fakes for the store, the queue and the directory's
 * rules: admission is what was wired (a part not wired refuses what only it
 * could do), the grant each origin asks for, a reply goes to one number
 * only, and a refused send writes nothing and publishes nothing.
 */
import t from 'tap';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { commandFingerprint, createSendService, type DoorRules, type SendStore } from '../../src/send/index.js';
import { decodeJob } from '../../src/core/job.js';
import type { QueueMessage, WorkQueue } from '../../src/queue/port.js';
import type { Principal, RecipientOrigin, SendCommand, SendShape } from '../../src/core/send.js';
import { GatewayError } from '../../src/core/errors.js';
import { sendFakes } from '../support/send-fakes.js';

const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' } } });
const principal: Principal = { tenant: 'unit-a', unit: 'unit-a', tiers: null, sender: '10690001' };


/** Rules that grant by origin as the reference table says, and record what they were asked. */
function rules(grants: { direct: boolean; workflow: boolean }, asked: SendShape[]): DoorRules {
  return {
    pdaEnabled: false,
    admit(_p, shape, prefix) {
      asked.push(shape);
      if ((shape.origin === 'caller' && !grants.direct) || (shape.origin === 'workflow' && !grants.workflow)) {
        throw new GatewayError('FORBIDDEN', `no grant for ${shape.origin}`, { details: [{ field: `${prefix}/to`, message: 'not granted' }] });
      }
      return { sender: '10690001', unit: 'unit-a' };
    },
    sign: (_a, text) => `【A】${text}`,
    screen: () => undefined,
    checkDirectPolice: () => undefined,
    countGroup: async () => 3,
    reserve: async () => ({ release: async () => undefined }),
    resolvePeople: (_p, ids) => ids.map((id) => `86139${String(ids.indexOf(id)).padStart(8, '0')}`),
  };
}

const numbers = (origin: RecipientOrigin, ...n: string[]): SendCommand => ({
  recipients: { kind: 'numbers', numbers: n, origin }, tier: config.defaultTier, channel: 'auto', content: { kind: 'text', text: 'hello' },
});

t.test('the grant asked for follows where the numbers came from; a refused send writes and publishes nothing', async (t) => {
  // Reference model: caller needs direct, workflow needs workflow, directory and reply need neither.
  const need = (o: RecipientOrigin, g: { direct: boolean; workflow: boolean }): boolean => (o === 'caller' ? g.direct : o === 'workflow' ? g.workflow : true);
  for (const direct of [false, true]) {
    for (const workflow of [false, true]) {
      for (const origin of ['caller', 'workflow', 'directory', 'reply'] as const) {
        const f = sendFakes();
        const asked: SendShape[] = [];
        const sends = createSendService({
          config, store: f.store, queue: f.queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
          principalOf: () => principal, directory: { rules: rules({ direct, workflow }, asked), held: { hold: () => undefined } },
        });
        const [r] = await sends.send(principal, [{ command: numbers(origin, '8613900000001') }]);
        const label = `${origin} with direct=${direct} workflow=${workflow}`;
        t.equal(asked[0]?.origin, origin, `${label}: admission is told the origin`);
        t.equal(r?.ok, need(origin, { direct, workflow }), label);
        if (!r?.ok) {
          t.same(f.rows, [], `${label}: no rows`);
          t.same(f.published, [], `${label}: nothing published`);
        } else t.equal(f.published.length, 1, `${label}: one job`);
      }
    }
  }
});

t.test('a reply goes to the one number that wrote in, and only there', async (t) => {
  const f = sendFakes();
  const sends = createSendService({
    config, store: f.store, queue: f.queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
    principalOf: () => principal, directory: { rules: rules({ direct: false, workflow: false }, []), held: { hold: () => undefined } },
  });
  const [two] = await sends.send(principal, [{ command: numbers('reply', '8613900000001', '8613900000002') }]);
  t.equal(two?.ok, false);
  t.match(!two?.ok && two?.error, { code: 'FORBIDDEN', details: [{ field: '/to' }] });
  const [same] = await sends.send(principal, [{ command: numbers('reply', '8613900000001', '8613900000001') }]);
  t.equal(same?.ok, true, 'the same number twice is one number');
  t.equal(f.published.length, 1, 'only the one-number reply was published');
});

t.test('admission is what was wired: without the directory, templates or schedule, what only they do is refused', async (t) => {
  const f = sendFakes();
  const sends = createSendService({
    config, store: f.store, queue: f.queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
    principalOf: () => principal,
  });
  const base = numbers('caller', '8613900000001');
  const cases: [string, SendCommand, string][] = [
    ['group', { ...base, recipients: { kind: 'group', group: 'all' } }, '/group'],
    ['police', { ...base, classification: 'police' }, '/classification'],
    ['pda', { ...base, channel: 'pda' }, '/channel'],
    ['template', { ...base, content: { kind: 'template', name: 'x', params: {} } }, '/template'],
    ['scheduleAt', { ...base, scheduleAt: Date.now() + 60_000 }, '/scheduleAt'],
  ];
  for (const [what, command, field] of cases) {
    const [r] = await sends.send(principal, [{ command }]);
    t.match(r, { ok: false, error: { code: 'VALIDATION', details: [{ field }] } }, what);
  }
  t.same(f.published, [], 'nothing published');
  const [ok] = await sends.send(principal, [{ command: base }]);
  t.equal(ok?.ok, true, 'a plain send to numbers goes (bootstrap-like principal, no directory)');
  t.match(ok?.ok && ok.body, { recipients: 1, status: 'accepted' });
});

/**
 * Invariant 7 against a reference model: one Idempotency-Key used again and
 * again over several TTLs, with some answers lost as in a crash between the
 * rows and the stored answer. Model: a live stored answer replays (or 409 on
 * another body); else a message of the key accepted less than one TTL ago is
 * the retry of a lost answer (same id, rows kept, same job ids; 409 on
 * another body); else a new message whose id no earlier message had. A new
 * message never writes into, or publishes under, an older one.
 */
t.test('an Idempotency-Key reused after its TTL is a new message; a lost answer within it is retried under the same id', async (t) => {
  const fc = (await import('fast-check')).default;
  const ttl = 10_000;
  const cfg = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, server: { idempotencyTtl: 'PT10S' } } });
  t.equal(cfg.idempotencyTtlMs, ttl);
  const step = fc.record({ wait: fc.integer({ min: 0, max: 3 * ttl }), body: fc.constantFrom('a', 'b'), loseAnswer: fc.boolean() });
  await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 5 * ttl }), fc.array(step, { minLength: 1, maxLength: 12 }), async (start, steps) => {
    let clock = 1_700_000_000_000 + start;
    const messages = new Map<string, { tenant: string; createdAt: number; fingerprint?: string; to: readonly string[] }>();
    const answers = new Map<string, { v: unknown; x: number }>();
    const published: QueueMessage[] = [];
    const store: SendStore = {
      putMessage: (m, nums) => {
        if (messages.has(m.id)) throw new Error(`rows written twice under ${m.id}`);
        messages.set(m.id, { tenant: m.tenant, createdAt: m.createdAt, to: nums, ...(m.fingerprint !== undefined ? { fingerprint: m.fingerprint } : {}) });
      },
      putPendingMessage: () => { throw new Error('no group sends here'); },
      putIdempotency: (tn, k, v, x) => void answers.set(`${tn}/${k}`, { v, x }),
      getIdempotency: (tn, k) => { const e = answers.get(`${tn}/${k}`); return e !== undefined && e.x > clock ? e.v : undefined; },
      getMessage: (id) => messages.get(id),
      flushed: async () => undefined,
    };
    const queue = {
      kind: 'embedded',
      lingerMs: 0,
      async persistTogether(w) { await w.rowsDurable(); await w.publish(); w.after(); },
      async publish(ms) { published.push(...ms); return ms.map((m, i) => ({ msgId: m.msgId, seq: i, duplicate: false })); },
      claimKey: async () => ({ won: true as const }),
      fetch: async () => [], depth: async () => 0, onDeadLetter: () => undefined, close: async () => undefined,
    } as WorkQueue;
    const sends = createSendService({
      config: cfg, store, queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
      principalOf: () => principal, now: () => clock,
    });
    // The model: the live answer (id, body, expiry) and the latest message (id, body, createdAt).
    let answer: { id: string; body: string; x: number } | undefined;
    let last: { id: string; body: string; at: number } | undefined;
    const ids = new Set<string>();
    for (const s of steps) {
      clock += s.wait;
      const to = s.body === 'a' ? ['8613900000001'] : ['8613900000002', '8613900000003'];
      const command: SendCommand = { ...numbers('caller', ...to), content: { kind: 'text', text: s.body }, idempotencyKey: 'K' };
      const before = published.length;
      const [r] = await sends.send(principal, [{ command }]);
      if (!r) throw new Error('no result');
      if (answer && clock < answer.x) {
        if (s.body !== answer.body) { if (r.ok || r.error.code !== 'IDEMPOTENCY_CONFLICT') return false; continue; }
        if (!r.ok || !r.replayed || r.body.id !== answer.id || published.length !== before) return false;
        continue;
      }
      if (last && clock < last.at + ttl) {
        if (s.body !== last.body) { if (r.ok || r.error.code !== 'IDEMPOTENCY_CONFLICT') return false; continue; }
        // The retry of a lost answer: the same message, its rows kept, the same job ids republished.
        if (!r.ok || r.replayed || r.body.id !== last.id) return false;
        if (published.slice(before).some((m) => m.msgId !== `${last!.id}.0`)) return false;
      } else {
        if (!r.ok || r.replayed || ids.has(r.body.id)) return false;
        const row = messages.get(r.body.id);
        if (!row || row.createdAt !== clock || row.to.join() !== to.join()) return false;
        if (published.slice(before).some((m) => !m.msgId.startsWith(`${r.body.id}.`))) return false;
        ids.add(r.body.id);
        last = { id: r.body.id, body: s.body, at: clock };
      }
      answer = { id: r.body.id, body: s.body, x: clock + ttl };
      if (s.loseAnswer) {
        answers.delete(`${principal.tenant}/K`);
        answer = undefined;
      }
    }
    // Whatever was published belongs to a message whose rows name exactly that job's recipients.
    for (const m of published) {
      const id = m.msgId.slice(0, m.msgId.lastIndexOf('.'));
      if (!messages.has(id)) return false;
    }
    return true;
  }), { numRuns: 300, seed: 16 });
});

t.test('held messages: no quota at acceptance; readmit runs grants, content rules (reject list now), then the quota', async (t) => {
  const f = sendFakes();
  let charged = 0;
  let rejectNow = false;
  const held: unknown[] = [];
  const base = rules({ direct: true, workflow: false }, []);
  const withWords: DoorRules = {
    ...base,
    screen: (text, prefix) => {
      if (!text.includes('罢工')) return undefined;
      if (rejectNow) throw new GatewayError('CONTENT_REJECTED', 'listed word', { details: [{ field: `${prefix}/text`, message: '罢工' }] });
      return '罢工';
    },
    reserve: async (_a, n) => {
      charged += n;
      return { release: async () => void (charged -= n) };
    },
  };
  const sends = createSendService({
    config, store: f.store, queue: f.queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
    principalOf: () => principal, directory: { rules: withWords, held: { hold: (r) => void held.push(r) } },
  });
  const [r] = await sends.send(principal, [{ command: { ...numbers('caller', '8613900000001', '8613900000002'), content: { kind: 'text', text: '罢工通知' } } }]);
  t.match(r, { ok: true, body: { status: 'held', recipients: 2 } });
  t.equal(charged, 0, 'nothing charged while held');
  t.same(f.published, [], 'nothing published while held');
  t.match(held[0], { shape: { origin: 'caller', tier: config.defaultTier }, body: '罢工通知', segments: 1 });
  const shape = (held[0] as { shape: SendShape }).shape;
  // Released: charged now.
  const res = await sends.readmit('unit-a', { shape, body: '罢工通知', recipients: 2 });
  t.equal(charged, 2, 'charged at release');
  await res?.release();
  t.equal(charged, 0, 'given back');
  // The word is on the reject list now: refused, nothing charged.
  rejectNow = true;
  await t.rejects(sends.readmit('unit-a', { shape, body: '罢工通知', recipients: 2 }), { code: 'CONTENT_REJECTED' });
  t.equal(charged, 0);
  // Without the grant the numbers need: refused before content rules and quota.
  rejectNow = false;
  await t.rejects(sends.readmit('unit-a', { shape: { ...shape, origin: 'workflow' }, body: '罢工通知', recipients: 2 }), { code: 'FORBIDDEN' });
  t.equal(charged, 0);
});

t.test('a key another process holds (WorkQueue.claimKey): 409 for another body, the first answer replayed, or after the wait a retry under its id', async (t) => {
  const command: SendCommand = { ...numbers('caller', '8613900000001', '8613900000002'), idempotencyKey: 'held-elsewhere' };
  const fingerprint = commandFingerprint(command);
  const setup = (claim: WorkQueue['claimKey'], answerAfterMs?: number) => {
    const f = sendFakes();
    let charged = 0;
    const claims: Parameters<WorkQueue['claimKey']>[0][] = [];
    const firstAnswer = { id: 'I-FIRST', recipients: 2, segments: 1, totalSegments: 2, encoding: 'gsm7', tier: config.defaultTier, status: 'accepted' };
    const since = Date.now();
    // The first request's answer reaches this store (replication, or the shared environment) `answerAfterMs` after the claim.
    const store: SendStore = {
      ...f.store,
      getIdempotency: () => (answerAfterMs !== undefined && Date.now() - since >= answerAfterMs ? { fingerprint, response: firstAnswer } : undefined),
    };
    const queue: WorkQueue = { ...f.queue, claimKey: (c) => (claims.push(c), claim(c)) };
    const base = rules({ direct: true, workflow: false }, []);
    const sends = createSendService({
      config, store, queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }), keyAnswerWaitMs: 300,
      principalOf: () => principal,
      directory: { rules: { ...base, reserve: async (_a, n) => ((charged += n), { release: async () => void (charged -= n) }) }, held: { hold: () => undefined } },
    });
    return { f, sends, claims, charged: () => charged, firstAnswer };
  };

  await t.test('won: written under its own id, the claim naming it', async (t) => {
    const s = setup(async () => ({ won: true }));
    const [r] = await s.sends.send(principal, [{ command }]);
    t.match(r, { ok: true, replayed: false });
    const id = r?.ok ? r.body.id : '';
    t.match(s.claims, [{ tenant: 'unit-a', key: 'held-elsewhere', id, fingerprint, ttlMs: config.idempotencyTtlMs }]);
    t.same(s.f.rows, [id]);
    t.same(s.f.published.map((m) => m.msgId), [`${id}.0`]);
    t.equal(s.charged(), 2);
  });

  await t.test('held for another body: 409, nothing written or published, the quota given back', async (t) => {
    const s = setup(async (c) => ({ won: false, id: 'I-FIRST', fingerprint: 'another body', at: c.at }));
    const [r] = await s.sends.send(principal, [{ command }]);
    t.match(r, { ok: false, error: { code: 'IDEMPOTENCY_CONFLICT' } });
    t.same([s.f.rows, s.f.published], [[], []]);
    t.equal(s.charged(), 0);
  });

  await t.test('held for this body, its answer arriving meanwhile: the first answer, replayed, nothing written', async (t) => {
    const s = setup(async (c) => ({ won: false, id: 'I-FIRST', fingerprint, at: c.at }), 60);
    const [r] = await s.sends.send(principal, [{ command }]);
    t.same(r, { ok: true, replayed: true, body: s.firstAnswer });
    t.same([s.f.rows, s.f.published], [[], []]);
    t.equal(s.charged(), 0);
  });

  await t.test('held for this body, no answer within the wait (its process died): a retry, under the held id', async (t) => {
    const s = setup(async (c) => ({ won: false, id: 'I-FIRST', fingerprint, at: c.at }));
    const started = Date.now();
    const [r] = await s.sends.send(principal, [{ command }]);
    t.ok(Date.now() - started >= 300, 'after the wait');
    t.match(r, { ok: true, replayed: false, body: { id: 'I-FIRST', recipients: 2 } });
    t.same(s.f.rows, ['I-FIRST'], 'the rows under the held id');
    t.same(s.f.published.map((m) => m.msgId), ['I-FIRST.0'], 'its jobs under the held id (the queue drops them if the first published them)');
    t.match(s.f.published.map((m) => decodeJob(m.data).messages[0]?.id), ['I-FIRST']);
    t.equal(s.charged(), 2);
  });

  await t.test('the claim cannot be confirmed: QUEUE_UNAVAILABLE, nothing written, the quota given back', async (t) => {
    const s = setup(() => Promise.reject(new GatewayError('QUEUE_UNAVAILABLE', 'no NATS')));
    const [r] = await s.sends.send(principal, [{ command }]);
    t.match(r, { ok: false, error: { code: 'QUEUE_UNAVAILABLE' } });
    t.same([s.f.rows, s.f.published], [[], []]);
    t.equal(s.charged(), 0);
  });

  await t.test('one batch: a send refused its quota, a key held elsewhere for another body, a key won: only the won send keeps its quota', async (t) => {
    const f = sendFakes();
    let charged = 0;
    const base = rules({ direct: true, workflow: false }, []);
    const queue: WorkQueue = { ...f.queue, claimKey: async (c) => (c.key === 'key-b' ? { won: false, id: 'I-B', fingerprint: 'another body', at: c.at } : { won: true }) };
    const sends = createSendService({
      config, store: f.store, queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }), keyAnswerWaitMs: 300,
      principalOf: () => principal,
      directory: {
        rules: {
          ...base,
          // One recipient: over quota. Two or three: charged until given back.
          reserve: async (_a, n) => {
            if (n === 1) throw new GatewayError('QUOTA_EXCEEDED', 'over quota');
            charged += n;
            return { release: async () => void (charged -= n) };
          },
        },
        held: { hold: () => undefined },
      },
    });
    const [a, b, c] = await sends.send(principal, [
      { command: numbers('caller', '8613900000001') },
      { command: { ...numbers('caller', '8613900000002', '8613900000003'), idempotencyKey: 'key-b' } },
      { command: { ...numbers('caller', '8613900000004', '8613900000005', '8613900000006'), idempotencyKey: 'key-c' } },
    ]);
    t.match(a, { ok: false, error: { code: 'QUOTA_EXCEEDED' } });
    t.match(b, { ok: false, error: { code: 'IDEMPOTENCY_CONFLICT' } });
    t.match(c, { ok: true, replayed: false, body: { recipients: 3 } });
    await new Promise((r) => setImmediate(r));
    t.equal(charged, 3, 'the 409\'s quota given back, the written send\'s kept');
  });
});

t.test('onAccepted comes after the write is no longer counted in flight (a dispatcher holding back for the intake sees it done)', async (t) => {
  const f = sendFakes();
  const seen: number[] = [];
  const sends = createSendService({
    config, store: f.store, queue: f.queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
    principalOf: () => principal, directory: { rules: rules({ direct: true, workflow: true }, []), held: { hold: () => undefined } },
    onAccepted: () => seen.push(sends.inflightRequests),
  });
  const one = sends.send(principal, [{ command: numbers('caller', '8613900000001') }]);
  const two = sends.send(principal, [{ command: numbers('caller', '8613900000002') }]);
  const [a, b] = await Promise.all([one, two]);
  t.equal(a?.[0]?.ok, true);
  t.equal(b?.[0]?.ok, true);
  t.same(seen, [1, 0], 'the first is told while the second is still in flight, the last with none');
  const refused = sends.send(principal, [{ command: numbers('reply', '8613900000001', '8613900000002') }]);
  t.equal((await refused)[0]?.ok, false);
  t.equal(seen.length, 2, 'a refused send tells nothing');
});

t.test('onQueued counts the recipients a write puts on the queue before it can commit, and takes them back when it fails', async (t) => {
  const f = sendFakes();
  const events: { n: number; published: number }[] = [];
  const sends = createSendService({
    config, store: f.store, queue: f.queue, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }),
    principalOf: () => principal, directory: { rules: rules({ direct: true, workflow: true }, []), held: { hold: () => undefined } },
    onAccepted: () => undefined,
    onQueued: (n) => events.push({ n, published: f.published.length }),
  });
  const batch = await sends.send(principal, [
    { command: numbers('caller', '8613900000003', '8613900000004', '8613900000005') },
    { command: numbers('caller', '8613900000006') },
    { command: numbers('reply', '8613900000007', '8613900000008') },
  ]);
  t.same(batch.map((r) => r.ok), [true, true, false]);
  t.same(events, [{ n: 4, published: 0 }], 'one count for the write, before anything of it was published; the refused send not in it');
  const persist = f.queue.persistTogether.bind(f.queue);
  f.queue.persistTogether = async () => {
    throw new GatewayError('STORAGE_FULL', 'disk full');
  };
  const failed = await sends.send(principal, [{ command: numbers('caller', '8613900000009', '8613900000010') }]);
  t.equal(failed[0]?.ok, false);
  t.same(events.slice(1), [{ n: 2, published: 1 }, { n: -2, published: 1 }], 'a failed write is counted, then taken back');
  f.queue.persistTogether = persist;
});
