/**
 * SMPP over TLS: the certificate is verified (the smpp package's default is
 * not to), so a bind to an SMSC with an untrusted certificate fails, and one
 * with the CA configured works.
 */
import t from 'tap';
import type { SmppAccountConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { BindPool } from '../../src/smpp/bind-pool.js';
import { SmscSimulator } from '../../src/smpp/simulator.js';

// Self-signed, CA:TRUE, SAN IP:127.0.0.1 + DNS:localhost, valid 2000-01-01 … 2099-12-31 (test only).
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSnpscHoa3fVU2yV6
D4mBIobAHSa8rjAmDZ6jl9vayCKhRANCAASc3DzOgRdYl7wQYvh2gfBcMPkd1kvX
8XOHiHbmcST2Pz5uFAuUT8baiHxQ5OnTd/sb/WKqrj3rmOQSFdaxpnEN
-----END PRIVATE KEY-----
`;
const CERT = `-----BEGIN CERTIFICATE-----
MIIBbzCCARWgAwIBAgIBATAKBggqhkjOPQQDAjAYMRYwFAYDVQQDDA1zbXNjLXNp
bS50ZXN0MCAXDTAwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMjM1OTU5WjAYMRYwFAYD
VQQDDA1zbXNjLXNpbS50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnNw8
zoEXWJe8EGL4doHwXDD5HdZL1/Fzh4h25nEk9j8+bhQLlE/G2oh8UOTp03f7G/1i
qq4965jkEhXWsaZxDaNOMEwwGgYDVR0RBBMwEYcEfwAAAYIJbG9jYWxob3N0MA8G
A1UdEwEB/wQFMAMBAf8wHQYDVR0OBBYEFE2AO7UznEoALJPPvVsAyX/CMTd0MAoG
CCqGSM49BAMCA0gAMEUCIFs3CUsbI536mEVXoxAhgPx+cFCqVGeWnvI1Rv9eW/2T
AiEAngorw9vT69eGuw84YwTZHgSvW5KL6J+4C2U3+1hTB2Y=
-----END CERTIFICATE-----
`;

const logger = createLogger({ level: 'silent' });

function account(port: number): SmppAccountConfig {
  return {
    name: 'tls', host: '127.0.0.1', port, systemId: 'smsgw', password: 'secret', systemType: '', tls: true,
    binds: 1, window: 5, tps: 0, responseTimeoutMs: 1000, enquireLinkMs: 5000,
    reconnectInitialMs: 20, reconnectMaxMs: 100, throttleBackoffMs: 10, operators: ['*'],
  };
}

t.test('TLS bind with the SMSC certificate trusted', async (t) => {
  const sim = new SmscSimulator({ tls: { key: KEY, cert: CERT } }, logger);
  const { port } = await sim.start();
  const pool = new BindPool(account(port), { metrics: createMetrics({ defaultMetrics: false }), logger, ca: CERT });
  t.teardown(async () => {
    await pool.close();
    await sim.stop();
  });
  pool.start();
  t.equal(await pool.waitBound(1, 5000), true, 'bound over TLS');
  const o = await pool.submit({
    destination: '8613800138000', source: '10690000', payload: Buffer.from('over tls'), dataCoding: 0, esmClass: 0,
    registeredDelivery: false, priority: 1, deadline: Date.now() + 10_000,
  });
  t.equal(o.kind, 'accepted');
  t.equal(sim.recentSubmits()[0]?.text, 'over tls');
});

t.test('TLS bind to an untrusted certificate is refused', async (t) => {
  const sim = new SmscSimulator({ tls: { key: KEY, cert: CERT } }, logger);
  const { port } = await sim.start();
  const pool = new BindPool(account(port), { metrics: createMetrics({ defaultMetrics: false }), logger });
  t.teardown(async () => {
    await pool.close();
    await sim.stop();
  });
  pool.start();
  t.equal(await pool.waitBound(1, 500), false, 'never bound');
  t.match(pool.bindStates()[0]?.lastError ?? '', /SELF_SIGNED|CERT|certificate/i, 'the certificate was checked');
  t.equal(sim.stats().binds, 0, 'no bind reached the SMSC');
});
