import t from 'tap';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import {
  CLOSE_REASON,
  FRAME_TYPE,
  HEADER_BYTES,
  MAX_ACK_LIST,
  MAX_BODY_BYTES,
  MAX_FRAME_BYTES,
  MAX_SENDER_UNIT_BYTES,
  decodeFrame,
  encodeFrame,
  closeText,
  type Frame,
} from '../../src/pda/codec.js';

const SEED = 20240601;

/** Frames compared as plain data (typed arrays as hex). */
function plain(f: Frame): unknown {
  return JSON.parse(JSON.stringify(f, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)));
}

function roundTrips(f: Frame): boolean {
  const bytes = encodeFrame(f);
  const r = decodeFrame(bytes);
  return r.ok && isDeepStrictEqual(plain(r.frame), plain(f)) && bytes.length <= MAX_FRAME_BYTES;
}

// ------------------------------------------------------------------ arbitraries (the spec's bounds)

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const seq1 = fc.integer({ min: 1, max: 0xffff_ffff });
const time = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const deviceId = fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/);
const messageId = fc.stringMatching(/^[!-~]{1,64}$/);
const classification = fc.stringMatching(/^[a-z0-9-]{0,32}$/);
const utf8Within = (maxBytes: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: 'binary', maxLength }).filter((s) => Buffer.byteLength(s, 'utf8') <= maxBytes);
const increasing = (above: number, max: number): fc.Arbitrary<number[]> =>
  fc.uniqueArray(fc.integer({ min: above + 1, max: 0xffff_ffff }), { maxLength: max }).map((a) => a.sort((x, y) => x - y));

const hello = fc.record({ type: fc.constant('hello' as const), version: fc.integer({ min: 1, max: 0xffff }), deviceId, lastAck: u32 });
const challenge = fc.record({
  type: fc.constant('challenge' as const), version: fc.integer({ min: 1, max: 0xffff }), ttlMs: u32, nonce: fc.uint8Array({ minLength: 32, maxLength: 32 }),
});
const response = fc.record({ type: fc.constant('response' as const), mac: fc.uint8Array({ minLength: 32, maxLength: 32 }) });
const welcome = fc.record({
  type: fc.constant('welcome' as const), floor: seq1, backlog: u32, heartbeatSec: fc.integer({ min: 0, max: 0xffff }), serverTime: time,
});
const message = seq1.chain((seq) =>
  fc.record({
    type: fc.constant('message' as const),
    seq: fc.constant(seq),
    redelivery: fc.boolean(),
    floor: fc.integer({ min: 1, max: seq }),
    priority: fc.integer({ min: 0, max: 2 }),
    createdAt: time,
    expiresAt: time,
    messageId,
    classification,
    senderUnit: utf8Within(MAX_SENDER_UNIT_BYTES, 40),
    body: fc.oneof(utf8Within(MAX_BODY_BYTES, 300), fc.constant('警情通报：'.repeat(1000)).map((s) => s.slice(0, 5000))),
  }),
);
const ack = u32.chain((cumulative) =>
  fc.record({ type: fc.constant('ack' as const), cumulative: fc.constant(cumulative), selective: cumulative === 0xffff_ffff ? fc.constant([]) : increasing(cumulative, 40) }),
);
const read = fc.record({ type: fc.constant('read' as const), seqs: increasing(0, 40).filter((a) => a.length > 0) });
const ping = fc.record({ type: fc.constant('ping' as const), token: u32 });
const pong = fc.record({ type: fc.constant('pong' as const), token: u32 });
const close = fc.record({ type: fc.constant('close' as const), reason: fc.integer({ min: 0, max: 99 }), text: utf8Within(120, 60) });
const anyFrame: fc.Arbitrary<Frame> = fc.oneof(hello, challenge, response, welcome, message, ack, read, ping, pong, close);

// ------------------------------------------------------------------ tests

