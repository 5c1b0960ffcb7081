/**
 * Per-recipient frequency cap (src/directory/frequency.ts) against a simple
 * reference model: sequences of charges (with redeliveries of the same
 * message), two hosts' rows, day changes and exempt tiers.
 */
import t from 'tap';
import fc from 'fast-check';
import { FrequencyCap, frequencyDecision } from '../../src/directory/frequency.js';
import { tempEnv } from '../support/temp-env.js';

t.test('frequencyDecision: a message already charged passes again; otherwise under the cap admits', async (t) => {
  t.equal(frequencyDecision(new Set(['a', 'b']), 'a', 2), 'again');
  t.equal(frequencyDecision(new Set(['a']), 'b', 2), 'admit');
  t.equal(frequencyDecision(new Set(['a', 'b']), 'c', 2), 'over');
  t.equal(frequencyDecision(new Set(), 'a', 0), 'over');
});

t.test('FrequencyCap matches the reference model over random charge sequences', async (t) => {
  const env = tempEnv(t);
  let now = Date.UTC(2026, 11, 6, 2, 0);
  const cap = new FrequencyCap({ env, perDay: 3, exemptTiers: new Set(['emergency']), utcOffsetMinutes: 480, now: () => now });
  const step = fc.record({
    tenant: fc.constantFrom('city', 'district'),
    tier: fc.constantFrom('routine', 'routine', 'emergency'),
    message: fc.integer({ min: 0, max: 12 }),
    numbers: fc.subarray(['8613800000001', '8613800000002', '8613800000003']),
    nextDay: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
  });
  let run = 0;
  await fc.assert(fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
    run++;
    // Reference: (day, tenant, number) → set of message ids.
    const model = new Map<string, Set<string>>();
    for (const s of steps) {
      if (s.nextDay) now += 86_400_000;
      const day = cap.dayOf(now);
      const id = `r${run}-m${s.message}`;
      const over = await cap.admit(s.tenant, s.tier, id, s.numbers);
      const want = new Set<string>();
      if (s.tier !== 'emergency') {
        for (const n of s.numbers) {
          const k = `${day}|${s.tenant}|${n}`;
          const ids = model.get(k) ?? new Set<string>();
          model.set(k, ids);
          if (ids.has(id)) continue;
          if (ids.size < 3) ids.add(id);
          else want.add(n);
        }
      }
      if ([...over].sort().join() !== [...want].sort().join()) return false;
    }
    now += 3 * 86_400_000; // the next run starts on a fresh day
    return true;
  }), { numRuns: 100 });
});

t.test('a day in China starts at 16:00 UTC; old days are swept', async (t) => {
  const env = tempEnv(t);
  let now = Date.UTC(2026, 11, 6, 15, 59);
  const cap = new FrequencyCap({ env, perDay: 1, exemptTiers: new Set(), utcOffsetMinutes: 480, now: () => now });
  t.same([...(await cap.admit('u', 'routine', 'm1', ['n']))], []);
  t.same([...(await cap.admit('u', 'routine', 'm2', ['n']))], ['n'], 'same local day: over');
  now += 60_000;
  t.same([...(await cap.admit('u', 'routine', 'm3', ['n']))], [], 'a new local day');
  now += 3 * 86_400_000;
  t.equal(await cap.sweepDays(2), 2, 'both old days swept');
});
