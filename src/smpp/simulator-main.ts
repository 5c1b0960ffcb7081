/**
 * The simulator as a process of its own (`smsgw sim`): start, log where it
 * listens and, every few seconds while traffic flows, what it has seen.
 */
import type { SimulatorConfig } from '../config/schema.js';
import type { Logger } from '../telemetry/logger.js';
import { SmscSimulator, type SimulatorKnobs } from './simulator.js';

export interface RunningSimulator {
  readonly port: number;
  readonly simulator: SmscSimulator;
  stop(): Promise<void>;
}

export async function runSimulator(
  config: SimulatorConfig & SimulatorKnobs,
  logger: Logger,
  options: { statsEveryMs?: number } = {},
): Promise<RunningSimulator> {
  const simulator = new SmscSimulator(config, logger);
  const { port } = await simulator.start();
  let lastSubmits = -1;
  let lastDlrs = -1;
  const every = options.statsEveryMs ?? 5000;
  const timer = setInterval(() => {
    const s = simulator.stats();
    if (s.submits === lastSubmits && s.dlrsAcked === lastDlrs) return; // quiet while idle
    lastSubmits = s.submits;
    lastDlrs = s.dlrsAcked;
    logger.info(
      {
        sessions: s.sessions,
        submits: s.submits,
        unique: s.uniqueSegments,
        duplicates: s.duplicates,
        throttled: s.throttled,
        rejected: s.rejected,
        dlrsSent: s.dlrsSent,
        dlrsAcked: s.dlrsAcked,
        deliveryRetries: s.deliveryRetries,
      },
      'simulator stats',
    );
  }, every);
  timer.unref();
  return {
    port,
    simulator,
    async stop() {
      clearInterval(timer);
      await simulator.stop();
    },
  };
}