t.test('golden bytes pin the header layout of the spec', async (t) => {
  t.equal(encodeFrame({ type: 'ping', token: 7 }).toString('hex'), '20' + '00' + '00000007' + '00000000');
  t.equal(encodeFrame({ type: 'hello', version: 1, deviceId: 'pda-1', lastAck: 42 }).toString('hex'),
    '01' + '00' + '0000002a' + '00000008' + '0001' + '05' + Buffer.from('pda-1').toString('hex'));
  t.equal(encodeFrame({ type: 'ack', cumulative: 3, selective: [5, 9] }).toString('hex'),
    '11' + '00' + '00000003' + '0000000a' + '0002' + '00000005' + '00000009');
  const m = encodeFrame({
    type: 'message', seq: 9, redelivery: true, floor: 4, priority: 2, createdAt: 1, expiresAt: 2 ** 40,
    messageId: 'M1', classification: 'police', senderUnit: '交警', body: '集合',
  });
  t.equal(m[0], FRAME_TYPE.MESSAGE);
  t.equal(m[1], 0x01, 'redelivery flag');
  t.equal(m.readUInt32BE(2), 9, 'seq in the header');
  t.equal(m.readUInt32BE(6), m.length - HEADER_BYTES, 'length');
  t.equal(m.readUInt32BE(10), 4, 'floor first in the payload');
  t.equal(m[14], 2, 'priority');
  t.equal(m.readUInt32BE(23) * 2 ** 32 + m.readUInt32BE(27), 2 ** 40, 'expiresAt u64');
});

t.test('one example of every frame type round-trips', async (t) => {
  const examples: Frame[] = [
    { type: 'hello', version: 1, deviceId: 'pda.0001:A_b-c', lastAck: 0 },
    { type: 'challenge', version: 1, ttlMs: 10_000, nonce: new Uint8Array(32).fill(7) },
    { type: 'response', mac: new Uint8Array(32).fill(9) },
    { type: 'welcome', floor: 1, backlog: 3, heartbeatSec: 30, serverTime: Date.now() },
    { type: 'message', seq: 1, redelivery: false, floor: 1, priority: 0, createdAt: 0, expiresAt: Number.MAX_SAFE_INTEGER, messageId: '01J!~', classification: '', senderUnit: '', body: '' },
    { type: 'ack', cumulative: 0, selective: [1, 2, 0xffff_ffff] },
    { type: 'read', seqs: [4] },
    { type: 'ping', token: 0 },
    { type: 'pong', token: 0xffff_ffff },
    { type: 'close', reason: CLOSE_REASON.AUTH_FAILED, text: '认证失败' },
  ];
  for (const f of examples) t.ok(roundTrips(f), `${f.type} round-trips`);
});

t.test('property: every valid frame round-trips (decode ∘ encode = id)', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(anyFrame, roundTrips), { seed: SEED, numRuns: 3000 }), '3000 frames');
});

t.test('property: arbitrary bytes never make the decoder throw; what decodes is canonical', async (t) => {
  let accepted = 0;
  t.doesNotThrow(() => fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const r = decodeFrame(bytes);
      if (!r.ok) return typeof r.reason === 'number' && r.detail.length > 0;
      accepted++;
      return Buffer.compare(encodeFrame(r.frame), Buffer.from(bytes)) === 0;
    }),
    { seed: SEED, numRuns: 5000 },
  ), '5000 byte strings: refused with a reason, or decoded canonically');
  t.comment(`${accepted} of the 5000 byte strings happened to be frames`);
});

t.test('property: mutated valid frames never make the decoder throw; what decodes is canonical', async (t) => {
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  );
  let accepted = 0;
  let refused = 0;
  fc.assert(
    fc.property(anyFrame, fc.array(mutation, { minLength: 1, maxLength: 4 }), (f, ms) => {
      let b = Buffer.from(encodeFrame(f));
      for (const m of ms) {
        if (m.kind === 'flip' && b.length > 0) b[m.at % b.length]! ^= 1 << m.bit;
        else if (m.kind === 'set' && b.length > 0) b[m.at % b.length] = m.value;
        else if (m.kind === 'truncate') b = b.subarray(0, m.at % (b.length + 1));
        else if (m.kind === 'extend') b = Buffer.concat([b, m.extra]);
      }
      const r = decodeFrame(b);
      if (!r.ok) {
        refused++;
        return r.detail.length > 0;
      }
      accepted++;
      return Buffer.compare(encodeFrame(r.frame), b) === 0;
    }),
    { seed: SEED, numRuns: 5000 },
  );
  t.ok(refused > 0 && accepted > 0, `both outcomes exercised (${accepted} still valid, ${refused} refused)`);
});

