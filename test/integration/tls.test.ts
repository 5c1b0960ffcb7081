/**
 * server.tls: the front door serves HTTPS (and so wss:// for PDAs) with a
 * configured key and certificate; a client that does not trust the
 * certificate is refused.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { selfSignedCertificate } from '../support/tls.js';
import type { MessageStatus } from '../support/api-types.js';

function httpsJson<T = unknown>(port: number, method: string, path: string, ca: Buffer | undefined, body?: unknown): Promise<{ status: number; json: T }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, servername: 'localhost', ...(ca ? { ca } : {}), headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) as T }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

t.test('HTTPS with the configured certificate; untrusted clients refused', async (t) => {
  const { keyFile, certFile } = selfSignedCertificate(t, 'smsgw-tls-');
  const gw = await startTestGateway(t, { config: { server: { tls: { keyFile, certFile } } } });
  const ca = readFileSync(certFile);
  const sent = await httpsJson<{ id: string }>(gw.gateway.port, 'POST', '/v1/messages', ca, { to: ['13800138000'], text: 'over TLS' });
  t.equal(sent.status, 202, 'accepted over HTTPS');
  let status: { status: number; json: MessageStatus } | undefined;
  for (let i = 0; i < 100; i++) {
    status = await httpsJson<MessageStatus>(gw.gateway.port, 'GET', `/v1/messages/${sent.json.id}`, ca);
    if (status.json.status === 'complete') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(status?.json.summary.delivered, 1, 'delivered, status read over HTTPS');
  await t.rejects(httpsJson(gw.gateway.port, 'GET', '/healthz', undefined), /self[- ]signed|unable to verify|certificate/i, 'a client without the CA refuses the certificate');
});
