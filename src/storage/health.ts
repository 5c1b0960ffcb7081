/**
 * Storage health: a full disk is a state of the process, not a crash.
 *
 *            a commit fails (ENOSPC, EFBIG under `ulimit -f`, EIO, MDB_MAP_FULL)
 *     ok  ─────────────────────────────────────────────────────────────────▶  full
 *         ◀─────────────────────────────────────────────────────────────────
 *            the probe (a PROBE_BYTES row, every probeIntervalMs) commits
 *
 * While `full`: the HTTP door answers writes 503 STORAGE_FULL with
 * Retry-After, /readyz is false and names the reason, deliver_sm / data_sm
 * are answered ESME_RX_T_APPN and CMPP DELIVER Result 8 (the carrier keeps
 * the receipt or MO and retries),
 * SMTP answers 451. Reads go on. Nothing acknowledged is lost: every
 * acknowledgement (202, deliver_sm_resp ESME_ROK, SMTP 250, a queue ack)
 * follows a commit that succeeded, and a commit that failed wrote nothing.
 *
 * Only the probe clears the state, not any other write that happens to
 * commit: a small write can fit where a message's rows do not, and the door
 * would flap open and shut. The probe needs PROBE_BYTES free, so the state
 * clears once there is that much room again.
 *
 * How a failure is seen. lmdb commits the writes of one event turn together
 * and rejects every write of a failed commit with "Commit failed" (the cause
 * on `commitError`, itself a rejected promise). It tells its `aftercommit`
 * listeners without a transaction id: that is the one place that sees every
 * failed commit of an environment, awaited or not. Writes nobody awaits
 * are handed to `track` (so their rejection is handled), and lmdb's own
 * promises that no caller holds (its shared-structure saves, `commitError`)
 * are recognised by `absorb` for the process crash policy.
 *
 * Free space is watched too (`minFreeBytes`, read with statfs every
 * `freeSpaceCheckMs`): below the floor the state is full before a write
 * can fail for want of room, and the probe clears it only once the floor is
 * free again. lmdb's native code does not survive a page write that fails
 * outright (ENOSPC) cleanly (docs/DEPLOY.md), so the floor, not the failed
 * commit, is what a real disk should meet first. The same floor is kept under
 * the process's file-size limit (RLIMIT_FSIZE, `ulimit -f`, systemd
 * `LimitFSIZE`; `fileRoomBytes`): a write past it fails outright too (EFBIG),
 * so the data file's room under the limit counts as free space when it is less.
 *
 * One StorageHealth per LMDB root environment (`storageHealth(env)`): every
 * store that holds the environment reaches the same state without a new
 * dependency.
 */
import { readFile, stat, statfs } from 'node:fs/promises';
import type { Database, RootDatabase } from 'lmdb';
import { GatewayError, isStorageFailure, STORAGE_RETRY_AFTER_S } from '../core/errors.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';

/** Room the probe needs: its row is written and removed again. */
export const PROBE_BYTES = 64 * 1024;
export const DEFAULT_PROBE_INTERVAL_MS = 5_000;

export interface StorageHealthOptions {
  readonly metrics?: Metrics;
  readonly logger?: Logger;
  readonly probeIntervalMs?: number;
  readonly now?: () => number;
  /** Free space to keep (bytes; 0 or absent: not watched). Needs `freeBytes`. */
  readonly minFreeBytes?: number;
  /** How often `freeBytes` is read. Default 1 s. */
  readonly freeSpaceCheckMs?: number;
  /** Free bytes on the data's file system (`statfsFreeBytes(dataDir)`). */
  readonly freeBytes?: () => Promise<number>;
  /** Bytes the data file may still grow under the process's file-size limit, undefined without one (`fileSizeRoomBytes(file)`). */
  readonly fileRoomBytes?: () => Promise<number | undefined>;
}

export const DEFAULT_FREE_SPACE_CHECK_MS = 1_000;

/** Bytes an unprivileged process may still write on the file system holding `path`. */
export async function statfsFreeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/**
 * The soft file-size limit (RLIMIT_FSIZE) in bytes from the text of
 * /proc/<pid>/limits ("Max file size  <soft>  <hard>  bytes"); undefined when
 * it is unlimited or the line is missing or unreadable.
 */
