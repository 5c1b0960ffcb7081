/**
 * 100,000 random and mutated frames against a live server (uWS, LMDB in a
 * temp dir), from many concurrent sessions, while good devices beside them
 * keep receiving messages.
 *
 * The fuzzer predicts, with the codec and the session rules, how the server
 * must react to each frame (carry on, or close with a given reason) and
 * sends a session's frames up to and including the first one that must end
 * it, so every frame sent is one the server had to handle. Checked:
 *  - the server never crashes (it answers a fresh handshake at the end);
 *  - every session fed a bad frame is closed, with the predicted reason
 *    (CLOSE frame and WebSocket code 4000 + reason), or cut by uWS for a
 *    frame over its hard payload limit;
 *  - every session that was fed only acceptable frames is still alive
 *    (answers a PING);
 *  - the good devices got every message, in order, once, on the connection
 *    they opened at the start.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config/load.js';
import {
  CLIENT_FRAMES,
  CLOSE_REASON,
  FRAME_TYPE,
  WS_CLOSE_BASE,
  decodeFrame,
  encodeFrame,
  type Frame,
} from '../../src/pda/codec.js';
import { PdaClient, type PdaCloseInfo } from '../../src/pda/client.js';
import { decodeDeviceKey, responseMac } from '../../src/pda/keys.js';
import { seededRandom } from '../../src/pda/sim.js';
import { MemoryStatusSink, startPdaServer } from '../../src/pda/server.js';

const TOTAL_FRAMES = Number(process.env['PDA_FUZZ_FRAMES'] ?? 100_000);
const WORKERS = 8;
const GOOD_DEVICES = 5;
const MAX_INBOUND = 4096;
const UWS_LIMIT = 64 * 1024; // max(64 KiB, 2 × MAX_INBOUND): see ws-route.ts
const TIME_LIMIT_MS = 240_000;

type Rnd = () => number;
const int = (r: Rnd, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rnd, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const bytes = (r: Rnd, n: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
};

/** A frame a device may legitimately send in a ready session, with junk numbers. */
function benign(r: Rnd): Frame {
  const k = r();
  if (k < 0.5) {
    const cumulative = r() < 0.3 ? 0 : int(r, 0, 1_000_000);
    const n = int(r, 0, 20);
    const sel = new Set<number>();
    for (let i = 0; i < n; i++) sel.add(cumulative + int(r, 1, 5000));
    return { type: 'ack', cumulative, selective: [...sel].sort((a, b) => a - b) };
  }
  if (k < 0.7) return { type: 'read', seqs: [...new Set(Array.from({ length: int(r, 1, 10) }, () => int(r, 1, 100_000)))].sort((a, b) => a - b) };
  if (k < 0.9) return { type: 'ping', token: int(r, 0, 0xffff_ffff) };
  return { type: 'pong', token: int(r, 0, 0xffff_ffff) };
}

/** Any well-formed frame (of either direction). */
function anyValid(r: Rnd): Frame {
  switch (int(r, 0, 6)) {
    case 0: return { type: 'hello', version: int(r, 1, 3), deviceId: pick(r, ['good-0', 'fz-1', 'nobody', 'a.b:c_d-e']), lastAck: int(r, 0, 100) };
    case 1: return { type: 'response', mac: bytes(r, 32) };
    case 2: return { type: 'challenge', version: 1, ttlMs: 1000, nonce: bytes(r, 32) };
    case 3: return { type: 'welcome', floor: 1, backlog: 0, heartbeatSec: 30, serverTime: Date.now() };
    case 4: return { type: 'message', seq: 5, redelivery: false, floor: 2, priority: 1, createdAt: 1, expiresAt: 2, messageId: 'M', classification: 'police', senderUnit: '指挥中心', body: '测试'.repeat(int(r, 0, 50)) };
    case 5: return { type: 'close', reason: int(r, 0, 16), text: 'bye' };
    default: return benign(r);
  }
}

