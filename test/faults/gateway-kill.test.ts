/**
 * kill -9 of the gateway process at random points of a 10,000-message run,
 * 20 rounds, restarting each time on the same data directory. Afterwards:
 * every one of the 10,000 messages was accepted exactly once — a request cut
 * off by a kill is retried in the next round with the same Idempotency-Key,
 * as a client would — its recipient is in exactly one final state (0 lost),
 * and the duplicates the SMSC saw never exceed what can be in
 * flight per crash (dispatch.maxInflightSegments: a segment holds its slot
 * from submit until its result is committed).
 *
 * The gateway runs as a real child process (embedded queue, LMDB in a temp
 * dir); the SMSC simulator runs in this process so it survives the kills and
 * counts every submit_sm.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmscSimulator } from '../../src/smpp/simulator.js';
import { numberAt, TEST_API_KEYS, TEST_KEY } from '../support/gateway.js';
import { freePort } from '../support/nats-server.js';
import { seededRandom } from '../support/seeded-random.js';

const ROUNDS = 20;
const PER_ROUND = 500;
const CONCURRENCY = 16;
const BINDS = 2;
const WINDOW = 8;
const MAX_INFLIGHT_SEGMENTS = 32;
const ROOT = join(import.meta.dirname, '..', '..');

const prng = seededRandom;

t.test('kill -9 at random points, 20 rounds: every accepted recipient ends in one final state; duplicates bounded', async (t) => {
  const random = prng(Number(process.env['SMSGW_FAULT_SEED'] ?? 20261122));
  const dir = mkdtempSync(join(tmpdir(), 'smsgw-kill-'));
  const sim = new SmscSimulator({ host: '127.0.0.1', port: 0, systemId: 'smsgw', password: 'secret', dlrDelayMs: 5 });
  const { port: simPort } = await sim.start();
  const port = await freePort();
  const configFile = join(dir, 'config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      log: { level: 'error' },
      server: { host: '127.0.0.1', port },
      // Its own key: start refuses the development key beside an SMPP account.
      auth: { apiKeys: TEST_API_KEYS },
      simulator: { enabled: false },
      dispatch: { maxInflightSegments: MAX_INFLIGHT_SEGMENTS, expirySweepMs: 1000 },
      smpp: {
        accounts: [
          { name: 'sim', host: '127.0.0.1', port: simPort, systemId: 'smsgw', password: 'secret', systemType: '', tls: false, binds: BINDS, window: WINDOW, tps: 0, responseTimeoutMs: 5000, enquireLinkMs: 30000, reconnectInitialMs: 20, reconnectMaxMs: 200, throttleBackoffMs: 20, operators: ['*'] },
        ],
      },
    }),
  );
  let child: ChildProcess | undefined;
  t.teardown(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const url = `http://127.0.0.1:${port}`;
  const start = async (): Promise<ChildProcess> => {
    const c = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts'), 'start', '--config', configFile], { stdio: ['ignore', 'ignore', 'inherit'], cwd: ROOT });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null) throw new Error(`gateway exited with ${c.exitCode}`);
      try {
        if ((await fetch(`${url}/readyz`)).ok) return c;
      } catch {
        /* starting */
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('gateway did not become ready');
  };
  const kill9 = async (c: ChildProcess): Promise<void> => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };

  const TOTAL = ROUNDS * PER_ROUND;
  const accepted = new Map<string, string>(); // message id → number
  const acceptedIndex = new Set<number>();
  const attempted = new Set<string>();
  // Indices to send: new ones in order, plus those whose request a kill cut off (retried with the same key).
  let retry: number[] = [];
  let cursor = 0;
  let kills = 0;
  const sendOne = async (i: number): Promise<'accepted' | 'failed'> => {
    const to = numberAt(i, '135');
    attempted.add(`86${to}`);
    try {
      const res = await fetch(`${url}/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'idempotency-key': `kill-${i}` },
        body: JSON.stringify({ to: [to], text: `kill test message ${i}` }),
      });
      if (res.status !== 202) {
        await res.body?.cancel();
        return 'failed';
      }
      const body = (await res.json()) as { id: string };
      const before = accepted.get(body.id);
      if (before !== undefined && before !== `86${to}`) t.fail(`message id ${body.id} answered for two numbers`);
      accepted.set(body.id, `86${to}`);
      acceptedIndex.add(i);
      return 'accepted';
    } catch {
      return 'failed'; // refused or reset by the kill: retried next round
    }
  };
  for (let round = 0; round < ROUNDS; round++) {
    child = await start();
    const c = child;
    // Kill either while sending (after a random number of 202s) or while draining (a random delay after the last 202).
    const whileSending = random() < 0.6;
    const killAfterAccepted = Math.floor(random() * PER_ROUND);
    const killDelayMs = Math.floor(random() * 150);
    const todo = [...retry];
    retry = [];
    const end = Math.min(TOTAL, cursor + PER_ROUND);
    while (cursor < end) todo.push(cursor++);
    let acceptedThisRound = 0;
    let killed: Promise<void> | undefined;
    const sender = async (): Promise<void> => {
      for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
        if (killed) {
          retry.push(i);
          continue;
        }
        if ((await sendOne(i)) === 'failed') retry.push(i);
        else if (whileSending && ++acceptedThisRound >= killAfterAccepted && !killed) killed = kill9(c);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, sender));
    if (!killed) {
      await new Promise((r) => setTimeout(r, killDelayMs));
      killed = kill9(c);
    }
    await killed;
    kills++;
  }
  t.equal(kills, ROUNDS, `${ROUNDS} kills`);

  // Last start: send what the kills cut off, then everything accepted must reach a final state.
  child = await start();
  for (let attempt = 0; retry.length > 0 && attempt < 5; attempt++) {
    const todo = retry;
    retry = [];
    for (const i of todo) if ((await sendOne(i)) === 'failed') retry.push(i);
  }
  t.equal(acceptedIndex.size, TOTAL, `all ${TOTAL} messages accepted`);
  t.equal(accepted.size, TOTAL, 'one message id per message: retries after a crash were replays, not new messages');
  const open = new Set(accepted.keys());
  const finalStates = new Map<string, string[]>();
  const deadline = Date.now() + 120_000;
  while (open.size > 0 && Date.now() < deadline) {
    for (const id of [...open].slice(0, 500)) {
      const res = await fetch(`${url}/v1/messages/${id}`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
      const body = (await res.json()) as { status: string; summary: Record<string, number>; items: { state: string }[] };
      if (res.status === 200 && body.status === 'complete') {
        open.delete(id);
        finalStates.set(id, body.items.map((i) => i.state));
        const nonZero = Object.entries(body.summary).filter(([, n]) => n > 0);
        if (nonZero.length !== 1 || nonZero[0]?.[1] !== 1) t.fail(`message ${id}: summary ${JSON.stringify(body.summary)} is not exactly one recipient in one state`);
      }
    }
    if (open.size > 0) await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(open.size, 0, `every accepted message is complete (${open.size} still open)`);
  const notDelivered = [...finalStates.values()].filter((s) => s.length !== 1 || s[0] !== 'delivered');
  t.equal(notDelivered.length, 0, 'every accepted recipient delivered (the simulator delivers all): 0 lost');

  const stats = sim.stats();
  for (const number of accepted.values()) {
    if (!stats.submitsByDestination.has(number)) t.fail(`accepted ${number} never reached the SMSC`);
  }
  let stray = 0;
  for (const dest of stats.submitsByDestination.keys()) if (!attempted.has(dest)) stray++;
  t.equal(stray, 0, 'nothing was sent that was not asked for');
  const bound = kills * MAX_INFLIGHT_SEGMENTS;
  t.ok(stats.duplicates <= bound, `duplicates at the SMSC ${stats.duplicates} ≤ kills ${kills} × in-flight bound ${MAX_INFLIGHT_SEGMENTS} = ${bound}`);
  t.comment(`accepted ${accepted.size}, attempted ${attempted.size}, submits ${stats.submits}, unique ${stats.uniqueSegments}, duplicates ${stats.duplicates}`);
  await kill9(child);
});
