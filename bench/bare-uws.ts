/**
 * Baseline: a bare uWebSockets.js handler that reads the body and answers
 * 202 without any work. Run as a child process by the benchmarks.
 */
import { loadUws } from '../src/ingest/uws.js';

const uws = loadUws();
const port = Number(process.argv[2] ?? 0);
const body = JSON.stringify({ id: 'bare', status: 'accepted' });
uws
  .App()
  .post('/v1/messages', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    res.onData((_chunk, isLast) => {
      if (!isLast || aborted) return;
      res.cork(() => {
        res.writeStatus('202 Accepted').writeHeader('content-type', 'application/json').end(body);
      });
    });
  })
  .listen('127.0.0.1', port, (socket) => {
    if (!socket) process.exit(1);
    process.stdout.write(`${JSON.stringify({ port: uws.us_socket_local_port(socket) })}\n`);
  });
