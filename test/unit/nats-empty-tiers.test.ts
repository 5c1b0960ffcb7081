/**
 * EmptyTiers (src/queue/nats/empty-tiers.ts): when a no-wait fetch may skip
 * the pull. Clock injected; no server.
 */
import t from 'tap';
import { EmptyTiers } from '../../src/queue/nats/empty-tiers.js';

function tiers(recheckMs = 100): { e: EmptyTiers; advance: (ms: number) => void } {
  let now = 1_000;
  const e = new EmptyTiers(new Set(['urgent', 'bulk']), recheckMs, () => now);
  return { e, advance: (ms) => (now += ms) };
}

t.test('unknown until a pull finds the tier drained; then empty until recheckMs pass', async (t) => {
  const { e, advance } = tiers(100);
  t.equal(e.knownEmpty('urgent'), false, 'nothing known at first');
  e.drained('urgent', e.mark('urgent'));
  t.equal(e.knownEmpty('urgent'), true, 'drained');
  t.equal(e.knownEmpty('bulk'), false, 'other tiers unaffected');
  advance(99);
  t.equal(e.knownEmpty('urgent'), true, 'still within recheckMs');
  advance(1);
  t.equal(e.knownEmpty('urgent'), false, 'pulled again after recheckMs');
});

t.test('an announcement clears it, also one that came while the pull was on its way', async (t) => {
  const { e } = tiers();
  e.drained('urgent', e.mark('urgent'));
  e.maybeWork('urgent');
  t.equal(e.knownEmpty('urgent'), false, 'work announced');
  const mark = e.mark('urgent');
  e.maybeWork('urgent'); // stored after the server looked: the 404 that follows says nothing about it
  e.drained('urgent', mark);
  t.equal(e.knownEmpty('urgent'), false, 'a pull older than the announcement does not mark it empty');
  e.drained('urgent', e.mark('urgent'));
  t.equal(e.knownEmpty('urgent'), true, 'a newer pull does');
});

t.test('forget clears every tier; unknown tiers are ignored', async (t) => {
  const { e } = tiers();
  e.drained('urgent', e.mark('urgent'));
  e.drained('bulk', e.mark('bulk'));
  e.forget();
  t.equal(e.knownEmpty('urgent'), false);
  t.equal(e.knownEmpty('bulk'), false);
  e.maybeWork('nope');
  e.drained('nope', e.mark('nope'));
  t.equal(e.knownEmpty('nope'), false, 'a tier outside the configuration is never remembered');
});
