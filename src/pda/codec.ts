/**
 * The PDA wire codec: one protocol frame per binary WebSocket message.
 * docs/pda-protocol.md is the specification; this file implements it exactly
 * and a property test checks the two agree on every frame.
 *
 *   offset size  field
 *   0      1     type
 *   1      1     flags   (reserved bits must be zero)
 *   2      4     seq     (u32 BE, meaning per frame type; 0 where unused)
 *   6      4     length  (u32 BE, payload bytes; must equal what follows)
 *   10     n     payload
 *
 * The encoding is canonical: any byte string that decodes re-encodes to the
 * same bytes. Decoding never throws: it returns the close reason a receiver
 * must end the session with, so malformed input from the network can only
 * ever cost its own session. Encoding our own frames with a field out of its
 * bound is a bug and throws PDA_FRAME_INVALID.
 *
 * Pure apart from Buffer (the fast way to build bytes in Node); no I/O.
 */
import { GatewayError } from '../core/errors.js';

export const PROTOCOL_VERSION = 1;
/** Oldest protocol version a server of this build still speaks. */
export const MIN_PROTOCOL_VERSION = 1;

export const HEADER_BYTES = 10;
/** Protocol-wide ceiling on one frame, header included. Deployments set lower limits per direction. */
export const MAX_FRAME_BYTES = 32 * 1024;
export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;
export const MAX_DEVICE_ID_BYTES = 64;
export const MAX_MESSAGE_ID_BYTES = 64;
export const MAX_CLASSIFICATION_BYTES = 32;
export const MAX_SENDER_UNIT_BYTES = 128;
export const MAX_BODY_BYTES = 16 * 1024;
/** Sequences listed in one ACK or READ frame. */
export const MAX_ACK_LIST = 512;
export const MAX_CLOSE_TEXT_BYTES = 120;
export const MAX_SEQ = 0xffff_ffff;
/** Message priorities: 0 routine, 1 urgent, 2 flash. Higher goes first on the wire. */
export const MAX_PRIORITY = 2;

export const FRAME_TYPE = {
  HELLO: 0x01,
  CHALLENGE: 0x02,
  RESPONSE: 0x03,
  WELCOME: 0x04,
  MESSAGE: 0x10,
  ACK: 0x11,
  READ: 0x12,
  PING: 0x20,
  PONG: 0x21,
  CLOSE: 0x30,
} as const;

/** MESSAGE flag: this sequence was sent before, in an earlier session (the client may have it). */
export const FLAG_REDELIVERY = 0x01;

/**
 * Why a session ends. On the wire: the CLOSE frame's reason, and the
 * WebSocket close code 4000 + reason.
 */
export const CLOSE_REASON = {
  NORMAL: 0,
  PROTOCOL_ERROR: 1,
  UNKNOWN_FRAME: 2,
  FRAME_TOO_LARGE: 3,
  UNSUPPORTED_VERSION: 4,
  HANDSHAKE_TIMEOUT: 5,
  AUTH_FAILED: 6,
  DEVICE_REVOKED: 7,
  DEVICE_LOST: 8,
  KEY_EXPIRED: 9,
  REPLACED: 10,
  KEY_CHANGED: 11,
  DEVICE_REASSIGNED: 12,
  SERVER_SHUTDOWN: 13,
  OVERLOADED: 14,
  SLOW_CONSUMER: 15,
  INTERNAL: 16,
} as const;

export type CloseReason = (typeof CLOSE_REASON)[keyof typeof CLOSE_REASON];
/** Highest reason code a CLOSE frame may carry (WebSocket codes 4000–4099). */
export const MAX_CLOSE_REASON = 99;
export const WS_CLOSE_BASE = 4000;

const REASON_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(CLOSE_REASON).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, '-')]),
);

/** `auth-failed`, `protocol-error`...: for metrics labels and logs. */
export function reasonName(reason: number): string {
  return REASON_NAMES[reason] ?? `reason-${reason}`;
}

