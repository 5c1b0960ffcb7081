/**
 * A PDA session over wss:// (server.tls configured): the gateway's one
 * HTTPS port serves the admin API, the send API and the PDA WebSocket.
 * Hello, challenge/response, welcome, message, ack and ping/pong all cross
 * TLS, and the ack shows up as `delivered` in the status API (read over
 * HTTPS too). A device that does not trust the certificate, or speaks
 * plain ws:// to the TLS port, never gets a session.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { PdaClient, PdaClosedError } from '../../src/pda/client.js';
import type { MessageFrame } from '../../src/pda/codec.js';
import { ADMIN_CONFIG, ADMIN_KEY } from '../support/directory.js';
import { numberAt, startTestGateway } from '../support/gateway.js';
import { selfSignedCertificate } from '../support/tls.js';
import type { MessageStatus } from '../support/api-types.js';

const PDA_ADMIN = 'pda-admin-key-0123456789';

interface Reply<T = unknown> {
  readonly status: number;
  readonly json: T;
}

/** One JSON request over HTTPS, trusting only `ca`. */
function https<T = unknown>(port: number, ca: Buffer, key: string, method: string, path: string, body?: unknown): Promise<Reply<T>> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1', port, method, path, ca,
        headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = text;
          try {
            json = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, json: json as T });
        });
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

t.test('hello, authentication, message, ack and ping over wss://; the ack is delivered in the status API', async (t) => {
  const { keyFile, certFile } = selfSignedCertificate(t, 'smsgw-pda-tls-');
  const ca = readFileSync(certFile);
  const gw = await startTestGateway(t, {
    config: { ...ADMIN_CONFIG, server: { tls: { keyFile, certFile } }, pda: { enabled: true, keySecret: 't'.repeat(40), adminKey: PDA_ADMIN } },
  });
  const port = gw.gateway.port;
  const must = async <T = unknown>(key: string, method: string, path: string, body?: unknown): Promise<T> => {
    const r = await https<T>(port, ca, key, method, path, body);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  };

  // Set-up over HTTPS: a unit allowed to send police messages, an officer on PDA, the officer's device.
  await must(ADMIN_KEY, 'POST', '/v1/admin/units', {
    id: 'psb', name: '市公安局', sender: '10690110', signature: '【市公安局】',
    grants: { tiers: ['*'], groups: ['*'], direct: true, police: true, dailyQuota: null, perMinuteQuota: null },
  });
  const { key: unitKey } = await must<{ key: string }>(ADMIN_KEY, 'POST', '/v1/admin/units/psb/keys', { label: 'command-centre' });
  await must(ADMIN_KEY, 'POST', '/v1/admin/people', { id: 'cop-1', name: '警员', mobile: numberAt(1), unit: 'psb', channel: 'pda' });
  const device = await https<{ key: string }>(port, ca, PDA_ADMIN, 'POST', '/v1/admin/pda/devices', { deviceId: 'pda-tls-1', personId: 'cop-1', unit: '市公安局' });
  t.equal(device.status, 201, 'device provisioned over HTTPS');
  const deviceKey = device.json.key;

  const url = `wss://127.0.0.1:${port}/v1/pda`;

  // Not trusting the certificate: the TLS handshake fails, no PDA session.
  const untrusted = new PdaClient({ url, deviceId: 'pda-tls-1', key: deviceKey, heartbeat: false });
  const refused = await untrusted.connect().then(() => undefined, (e: unknown) => e);
  t.type(refused, PdaClosedError, 'a device that does not trust the certificate gets no session');
  t.equal((refused as PdaClosedError).info.code, 1006, 'the connection failed before any protocol close');
  // Plain ws:// to the TLS port: no session either.
  const plain = new PdaClient({ url: url.replace('wss:', 'ws:'), deviceId: 'pda-tls-1', key: deviceKey, heartbeat: false, handshakeTimeoutMs: 3000 });
  t.type(await plain.connect().then(() => undefined, (e: unknown) => e), PdaClosedError, 'plain ws:// to the TLS port gets no session');
  t.equal(gw.gateway.pda?.readyCount, 0, 'no authenticated session so far');

  // The real device: hello → challenge → response → welcome, all over TLS.
  const got: MessageFrame[] = [];
  const client = new PdaClient({ url, ca, deviceId: 'pda-tls-1', key: deviceKey, heartbeat: false, onMessage: (m) => got.push(m) });
  t.teardown(() => client.close());
  const welcome = await client.connect();
  t.match(welcome, { type: 'welcome', floor: 1, backlog: 0 }, 'authenticated over wss://');
  t.ok(gw.gateway.pda?.isConnected('pda-tls-1'), 'the gateway holds the session');
  t.ok(Number.isFinite(await client.ping()), 'ping/pong round trip over TLS');

  // A police message over HTTPS → the device's outbox → MESSAGE over TLS → ACK over TLS.
  const sent = await https<{ id: string }>(port, ca, unitKey, 'POST', '/v1/messages', { to: [numberAt(1)], text: '今晚22:00人民广场集合', classification: 'police' });
  t.equal(sent.status, 202, JSON.stringify(sent.json));
  const deadline = Date.now() + 30_000;
  while (got.length === 0 && Date.now() < deadline) await sleep(20);
  t.equal(got.length, 1, 'the message arrived over TLS');
  t.match(got[0], { type: 'message', seq: 1, classification: 'police', body: /今晚22:00人民广场集合/ });

  let status: Reply<MessageStatus> | undefined;
  while (Date.now() < deadline) {
    status = await https<MessageStatus>(port, ca, unitKey, 'GET', `/v1/messages/${sent.json.id}`);
    if (status.json.status === 'complete') break;
    await sleep(50);
  }
  t.equal(status?.json.status, 'complete', 'final in the status API (read over HTTPS)');
  t.equal(status?.json.summary.delivered, 1, 'the ack that crossed TLS made it delivered');
  t.ok(client.counts.acks >= 1, 'the device acknowledged over TLS');
  t.equal(client.counts.duplicates, 0);
  t.equal(gw.gateway.pda?.store.outboxEntries, 0, 'the acknowledged entry left the outbox');
  t.equal(gw.simulator.stats().submits, 0, 'nothing went to the SMSC');
  const closed = await client.close();
  t.equal(closed.reasonName, 'normal', 'closed with a CLOSE frame over TLS');
});
