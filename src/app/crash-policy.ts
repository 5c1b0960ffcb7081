/**
 * Process-level crash policy.
 *
 * Requests never reach here: every route answers a throw with 500 INTERNAL
 * and the gateway stays up. What reaches here escaped every frame (a bug in
 * a timer, a socket callback, a promise nobody awaited) and leaves the
 * process in an unknown state, so it is not ignored:
 *
 *   uncaught exception / unhandled rejection
 *     → log it once with its context (origin, error, stack) at fatal
 *     → drain: stop accepting, finish in-flight durable work (Gateway.stop),
 *       bounded by `drainTimeoutMs`
 *     → exit non-zero (70, EX_SOFTWARE), even if the drain failed or hung
 *
 * A second crash while draining does not start a second drain; it is logged
 * and the exit follows the first. The supervisor restarts the process
 * (docs/DEPLOY.md names the restart policy); what was accepted (202) is
 * durable, so a restart loses nothing.
 */
import type { Logger } from 'pino';

/** Exit status after a crash: EX_SOFTWARE (sysexits.h), distinct from a config error's 1. */
export const CRASH_EXIT_CODE = 70;
export const DEFAULT_DRAIN_TIMEOUT_MS = 15_000;

/** The part of `process` the policy uses (a test passes its own). */
export interface CrashProcess {
  on(event: 'uncaughtException', listener: (err: Error, origin: string) => void): unknown;
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  off(event: 'uncaughtException', listener: (err: Error, origin: string) => void): unknown;
  off(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  exit(code: number): void;
}

export interface CrashPolicyOptions {
  logger: Pick<Logger, 'fatal' | 'error'>;
  /** Stop accepting and finish in-flight durable work. */
  drain: () => Promise<void>;
  drainTimeoutMs?: number;
  /** Context logged with the crash (role, host, …). */
  context?: Record<string, unknown>;
  /**
   * An unhandled rejection some part owns although no frame of ours holds the
   * promise (lmdb's own report of a failed commit: the storage state handles
   * it, src/storage/health.ts). True: handled there, not a crash.
   */
  absorb?: (reason: unknown) => boolean;
  process?: CrashProcess;
}

export interface CrashPolicy {
  /** True once a crash started the drain. */
  readonly crashed: boolean;
  /** Remove the listeners (tests). */
  uninstall(): void;
}

export function installCrashPolicy(options: CrashPolicyOptions): CrashPolicy {
  const proc: CrashProcess = options.process ?? process;
  const timeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  let crashed = false;

  const crash = (kind: 'uncaughtException' | 'unhandledRejection', err: unknown, origin?: string): void => {
    const fields = { ...options.context, kind, ...(origin !== undefined ? { origin } : {}), err };
    if (crashed) {
      options.logger.error(fields, 'another uncaught error while draining after a crash');
      return;
    }
    crashed = true;
    options.logger.fatal(fields, 'uncaught error escaped every frame: draining, then exiting non-zero');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      timer.unref();
    });
    const drained = Promise.resolve()
      .then(() => options.drain())
      .then(
        () => 'drained' as const,
        (e: unknown) => {
          options.logger.error({ err: e }, 'drain after a crash failed');
          return 'failed' as const;
        },
      );
    void Promise.race([drained, timeout]).then((how) => {
      if (timer) clearTimeout(timer);
      if (how === 'timeout') options.logger.error({ timeoutMs }, 'drain after a crash did not finish in time');
      proc.exit(CRASH_EXIT_CODE);
    });
  };

  const onException = (err: Error, origin: string): void => crash('uncaughtException', err, origin);
  const onRejection = (reason: unknown): void => {
    if (options.absorb?.(reason) === true) return;
    crash('unhandledRejection', reason);
  };
  proc.on('uncaughtException', onException);
  proc.on('unhandledRejection', onRejection);
  return {
    get crashed() {
      return crashed;
    },
    uninstall() {
      proc.off('uncaughtException', onException);
      proc.off('unhandledRejection', onRejection);
    },
  };
}

/**
 * A write past the file size limit (`ulimit -f`, a quota) raises SIGXFSZ.
 * Node ignores it, so the write fails with EFBIG and the storage state
 * handles it (503, not ready, a probe write until it clears:
 * src/storage/health.ts). But a listener another library adds for it turns
 * it back into a kill: signal-exit (loaded by test runners and process
 * wrappers; under `tap` every child process has it) re-raises a signal it
 * catches when it holds the only listener. A listener of our own keeps the
 * signal harmless whatever else listens; test/faults/storage-full.test.ts
 * runs the gateway exactly that way.
 */
export function keepFileSizeSignalHarmless(proc: { on(event: 'SIGXFSZ', listener: () => void): unknown } = process): void {
  proc.on('SIGXFSZ', () => undefined);
}

