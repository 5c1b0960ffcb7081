/**
 * A callback receiver for benchmarks, in its own process so that it costs
 * neither the gateway nor Kannel: a bare uWebSockets.js server that answers
 * every request (any method, any path) with 200 and counts it. IPC:
 *   { cmd: 'stats' } → { count, lastAt } (wall ms of the last request, 0 if none)
 *   { cmd: 'reset' } → clears both
 *   { cmd: 'stop' }  → exits
 * It reads whole bodies (a POST is counted once its body has arrived), so a
 * callback counts when the receiver has it, as a real receiver would.
 */
import { loadUws } from '../src/ingest/uws.js';
import { wallNow } from './lib/report.js';

const uws = loadUws();
let count = 0;
let lastAt = 0;
const app = uws.App().any('/*', (res, req) => {
  if (req.getMethod().toLowerCase() === 'get') {
    // Kannel's dlr-url calls are GETs with no body.
    count++;
    lastAt = wallNow();
    res.writeStatus('200 OK').end('ok');
    return;
  }
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  res.onData((_chunk, isLast) => {
    if (!isLast || aborted) return;
    count++;
    lastAt = wallNow();
    res.cork(() => {
      res.writeStatus('200 OK').end('ok');
    });
  });
});
app.listen('127.0.0.1', 0, (socket) => {
  if (!socket) process.exit(1);
  process.send?.({ port: uws.us_socket_local_port(socket) });
});
process.on('message', (m: { cmd: string; id: number }) => {
  if (m.cmd === 'stats') process.send?.({ id: m.id, count, lastAt });
  else if (m.cmd === 'reset') {
    count = 0;
    lastAt = 0;
    process.send?.({ id: m.id });
  } else if (m.cmd === 'stop') process.exit(0);
});