function mutate(r: Rnd, b0: Buffer): Buffer {
  let b = Buffer.from(b0);
  for (let m = int(r, 1, 3); m > 0; m--) {
    const k = int(r, 0, 5);
    if (k === 0 && b.length > 0) b[int(r, 0, b.length - 1)]! ^= 1 << int(r, 0, 7);
    else if (k === 1) b = b.subarray(0, int(r, 0, b.length));
    else if (k === 2) b = Buffer.concat([b, bytes(r, int(r, 1, 16))]);
    else if (k === 3 && b.length >= 10) b.writeUInt32BE(int(r, 0, 0xffff_ffff), 6);
    else if (k === 4 && b.length > 0) b[0] = int(r, 0, 255);
    else if (k === 5 && b.length > 1) b[1] = int(r, 0, 255);
  }
  return b;
}

interface Shot {
  readonly data: Buffer | string;
  readonly binary: boolean;
  /** Close reason the server must answer with; undefined = the session goes on; 'cut' = uWS closes it. */
  readonly expect: number | 'cut' | undefined;
}

/** How the server must react to `data` in phase `phase`. */
function predict(data: Buffer | string, binary: boolean, phase: 'hello' | 'ready'): number | 'cut' | undefined {
  if (!binary) return CLOSE_REASON.PROTOCOL_ERROR;
  const b = data as Buffer;
  if (b.length > UWS_LIMIT) return 'cut';
  const r = decodeFrame(b, MAX_INBOUND);
  if (!r.ok) return r.reason;
  const f = r.frame;
  if (!CLIENT_FRAMES.has(f.type)) return CLOSE_REASON.PROTOCOL_ERROR;
  if (f.type === 'close') return CLOSE_REASON.NORMAL;
  if (phase === 'hello') return f.type === 'hello' ? undefined : CLOSE_REASON.PROTOCOL_ERROR;
  if (f.type === 'hello' || f.type === 'response') return CLOSE_REASON.PROTOCOL_ERROR;
  return undefined;
}

/**
 * One fuzz frame. In a ready session most frames are acceptable ones with
 * junk numbers (so sessions live long enough to take many frames); about
 * one in ten must end the session. Before the handshake anything goes.
 */
function shot(r: Rnd, phase: 'hello' | 'ready'): Shot {
  const k = phase === 'ready' ? r() : 0.88 + r() * 0.12;
  let data: Buffer | string;
  let binary = true;
  if (k < 0.88) data = encodeFrame(benign(r));
  else if (k < 0.94) data = mutate(r, encodeFrame(phase === 'ready' ? benign(r) : anyValid(r)));
  else if (k < 0.96) data = mutate(r, encodeFrame(anyValid(r)));
  else if (k < 0.975) data = bytes(r, int(r, 0, 64));
  else if (k < 0.985) {
    data = Buffer.alloc(int(r, MAX_INBOUND + 1, 8000));
    data[0] = FRAME_TYPE.ACK;
  } else if (k < 0.987) data = Buffer.alloc(UWS_LIMIT + int(r, 1, 1000));
  else if (k < 0.99) {
    data = 'not a binary frame';
    binary = false;
  } else data = encodeFrame(anyValid(r));
  return { data, binary, expect: predict(data, binary, phase) };
}

class FuzzSocket {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number }>;
  private wake: (() => void) | undefined;
  constructor(readonly ws: WebSocket) {
    ws.binaryType = 'nodebuffer';
    ws.on('message', (d: Buffer) => {
      const r = decodeFrame(d);
      if (r.ok) this.frames.push(r.frame);
      this.wake?.();
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => ws.on('close', (code: number) => {
      this.wake?.();
      resolve({ code });
    }));
  }
  async next(type: Frame['type'], timeoutMs = 5000): Promise<Frame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.ws.readyState >= WebSocket.CLOSING || Date.now() > deadline) return undefined;
      await new Promise<void>((res) => {
        this.wake = res;
        setTimeout(res, 50);
      });
    }
  }
}