export function parseFileSizeLimit(limits: string): number | undefined {
  const m = /^Max file size\s+(\S+)\s+\S+\s+bytes\s*$/m.exec(limits);
  if (m === null || m[1] === 'unlimited' || !/^\d+$/.test(m[1] as string)) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Bytes `file` may still grow before a write to it fails for the process's
 * file-size limit (EFBIG); undefined without a limit, or where
 * /proc/self/limits does not exist (not Linux). A missing file has all of it.
 */
export async function fileSizeRoomBytes(file: string, limitsPath = '/proc/self/limits'): Promise<number | undefined> {
  let limits: string;
  try {
    limits = await readFile(limitsPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const limit = parseFileSizeLimit(limits);
  if (limit === undefined) return undefined;
  let size = 0;
  try {
    size = (await stat(file)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return Math.max(0, limit - size);
}

const MIB = 2 ** 20;

export interface StorageView {
  readonly full: boolean;
  /** Why (the first failure's cause), while full. */
  readonly reason: string | undefined;
  /** When it became full (ms since epoch), while full. */
  readonly since: number | undefined;
}

const registry = new WeakMap<RootDatabase, StorageHealth>();

/** The health of `env` (created on first use; `attachStorageHealth` first gives it metrics and a logger). */
export function storageHealth(env: RootDatabase): StorageHealth {
  let h = registry.get(env);
  if (h === undefined) {
    h = new StorageHealth(env, {});
    registry.set(env, h);
  }
  return h;
}

/** Create (or configure) the health of `env` with the gateway's metrics and logger. */
export function attachStorageHealth(env: RootDatabase, options: StorageHealthOptions): StorageHealth {
  const existing = registry.get(env);
  if (existing !== undefined) {
    existing.configure(options);
    return existing;
  }
  const h = new StorageHealth(env, options);
  registry.set(env, h);
  return h;
}

/** A write nobody awaits: its failure goes to the health of `env` (never an unhandled rejection). */
export function trackWrite(env: RootDatabase, write: Promise<unknown>, where: string): void {
  storageHealth(env).track(write, where);
}

export class StorageHealth implements StorageView {
  private state: { readonly reason: string; readonly since: number } | undefined;
  /** The last failure's cause (errno text), when lmdb told it. */
  private cause: string | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  private probeDb: Database<Buffer, string> | undefined;
  private metrics: Metrics | undefined;
  private logger: Logger | undefined;
  private probeIntervalMs: number;
  private now: () => number;
  /** Failed commits seen (also in the metric). */
  failures = 0;
  private minFreeBytes = 0;
  private freeSpaceCheckMs = DEFAULT_FREE_SPACE_CHECK_MS;
  private freeBytes: (() => Promise<number>) | undefined;
  private fileRoomBytes: (() => Promise<number | undefined>) | undefined;
  private freeTimer: NodeJS.Timeout | undefined;
  /** Reading free space failed last time (logged once per run of failures). */
  private freeReadFailing = false;

  constructor(private readonly env: RootDatabase, options: StorageHealthOptions) {
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
    this.now = options.now ?? Date.now;
    this.configureFreeSpace(options);
    // lmdb calls aftercommit listeners with a txnId after a commit, without one after a failed commit.
    env.on('aftercommit', (e: { txnId?: number }) => {
      if (e?.txnId === undefined) this.commitFailed('a commit failed');
    });
  }

  configure(options: StorageHealthOptions): void {
    if (options.metrics) this.metrics = options.metrics;
    if (options.logger) this.logger = options.logger;
    if (options.probeIntervalMs !== undefined) this.probeIntervalMs = options.probeIntervalMs;
    if (options.now) this.now = options.now;
    this.configureFreeSpace(options);
    this.metrics?.storageFull.set(this.state ? 1 : 0);
  }

  private configureFreeSpace(options: StorageHealthOptions): void {
    if (options.minFreeBytes !== undefined) this.minFreeBytes = options.minFreeBytes;
    if (options.freeSpaceCheckMs !== undefined) this.freeSpaceCheckMs = options.freeSpaceCheckMs;
    if (options.freeBytes !== undefined) this.freeBytes = options.freeBytes;
    if (options.fileRoomBytes !== undefined) this.fileRoomBytes = options.fileRoomBytes;
    if (this.freeTimer) clearInterval(this.freeTimer);
    this.freeTimer = undefined;
    if (this.minFreeBytes > 0 && (this.freeBytes !== undefined || this.fileRoomBytes !== undefined) && !this.closed) {
      this.freeTimer = setInterval(() => void this.checkFreeSpace(), this.freeSpaceCheckMs);
      this.freeTimer.unref();
    }
  }

  /**
   * Read the free space now (the timer does this every freeSpaceCheckMs): below the floor the
   * state becomes full. Resolves true when there is room (or nothing is watched).
   */
  async checkFreeSpace(): Promise<boolean> {
    const room = await this.roomLeft();
    if (room === undefined || room.ok) return true;
    if (this.state === undefined && !this.closed) {
      this.cause = room.cause;
      this.commitFailed(room.underLimit ? 'room under the file-size limit below storage.minFreeMiB' : 'free space below storage.minFreeMiB', false);
    }
    return false;
  }

  /**
   * Room against the floor: the free space, or the data file's room under the file-size limit
   * when that is less. Undefined when not watched or unreadable (then it does not decide).
   */
  private async roomLeft(): Promise<{ ok: boolean; cause: string; underLimit: boolean } | undefined> {
    const readFree = this.freeBytes;
    const readLimit = this.fileRoomBytes;
    if (this.minFreeBytes <= 0 || (readFree === undefined && readLimit === undefined)) return undefined;
    try {
      const free = readFree !== undefined ? await readFree() : undefined;
      const underLimit = readLimit !== undefined ? await readLimit() : undefined;
      if (free !== undefined) this.metrics?.storageFreeBytes.set(free);
      if (this.freeReadFailing) this.logger?.info('free space readable again');
      this.freeReadFailing = false;
      const kept = `${(this.minFreeBytes / MIB).toFixed(0)} MiB kept`;
      if (underLimit !== undefined && (free === undefined || underLimit < free)) {
        return { ok: underLimit >= this.minFreeBytes, underLimit: true, cause: `${(underLimit / MIB).toFixed(1)} MiB left for the data file (ulimit -f), ${kept}` };
      }
      if (free === undefined) return undefined;
      return { ok: free >= this.minFreeBytes, underLimit: false, cause: `${(free / MIB).toFixed(1)} MiB free, ${kept}` };
    } catch (e) {
      if (!this.freeReadFailing) this.logger?.error({ err: e }, 'cannot read the free space of the data directory; the storage state follows failed commits only until it can');
      this.freeReadFailing = true;
      return undefined;
    }
  }

  get full(): boolean {
    return this.state !== undefined;
  }

  get reason(): string | undefined {
    if (this.state === undefined) return undefined;
    return this.cause !== undefined ? `${this.state.reason}: ${this.cause}` : this.state.reason;
  }

  get since(): number | undefined {
    return this.state?.since;
  }

  /** Throw STORAGE_FULL while full (the door of every write path). */
  assertWritable(): void {
    if (this.state !== undefined) throw storageFullError(this.reason);
  }

  /** For /readyz: `{ storage: 'ok' }` or `{ storage: 'full', storageReason, storageFullSince }`. */
  readiness(): { ok: boolean; detail: Record<string, unknown> } {
    if (this.state === undefined) return { ok: true, detail: { storage: 'ok' } };
    return { ok: false, detail: { storage: 'full', storageReason: this.reason, storageFullSince: new Date(this.state.since).toISOString() } };
  }

  /** Hand over a write nobody awaits: a failure flips the state (and is logged when it is not a storage failure). */
  track(write: Promise<unknown>, where: string): void {
    write.then(undefined, (e: unknown) => this.failed(e, where));
  }

  /**
   * A write failed (awaited by a caller that handles it, or tracked). A
   * storage failure flips the state; anything else is logged. True when it
   * was a storage failure.
   */
  failed(e: unknown, where: string): boolean {
    if (!isStorageFailure(e)) {
      this.logger?.error({ err: e, where }, 'a write failed (not a storage failure)');
      return false;
    }
    this.observeCause(e);
    this.commitFailed(`write failed in ${where}`);
    return true;
  }

  /**
   * For the process crash policy: is this unhandled rejection lmdb's own
   * report of a failed commit (a promise only lmdb holds)? Then it is this
   * state's business, not a crash.
   */
  absorb(reason: unknown): boolean {
    if (!isStorageFailure(reason)) return false;
    this.observeCause(reason);
    this.commitFailed('a commit failed');
    return true;
  }

  close(): void {
    this.closed = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    if (this.freeTimer) clearInterval(this.freeTimer);
    this.freeTimer = undefined;
  }

  /** Run one probe now (tests; the timer does this while full). Resolves true when the state cleared. */
  async probe(): Promise<boolean> {
    if (this.state === undefined) return true;
    if (this.probing || this.closed) return false;
    this.probing = true;
    try {
      // Not while the floor is not free: the probe's own write could be the one that fails for want of room.
      const room = await this.roomLeft();
      if (room !== undefined && !room.ok) {
        this.cause = room.cause;
        return false;
      }
      this.probeDb ??= this.env.openDB<Buffer, string>({ name: 'storage.probe', encoding: 'binary' });
      await this.probeDb.put('probe', Buffer.alloc(PROBE_BYTES, 0x5a));
      await this.probeDb.remove('probe');
      this.clear();
      return true;
    } catch (e) {
      this.observeCause(e);
      return false;
    } finally {
      this.probing = false;
    }
  }

  /** `failedWrite` false: the state is entered before any write failed (the free-space floor). */
  private commitFailed(reason: string, failedWrite = true): void {
    if (failedWrite) {
      this.failures++;
      this.metrics?.storageWriteFailures.inc();
    }
    if (this.closed) return;
    if (this.state !== undefined) return;
    this.state = { reason, since: this.now() };
    this.metrics?.storageFull.set(1);
    this.logger?.error({ reason }, 'storage full: refusing writes until a probe write commits');
    this.scheduleProbe();
  }

  private clear(): void {
    if (this.state === undefined) return;
    const fullMs = this.now() - this.state.since;
    this.state = undefined;
    this.cause = undefined;
    this.metrics?.storageFull.set(0);
    this.logger?.warn({ fullMs }, 'storage writable again: accepting writes');
  }

  private scheduleProbe(): void {
    if (this.probeTimer || this.closed) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      void this.probe().then((cleared) => {
        if (!cleared) this.scheduleProbe();
      });
    }, this.probeIntervalMs);
    this.probeTimer.unref();
  }

  /** The real cause is on `commitError` (a rejected promise lmdb holds): read it, which also handles it. */
  private observeCause(e: unknown): void {
    const inner = (e as { commitError?: unknown } | null)?.commitError;
    if (inner !== undefined && typeof (inner as Promise<unknown>).then === 'function') {
      (inner as Promise<unknown>).then(undefined, (cause: unknown) => {
        this.cause = describe(cause);
      });
      return;
    }
    if (e instanceof Error && e.message !== COMMIT_FAILED) this.cause = describe(e);
  }
}

const COMMIT_FAILED = 'Commit failed (see commitError for details)';

/**
 * Resolves when the latest transaction handed to lmdb is committed and on
 * disk; rejects when that commit failed. lmdb's own `flushed` never settles
 * after a failed commit (it waits for a flush that will not come), so a
 * caller awaiting it alone would hang: its `committed`, read at the same
 * moment, is the same transaction's commit and rejects.
 */
export function envFlushed(env: RootDatabase): Promise<void> {
  return Promise.all([env.committed, env.flushed]).then(noop);
}

function noop(): void {}

export function storageFullError(reason?: string): GatewayError & { retryAfterS: number } {
  return Object.assign(
    new GatewayError('STORAGE_FULL', `storage cannot take writes${reason !== undefined ? ` (${reason})` : ''}; retry in ${STORAGE_RETRY_AFTER_S} s`),
    { retryAfterS: STORAGE_RETRY_AFTER_S },
  );
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' || typeof code === 'number' ? `${e.message} (${code})` : e.message;
  }
  return String(e);
}
