import t from 'tap';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import {
  COMMAND,
  FrameReader,
  HEADER_BYTES,
  MAX_PDU_BYTES,
  authenticatorIsmg,
  authenticatorSource,
  composeMsgId,
  decodePdu,
  decodeStatusReport,
  encodePdu,
  encodeStatusReport,
  msgIdParts,
  msgIdToString,
  reportBytes,
  timestampText,
  type CmppPdu,
  type CmppVersion,
  type StatusReport,
} from '../../src/cmpp/codec.js';
import { isGatewayError } from '../../src/core/errors.js';

const SEED = 20261206;
const VERSIONS: readonly CmppVersion[] = [2, 3];

function plain(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? `hex:${Buffer.from(x).toString('hex')}` : x)));
}

/** ASCII without NUL (NUL ends an octet string), at most `max` characters. */
const ascii = (max: number): fc.Arbitrary<string> => fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: max });
const octet = fc.integer({ min: 0, max: 255 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const msgId = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => v.toString(10));
const bytes = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength: max });

function pduArb(version: CmppVersion): fc.Arbitrary<CmppPdu> {
  const v3 = version === 3;
  const term = v3 ? 32 : 21;
  const seq = u32;
  return fc.oneof(
    fc.record({ command: fc.constant('connect' as const), sequenceId: seq, sourceAddr: ascii(6), authenticatorSource: fc.uint8Array({ minLength: 16, maxLength: 16 }), version: octet, timestamp: u32 }),
    fc.record({ command: fc.constant('connect_resp' as const), sequenceId: seq, status: v3 ? u32 : octet, authenticatorIsmg: fc.uint8Array({ minLength: 16, maxLength: 16 }), version: octet }),
    fc.record({ command: fc.constantFrom('terminate' as const, 'terminate_resp' as const, 'active_test' as const), sequenceId: seq }),
    fc.record({ command: fc.constant('active_test_resp' as const), sequenceId: seq, reserved: octet }),
    fc.record({ command: fc.constantFrom('submit_resp' as const, 'deliver_resp' as const), sequenceId: seq, msgId, result: v3 ? u32 : octet }),
    fc.record({
      command: fc.constant('submit' as const), sequenceId: seq, msgId, pkTotal: octet, pkNumber: octet, registeredDelivery: octet, msgLevel: octet,
      serviceId: ascii(10), feeUserType: octet, feeTerminalId: ascii(term), feeTerminalType: v3 ? octet : fc.constant(0), tpPid: octet, tpUdhi: octet, msgFmt: octet,
      msgSrc: ascii(6), feeType: ascii(2), feeCode: ascii(6), valIdTime: ascii(17), atTime: ascii(17), srcId: ascii(21),
      destTerminalIds: fc.array(ascii(term), { minLength: 1, maxLength: 100 }), destTerminalType: v3 ? octet : fc.constant(0), msgContent: bytes(255),
      linkId: v3 ? ascii(20) : fc.constant(''), reserve: v3 ? fc.constant('') : ascii(8),
    }),
    fc.record({
      command: fc.constant('deliver' as const), sequenceId: seq, msgId, destId: ascii(21), serviceId: ascii(10), tpPid: octet, tpUdhi: octet, msgFmt: octet,
      srcTerminalId: ascii(term), srcTerminalType: v3 ? octet : fc.constant(0), registeredDelivery: octet, msgContent: bytes(255),
      linkId: v3 ? ascii(20) : fc.constant(''), reserve: v3 ? fc.constant('') : ascii(8),
    }),
  );
}

t.test('every PDU round-trips in both versions (property)', async (t) => {
  for (const version of VERSIONS) {
    t.doesNotThrow(() => fc.assert(
      fc.property(pduArb(version), (pdu) => {
        const wire = encodePdu(pdu, version);
        if (wire.readUInt32BE(0) !== wire.length || wire.length > MAX_PDU_BYTES) return false;
        const r = decodePdu(wire, version);
        return r.ok && isDeepStrictEqual(plain(r.pdu), plain(pdu));
      }),
      { seed: SEED + version, numRuns: 1500 },
    ), `CMPP ${version === 3 ? '3.0' : '2.0'}: 1500 PDUs round-trip`);
  }
});

