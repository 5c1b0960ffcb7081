/**
 * Intake first (src/dispatch/intake-first.ts): the dispatcher holds new jobs
 * of yielding tiers back while accepted work waits for its commit (a hold
 * starts only while a write waits, and goes on through gaps shorter than
 * quietMs), at most maxHoldMs at a time, then leaves them unheld as long
 * again. Checked against random schedules of checks, clock steps, writes
 * starting and ending.
 */
import t from 'tap';
import fc from 'fast-check';
import { IntakeBacklog, IntakeFirstGate } from '../../src/dispatch/intake-first.js';

const TIERS = ['emergency', 'routine', 'bulk'] as const;
const YIELDING: ReadonlySet<string> = new Set(['routine', 'bulk']);

const QUIET = 20;

interface Check { readonly at: number; readonly tier: string; readonly busy: boolean; readonly lastEnded: number; readonly backlog: number; readonly held: boolean; /** Did a hold start at this check? */ readonly startedHere: boolean; /** When the hold in force after this check started (from the hold events). */ readonly holdStart: number | undefined }

/** Runs a schedule; returns every check's answer and the hold events. */
function run(maxHoldMs: number, steps: readonly Step[], maxBacklog?: number): { checks: Check[]; events: { holding: boolean; heldMs: number; at: number }[] } {
  let now = 1_000;
  let busy = false;
  let lastEnded = -Infinity;
  const backlog = new IntakeBacklog();
  const events: { holding: boolean; heldMs: number; at: number }[] = [];
  const gate = new IntakeFirstGate({
    maxHoldMs, quietMs: QUIET, writing: () => busy, lastWriteEndedAt: () => lastEnded, yieldingTiers: YIELDING,
    onHold: (holding, heldMs) => events.push({ holding, heldMs, at: now }),
    ...(maxBacklog !== undefined ? { backlog: () => backlog.value, maxBacklog } : {}),
  });
  const checks: Check[] = [];
  for (const s of steps) {
    // Writes waiting at the start of the step that none wait at its end ended somewhere in the step.
    if (busy && !s.busy) lastEnded = now + Math.floor(s.dt / 2);
    now += s.dt;
    busy = s.busy;
    if (s.accepted !== undefined) backlog.queued(s.accepted);
    if (s.taken !== undefined) backlog.taken(s.taken);
    const tier = TIERS[s.tier] as string;
    const before = events.length;
    const held = gate.holds(tier, now);
    const last = events.at(-1);
    const startedHere = events.slice(before).some((e) => e.holding);
    checks.push({ at: now, tier, busy, lastEnded, backlog: backlog.value, held, startedHere, holdStart: last?.holding === true ? last.at : undefined });
    if (gate.holding !== (last?.holding === true)) throw new Error(`holding disagrees with the hold events at ${now}`);
  }
  return { checks, events };
}

interface Step { readonly dt: number; readonly busy: boolean; readonly tier: number; readonly accepted?: number; readonly taken?: number }

// Steps short and long against QUIET, so gaps both inside and beyond it occur.
const schedule = fc.array(fc.record({ dt: fc.oneof(fc.integer({ min: 0, max: 2 * QUIET }), fc.integer({ min: 0, max: 400 })), busy: fc.boolean(), tier: fc.integer({ min: 0, max: 2 }) }), { maxLength: 200 });
// The same, with recipients accepted and taken between checks (taken may exceed what was counted).
const scheduleWithBacklog = fc.array(fc.record({
  dt: fc.oneof(fc.integer({ min: 0, max: 2 * QUIET }), fc.integer({ min: 0, max: 400 })), busy: fc.boolean(), tier: fc.integer({ min: 0, max: 2 }),
  accepted: fc.integer({ min: 0, max: 60 }), taken: fc.integer({ min: 0, max: 80 }),
}), { maxLength: 200 });
const maxBacklog = fc.integer({ min: 1, max: 300 });
const maxHold = fc.integer({ min: 0, max: 1_500 });

t.test('never holds a quiet intake, a tier that does not yield, or with the gate off; a hold starts only while a write waits', async (t) => {
  fc.assert(fc.property(maxHold, schedule, (max, steps) => {
    const { checks } = run(max, steps);
    for (const c of checks) {
      if (c.startedHere && !c.busy) return false;
      if (!c.held) continue;
      if (!YIELDING.has(c.tier) || max === 0) return false;
      if (!c.busy && !(c.at - c.lastEnded < QUIET)) return false;
    }
    return true;
  }), { numRuns: 300 });
  t.pass('checked');
});

t.test('a hold never lasts maxHoldMs: every held check is less than maxHoldMs after the hold started', async (t) => {
  fc.assert(fc.property(maxHold, schedule, (max, steps) => {
    for (const c of run(max, steps).checks) {
      if (c.held && (c.holdStart === undefined || c.at - c.holdStart >= max)) return false;
    }
    return true;
  }), { numRuns: 300 });
  t.pass('checked');
});

