/**
 * A real process: an error that escapes every frame is logged at fatal with
 * its context, the drain runs, and the process exits 70 (not 0, not hanging).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const child = fileURLToPath(new URL('../support/crash-child.ts', import.meta.url));

function run(mode: string): Promise<{ code: number | null; lines: Record<string, unknown>[] }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const killer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, lines: out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>) });
    });
  });
}

for (const mode of ['throw', 'reject']) {
  t.test(`an escaped ${mode} drains and exits 70`, async (t) => {
    const { code, lines } = await run(mode);
    t.equal(code, 70);
    const fatal = lines.find((l) => l['level'] === 60);
    t.ok(fatal, 'one fatal line');
    t.equal(fatal?.['role'], 'test-child', 'with the context');
    t.equal(fatal?.['kind'], mode === 'throw' ? 'uncaughtException' : 'unhandledRejection');
    t.match((fatal?.['err'] as { message?: string } | undefined)?.message, /escaped/);
    t.ok(lines.some((l) => l['drained'] === true), 'the drain ran before the exit');
  });
}