export interface HelloFrame {
  readonly type: 'hello';
  /** Highest protocol version the client speaks. */
  readonly version: number;
  readonly deviceId: string;
  /** Every sequence ≤ this was received by the client (cumulative), 0 for none. */
  readonly lastAck: number;
}
export interface ChallengeFrame {
  readonly type: 'challenge';
  /** The version the server chose for this session. */
  readonly version: number;
  /** How long the nonce is good for, from when it was sent. */
  readonly ttlMs: number;
  readonly nonce: Uint8Array;
}
export interface ResponseFrame {
  readonly type: 'response';
  readonly mac: Uint8Array;
}
export interface WelcomeFrame {
  readonly type: 'welcome';
  /** Every sequence below this is settled (acknowledged, expired or withdrawn). */
  readonly floor: number;
  /** Messages waiting in the device's outbox. */
  readonly backlog: number;
  /** The server pings after this many idle seconds; the client may too. */
  readonly heartbeatSec: number;
  readonly serverTime: number;
}
export interface MessageFrame {
  readonly type: 'message';
  readonly seq: number;
  readonly redelivery: boolean;
  /** Every sequence below this is settled; lets the client advance its cumulative ack over holes. */
  readonly floor: number;
  readonly priority: number;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly messageId: string;
  readonly classification: string;
  readonly senderUnit: string;
  readonly body: string;
}
export interface AckFrame {
  readonly type: 'ack';
  /** Every sequence ≤ this was received. */
  readonly cumulative: number;
  /** Further received sequences above `cumulative`, strictly increasing. */
  readonly selective: readonly number[];
}
export interface ReadFrame {
  readonly type: 'read';
  /** Sequences the officer has opened, strictly increasing. */
  readonly seqs: readonly number[];
}
export interface PingFrame {
  readonly type: 'ping';
  readonly token: number;
}
export interface PongFrame {
  readonly type: 'pong';
  readonly token: number;
}
export interface CloseFrame {
  readonly type: 'close';
  readonly reason: number;
  readonly text: string;
}

export type Frame =
  | HelloFrame
  | ChallengeFrame
  | ResponseFrame
  | WelcomeFrame
  | MessageFrame
  | AckFrame
  | ReadFrame
  | PingFrame
  | PongFrame
  | CloseFrame;

export type FrameKind = Frame['type'];

/** Frames a client may send / a server may send. */
export const CLIENT_FRAMES: ReadonlySet<FrameKind> = new Set(['hello', 'response', 'ack', 'read', 'ping', 'pong', 'close']);
export const SERVER_FRAMES: ReadonlySet<FrameKind> = new Set(['challenge', 'welcome', 'message', 'ping', 'pong', 'close']);

export type DecodeResult =
  | { readonly ok: true; readonly frame: Frame }
  | { readonly ok: false; readonly reason: CloseReason; readonly detail: string };

const TYPE_NAME: Readonly<Record<number, FrameKind>> = {
  [FRAME_TYPE.HELLO]: 'hello',
  [FRAME_TYPE.CHALLENGE]: 'challenge',
  [FRAME_TYPE.RESPONSE]: 'response',
  [FRAME_TYPE.WELCOME]: 'welcome',
  [FRAME_TYPE.MESSAGE]: 'message',
  [FRAME_TYPE.ACK]: 'ack',
  [FRAME_TYPE.READ]: 'read',
  [FRAME_TYPE.PING]: 'ping',
  [FRAME_TYPE.PONG]: 'pong',
  [FRAME_TYPE.CLOSE]: 'close',
};

