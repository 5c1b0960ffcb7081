/**
 * CMPP 2.0 / 3.0 (China Mobile Peer to Peer) PDU codec: bytes ⇄ plain objects.
 * No I/O besides MD5 from node:crypto.
 *
 * Every PDU is a 12-octet header and a body, all integers big-endian:
 *
 *   Total_Length u32 (header included) │ Command_Id u32 │ Sequence_Id u32 │ body…
 *
 * Octet strings are fixed width, left-aligned, padded with NUL (decoding
 * stops at the first NUL). The two versions differ only in a few fields
 * (sizes in octets; "—" means absent):
 *
 *   field                         2.0    3.0
 *   CONNECT_RESP Status             1      4
 *   SUBMIT  Fee_terminal_Id        21     32   (+ Fee_terminal_type 1 in 3.0)
 *   SUBMIT  Dest_terminal_Id × n   21     32   (+ Dest_terminal_type 1 in 3.0)
 *   SUBMIT  Reserve / LinkID     8 / —  — / 20
 *   SUBMIT_RESP / DELIVER_RESP Result 1   4
 *   DELIVER Src_terminal_Id        21     32   (+ Src_terminal_type 1 in 3.0)
 *   DELIVER Reserve / LinkID     8 / —  — / 20
 *   status report Dest_terminal_Id 21     32   (report 60 vs 71 octets)
 *
 * Msg_Id is a 64-bit integer (month 4 bits, day 5, hour 5, minute 6, second 6,
 * ISMG code 22, sequence 16). Its one canonical text form here is the
 * unsigned decimal without leading zeros (`msgIdToString`): SUBMIT_RESP and
 * status reports give the same 8 octets, so they map to the same string and
 * the receipt store matches them exactly.
 *
 * Decoding never throws: `decodePdu` answers `{ ok: false, … }` for a frame
 * it cannot read (the caller answers or drops that one frame), and
 * `FrameReader` reports a Total_Length outside [12, MAX_PDU_BYTES] as a
 * broken stream (the caller closes the connection: it cannot find the next
 * frame boundary). Encoding throws GatewayError CMPP_PDU_INVALID when a field
 * does not fit.
 */
import { createHash } from 'node:crypto';
import { GatewayError } from '../core/errors.js';

export type CmppVersion = 2 | 3;

/** The Version octet of CONNECT: high nibble major, low nibble minor. */
export const VERSION_BYTE: Readonly<Record<CmppVersion, number>> = { 2: 0x20, 3: 0x30 };

export const COMMAND = {
  CONNECT: 0x00000001,
  CONNECT_RESP: 0x80000001,
  TERMINATE: 0x00000002,
  TERMINATE_RESP: 0x80000002,
  SUBMIT: 0x00000004,
  SUBMIT_RESP: 0x80000004,
  DELIVER: 0x00000005,
  DELIVER_RESP: 0x80000005,
  ACTIVE_TEST: 0x00000008,
  ACTIVE_TEST_RESP: 0x80000008,
} as const;

export const HEADER_BYTES = 12;
/** Largest PDU accepted from the wire: a SUBMIT to 100 3.0 terminals with 255 octets of content is about 3.6 kB. */
export const MAX_PDU_BYTES = 4096;
/** Msg_Content is at most 140 octets on the air; Msg_Length is one octet. */
export const MAX_CONTENT_BYTES = 255;

/** Msg_Fmt values. */
export const MSG_FMT = { ASCII: 0, BINARY: 4, UCS2: 8, GB: 15 } as const;

/** CONNECT_RESP Status (0–4 named; anything else is "other error"). */
export const CONNECT_STATUS: Readonly<Record<number, string>> = {
  0: 'OK',
  1: 'CMPP_CONNECT_BAD_STRUCTURE',
  2: 'CMPP_CONNECT_BAD_SOURCE_ADDR',
  3: 'CMPP_CONNECT_AUTH_FAILED',
  4: 'CMPP_CONNECT_VERSION_TOO_HIGH',
};

