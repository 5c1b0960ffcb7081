import t from 'tap';
import { TokenBucket } from '../../src/core/token-bucket.js';

t.test('grants the burst, then waits for the refill', async (t) => {
  let now = 1_000;
  const b = new TokenBucket(10, 3, () => now); // 10/s = one token per 100 ms
  t.equal(b.tryTake(), 0);
  t.equal(b.tryTake(), 0);
  t.equal(b.tryTake(), 0);
  t.equal(b.tryTake(), 100, 'empty: one token is 100 ms away');
  now += 40;
  t.equal(b.tryTake(), 60, 'partly refilled');
  now += 60;
  t.equal(b.tryTake(), 0, 'granted once the token is there');
  now += 10_000;
  t.equal(b.available(), 3, 'refill is capped at the burst');
});

t.test('taking several tokens at once', async (t) => {
  let now = 0;
  const b = new TokenBucket(100, 10, () => now);
  t.equal(b.tryTake(8), 0);
  t.equal(b.tryTake(5), 30, 'two left, three more needed at 100/s');
  t.equal(b.available(), 2, 'a refused take takes nothing');
  now += 30;
  t.equal(b.tryTake(5), 0);
  t.equal(b.tryTake(50), 100, 'more than the burst is clamped to the burst (10 tokens = 100 ms)');
});

t.test('rate 0 is unlimited', async (t) => {
  const b = new TokenBucket(0, 1, () => 0);
  t.equal(b.unlimited, true);
  for (let i = 0; i < 1000; i++) if (b.tryTake() !== 0) t.fail('refused');
  t.equal(b.available(), Infinity);
});

t.test('a clock stepping backwards neither mints nor loses tokens', async (t) => {
  let now = 5_000;
  const b = new TokenBucket(1, 1, () => now);
  t.equal(b.tryTake(), 0);
  now = 1_000;
  t.equal(b.tryTake(), 1000, 'no token from going back in time');
  now = 2_000;
  t.equal(b.tryTake(), 0, 'refills from the new reading');
});

t.test('fractional rates round the wait up', async (t) => {
  let now = 0;
  const b = new TokenBucket(3, 1, () => now);
  t.equal(b.tryTake(), 0);
  const wait = b.tryTake();
  t.equal(wait, 334, 'ceil(1000/3)');
  now += wait;
  t.equal(b.tryTake(), 0, 'sleeping the answer is enough');
});
