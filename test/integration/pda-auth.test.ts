/**
 * Handshake and device lifecycle against a live server: right and wrong
 * keys, replayed responses, revoked / lost / expired / rotated / reassigned
 * devices, timeouts, protocol violations, and the admin API.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config/load.js';
import { CLOSE_REASON, WS_CLOSE_BASE, decodeFrame, encodeFrame, type Frame } from '../../src/pda/codec.js';
import { PdaClient, PdaClosedError } from '../../src/pda/client.js';
import { decodeDeviceKey, responseMac } from '../../src/pda/keys.js';
import { MemoryStatusSink, startPdaServer, type RunningPdaServer } from '../../src/pda/server.js';

const ADMIN = 'admin-key-0123456789-abcdef';

async function server(t: Test, over: Record<string, unknown> = {}, clock?: { offset: number }): Promise<RunningPdaServer & { sink: MemoryStatusSink }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-pda-auth-'));
  const config = loadConfig({
    env: {},
    overrides: { pda: { enabled: true, keySecret: 'k'.repeat(40), adminKey: ADMIN, helloTimeoutMs: 2000, ...over } },
  }).pda;
  const sink = new MemoryStatusSink();
  const s = await startPdaServer({
    dataDir, config, sink, logger: pino({ level: 'silent' }), tickMs: 50,
    ...(clock ? { now: () => Date.now() + clock.offset } : {}),
  });
  t.teardown(async () => {
    await s.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { ...s, sink };
}

/** A bare protocol socket: frames in, frames out, nothing automatic. */
class Raw {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; text: string }>;
  private waiters: Array<() => void> = [];
  private constructor(readonly ws: WebSocket) {
    ws.binaryType = 'nodebuffer';
    ws.on('message', (d: Buffer) => {
      const r = decodeFrame(d);
      if (r.ok) this.frames.push(r.frame);
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => ws.on('close', (code: number, reason: Buffer) => {
      for (const w of this.waiters.splice(0)) w();
      resolve({ code, text: reason.toString() });
    }));
  }

  static open(url: string): Promise<Raw> {
    const ws = new WebSocket(url);
    const raw = new Raw(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(raw));
      ws.once('error', reject);
    });
  }

  send(f: Frame | Uint8Array | string): void {
    if (typeof f === 'string') this.ws.send(f);
    else this.ws.send(f instanceof Uint8Array ? f : encodeFrame(f), { binary: true });
  }

  /** The next frame of this type (bounded wait). */
  async next<K extends Frame['type']>(type: K, timeoutMs = 5000): Promise<Extract<Frame, { type: K }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0] as Extract<Frame, { type: K }>;
      if (Date.now() > deadline || this.ws.readyState === WebSocket.CLOSED) throw new Error(`no ${type} frame`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }
}

async function register(s: RunningPdaServer, deviceId: string, personId = `officer-${deviceId}`, keyTtlMs?: number): Promise<string> {
  const issued = await s.channel.registry.register({ deviceId, personId, unit: '交警支队', ...(keyTtlMs !== undefined ? { keyTtlMs } : {}) });
  return issued.key;
}

async function refusal(t: Test, client: PdaClient, reason: number, what: string): Promise<void> {
  const err = await client.connect().then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof PdaClosedError, `${what}: refused`);
  if (err instanceof PdaClosedError) {
    t.equal(err.info.reason, reason, `${what}: reason ${err.info.reasonName}`);
    t.equal(err.info.code, WS_CLOSE_BASE + reason, `${what}: close code ${err.info.code}`);
  }
}

t.test('the right key is welcomed; a wrong key and an unknown device are refused alike', async (t) => {
  const s = await server(t);
  const key = await register(s, 'pda-1');
  const ok = new PdaClient({ url: s.url, deviceId: 'pda-1', key });
  const w = await ok.connect();
  t.equal(w.floor, 1);
  t.equal(w.backlog, 0);
  t.equal(s.channel.readyCount, 1);
  await ok.close();

  const wrong = await register(s, 'pda-2');
  await refusal(t, new PdaClient({ url: s.url, deviceId: 'pda-1', key: wrong }), CLOSE_REASON.AUTH_FAILED, 'wrong key');
  await refusal(t, new PdaClient({ url: s.url, deviceId: 'pda-nobody', key }), CLOSE_REASON.AUTH_FAILED, 'unknown device');
  const m = await s.metrics.registry.getSingleMetricAsString('smsgw_pda_handshakes_total');
  t.match(m, /outcome="bad-mac"\} 1/);
  t.match(m, /outcome="unknown-device"\} 1/);
});

