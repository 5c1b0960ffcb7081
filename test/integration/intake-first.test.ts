/**
 * Intake first on a whole gateway (dispatch.intakeFirstMs, src/dispatch/intake-first.ts):
 * a flood at the HTTP door makes the dispatcher hold routine jobs back while
 * writes wait for their commit — but never an emergency one, never longer than
 * the bound, and every message is still submitted exactly once.
 *
 * The flood runs for a fixed time (bounded in count too) from this process over
 * loopback; the simulator notes the time of every submit_sm.
 */
import t, { type Test as TapTest } from 'tap';
import { numberAt, startTestGateway, type TestGateway } from '../support/gateway.js';

const FLOOD_MS = 2_500;
const MAX_SENDS = 20_000;
const WORKERS = 48;
const HOLD_MS = 400;

/** WORKERS concurrent senders of routine notices until `floodEnds` (at most MAX_SENDS); each number accepted is pushed to `routine`. */
async function routineFlood(gw: TestGateway, floodEnds: number, routine: string[]): Promise<void> {
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < floodEnds && sent < MAX_SENDS) {
      const to = numberAt(sent++);
      const r = await gw.send({ to: [to], text: 'routine notice' });
      if (r.status !== 202) throw new Error(`routine send answered ${r.status}`);
      routine.push(to);
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));
}

t.test('a flood at the door: routine held within the bound, emergency never, every message submitted once', async (t) => {
  const submitsAt = new Map<string, number[]>();
  const gw = await startTestGateway(t, {
    config: { dispatch: { intakeFirstMs: HOLD_MS } },
    // The SMSC sees numbers with the country code.
    simulator: { observeSubmit: (to) => submitsAt.set(to.slice(2), [...(submitsAt.get(to.slice(2)) ?? []), performance.now()]) },
  });
  const holdSeconds = async (): Promise<number> => (await gw.gateway.metrics.dispatchIntakeHoldSeconds.get()).values[0]?.value ?? 0;

  // Warm up (first requests compile the paths), so the flood's timings are the steady state's.
  for (let i = 0; i < 20; i++) t.equal((await gw.send({ to: [numberAt(900_000 + i)], text: 'warm-up' })).status, 202);

  const start = performance.now();
  const floodEnds = start + FLOOD_MS;
  const routine: string[] = [];
  const emergency: { to: string; acceptedAt: number }[] = [];
  const warnings = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const to = numberAt(i, '139');
      const r = await gw.send({ to: [to], text: 'typhoon warning', tier: 'emergency' });
      if (r.status !== 202) throw new Error(`emergency send answered ${r.status}`);
      emergency.push({ to, acceptedAt: performance.now() });
    }
  };
  await Promise.all([routineFlood(gw, floodEnds, routine), warnings()]);
  const floodEnded = performance.now();
  t.ok(routine.length >= 500, `a flood: ${routine.length} routine sends accepted in ${Math.round(floodEnded - start)} ms`);

  // Every message submitted, exactly once (bounded wait).
  const all = [...routine, ...emergency.map((e) => e.to)];
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && all.some((to) => submitsAt.get(to) === undefined)) await new Promise((r) => setTimeout(r, 50));
  const missing = all.filter((to) => submitsAt.get(to) === undefined);
  t.same(missing.length, 0, `every message submitted (${missing.length} of ${all.length} not: ${missing.slice(0, 5).join(', ')})`);
  t.same(all.filter((to) => (submitsAt.get(to)?.length ?? 1) !== 1), [], 'none submitted twice');

  const held = await holdSeconds();
  t.ok(held > 0, `the dispatcher held routine jobs back for the intake (${held.toFixed(3)} s in all)`);
  t.equal((await gw.gateway.metrics.dispatchHeldForIntake.get()).values[0]?.value, 0, 'not holding once the door is quiet');

  // Never starved: routine submits began within the bound (plus scheduling slack) and went on during the flood.
  const routineTimes = routine.map((to) => (submitsAt.get(to) as number[])[0] as number).sort((a, b) => a - b);
  const first = routineTimes[0] as number;
  t.ok(first - start < HOLD_MS + 1_000, `first routine submit ${Math.round(first - start)} ms into the flood (bound ${HOLD_MS} ms)`);
  const duringFlood = routineTimes.filter((x) => x < floodEnded).length;
  t.ok(duringFlood > 0, `${duringFlood} of ${routine.length} routine messages submitted while the flood went on`);

  // Emergency messages are never held: each is submitted soon after its 202, during the flood.
  for (const e of emergency) {
    const at = (submitsAt.get(e.to) as number[])[0] as number;
    t.ok(at - e.acceptedAt < HOLD_MS, `emergency submitted ${Math.round(at - e.acceptedAt)} ms after its 202`);
  }
});

