/**
 * A callback receiver for benchmarks, in its own process so that it costs
 * neither the gateway nor Kannel: a bare uWebSockets.js server that answers
 * every request (any method, any path) with 200 and counts it. IPC:
 *   { cmd: 'stats' } → { count, lastAt, distinct, events, distinctEvents } (wall ms of the last request, 0 if none;
 *                      distinct: different "id" values among JSON POST bodies, so a repeat shows;
 *                      events: "final" status events in JSON-array bodies, distinctEvents: different (messageId, index) among them)
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
/** Ids seen in POST bodies (bounded by the benchmark's N). */
let ids = new Set<string>();
const ID = /"id":"([^"]{1,64})"/;
/** Status events (statusCallback): final events received, and distinct (messageId, index) among them. */
let events = 0;
let eventKeys = new Set<string>();
const FINAL_EVENT = /"messageId":"([^"]{1,64})"(?:,"reference":"[^"]*")?,"index":(\d+),"to":"[^"]*","event":"final"/g;
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
  let body = '';
  res.onData((chunk, isLast) => {
    // Copy: uWS reuses the chunk's memory after this callback.
    body += Buffer.from(chunk).toString();
    if (!isLast || aborted) return;
    if (body.startsWith('[')) {
      for (const e of body.matchAll(FINAL_EVENT)) {
        events++;
        eventKeys.add(`${e[1]}#${e[2]}`);
      }
    } else {
      const m = ID.exec(body);
      if (m) ids.add(m[1]!);
    }
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
  if (m.cmd === 'stats') process.send?.({ id: m.id, count, lastAt, distinct: ids.size, events, distinctEvents: eventKeys.size });
  else if (m.cmd === 'reset') {
    count = 0;
    lastAt = 0;
    ids = new Set();
    events = 0;
    eventKeys = new Set();
    process.send?.({ id: m.id });
  } else if (m.cmd === 'stop') process.exit(0);
});
