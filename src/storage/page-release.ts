/**
 * Pages the process holds and no longer needs, given back to the kernel.
 *
 * Two kinds grew with the data and the backlog rather than with the work in
 * hand (bench:peer with BENCH_MEMORY=1, 3-part Chinese, 20,000 vs 200,000
 * messages):
 *
 * - The data file's mapped pages. LMDB reads through a shared, read-only
 *   mapping of its file; every page a read touches stays mapped into the
 *   process, and counts in its RSS, until the environment closes. The
 *   receipt store keeps every recipient's rows, so the resident map grew to
 *   the whole file (70 MiB of file-backed RSS at 20,000, 239 MiB at
 *   200,000) while the pages still read are a few recent ones.
 *   `MappedPages.release()` advises MADV_DONTNEED over the mapping. For a
 *   shared file mapping that drops the process's page-table entries only:
 *   the pages stay in the page cache with their contents, and the next read
 *   of one maps it again (a minor fault, no disk read; the kernel maps its
 *   neighbours with it). Addresses stay the same and readers see the same
 *   bytes, so nothing LMDB or lmdb-js holds becomes invalid. The ranges are
 *   read from /proc/self/maps each time and stay the file's until the
 *   environment closes: lmdb-js never unmaps a map of the file before then
 *   (a map that grows leaves the old one in place for lingering readers),
 *   and the gateway stops the timer before it closes the environment. So an
 *   advised range can never have become someone else's memory, where
 *   MADV_DONTNEED would zero it.
 *
 * - The malloc heap's free pages. A flood commits large LMDB write
 *   transactions (dirty pages, lmdb-js's write buffers, all malloc'd);
 *   freed, they stay in glibc's heap between live blocks, where glibc gives
 *   back only the top of the heap on its own (the heap stayed at 60 MiB after
 *   a 200,000-message intake, against 22 MiB at 20,000). `trimHeap()` calls
 *   malloc_trim(0), which gives back every free page of every arena.
 *
 * lmdb-js and Node have no call for either, so the calls to libc go through
 * koffi (an FFI with prebuilt binaries). Where koffi or these libc calls are
 * not there (not Linux with glibc, no prebuilt binary), `unavailable` says
 * why and the memory stays as it is: a cost in memory, never in data.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';

/** madvise(2) advice: the process does not need these pages; for a shared file mapping the page cache keeps them. */
const MADV_DONTNEED = 4;
const PAGE = 4096;

interface Libc {
  readonly madvise: (addr: number, length: number, advice: number) => number;
  readonly mallocTrim: (pad: number) => number;
  readonly errno: () => number;
}

let loaded: Libc | string | undefined;