t.test('a replayed response fails: in another session, and twice in the same one', async (t) => {
  const s = await server(t);
  const key = decodeDeviceKey(await register(s, 'pda-r'));
  const a = await Raw.open(s.url);
  a.send({ type: 'hello', version: 1, deviceId: 'pda-r', lastAck: 0 });
  const ch = await a.next('challenge');
  t.equal(ch.nonce.length, 32);
  t.ok(ch.ttlMs > 0 && ch.ttlMs <= 2000, 'the nonce has a bounded lifetime');
  const recorded = encodeFrame({ type: 'response', mac: responseMac(key, ch.nonce, 'pda-r') });
  a.send(recorded);
  await a.next('welcome');
  a.send(recorded); // the same response again, same session
  const closedA = await a.closed;
  t.equal(closedA.code, WS_CLOSE_BASE + CLOSE_REASON.PROTOCOL_ERROR, 'a second response in a session is a protocol error');

  const b = await Raw.open(s.url);
  b.send({ type: 'hello', version: 1, deviceId: 'pda-r', lastAck: 0 });
  const ch2 = await b.next('challenge');
  t.not(Buffer.from(ch2.nonce).toString('hex'), Buffer.from(ch.nonce).toString('hex'), 'a fresh nonce per session');
  b.send(recorded);
  const close = await b.next('close');
  t.equal(close.reason, CLOSE_REASON.AUTH_FAILED, 'the recorded response does not open another session');
  t.equal((await b.closed).code, WS_CLOSE_BASE + CLOSE_REASON.AUTH_FAILED);
});

t.test('revoked device: disconnected at once, refused after, its outbox withdrawn', async (t) => {
  const s = await server(t);
  const key = await register(s, 'pda-v', 'officer-v');
  const c = new PdaClient({ url: s.url, deviceId: 'pda-v', key, autoAck: false });
  await c.connect();
  const expiresAt = Date.now() + 3_600_000;
  await s.channel.deliver([{ messageId: 'M-v', index: 0, personId: 'officer-v', priority: 0, expiresAt, classification: 'police', senderUnit: 'u', body: 'x' }]);
  await s.channel.registry.setState('pda-v', 'revoked', 'stolen');
  const info = await c.closed;
  t.equal(info.reason, CLOSE_REASON.DEVICE_REVOKED, 'the live session is closed with DEVICE_REVOKED');
  t.equal(s.channel.isConnected('pda-v'), false);
  await s.channel.settled();
  const states = s.sink.of('M-v', 0).map((u) => u.state);
  t.same(states, ['queued', 'undeliverable'], 'the unacknowledged copy is withdrawn and reported undeliverable');
  t.match(s.sink.of('M-v', 0)[1]?.error, /revoked/);
  await refusal(t, new PdaClient({ url: s.url, deviceId: 'pda-v', key }), CLOSE_REASON.DEVICE_REVOKED, 'revoked device with its key');
  await t.rejects(s.channel.registry.setState('pda-v', 'active'), { code: 'PDA_DEVICE_STATE' }, 'revoked is final');
  const r = await s.channel.deliver([{ messageId: 'M-v2', index: 0, personId: 'officer-v', priority: 0, expiresAt, classification: 'police', senderUnit: 'u', body: 'x' }]);
  t.equal(r.undeliverable, 1, 'gets nothing more');
});

t.test('lost device: refused; reactivation issues a new key and the old one stops working', async (t) => {
  const s = await server(t);
  const oldKey = await register(s, 'pda-l');
  await s.channel.registry.setState('pda-l', 'lost');
  await refusal(t, new PdaClient({ url: s.url, deviceId: 'pda-l', key: oldKey }), CLOSE_REASON.DEVICE_LOST, 'lost');
  await t.rejects(s.channel.registry.rotateKey('pda-l'), { code: 'PDA_DEVICE_STATE' }, 'a lost device is reactivated, not rotated');
  const back = await s.channel.registry.setState('pda-l', 'active', 'found');
  t.ok(back.key, 'a new key');
  t.equal(back.device.keyVersion, 2);
  await refusal(t, new PdaClient({ url: s.url, deviceId: 'pda-l', key: oldKey }), CLOSE_REASON.AUTH_FAILED, 'old key after reactivation');
  const c = new PdaClient({ url: s.url, deviceId: 'pda-l', key: back.key as string });
  await c.connect();
  await c.close();
});