/** SUBMIT_RESP / DELIVER_RESP Result (10–13 are 3.0 only). */
export const SUBMIT_RESULT: Readonly<Record<number, string>> = {
  0: 'OK',
  1: 'CMPP_BAD_STRUCTURE',
  2: 'CMPP_BAD_COMMAND',
  3: 'CMPP_DUPLICATE_SEQUENCE',
  4: 'CMPP_BAD_MSG_LENGTH',
  5: 'CMPP_BAD_FEE_CODE',
  6: 'CMPP_MSG_TOO_LONG',
  7: 'CMPP_BAD_SERVICE_ID',
  8: 'CMPP_FLOW_CONTROL',
  9: 'CMPP_NOT_SERVED_HERE',
  10: 'CMPP_BAD_SRC_ID',
  11: 'CMPP_BAD_MSG_SRC',
  12: 'CMPP_BAD_FEE_TERMINAL_ID',
  13: 'CMPP_BAD_DEST_TERMINAL_ID',
};

/** SUBMIT_RESP Result 8: the ISMG's flow control — slow down and retry (like ESME_RTHROTTLED). */
export const RESULT_FLOW_CONTROL = 8;

export function connectStatusName(status: number): string {
  return CONNECT_STATUS[status] ?? `CMPP_CONNECT_ERROR_${status}`;
}

export function resultName(result: number): string {
  return SUBMIT_RESULT[result] ?? `CMPP_RESULT_${result}`;
}

// ---------------------------------------------------------------- PDUs

export interface ConnectPdu {
  readonly command: 'connect';
  readonly sequenceId: number;
  /** SP_Id, 6 octets. */
  readonly sourceAddr: string;
  /** 16 octets. */
  readonly authenticatorSource: Uint8Array;
  readonly version: number;
  /** MMDDHHMMSS as an integer. */
  readonly timestamp: number;
}

export interface ConnectRespPdu {
  readonly command: 'connect_resp';
  readonly sequenceId: number;
  readonly status: number;
  readonly authenticatorIsmg: Uint8Array;
  readonly version: number;
}

export interface SubmitPdu {
  readonly command: 'submit';
  readonly sequenceId: number;
  /** Canonical decimal (see msgIdToString); '0' from an SP. */
  readonly msgId: string;
  readonly pkTotal: number;
  readonly pkNumber: number;
  readonly registeredDelivery: number;
  readonly msgLevel: number;
  readonly serviceId: string;
  readonly feeUserType: number;
  readonly feeTerminalId: string;
  /** 3.0 only (0 real number, 1 pseudo code); 0 in 2.0. */
  readonly feeTerminalType: number;
  readonly tpPid: number;
  readonly tpUdhi: number;
  readonly msgFmt: number;
  readonly msgSrc: string;
  readonly feeType: string;
  readonly feeCode: string;
  readonly valIdTime: string;
  readonly atTime: string;
  readonly srcId: string;
  readonly destTerminalIds: readonly string[];
  /** 3.0 only; 0 in 2.0. */
  readonly destTerminalType: number;
  readonly msgContent: Uint8Array;
  /** 3.0 only (20 octets); '' in 2.0. */
  readonly linkId: string;
  /** 2.0 only (8 octets); '' in 3.0. */
  readonly reserve: string;
}

export interface MsgIdResultPdu {
  readonly command: 'submit_resp' | 'deliver_resp';
  readonly sequenceId: number;
  readonly msgId: string;
  readonly result: number;
}

export interface DeliverPdu {
  readonly command: 'deliver';
  readonly sequenceId: number;
  readonly msgId: string;
  readonly destId: string;
  readonly serviceId: string;
  readonly tpPid: number;
  readonly tpUdhi: number;
  readonly msgFmt: number;
  readonly srcTerminalId: string;
  /** 3.0 only; 0 in 2.0. */
  readonly srcTerminalType: number;
  /** 1: Msg_Content is a status report. */
  readonly registeredDelivery: number;
  readonly msgContent: Uint8Array;
  readonly linkId: string;
  readonly reserve: string;
}