t.test('off (intakeFirstMs 0): nothing is ever held', async (t) => {
  const gw = await startTestGateway(t, { config: { dispatch: { intakeFirstMs: 0 } } });
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < 400) t.equal((await gw.send({ to: [numberAt(sent++)], text: 'routine notice' })).status, 202);
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  t.equal((await gw.gateway.metrics.dispatchIntakeHoldSeconds.get()).values[0]?.value ?? 0, 0, 'no hold');
  t.equal((await gw.gateway.metrics.dispatchHeldForIntake.get()).values[0]?.value ?? 0, 0);
});

/**
 * A flood against a gate whose time bound outlasts it (60 s): the hold would last the whole
 * flood. Returns how many routine messages were accepted during it and how many of them were
 * still unsubmitted when it ended, and the largest backlog the gauge showed.
 */
async function floodLeftWaiting(t: TapTest, maxBacklog: number): Promise<{ accepted: number; leftWaiting: number; maxGauge: number }> {
  const submitsAt = new Map<string, number>();
  const gw = await startTestGateway(t, {
    config: { dispatch: { intakeFirstMs: 60_000, intakeFirstBacklog: maxBacklog } },
    simulator: { observeSubmit: (to) => { if (!submitsAt.has(to.slice(2))) submitsAt.set(to.slice(2), performance.now()); } },
  });
  for (let i = 0; i < 20; i++) t.equal((await gw.send({ to: [numberAt(900_000 + i)], text: 'warm-up' })).status, 202);
  const gauge = async (): Promise<number> => (await gw.gateway.metrics.dispatchIntakeBacklog.get()).values[0]?.value ?? 0;
  let maxGauge = 0;
  const floodEnds = performance.now() + FLOOD_MS;
  const routine: string[] = [];
  const sample = async (): Promise<void> => {
    while (performance.now() < floodEnds) {
      maxGauge = Math.max(maxGauge, await gauge());
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await Promise.all([routineFlood(gw, floodEnds, routine), sample()]);
  const floodEnded = performance.now();
  const leftWaiting = routine.filter((to) => !((submitsAt.get(to) ?? Infinity) < floodEnded)).length;
  // Everything is still submitted, exactly once counted by the first submit (bounded wait).
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && routine.some((to) => !submitsAt.has(to))) await new Promise((r) => setTimeout(r, 50));
  t.equal(routine.filter((to) => !submitsAt.has(to)).length, 0, 'every routine message submitted after the flood');
  const deadlineGauge = Date.now() + 10_000;
  while (Date.now() < deadlineGauge && (await gauge()) > 0) await new Promise((r) => setTimeout(r, 50));
  t.equal(await gauge(), 0, 'the backlog gauge back to 0 once everything is taken');
  return { accepted: routine.length, leftWaiting, maxGauge };
}

t.test('the backlog bound (dispatch.intakeFirstBacklog) ends a hold the time bound would let run', async (t) => {
  const BOUND = 10;
  // Each worker has one request in flight at most, so writes started and not yet committed hold at most WORKERS
  // recipients; between a commit and the woken dispatcher taking its jobs, another commit may land and WORKERS
  // more start (2 × WORKERS past the bound was seen; allow one more).
  const ceiling = BOUND + 3 * WORKERS;
  const unbounded = await floodLeftWaiting(t, 10_000_000);
  t.comment(`no backlog bound: ${unbounded.leftWaiting} of ${unbounded.accepted} left waiting at the flood's end, backlog up to ${unbounded.maxGauge}`);
  t.ok(unbounded.maxGauge > ceiling, `the premise: without the bound, holds let the backlog pass ${ceiling} (${unbounded.maxGauge})`);
  const bounded = await floodLeftWaiting(t, BOUND);
  t.comment(`backlog bound ${BOUND}: ${bounded.leftWaiting} of ${bounded.accepted} left waiting, backlog up to ${bounded.maxGauge}`);
  t.ok(bounded.maxGauge <= ceiling, `with the bound, the backlog stayed near it (${bounded.maxGauge} ≤ ${ceiling})`);
  t.ok(bounded.accepted - bounded.leftWaiting >= 500, `${bounded.accepted - bounded.leftWaiting} routine messages submitted during the flood`);
});