t.test('each malformation is refused with the reason the spec gives', async (t) => {
  const ping = encodeFrame({ type: 'ping', token: 1 });
  const expect = (bytes: Uint8Array, reason: number, what: string, limit?: number): void => {
    const r = decodeFrame(bytes, limit);
    t.equal(r.ok, false, what);
    if (!r.ok) t.equal(r.reason, reason, `${what}: reason ${r.reason} (${r.detail})`);
  };
  expect(Buffer.alloc(5), CLOSE_REASON.PROTOCOL_ERROR, 'shorter than the header');
  const unknown = Buffer.from(ping);
  unknown[0] = 0x7f;
  expect(unknown, CLOSE_REASON.UNKNOWN_FRAME, 'unknown type');
  expect(Buffer.alloc(5000), CLOSE_REASON.FRAME_TOO_LARGE, 'over the receiver limit', 4096);
  expect(Buffer.alloc(MAX_FRAME_BYTES + 1), CLOSE_REASON.FRAME_TOO_LARGE, 'over the protocol limit', 1 << 20);
  const len = Buffer.from(ping);
  len.writeUInt32BE(1, 6);
  expect(len, CLOSE_REASON.PROTOCOL_ERROR, 'length field ≠ payload');
  const flags = Buffer.from(ping);
  flags[1] = 0x01;
  expect(flags, CLOSE_REASON.PROTOCOL_ERROR, 'reserved flag on a non-message frame');
  const readSeq = Buffer.from(encodeFrame({ type: 'read', seqs: [1] }));
  readSeq.writeUInt32BE(5, 2);
  expect(readSeq, CLOSE_REASON.PROTOCOL_ERROR, 'seq must be 0 on READ');
  const badUtf8 = Buffer.from(encodeFrame({ type: 'close', reason: 0, text: 'ab' }));
  badUtf8[13] = 0xff;
  expect(badUtf8, CLOSE_REASON.PROTOCOL_ERROR, 'invalid UTF-8');
  const badId = Buffer.from(encodeFrame({ type: 'hello', version: 1, deviceId: 'abc', lastAck: 0 }));
  badId[13] = 0x20;
  expect(badId, CLOSE_REASON.PROTOCOL_ERROR, 'space in a device id');
  const msg = (over: Partial<Record<string, unknown>>): Buffer => {
    const b = Buffer.from(encodeFrame({ type: 'message', seq: 5, redelivery: false, floor: 5, priority: 1, createdAt: 1, expiresAt: 2, messageId: 'm', classification: 'police', senderUnit: 'u', body: 'b' }));
    if (over['floor'] !== undefined) b.writeUInt32BE(over['floor'] as number, 10);
    if (over['priority'] !== undefined) b[14] = over['priority'] as number;
    if (over['hiTime'] !== undefined) b.writeUInt32BE(over['hiTime'] as number, 15);
    if (over['flags'] !== undefined) b[1] = over['flags'] as number;
    return b;
  };
  expect(msg({ floor: 6 }), CLOSE_REASON.PROTOCOL_ERROR, 'floor above seq');
  expect(msg({ floor: 0 }), CLOSE_REASON.PROTOCOL_ERROR, 'floor 0');
  expect(msg({ priority: 3 }), CLOSE_REASON.PROTOCOL_ERROR, 'priority 3');
  expect(msg({ hiTime: 0x0020_0000 }), CLOSE_REASON.PROTOCOL_ERROR, 'time beyond 2^53');
  expect(msg({ flags: 0x02 }), CLOSE_REASON.PROTOCOL_ERROR, 'unknown message flag');
  const notIncreasing = Buffer.from(encodeFrame({ type: 'ack', cumulative: 1, selective: [3, 4] }));
  notIncreasing.writeUInt32BE(3, 16);
  expect(notIncreasing, CLOSE_REASON.PROTOCOL_ERROR, 'selective list not strictly increasing');
  const belowCumulative = Buffer.from(encodeFrame({ type: 'ack', cumulative: 1, selective: [3] }));
  belowCumulative.writeUInt32BE(9, 2);
  expect(belowCumulative, CLOSE_REASON.PROTOCOL_ERROR, 'selective entry at or below the cumulative ack');
  const big = Buffer.alloc(HEADER_BYTES + 2 + 4 * (MAX_ACK_LIST + 1));
  big[0] = FRAME_TYPE.ACK;
  big.writeUInt32BE(big.length - HEADER_BYTES, 6);
  big.writeUInt16BE(MAX_ACK_LIST + 1, 10);
  for (let i = 0; i <= MAX_ACK_LIST; i++) big.writeUInt32BE(i + 1, 12 + 4 * i);
  expect(big, CLOSE_REASON.PROTOCOL_ERROR, 'more than 512 selective entries');
  const emptyRead = Buffer.alloc(HEADER_BYTES + 2);
  emptyRead[0] = FRAME_TYPE.READ;
  emptyRead.writeUInt32BE(2, 6);
  expect(emptyRead, CLOSE_REASON.PROTOCOL_ERROR, 'empty READ');
  expect(Buffer.concat([ping, Buffer.of(0)]).fill(0, 6, 10).fill(1, 9, 10), CLOSE_REASON.PROTOCOL_ERROR, 'payload on PING');
  const closeReason = Buffer.from(encodeFrame({ type: 'close', reason: 0, text: '' }));
  closeReason.writeUInt16BE(100, 10);
  expect(closeReason, CLOSE_REASON.PROTOCOL_ERROR, 'close reason over 99');
});