export interface EmptyPdu {
  readonly command: 'terminate' | 'terminate_resp' | 'active_test';
  readonly sequenceId: number;
}

export interface ActiveTestRespPdu {
  readonly command: 'active_test_resp';
  readonly sequenceId: number;
  readonly reserved: number;
}

export type CmppPdu = ConnectPdu | ConnectRespPdu | SubmitPdu | MsgIdResultPdu | DeliverPdu | EmptyPdu | ActiveTestRespPdu;

/** The Msg_Content of a DELIVER with Registered_Delivery = 1. */
export interface StatusReport {
  readonly msgId: string;
  /** DELIVRD, EXPIRED, UNDELIV, REJECTD, … or an ISMG code such as MK:0001. */
  readonly stat: string;
  /** YYMMDDHHMM. */
  readonly submitTime: string;
  readonly doneTime: string;
  readonly destTerminalId: string;
  readonly smscSequence: number;
}

const COMMAND_BY_NAME: Readonly<Record<CmppPdu['command'], number>> = {
  connect: COMMAND.CONNECT,
  connect_resp: COMMAND.CONNECT_RESP,
  terminate: COMMAND.TERMINATE,
  terminate_resp: COMMAND.TERMINATE_RESP,
  submit: COMMAND.SUBMIT,
  submit_resp: COMMAND.SUBMIT_RESP,
  deliver: COMMAND.DELIVER,
  deliver_resp: COMMAND.DELIVER_RESP,
  active_test: COMMAND.ACTIVE_TEST,
  active_test_resp: COMMAND.ACTIVE_TEST_RESP,
};

function terminalBytes(version: CmppVersion): number {
  return version === 3 ? 32 : 21;
}

/** Octets of a status report's Msg_Content: 60 (2.0) or 71 (3.0). */
export function reportBytes(version: CmppVersion): number {
  return 8 + 7 + 10 + 10 + terminalBytes(version) + 4;
}

// ---------------------------------------------------------------- Msg_Id

const MAX_U64 = (1n << 64n) - 1n;
const DECIMAL = /^[0-9]{1,20}$/;

/** The canonical text of an 8-octet Msg_Id: unsigned decimal, no leading zeros. */
export function msgIdToString(bytes: Uint8Array, offset = 0): string {
  let v = 0n;
  for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(bytes[offset + i] as number);
  return v.toString(10);
}

/** Write a canonical Msg_Id (decimal) as 8 octets; throws CMPP_PDU_INVALID when it is not one. */
export function writeMsgId(out: Buffer, offset: number, msgId: string): void {
  if (!DECIMAL.test(msgId)) throw invalid(`Msg_Id ${JSON.stringify(msgId)} is not a decimal 64-bit number`);
  if (msgId.length <= 15) {
    // Below 2^53: no BigInt (every SUBMIT carries Msg_Id 0).
    const n = Number(msgId);
    out.writeUInt32BE(Math.floor(n / 0x1_0000_0000), offset);
    out.writeUInt32BE(n >>> 0, offset + 4);
    return;
  }
  const v = BigInt(msgId);
  if (v > MAX_U64) throw invalid(`Msg_Id ${msgId} exceeds 64 bits`);
  out.writeBigUInt64BE(v, offset);
}

export interface MsgIdParts {
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  /** ISMG (gateway) code, 22 bits. */
  readonly ismg: number;
  /** 16 bits. */
  readonly sequence: number;
}

