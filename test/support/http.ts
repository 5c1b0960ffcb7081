import { connect } from 'node:net';

/** A response's body as JSON when it parses, else as text (error pages, CSV, plain answers). */
export async function responseBody(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export interface RawExchangeOptions {
  /** Resolve once the server has sent nothing for this long after its last bytes (else: at close or the cap). */
  readonly quietMs?: number;
  /** Resolve with what came by then, whatever the socket does. Default 3 s. */
  readonly capMs?: number;
  /** A socket error ends the exchange with what came so far instead of rejecting (fuzzing). */
  readonly tolerateErrors?: boolean;
}

/**
 * Write `payload` on a fresh loopback connection to `port`; resolve with
 * everything the server sent (latin1) when it closes, goes quiet
 * (`quietMs`) or the cap passes. Raw bytes, for what fetch cannot send:
 * pipelined requests, HEAD framing, malformed request lines.
 */
export function rawExchange(port: number, payload: string | Uint8Array, opts: RawExchangeOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    let ended = false;
    const done = (): void => {
      if (ended) return;
      ended = true;
      clearTimeout(quiet);
      clearTimeout(cap);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const cap = setTimeout(done, opts.capMs ?? 3000);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (opts.quietMs !== undefined) {
        clearTimeout(quiet);
        quiet = setTimeout(done, opts.quietMs);
      }
    });
    socket.on('error', (e) => {
      if (opts.tolerateErrors === true) done();
      else if (!ended) {
        ended = true;
        clearTimeout(quiet);
        clearTimeout(cap);
        reject(e);
      }
    });
    socket.on('close', done);
    socket.on('connect', () => socket.write(payload));
  });
}
