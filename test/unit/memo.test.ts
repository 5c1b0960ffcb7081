/**
 * StringMemo against a reference model: every answer is the function's, the
 * memo never holds more than its bound, the function runs only for keys the
 * model says are not held (cleared when full), and the memo is listed by
 * name for the metrics catalogue.
 */
import t from 'tap';
import fc from 'fast-check';
import { memos, StringMemo } from '../../src/core/memo.js';

t.test('answers, bound and calls match a model of "cleared when full"', async (t) => {
  let n = 0;
  t.doesNotThrow(() => fc.assert(fc.property(fc.integer({ min: 1, max: 8 }), fc.array(fc.string({ maxLength: 3 }), { maxLength: 200 }), (max, keys) => {
    let calls = 0;
    const f = (k: string): string | undefined => {
      calls++;
      return k.length % 2 === 0 ? undefined : `v:${k}`; // undefined is a value too
    };
    const memo = new StringMemo(`test-${n++}`, max, f);
    const model = new Set<string>();
    let modelCalls = 0;
    for (const k of keys) {
      if (memo.get(k) !== f(k)) throw new Error(`wrong answer for ${k}`);
      calls--; // the check's own call
      if (!model.has(k)) {
        modelCalls++;
        if (model.size >= max) model.clear();
        model.add(k);
      }
      if (memo.size > max) throw new Error('over its bound');
      if (memo.size !== model.size) throw new Error(`size ${memo.size}, model ${model.size}`);
    }
    if (calls !== modelCalls) throw new Error(`computed ${calls} times, model ${modelCalls}`);
  })));
});

t.test('every memo is listed by name with its size; a bound below 1 is refused', async (t) => {
  const m = new StringMemo('listed', 4, (k) => k.length);
  m.get('a');
  m.get('bb');
  t.equal(memos().get('listed')?.size, 2);
  t.throws(() => new StringMemo('bad', 0, (k) => k), RangeError);
});