/** Build a Msg_Id the way an ISMG does (the simulator uses this). */
export function composeMsgId(p: MsgIdParts): string {
  const v =
    (BigInt(p.month & 0xf) << 60n) |
    (BigInt(p.day & 0x1f) << 55n) |
    (BigInt(p.hour & 0x1f) << 50n) |
    (BigInt(p.minute & 0x3f) << 44n) |
    (BigInt(p.second & 0x3f) << 38n) |
    (BigInt(p.ismg & 0x3fffff) << 16n) |
    BigInt(p.sequence & 0xffff);
  return v.toString(10);
}

export function msgIdParts(msgId: string): MsgIdParts {
  const v = BigInt(msgId);
  const n = (shift: bigint, mask: bigint): number => Number((v >> shift) & mask);
  return { month: n(60n, 0xfn), day: n(55n, 0x1fn), hour: n(50n, 0x1fn), minute: n(44n, 0x3fn), second: n(38n, 0x3fn), ismg: n(16n, 0x3fffffn), sequence: n(0n, 0xffffn) };
}

// ---------------------------------------------------------------- authentication

/** MMDDHHMMSS of `epochMs` in local time `utcOffsetMinutes` (China: 480), as the 10-digit text. */
export function timestampText(epochMs: number, utcOffsetMinutes: number): string {
  const d = new Date(epochMs + utcOffsetMinutes * 60_000);
  const two = (n: number): string => (n < 10 ? `0${n}` : String(n));
  return `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}`;
}

/** AuthenticatorSource = MD5(Source_Addr + 9 zero octets + shared secret + timestamp as MMDDHHMMSS text). */
export function authenticatorSource(sourceAddr: string, secret: string, timestamp: string): Uint8Array {
  return new Uint8Array(
    createHash('md5')
      .update(Buffer.from(sourceAddr, 'latin1'))
      .update(Buffer.alloc(9))
      .update(Buffer.from(secret, 'utf8'))
      .update(Buffer.from(timestamp, 'latin1'))
      .digest(),
  );
}

/**
 * AuthenticatorISMG = MD5(Status + AuthenticatorSource + shared secret), the
 * Status in the width of the version's CONNECT_RESP (1 octet in 2.0, 4 in 3.0).
 */
export function authenticatorIsmg(version: CmppVersion, status: number, source: Uint8Array, secret: string): Uint8Array {
  const s = Buffer.alloc(version === 3 ? 4 : 1);
  if (version === 3) s.writeUInt32BE(status >>> 0);
  else s.writeUInt8(status & 0xff);
  return new Uint8Array(createHash('md5').update(s).update(source).update(Buffer.from(secret, 'utf8')).digest());
}

// ---------------------------------------------------------------- encode

function invalid(message: string): GatewayError {
  return new GatewayError('CMPP_PDU_INVALID', message);
}

class Writer {
  readonly buf: Buffer;
  private at = HEADER_BYTES;

  constructor(bodyBytes: number, commandId: number, sequenceId: number) {
    this.buf = Buffer.alloc(HEADER_BYTES + bodyBytes);
    this.buf.writeUInt32BE(this.buf.length, 0);
    this.buf.writeUInt32BE(commandId >>> 0, 4);
    this.buf.writeUInt32BE(sequenceId >>> 0, 8);
  }

