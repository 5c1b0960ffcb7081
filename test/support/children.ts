/**
 * Child processes a test starts (gateways, nats-server) are SIGKILLed if the
 * test process exits, even on a failed assertion or a crash, so no server
 * outlives its test.
 */
import type { ChildProcess } from 'node:child_process';

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Track `child` until it exits; kill it if this process exits first. */
export function killOnExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of running) {
        try {
          c.kill('SIGKILL');
        } catch {
          // already gone: nothing left to clean
        }
      }
    });
  }
  running.add(child);
  child.once('exit', () => running.delete(child));
}