t.test('status reports round-trip; 60 octets in 2.0, 71 in 3.0', async (t) => {
  t.equal(reportBytes(2), 60);
  t.equal(reportBytes(3), 71);
  for (const version of VERSIONS) {
    fc.assert(
      fc.property(
        fc.record({ msgId, stat: ascii(7), submitTime: ascii(10), doneTime: ascii(10), destTerminalId: ascii(version === 3 ? 32 : 21), smscSequence: u32 }),
        (r: StatusReport) => {
          const c = encodeStatusReport(r, version);
          return c.length === reportBytes(version) && isDeepStrictEqual(plain(decodeStatusReport(c, version)), plain(r));
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
    t.equal(decodeStatusReport(new Uint8Array(reportBytes(version) - 1), version), undefined, 'short report: undefined');
  }
});

t.test('the decoder never throws: random frames, truncated and extended valid frames (fuzz)', async (t) => {
  for (const version of VERSIONS) {
    t.doesNotThrow(() => fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 5 }), (raw, cmd) => {
        // Give random bodies a believable header half the time so body parsing is exercised.
        const b = Buffer.from(raw);
        if (b.length >= HEADER_BYTES && cmd > 0) {
          b.writeUInt32BE(b.length, 0);
          b.writeUInt32BE([COMMAND.SUBMIT, COMMAND.DELIVER, COMMAND.CONNECT_RESP, COMMAND.SUBMIT_RESP, COMMAND.ACTIVE_TEST_RESP][cmd - 1] as number, 4);
        }
        const r = decodePdu(b, version);
        return typeof r.ok === 'boolean';
      }),
      { seed: SEED, numRuns: 3000 },
    ), `CMPP ${version === 3 ? '3.0' : '2.0'}: 3000 random frames decode without throwing`);
    t.doesNotThrow(() => fc.assert(
      fc.property(pduArb(version), fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), (pdu, cut, extra) => {
        const wire = encodePdu(pdu, version);
        // Truncated body with a header that claims the shorter length: refused, not thrown, unless the cut is 0.
        const n = HEADER_BYTES + (cut % (wire.length - HEADER_BYTES + 1));
        const short = Buffer.from(wire.subarray(0, n));
        short.writeUInt32BE(n, 0);
        const r1 = decodePdu(short, version);
        const okShort = n === wire.length ? r1.ok : true;
        // Extra octets after the last field: refused (a frame is exactly what its Command_Id says).
        const long = Buffer.concat([wire, extra]);
        long.writeUInt32BE(long.length, 0);
        const r2 = decodePdu(long, version);
        const variableTail = pdu.command === 'active_test_resp';
        return okShort && (variableTail || !r2.ok) && (r2.ok || r2.sequenceId === pdu.sequenceId);
      }),
      { seed: SEED + 1, numRuns: 1500 },
    ), `CMPP ${version === 3 ? '3.0' : '2.0'}: 1500 truncated and extended frames refused, not thrown`);
  }
});

t.test('a truncated frame of a known command is refused with its header kept', async (t) => {
  const wire = encodePdu({ command: 'submit_resp', sequenceId: 77, msgId: '1', result: 0 }, 3);
  const short = Buffer.from(wire.subarray(0, wire.length - 2));
  short.writeUInt32BE(short.length, 0);
  const r = decodePdu(short, 3);
  t.equal(r.ok, false);
  if (!r.ok) {
    t.equal(r.commandId, COMMAND.SUBMIT_RESP);
    t.equal(r.sequenceId, 77);
  }
  const wrongTotal = Buffer.from(wire);
  wrongTotal.writeUInt32BE(wire.length + 1, 0);
  t.equal(decodePdu(wrongTotal, 3).ok, false, 'Total_Length must equal the frame size');
  t.equal(decodePdu(new Uint8Array(5), 3).ok, false, 'shorter than a header');
  const unknown = Buffer.from(wire);
  unknown.writeUInt32BE(0x00000099, 4);
  t.equal(decodePdu(unknown, 3).ok, false, 'unknown command');
});