  u8(v: number, field: string): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw invalid(`${field} ${v} is not an octet`);
    this.buf.writeUInt8(v, this.at);
    this.at += 1;
  }

  u32(v: number, field: string): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalid(`${field} ${v} is not a 32-bit unsigned integer`);
    this.buf.writeUInt32BE(v, this.at);
    this.at += 4;
  }

  /** 1 or 4 octets by version. */
  result(v: number, version: CmppVersion, field: string): void {
    if (version === 3) this.u32(v, field);
    else this.u8(v, field);
  }

  str(s: string, width: number, field: string): void {
    if (s.length > width) throw invalid(`${field} ${JSON.stringify(s)} does not fit ${width} ASCII octets`);
    const buf = this.buf;
    const at = this.at;
    // Octet by octet: these fields are ≤ 21 characters, and a Buffer per field was the encoder's main cost.
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) throw invalid(`${field} ${JSON.stringify(s)} does not fit ${width} ASCII octets`);
      buf[at + i] = c;
    }
    this.at = at + width; // the rest stays NUL
  }

  bytes(b: Uint8Array, width: number, field: string): void {
    if (b.length !== width) throw invalid(`${field} must be ${width} octets, not ${b.length}`);
    this.buf.set(b, this.at);
    this.at += width;
  }

  msgId(msgId: string): void {
    writeMsgId(this.buf, this.at, msgId);
    this.at += 8;
  }

  content(c: Uint8Array): void {
    if (c.length > MAX_CONTENT_BYTES) throw invalid(`Msg_Content of ${c.length} octets exceeds ${MAX_CONTENT_BYTES}`);
    this.u8(c.length, 'Msg_Length');
    this.buf.set(c, this.at);
    this.at += c.length;
  }

  done(): Buffer {
    if (this.at !== this.buf.length) throw new GatewayError('INTERNAL', `CMPP encoder wrote ${this.at} of ${this.buf.length} octets`);
    return this.buf;
  }
}

/** Encode a PDU for `version`. Throws CMPP_PDU_INVALID when a field does not fit. */
export function encodePdu(pdu: CmppPdu, version: CmppVersion): Buffer {
  const commandId = COMMAND_BY_NAME[pdu.command];
  const seq = pdu.sequenceId;
  const term = terminalBytes(version);
  switch (pdu.command) {
    case 'connect': {
      const w = new Writer(6 + 16 + 1 + 4, commandId, seq);
      w.str(pdu.sourceAddr, 6, 'Source_Addr');
      w.bytes(pdu.authenticatorSource, 16, 'AuthenticatorSource');
      w.u8(pdu.version, 'Version');
      w.u32(pdu.timestamp, 'Timestamp');
      return w.done();
    }
    case 'connect_resp': {
      const w = new Writer((version === 3 ? 4 : 1) + 16 + 1, commandId, seq);
      w.result(pdu.status, version, 'Status');
      w.bytes(pdu.authenticatorIsmg, 16, 'AuthenticatorISMG');
      w.u8(pdu.version, 'Version');
      return w.done();
    }
    case 'terminate':
    case 'terminate_resp':
    case 'active_test':
      return new Writer(0, commandId, seq).done();
    case 'active_test_resp': {
      const w = new Writer(1, commandId, seq);
      w.u8(pdu.reserved, 'Reserved');
      return w.done();
    }
    case 'submit_resp':
    case 'deliver_resp': {
      const w = new Writer(8 + (version === 3 ? 4 : 1), commandId, seq);
      w.msgId(pdu.msgId);
      w.result(pdu.result, version, 'Result');
      return w.done();
    }
    case 'submit': {
      const n = pdu.destTerminalIds.length;
      if (n < 1 || n > 100) throw invalid(`DestUsr_tl ${n} is not in 1..100`);
      const v3 = version === 3;
      const body = 8 + 4 + 10 + 1 + term + (v3 ? 1 : 0) + 3 + 6 + 2 + 6 + 17 + 17 + 21 + 1 + n * term + (v3 ? 1 : 0) + 1 + pdu.msgContent.length + (v3 ? 20 : 8);
      const w = new Writer(body, commandId, seq);
      w.msgId(pdu.msgId);
      w.u8(pdu.pkTotal, 'Pk_total');
      w.u8(pdu.pkNumber, 'Pk_number');
      w.u8(pdu.registeredDelivery, 'Registered_Delivery');
      w.u8(pdu.msgLevel, 'Msg_level');
      w.str(pdu.serviceId, 10, 'Service_Id');
      w.u8(pdu.feeUserType, 'Fee_UserType');
      w.str(pdu.feeTerminalId, term, 'Fee_terminal_Id');
      if (v3) w.u8(pdu.feeTerminalType, 'Fee_terminal_type');
      w.u8(pdu.tpPid, 'TP_pId');
      w.u8(pdu.tpUdhi, 'TP_udhi');
      w.u8(pdu.msgFmt, 'Msg_Fmt');
      w.str(pdu.msgSrc, 6, 'Msg_src');
      w.str(pdu.feeType, 2, 'FeeType');
      w.str(pdu.feeCode, 6, 'FeeCode');
      w.str(pdu.valIdTime, 17, 'ValId_Time');
      w.str(pdu.atTime, 17, 'At_Time');
      w.str(pdu.srcId, 21, 'Src_Id');
      w.u8(n, 'DestUsr_tl');
      for (const d of pdu.destTerminalIds) w.str(d, term, 'Dest_terminal_Id');
      if (v3) w.u8(pdu.destTerminalType, 'Dest_terminal_type');
      w.content(pdu.msgContent);
      if (v3) w.str(pdu.linkId, 20, 'LinkID');
      else w.str(pdu.reserve, 8, 'Reserve');
      return w.done();
    }
    case 'deliver': {
      const v3 = version === 3;
      const body = 8 + 21 + 10 + 3 + term + (v3 ? 1 : 0) + 1 + 1 + pdu.msgContent.length + (v3 ? 20 : 8);
      const w = new Writer(body, commandId, seq);
      w.msgId(pdu.msgId);
      w.str(pdu.destId, 21, 'Dest_Id');
      w.str(pdu.serviceId, 10, 'Service_Id');
      w.u8(pdu.tpPid, 'TP_pid');
      w.u8(pdu.tpUdhi, 'TP_udhi');
      w.u8(pdu.msgFmt, 'Msg_Fmt');
      w.str(pdu.srcTerminalId, term, 'Src_terminal_Id');
      if (v3) w.u8(pdu.srcTerminalType, 'Src_terminal_type');
      w.u8(pdu.registeredDelivery, 'Registered_Delivery');
      w.content(pdu.msgContent);
      if (v3) w.str(pdu.linkId, 20, 'LinkID');
      else w.str(pdu.reserve, 8, 'Reserve');
      return w.done();
    }
  }
}

