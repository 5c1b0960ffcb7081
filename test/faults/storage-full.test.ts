/**
 * A full disk is a state, not a crash (docs/DEPLOY.md "Storage full").
 *
 * The gateway runs as a real child process (`smsgw start`, built-in SMSC
 * simulator, embedded queue) under `ulimit -f`: its LMDB file cannot grow past
 * the limit, so a commit fails the way it does on a full file system (EFBIG /
 * EIO instead of ENOSPC). Clients send with Idempotency-Keys until the door
 * answers 503 STORAGE_FULL; then:
 *
 *   - the process is still running (no crash, no crash loop);
 *   - /readyz is 503 with `storage: "full"` and a reason; writes answer
 *     503 STORAGE_FULL with Retry-After;
 *   - the soft limit is raised on the running process (prlimit: the disk
 *     was freed) and the gateway clears the state by itself (its probe write):
 *     /readyz 200, sends accepted again, no restart;
 *   - nothing acknowledged was lost: every message that got a 202 exists
 *     with all its recipients and every recipient ends delivered (receipts
 *     refused with ESME_RX_T_APPN while full were offered again by the
 *     SMSC); every request refused while full succeeds when retried with its
 *     Idempotency-Key.
 *
 * That run sets the floor to 0 (storage.minFreeMiB) so that commits really
 * fail. With the floor on (the default), the data file's room under the limit
 * counts as free space: the second test starts a gateway under a limit below
 * the floor and checks it is full before any write failed, and ready once the
 * limit is raised.
 */
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEV_KEY, numberAt } from '../support/gateway.js';
import { freePort } from '../support/nats-server.js';
import { killOnExit } from '../support/children.js';

const ROOT = join(import.meta.dirname, '..', '..');
/** `ulimit -f` in KiB (bash): the LMDB file stops growing here. */
const LIMIT_KIB = 6 * 1024;
const RECIPIENTS = 50;
const CONCURRENCY = 8;
/** Bound of the fill phase (requests), whatever happens. */
const MAX_REQUESTS = 20_000;

const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;