t.test('holds while busy unless a bound was reached; after the time bound, nothing is held for maxHoldMs; none at the backlog bound', async (t) => {
  // Reference model: the rule as stated in the module's comment, written as a state per check.
  fc.assert(fc.property(maxHold, scheduleWithBacklog, fc.option(maxBacklog, { nil: undefined }), (max, steps, bound) => {
    const { checks } = run(max, steps, bound);
    let since: number | undefined;
    let openUntil = -Infinity;
    let counted = 0;
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i] as Check;
      const s = steps[i] as Step;
      // The backlog: accepted counted up, taken down, never below zero.
      counted = Math.max(0, counted + (s.accepted ?? 0) - (s.taken ?? 0));
      if (c.backlog !== counted) return false;
      let expected: boolean;
      const recent = c.busy || c.at - c.lastEnded < QUIET;
      if (max === 0 || !YIELDING.has(c.tier) || c.at < openUntil) expected = false;
      else if (bound !== undefined && counted >= bound) {
        since = undefined;
        expected = false;
      } else if (since === undefined) {
        if (c.busy) since = c.at;
        expected = c.busy;
      } else if (!recent) {
        since = undefined;
        expected = false;
      } else if (c.at - since < max) expected = true;
      else {
        since = undefined;
        openUntil = c.at + max;
        expected = false;
      }
      if (c.held !== expected) return false;
    }
    return true;
  }), { numRuns: 500 });
  t.pass('agrees with the model');
});

t.test('hold events alternate, and the time they report is the time held', async (t) => {
  fc.assert(fc.property(maxHold, schedule, (max, steps) => {
    const { events } = run(max, steps);
    let start: number | undefined;
    for (const ev of events) {
      if (ev.holding) {
        if (start !== undefined || ev.heldMs !== 0) return false;
        start = ev.at;
      } else {
        if (start === undefined || ev.heldMs !== ev.at - start) return false;
        start = undefined;
      }
    }
    return true;
  }), { numRuns: 300 });
  t.pass('checked');
});

t.test('a sustained flood still gets its sends: at least every other period unheld', async (t) => {
  let now = 0;
  const gate = new IntakeFirstGate({ maxHoldMs: 1_000, writing: () => true, lastWriteEndedAt: () => now, yieldingTiers: YIELDING });
  const unheldAt: number[] = [];
  for (; now <= 10_000; now += 10) if (!gate.holds('routine', now)) unheldAt.push(now);
  t.equal(unheldAt[0], 1_000, 'the first fetch comes when the hold reaches its bound');
  t.ok(unheldAt.includes(1_990), 'then unheld for the next 1,000 ms');
  t.notOk(unheldAt.includes(2_010), 'then held again');
  t.ok(unheldAt.length >= 450, `unheld in ${unheldAt.length} of 1,001 checks over 10 s`);
});

t.test('a clock that goes back ends the hold at once instead of stretching it', async (t) => {
  const gate = new IntakeFirstGate({ maxHoldMs: 1_000, writing: () => true, lastWriteEndedAt: () => -Infinity, yieldingTiers: YIELDING });
  t.equal(gate.holds('routine', 5_000), true);
  t.equal(gate.holds('routine', 4_000), false, 'a clock stepped back counts as the bound');
  t.equal(gate.holds('emergency', 5_000), false, 'emergency is never held');
});

t.test('a lone write is not held after it ends; a flood\'s short gaps do not end a hold', async (t) => {
  let writing = true;
  let ended = -Infinity;
  const gate = new IntakeFirstGate({ maxHoldMs: 1_000, writing: () => writing, lastWriteEndedAt: () => ended, yieldingTiers: YIELDING });
  writing = false;
  ended = 100;
  t.equal(gate.holds('routine', 100), false, 'checked as the lone write ends (the dispatcher is woken after it stops counting): fetched at once');
  writing = true;
  t.equal(gate.holds('routine', 200), true, 'a write waits: hold');
  writing = false;
  ended = 205;
  t.equal(gate.holds('routine', 215), true, 'none waits, the last ended 10 ms ago: still a flood');
  t.equal(gate.holds('routine', 226), false, 'quiet for 21 ms: the hold ends');
  t.equal(gate.holding, false);
});

t.test('never holds while the backlog is at its bound; holds again once it is under', async (t) => {
  fc.assert(fc.property(maxHold, scheduleWithBacklog, maxBacklog, (max, steps, bound) => {
    for (const c of run(max, steps, bound).checks) if (c.held && c.backlog >= bound) return false;
    return true;
  }), { numRuns: 300 });
  const backlog = new IntakeBacklog();
  const gate = new IntakeFirstGate({ maxHoldMs: 60_000, writing: () => true, lastWriteEndedAt: () => 0, yieldingTiers: YIELDING, backlog: () => backlog.value, maxBacklog: 100 });
  t.equal(gate.holds('routine', 0), true, 'a write waits: hold');
  backlog.queued(100);
  t.equal(gate.holds('routine', 10), false, 'at the bound: the dispatcher takes work');
  t.equal(gate.holding, false, 'and the hold has ended');
  backlog.taken(1);
  t.equal(gate.holds('routine', 20), true, 'under it again: a new hold, without waiting out an open period');
  backlog.taken(1_000);
  t.equal(backlog.value, 0, 'taking more than was counted (redeliveries, jobs from before a restart) leaves 0, not a debt');
  const told: number[] = [];
  const gauged = new IntakeBacklog((n) => told.push(n));
  gauged.queued(5);
  gauged.taken(2);
  gauged.taken(9);
  t.same(told, [5, 3, 0], 'told the value after every change');
});
