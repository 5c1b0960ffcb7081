/**
 * The SMPP wire: a typed layer over the `smpp` package (0.5.1), which has no
 * types and several sharp edges (DESIGN.md, "What the smpp package does not
 * do"). Nothing outside this file imports the package.
 *
 * What this layer adds:
 *  - types for the PDUs the gateway reads and writes;
 *  - hand-written encoders for the PDUs on the hot path (submit_sm and its
 *    resp, deliver_sm and its resp, enquire_link, unbind, generic_nack). The
 *    package's `PDU#toBuffer` costs ~14 µs a submit_sm (for-in over the
 *    prototype, closures per field), which alone would eat most of a core at
 *    the target rate; ours is ~1 µs. They are cross-checked byte for byte
 *    against the package's encoder in test/integration/smpp-wire.test.ts,
 *    and decoded by the package at the other end, so the simulator and the
 *    client never share a code path for these PDUs;
 *  - the guards: interface_version 0x34 on bind (the package defaults to
 *    0x50), data_coding always explicit, short_message always bytes and at
 *    most 254 octets, address fields within their SMPP lengths and ASCII,
 *    `rejectUnauthorized: true` for TLS, and a session destroyed on `error`
 *    (after a decode error the package stops reading the socket for good);
 *  - writes corked per event-loop tick, so a window's worth of submit_sm
 *    leaves in one writev instead of one syscall each.
 *
 * Reading is ours: `PduReader` frames PDUs off the socket and
 * `decodeIncoming` decodes deliver_sm and the message_id answers by hand
 * (the same objects the package gives, checked against it on generated PDUs
 * in test/unit/smpp-decode.test.ts); every other command is decoded by the
 * package, with one change made once, below, through its public
 * `addCommand`/`addTLV`:
 * submit_sm and deliver_sm keep short_message (and message_payload) as raw
 * bytes and SMPP times as the strings on the wire. The package would decode
 * the text by data_coding on every PDU (~9 µs of its GSM table rebuilding
 * per receipt), lossily (GSM-decoding an ASCII receipt turns `_` into `§`),
 * and turn validity periods into Dates relative to the receive time. We
 * decode text where it is needed (`messageText`, `receiptText`), by
 * data_coding, with src/core/gsm7.ts. This file is the package's only
 * importer, so the change is visible nowhere else.
 */
import { isIP } from 'node:net';
import smpp from 'smpp';
import type { RawServer, RawSession } from 'smpp';
import { GatewayError } from '../core/errors.js';
import { decodeGsm7, decodeUcs2 } from '../core/gsm7.js';

// Raw short_message / message_payload and string times (see the header).
for (const command of ['submit_sm', 'deliver_sm'] as const) {
  const def = smpp.commands[command];
  if (def === undefined || def.params === undefined) throw new Error(`smpp package without ${command}`);
  const params: Record<string, { type: unknown; default?: unknown }> = {};
  for (const [name, p] of Object.entries(def.params)) {
    // Same wire types, in the same order; only the decode/encode filters go.
    params[name] = 'default' in p ? { type: p.type, default: p.default } : { type: p.type };
  }
  smpp.addCommand(command, { id: def.id, params });
}
{
  const tlv = smpp.tlvs['message_payload'];
  if (tlv === undefined) throw new Error('smpp package without message_payload');
  smpp.addTLV('message_payload', { id: tlv.id, type: tlv.type });
}

// ------------------------------------------------------------------ constants

export const COMMAND_ID = {
  generic_nack: 0x80000000,
  bind_receiver: 0x00000001,
  bind_receiver_resp: 0x80000001,
  bind_transmitter: 0x00000002,
  bind_transmitter_resp: 0x80000002,
  submit_sm: 0x00000004,
  submit_sm_resp: 0x80000004,
  deliver_sm: 0x00000005,
  deliver_sm_resp: 0x80000005,
  unbind: 0x00000006,
  unbind_resp: 0x80000006,
  bind_transceiver: 0x00000009,
  bind_transceiver_resp: 0x80000009,
  enquire_link: 0x00000015,
  enquire_link_resp: 0x80000015,
  data_sm: 0x00000103,
  data_sm_resp: 0x80000103,
} as const;

/** command_status values the gateway branches on (SMPP 3.4 §5.1.3). */
export const STATUS = {
  ESME_ROK: 0x00,
  ESME_RINVMSGLEN: 0x01,
  ESME_RINVCMDLEN: 0x02,
  ESME_RINVCMDID: 0x03,
  ESME_RINVBNDSTS: 0x04,
  ESME_RALYBND: 0x05,
  ESME_RSYSERR: 0x08,
  ESME_RINVSRCADR: 0x0a,
  ESME_RINVDSTADR: 0x0b,
  ESME_RBINDFAIL: 0x0d,
  ESME_RINVPASWD: 0x0e,
  ESME_RINVSYSID: 0x0f,
  ESME_RMSGQFUL: 0x14,
  ESME_RTHROTTLED: 0x58,
  ESME_RX_T_APPN: 0x64,
  ESME_RX_P_APPN: 0x65,
} as const;

