import t from 'tap';
import { EventEmitter } from 'node:events';
import { CRASH_EXIT_CODE, installCrashPolicy } from '../../src/app/crash-policy.js';

class FakeProcess extends EventEmitter {
  readonly exits: number[] = [];
  exit(code: number): void {
    this.exits.push(code);
  }
}

function recorder(): { fatal: (o: object, m: string) => void; error: (o: object, m: string) => void; lines: { level: string; o: Record<string, unknown>; m: string }[] } {
  const lines: { level: string; o: Record<string, unknown>; m: string }[] = [];
  return {
    lines,
    fatal: (o, m) => void lines.push({ level: 'fatal', o: o as Record<string, unknown>, m }),
    error: (o, m) => void lines.push({ level: 'error', o: o as Record<string, unknown>, m }),
  };
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
};

t.test('an uncaught exception is logged with context, drains once, exits 70', async (t) => {
  const proc = new FakeProcess();
  const logger = recorder();
  let drains = 0;
  const policy = installCrashPolicy({ logger: logger as never, process: proc, context: { role: 'all' }, drain: async () => void drains++ });
  const err = new Error('escaped');
  proc.emit('uncaughtException', err, 'uncaughtException');
  proc.emit('unhandledRejection', new Error('second'));
  await until(() => proc.exits.length > 0);
  t.same(proc.exits, [CRASH_EXIT_CODE]);
  t.equal(CRASH_EXIT_CODE, 70);
  t.equal(drains, 1, 'a second crash does not start a second drain');
  t.equal(policy.crashed, true);
  t.equal(logger.lines[0]?.level, 'fatal');
  t.equal(logger.lines[0]?.o['err'], err);
  t.equal(logger.lines[0]?.o['role'], 'all');
  t.equal(logger.lines[0]?.o['origin'], 'uncaughtException');
  t.equal(logger.lines[1]?.level, 'error', 'the second one is logged too');
  policy.uninstall();
  t.equal(proc.listenerCount('uncaughtException'), 0);
  t.equal(proc.listenerCount('unhandledRejection'), 0);
});

t.test('an unhandled rejection whose drain fails still exits non-zero', async (t) => {
  const proc = new FakeProcess();
  const logger = recorder();
  installCrashPolicy({ logger: logger as never, process: proc, drain: async () => { throw new Error('drain broke'); } });
  proc.emit('unhandledRejection', 'a string reason');
  await until(() => proc.exits.length > 0);
  t.same(proc.exits, [CRASH_EXIT_CODE]);
  t.equal(logger.lines[0]?.o['kind'], 'unhandledRejection');
  t.equal(logger.lines[0]?.o['err'], 'a string reason');
  t.match(logger.lines[1]?.m, /drain after a crash failed/);
});

t.test('a drain that hangs is cut off by the timeout and the process exits', async (t) => {
  const proc = new FakeProcess();
  const logger = recorder();
  installCrashPolicy({ logger: logger as never, process: proc, drainTimeoutMs: 30, drain: () => new Promise<void>(() => undefined) });
  proc.emit('uncaughtException', new Error('x'), 'uncaughtException');
  await until(() => proc.exits.length > 0);
  t.same(proc.exits, [CRASH_EXIT_CODE]);
  t.match(logger.lines.at(-1)?.m, /did not finish in time/);
});

t.test('a rejection the storage state absorbs (lmdb\'s own commit failure) is not a crash; others still are', async (t) => {
  const proc = new FakeProcess();
  const logger = recorder();
  let drains = 0;
  const absorbed: unknown[] = [];
  const policy = installCrashPolicy({
    logger: logger as never, process: proc, drain: async () => void drains++,
    absorb: (reason) => {
      if (reason instanceof Error && reason.message === 'Commit failed (see commitError for details)') {
        absorbed.push(reason);
        return true;
      }
      return false;
    },
  });
  proc.emit('unhandledRejection', new Error('Commit failed (see commitError for details)'));
  await new Promise((r) => setTimeout(r, 20));
  t.equal(absorbed.length, 1);
  t.same(proc.exits, [], 'no exit');
  t.equal(policy.crashed, false);
  proc.emit('unhandledRejection', new Error('a bug'));
  await until(() => proc.exits.length > 0);
  t.same(proc.exits, [CRASH_EXIT_CODE], 'anything else is still a crash');
  t.equal(drains, 1);
  policy.uninstall();
});
