/**
 * MessageTemplate (codec.ts): a MESSAGE frame encoded once and re-stamped
 * per device must be byte for byte what encodeFrame gives for each device's
 * whole frame, whatever was stamped into the shared bytes before; and it
 * refuses what encodeFrame refuses.
 */
import t from 'tap';
import fc from 'fast-check';
import { MAX_SENDER_UNIT_BYTES, MessageTemplate, decodeFrame, encodeFrame, type MessageFrame } from '../../src/pda/codec.js';

const SEED = 20251122;
const seq1 = fc.integer({ min: 1, max: 0xffff_ffff });
const time = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const utf8Within = (maxBytes: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: 'binary', maxLength }).filter((s) => Buffer.byteLength(s, 'utf8') <= maxBytes);

const text = fc.record({
  priority: fc.integer({ min: 0, max: 2 }),
  createdAt: time,
  expiresAt: time,
  messageId: fc.stringMatching(/^[!-~]{1,64}$/),
  classification: fc.stringMatching(/^[a-z0-9-]{0,32}$/),
  senderUnit: utf8Within(MAX_SENDER_UNIT_BYTES, 40),
  body: fc.oneof(utf8Within(4096, 300), fc.constant('【市公安局指挥中心】全体值班警员：今晚22:00起全市开展夜间巡逻。')),
});
/** Per-device fields: seq, floor ≤ seq, redelivery. */
const stamp = seq1.chain((seq) => fc.record({ seq: fc.constant(seq), floor: fc.integer({ min: 1, max: seq }), redelivery: fc.boolean() }));

t.test('every stamp equals the whole frame encoded on its own, in any order of stamps', async () => {
  fc.assert(
    fc.property(text, fc.array(stamp, { minLength: 1, maxLength: 8 }), (m, stamps) => {
      const template = new MessageTemplate({ type: 'message', ...m });
      return stamps.every((s) => {
        const expected = encodeFrame({ type: 'message', ...m, ...s });
        const got = template.stamp(s.seq, s.floor, s.redelivery);
        const decoded = decodeFrame(got);
        return got.equals(expected) && decoded.ok && (decoded.frame as MessageFrame).seq === s.seq;
      });
    }),
    { seed: SEED, numRuns: 1500 },
  );
});

t.test('out-of-bound fields are refused like encodeFrame refuses them', async (t) => {
  const template = new MessageTemplate({
    type: 'message', priority: 2, createdAt: 1, expiresAt: 2, messageId: 'M1', classification: 'police', senderUnit: 'u', body: '收到请确认',
  });
  t.throws(() => template.stamp(0, 1, false), { code: 'PDA_FRAME_INVALID' }, 'seq 0');
  t.throws(() => template.stamp(5, 6, false), { code: 'PDA_FRAME_INVALID' }, 'floor above seq');
  t.throws(() => template.stamp(2 ** 32, 1, false), { code: 'PDA_FRAME_INVALID' }, 'seq over u32');
  t.throws(() => new MessageTemplate({ type: 'message', priority: 3, createdAt: 1, expiresAt: 2, messageId: 'M1', classification: 'x', senderUnit: '', body: '' }), { code: 'PDA_FRAME_INVALID' });
  t.throws(() => new MessageTemplate({ type: 'message', priority: 0, createdAt: 1, expiresAt: 2, messageId: 'M1', classification: 'x', senderUnit: '', body: '\ud800' }), { code: 'PDA_FRAME_INVALID' }, 'lone surrogate');
  t.same(template.stamp(7, 3, true), encodeFrame({
    type: 'message', seq: 7, floor: 3, redelivery: true, priority: 2, createdAt: 1, expiresAt: 2, messageId: 'M1', classification: 'police', senderUnit: 'u', body: '收到请确认',
  }), 'a failed stamp left the template usable');
});