t.test('an expired key is refused with KEY_EXPIRED', async (t) => {
  const clock = { offset: 0 };
  const s = await server(t, {}, clock);
  const key = await register(s, 'pda-x', 'officer-x', 60_000);
  const c = new PdaClient({ url: s.url, deviceId: 'pda-x', key });
  await c.connect();
  await c.close();
  clock.offset = 61_000;
  await refusal(t, new PdaClient({ url: s.url, deviceId: 'pda-x', key }), CLOSE_REASON.KEY_EXPIRED, 'expired key');
});

t.test('rotating a key closes the session (KEY_CHANGED); reassigning withdraws the outbox (DEVICE_REASSIGNED)', async (t) => {
  const s = await server(t);
  const key1 = await register(s, 'pda-k', 'officer-a');
  const c1 = new PdaClient({ url: s.url, deviceId: 'pda-k', key: key1 });
  await c1.connect();
  const issued = await s.channel.registry.rotateKey('pda-k');
  t.equal((await c1.closed).reason, CLOSE_REASON.KEY_CHANGED);
  await refusal(t, new PdaClient({ url: s.url, deviceId: 'pda-k', key: key1 }), CLOSE_REASON.AUTH_FAILED, 'the old key');
  const c2 = new PdaClient({ url: s.url, deviceId: 'pda-k', key: issued.key, autoAck: false });
  await c2.connect();
  await s.channel.deliver([{ messageId: 'M-k', index: 0, personId: 'officer-a', priority: 1, expiresAt: Date.now() + 60_000, classification: 'police', senderUnit: 'u', body: 'for A' }]);
  const view = await s.channel.registry.reassign('pda-k', { personId: 'officer-b', unit: '巡警' });
  t.equal(view.personId, 'officer-b');
  t.equal((await c2.closed).reason, CLOSE_REASON.DEVICE_REASSIGNED);
  await s.channel.settled();
  t.same(s.sink.of('M-k', 0).map((u) => u.state), ['queued', 'undeliverable'], "officer A's message does not follow the device to officer B");
  t.same(s.channel.registry.activeDevicesOf('officer-a'), []);
  t.same(s.channel.registry.activeDevicesOf('officer-b'), ['pda-k']);
  const c3 = new PdaClient({ url: s.url, deviceId: 'pda-k', key: issued.key });
  const w = await c3.connect();
  t.equal(w.backlog, 0, 'nothing of the previous officer waits');
  await c3.close();
});

t.test('a second session of the same device replaces the first (REPLACED)', async (t) => {
  const s = await server(t);
  const key = await register(s, 'pda-d');
  const a = new PdaClient({ url: s.url, deviceId: 'pda-d', key });
  await a.connect();
  const b = new PdaClient({ url: s.url, deviceId: 'pda-d', key });
  await b.connect();
  t.equal((await a.closed).reason, CLOSE_REASON.REPLACED);
  t.equal(s.channel.readyCount, 1);
  await b.close();
});