export const SMPP_VERSION_34 = 0x34;
/** esm_class bits. */
export const ESM_UDHI = 0x40;
export const ESM_DELIVERY_RECEIPT = 0x04;
/** sm_length is one octet and SMPP 3.4 caps short_message at 254. */
export const MAX_SHORT_MESSAGE = 254;
/** The package refuses PDUs longer than this while reading. */
export const MAX_PDU_LENGTH: number = smpp.PDU.maxLength;

const STATUS_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(smpp.errors)) if (!STATUS_NAMES.has(value)) STATUS_NAMES.set(value, name);

/** `ESME_RTHROTTLED`, or `ESME_0x000000ab` for a status the package does not name (vendor codes). */
export function statusName(status: number): string {
  return STATUS_NAMES.get(status) ?? `ESME_0x${status.toString(16).padStart(8, '0')}`;
}

/** Throttling answers: slow down and retry, not a failure. */
export function isThrottleStatus(status: number): boolean {
  return status === STATUS.ESME_RTHROTTLED || status === STATUS.ESME_RMSGQFUL;
}

// ------------------------------------------------------------------ PDU types

export interface PduHeader {
  readonly command_id: number;
  readonly command_status: number;
  readonly sequence_number: number;
  readonly command_length: number;
}

/**
 * Body fields of a PDU as decoded. Everything is optional: the package stops
 * decoding at command_length, so a short PDU (or an error response, which has
 * no body) leaves fields absent.
 */
export interface BindBody {
  readonly system_id?: string;
  readonly password?: string;
  readonly system_type?: string;
  readonly interface_version?: number;
  readonly addr_ton?: number;
  readonly addr_npi?: number;
  readonly address_range?: string;
}
export interface MessageBody {
  readonly service_type?: string;
  readonly source_addr_ton?: number;
  readonly source_addr_npi?: number;
  readonly source_addr?: string;
  readonly dest_addr_ton?: number;
  readonly dest_addr_npi?: number;
  readonly destination_addr?: string;
  readonly esm_class?: number;
  readonly protocol_id?: number;
  readonly priority_flag?: number;
  /** SMPP time as on the wire (`YYMMDDhhmmsstnnp`), or empty. */
  readonly schedule_delivery_time?: string;
  readonly validity_period?: string;
  readonly registered_delivery?: number;
  readonly replace_if_present_flag?: number;
  readonly data_coding?: number;
  readonly sm_default_msg_id?: number;
  /** Raw user data, UDH included when esm_class has 0x40. */
  readonly short_message?: Buffer;
  // TLVs
  readonly receipted_message_id?: string;
  readonly message_state?: number;
  readonly network_error_code?: Buffer;
  /** Raw; used instead of short_message for long content. */
  readonly message_payload?: Buffer;
  readonly sar_msg_ref_num?: number;
  readonly sar_total_segments?: number;
  readonly sar_segment_seqnum?: number;
}

type BindCommand = 'bind_transceiver' | 'bind_transmitter' | 'bind_receiver';
type BindRespCommand = 'bind_transceiver_resp' | 'bind_transmitter_resp' | 'bind_receiver_resp';
type EmptyCommand = 'enquire_link' | 'enquire_link_resp' | 'unbind' | 'unbind_resp' | 'generic_nack';
type OtherCommand =
  | 'alert_notification' | 'outbind' | 'query_sm' | 'query_sm_resp' | 'cancel_sm' | 'cancel_sm_resp'
  | 'replace_sm' | 'replace_sm_resp' | 'submit_multi' | 'submit_multi_resp' | 'broadcast_sm' | 'broadcast_sm_resp'
  | 'query_broadcast_sm' | 'query_broadcast_sm_resp' | 'cancel_broadcast_sm' | 'cancel_broadcast_sm_resp'
  /** command_id the package does not know. */
  | 'unknown';

export type IncomingPdu =
  | (PduHeader & BindBody & { readonly command: BindCommand })
  | (PduHeader & { readonly command: BindRespCommand; readonly system_id?: string })
  | (PduHeader & MessageBody & { readonly command: 'submit_sm' })
  | (PduHeader & MessageBody & { readonly command: 'deliver_sm' })
  | (PduHeader & MessageBody & { readonly command: 'data_sm' })
  | (PduHeader & { readonly command: 'submit_sm_resp' | 'deliver_sm_resp' | 'data_sm_resp'; readonly message_id?: string })
  | (PduHeader & { readonly command: EmptyCommand })
  | (PduHeader & { readonly command: OtherCommand });

export function isResponse(pdu: PduHeader): boolean {
  return (pdu.command_id & 0x80000000) !== 0;
}

/** Fields of an outgoing bind. interface_version is always 0x34 (set by the encoder). */
export interface BindFields {
  readonly system_id: string;
  readonly password: string;
  readonly system_type: string;
  readonly addr_ton?: number;
  readonly addr_npi?: number;
  readonly address_range?: string;
}

