/**
 * The hand decoder of deliver_sm and the message_id answers (decodeIncoming)
 * against the smpp package's decoder (decodePdu), on generated PDUs: every
 * field and TLV the same, including short PDUs cut at any octet, strings
 * without their NUL, unknown and repeated TLVs, 8-bit octets in strings; and
 * where the package throws, so does the hand decoder. Also the framing
 * (PduReader): any split of a stream of PDUs into chunks gives the same PDUs
 * in order, and an impossible length is an error.
 */
import t from 'tap';
import fc from 'fast-check';
import { COMMAND_ID, decodeIncoming, decodePdu, PduReader, type IncomingPdu } from '../../src/smpp/wire.js';

const octet = fc.integer({ min: 0, max: 255 });
/** C-octet string contents: mostly printable, sometimes any octet but NUL. */
const cstr = (max: number): fc.Arbitrary<Uint8Array> => fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: max, min: 0x20, max: 0x7e }),
  fc.uint8Array({ minLength: 0, maxLength: max, min: 1, max: 255 }),
);
const withNul = (b: Uint8Array): number[] => [...b, 0];

/** TLVs: the ones receipts and MO use, a few others the package knows (with filters), unknown tags; lengths sometimes wrong. */
const tlv: fc.Arbitrary<number[]> = fc.oneof(
  cstr(64).map((b) => [0x00, 0x1e, ...u16(b.length + 1), ...withNul(b)]), // receipted_message_id
  cstr(8).map((b) => [0x00, 0x1e, ...u16(b.length), ...b]), // receipted_message_id without its NUL
  octet.map((v) => [0x04, 0x27, 0x00, 0x01, v]), // message_state
  fc.uint8Array({ minLength: 3, maxLength: 3 }).map((b) => [0x04, 0x23, 0x00, 0x03, ...b]), // network_error_code
  fc.uint8Array({ maxLength: 300 }).map((b) => [0x04, 0x24, ...u16(b.length), ...b]), // message_payload
  fc.integer({ min: 0, max: 0xffff }).map((v) => [0x02, 0x0c, 0x00, 0x02, ...u16(v)]), // sar_msg_ref_num
  octet.map((v) => [0x02, 0x0e, 0x00, 0x01, v]), // sar_total_segments
  octet.map((v) => [0x02, 0x0f, 0x00, 0x01, v]), // sar_segment_seqnum
  fc.uint8Array({ maxLength: 20 }).map((b) => [0x03, 0x81, ...u16(b.length), ...b]), // callback_num (a filter)
  fc.uint8Array({ maxLength: 20 }).map((b) => [0x02, 0x03, ...u16(b.length), ...b]), // source_subaddress
  fc.tuple(fc.integer({ min: 0x1400, max: 0x3fff }), fc.uint8Array({ maxLength: 12 })).map(([tag, b]) => [...u16(tag), ...u16(b.length), ...b]), // vendor/unknown
  fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 6 }), fc.integer({ min: 0, max: 12 })).map(([tag, b, len]) => [...u16(tag), ...u16(len), ...b]), // any tag, length that may lie
);

function u16(v: number): number[] {
  return [(v >> 8) & 0xff, v & 0xff];
}
function u32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

const deliverBody: fc.Arbitrary<number[]> = fc.record({
  service: cstr(5), ston: octet, snpi: octet, src: cstr(20), dton: octet, dnpi: octet, dst: cstr(20), esm: octet,
  pid: octet, prio: octet, sched: cstr(16), valid: cstr(16), reg: octet, rip: octet, dc: octet, def: octet,
  sm: fc.uint8Array({ maxLength: 254 }), tlvs: fc.array(tlv, { maxLength: 6 }),
}).map((f) => [
  ...withNul(f.service), f.ston, f.snpi, ...withNul(f.src), f.dton, f.dnpi, ...withNul(f.dst), f.esm, f.pid, f.prio,
  ...withNul(f.sched), ...withNul(f.valid), f.reg, f.rip, f.dc, f.def, f.sm.length, ...f.sm, ...f.tlvs.flat(),
]);
const respBody: fc.Arbitrary<number[]> = fc.oneof(
  fc.constant<number[]>([]),
  fc.tuple(cstr(64), fc.array(tlv, { maxLength: 2 })).map(([id, tlvs]) => [...withNul(id), ...tlvs.flat()]),
  cstr(10).map((id) => [...id]), // no NUL before the end
);

/** A whole PDU: header (command_length = its size) and a body, possibly cut short. */
const pdu: fc.Arbitrary<Buffer> = fc.tuple(
  fc.oneof(
    deliverBody.map((b) => [COMMAND_ID.deliver_sm, b] as const),
    respBody.map((b) => [COMMAND_ID.submit_sm_resp, b] as const),
    respBody.map((b) => [COMMAND_ID.deliver_sm_resp, b] as const),
  ),
  fc.oneof(octet.map(() => 0), fc.integer({ min: 0, max: 40 })),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
).map(([[id, body], cut, seq, status]) => {
  const kept = body.slice(0, Math.max(0, body.length - cut));
  return Buffer.from([...u32(16 + kept.length), ...u32(id), ...u32(status), ...u32(seq), ...kept]);
});

