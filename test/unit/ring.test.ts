import t from 'tap';
import { RingBuffer } from '../../src/core/ring.js';

t.test('FIFO order, capacity bound and wrap-around', async (t) => {
  const r = new RingBuffer<number>(3, 1);
  t.equal(r.length, 0);
  t.equal(r.shift(), undefined, 'shift on empty');
  t.equal(r.peek(), undefined, 'peek on empty');
  t.ok(r.push(1));
  t.ok(r.push(2));
  t.ok(r.push(3));
  t.equal(r.isFull, true);
  t.equal(r.push(4), false, 'push on a full ring is refused');
  t.equal(r.length, 3, 'nothing stored by the refused push');
  t.equal(r.peek(), 1);
  t.equal(r.shift(), 1);
  t.ok(r.push(4), 'room again after a shift');
  t.same([...r], [2, 3, 4], 'iteration from head to tail across the wrap');
  t.equal(r.at(0), 2);
  t.equal(r.at(2), 4);
  t.equal(r.at(3), undefined);
  t.equal(r.shift(), 2);
  t.equal(r.shift(), 3);
  t.equal(r.shift(), 4);
  t.equal(r.shift(), undefined);
  t.equal(r.isEmpty, true);
});

t.test('unshift puts an item back at the head', async (t) => {
  const r = new RingBuffer<string>(4);
  r.push('b');
  r.push('c');
  t.ok(r.unshift('a'));
  t.same([...r], ['a', 'b', 'c']);
  t.ok(r.unshift('z'));
  t.equal(r.unshift('y'), false, 'unshift respects the capacity');
  t.same([...r], ['z', 'a', 'b', 'c']);
});

t.test('storage grows lazily up to the capacity and keeps order', async (t) => {
  const r = new RingBuffer<number>(1000, 2);
  // interleave shifts so the head is not at slot 0 when growing
  let next = 0;
  let expect = 0;
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 20 && !r.isFull; i++) r.push(next++);
    for (let i = 0; i < 5; i++) t.equal(r.shift(), expect++);
  }
  t.equal(r.length, next - expect);
  let ok = true;
  for (const v of r) if (v !== expect++) ok = false;
  t.ok(ok, 'every item in order after many growths');
});

t.test('removeWhere keeps order and returns the removed items', async (t) => {
  const r = new RingBuffer<number>(8, 8);
  for (let i = 0; i < 6; i++) r.push(i);
  r.shift();
  r.shift(); // head moved: 2..5
  r.push(6);
  r.push(7);
  r.push(8);
  r.push(9); // wraps
  const removed = r.removeWhere((n) => n % 2 === 1);
  t.same(removed, [3, 5, 7, 9]);
  t.same([...r], [2, 4, 6, 8]);
  t.ok(r.push(10));
  t.same([...r], [2, 4, 6, 8, 10]);
});

t.test('clear empties the ring; bad capacity is refused', async (t) => {
  const r = new RingBuffer<number>(2);
  r.push(1);
  r.clear();
  t.equal(r.length, 0);
  t.equal(r.shift(), undefined);
  t.throws(() => new RingBuffer<number>(0), RangeError);
  t.throws(() => new RingBuffer<number>(1.5), RangeError);
});