/** Fields of an outgoing submit_sm or deliver_sm. data_coding and short_message are mandatory. */
export interface MessageFields {
  readonly service_type?: string;
  readonly source_addr_ton: number;
  readonly source_addr_npi: number;
  readonly source_addr: string;
  readonly dest_addr_ton: number;
  readonly dest_addr_npi: number;
  readonly destination_addr: string;
  readonly esm_class: number;
  readonly protocol_id?: number;
  readonly priority_flag?: number;
  /** SMPP time, 16 characters (`YYMMDDhhmmsstnnp`), or empty. */
  readonly schedule_delivery_time?: string;
  readonly validity_period?: string;
  readonly registered_delivery: number;
  readonly replace_if_present_flag?: number;
  readonly data_coding: number;
  readonly sm_default_msg_id?: number;
  /** User data (with the UDH when esm_class has 0x40); at most 254 octets. */
  readonly short_message: Uint8Array;
  // TLVs (deliver_sm receipts)
  readonly receipted_message_id?: string;
  readonly message_state?: number;
  /** network_error_code: 3 octets (network type, error code). */
  readonly network_error_code?: Uint8Array;
}

// ------------------------------------------------------------------ encoders

const HEADER = 16;
const TLV_RECEIPTED_MESSAGE_ID = 0x001e;
const TLV_NETWORK_ERROR_CODE = 0x0423;
const TLV_MESSAGE_STATE = 0x0427;

function invalid(field: string, why: string): GatewayError {
  return new GatewayError('SMPP_PDU_INVALID', `${field}: ${why}`);
}

/** Octets a C-Octet String takes (with its NUL); throws when too long or not ASCII. */
function cstringSize(value: string | undefined, max: number, field: string): number {
  if (value === undefined || value.length === 0) return 1;
  if (value.length + 1 > max) throw invalid(field, `longer than ${max - 1} characters`);
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c > 0x7f) throw invalid(field, 'not printable ASCII');
  }
  return value.length + 1;
}

function writeCString(buf: Buffer, off: number, value: string | undefined): number {
  if (value !== undefined) {
    for (let i = 0; i < value.length; i++) buf[off++] = value.charCodeAt(i);
  }
  buf[off++] = 0;
  return off;
}

function octet(value: number | undefined, field: string): number {
  const v = value ?? 0;
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw invalid(field, `not an octet: ${v}`);
  return v;
}

function writeHeader(buf: Buffer, commandId: number, status: number, seq: number): void {
  buf.writeUInt32BE(buf.length, 0);
  buf.writeUInt32BE(commandId, 4);
  buf.writeUInt32BE(status, 8);
  buf.writeUInt32BE(seq, 12);
}

function checkSequence(seq: number): void {
  if (!Number.isInteger(seq) || seq < 0 || seq > 0x7fffffff) throw invalid('sequence_number', `out of range: ${seq}`);
}

/**
 * submit_sm (command 0x04) or deliver_sm (0x05): same body (SMPP 3.4 §4.4.1,
 * §4.6.1). Throws GatewayError SMPP_PDU_INVALID before anything is written.
 */