t.test('protocol violations close the session with a reason', async (t) => {
  const s = await server(t, { helloTimeoutMs: 300, maxInboundFrameBytes: 1024 });
  const key = decodeDeviceKey(await register(s, 'pda-p'));
  const cases: Array<{ what: string; reason: number | 'ws1009'; act: (r: Raw) => Promise<void> | void }> = [
    { what: 'silence', reason: CLOSE_REASON.HANDSHAKE_TIMEOUT, act: () => undefined },
    { what: 'text message', reason: CLOSE_REASON.PROTOCOL_ERROR, act: (r) => r.send('hello') },
    { what: 'ack before the handshake', reason: CLOSE_REASON.PROTOCOL_ERROR, act: (r) => r.send({ type: 'ack', cumulative: 1, selective: [] }) },
    { what: 'a server frame from the device', reason: CLOSE_REASON.PROTOCOL_ERROR, act: (r) => r.send({ type: 'welcome', floor: 1, backlog: 0, heartbeatSec: 1, serverTime: 0 }) },
    { what: 'unknown frame type', reason: CLOSE_REASON.UNKNOWN_FRAME, act: (r) => r.send(Buffer.from('7f000000000000000000', 'hex')) },
    { what: 'frame over pda.maxInboundFrameBytes', reason: CLOSE_REASON.FRAME_TOO_LARGE, act: (r) => r.send(Buffer.alloc(2000)) },
    { what: 'frame over the uWS payload limit', reason: 'ws1009', act: (r) => r.send(Buffer.alloc(70_000)) },
    { what: 'response without a challenge', reason: CLOSE_REASON.PROTOCOL_ERROR, act: (r) => r.send({ type: 'response', mac: new Uint8Array(32) }) },
    {
      what: 'a second hello', reason: CLOSE_REASON.PROTOCOL_ERROR, act: async (r) => {
        r.send({ type: 'hello', version: 1, deviceId: 'pda-p', lastAck: 0 });
        await r.next('challenge');
        r.send({ type: 'hello', version: 1, deviceId: 'pda-p', lastAck: 0 });
      },
    },
    {
      what: 'a response after the deadline', reason: CLOSE_REASON.HANDSHAKE_TIMEOUT, act: async (r) => {
        r.send({ type: 'hello', version: 1, deviceId: 'pda-p', lastAck: 0 });
        await r.next('challenge');
      },
    },
  ];
  for (const c of cases) {
    const r = await Raw.open(s.url);
    await c.act(r);
    const closed = await r.closed;
    // uWS cuts the connection itself (1009, or abruptly: 1006); what matters is that only this session pays.
    if (c.reason === 'ws1009') t.ok(closed.code === 1009 || closed.code === 1006, `${c.what}: cut by uWS (${closed.code})`);
    else {
      t.equal(closed.code, WS_CLOSE_BASE + c.reason, `${c.what}: close code ${closed.code}`);
      const frame = r.frames.find((f) => f.type === 'close');
      t.equal(frame?.type === 'close' ? frame.reason : undefined, c.reason, `${c.what}: CLOSE frame with the reason`);
    }
  }
  // The server is still fine.
  const r = await Raw.open(s.url);
  r.send({ type: 'hello', version: 9, deviceId: 'pda-p', lastAck: 0 });
  const ch = await r.next('challenge');
  t.equal(ch.version, 1, 'a newer device is answered with the version the server speaks');
  r.send({ type: 'response', mac: responseMac(key, ch.nonce, 'pda-p') });
  await r.next('welcome');
  r.send({ type: 'ping', token: 77 });
  t.equal((await r.next('pong')).token, 77);
  r.ws.close();
});

/** A device as the PDA admin API shows it. */
interface DeviceView {
  readonly id: string;
  readonly personId: string;
  readonly unit: string;
  readonly state: string;
  readonly stateReason?: string;
  readonly connected: boolean;
  readonly keyVersion: number;
}
/** Register, state change and rotation: the device, and the key when one is shown. */
interface DeviceAnswer {
  readonly key: string;
  readonly device: DeviceView;
}
/** GET /v1/admin/pda/devices. */
interface DeviceList {
  readonly items: readonly DeviceView[];
  readonly next?: string;
}
/** A refusal whose details name the fields. */
interface Refusal {
  readonly error: { readonly code: string; readonly details: readonly { readonly field: string }[] };
}

