import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { pino } from 'pino';
import { loadConfig } from './src/config/load.js';
import { createMetrics } from './src/telemetry/metrics.js';
import { PdaChannel } from './src/pda/channel.js';
import { encodeFrame, decodeFrame } from './src/pda/codec.js';
import { responseMac } from './src/pda/keys.js';
const N = 5000;
const env = open({ path: join(mkdtempSync(join(tmpdir(), 'p5-')), 'x.lmdb'), maxDbs: 12, compression: false });
const config = loadConfig({ env: {}, overrides: { pda: { enabled: true, keySecret: 'b'.repeat(40), maxSessions: 100000 } } }).pda;
const ch = PdaChannel.open({ env, config, sink: { async recordPdaStates() {} }, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'warn' }) });
const keys: string[] = [];
for (let i = 0; i < N; i += 500) (await Promise.all(Array.from({ length: 500 }, (_, k) => ch.registry.register({ deviceId: `d${i + k}`, personId: `p${i + k}`, unit: 'u' })))).forEach((r) => keys.push(r.key));
const sessions = [];
for (let i = 0; i < N; i++) {
  let challenge: any;
  const sock = { send: (f: Uint8Array) => { const r = f[0] === 2 ? decodeFrame(f) : undefined; if (r?.ok && r.frame.type === 'challenge') challenge = r.frame; return 'ok' as const; }, bufferedAmount: () => 0, cork: (fn: () => void) => fn(), end: () => {} };
  const s = ch.newSession(sock)!;
  s.onMessage(encodeFrame({ type: 'hello', version: 1, deviceId: `d${i}`, lastAck: 0 }), true);
  s.onMessage(encodeFrame({ type: 'response', mac: responseMac(Buffer.from(keys[i]!, 'base64url'), challenge.nonce, `d${i}`) }), true);
  sessions.push(s);
}
for (let rep = 0; rep < 4; rep++) {
(globalThis as any).__tr = [];
const T0 = performance.now();
await ch.deliver(Array.from({ length: N }, (_, i) => ({ messageId: 'B' + rep, index: i, personId: `p${i}`, priority: 2 as const, expiresAt: Date.now() + 3600000, classification: 'police', senderUnit: '市公安局指挥中心', body: '【市公安局指挥中心】全体值班警员：今晚22:00起全市开展夜间巡逻，请各单位按预案到岗，收到请确认。' })));
await ch.settled();
const T1 = performance.now();
for (const s of sessions) s.onMessage(encodeFrame({ type: 'ack', cumulative: rep + 1, selective: [] }), true);
await ch.settled();
console.log(rep, 'deliver', (T1 - T0).toFixed(0), 'ack', (performance.now() - T1).toFixed(0), (globalThis as any).__tr.join(' | '));
}
await ch.close(); await env.close();