export function encodeMessagePdu(commandId: 0x04 | 0x05, seq: number, f: MessageFields): Buffer {
  checkSequence(seq);
  const sm = f.short_message;
  if (!(sm instanceof Uint8Array)) throw invalid('short_message', 'not bytes');
  if (sm.length > MAX_SHORT_MESSAGE) throw invalid('short_message', `${sm.length} octets, more than ${MAX_SHORT_MESSAGE}`);
  if (typeof f.data_coding !== 'number') throw invalid('data_coding', 'must be explicit');
  // Checked before anything is written (locals, not an array: this runs once per submit_sm).
  const sourceTon = octet(f.source_addr_ton, 'source_addr_ton');
  const sourceNpi = octet(f.source_addr_npi, 'source_addr_npi');
  const destTon = octet(f.dest_addr_ton, 'dest_addr_ton');
  const destNpi = octet(f.dest_addr_npi, 'dest_addr_npi');
  const esmClass = octet(f.esm_class, 'esm_class');
  const protocolId = octet(f.protocol_id, 'protocol_id');
  const priorityFlag = octet(f.priority_flag, 'priority_flag');
  const registeredDelivery = octet(f.registered_delivery, 'registered_delivery');
  const replaceIfPresent = octet(f.replace_if_present_flag, 'replace_if_present_flag');
  const dataCoding = octet(f.data_coding, 'data_coding');
  const smDefaultMsgId = octet(f.sm_default_msg_id, 'sm_default_msg_id');
  let size = HEADER + 11 + 1 + sm.length;
  size += cstringSize(f.service_type, 6, 'service_type');
  size += cstringSize(f.source_addr, 21, 'source_addr');
  size += cstringSize(f.destination_addr, 21, 'destination_addr');
  size += cstringSize(f.schedule_delivery_time, 17, 'schedule_delivery_time');
  size += cstringSize(f.validity_period, 17, 'validity_period');
  if (f.receipted_message_id !== undefined) size += 4 + cstringSize(f.receipted_message_id, 65, 'receipted_message_id');
  if (f.message_state !== undefined) size += 5;
  if (f.network_error_code !== undefined) {
    if (f.network_error_code.length !== 3) throw invalid('network_error_code', 'must be 3 octets');
    size += 7;
  }
  const buf = Buffer.allocUnsafe(size);
  writeHeader(buf, commandId, 0, seq);
  let o = HEADER;
  o = writeCString(buf, o, f.service_type);
  buf[o++] = sourceTon;
  buf[o++] = sourceNpi;
  o = writeCString(buf, o, f.source_addr);
  buf[o++] = destTon;
  buf[o++] = destNpi;
  o = writeCString(buf, o, f.destination_addr);
  buf[o++] = esmClass;
  buf[o++] = protocolId;
  buf[o++] = priorityFlag;
  o = writeCString(buf, o, f.schedule_delivery_time);
  o = writeCString(buf, o, f.validity_period);
  buf[o++] = registeredDelivery;
  buf[o++] = replaceIfPresent;
  buf[o++] = dataCoding;
  buf[o++] = smDefaultMsgId;
  buf[o++] = sm.length;
  buf.set(sm, o);
  o += sm.length;
  if (f.receipted_message_id !== undefined) {
    buf.writeUInt16BE(TLV_RECEIPTED_MESSAGE_ID, o);
    buf.writeUInt16BE(f.receipted_message_id.length + 1, o + 2);
    o = writeCString(buf, o + 4, f.receipted_message_id);
  }
  if (f.message_state !== undefined) {
    buf.writeUInt16BE(TLV_MESSAGE_STATE, o);
    buf.writeUInt16BE(1, o + 2);
    buf[o + 4] = octet(f.message_state, 'message_state');
    o += 5;
  }
  if (f.network_error_code !== undefined) {
    buf.writeUInt16BE(TLV_NETWORK_ERROR_CODE, o);
    buf.writeUInt16BE(3, o + 2);
    buf.set(f.network_error_code, o + 4);
    o += 7;
  }
  return buf;
}

/**
 * A response carrying a message_id (submit_sm_resp, deliver_sm_resp,
 * data_sm_resp). With a non-zero status the body is omitted (SMPP 3.4
 * §4.4.2), as the package also does.
 */
export function encodeMessageIdResp(commandId: number, seq: number, status: number, messageId = ''): Buffer {
  checkSequence(seq);
  const body = status === 0 ? cstringSize(messageId, 65, 'message_id') : 0;
  const buf = Buffer.allocUnsafe(HEADER + body);
  writeHeader(buf, commandId, status, seq);
  if (status === 0) writeCString(buf, HEADER, messageId);
  return buf;
}

/** A header-only PDU: enquire_link(_resp), unbind(_resp), generic_nack. */
export function encodeEmptyPdu(commandId: number, seq: number, status = 0): Buffer {
  checkSequence(seq);
  const buf = Buffer.allocUnsafe(HEADER);
  writeHeader(buf, commandId, status, seq);
  return buf;
}

/** bind_transceiver / bind_transmitter / bind_receiver, always interface_version 0x34. */
export function encodeBind(command: BindCommand, seq: number, f: BindFields): Buffer {
  checkSequence(seq);
  const size =
    HEADER +
    cstringSize(f.system_id, 16, 'system_id') +
    cstringSize(f.password, 9, 'password') +
    cstringSize(f.system_type, 13, 'system_type') +
    3 +
    cstringSize(f.address_range, 41, 'address_range');
  const buf = Buffer.allocUnsafe(size);
  writeHeader(buf, COMMAND_ID[command], 0, seq);
  let o = writeCString(buf, HEADER, f.system_id);
  o = writeCString(buf, o, f.password);
  o = writeCString(buf, o, f.system_type);
  buf[o++] = SMPP_VERSION_34;
  buf[o++] = octet(f.addr_ton, 'addr_ton');
  buf[o++] = octet(f.addr_npi, 'addr_npi');
  writeCString(buf, o, f.address_range);
  return buf;
}

/** bind_*_resp: system_id on success; header only on error. */
export function encodeBindResp(command: BindRespCommand, seq: number, status: number, systemId: string): Buffer {
  return encodeMessageIdResp(COMMAND_ID[command], seq, status, systemId);
}

/** Decode one whole PDU with the package (tests, and tools that hold a buffer). */
export function decodePdu(buf: Buffer): IncomingPdu {
  const pdu = new smpp.PDU(buf);
  return pdu as unknown as IncomingPdu;
}

// ------------------------------------------------------------------ decoding

type TlvType = { read(buffer: Buffer, offset: number, length: number): unknown };
type TlvFilter = { decode(this: Record<string, unknown>, value: unknown, skipUdh?: unknown): unknown };

