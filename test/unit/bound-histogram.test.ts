import t from 'tap';
import fc from 'fast-check';
import { boundHistogram, createMetrics } from '../../src/telemetry/metrics.js';

/**
 * The same exposition, line for line; `_sum` values equal up to rounding (a
 * bound histogram adds its observations up before adding them to the
 * histogram's sum, so the additions are grouped differently).
 */
function sameExposition(a: string, b: string): boolean {
  const la = a.split('\n');
  const lb = b.split('\n');
  if (la.length !== lb.length) return false;
  for (let i = 0; i < la.length; i++) {
    const x = la[i] as string;
    const y = lb[i] as string;
    if (x === y) continue;
    const mx = /^(\S+_sum\S*) (\S+)$/.exec(x);
    const my = /^(\S+_sum\S*) (\S+)$/.exec(y);
    if (!mx || !my || mx[1] !== my[1]) return false;
    const vx = Number(mx[2]);
    const vy = Number(my[2]);
    if (Math.abs(vx - vy) > 1e-9 * Math.max(1, Math.abs(vy))) return false;
  }
  return true;
}

t.test('a bound histogram shows in the exposition exactly as the same observations made with observe()', async (t) => {
  const values = fc.array(fc.oneof(fc.double({ min: 0, max: 20, noNaN: true }), fc.constantFrom(0, 0.005, 0.01, 1, 10, 11, -1)), { maxLength: 60 });
  await fc.assert(fc.asyncProperty(values, values, fc.boolean(), async (a, b, plainFirst) => {
    const bound = createMetrics({ defaultMetrics: false });
    const plain = createMetrics({ defaultMetrics: false });
    const latency = boundHistogram(bound.submitLatencySeconds, { account: 'cn-mobile' });
    const toSubmit = boundHistogram(bound.acceptToSubmitSeconds, {});
    if (plainFirst) for (const v of b) bound.submitLatencySeconds.observe({ account: 'cn-mobile' }, v);
    for (const v of a) {
      latency.observe(v);
      toSubmit.observe(v);
      plain.submitLatencySeconds.observe({ account: 'cn-mobile' }, v);
      plain.acceptToSubmitSeconds.observe(v);
    }
    if (!plainFirst) for (const v of b) bound.submitLatencySeconds.observe({ account: 'cn-mobile' }, v);
    for (const v of b) plain.submitLatencySeconds.observe({ account: 'cn-mobile' }, v);
    const want = await plain.registry.metrics();
    // Read twice: what was merged is not merged again.
    for (let read = 0; read < 2; read++) {
      const got = await bound.registry.metrics();
      if (!sameExposition(got, want)) throw new Error(`differs:\n${got}\n---\n${want}`);
    }
  }), { numRuns: 200 });
  t.pass('same exposition');
});

t.test('a bound histogram refuses what observe() refuses, and a label set never observed is no series', async (t) => {
  const m = createMetrics({ defaultMetrics: false });
  const h = boundHistogram(m.submitLatencySeconds, { account: 'a' });
  boundHistogram(m.submitLatencySeconds, { account: 'never' });
  t.throws(() => h.observe(Number.NaN));
  t.throws(() => h.observe(Infinity));
  h.observe(0.2);
  const text = await m.registry.metrics();
  t.match(text, /smsgw_smpp_submit_latency_seconds_count\{account="a"\} 1\n/);
  t.notMatch(text, /account="never"/);
});
