/**
 * A tenant's callback receiver for tests: an HTTP server on a loopback port
 * that checks each POST's signature (docs/CALLBACKS.md: hex HMAC-SHA-256 of
 * `timestamp + "." + body`), records it, and answers with what the test
 * says: a status, or `hold` (the request stays open until `release`). A
 * request whose connection closes before it was answered (the sending
 * process died) is recorded as `reset`. Closed on teardown.
 */
import { createHmac } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface SinkRequest {
  readonly n: number;
  readonly path: string;
  readonly body: string;
  readonly json: unknown;
  /** Timestamp fresh and signature right for the secret. */
  readonly signed: boolean;
  readonly receivedAt: number;
  /** The status answered; undefined while held (or reset before an answer). */
  status: number | undefined;
  /** The connection closed before an answer. */
  reset: boolean;
}

export type SinkAnswer = number | 'hold';

export interface CallbackSink {
  /** Base URL (`http://127.0.0.1:<port>`): its origin is this sink's own. */
  readonly origin: string;
  readonly requests: readonly SinkRequest[];
  /** Requests held and still open. */
  held(): number;
  /** Answer every held request with `status`. */
  release(status: number): void;
  /** Change how later requests are answered. */
  answer(f: (req: SinkRequest) => SinkAnswer): void;
}

export async function startCallbackSink(t: Teardown, secret: string, answer: (req: SinkRequest) => SinkAnswer): Promise<CallbackSink> {
  const requests: SinkRequest[] = [];
  const holding = new Map<SinkRequest, ServerResponse>();
  let decide = answer;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const ts = String(req.headers['x-smsgw-timestamp'] ?? '');
      const sig = String(req.headers['x-smsgw-signature'] ?? '');
      const expected = createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex');
      let json: unknown;
      try {
        json = JSON.parse(body) as unknown;
      } catch {
        json = undefined;
      }
      const r: SinkRequest = {
        n: requests.length, path: req.url ?? '', body, json, receivedAt: Date.now(),
        signed: sig === expected && Math.abs(Date.now() / 1000 - Number(ts)) < 300, status: undefined, reset: false,
      };
      requests.push(r);
      res.on('close', () => {
        if (r.status === undefined) r.reset = true;
        holding.delete(r);
      });
      const a = decide(r);
      if (a === 'hold') holding.set(r, res);
      else {
        r.status = a;
        res.writeHead(a).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    for (const res of holding.values()) res.destroy();
    server.closeAllConnections();
    server.close(() => r());
  }));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    held: () => holding.size,
    release(status) {
      for (const [r, res] of [...holding]) {
        holding.delete(r);
        r.status = status;
        res.writeHead(status).end();
      }
    },
    answer(f) {
      decide = f;
    },
  };
}
