/**
 * The `smsgw` command: start, sim, send, status.
 *
 *   smsgw start [--config FILE] [--port N] [--role all|ingest|dispatch]
 *   smsgw sim   [--port N] [--dlr-delay MS] [--tps N]
 *   smsgw send  --to 13800138000 [--to …] --text "…" [--tier routine] [--url URL] [--key KEY]
 *   smsgw status ID [--url URL] [--key KEY] [--wait]
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEV_API_KEY, loadConfig, type ResolvedConfig } from '../config/load.js';
import { createLogger } from '../telemetry/logger.js';
import { GatewayError } from '../core/errors.js';
import { startGateway, type GatewayRole } from '../app/gateway.js';
import { installCrashPolicy, keepFileSizeSignalHarmless } from '../app/crash-policy.js';
import { applyRuntimeSettings } from '../app/runtime-settings.js';
import { runSimulator } from '../smpp/simulator-main.js';
import { CmppSimulator } from '../cmpp/simulator.js';
import { SIMULATOR_SP_ID } from '../app/gateway.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { buildOpenApi } from '../http/openapi.js';
import { withRouteTable } from '../http/route-docs.js';
import { registerPdaCommands } from '../pda/cli.js';

const DEFAULT_URL = 'http://127.0.0.1:8080';
const DEV_KEY = DEV_API_KEY;

function int(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function configFrom(opts: { config?: string; port?: number }): ResolvedConfig {
  return loadConfig({
    ...(opts.config !== undefined ? { file: opts.config } : {}),
    ...(opts.port !== undefined ? { overrides: { server: { port: opts.port } } } : {}),
  });
}

async function api(url: string, key: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(new URL(path, url), {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) };
}

export function buildProgram(): Command {
  const program = new Command('smsgw').description('Government SMS mobile-office gateway').showHelpAfterError();

  program
    .command('start')
    .description('run the gateway (HTTP front door, queue, dispatch, SMPP binds)')
    .option('-c, --config <file>', 'JSON config merged over config/default.json (or SMSGW_CONFIG)')
    .option('-p, --port <n>', 'HTTP port (overrides server.port)', int)
    .addOption(new Option('--role <role>', 'which parts run in this process').choices(['all', 'ingest', 'dispatch']).default('all'))
    .action(async (opts: { config?: string; port?: number; role: GatewayRole }) => {
      const config = configFrom(opts);
      const logger = createLogger({ level: config.log.level });
      const runtimeFlags = applyRuntimeSettings(config);
      if (runtimeFlags.length > 0) logger.debug({ flags: runtimeFlags }, 'runtime settings applied');
      // Before the store opens: a write past the file size limit must fail (EFBIG), never kill the process.
      keepFileSizeSignalHarmless();
      const gateway = await startGateway(config, { logger, role: opts.role });
      // One stop, whoever asks first (a signal or the crash policy).
      let stopped: Promise<void> | undefined;
      const stopOnce = (): Promise<void> => (stopped ??= gateway.stop());
      installCrashPolicy({ logger, drain: stopOnce, absorb: (reason) => gateway.storage.absorb(reason), context: { role: opts.role, port: gateway.port } });
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'shutting down');
        stopOnce().then(
          () => process.exit(0),
          (e: unknown) => {
            logger.error({ err: e }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });

  program
    .command('sim')
    .description('run the built-in SMSC simulator on its own')
    .option('-c, --config <file>', 'JSON config (simulator section)')
    .option('-p, --port <n>', 'SMPP port', int)
    .option('--dlr-delay <ms>', 'delay before each delivery receipt', int)
    .option('--tps <n>', 'answer ESME_RTHROTTLED above this many submit_sm per second (0 = unlimited)', int)
    .addOption(new Option('--protocol <p>', 'speak SMPP (an SMSC) or CMPP (a China Mobile ISMG; SP_Id 901234, secret = simulator.password)').choices(['smpp', 'cmpp2', 'cmpp3']))
    .action(async (opts: { config?: string; port?: number; dlrDelay?: number; tps?: number; protocol?: 'smpp' | 'cmpp2' | 'cmpp3' }) => {
      const config = loadConfig(opts.config !== undefined ? { file: opts.config } : {});
      const logger = createLogger({ level: config.log.level, name: 'smsc-sim' });
      const sim = {
        ...config.simulator,
        ...(opts.port !== undefined ? { port: opts.port } : {}),
        ...(opts.dlrDelay !== undefined ? { dlrDelayMs: opts.dlrDelay } : {}),
        ...(opts.tps !== undefined ? { tps: opts.tps } : {}),
      };
      const protocol = opts.protocol ?? sim.protocol ?? 'smpp';
      if (protocol !== 'smpp') {
        const ismg = new CmppSimulator({
          version: protocol === 'cmpp2' ? 2 : 3, host: sim.host, port: sim.port, spId: SIMULATOR_SP_ID, sharedSecret: sim.password || 'secret',
          dlrDelayMs: sim.dlrDelayMs, tps: sim.tps, disconnectEvery: sim.disconnectEvery,
        }, logger);
        const { port } = await ismg.start();
        logger.info({ port, protocol, spId: SIMULATOR_SP_ID }, 'CMPP ISMG simulator listening');
        const stopIsmg = (): void => void ismg.stop().then(() => process.exit(0));
        process.on('SIGTERM', stopIsmg);
        process.on('SIGINT', stopIsmg);
        return;
      }
      const running = await runSimulator(sim, logger);
      const stop = (): void => void running.stop().then(() => process.exit(0));
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });

  program
    .command('send')
    .description('send a message through a running gateway')
    .requiredOption('--to <number>', 'recipient (repeat for more)', collect, [] as string[])
    .requiredOption('--text <text>', 'message text')
    .option('--tier <tier>', 'permission tier')
    .option('--idempotency-key <key>', 'Idempotency-Key header')
    .option('--url <url>', 'gateway URL', process.env['SMSGW_URL'] ?? DEFAULT_URL)
    .option('--key <key>', 'API key', process.env['SMSGW_API_KEY'] ?? DEV_KEY)
    .action(async (opts: { to: string[]; text: string; tier?: string; idempotencyKey?: string; url: string; key: string }) => {
      const res = await fetch(new URL('/v1/messages', opts.url), {
        method: 'POST',
        headers: {
          authorization: `Bearer ${opts.key}`,
          'content-type': 'application/json',
          ...(opts.idempotencyKey !== undefined ? { 'idempotency-key': opts.idempotencyKey } : {}),
        },
        body: JSON.stringify({ to: opts.to, text: opts.text, ...(opts.tier !== undefined ? { tier: opts.tier } : {}) }),
      });
      process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
      if (res.status !== 202) process.exitCode = 1;
    });

  program
    .command('status')
    .description('show a message\'s recipients and their states')
    .argument('<id>', 'message id from the 202')
    .option('--url <url>', 'gateway URL', process.env['SMSGW_URL'] ?? DEFAULT_URL)
    .option('--key <key>', 'API key', process.env['SMSGW_API_KEY'] ?? DEV_KEY)
    .option('--wait <seconds>', 'poll until every recipient is final, at most this long', int)
    .action(async (id: string, opts: { url: string; key: string; wait?: number }) => {
      const deadline = Date.now() + (opts.wait ?? 0) * 1000;
      for (;;) {
        const { status, json } = await api(opts.url, opts.key, 'GET', `/v1/messages/${encodeURIComponent(id)}`);
        const done = status !== 200 || (json as { status?: string }).status === 'complete';
        if (done || Date.now() >= deadline) {
          process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
          if (status !== 200) process.exitCode = 1;
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    });

  registerPdaCommands(program);

  program
    .command('openapi')
    .description('print the OpenAPI 3.1 document, generated from the route tables (docs/openapi.json is this output)')
    .action(() => {
      process.stdout.write(`${JSON.stringify(buildOpenApi(), null, 2)}\n`);
    });

  program
    .command('route-docs')
    .description('rewrite the generated route list in a README (between the routes:begin / routes:end markers)')
    .argument('[file]', 'the README', 'README.md')
    .action((file: string) => {
      writeFileSync(file, withRouteTable(readFileSync(file, 'utf8')));
    });

  return program;
}

buildProgram()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    if (e instanceof GatewayError) {
      process.stderr.write(`smsgw: ${e.message}\n`);
      for (const d of e.details ?? []) process.stderr.write(`  ${d.field}: ${d.message}\n`);
    } else {
      process.stderr.write(`smsgw: ${(e as Error).stack ?? String(e)}\n`);
    }
    process.exit(1);
  });