/** A C-octet string as the package reads it: up to the NUL (or the buffer's end), 7-bit. */
function readCString(buf: Buffer, o: number): string {
  let end = o;
  while (end < buf.length && buf[end] !== 0) end++;
  // Most receipt fields (service_type, the times) are empty: no call into the buffer's decoder for them.
  return end === o ? '' : buf.toString('ascii', o, end);
}

/**
 * A decoded deliver_sm: one object shape for every PDU (header, the
 * mandatory fields in wire order, then the TLVs receipts and MO carry), so
 * the fields are plain in-object stores and the readers of the PDU see one
 * shape. A field the PDU does not reach, or a TLV it does not carry, is
 * undefined, as it is absent from the package's PDU object; a TLV outside
 * this list is added as the package adds it.
 */
class DeliverSmPdu {
  command_length: number;
  command_id: number;
  command_status: number;
  sequence_number: number;
  readonly command = 'deliver_sm' as const;
  service_type: string | undefined = undefined;
  source_addr_ton: number | undefined = undefined;
  source_addr_npi: number | undefined = undefined;
  source_addr: string | undefined = undefined;
  dest_addr_ton: number | undefined = undefined;
  dest_addr_npi: number | undefined = undefined;
  destination_addr: string | undefined = undefined;
  esm_class: number | undefined = undefined;
  protocol_id: number | undefined = undefined;
  priority_flag: number | undefined = undefined;
  schedule_delivery_time: string | undefined = undefined;
  validity_period: string | undefined = undefined;
  registered_delivery: number | undefined = undefined;
  replace_if_present_flag: number | undefined = undefined;
  data_coding: number | undefined = undefined;
  sm_default_msg_id: number | undefined = undefined;
  short_message: Buffer | undefined = undefined;
  receipted_message_id: string | undefined = undefined;
  message_state: number | undefined = undefined;
  network_error_code: Buffer | undefined = undefined;
  message_payload: Buffer | undefined = undefined;
  sar_msg_ref_num: number | undefined = undefined;
  sar_total_segments: number | undefined = undefined;
  sar_segment_seqnum: number | undefined = undefined;

  constructor(length: number, id: number, status: number, seq: number) {
    this.command_length = length;
    this.command_id = id;
    this.command_status = status;
    this.sequence_number = seq;
  }
}

/** A decoded submit_sm_resp / deliver_sm_resp: one shape, message_id undefined when the PDU has no body. */
class MessageIdRespPdu {
  command_length: number;
  command_id: number;
  command_status: number;
  sequence_number: number;
  command: 'submit_sm_resp' | 'deliver_sm_resp';
  message_id: string | undefined = undefined;

  constructor(length: number, id: number, status: number, seq: number, command: 'submit_sm_resp' | 'deliver_sm_resp') {
    this.command_length = length;
    this.command_id = id;
    this.command_status = status;
    this.sequence_number = seq;
    this.command = command;
  }
}

/**
 * The mandatory fields of a deliver_sm in wire order, into `p`, stopping
 * where the PDU ends (as the package does: fields past the end are absent).
 * Straight-line, no closures. Returns the offset after the last field read.
 */
function readDeliverFields(buf: Buffer, end: number, p: DeliverSmPdu): number {
  let o = HEADER;
  let s: string;
  if (o >= end) return o;
  s = readCString(buf, o);
  p.service_type = s;
  o += s.length + 1;
  if (o >= end) return o;
  p.source_addr_ton = buf.readUInt8(o++);
  if (o >= end) return o;
  p.source_addr_npi = buf.readUInt8(o++);
  if (o >= end) return o;
  s = readCString(buf, o);
  p.source_addr = s;
  o += s.length + 1;
  if (o >= end) return o;
  p.dest_addr_ton = buf.readUInt8(o++);
  if (o >= end) return o;
  p.dest_addr_npi = buf.readUInt8(o++);
  if (o >= end) return o;
  s = readCString(buf, o);
  p.destination_addr = s;
  o += s.length + 1;
  if (o >= end) return o;
  p.esm_class = buf.readUInt8(o++);
  if (o >= end) return o;
  p.protocol_id = buf.readUInt8(o++);
  if (o >= end) return o;
  p.priority_flag = buf.readUInt8(o++);
  if (o >= end) return o;
  s = readCString(buf, o);
  p.schedule_delivery_time = s;
  o += s.length + 1;
  if (o >= end) return o;
  s = readCString(buf, o);
  p.validity_period = s;
  o += s.length + 1;
  if (o >= end) return o;
  p.registered_delivery = buf.readUInt8(o++);
  if (o >= end) return o;
  p.replace_if_present_flag = buf.readUInt8(o++);
  if (o >= end) return o;
  p.data_coding = buf.readUInt8(o++);
  if (o >= end) return o;
  p.sm_default_msg_id = buf.readUInt8(o++);
  if (o >= end) return o;
  const length = buf.readUInt8(o);
  const sm = buf.subarray(o + 1, o + 1 + length);
  p.short_message = sm;
  return o + sm.length + 1;
}

