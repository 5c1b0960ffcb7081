/**
 * The receipt store's positional row encodings (src/receipts/row-codec.ts),
 * through a real LMDB environment:
 *  - property: any message, recipient (with earlier attempts) and callback
 *    row reads back equal to what was written, with the same fields present;
 *  - rows written by the previous format (lmdb-js's msgpack with inline
 *    records, as every version before this one wrote them) read back
 *    unchanged through the new encoding, alone and inside range reads;
 *  - the new rows carry no record definitions and are no larger than the old.
 */
import t from 'tap';
import fc from 'fast-check';
import type { Database } from 'lmdb';
import { unpack } from 'msgpackr';
import { FINAL_STATES, RECIPIENT_STATES } from '../../src/core/message.js';
import type { StoredAttempt, StoredMessage, StoredRecipient, StoredSegment } from '../../src/receipts/records.js';
import { CALLBACK_ROW, MESSAGE_ROW, openRowDatabase, RECIPIENT_ROW, type RowShape } from '../../src/receipts/row-codec.js';
import { tempEnv } from '../support/temp-env.js';
import type { CallbackState } from '../../src/receipts/store.js';

const str = fc.string({ maxLength: 24 });
const time = fc.integer({ min: 0, max: 4_102_444_800_000 });
const segState = fc.constantFrom('pending', 'submitted', 'delivered', 'undeliverable', 'expired', 'rejected', 'failed') as fc.Arbitrary<StoredSegment['s']>;

const segmentArb: fc.Arbitrary<StoredSegment> = fc.record(
  { s: segState, c: str, o: str, t: time, d: time, e: str },
  { requiredKeys: ['s'] },
);
const attemptArb: fc.Arbitrary<StoredAttempt> = fc.record(
  { g: fc.array(segmentArb, { minLength: 1, maxLength: 4 }), s: fc.constantFrom(...FINAL_STATES), e: str, u: time },
  { requiredKeys: ['g', 's', 'u'] },
);
const recipientArb: fc.Arbitrary<StoredRecipient> = fc.record(
  {
    n: str, s: fc.constantFrom(...RECIPIENT_STATES), a: time, u: time, g: fc.array(segmentArb, { minLength: 1, maxLength: 10 }),
    e: str, r: str, p: fc.array(attemptArb, { minLength: 1, maxLength: 3 }),
  },
  { requiredKeys: ['n', 's', 'a', 'u', 'g'] },
);
const messageArb: fc.Arbitrary<StoredMessage> = fc.record(
  {
    t: str, r: str, c: fc.constantFrom('sms', 'pda'), n: fc.constantFrom('gsm7', 'ucs2'), s: fc.integer({ min: 1, max: 10 }),
    k: fc.integer({ min: 0, max: 500_000 }), a: time, x: time, g: str, f: str, i: str, u: str, p: str, v: str,
    w: fc.integer({ min: 0, max: 3 }), h: str,
  },
  { requiredKeys: ['t', 'r', 'c', 'n', 's', 'k', 'a', 'x'] },
);
const callbackArb: fc.Arbitrary<CallbackState> = fc.record(
  { state: fc.constantFrom('waiting', 'failed'), attempts: fc.nat(20), nextAt: time, completedAt: time, lastError: str },
  { requiredKeys: ['state', 'attempts', 'nextAt'] },
);

interface Case<T> {
  readonly name: string;
  readonly shape: RowShape<T>;
  readonly arb: fc.Arbitrary<T>;
}
const CASES: readonly Case<unknown>[] = [
  { name: 'recipient', shape: RECIPIENT_ROW, arb: recipientArb },
  { name: 'message', shape: MESSAGE_ROW, arb: messageArb },
  { name: 'callback', shape: CALLBACK_ROW, arb: callbackArb },
];

for (const c of CASES) {
  t.test(`${c.name} rows: new rows and rows of the previous format read back as written`, async (t) => {
    const env = tempEnv(t);
    const name = `rows.${c.name}`;
    const old: Database<unknown, number> = env.openDB({ name, encoding: 'msgpack' });
    const positional: Database<unknown, number> = openRowDatabase(env, name, c.shape);
    let key = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(c.arb, fc.boolean()), { minLength: 1, maxLength: 8 }), async (rows) => {
        const keys: number[] = [];
        await env.transaction(() => {
          for (const [row, asOld] of rows) {
            const k = key++;
            keys.push(k);
            (asOld ? old : positional).putSync(k, row);
          }
        });
        rows.forEach(([row], i) => t.same(positional.get(keys[i] as number), row, `point read ${keys[i]}`));
        const ranged = [...positional.getRange({ start: keys[0], end: (keys[keys.length - 1] as number) + 1 })].map((e) => e.value);
        t.same(ranged, rows.map(([row]) => row), 'range read');
        // Exactly the fields written: none added (undefined vs absent matters to spreads and `in`).
        rows.forEach(([row], i) => t.same(Object.keys(positional.get(keys[i] as number) as object).sort(), Object.keys(row as object).sort()));
      }),
      { numRuns: 150 },
    );
  });
}

t.test('a 3-part recipient row: positional, no record definitions, no larger than the old encoding', async (t) => {
  const env = tempEnv(t);
  const old = env.openDB<StoredRecipient, number>({ name: 'rows.size', encoding: 'msgpack' });
  const positional = openRowDatabase<StoredRecipient, number>(env, 'rows.size2', RECIPIENT_ROW);
  const at = 1_765_000_000_000;
  const row: StoredRecipient = { n: '8613800138000', s: 'delivered', a: at, u: at + 90, g: [1, 2, 3].map((i) => ({ s: 'delivered' as const, c: 'cmcc-1', o: `${1_000_000 + i}`, t: at + 10, d: at + 80 })) };
  await old.put(1, row);
  await positional.put(1, row);
  const oldBytes = old.getBinary(1) as Buffer;
  const newBytes = positional.getBinary(1) as Buffer;
  t.ok(newBytes.length <= oldBytes.length, `${newBytes.length} <= ${oldBytes.length} bytes`);
  t.equal(newBytes[0], 0x95, 'a five-element msgpack array');
  // Read as plain msgpack: the tuple itself, parts as tuples (a record definition would read as an object).
  t.same(unpack(newBytes), ['8613800138000', 'delivered', at, at + 90, [1, 2, 3].map((i) => ['delivered', 'cmcc-1', `${1_000_000 + i}`, at + 10, at + 80])]);
  t.same(positional.get(1), row);
});