/** libc's madvise and malloc_trim through koffi, loaded once; a string says why they are not there. */
function libc(): Libc | string {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') return (loaded = `pages are given back on Linux only (this is ${process.platform})`);
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const lib = koffi.load('libc.so.6');
    const madvise = lib.func('int madvise(uintptr_t addr, size_t length, int advice)') as Libc['madvise'];
    const mallocTrim = lib.func('int malloc_trim(size_t pad)') as Libc['mallocTrim'];
    const errnoAt = lib.func('int *__errno_location()') as () => unknown;
    return (loaded = { madvise, mallocTrim, errno: () => koffi.decode(errnoAt(), 'int') as number });
  } catch (e) {
    return (loaded = `koffi could not load madvise and malloc_trim from libc.so.6: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Why pages cannot be given back here, or undefined when they can. */
export function pageReleaseUnavailable(): string | undefined {
  const l = libc();
  return typeof l === 'string' ? l : undefined;
}

/** An address range of the process that maps a file (a line of /proc/self/maps). */
export interface MappedRange {
  readonly start: number;
  readonly end: number;
  /** Offset in the file of `start`. */
  readonly offset: number;
}

/** The ranges of /proc/self/maps (its text) that map `file` (the path as the kernel prints it). */
export function rangesOf(maps: string, file: string): MappedRange[] {
  const out: MappedRange[] = [];
  const suffix = ` ${file}`;
  for (const line of maps.split('\n')) {
    if (!line.endsWith(suffix)) continue;
    // "start-end perms offset dev inode path", the numbers in hex.
    const [span, , offsetHex] = line.split(' ', 3);
    const dash = span?.indexOf('-') ?? -1;
    if (span === undefined || offsetHex === undefined || dash <= 0) continue;
    const start = Number.parseInt(span.slice(0, dash), 16);
    const end = Number.parseInt(span.slice(dash + 1), 16);
    const offset = Number.parseInt(offsetHex, 16);
    if (Number.isSafeInteger(start) && Number.isSafeInteger(end) && Number.isSafeInteger(offset) && end > start) out.push({ start, end, offset });
  }
  return out;
}

/** The process's mappings of one file (the LMDB data file), whose resident pages can be given back. */
export class MappedPages {
  private readonly file: string;

  /** `file`: the data file (its real path is what /proc/self/maps prints). */
  constructor(file: string) {
    this.file = realpathSync(file);
  }

  /**
   * Advises MADV_DONTNEED over the file's mapped ranges, up to the file's
   * size (the map reserves far more address space than the file holds).
   * Returns the bytes of address space advised; throws when the kernel refuses.
   */
  release(): number {
    const l = libc();
    if (typeof l === 'string') return 0;
    const size = Math.ceil(statSync(this.file).size / PAGE) * PAGE;
    let bytes = 0;
    for (const r of rangesOf(readFileSync('/proc/self/maps', 'latin1'), this.file)) {
      const length = Math.min(r.end - r.start, size - r.offset);
      if (length <= 0) continue;
      if (l.madvise(r.start, length, MADV_DONTNEED) !== 0) throw new Error(`madvise(MADV_DONTNEED) over ${this.file} failed: errno ${l.errno()}`);
      bytes += length;
    }
    return bytes;
  }
}

/**
 * The process's resident pages that are file-backed or shared (the third
 * field of /proc/self/statm), in bytes: the data file's mapped pages, the
 * executable's and libraries' pages, shared memory. Undefined where there is
 * no such file. One small read, cheap enough to poll.
 */
export function sharedResidentBytes(): number | undefined {
  let statm: string;
  try {
    statm = readFileSync('/proc/self/statm', 'latin1');
  } catch {
    return undefined;
  }
  const pages = Number(statm.split(' ')[2]);
  return Number.isSafeInteger(pages) ? pages * PAGE : undefined;
}

/** malloc_trim(0): gives the free pages of every malloc arena back. Returns whether any were. */
export function trimHeap(): boolean {
  const l = libc();
  return typeof l === 'string' ? false : l.mallocTrim(0) === 1;
}

/** How often the mapped pages are compared with `aboveBytes` (a read of /proc/self/statm). */
export const PAGE_BUDGET_CHECK_MS = 100;

export interface PageReleaseOptions {
  /** The data file's mappings. */
  readonly mapped: MappedPages;
  /** How often (ms); 0: never. */
  readonly intervalMs: number;
  /**
   * Between the timed releases, give the data file's pages back as soon as
   * the process's file-backed resident pages have grown this much since the
   * last release (checked every `checkMs`); 0 or absent: only on the timer
   * (the gateway's default is storage.releaseAboveMiB, 48 MiB).
   * A flood that reads and writes the store fast maps many pages within one
   * interval, so a timer alone lets the peak follow the rate (and the size
   * of the tree those reads walk) rather than the work in hand.
   */
  readonly aboveBytes?: number;
  /** Default PAGE_BUDGET_CHECK_MS. */
  readonly checkMs?: number;
  /** The file-backed resident bytes now (default `sharedResidentBytes`); tests pass their own. */
  readonly sharedResident?: () => number | undefined;
  readonly metrics?: Metrics;
  readonly logger?: Logger;
}

/**
 * Gives back the data file's mapped pages and the heap's free pages every
 * `intervalMs`, and the mapped pages alone whenever they grew `aboveBytes`
 * since the last release (unref'd timers). A refusal is counted and logged
 * (once per run of failures), never thrown. Returns the function that stops it.
 */
export function releasePagesEvery(o: PageReleaseOptions): () => void {
  if (o.intervalMs <= 0) return () => undefined;
  const unavailable = pageReleaseUnavailable();
  if (unavailable !== undefined) {
    o.metrics?.storagePageReleases.inc({ result: 'unavailable' });
    o.logger?.warn({ reason: unavailable }, 'pages are not given back here: the data file\'s map and the heap keep what they grew to (storage.releasePagesMs has no effect)');
    return () => undefined;
  }
  const sharedResident = o.sharedResident ?? sharedResidentBytes;
  const above = o.aboveBytes ?? 0;
  let failing = false;
  /** File-backed resident bytes right after the last release (read only with a budget). */
  let baseline = above > 0 ? sharedResident() : undefined;
  const release = (heapToo: boolean): void => {
    const started = performance.now();
    try {
      o.mapped.release();
      if (heapToo) trimHeap();
      o.metrics?.storagePageReleases.inc({ result: 'ok' });
      failing = false;
    } catch (e) {
      o.metrics?.storagePageReleases.inc({ result: 'failed' });
      if (!failing) o.logger?.warn({ err: e }, 'giving back the data file\'s mapped pages failed (tried again every storage.releasePagesMs)');
      failing = true;
    }
    if (above > 0) baseline = sharedResident();
    o.metrics?.storagePageReleaseSeconds.observe((performance.now() - started) / 1000);
  };
  const timer = setInterval(() => release(true), o.intervalMs);
  timer.unref();
  let budget: NodeJS.Timeout | undefined;
  if (above > 0 && baseline !== undefined) {
    budget = setInterval(() => {
      const now = sharedResident();
      if (now === undefined || baseline === undefined || now - baseline < above) return;
      o.metrics?.storagePageReleasesOverBudget.inc();
      release(false);
    }, o.checkMs ?? PAGE_BUDGET_CHECK_MS);
    budget.unref();
  }
  return () => {
    clearInterval(timer);
    if (budget !== undefined) clearInterval(budget);
  };
}
