import t from 'tap';
import { SeenNumbers, numberTail } from '../../src/directory/expansion.js';

t.test('numberTail: the last nine digits as an integer, the channel letter ignored', async (t) => {
  t.equal(numberTail('s8613800138000'), 800138000);
  t.equal(numberTail('p8613800138000'), 800138000);
  t.equal(numberTail('s4420794601'), 420794601, 'a shorter international number');
  t.equal(numberTail('b12345678'), 12345678, 'fewer than nine digits: all of them');
});

t.test('SeenNumbers agrees with a Set on 200,000 adds full of repeats and tail clashes', async (t) => {
  const seen = new SeenNumbers(16); // starts tiny: growth is exercised many times
  const reference = new Set<string>();
  let a = 12345;
  let disagreements = 0;
  for (let k = 0; k < 200_000; k++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    // 40,000 distinct tails, each under 1 of 5 prefixes (13x … 17x): repeats and clashes alike.
    const tail = String(100_000_000 + (a % 40_000) * 7).slice(-8);
    const mobile = `861${3 + ((a >>> 16) % 5)}8${tail}`;
    const packed = `${'spb'[(a >>> 8) % 3]}${mobile}`;
    const fresh = !reference.has(mobile);
    reference.add(mobile);
    if (seen.add(packed, numberTail(packed)) !== fresh) disagreements++;
  }
  t.equal(disagreements, 0, 'the same answer for every add (a number is seen once, whatever its channel letter)');
  t.equal(seen.size, reference.size, `${reference.size} distinct numbers`);
  t.ok(reference.size > 100_000, 'the fixture has many distinct numbers');
});
