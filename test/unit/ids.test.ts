import t from 'tap';
import { newMessageId, idempotentMessageId } from '../../src/send/ids.js';

t.test('message ids: 26 Crockford base32 characters, time-ordered, unique', async (t) => {
  const seen = new Set<string>();
  const malformed: string[] = [];
  let outOfOrder = 0;
  let last = '';
  for (let i = 0; i < 5000; i++) {
    const id = newMessageId(1_700_000_000_000 + i);
    if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) malformed.push(id);
    if (id <= last) outOfOrder++;
    last = id;
    seen.add(id);
  }
  t.same(malformed, [], 'every id is 26 Crockford base32 characters');
  t.equal(outOfOrder, 0, 'ids sort by time');
  t.equal(seen.size, 5000, 'no collisions across the random pool refills');
  const a = newMessageId(1_700_000_000_000);
  const b = newMessageId(1_700_000_000_000);
  t.not(a, b, 'same millisecond, different ids');
  // 48 time bits fill the first 9 characters (45 bits) and 3 bits of the 10th.
  t.equal(a.slice(0, 9), b.slice(0, 9), 'the time prefix is shared');
});

t.test('idempotent ids are derived from (tenant, key) and never look like time ids', async (t) => {
  t.equal(idempotentMessageId('oa', 'k1'), idempotentMessageId('oa', 'k1'));
  t.not(idempotentMessageId('oa', 'k1'), idempotentMessageId('bureau', 'k1'), 'per tenant');
  t.match(idempotentMessageId('oa', 'k1'), /^I[0-9A-HJKMNP-TV-Z]{25}$/);
});
