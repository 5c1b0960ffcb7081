/**
 * The SMSC simulator as a child process for benchmarks (its own core, like a
 * real SMSC): started with options as JSON in argv[2]; answers IPC requests:
 *   { cmd: 'stats' }  → simulator stats (numbers only)
 *   { cmd: 'first' }  → [destination, wall ms of its first submit_sm] pairs, then forgets them
 *   { cmd: 'stop' }   → stops and exits
 */
import { SmscSimulator, type SmscSimulatorOptions } from '../src/smpp/simulator.js';
import { wallNow } from './lib/report.js';

const options = JSON.parse(process.argv[2] ?? '{}') as SmscSimulatorOptions;
// Bounded by the benchmark's N (the parent asks for and clears it after each phase).
let firstSubmit = new Map<string, number>();
const sim = new SmscSimulator({
  ...options,
  observeSubmit: (destination: string) => {
    if (!firstSubmit.has(destination)) firstSubmit.set(destination, wallNow());
  },
});
const { port } = await sim.start();
process.send?.({ ready: true, port });
process.on('message', (m: { cmd: string; id: number }) => {
  if (m.cmd === 'stats') {
    const { submitsByDestination: _omit, ...numbers } = sim.stats();
    process.send?.({ id: m.id, stats: numbers });
  } else if (m.cmd === 'first') {
    const pairs = [...firstSubmit];
    firstSubmit = new Map();
    process.send?.({ id: m.id, first: pairs });
  } else if (m.cmd === 'stop') {
    void sim.stop().then(() => process.exit(0));
  }
});