t.test('FrameReader: any chunking yields the same frames; a bad Total_Length breaks the stream', async (t) => {
  fc.assert(
    fc.property(fc.array(pduArb(3), { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 50 }), (pdus, cuts) => {
      const frames = pdus.map((p) => encodePdu(p, 3));
      const stream = Buffer.concat(frames);
      const reader = new FrameReader();
      const got: Buffer[] = [];
      let at = 0;
      for (let i = 0; at < stream.length; i++) {
        const n = cuts[i % cuts.length] as number;
        got.push(...reader.push(stream.subarray(at, at + n)));
        at += n;
      }
      return reader.broken === undefined && reader.buffered === 0 && got.length === frames.length && got.every((g, i) => g.equals(frames[i] as Buffer));
    }),
    { seed: SEED, numRuns: 300 },
  );
  for (const total of [0, 11, MAX_PDU_BYTES + 1, 0xffffffff]) {
    const reader = new FrameReader();
    const bad = Buffer.alloc(16);
    bad.writeUInt32BE(total, 0);
    t.same(reader.push(bad), [], `Total_Length ${total}: no frame`);
    t.ok(reader.broken, `Total_Length ${total}: broken`);
    t.same(reader.push(encodePdu({ command: 'active_test', sequenceId: 1 }, 3)), [], 'nothing after broken');
  }
  const r = new FrameReader();
  const ok = encodePdu({ command: 'active_test', sequenceId: 9 }, 3);
  t.same(r.push(Buffer.concat([ok, ok.subarray(0, 3)])).length, 1, 'partial header waits');
  t.equal(r.buffered, 3);
});

// ---------------------------------------------------------------- fixed vectors (spec field tables)

t.test('CONNECT: 39 octets; AuthenticatorSource = MD5(Source_Addr + 9 × 0x00 + secret + MMDDHHMMSS)', async (t) => {
  const ts = timestampText(Date.UTC(2026, 11, 6, 3, 4, 5), 480); // 11:04:05 in Beijing
  t.equal(ts, '1206110405');
  const auth = authenticatorSource('901234', 'secret', ts);
  const expected = createHash('md5').update(Buffer.concat([Buffer.from('901234'), Buffer.alloc(9), Buffer.from('secret'), Buffer.from('1206110405')])).digest();
  t.equal(Buffer.from(auth).toString('hex'), expected.toString('hex'));
  for (const version of VERSIONS) {
    const wire = encodePdu({ command: 'connect', sequenceId: 1, sourceAddr: '901234', authenticatorSource: auth, version: version === 3 ? 0x30 : 0x20, timestamp: Number(ts) }, version);
    t.equal(wire.length, 39, 'CONNECT is 12 + 6 + 16 + 1 + 4 in both versions');
    t.equal(wire.toString('hex'),
      '00000027' + '00000001' + '00000001' + Buffer.from('901234').toString('hex') + expected.toString('hex') + (version === 3 ? '30' : '20') + (1206110405).toString(16).padStart(8, '0'));
  }
});

t.test('CONNECT_RESP: Status 1 octet in 2.0 (30 octets), 4 in 3.0 (33); AuthenticatorISMG = MD5(Status + AuthSource + secret)', async (t) => {
  const src = new Uint8Array(16).fill(0xab);
  const a2 = authenticatorIsmg(2, 0, src, 'pw');
  const a3 = authenticatorIsmg(3, 0, src, 'pw');
  t.equal(Buffer.from(a2).toString('hex'), createHash('md5').update(Buffer.concat([Buffer.from([0]), Buffer.from(src), Buffer.from('pw')])).digest('hex'));
  t.equal(Buffer.from(a3).toString('hex'), createHash('md5').update(Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.from(src), Buffer.from('pw')])).digest('hex'));
  const w2 = encodePdu({ command: 'connect_resp', sequenceId: 1, status: 3, authenticatorIsmg: a2, version: 0x20 }, 2);
  const w3 = encodePdu({ command: 'connect_resp', sequenceId: 1, status: 3, authenticatorIsmg: a3, version: 0x30 }, 3);
  t.equal(w2.length, 30);
  t.equal(w3.length, 33);
  t.equal(w2.subarray(12, 13).toString('hex'), '03');
  t.equal(w3.subarray(12, 16).toString('hex'), '00000003');
});

