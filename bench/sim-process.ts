/**
 * The SMSC simulator as a child process for benchmarks (its own core, like a
 * real SMSC): started with options as JSON in argv[2]; answers IPC requests:
 *   { cmd: 'stats' }  → simulator stats (numbers only)
 *   { cmd: 'first' }  → [destination, wall ms of its first submit_sm] pairs, then forgets them
 *   { cmd: 'last' }   → wall ms of the last submit_sm received and of the last deliver_sm_resp
 *                       (a receipt the ESME has made durable), 0 if none yet: where a
 *                       benchmark's submit and receipt windows end, to the millisecond
 *                       rather than to the next poll of the gateway's metrics
 *   { cmd: 'stop' }   → stops and exits
 */
import { SmscSimulator, type SmscSimulatorOptions } from '../src/smpp/simulator.js';
import { wallNow } from './lib/report.js';

const options = JSON.parse(process.argv[2] ?? '{}') as SmscSimulatorOptions;
// Bounded by the benchmark's N (the parent asks for and clears it after each phase).
let firstSubmit = new Map<string, number>();
let lastSubmitAt = 0;
let lastDlrAckAt = 0;
let dlrsAcked = 0;
const sim = new SmscSimulator({
  ...options,
  observeSubmit: (destination: string) => {
    const now = wallNow();
    lastSubmitAt = now;
    if (!firstSubmit.has(destination)) firstSubmit.set(destination, now);
  },
});
const { port } = await sim.start();
// The simulator has no hook for receipt acks: its counter is read every 2 ms (this process's own core).
const dlrWatch = setInterval(() => {
  const n = sim.stats().dlrsAcked;
  if (n !== dlrsAcked) {
    dlrsAcked = n;
    lastDlrAckAt = wallNow();
  }
}, 2);
process.send?.({ ready: true, port });
process.on('message', (m: { cmd: string; id: number }) => {
  if (m.cmd === 'stats') {
    const { submitsByDestination: _omit, ...numbers } = sim.stats();
    process.send?.({ id: m.id, stats: numbers });
  } else if (m.cmd === 'first') {
    const pairs = [...firstSubmit];
    firstSubmit = new Map();
    process.send?.({ id: m.id, first: pairs });
  } else if (m.cmd === 'last') {
    process.send?.({ id: m.id, last: { submitAt: lastSubmitAt, dlrAckAt: lastDlrAckAt } });
  } else if (m.cmd === 'stop') {
    clearInterval(dlrWatch);
    void sim.stop().then(() => process.exit(0));
  }
});