/** The Msg_Content of a status report. */
export function encodeStatusReport(r: StatusReport, version: CmppVersion): Uint8Array {
  const term = terminalBytes(version);
  const w = new Writer(reportBytes(version), 0, 0);
  w.msgId(r.msgId);
  w.str(r.stat, 7, 'Stat');
  w.str(r.submitTime, 10, 'Submit_time');
  w.str(r.doneTime, 10, 'Done_time');
  w.str(r.destTerminalId, term, 'Dest_terminal_Id');
  w.u32(r.smscSequence, 'SMSC_sequence');
  return new Uint8Array(w.done().subarray(HEADER_BYTES));
}

// ---------------------------------------------------------------- decode

export type DecodeResult =
  | { readonly ok: true; readonly pdu: CmppPdu }
  | {
      readonly ok: false;
      /** What is wrong, for a log line (no message content in it). */
      readonly error: string;
      /** From the header when it was readable (0 otherwise): lets the caller answer a request it could not parse. */
      readonly commandId: number;
      readonly sequenceId: number;
    };

/** Thrown inside the reader only; decodePdu turns it into `{ ok: false }`. */
class Short extends Error {}

class Reader {
  at = HEADER_BYTES;
  constructor(private readonly b: Buffer) {}

  get remaining(): number {
    return this.b.length - this.at;
  }

  need(n: number): void {
    if (this.at + n > this.b.length) throw new Short(`body ends at octet ${this.b.length}, field needs ${this.at + n}`);
  }

  u8(): number {
    this.need(1);
    return this.b.readUInt8(this.at++);
  }

  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  result(version: CmppVersion): number {
    return version === 3 ? this.u32() : this.u8();
  }

  str(width: number): string {
    this.need(width);
    const end = this.at + width;
    let stop = this.b.indexOf(0, this.at);
    if (stop < 0 || stop > end) stop = end;
    const s = this.b.toString('latin1', this.at, stop);
    this.at = end;
    return s;
  }