/** The gateway as a child under `ulimit -S -f limitKiB`, with its output kept (the last 400 lines). */
async function startLimited(t: Test, limitKiB: number, storage: Record<string, number>): Promise<{ url: string; child: ChildProcess; alive: () => boolean; tail: () => string }> {
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-full-'));
  const port = await freePort();
  const simPort = await freePort();
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({
    dataDir: join(dir, 'data'),
    log: { level: 'warn' },
    server: { host: '127.0.0.1', port },
    simulator: { enabled: true, port: simPort, dlrDelayMs: 20 },
    dispatch: { expirySweepMs: 1000 },
    storage,
  }));
  const lines: string[] = [];
  const child: ChildProcess = spawn('bash', ['-c', `ulimit -S -f ${limitKiB}; exec "$0" --import tsx "$1" start --config "$2"`, process.execPath, join(ROOT, 'src', 'cli', 'main.ts'), configFile], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  killOnExit(child);
  const keep = (b: Buffer): void => {
    for (const l of b.toString('utf8').split('\n')) if (l !== '') lines.push(l);
    if (lines.length > 400) lines.splice(0, lines.length - 400);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const tail = (): string => lines.slice(-30).join('\n');
  return { url: `http://127.0.0.1:${port}`, child, alive, tail };
}

/** Until the gateway answers /readyz at all (200 or 503): start-up compiles TypeScript (tsx), slow on a loaded machine. */
async function untilAnswering(g: { url: string; alive: () => boolean; tail: () => string }, wantReady: boolean): Promise<void> {
  for (let deadline = Date.now() + 120_000; ; ) {
    if (!g.alive()) throw new Error(`gateway exited at start: ${g.tail()}`);
    try {
      const r = await fetch(`${g.url}/readyz`);
      if (r.ok || !wantReady) return;
    } catch {
      /* starting */
    }
    if (Date.now() > deadline) throw new Error(`gateway not answering: ${g.tail()}`);
    await sleep(50);
  }
}

t.test('disk full under ulimit -f: 503 STORAGE_FULL, not ready, no crash; recovers without a restart; nothing acknowledged lost', { skip: hasPrlimit ? false : 'prlimit (util-linux) is not installed' }, async (t) => {
  // The floor off: the commits themselves must fail here (the second test has the floor on).
  const { url, child, alive, tail } = await startLimited(t, LIMIT_KIB, { probeIntervalMs: 500, minFreeMiB: 0 });
  await untilAnswering({ url, alive, tail }, true);

  const send = async (key: string, n: number): Promise<{ status: number; body: Record<string, unknown>; retryAfter: string | null }> => {
    const to = Array.from({ length: RECIPIENTS }, (_, i) => numberAt(n * RECIPIENTS + i));
    const res = await fetch(`${url}/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEV_KEY}`, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ to, text: `storage full test ${n} ${'x'.repeat(100)}`, reference: `ref-${n}-${'r'.repeat(60)}` }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, retryAfter: res.headers.get('retry-after') };
  };

  // Fill: keys are k0, k1, …; every answer is kept.
  const accepted = new Map<string, string>(); // key → message id
  const refused: { key: string; n: number }[] = [];
  const otherStatuses = new Map<number, number>();
  let next = 0;
  let full = false;
  let retryAfter: string | null = null;
  const worker = async (): Promise<void> => {
    while (!full && next < MAX_REQUESTS && alive()) {
      const n = next++;
      const key = `k${n}`;
      let r;
      try {
        r = await send(key, n);
      } catch (e) {
        if (!alive()) return;
        throw new Error(`send failed: ${(e as Error).message} ${String((e as Error).cause)}; gateway log: ${tail()}`);
      }
      if (r.status === 202) accepted.set(key, r.body['id'] as string);
      else if (r.status === 503 && (r.body['error'] as { code?: string } | undefined)?.code === 'STORAGE_FULL') {
        full = true;
        retryAfter = r.retryAfter;
        refused.push({ key, n });
      } else {
        otherStatuses.set(r.status, (otherStatuses.get(r.status) ?? 0) + 1);
        refused.push({ key, n });
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  t.ok(alive(), 'the gateway is still running after the disk filled', alive() ? {} : { tail: tail() });
  t.ok(full, `a send was answered 503 STORAGE_FULL (after ${next} requests, ${accepted.size} accepted; other statuses ${JSON.stringify([...otherStatuses])})`);
  t.ok(accepted.size > 10, `messages were accepted before the disk filled (${accepted.size})`);
  t.equal(retryAfter, '30', 'STORAGE_FULL carries Retry-After');
  for (const [status] of otherStatuses) t.equal(status, 503, `only 503s besides 202 (${status})`);

  // The state is sticky: not ready, writes refused, reads answered.
  const ready = await fetch(`${url}/readyz`);
  const readyBody = (await ready.json()) as Record<string, unknown>;
  t.equal(ready.status, 503, '/readyz answers 503 while storage is full');
  t.equal(readyBody['storage'], 'full', '/readyz names the storage state');
  t.match(readyBody['storageReason'], /commit failed|write failed/, `/readyz gives the reason (${String(readyBody['storageReason'])})`);
  const again = await send('while-full', MAX_REQUESTS + 1);
  t.equal(again.status, 503, 'a write while full is refused');
  t.equal((again.body['error'] as { code: string }).code, 'STORAGE_FULL');
  refused.push({ key: 'while-full', n: MAX_REQUESTS + 1 });
  const someId = accepted.values().next().value as string;
  const read = await fetch(`${url}/v1/messages/${someId}`, { headers: { authorization: `Bearer ${DEV_KEY}` } });
  t.equal(read.status, 200, 'reads are answered while storage is full');
  const metrics = await (await fetch(`${url}/metrics`)).text();
  t.match(metrics, /smsgw_storage_full 1/, 'smsgw_storage_full is 1');

  // The probe keeps trying (and may succeed on its own once acked queue entries free pages).
  await sleep(1500);
  t.ok(alive(), 'still running while full', alive() ? {} : { tail: tail() });

  // The disk is freed: the running process may grow its file again.
  const pid = child.pid as number;
  const raised = spawnSync('prlimit', [`--pid=${pid}`, '--fsize=unlimited:unlimited']);
  t.equal(raised.status, 0, `prlimit raised the file size limit of ${pid} (${raised.stderr?.toString()})`);
  for (let deadline = Date.now() + 30_000; ; ) {
    // A connection error is "not yet" while the process lives (a reused keep-alive socket can be reset);
    // a dead process or the deadline fails the test with the gateway's last output.
    const ready = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline || !alive()) throw new Error(`gateway did not recover (alive: ${alive()}): ${tail()}`);
    await sleep(100);
  }
  t.ok((await fetch(`${url}/readyz`)).ok, 'ready again without a restart');
  t.equal(child.pid, pid, 'same process');

  // Requests refused while full are retried with their keys: accepted now.
  for (const r of refused) {
    const res = await send(r.key, r.n);
    t.equal(res.status, 202, `retry of ${r.key} accepted`, res.status === 202 ? {} : { body: res.body, tail: tail() });
    if (res.status === 202) accepted.set(r.key, res.body['id'] as string);
  }

  // Nothing acknowledged lost: every accepted message complete, every recipient delivered.
  const ids = [...accepted.values()];
  const pending = new Set(ids);
  for (let deadline = Date.now() + 120_000; pending.size > 0; ) {
    for (const id of [...pending]) {
      const res = await fetch(`${url}/v1/messages/${id}?limit=1000`, { headers: { authorization: `Bearer ${DEV_KEY}` } });
      if (res.status !== 200) continue;
      const m = (await res.json()) as { status: string; recipients: number; summary: Record<string, number> };
      if (m.status === 'complete' && m.recipients === RECIPIENTS && m.summary['delivered'] === RECIPIENTS) pending.delete(id);
    }
    if (pending.size === 0) break;
    if (Date.now() > deadline || !alive()) break;
    await sleep(500);
  }
  t.equal(pending.size, 0, `every one of ${ids.length} accepted messages has all ${RECIPIENTS} recipients delivered (missing ${[...pending].slice(0, 5).join(', ')})`);
  t.ok(alive(), 'the gateway ran through it all');
});

t.test('a file-size limit below the floor (storage.minFreeMiB): full before any write fails, ready once the limit is raised', { skip: hasPrlimit ? false : 'prlimit (util-linux) is not installed' }, async (t) => {
  // 64 MiB under the limit, the default floor of 256 MiB kept: the data file's room decides, not the disk's free space.
  const g = await startLimited(t, 64 * 1024, { probeIntervalMs: 500, freeSpaceCheckMs: 200 });
  await untilAnswering(g, false);
  const ready = await fetch(`${g.url}/readyz`);
  const body = (await ready.json()) as Record<string, unknown>;
  t.equal(ready.status, 503, 'not ready from the start');
  t.equal(body['storage'], 'full');
  t.match(String(body['storageReason']), /room under the file-size limit below storage\.minFreeMiB: [\d.]+ MiB left for the data file \(ulimit -f\), 256 MiB kept/);
  const send = (n: number): Promise<Response> => fetch(`${g.url}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${DEV_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to: [numberAt(n)], text: `limit ${n}` }),
  });
  const refused = await send(1);
  t.equal(refused.status, 503);
  t.equal(((await refused.json()) as { error: { code: string } }).error.code, 'STORAGE_FULL');
  t.equal(refused.headers.get('retry-after'), '30');
  t.match(await (await fetch(`${g.url}/metrics`)).text(), /smsgw_storage_write_failures_total 0/, 'no write failed: the floor came first');

  const raised = spawnSync('prlimit', [`--pid=${g.child.pid as number}`, '--fsize=unlimited:unlimited']);
  t.equal(raised.status, 0, `prlimit raised the limit (${raised.stderr?.toString()})`);
  for (let deadline = Date.now() + 30_000; ; ) {
    if (await fetch(`${g.url}/readyz`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline || !g.alive()) throw new Error(`not ready after the limit was raised (alive: ${g.alive()}): ${g.tail()}`);
    await sleep(100);
  }
  const sent = await send(2);
  t.equal(sent.status, 202, 'accepted once the limit is raised');
  t.ok(g.alive(), 'the same process throughout');
});
