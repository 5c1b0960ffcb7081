/**
 * Shared benchmark plumbing: medians, ratios, a fixed-width table, the JSON
 * summary (bench/out/<name>-<time>.json) and peak RSS of a child process.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export interface Row {
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: number;
  readonly baselineName?: string;
  readonly target?: number;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(2);
}

export function table(title: string, rows: readonly Row[]): string {
  const head = ['metric', 'value', 'unit', 'baseline (same run)', 'ratio', 'target'];
  const body = rows.map((r) => {
    const ratio = r.baseline !== undefined && r.baseline !== 0 ? r.value / r.baseline : undefined;
    return [
      r.metric,
      fmt(r.value),
      r.unit,
      r.baseline !== undefined ? `${fmt(r.baseline)} (${r.baselineName ?? ''})` : '',
      ratio !== undefined ? `${ratio.toFixed(2)}×` : '',
      r.target !== undefined ? `≥ ${r.target}× ${ratio !== undefined ? (ratio >= r.target ? 'met' : 'NOT met') : ''}` : '',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [`### ${title}`, '', line(head), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...body.map(line)].join('\n');
}

export function writeSummary(name: string, summary: unknown): string {
  const dir = join(process.cwd(), 'bench', 'out');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
  return file;
}

const LOAD_AT_START = loadavg()[0] ?? 0;

/**
 * The machine a bench ran on, for its results: cores, and the 1-minute load average when the
 * bench started and now. Ratios are only as good as the machine was quiet (other work shares the
 * cores with the systems measured, and not equally).
 */
export function machineNote(): string {
  return `Machine: ${availableParallelism()} cores; 1-minute load average ${LOAD_AT_START.toFixed(2)} when the bench started, ${(loadavg()[0] ?? 0).toFixed(2)} at its end (the bench's own processes included).`;
}

/** Peak resident set (VmHWM) of a process, in MiB. */
export function peakRssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

/** Wall clock in ms with sub-ms resolution, comparable across processes on one machine. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Peak anonymous and file-backed resident memory of processes, sampled every
 * `everyMs` from /proc (VmHWM has no split). File-backed pages of an LMDB
 * environment are the kernel's page cache of the mapped file, reclaimable
 * under pressure; anonymous pages are the process's own heap.
 */
export function sampleRss(pids: () => readonly (number | undefined)[], everyMs = 200): { stop(): { anonMiB: number; fileMiB: number } } {
  let anon = 0;
  let file = 0;
  const read = (): void => {
    let a = 0;
    let f = 0;
    for (const pid of pids()) {
      if (pid === undefined) continue;
      try {
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        a += Number(/RssAnon:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
        f += Number(/RssFile:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
      } catch {
        /* exited */
      }
    }
    anon = Math.max(anon, a);
    file = Math.max(file, f);
  };
  read();
  const timer = setInterval(read, everyMs);
  return {
    stop() {
      read();
      clearInterval(timer);
      return { anonMiB: anon / 1024, fileMiB: file / 1024 };
    },
  };
}