t.test('admin API: its own key, register (key shown once), list, get, state, rotate, assignment', async (t) => {
  const s = await server(t);
  const call = async <T = unknown>(method: string, path: string, body?: unknown, key = ADMIN): Promise<{ status: number; json: T }> => {
    const res = await fetch(s.httpUrl + path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as T };
  };
  t.equal((await call('GET', '/v1/admin/pda/devices', undefined, 'wrong-key-0123456789')).status, 401, 'wrong admin key');
  t.equal((await call('POST', '/v1/admin/pda/devices', { deviceId: 'x', personId: 'p', unit: 'u' }, 'dev-key-change-me')).status, 401, 'a tenant API key is not an admin key');
  const created = await call<DeviceAnswer>('POST', '/v1/admin/pda/devices', { deviceId: 'pda-a1', personId: 'p-1', unit: '特警', keyTtl: 'P30D' });
  t.equal(created.status, 201);
  t.equal(created.json.key.length, 43, 'the key, once');
  t.equal(created.json.device.state, 'active');
  t.equal(created.json.device.connected, false);
  t.notOk('key' in created.json.device);
  t.equal((await call<Refusal>('POST', '/v1/admin/pda/devices', { deviceId: 'pda-a1', personId: 'p-1', unit: '特警' })).json.error.code, 'PDA_DEVICE_EXISTS');
  t.equal((await call('POST', '/v1/admin/pda/devices', { deviceId: 'bad id', personId: 'p-1', unit: 'u' })).status, 422);
  t.equal((await call<Refusal>('POST', '/v1/admin/pda/devices', { deviceId: 'pda-a2', personId: 'p-1', unit: 'u', extra: 1 })).json.error.details[0]!.field, '/extra');
  await call('POST', '/v1/admin/pda/devices', { deviceId: 'pda-a2', personId: 'p-2', unit: '特警' });
  await call('POST', '/v1/admin/pda/devices', { deviceId: 'pda-a3', personId: 'p-3', unit: '巡警' });
  const page1 = await call<DeviceList>('GET', '/v1/admin/pda/devices?limit=2');
  t.same(page1.json.items.map((d) => d.id), ['pda-a1', 'pda-a2']);
  t.equal(page1.json.next, 'pda-a2');
  const page2 = await call<DeviceList>('GET', `/v1/admin/pda/devices?limit=2&cursor=${page1.json.next}`);
  t.same(page2.json.items.map((d) => d.id), ['pda-a3']);
  t.same((await call<DeviceList>('GET', `/v1/admin/pda/devices?unit=${encodeURIComponent('特警')}`)).json.items.map((d) => d.id), ['pda-a1', 'pda-a2']);
  t.same((await call<DeviceList>('GET', '/v1/admin/pda/devices?person=p-3')).json.items.map((d) => d.id), ['pda-a3']);
  t.equal((await call<DeviceView>('GET', '/v1/admin/pda/devices/pda-a3')).json.unit, '巡警');
  t.equal((await call('GET', '/v1/admin/pda/devices/nope')).status, 404);
  const c = new PdaClient({ url: s.url, deviceId: 'pda-a1', key: created.json.key });
  await c.connect();
  t.equal((await call<DeviceView>('GET', '/v1/admin/pda/devices/pda-a1')).json.connected, true);
  const lost = await call<DeviceAnswer>('POST', '/v1/admin/pda/devices/pda-a1/state', { state: 'lost', reason: 'left in a taxi' });
  t.equal(lost.json.device.state, 'lost');
  t.equal(lost.json.device.stateReason, 'left in a taxi');
  t.equal((await c.closed).reason, CLOSE_REASON.DEVICE_LOST, 'disconnected at once');
  const found = await call<DeviceAnswer>('POST', '/v1/admin/pda/devices/pda-a1/state', { state: 'active' });
  t.equal(found.json.key.length, 43, 'reactivation shows the new key');
  const rotated = await call<DeviceAnswer>('POST', '/v1/admin/pda/devices/pda-a1/key');
  t.equal(rotated.status, 200);
  t.equal(rotated.json.device.keyVersion, 3);
  t.equal((await call('POST', '/v1/admin/pda/devices/pda-a1/state', { state: 'gone' })).status, 422);
  t.equal((await call<DeviceView>('POST', '/v1/admin/pda/devices/pda-a1/assignment', { personId: 'p-9', unit: '刑警' })).json.personId, 'p-9');
  t.equal((await call<DeviceAnswer>('POST', '/v1/admin/pda/devices/pda-a1/state', { state: 'revoked' })).json.device.state, 'revoked');
  t.equal((await call<Refusal>('POST', '/v1/admin/pda/devices/pda-a1/key')).json.error.code, 'PDA_DEVICE_STATE');
});

/** An upgrade the server refuses before it: the status, the error body and whether the connection closed after it. */
function refusedUpgrade(url: string): Promise<{ status: number; body: { error?: { code?: string; message?: string } }; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was taken'));
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error?: { code?: string } }, connection: res.headers.connection }));
    });
    ws.once('error', () => undefined);
  });
}

t.test('over pda.maxSessions, and once the channel closes, an upgrade is refused with the error catalogue\'s 503 and the connection closed', async (t) => {
  const s = await server(t, { maxSessions: 1 });
  const a = await Raw.open(s.url);
  t.equal(s.channel.sessionCount, 1);
  const full = await refusedUpgrade(s.url);
  t.equal(full.status, 503);
  t.equal(full.body.error?.code, 'OVERLOADED', 'OVERLOADED: the channel holds its sessions');
  t.match(full.body.error?.message ?? '', /1 sessions/);
  t.equal(full.connection, 'close', 'the refused upgrade does not keep its connection');
  t.equal(s.channel.sessionCount, 1, 'the refusal made no session');
  a.ws.close();
  await a.closed;
  for (let i = 0; i < 50 && s.channel.sessionCount > 0; i++) await new Promise((r) => setTimeout(r, 20));
  const b = await Raw.open(s.url);
  t.pass('with the session gone, the next upgrade is taken');
  b.ws.close();
  await b.closed;
  void s.channel.close();
  const closing = await refusedUpgrade(s.url);
  t.equal(closing.status, 503);
  t.equal(closing.body.error?.code, 'PDA_CLOSED', 'PDA_CLOSED while the channel closes');
});