const SUBMIT_BASE = {
  command: 'submit' as const, sequenceId: 0x0102, msgId: '0', pkTotal: 1, pkNumber: 1, registeredDelivery: 1, msgLevel: 0, serviceId: 'MGOV', feeUserType: 2,
  feeTerminalId: '', feeTerminalType: 0, tpPid: 0, tpUdhi: 0, msgFmt: 0, msgSrc: '901234', feeType: '01', feeCode: '000000', valIdTime: '261206120000032+',
  atTime: '', srcId: '10657000001', destTerminalIds: ['13800138000'], destTerminalType: 0, msgContent: new Uint8Array(Buffer.from('Hi')), linkId: '', reserve: '',
};

t.test('SUBMIT: 2.0 is 12 + 147 + 21n + len; 3.0 is 12 + 151 + 32n + len + 1 … with the fields where the tables put them', async (t) => {
  const w2 = encodePdu(SUBMIT_BASE, 2);
  const w3 = encodePdu(SUBMIT_BASE, 3);
  // 2.0 fixed: 8+1+1+1+1+10+1+21+1+1+1+6+2+6+17+17+21+1 = 117, +21 dest, +1 Msg_Length, +2, +8 Reserve
  t.equal(w2.length, 12 + 117 + 21 + 1 + 2 + 8);
  // 3.0 fixed: 8+1+1+1+1+10+1+32+1+1+1+1+6+2+6+17+17+21+1 = 129, +32 dest, +1 type, +1 Msg_Length, +2, +20 LinkID
  t.equal(w3.length, 12 + 129 + 32 + 1 + 1 + 2 + 20);
  t.equal(w2.readUInt32BE(4), 0x00000004);
  t.equal(w2.readUInt32BE(8), 0x0102);
  // Offsets from the field tables (body offsets + 12):
  t.equal(w2.readUInt8(12 + 10), 1, 'Registered_Delivery at body offset 10');
  t.equal(w2.toString('latin1', 12 + 12, 12 + 16), 'MGOV', 'Service_Id at 12');
  t.equal(w2.readUInt8(12 + 22), 2, 'Fee_UserType at 22');
  t.equal(w2.toString('latin1', 12 + 47, 12 + 53), '901234', '2.0 Msg_src at 47');
  t.equal(w3.toString('latin1', 12 + 59, 12 + 65), '901234', '3.0 Msg_src at 59 (Fee_terminal_Id 32 + Fee_terminal_type)');
  t.equal(w2.toString('latin1', 12 + 95, 12 + 106), '10657000001', '2.0 Src_Id at 95');
  t.equal(w3.toString('latin1', 12 + 107, 12 + 118), '10657000001', '3.0 Src_Id at 107');
  t.equal(w2.readUInt8(12 + 116), 1, '2.0 DestUsr_tl at 116');
  t.equal(w3.readUInt8(12 + 128), 1, '3.0 DestUsr_tl at 128');
  t.equal(w2.toString('latin1', 12 + 117, 12 + 128), '13800138000');
  t.equal(w2.readUInt8(12 + 138), 2, '2.0 Msg_Length after one 21-octet terminal id');
  t.equal(w3.readUInt8(12 + 129 + 32 + 1), 2, '3.0 Msg_Length after one 32-octet id and Dest_terminal_type');
});

t.test('SUBMIT_RESP / DELIVER_RESP: Result 1 octet in 2.0 (21), 4 in 3.0 (24); Msg_Id as 8 octets', async (t) => {
  const id = composeMsgId({ month: 12, day: 6, hour: 11, minute: 4, second: 5, ismg: 123456, sequence: 7 });
  const w2 = encodePdu({ command: 'submit_resp', sequenceId: 5, msgId: id, result: 8 }, 2);
  const w3 = encodePdu({ command: 'deliver_resp', sequenceId: 5, msgId: id, result: 8 }, 3);
  t.equal(w2.length, 21);
  t.equal(w3.length, 24);
  t.equal(msgIdToString(w2, 12), id);
  t.equal(w3.readUInt32BE(20), 8);
  t.same(msgIdParts(id), { month: 12, day: 6, hour: 11, minute: 4, second: 5, ismg: 123456, sequence: 7 });
  // month 1100, day 00110, hour 01011, minute 000100, second 000101, ismg, seq
  const expect = (12n << 60n) | (6n << 55n) | (11n << 50n) | (4n << 44n) | (5n << 38n) | (123456n << 16n) | 7n;
  t.equal(id, expect.toString());
  t.equal(w2.subarray(12, 20).toString('hex'), expect.toString(16).padStart(16, '0'));
});

