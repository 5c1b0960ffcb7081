/**
 * The SMSC simulator as a child process (bench/sim-process.ts) and a small
 * IPC client for it: `ask('stats')`, `ask('first')`, `stop()`. Benchmarks
 * run the SMSC in its own process, as a real one would be.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export interface SimChild {
  readonly port: number;
  /** The child's process id (its CPU time is read from /proc). */
  readonly pid: number | undefined;
  ask<T>(cmd: string): Promise<T>;
  stop(): Promise<void>;
}

/**
 * `maxTracked` bounds the simulator's per-destination and per-segment counters;
 * `options` override the simulator's settings (receipt delay, id format, …).
 */
export async function startSimChild(maxTracked: number, options: Record<string, unknown> = {}): Promise<SimChild> {
  const child = fork(join(import.meta.dirname, '..', 'sim-process.ts'), [JSON.stringify({ host: '127.0.0.1', port: 0, systemId: 'smsgw', password: 'secret', dlrDelayMs: 0, maxTracked, ...options })], {
    execArgv: ['--import', 'tsx', ...(process.env['BENCH_SIM_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return ipcChild(child, 'simulator');
}

/** The CMPP ISMG simulator (bench/cmpp-sim-process.ts) as a child process, same IPC. */
export async function startCmppSimChild(maxTracked: number, options: Record<string, unknown> = {}): Promise<SimChild> {
  const child = fork(join(import.meta.dirname, '..', 'cmpp-sim-process.ts'), [JSON.stringify({ version: 3, host: '127.0.0.1', port: 0, spId: '901234', sharedSecret: 'secret', dlrDelayMs: 0, maxTracked, ...options })], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return ipcChild(child, 'CMPP simulator');
}

/**
 * The IPC protocol of the benchmark children: the child sends `{ port }`
 * once it listens, answers `{ cmd, id }` with a message carrying that `id`,
 * and exits on `{ cmd: 'stop' }`.
 */
export async function ipcChild(child: ChildProcess, name: string): Promise<SimChild> {
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`${name} exited ${String(code)}`)));
  });
  let id = 0;
  return {
    port,
    pid: child.pid,
    ask<T>(cmd: string): Promise<T> {
      const want = ++id;
      return new Promise((resolve) => {
        const on = (m: { id?: number } & Record<string, unknown>): void => {
          if (m.id !== want) return;
          child.off('message', on);
          resolve(m as T);
        };
        child.on('message', on);
        child.send({ cmd, id: want });
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.send({ cmd: 'stop', id: 0 });
      await exited;
    },
  };
}
