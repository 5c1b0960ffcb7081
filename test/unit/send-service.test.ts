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
import { createSendService, type DoorRules, type SendStore } from '../../src/send/index.js';
import type { QueueMessage, WorkQueue } from '../../src/queue/port.js';
import type { Principal, RecipientOrigin, SendCommand, SendShape } from '../../src/core/send.js';
import { GatewayError } from '../../src/core/errors.js';

const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' } } as never });
const principal: Principal = { tenant: 'unit-a', unit: 'unit-a', tiers: null, sender: '10690001' };

function fakes() {
  const rows: string[] = [];
  const published: QueueMessage[] = [];
  const store: SendStore = {
    putMessage: (m) => void rows.push(m.id),
    putPendingMessage: (m) => void rows.push(m.id),
    putIdempotency: () => undefined,
    getIdempotency: () => undefined,
    getMessage: () => undefined,
    flushed: async () => undefined,
  };
  const queue = {
    kind: 'embedded',
    lingerMs: 0,
    async persistTogether(w) {
      w.after();
      await Promise.all([w.rowsDurable(), w.publish()]);
    },
    async publish(ms) {
      published.push(...ms);
      return ms.map((m, i) => ({ msgId: m.msgId, seq: i, duplicate: false }));
    },
    fetch: async () => [],
    depth: async () => 0,
    onDeadLetter: () => undefined,
    close: async () => undefined,
  } as WorkQueue;
  return { rows, published, store, queue };
}

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
        const f = fakes();
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
  const f = fakes();
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
  const f = fakes();
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