const TLV_MAP_DELIVER_SM = smpp.commands['deliver_sm']?.tlvMap;
const TLV_MAP_SUBMIT_SM_RESP = smpp.commands['submit_sm_resp']?.tlvMap;
const TLV_MAP_DELIVER_SM_RESP = smpp.commands['deliver_sm_resp']?.tlvMap;

/**
 * The PDUs the gateway reads most — deliver_sm and the message_id answers —
 * decoded here (the package's decoder costs ~3% of the gateway's CPU under
 * bench:peer: a PDU object built field by field through lookups, then a
 * for-in filter pass); any other command goes to the package. The result has
 * the fields and values of the package's object, including for short and
 * malformed PDUs and every TLV (read with the package's own TLV table and
 * filters): test/unit/smpp-decode.test.ts compares the two on generated
 * PDUs. It differs only in form: one object shape per command (fields not
 * reached are undefined rather than absent, in a fixed order).
 */
export function decodeIncoming(buf: Buffer): IncomingPdu {
  const commandId = buf.readUInt32BE(4);
  if (commandId !== COMMAND_ID.deliver_sm && commandId !== COMMAND_ID.submit_sm_resp && commandId !== COMMAND_ID.deliver_sm_resp) return decodePdu(buf);
  const commandLength = buf.readUInt32BE(0);
  if (commandLength > MAX_PDU_LENGTH) throw new Error(`PDU length was too large (${commandLength}, maximum is ${MAX_PDU_LENGTH}).`);
  const status = buf.readUInt32BE(8);
  const seq = buf.readUInt32BE(12);
  let pdu: DeliverSmPdu | MessageIdRespPdu;
  let tlvMap: Record<string, string> | undefined;
  let o = HEADER;
  if (commandId === COMMAND_ID.deliver_sm) {
    const d = new DeliverSmPdu(commandLength, commandId, status, seq);
    o = readDeliverFields(buf, commandLength, d);
    pdu = d;
    tlvMap = TLV_MAP_DELIVER_SM;
  } else {
    const isSubmit = commandId === COMMAND_ID.submit_sm_resp;
    const r = new MessageIdRespPdu(commandLength, commandId, status, seq, isSubmit ? 'submit_sm_resp' : 'deliver_sm_resp');
    if (o < commandLength) {
      const v = readCString(buf, o);
      r.message_id = v;
      o += v.length + 1;
    }
    pdu = r;
    tlvMap = isSubmit ? TLV_MAP_SUBMIT_SM_RESP : TLV_MAP_DELIVER_SM_RESP;
  }
  if (o + 4 <= commandLength) readTlvs(buf, o, commandLength, pdu as unknown as Record<string | number, unknown>, tlvMap);
  return pdu;
}

/** The TLVs from `o` to `end`, as the package reads them (its table, its types, its decode filters). */
function readTlvs(buf: Buffer, o: number, end: number, pdu: Record<string | number, unknown>, tlvMap: Record<string, string> | undefined): void {
  let filtered: string[] | undefined;
  while (o + 4 <= end) {
    const id = buf.readUInt16BE(o);
    const length = buf.readUInt16BE(o + 2);
    o += 4;
    const tlv = smpp.tlvsById[id];
    if (tlv === undefined) {
      pdu[id] = buf.slice(o, o + length);
      o += length;
      continue;
    }
    const tag = tlvMap?.[tlv.tag] ?? tlv.tag;
    const value = (tlv.type as TlvType).read(buf, o, length);
    if (tlv.multiple === true) {
      const list = (pdu[tag] as unknown[] | undefined) ?? [];
      list.push(value);
      pdu[tag] = list;
    } else {
      pdu[tag] = value;
    }
    // Only TLVs with a decode filter need a second pass (receipts' TLVs have none).
    if ((smpp.tlvs[tag] as { filter?: TlvFilter } | undefined)?.filter !== undefined) (filtered ??= []).push(tag);
    o += length;
  }
  if (filtered !== undefined) applyTlvFilters(pdu, filtered);
}

/** The package's decode filters of the TLVs that have one (its `_filter('decode')`; the fields of these commands have none). */
function applyTlvFilters(pdu: Record<string | number, unknown>, tags: readonly string[]): void {
  for (const key of new Set(tags)) {
    const def = smpp.tlvs[key] as { filter?: TlvFilter; multiple?: boolean } | undefined;
    const filter = def?.filter;
    if (filter === undefined) continue;
    if (def?.multiple === true) {
      const list = pdu[key] as unknown[];
      list.forEach((value, i) => (list[i] = filter.decode.call(pdu, value, true)));
    } else if (key === 'message_payload') {
      const sm = pdu['short_message'] as { message?: { length?: number } } | undefined;
      pdu[key] = filter.decode.call(pdu, pdu[key], sm?.message?.length);
    } else {
      pdu[key] = filter.decode.call(pdu, pdu[key], true);
    }
  }
}