  raw(width: number): Uint8Array {
    this.need(width);
    const out = new Uint8Array(this.b.subarray(this.at, this.at + width));
    this.at += width;
    return out;
  }

  msgId(): string {
    this.need(8);
    const s = msgIdToString(this.b, this.at);
    this.at += 8;
    return s;
  }

  /** The body must end here: trailing octets mean the frame is not what its Command_Id says. */
  end(): void {
    if (this.at !== this.b.length) throw new Short(`${this.b.length - this.at} octets after the last field`);
  }
}

/**
 * Decode one whole frame (Total_Length octets, header included) for
 * `version`. Never throws.
 */
export function decodePdu(frame: Uint8Array, version: CmppVersion): DecodeResult {
  const b = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (b.length < HEADER_BYTES) return { ok: false, error: `frame of ${b.length} octets is shorter than the header`, commandId: 0, sequenceId: 0 };
  const total = b.readUInt32BE(0);
  const commandId = b.readUInt32BE(4);
  const sequenceId = b.readUInt32BE(8);
  if (total !== b.length) return { ok: false, error: `Total_Length ${total} but the frame has ${b.length} octets`, commandId, sequenceId };
  try {
    const pdu = decodeBody(new Reader(b), commandId, sequenceId, version);
    if (pdu === undefined) return { ok: false, error: `unknown Command_Id 0x${commandId.toString(16).padStart(8, '0')}`, commandId, sequenceId };
    return { ok: true, pdu };
  } catch (e) {
    // Short is the reader's; anything else would be a codec bug, still kept inside this frame.
    return { ok: false, error: e instanceof Error ? e.message : String(e), commandId, sequenceId };
  }
}

function decodeBody(r: Reader, commandId: number, sequenceId: number, version: CmppVersion): CmppPdu | undefined {
  const term = terminalBytes(version);
  const v3 = version === 3;
  let pdu: CmppPdu;
  switch (commandId) {
    case COMMAND.CONNECT:
      pdu = { command: 'connect', sequenceId, sourceAddr: r.str(6), authenticatorSource: r.raw(16), version: r.u8(), timestamp: r.u32() };
      break;
    case COMMAND.CONNECT_RESP:
      pdu = { command: 'connect_resp', sequenceId, status: r.result(version), authenticatorIsmg: r.raw(16), version: r.u8() };
      break;
    case COMMAND.TERMINATE:
      pdu = { command: 'terminate', sequenceId };
      break;
    case COMMAND.TERMINATE_RESP:
      pdu = { command: 'terminate_resp', sequenceId };
      break;
    case COMMAND.ACTIVE_TEST:
      pdu = { command: 'active_test', sequenceId };
      break;
    case COMMAND.ACTIVE_TEST_RESP:
      // Some ISMGs send it without its Reserved octet: accept both.
      pdu = { command: 'active_test_resp', sequenceId, reserved: r.remaining > 0 ? r.u8() : 0 };
      break;
    case COMMAND.SUBMIT_RESP:
      pdu = { command: 'submit_resp', sequenceId, msgId: r.msgId(), result: r.result(version) };
      break;
    case COMMAND.DELIVER_RESP:
      pdu = { command: 'deliver_resp', sequenceId, msgId: r.msgId(), result: r.result(version) };
      break;
    case COMMAND.SUBMIT: {
      const msgId = r.msgId();
      const pkTotal = r.u8();
      const pkNumber = r.u8();
      const registeredDelivery = r.u8();
      const msgLevel = r.u8();
      const serviceId = r.str(10);
      const feeUserType = r.u8();
      const feeTerminalId = r.str(term);
      const feeTerminalType = v3 ? r.u8() : 0;
      const tpPid = r.u8();
      const tpUdhi = r.u8();
      const msgFmt = r.u8();
      const msgSrc = r.str(6);
      const feeType = r.str(2);
      const feeCode = r.str(6);
      const valIdTime = r.str(17);
      const atTime = r.str(17);
      const srcId = r.str(21);
      const n = r.u8();
      const destTerminalIds: string[] = [];
      for (let i = 0; i < n; i++) destTerminalIds.push(r.str(term));
      const destTerminalType = v3 ? r.u8() : 0;
      const msgContent = r.raw(r.u8());
      const linkId = v3 ? r.str(20) : '';
      const reserve = v3 ? '' : r.str(8);
      pdu = {
        command: 'submit', sequenceId, msgId, pkTotal, pkNumber, registeredDelivery, msgLevel, serviceId, feeUserType, feeTerminalId, feeTerminalType,
        tpPid, tpUdhi, msgFmt, msgSrc, feeType, feeCode, valIdTime, atTime, srcId, destTerminalIds, destTerminalType, msgContent, linkId, reserve,
      };
      break;
    }
    case COMMAND.DELIVER: {
      const msgId = r.msgId();
      const destId = r.str(21);
      const serviceId = r.str(10);
      const tpPid = r.u8();
      const tpUdhi = r.u8();
      const msgFmt = r.u8();
      const srcTerminalId = r.str(term);
      const srcTerminalType = v3 ? r.u8() : 0;
      const registeredDelivery = r.u8();
      const msgContent = r.raw(r.u8());
      const linkId = v3 ? r.str(20) : '';
      const reserve = v3 ? '' : r.str(8);
      pdu = { command: 'deliver', sequenceId, msgId, destId, serviceId, tpPid, tpUdhi, msgFmt, srcTerminalId, srcTerminalType, registeredDelivery, msgContent, linkId, reserve };
      break;
    }
    default:
      return undefined;
  }
  r.end();
  return pdu;
}

