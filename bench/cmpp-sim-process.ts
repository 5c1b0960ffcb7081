/**
 * The CMPP ISMG simulator as a child process for benchmarks, with the same
 * IPC as bench/sim-process.ts ('stats', 'first', 'last', 'stop'), so
 * bench:e2e measures both protocols the same way. Destinations are reported
 * with 86 in front (as the gateway writes numbers), like the SMPP simulator's.
 */
import { CmppSimulator, type CmppSimulatorOptions } from '../src/cmpp/simulator.js';
import { wallNow } from './lib/report.js';

const options = JSON.parse(process.argv[2] ?? '{}') as CmppSimulatorOptions;
let firstSubmit = new Map<string, number>();
let lastSubmitAt = 0;
let lastDlrAckAt = 0;
let dlrsAcked = 0;
const sim = new CmppSimulator({
  ...options,
  observeSubmit: (destination: string) => {
    const now = wallNow();
    lastSubmitAt = now;
    const d = destination.length === 11 ? `86${destination}` : destination;
    if (!firstSubmit.has(d)) firstSubmit.set(d, now);
  },
});
const { port } = await sim.start();
const dlrWatch = setInterval(() => {
  const n = sim.stats().reportsAcked;
  if (n !== dlrsAcked) {
    dlrsAcked = n;
    lastDlrAckAt = wallNow();
  }
}, 2);
process.send?.({ ready: true, port });
process.on('message', (m: { cmd: string; id: number }) => {
  if (m.cmd === 'stats') {
    const s = sim.stats();
    // The names bench:e2e reads from the SMPP simulator.
    process.send?.({ id: m.id, stats: { ...s, dlrsAcked: s.reportsAcked } });
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