/**
 * Frames PDUs off a socket in flowing mode (instead of the package's
 * `read(4)` then `read(n)` per PDU, each a copy out of the stream's buffer
 * list) and decodes each with `decodeIncoming`. A length under the header's
 * or over MAX_PDU_LENGTH is a framing error: the stream cannot be re-synced.
 */
export class PduReader {
  private rest: Buffer | undefined;
  /** After an error nothing more is read (the stream cannot be re-synced). */
  private failed = false;

  constructor(
    private readonly onPdu: (pdu: IncomingPdu) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.failed) return;
    const buf = this.rest === undefined ? chunk : Buffer.concat([this.rest, chunk]);
    this.rest = undefined;
    let o = 0;
    while (buf.length - o >= 4) {
      const length = buf.readUInt32BE(o);
      if (length < HEADER || length > MAX_PDU_LENGTH) {
        this.fail(new Error(`PDU length ${length} is outside ${HEADER}–${MAX_PDU_LENGTH}`));
        return;
      }
      if (buf.length - o < length) break;
      let pdu: IncomingPdu;
      try {
        pdu = decodeIncoming(buf.subarray(o, o + length));
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      o += length;
      this.onPdu(pdu);
    }
    if (o < buf.length) this.rest = buf.subarray(o);
  }

  private fail(err: Error): void {
    this.failed = true;
    this.rest = undefined;
    this.onError(err);
  }
}

/** Encode with the package's own encoder (tests cross-check ours against it). */
export function encodeWithPackage(command: string, fields: Record<string, unknown>): Buffer {
  return new smpp.PDU(command, fields).toBuffer();
}

// ------------------------------------------------------------------ text codecs

/**
 * GSM 03.38 default alphabet (unpacked septets, one per octet), for the
 * simulator's MO and receipt text; the gateway's own outbound text goes
 * through src/core/gsm7.ts. Characters outside the alphabet become spaces.
 */
export function gsmEncode(text: string): Buffer {
  return smpp.gsmCoder.encode(text, 0);
}

export function gsmDecode(bytes: Buffer): string {
  return smpp.gsmCoder.decode(bytes, 0);
}

/** UTF-16BE for the simulator's MO text (UCS-2, data_coding 8). */
export function utf16beEncode(text: string): Buffer {
  const b = Buffer.from(text, 'utf16le');
  b.swap16();
  return b;
}

/** The user data of a deliver_sm: message_payload when present (it replaces short_message), else short_message. */
export function userData(pdu: MessageBody): Buffer {
  const payload = pdu.message_payload;
  if (payload !== undefined && payload.length > 0) return payload;
  return pdu.short_message ?? EMPTY;
}
const EMPTY = Buffer.alloc(0);

/**
 * Text of an MO (or any user data) by data_coding, UDH skipped when
 * esm_class has 0x40. 0x00 GSM 03.38; 0x08 UCS-2; 0x01 IA5, 0x03 Latin-1 and
 * 8-bit codings as Latin-1; GSM DCS groups 0x10–0x3F and 0xF0–0xFF by their
 * alphabet bits.
 */
export function messageText(bytes: Uint8Array, dataCoding: number, esmClass: number): string {
  let data = bytes;
  if ((esmClass & ESM_UDHI) !== 0 && data.length > 0) {
    const udhl = data[0] as number;
    data = data.subarray(Math.min(data.length, 1 + udhl));
  }
  switch (textAlphabet(dataCoding)) {
    case 'gsm':
      return decodeGsm7(data);
    case 'ucs2':
      return decodeUcs2(data);
    default:
      return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
  }
}

function textAlphabet(dc: number): 'gsm' | 'ucs2' | 'octets' {
  if (dc === 0x00) return 'gsm';
  if (dc === 0x08) return 'ucs2';
  if (dc >= 0x10 && dc <= 0x3f) {
    const a = (dc >> 2) & 0x03;
    return a === 0 ? 'gsm' : a === 2 ? 'ucs2' : 'octets';
  }
  if ((dc & 0xf0) === 0xf0) return (dc & 0x04) !== 0 ? 'octets' : 'gsm';
  return 'octets';
}

/**
 * Text of a delivery receipt. Appendix B text is ASCII in practice whatever
 * data_coding says (SMSCs label it 0, "SMSC default"), and GSM-decoding it
 * would corrupt `_` and `@` in ids, so it is read as Latin-1 — unless it is
 * UCS-2.
 */
export function receiptText(bytes: Uint8Array, dataCoding: number): string {
  if (textAlphabet(dataCoding) === 'ucs2') return decodeUcs2(bytes);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

// ------------------------------------------------------------------ sessions

export interface SessionConnectOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  /** Extra trust anchors for TLS (tests, private CAs). Certificates are always verified. */
  readonly ca?: string | Buffer | (string | Buffer)[];
}

type PduListener = (pdu: IncomingPdu) => void;

/**
 * One SMPP connection. Create a new one for every (re)connect: the package's
 * `Session#connect()` forgets pending callbacks silently, so this facade does
 * not offer it.
 *
 * Errors destroy the session (the package stops reading after a decode
 * error, so a session that saw one is useless). Listeners that throw destroy
 * it too: an exception inside the package's read loop would leave it stuck.
 */