/**
 * Own fields of a decoded PDU, Buffers as hex, in a comparable form: the
 * fields that have a value, by name (the hand decoder gives every PDU of a
 * command one shape, fields it does not reach undefined, in a fixed order;
 * the package adds them as it reads them).
 */
function plain(p: IncomingPdu): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (typeof v === 'function' || v === undefined) continue;
    out[k] = Buffer.isBuffer(v) ? `hex:${v.toString('hex')}` : Array.isArray(v) ? v.map((x: unknown) => (Buffer.isBuffer(x) ? `hex:${x.toString('hex')}` : x)) : v;
  }
  return out;
}

function outcome(decode: (b: Buffer) => IncomingPdu, b: Buffer): { ok: Record<string, unknown> } | { threw: string } {
  try {
    return { ok: plain(decode(b)) };
  } catch (e) {
    return { threw: e instanceof Error ? e.constructor.name : typeof e };
  }
}

t.test('decodeIncoming gives what the package gives, on generated deliver_sm and message_id answers', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(pdu, (b) => {
    const ours = outcome(decodeIncoming, b);
    const theirs = outcome(decodePdu, b);
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) throw new Error(`differs on ${b.toString('hex')}:\n ours   ${JSON.stringify(ours)}\n theirs ${JSON.stringify(theirs)}`);
  }), { numRuns: 3000 }));
});

t.test('a receipt as SMSCs send it decodes to the fields the gateway reads', async (t) => {
  const text = Buffer.from('id:1000000001 sub:001 dlvrd:001 submit date:2612061200 done date:2612061201 stat:DELIVRD err:000 text:');
  const body = [
    0, 1, 1, ...Buffer.from('8613800138000'), 0, 1, 1, ...Buffer.from('106900'), 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0,
    text.length, ...text, 0x00, 0x1e, 0x00, 0x0b, ...Buffer.from('1000000001'), 0, 0x04, 0x27, 0x00, 0x01, 2,
  ];
  const b = Buffer.from([...u32(16 + body.length), ...u32(COMMAND_ID.deliver_sm), ...u32(0), ...u32(7), ...body]);
  const p = decodeIncoming(b) as IncomingPdu & Record<string, unknown>;
  t.equal(p.command, 'deliver_sm');
  t.equal(p.sequence_number, 7);
  t.equal(p['source_addr'], '8613800138000');
  t.equal(p['esm_class'], 0x04);
  t.equal(p['receipted_message_id'], '1000000001');
  t.equal(p['message_state'], 2);
  t.same(p['short_message'], text);
});

t.test('PduReader: any split of a stream into chunks gives the same PDUs in order', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(pdu, { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 30 }), (pdus, cuts) => {
    const stream = Buffer.concat(pdus);
    const got: string[] = [];
    const errors: Error[] = [];
    const reader = new PduReader((p) => got.push(JSON.stringify(plain(p))), (e) => errors.push(e));
    let o = 0;
    let i = 0;
    while (o < stream.length) {
      const n = cuts[i++ % cuts.length]!;
      reader.push(stream.subarray(o, o + n));
      o += n;
    }
    const want = pdus.map((b) => {
      try {
        return JSON.stringify(plain(decodePdu(b)));
      } catch {
        return 'threw';
      }
    });
    const firstThrow = want.indexOf('threw');
    if (firstThrow >= 0) {
      // A PDU the package cannot decode stops the session: the ones before it arrived, then the error.
      if (JSON.stringify(got) !== JSON.stringify(want.slice(0, firstThrow)) || errors.length !== 1) throw new Error('wrong PDUs before the error');
    } else if (JSON.stringify(got) !== JSON.stringify(want) || errors.length !== 0) {
      throw new Error(`got ${got.length} PDUs, ${errors.length} errors; wanted ${want.length}`);
    }
  }), { numRuns: 500 }));
});

t.test('PduReader: a length under the header or over the maximum is an error, and nothing after it is read', async (t) => {
  for (const length of [0, 15, 16_385, 0xffffffff]) {
    const got: unknown[] = [];
    const errors: Error[] = [];
    const reader = new PduReader((p) => got.push(p), (e) => errors.push(e));
    const ok = Buffer.from([...u32(16), ...u32(COMMAND_ID.enquire_link), ...u32(0), ...u32(1)]);
    reader.push(Buffer.concat([ok, Buffer.from(u32(length)), ok]));
    t.equal(got.length, 1, `length ${length}: the PDU before it`);
    t.equal(errors.length, 1, `length ${length}: one error`);
  }
});
