/**
 * The settings of the Node process that `smsgw start` applies (config
 * `runtime`). An in-process startGateway (tests, embedding) leaves the
 * process as it is.
 */
import { setFlagsFromString } from 'node:v8';
import type { ResolvedConfig } from '../config/load.js';

/**
 * The V8 flags `runtime` asks for, less those the operator already gave on
 * the command line or in NODE_OPTIONS (theirs win). V8 reads `--a-b` and
 * `--a_b` alike.
 */
export function runtimeFlags(runtime: ResolvedConfig['runtime'], execArgv: readonly string[], nodeOptions: string): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map((a) => a.split('=')[0]!.replace(/_/g, '-')));
  const flags: string[] = [];
  if (runtime.heapGrowingPercent > 0 && !given.has('--heap-growing-percent')) flags.push(`--heap-growing-percent=${runtime.heapGrowingPercent}`);
  return flags;
}

/** Sets the flags of `runtimeFlags` on this process's V8; returns them. */
export function applyRuntimeSettings(config: ResolvedConfig): string[] {
  const flags = runtimeFlags(config.runtime, process.execArgv, process.env['NODE_OPTIONS'] ?? '');
  for (const flag of flags) setFlagsFromString(flag);
  return flags;
}