export class SmppSession {
  private readonly raw: RawSession;
  private readonly tls: boolean;
  private readonly pduListeners: PduListener[] = [];
  private readonly closeListeners: (() => void)[] = [];
  private readonly errorListeners: ((err: Error) => void)[] = [];
  private corked = false;
  private closed = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.raw.socket.uncork();
  };

  private constructor(raw: RawSession, tls: boolean) {
    this.raw = raw;
    this.tls = tls;
    // Reading is ours (PduReader, flowing mode); the package's 'readable' loop is taken off before any data can arrive.
    const reader = new PduReader(
      (pdu) => {
        if (this.closed || raw.socket.destroyed) return;
        try {
          for (const l of this.pduListeners) l(pdu);
        } catch (err) {
          this.fail(err instanceof Error ? err : new Error(String(err)));
        }
      },
      (err) => this.fail(err),
    );
    raw.socket.removeAllListeners('readable');
    raw.socket.on('data', (chunk: Buffer) => {
      if (!this.closed) reader.push(chunk);
    });
    raw.on('error', (err: Error) => this.fail(err));
    raw.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      for (const l of this.closeListeners) l();
    });
  }

  /** Open a client connection; listen with `onConnect`. */
  static connect(options: SessionConnectOptions): SmppSession {
    const raw = smpp.connect({
      host: options.host,
      port: options.port,
      tls: options.tls,
      // The package passes its options to tls.connect and defaults to not
      // verifying the SMSC's certificate; a government gateway always does.
      rejectUnauthorized: true,
      // SNI carries host names only (RFC 6066); an IP host is still checked against the certificate's IP SANs.
      ...(options.tls && isIP(options.host) === 0 ? { servername: options.host } : {}),
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
    });
    return new SmppSession(raw, options.tls);
  }

  /** Wrap a session the package's server created for an accepted socket. */
  static accept(raw: RawSession): SmppSession {
    return new SmppSession(raw, false);
  }

  /** Called once the connection is usable (after the TLS handshake for TLS). */
  onConnect(listener: () => void): void {
    this.raw.once(this.tls ? 'secureConnect' : 'connect', listener);
  }

  onPdu(listener: PduListener): void {
    this.pduListeners.push(listener);
  }

  /** Called once when the socket closes, for whatever reason. */
  onClose(listener: () => void): void {
    this.closeListeners.push(listener);
  }

  /** Called for socket and decode errors; the session is already being destroyed. */
  onError(listener: (err: Error) => void): void {
    this.errorListeners.push(listener);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get writable(): boolean {
    return !this.closed && this.raw.socket.writable;
  }

  /** Bytes queued in the socket, not yet handed to the kernel. */
  get bufferedBytes(): number {
    return this.raw.socket.writableLength;
  }

  get remoteAddress(): string {
    const s = this.raw.socket;
    return `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`;
  }

  /**
   * Write an encoded PDU. Writes within one tick are corked together. Returns
   * false when the socket is no longer writable (nothing was sent).
   */
  write(pdu: Buffer): boolean {
    if (!this.writable) return false;
    const socket = this.raw.socket;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(this.uncork);
    }
    socket.write(pdu);
    return true;
  }

  /** Half-close after flushing (graceful). */
  close(): void {
    this.raw.socket.end();
  }

  /** Drop the connection now; unsent writes are discarded. */
  destroy(): void {
    this.raw.socket.destroy();
  }

  private fail(err: Error): void {
    // Listeners are told after the destroy has begun, so none can keep using the session.
    this.raw.socket.destroy();
    for (const l of this.errorListeners) l(err);
  }
}

export interface SmppServer {
  /** Listen; resolves with the port actually bound (useful with port 0). */
  listen(port: number, host: string): Promise<number>;
  /** Stop listening and destroy every open session. */
  close(): Promise<void>;
  readonly sessionCount: number;
}

/** An SMPP server (the simulator's): one SmppSession per accepted connection; TLS when given a key and certificate. */
export function createSmppServer(
  onSession: (session: SmppSession) => void,
  tls?: { readonly key: string | Buffer; readonly cert: string | Buffer },
): SmppServer {
  const sessions = new Set<SmppSession>();
  const server: RawServer = smpp.createServer(tls !== undefined ? { key: tls.key, cert: tls.cert } : {}, (raw: RawSession) => {
    const s = SmppSession.accept(raw);
    sessions.add(s);
    s.onClose(() => sessions.delete(s));
    onSession(s);
  });
  return {
    listen(port, host) {
      return new Promise<number>((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        server.once('error', onError);
        server.listen(port, host, () => {
          server.off('error', onError);
          const addr = server.address();
          resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
        });
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        sessions.clear();
        if (!server.listening) {
          resolve();
          return;
        }
        server.close(() => resolve());
      });
    },
    get sessionCount() {
      return sessions.size;
    },
  };
}
