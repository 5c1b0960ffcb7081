/**
 * `smsgw pda-sim`: simulated police PDAs against a running gateway.
 *
 *   smsgw pda-sim --devices 100 [--url ws://127.0.0.1:8080/v1/pda]
 *                 [--admin-key KEY] [--seed 1] [--duration 60] [--drop 0.01] [--read 0.5] [--prefix sim]
 *
 * Devices `<prefix>-<i>` are registered through the PDA admin API (or get a
 * fresh key when they exist), then connect, authenticate, receive, ack,
 * read, and drop and reconnect at random. Prints the counters every 5 s and
 * at the end (JSON). The lead adds `registerPdaCommands(program)` to the
 * `smsgw` program.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { runPdaSim, type PdaSimStats } from './sim.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function probability(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('must be a number from 0 to 1');
  return n;
}

export function registerPdaCommands(program: Command): void {
  program
    .command('pda-sim')
    .description('simulated police PDAs: connect, authenticate, receive, ack, drop and reconnect at random')
    .requiredOption('--devices <n>', 'number of simulated devices', positiveInt)
    .option('--url <url>', 'PDA WebSocket URL', process.env['SMSGW_PDA_URL'] ?? 'ws://127.0.0.1:8080/v1/pda')
    .option('--admin-key <key>', 'PDA admin key (pda.adminKey), to register the devices', process.env['SMSGW_PDA_ADMIN_KEY'])
    .option('--prefix <prefix>', 'device id prefix', 'sim')
    .option('--seed <n>', 'random seed', positiveInt, 1)
    .option('--duration <seconds>', 'run this long, then close every device', positiveInt, 60)
    .option('--drop <p>', 'chance per received message to cut the connection before acking', probability, 0.01)
    .option('--read <p>', 'chance per new message to report it read', probability, 0.5)
    .action(async (opts: { devices: number; url: string; adminKey?: string; prefix: string; seed: number; duration: number; drop: number; read: number }) => {
      if (!opts.adminKey) throw new InvalidArgumentError('--admin-key (or SMSGW_PDA_ADMIN_KEY) is needed to register the simulated devices');
      const controller = new AbortController();
      const stop = (): void => controller.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      let last: PdaSimStats | undefined;
      const timer = setInterval(() => {
        if (last) process.stdout.write(`${JSON.stringify(last)}\n`);
      }, 5000);
      try {
        const stats = await runPdaSim({
          url: opts.url,
          devices: opts.devices,
          adminKey: opts.adminKey,
          prefix: opts.prefix,
          seed: opts.seed,
          durationMs: opts.duration * 1000,
          dropProbability: opts.drop,
          readProbability: opts.read,
          signal: controller.signal,
          until: (s) => {
            last = s;
            return false;
          },
        });
        process.stdout.write(`${JSON.stringify({ final: true, ...stats })}\n`);
      } finally {
        clearInterval(timer);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