t.test('Msg_Id canonical form: leading-zero octets and the top bit do not change the match', async (t) => {
  const b = Buffer.from('00000000000000ff', 'hex');
  t.equal(msgIdToString(b), '255');
  const top = Buffer.from('ffffffffffffffff', 'hex');
  t.equal(msgIdToString(top), '18446744073709551615');
  const wire = encodePdu({ command: 'submit_resp', sequenceId: 1, msgId: '18446744073709551615', result: 0 }, 3);
  t.equal(wire.subarray(12, 20).toString('hex'), 'ffffffffffffffff');
  for (const bad of ['', '-1', '18446744073709551616', '1e3', 'abc', '123456789012345678901']) {
    t.throws(() => encodePdu({ command: 'submit_resp', sequenceId: 1, msgId: bad, result: 0 }, 3), `Msg_Id ${bad} refused`);
  }
});

t.test('ACTIVE_TEST_RESP carries one Reserved octet; TERMINATE(_RESP) and ACTIVE_TEST are headers only', async (t) => {
  t.equal(encodePdu({ command: 'active_test_resp', sequenceId: 1, reserved: 0 }, 3).length, 13);
  for (const command of ['terminate', 'terminate_resp', 'active_test'] as const) t.equal(encodePdu({ command, sequenceId: 1 }, 2).length, 12);
  const bare = Buffer.from('0000000c800000080000002a', 'hex');
  const r = decodePdu(bare, 3);
  t.ok(r.ok && r.pdu.command === 'active_test_resp' && r.pdu.sequenceId === 42, 'a bare ACTIVE_TEST_RESP (no Reserved) is accepted');
});

t.test('fields that do not fit are refused with CMPP_PDU_INVALID', async (t) => {
  const cases: [string, Partial<typeof SUBMIT_BASE>][] = [
    ['Src_Id over 21', { srcId: '1'.repeat(22) }],
    ['Service_Id over 10', { serviceId: 'X'.repeat(11) }],
    ['non-ASCII Msg_src', { msgSrc: '北京' }],
    ['no destination', { destTerminalIds: [] }],
    ['content over 255', { msgContent: new Uint8Array(256) }],
    ['Pk_total over an octet', { pkTotal: 256 }],
  ];
  for (const [name, change] of cases) {
    try {
      encodePdu({ ...SUBMIT_BASE, ...change }, 3);
      t.fail(`${name}: encoded`);
    } catch (e) {
      t.ok(isGatewayError(e) && e.code === 'CMPP_PDU_INVALID', name);
    }
  }
});

t.test('DELIVER status report: 3.0 report of 71 octets inside a DELIVER with Registered_Delivery 1', async (t) => {
  const id = composeMsgId({ month: 1, day: 2, hour: 3, minute: 4, second: 5, ismg: 1, sequence: 2 });
  const report = encodeStatusReport({ msgId: id, stat: 'DELIVRD', submitTime: '2612061104', doneTime: '2612061105', destTerminalId: '8613800138000', smscSequence: 9 }, 3);
  const wire = encodePdu({
    command: 'deliver', sequenceId: 3, msgId: '99', destId: '10657000001', serviceId: 'MGOV', tpPid: 0, tpUdhi: 0, msgFmt: 0,
    srcTerminalId: '8613800138000', srcTerminalType: 0, registeredDelivery: 1, msgContent: report, linkId: '', reserve: '',
  }, 3);
  // 8 + 21 + 10 + 3 + 32 + 1 + 1 + 1 + 71 + 20
  t.equal(wire.length, 12 + 168);
  const r = decodePdu(wire, 3);
  t.ok(r.ok);
  if (r.ok && r.pdu.command === 'deliver') {
    t.equal(r.pdu.registeredDelivery, 1);
    t.same(plain(decodeStatusReport(r.pdu.msgContent, 3)), { msgId: id, stat: 'DELIVRD', submitTime: '2612061104', doneTime: '2612061105', destTerminalId: '8613800138000', smscSequence: 9 });
  }
});
