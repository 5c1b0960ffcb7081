/**
 * The CMPP encoder's fast paths against simple reference models: Msg_Id
 * below 16 digits written without BigInt, ASCII fields written octet by
 * octet, and ValId_Time cached per deadline second — each gives exactly the
 * bytes / text of the straightforward computation, and refuses what it
 * refused.
 */
import t from 'tap';
import fc from 'fast-check';
import { absoluteValidity } from '../../src/cmpp/account.js';
import { encodePdu, msgIdToString, writeMsgId } from '../../src/cmpp/codec.js';

/** Reference: BigInt, as the codec did for every Msg_Id. */
function refMsgId(msgId: string): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(msgId), 0);
  return b;
}

t.test('writeMsgId: every decimal up to 2^64 − 1 (short ones on the fast path) as BigInt writes it (property)', async (t) => {
  const decimal = fc.oneof(
    fc.integer({ min: 0, max: 999_999_999_999_999 }).map(String), // ≤ 15 digits
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => v.toString(10)),
    fc.stringMatching(/^0{0,5}[0-9]{1,10}$/), // leading zeros
  );
  fc.assert(
    fc.property(decimal, (s) => {
      const b = Buffer.alloc(8);
      writeMsgId(b, 0, s);
      return b.equals(refMsgId(s)) && msgIdToString(b) === BigInt(s).toString(10);
    }),
    { seed: 20261220, numRuns: 3000 },
  );
  t.throws(() => writeMsgId(Buffer.alloc(8), 0, '18446744073709551616'), { code: 'CMPP_PDU_INVALID' }, '2^64 refused');
  t.throws(() => writeMsgId(Buffer.alloc(8), 0, '12a'), { code: 'CMPP_PDU_INVALID' });
});

t.test('ASCII fields: written as Latin-1 octets, NUL-padded; too long or non-ASCII refused', async (t) => {
  const field = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 10 });
  fc.assert(
    fc.property(field, (serviceId) => {
      const pdu = encodePdu({ command: 'deliver', sequenceId: 1, msgId: '0', destId: '1065700', serviceId, tpPid: 0, tpUdhi: 0, msgFmt: 0, srcTerminalId: '13800138000', srcTerminalType: 0, registeredDelivery: 0, msgContent: new Uint8Array(0), linkId: '', reserve: '' }, 3);
      const at = 12 + 8 + 21; // header, Msg_Id, Dest_Id
      const expected = Buffer.alloc(10);
      Buffer.from(serviceId, 'latin1').copy(expected);
      return pdu.subarray(at, at + 10).equals(expected);
    }),
    { seed: 20261221, numRuns: 500 },
  );
  const base = { command: 'deliver' as const, sequenceId: 1, msgId: '0', destId: '1065700', tpPid: 0, tpUdhi: 0, msgFmt: 0, srcTerminalId: '13800138000', srcTerminalType: 0, registeredDelivery: 0, msgContent: new Uint8Array(0), linkId: '', reserve: '' };
  t.throws(() => encodePdu({ ...base, serviceId: 'ABCDEFGHIJK' }, 3), { code: 'CMPP_PDU_INVALID' }, '11 characters in 10 octets');
  t.throws(() => encodePdu({ ...base, serviceId: 'MGÖV' }, 3), { code: 'CMPP_PDU_INVALID' }, 'not ASCII');
  t.throws(() => encodePdu({ ...base, serviceId: '中' }, 3), { code: 'CMPP_PDU_INVALID' });
});

/** Reference: the uncached formula. */
function refValidity(deadline: number, offset: number): string {
  const d = new Date(deadline + offset * 60_000);
  const two = (n: number): string => String(n).padStart(2, '0');
  const q = Math.floor(Math.abs(offset) / 15);
  return `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}0${two(q)}${offset < 0 ? '-' : '+'}`;
}

t.test('ValId_Time through the one-entry cache equals the formula, for runs of deadlines in one second and across offsets (property)', async (t) => {
  const deadline = fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2040, 0, 1) });
  const offset = fc.constantFrom(480, 0, -300, 345, 840, -720);
  t.doesNotThrow(() => fc.assert(
    fc.property(fc.array(fc.tuple(deadline, fc.integer({ min: 0, max: 999 }), offset), { minLength: 1, maxLength: 20 }), (calls) => {
      for (const [d, ms, o] of calls) {
        // The same second with other milliseconds, then the next one: both hit and miss the cache.
        for (const x of [d, d - (d % 1000) + ms, d + 1000]) if (absoluteValidity(x, o) !== refValidity(x, o)) return false;
      }
      return true;
    }),
    { seed: 20261222, numRuns: 500 },
  ), 'holds');
});