t.test('100,000 random and mutated frames: no crash, every bad session closed with its reason, good sessions unaffected', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-fuzz-'));
  const config = loadConfig({
    env: {},
    overrides: { pda: { enabled: true, keySecret: 'f'.repeat(40), adminKey: '', maxInboundFrameBytes: MAX_INBOUND, helloTimeoutMs: 5000 } },
  }).pda;
  const s = await startPdaServer({ dataDir, config, sink: new MemoryStatusSink(), logger: pino({ level: 'silent' }), tickMs: 200 });
  t.teardown(async () => {
    await s.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  // Good devices, connected for the whole run.
  const good = await Promise.all(Array.from({ length: GOOD_DEVICES }, async (_, i) => {
    const { key } = await s.channel.registry.register({ deviceId: `good-${i}`, personId: `officer-${i}`, unit: 'u' });
    const got: string[] = [];
    const client = new PdaClient({ url: s.url, deviceId: `good-${i}`, key, onMessage: (m) => got.push(m.messageId) });
    await client.connect();
    let closedEarly: PdaCloseInfo | undefined;
    void client.closed.then((info) => {
      closedEarly = info;
    });
    return { client, got, closed: () => closedEarly };
  }));
  const fuzzKeys = await Promise.all(Array.from({ length: WORKERS }, async (_, w) => decodeDeviceKey((await s.channel.registry.register({ deviceId: `fz-${w}`, personId: `fz-officer-${w}`, unit: 'u' })).key)));

  let sent = 0;
  let cutByUws = 0;
  let sessions = 0;
  let badSessions = 0;
  let goodSessions = 0;
  const mismatches: string[] = [];
  const started = Date.now();
  let fuzzing = true;

  // Messages to the good devices all along.
  const delivered: string[] = [];
  const feeder = (async () => {
    for (let n = 0; fuzzing && n < 10_000; n++) {
      const id = `G${String(n).padStart(5, '0')}`;
      await s.channel.deliver(good.map((_, i) => ({ messageId: id, index: i, personId: `officer-${i}`, priority: 0 as const, expiresAt: Date.now() + 3_600_000, classification: 'police', senderUnit: 'u', body: id })));
      delivered.push(id);
      await sleep(50);
    }
  })();

  const worker = async (w: number): Promise<void> => {
    const r = seededRandom(9_000 + w);
    const deviceId = `fz-${w}`;
    while (sent < TOTAL_FRAMES && Date.now() - started < TIME_LIMIT_MS) {
      const ws = new WebSocket(s.url);
      const sock = new FuzzSocket(ws);
      const opened = await new Promise<boolean>((res) => {
        ws.once('open', () => res(true));
        ws.once('error', () => res(false));
      });
      if (!opened) {
        mismatches.push('could not open a session');
        return;
      }
      sessions++;
      const preAuth = r() < 0.1;
      let phase: 'hello' | 'ready' = 'hello';
      if (!preAuth) {
        ws.send(encodeFrame({ type: 'hello', version: 1, deviceId, lastAck: 0 }), { binary: true });
        const ch = await sock.next('challenge');
        if (ch?.type !== 'challenge') {
          mismatches.push(`session ${sessions}: no challenge`);
          ws.terminate();
          continue;
        }
        ws.send(encodeFrame({ type: 'response', mac: responseMac(fuzzKeys[w] as Buffer, ch.nonce, deviceId) }), { binary: true });
        if ((await sock.next('welcome'))?.type !== 'welcome') {
          mismatches.push(`session ${sessions}: no welcome`);
          ws.terminate();
          continue;
        }
        phase = 'ready';
      }
      // Frames up to and including the first one that must end the session.
      const burst: Shot[] = [];
      const max = preAuth ? 1 : int(r, 1, 200);
      let fatal: number | 'cut' | undefined;
      while (burst.length < max && fatal === undefined) {
        const x = shot(r, phase);
        burst.push(x);
        fatal = x.expect;
      }
      for (const x of burst) ws.send(x.data, { binary: x.binary });
      sent += burst.length;
      if (preAuth && fatal === undefined) {
        // A well-formed HELLO: the server must challenge; a wrong response must fail.
        const ch = await sock.next('challenge');
        if (ch?.type !== 'challenge') mismatches.push(`session ${sessions}: fuzzed HELLO not challenged`);
        ws.send(encodeFrame({ type: 'response', mac: bytes(r, 32) }), { binary: true });
        sent++;
        fatal = CLOSE_REASON.AUTH_FAILED;
      }
      if (fatal === undefined) {
        // Only acceptable frames: the session must still be alive.
        const token = int(r, 1, 1_000_000);
        ws.send(encodeFrame({ type: 'ping', token }), { binary: true });
        let alive = false;
        for (let i = 0; i < 100 && !alive; i++) {
          const p = await sock.next('pong', 5000);
          if (!p) break;
          alive = p.type === 'pong' && p.token === token;
        }
        if (!alive) mismatches.push(`session ${sessions}: closed after acceptable frames (code ${(await Promise.race([sock.closed, sleep(10).then(() => ({ code: -1 }))])).code})`);
        goodSessions++;
        ws.close();
        await sock.closed;
        continue;
      }
      badSessions++;
      const { code } = await Promise.race([sock.closed, sleep(10_000).then(() => ({ code: -1 }))]);
      if (fatal === 'cut') {
        cutByUws++;
        if (code !== 1009 && code !== 1006) mismatches.push(`session ${sessions}: over the uWS limit, closed ${code}`);
      } else {
        if (code !== WS_CLOSE_BASE + fatal) mismatches.push(`session ${sessions}: expected close ${WS_CLOSE_BASE + fatal}, got ${code}`);
        const cf = sock.frames.find((f) => f.type === 'close');
        if (fatal !== CLOSE_REASON.NORMAL && (cf?.type !== 'close' || cf.reason !== fatal)) mismatches.push(`session ${sessions}: no CLOSE frame with reason ${fatal}`);
      }
      if (code === -1) ws.terminate();
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  fuzzing = false;
  await feeder;

  t.ok(sent >= TOTAL_FRAMES, `${sent} frames fed in ${sessions} sessions (${badSessions} ended by a bad frame, ${goodSessions} only acceptable ones, ${cutByUws} cut by uWS) in ${Date.now() - started} ms`);
  t.same(mismatches.slice(0, 10), [], 'every session behaved as the protocol says');
  const framesIn = (await s.metrics.registry.getSingleMetric('smsgw_pda_frames_in_total')?.get())?.values.reduce((a, v) => a + v.value, 0) ?? 0;
  t.ok(framesIn >= sent - cutByUws, `the server handled ${framesIn} frames (every fuzz frame under the uWS limit, plus the good devices' acks)`);

  // Good devices: everything, in order, once, on their first connection.
  const deadline = Date.now() + 15_000;
  while (good.some((g) => g.got.length < delivered.length) && Date.now() < deadline) await sleep(20);
  good.forEach((g, i) => {
    t.equal(g.closed(), undefined, `good-${i} was never disconnected`);
    t.same(g.got, delivered, `good-${i} got all ${delivered.length} messages in order`);
    t.equal(g.client.counts.duplicates, 0, `good-${i}: no duplicates`);
  });

  // Still serving.
  const { key } = await s.channel.registry.register({ deviceId: 'after', personId: 'after', unit: 'u' });
  const after = new PdaClient({ url: s.url, deviceId: 'after', key });
  t.ok(await after.connect(), 'a new session after the fuzzing');
  await after.close();
  await Promise.all(good.map((g) => g.client.close()));
});
