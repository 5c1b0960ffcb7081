/**
 * A PDA channel server for tests (startPdaServer with a memory status
 * sink) in a temp data dir removed on teardown, and the channel config it
 * runs with.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { MemoryStatusSink, startPdaServer, type RunningPdaServer } from '../../src/pda/server.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** `pda` config: enabled, a test key secret, no admin API unless `over` gives `adminKey`. */
export function pdaConfig(over: Record<string, unknown> = {}): ReturnType<typeof loadConfig>['pda'] {
  return loadConfig({ env: {}, overrides: { pda: { enabled: true, keySecret: 'p'.repeat(40), adminKey: '', ...over } } }).pda;
}

export interface PdaHarness extends RunningPdaServer {
  readonly sink: MemoryStatusSink;
  readonly dataDir: string;
}

export interface PdaHarnessOptions {
  /** Merged over pdaConfig's settings. */
  readonly pda?: Record<string, unknown>;
  /** The server's clock runs `offset` ms ahead of the real one. */
  readonly clock?: { offset: number };
  /** An existing data dir (a restart); removed on teardown unless `keep`. */
  readonly dataDir?: string;
  readonly keep?: boolean;
  /** The status sink (default: a fresh MemoryStatusSink). */
  readonly sink?: MemoryStatusSink;
}

export async function startPdaHarness(t: Teardown, o: PdaHarnessOptions = {}): Promise<PdaHarness> {
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'smsgw-pda-'));
  const sink = o.sink ?? new MemoryStatusSink();
  const clock = o.clock;
  const s = await startPdaServer({ dataDir, config: pdaConfig(o.pda), sink, logger: pino({ level: 'silent' }), ...(clock ? { now: () => Date.now() + clock.offset } : {}) });
  t.teardown(async () => {
    await s.stop();
    if (!o.keep) rmSync(dataDir, { recursive: true, force: true });
  });
  return { ...s, sink, dataDir };
}
