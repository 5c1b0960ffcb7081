/**
 * Child-process plumbing shared by the benchmarks that run whole systems
 * (gateway, Kannel, callback sink): readiness polling, a bounded stop, the
 * CPU a process has used, and the callback sink and the bare uWS baseline as
 * children.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ipcChild, type SimChild } from './sim-child.js';

/** Polls `check` every 100 ms until it is true; a throwing check counts as "not yet". */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms`);
}

/** Stops a child with `signal`, then SIGKILL after 20 s; resolves once it has exited. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

/** User + system CPU seconds a process has used (from /proc), NaN once it is gone. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after "state" (field 3).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

export interface SinkStats {
  readonly count: number;
  readonly lastAt: number;
  readonly distinct: number;
  /** "final" status events received (JSON-array bodies), and distinct (messageId, index) among them. */
  readonly events: number;
  readonly distinctEvents: number;
}

export interface Sink extends SimChild {
  stats(): Promise<SinkStats>;
}

/** The callback receiver (bench/callback-sink.ts) in its own process. */
export async function startSink(): Promise<Sink> {
  const child = fork(join(import.meta.dirname, '..', 'callback-sink.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ipc = await ipcChild(child, 'callback sink');
  return { ...ipc, stats: () => ipc.ask<SinkStats>('stats') };
}

/** A server in its own process: where it listens, its pid (for its CPU time) and how to stop it. */
export interface ServerChild {
  readonly url: string;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

/** The baseline of accepted/s: bench/bare-uws.ts (a uWebSockets.js handler answering 202 with no work) in its own process. */
export async function startBareUws(): Promise<ServerChild> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'bare-uws.ts'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
    child.once('exit', (c) => reject(new Error(`bare uws exited ${String(c)}`)));
  });
  return { url: `http://127.0.0.1:${port}`, pid: child.pid, stop: () => stopChild(child) };
}