/** A status report's fields, or undefined when Msg_Content is too short for `version`. */
export function decodeStatusReport(content: Uint8Array, version: CmppVersion): StatusReport | undefined {
  if (content.length < reportBytes(version)) return undefined;
  const frame = Buffer.alloc(HEADER_BYTES + reportBytes(version));
  frame.set(content.subarray(0, reportBytes(version)), HEADER_BYTES);
  const r = new Reader(frame);
  try {
    return { msgId: r.msgId(), stat: r.str(7), submitTime: r.str(10), doneTime: r.str(10), destTerminalId: r.str(terminalBytes(version)), smscSequence: r.u32() };
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- framing

/**
 * Splits a TCP byte stream into frames by Total_Length. Bounded: it holds at
 * most one partial frame (≤ MAX_PDU_BYTES). A Total_Length outside
 * [HEADER_BYTES, MAX_PDU_BYTES] makes it `broken` (the stream has no
 * recoverable boundary: close the connection); it then yields nothing more.
 */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);
  private _broken: string | undefined;

  get broken(): string | undefined {
    return this._broken;
  }

  /** Octets held waiting for the rest of a frame. */
  get buffered(): number {
    return this.pending.length;
  }

  /** Add received octets; returns the whole frames now available, in order. */
  push(chunk: Buffer): Buffer[] {
    if (this._broken !== undefined) return [];
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Buffer[] = [];
    while (data.length >= 4) {
      const total = data.readUInt32BE(0);
      if (total < HEADER_BYTES || total > MAX_PDU_BYTES) {
        this._broken = `Total_Length ${total} outside ${HEADER_BYTES}..${MAX_PDU_BYTES}`;
        this.pending = Buffer.alloc(0);
        return frames;
      }
      if (data.length < total) break;
      // A copy: the frame outlives the socket's chunk, and decoders keep subarrays of it.
      frames.push(Buffer.from(data.subarray(0, total)));
      data = data.subarray(total);
    }
    this.pending = data.length === 0 ? Buffer.alloc(0) : Buffer.from(data);
    return frames;
  }
}