/** Device ids: 1–64 of A–Z a–z 0–9 . _ : - */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
/** Message ids: 1–64 printable ASCII, no space. */
export const MESSAGE_ID_PATTERN = /^[!-~]{1,64}$/;
/** Classifications: 0–32 of a–z 0–9 - */
export const CLASSIFICATION_PATTERN = /^[a-z0-9-]{0,32}$/;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** A UTF-16 surrogate without its pair: not representable in UTF-8. */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Replace lone surrogates by U+FFFD (what a UTF-8 encoder would do silently). */
export function wellFormed(s: string): string {
  return LONE_SURROGATE.test(s) ? s.replace(new RegExp(LONE_SURROGATE.source, 'g'), '\uFFFD') : s;
}

// ------------------------------------------------------------------ decode

class Reader {
  pos = HEADER_BYTES;
  constructor(readonly buf: Buffer) {}
  get left(): number {
    return this.buf.length - this.pos;
  }
  u8(): number {
    const v = this.buf[this.pos]!;
    this.pos += 1;
    return v;
  }
  u16(): number {
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  /** u64 that must fit a JS safe integer (epoch ms); NaN when it does not. */
  u64(): number {
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    return hi > 0x1f_ffff ? NaN : hi * 0x1_0000_0000 + lo;
  }
  bytes(n: number): Buffer {
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

const fail = (reason: CloseReason, detail: string): DecodeResult => ({ ok: false, reason, detail });
const bad = (detail: string): DecodeResult => fail(CLOSE_REASON.PROTOCOL_ERROR, detail);
/** Frames whose header seq is unused must carry 0. */
const noSeq = (type: FrameKind, seq: number): DecodeResult | undefined => (seq !== 0 ? bad(`${type}: seq must be 0`) : undefined);

/** Checked text field: `lenBytes` length prefix (1 or 2), at most `max` bytes of valid UTF-8. */
function text(r: Reader, lenBytes: 1 | 2, max: number, name: string): string | DecodeResult {
  if (r.left < lenBytes) return bad(`${name}: truncated length`);
  const n = lenBytes === 1 ? r.u8() : r.u16();
  if (n > max) return bad(`${name}: ${n} bytes, over ${max}`);
  if (r.left < n) return bad(`${name}: truncated`);
  try {
    return utf8.decode(r.bytes(n));
  } catch {
    return bad(`${name}: not UTF-8`);
  }
}

function seqList(r: Reader, min: number, name: string): number[] | DecodeResult {
  if (r.left < 2) return bad(`${name}: truncated count`);
  const n = r.u16();
  if (n > MAX_ACK_LIST) return bad(`${name}: ${n} entries, over ${MAX_ACK_LIST}`);
  if (r.left !== n * 4) return bad(`${name}: ${n} entries need ${n * 4} bytes, have ${r.left}`);
  const out = new Array<number>(n);
  let prev = min;
  for (let i = 0; i < n; i++) {
    const s = r.u32();
    if (s <= prev) return bad(`${name}: entries must be strictly increasing and above ${min}`);
    out[i] = s;
    prev = s;
  }
  return out;
}

/**
 * Decode one frame. `maxBytes` is the receiver's limit for this direction
 * (never above MAX_FRAME_BYTES). Never throws.
 */
export function decodeFrame(input: Uint8Array, maxBytes: number = MAX_FRAME_BYTES): DecodeResult {
  const limit = Math.min(maxBytes, MAX_FRAME_BYTES);
  if (input.length > limit) return fail(CLOSE_REASON.FRAME_TOO_LARGE, `frame of ${input.length} bytes, limit ${limit}`);
  if (input.length < HEADER_BYTES) return bad(`frame of ${input.length} bytes is shorter than the header`);
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const typeByte = buf[0]!;
  const flags = buf[1]!;
  const seq = buf.readUInt32BE(2);
  const length = buf.readUInt32BE(6);
  if (length !== buf.length - HEADER_BYTES) return bad(`length field ${length}, payload ${buf.length - HEADER_BYTES}`);
  const type = TYPE_NAME[typeByte];
  if (type === undefined) return fail(CLOSE_REASON.UNKNOWN_FRAME, `unknown frame type 0x${typeByte.toString(16).padStart(2, '0')}`);
  if (type === 'message' ? (flags & ~FLAG_REDELIVERY) !== 0 : flags !== 0) return bad(`${type}: reserved flag bits set (0x${flags.toString(16)})`);
  const r = new Reader(buf);
  let frame: Frame;
  switch (type) {
    case 'hello': {
      if (r.left < 3) return bad('hello: truncated');
      const version = r.u16();
      if (version < 1) return bad('hello: version 0');
      const id = text(r, 1, MAX_DEVICE_ID_BYTES, 'hello device id');
      if (typeof id !== 'string') return id;
      if (!DEVICE_ID_PATTERN.test(id)) return bad('hello: device id has characters outside A-Z a-z 0-9 . _ : -');
      frame = { type, version, deviceId: id, lastAck: seq };
      break;
    }
    case 'challenge': {
      const e = noSeq(type, seq);
      if (e) return e;
      if (r.left !== 2 + 4 + NONCE_BYTES) return bad('challenge: wrong size');
      const version = r.u16();
      if (version < 1) return bad('challenge: version 0');
      const ttlMs = r.u32();
      frame = { type, version, ttlMs, nonce: Uint8Array.from(r.bytes(NONCE_BYTES)) };
      break;
    }
    case 'response': {
      const e = noSeq(type, seq);
      if (e) return e;
      if (r.left !== MAC_BYTES) return bad('response: wrong size');
      frame = { type, mac: Uint8Array.from(r.bytes(MAC_BYTES)) };
      break;
    }
    case 'welcome': {
      if (r.left !== 4 + 2 + 8) return bad('welcome: wrong size');
      if (seq < 1) return bad('welcome: floor 0');
      const backlog = r.u32();
      const heartbeatSec = r.u16();
      const serverTime = r.u64();
      if (Number.isNaN(serverTime)) return bad('welcome: server time out of range');
      frame = { type, floor: seq, backlog, heartbeatSec, serverTime };
      break;
    }
    case 'message': {
      if (seq < 1) return bad('message: seq 0');
      if (r.left < 4 + 1 + 8 + 8) return bad('message: truncated');
      const floor = r.u32();
      if (floor < 1 || floor > seq) return bad('message: floor must be in 1..seq');
      const priority = r.u8();
      if (priority > MAX_PRIORITY) return bad(`message: priority ${priority} over ${MAX_PRIORITY}`);
      const createdAt = r.u64();
      const expiresAt = r.u64();
      if (Number.isNaN(createdAt) || Number.isNaN(expiresAt)) return bad('message: time out of range');
      const messageId = text(r, 1, MAX_MESSAGE_ID_BYTES, 'message id');
      if (typeof messageId !== 'string') return messageId;
      if (!MESSAGE_ID_PATTERN.test(messageId)) return bad('message: id must be 1-64 printable ASCII');
      const classification = text(r, 1, MAX_CLASSIFICATION_BYTES, 'message classification');
      if (typeof classification !== 'string') return classification;
      if (!CLASSIFICATION_PATTERN.test(classification)) return bad('message: classification must be a-z 0-9 -');
      const senderUnit = text(r, 1, MAX_SENDER_UNIT_BYTES, 'message sender unit');
      if (typeof senderUnit !== 'string') return senderUnit;
      const body = text(r, 2, MAX_BODY_BYTES, 'message body');
      if (typeof body !== 'string') return body;
      if (r.left !== 0) return bad('message: trailing bytes');
      frame = {
        type, seq, redelivery: (flags & FLAG_REDELIVERY) !== 0, floor, priority, createdAt, expiresAt,
        messageId, classification, senderUnit, body,
      };
      break;
    }
    case 'ack': {
      const list = seqList(r, seq, 'ack selective');
      if (!Array.isArray(list)) return list;
      frame = { type, cumulative: seq, selective: list };
      break;
    }
    case 'read': {
      const e = noSeq(type, seq);
      if (e) return e;
      const list = seqList(r, 0, 'read');
      if (!Array.isArray(list)) return list;
      if (list.length === 0) return bad('read: empty');
      frame = { type, seqs: list };
      break;
    }
    case 'ping':
    case 'pong': {
      if (r.left !== 0) return bad(`${type}: payload must be empty`);
      frame = { type, token: seq };
      break;
    }
    case 'close': {
      const e = noSeq(type, seq);
      if (e) return e;
      if (r.left < 3) return bad('close: truncated');
      const reason = r.u16();
      if (reason > MAX_CLOSE_REASON) return bad(`close: reason ${reason} over ${MAX_CLOSE_REASON}`);
      const t = text(r, 1, MAX_CLOSE_TEXT_BYTES, 'close text');
      if (typeof t !== 'string') return t;
      if (r.left !== 0) return bad('close: trailing bytes');
      frame = { type, reason, text: t };
      break;
    }
  }
  if (r.left !== 0) return bad(`${type}: trailing bytes`);
  return { ok: true, frame };
}

// ------------------------------------------------------------------ encode

function invalid(detail: string): never {
  throw new GatewayError('PDA_FRAME_INVALID', `cannot encode PDA frame: ${detail}`);
}

function checkU32(v: number, name: string, min = 0): void {
  if (!Number.isInteger(v) || v < min || v > MAX_SEQ) invalid(`${name} ${v} is not an integer in ${min}..${MAX_SEQ}`);
}

function checkTime(v: number, name: string): void {
  if (!Number.isSafeInteger(v) || v < 0) invalid(`${name} ${v} is not a non-negative safe integer`);
}

function header(buf: Buffer, type: number, flags: number, seq: number): void {
  buf[0] = type;
  buf[1] = flags;
  buf.writeUInt32BE(seq, 2);
  buf.writeUInt32BE(buf.length - HEADER_BYTES, 6);
}

function writeU64(buf: Buffer, v: number, at: number): void {
  buf.writeUInt32BE(Math.floor(v / 0x1_0000_0000), at);
  buf.writeUInt32BE(v >>> 0, at + 4);
}

function seqListBytes(list: readonly number[], above: number, name: string): void {
  if (list.length > MAX_ACK_LIST) invalid(`${name}: ${list.length} entries, over ${MAX_ACK_LIST}`);
  let prev = above;
  for (const s of list) {
    checkU32(s, name, 1);
    if (s <= prev) invalid(`${name}: entries must be strictly increasing and above ${above}`);
    prev = s;
  }
}

function textBytes(s: string, max: number, name: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > max) invalid(`${name}: ${n} bytes, over ${max}`);
  // Lone surrogates would be replaced by U+FFFD on the way out: refuse, so what is sent is what was meant.
  if (LONE_SURROGATE.test(s)) invalid(`${name}: not well-formed Unicode (lone surrogate)`);
  return n;
}

/** Encode one frame. Throws PDA_FRAME_INVALID when a field is out of its bound (a bug in the caller). */
export function encodeFrame(frame: Frame): Buffer {
  switch (frame.type) {
    case 'hello': {
      checkU32(frame.lastAck, 'hello lastAck');
      if (!Number.isInteger(frame.version) || frame.version < 1 || frame.version > 0xffff) invalid(`hello version ${frame.version}`);
      if (!DEVICE_ID_PATTERN.test(frame.deviceId)) invalid('hello device id');
      const b = Buffer.allocUnsafe(HEADER_BYTES + 3 + frame.deviceId.length);
      header(b, FRAME_TYPE.HELLO, 0, frame.lastAck);
      b.writeUInt16BE(frame.version, 10);
      b[12] = frame.deviceId.length;
      b.write(frame.deviceId, 13, 'latin1');
      return b;
    }
    case 'challenge': {
      if (!Number.isInteger(frame.version) || frame.version < 1 || frame.version > 0xffff) invalid(`challenge version ${frame.version}`);
      checkU32(frame.ttlMs, 'challenge ttlMs');
      if (frame.nonce.length !== NONCE_BYTES) invalid(`nonce of ${frame.nonce.length} bytes`);
      const b = Buffer.allocUnsafe(HEADER_BYTES + 6 + NONCE_BYTES);
      header(b, FRAME_TYPE.CHALLENGE, 0, 0);
      b.writeUInt16BE(frame.version, 10);
      b.writeUInt32BE(frame.ttlMs, 12);
      b.set(frame.nonce, 16);
      return b;
    }
    case 'response': {
      if (frame.mac.length !== MAC_BYTES) invalid(`mac of ${frame.mac.length} bytes`);
      const b = Buffer.allocUnsafe(HEADER_BYTES + MAC_BYTES);
      header(b, FRAME_TYPE.RESPONSE, 0, 0);
      b.set(frame.mac, HEADER_BYTES);
      return b;
    }
    case 'welcome': {
      checkU32(frame.floor, 'welcome floor', 1);
      checkU32(frame.backlog, 'welcome backlog');
      if (!Number.isInteger(frame.heartbeatSec) || frame.heartbeatSec < 0 || frame.heartbeatSec > 0xffff) invalid('welcome heartbeat');
      checkTime(frame.serverTime, 'welcome serverTime');
      const b = Buffer.allocUnsafe(HEADER_BYTES + 14);
      header(b, FRAME_TYPE.WELCOME, 0, frame.floor);
      b.writeUInt32BE(frame.backlog, 10);
      b.writeUInt16BE(frame.heartbeatSec, 14);
      writeU64(b, frame.serverTime, 16);
      return b;
    }
    case 'message': {
      checkU32(frame.seq, 'message seq', 1);
      checkU32(frame.floor, 'message floor', 1);
      if (frame.floor > frame.seq) invalid('message floor above seq');
      if (!Number.isInteger(frame.priority) || frame.priority < 0 || frame.priority > MAX_PRIORITY) invalid(`priority ${frame.priority}`);
      checkTime(frame.createdAt, 'message createdAt');
      checkTime(frame.expiresAt, 'message expiresAt');
      if (!MESSAGE_ID_PATTERN.test(frame.messageId)) invalid('message id');
      if (!CLASSIFICATION_PATTERN.test(frame.classification)) invalid('message classification');
      const unitLen = textBytes(frame.senderUnit, MAX_SENDER_UNIT_BYTES, 'sender unit');
      const bodyLen = textBytes(frame.body, MAX_BODY_BYTES, 'body');
      const idLen = frame.messageId.length;
      const clLen = frame.classification.length;
      const b = Buffer.allocUnsafe(HEADER_BYTES + 4 + 1 + 16 + 1 + idLen + 1 + clLen + 1 + unitLen + 2 + bodyLen);
      header(b, FRAME_TYPE.MESSAGE, frame.redelivery ? FLAG_REDELIVERY : 0, frame.seq);
      let p = HEADER_BYTES;
      b.writeUInt32BE(frame.floor, p);
      p += 4;
      b[p++] = frame.priority;
      writeU64(b, frame.createdAt, p);
      writeU64(b, frame.expiresAt, p + 8);
      p += 16;
      b[p++] = idLen;
      p += b.write(frame.messageId, p, 'latin1');
      b[p++] = clLen;
      p += b.write(frame.classification, p, 'latin1');
      b[p++] = unitLen;
      p += b.write(frame.senderUnit, p, 'utf8');
      b.writeUInt16BE(bodyLen, p);
      p += 2;
      b.write(frame.body, p, 'utf8');
      return b;
    }
    case 'ack': {
      checkU32(frame.cumulative, 'ack cumulative');
      seqListBytes(frame.selective, frame.cumulative, 'ack selective');
      const b = Buffer.allocUnsafe(HEADER_BYTES + 2 + 4 * frame.selective.length);
      header(b, FRAME_TYPE.ACK, 0, frame.cumulative);
      b.writeUInt16BE(frame.selective.length, 10);
      frame.selective.forEach((s, i) => b.writeUInt32BE(s, 12 + 4 * i));
      return b;
    }
    case 'read': {
      if (frame.seqs.length === 0) invalid('read: empty');
      seqListBytes(frame.seqs, 0, 'read');
      const b = Buffer.allocUnsafe(HEADER_BYTES + 2 + 4 * frame.seqs.length);
      header(b, FRAME_TYPE.READ, 0, 0);
      b.writeUInt16BE(frame.seqs.length, 10);
      frame.seqs.forEach((s, i) => b.writeUInt32BE(s, 12 + 4 * i));
      return b;
    }
    case 'ping':
    case 'pong': {
      checkU32(frame.token, `${frame.type} token`);
      const b = Buffer.allocUnsafe(HEADER_BYTES);
      header(b, frame.type === 'ping' ? FRAME_TYPE.PING : FRAME_TYPE.PONG, 0, frame.token);
      return b;
    }
    case 'close': {
      if (!Number.isInteger(frame.reason) || frame.reason < 0 || frame.reason > MAX_CLOSE_REASON) invalid(`close reason ${frame.reason}`);
      const n = textBytes(frame.text, MAX_CLOSE_TEXT_BYTES, 'close text');
      const b = Buffer.allocUnsafe(HEADER_BYTES + 3 + n);
      header(b, FRAME_TYPE.CLOSE, 0, 0);
      b.writeUInt16BE(frame.reason, 10);
      b[12] = n;
      b.write(frame.text, 13, 'utf8');
      return b;
    }
  }
}

/** Offsets of the per-device fields of a MESSAGE frame (everything else is the same for every copy). */
const MESSAGE_FLAGS_AT = 1;
const MESSAGE_SEQ_AT = 2;
const MESSAGE_FLOOR_AT = HEADER_BYTES;

/**
 * A MESSAGE frame encoded once and re-stamped per device: a broadcast to
 * 5,000 devices encodes (and validates) its text once, then writes only
 * flags, seq and floor into the same bytes before each send. `stamp`
 * returns the shared buffer: the caller must hand it to a transport that
 * copies it (uWS `send` does) before stamping it again.
 */
export class MessageTemplate {
  private readonly bytes: Buffer;

  /** `seq`, `floor` and `redelivery` of `frame` are placeholders (stamped per send). */
  constructor(frame: Omit<MessageFrame, 'seq' | 'floor' | 'redelivery'>) {
    this.bytes = encodeFrame({ ...frame, seq: 1, floor: 1, redelivery: false });
  }

  /** The frame for one device; byte for byte what `encodeFrame` gives for the whole frame. */
  stamp(seq: number, floor: number, redelivery: boolean): Buffer {
    checkU32(seq, 'message seq', 1);
    checkU32(floor, 'message floor', 1);
    if (floor > seq) invalid('message floor above seq');
    const b = this.bytes;
    b[MESSAGE_FLAGS_AT] = redelivery ? FLAG_REDELIVERY : 0;
    b.writeUInt32BE(seq, MESSAGE_SEQ_AT);
    b.writeUInt32BE(floor, MESSAGE_FLOOR_AT);
    return b;
  }
}

/** Cut a reason text to at most MAX_CLOSE_TEXT_BYTES of UTF-8 without splitting a character. */
export function closeText(s: string): string {
  const w0 = wellFormed(s);
  if (Buffer.byteLength(w0, 'utf8') <= MAX_CLOSE_TEXT_BYTES) return w0;
  let out = '';
  let n = 0;
  for (const ch of w0) {
    const w = Buffer.byteLength(ch, 'utf8');
    if (n + w > MAX_CLOSE_TEXT_BYTES) break;
    out += ch;
    n += w;
  }
  return out;
}