t.test('encoding our own frame with a field out of bounds throws PDA_FRAME_INVALID', async (t) => {
  const bad: Frame[] = [
    { type: 'hello', version: 0, deviceId: 'a', lastAck: 0 },
    { type: 'hello', version: 1, deviceId: 'has space', lastAck: 0 },
    { type: 'hello', version: 1, deviceId: 'a', lastAck: -1 },
    { type: 'challenge', version: 1, ttlMs: 1, nonce: new Uint8Array(31) },
    { type: 'message', seq: 1, redelivery: false, floor: 2, priority: 0, createdAt: 0, expiresAt: 0, messageId: 'm', classification: '', senderUnit: '', body: '' },
    { type: 'message', seq: 1, redelivery: false, floor: 1, priority: 0, createdAt: 0, expiresAt: 0, messageId: 'm', classification: '', senderUnit: '', body: 'x'.repeat(MAX_BODY_BYTES + 1) },
    { type: 'message', seq: 1, redelivery: false, floor: 1, priority: 0, createdAt: 0, expiresAt: 0, messageId: 'm', classification: '', senderUnit: '', body: '\ud800' },
    { type: 'message', seq: 1, redelivery: false, floor: 1, priority: 0, createdAt: 0, expiresAt: 2 ** 53, messageId: 'm', classification: '', senderUnit: '', body: '' },
    { type: 'message', seq: 1, redelivery: false, floor: 1, priority: 0, createdAt: 0, expiresAt: 0, messageId: 'm', classification: 'Police', senderUnit: '', body: '' },
    { type: 'ack', cumulative: 5, selective: [5] },
    { type: 'ack', cumulative: 0, selective: Array.from({ length: MAX_ACK_LIST + 1 }, (_, i) => i + 1) },
    { type: 'read', seqs: [] },
    { type: 'close', reason: 100, text: '' },
    { type: 'close', reason: 0, text: 'x'.repeat(121) },
  ];
  for (const f of bad) {
    t.throws(() => encodeFrame(f), { name: 'GatewayError', code: 'PDA_FRAME_INVALID' }, `${f.type} refused`);
  }
});

t.test('closeText cuts to 120 UTF-8 bytes without splitting a character', async (t) => {
  const s = closeText('认'.repeat(100));
  t.ok(Buffer.byteLength(s) <= 120);
  t.equal(s, '认'.repeat(40));
  t.equal(closeText('ok'), 'ok');
  t.equal(closeText('a\ud800b'), 'a\ufffdb', 'lone surrogates replaced');
});
