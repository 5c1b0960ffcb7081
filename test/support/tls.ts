/**
 * A self-signed certificate for localhost / 127.0.0.1 (openssl), in a temp
 * dir removed on teardown: for HTTPS, wss:// and STARTTLS tests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificate {
  readonly keyFile: string;
  readonly certFile: string;
  /** The certificate (PEM), to trust it as a CA in clients. */
  readonly cert: Buffer;
}

export function selfSignedCertificate(t: { teardown(fn: () => void): void }, name = 'smsgw-tls-'): TestCertificate {
  const dir = mkdtempSync(join(tmpdir(), name));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  return { keyFile, certFile, cert: readFileSync(certFile) };
}
