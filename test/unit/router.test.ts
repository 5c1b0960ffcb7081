/**
 * Router (src/dispatch/router.ts) with fake transports and a fake clock:
 * health from bound counts and submit outcomes, shedding on down, the
 * failover order following health, shares and stored-table reloads.
 */
import t from 'tap';
import { Router, type RoutedAccount, type StoredRouting } from '../../src/dispatch/router.js';
import type { SmsTransport } from '../../src/core/ports.js';

function fake(name: string, operators: string[], state: { bound: number; shed: string[] }): RoutedAccount {
  const transport = { account: name, pending: 0 } as unknown as SmsTransport;
  return { name, operators, transport, bound: () => state.bound, shed: (reason) => (state.shed.push(reason), 3) };
}

const CM = '8613800138000';

t.test('failover follows health: unbound too long → down, shed, next account first; bound again → back', async (t) => {
  let now = 0;
  const a = { bound: 1, shed: [] as string[] };
  const b = { bound: 1, shed: [] as string[] };
  const changes: string[] = [];
  const router = new Router([fake('a', ['cmcc'], a), fake('b', ['*'], b)], { health: { unboundMs: 100, failingMs: 1000, retryMs: 5000 }, utcOffsetMinutes: 480, tiers: ['routine'] }, {
    now: () => now,
    onChange: (acc, up) => changes.push(`${acc}:${up ? 'up' : 'down'}`),
  });
  const msg = { tier: 'routine', units: ['dev'] };
  t.same(router.route(CM, msg, now).accounts.map((x) => x.name), ['a', 'b'], 'derived cmcc rule: a then the * account');
  a.bound = 0;
  now = 10;
  router.tick();
  t.ok(router.isAccountUp('a'), 'not yet');
  now = 110;
  router.tick();
  t.notOk(router.isAccountUp('a'));
  t.equal(a.shed.length, 1, 'its queued work was shed');
  t.match(a.shed[0], /^ROUTE_SHED: account a is down \(unbound\)/);
  t.same(router.route(CM, msg, now).accounts.map((x) => x.name), ['b', 'a'], 'b first, a last');
  a.bound = 2;
  now = 120;
  router.tick();
  t.same(router.route(CM, msg, now).accounts.map((x) => x.name), ['a', 'b'], 'a back first');
  t.same(changes, ['a:down', 'a:up']);
  const views = router.accounts();
  t.match(views.find((v) => v.account === 'a'), { up: true, routed: 2, share: 0.667 });
  t.match(views.find((v) => v.account === 'b'), { up: true, routed: 1, share: 0.333 });
});

t.test('failing submits past failingMs put a bound account down; an accepted submit in between resets it', async (t) => {
  let now = 0;
  const a = { bound: 1, shed: [] as string[] };
  const router = new Router([fake('a', ['*'], a)], { health: { unboundMs: 100, failingMs: 1000, retryMs: 5000 }, utcOffsetMinutes: 0, tiers: ['routine'] }, { now: () => now });
  const expired = { kind: 'expired', reason: 'SMPP_TIMEOUT' } as const;
  router.observe('a', expired);
  now = 900;
  router.observe('a', { kind: 'accepted', account: 'a', messageId: '1' });
  now = 1500;
  router.observe('a', expired);
  router.tick();
  t.ok(router.isAccountUp('a'), 'the success reset the failing clock');
  now = 2600;
  router.tick();
  t.notOk(router.isAccountUp('a'));
  t.equal(router.accounts()[0]?.reason, 'failing');
  router.observe('a', { kind: 'unavailable', reason: 'OVERLOADED: full' });
  now = 7600;
  router.tick();
  t.ok(router.isAccountUp('a'), 'half-open after retryMs');
});

t.test('stored rules replace the configured ones at the next tick; null goes back; bad stored rules are kept out', async (t) => {
  let stored: StoredRouting | undefined;
  const rejected: string[] = [];
  const router = new Router([fake('a', ['cmcc'], { bound: 1, shed: [] }), fake('b', [], { bound: 1, shed: [] })], {
    health: { unboundMs: 100, failingMs: 1000, retryMs: 5000 }, utcOffsetMinutes: 0, tiers: ['routine', 'emergency'],
    rules: [{ name: 'cfg', match: { tiers: ['emergency'] }, accounts: ['b'], policy: 'failover' }],
  }, { stored: () => stored, onRejected: (v, p) => rejected.push(`${v}:${p}`) });
  const emg = { tier: 'emergency', units: ['dev'] };
  t.equal(router.route(CM, emg, 0).rule, 'cfg');
  stored = { version: 1, rules: [{ name: 'all-b', match: {}, accounts: ['b', 'a'], policy: 'round-robin' }] };
  router.tick();
  t.equal(router.rules().version, 1);
  const firsts = [0, 1, 2, 3].map(() => router.route(CM, { tier: 'routine', units: ['dev'] }, 0).accounts[0]?.name);
  t.same(firsts, ['b', 'a', 'b', 'a'], 'round-robin');
  stored = { version: 2, rules: [{ name: 'bad', match: {}, accounts: ['nope'], policy: 'failover' }] };
  router.tick();
  t.equal(router.route(CM, emg, 0).rule, 'all-b', 'the table in force is kept');
  t.match(rejected, [/^2:\/0\/accounts\/0: unknown account nope/]);
  stored = { version: 3, rules: null };
  router.tick();
  t.equal(router.route(CM, emg, 0).rule, 'cfg', 'null: the configuration\'s rules again');
});
