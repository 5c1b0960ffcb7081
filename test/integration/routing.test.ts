/**
 * Routing table end to end: real gateway, two SMSC simulators on loopback
 * as two accounts. Rules from config (round-robin, a dedicated emergency
 * account), a rule change through the admin API applied without a restart
 * (audited), failover when an account's SMSC is not there, and /readyz and
 * /metrics showing each account's state and share.
 */
import t from 'tap';
import type { Test } from 'tap';
import { startTestGateway, numberAt } from '../support/gateway.js';
import { startSimulator } from '../support/nats-deployment.js';
import { simulatorAccountConfig } from '../support/gateway-process.js';
import { ADMIN_CONFIG, adminClient } from '../support/directory.js';
import { until } from '../support/wait.js';
import type { SmscSimulator } from '../../src/smpp/simulator.js';

/** POST /v1/messages: what these tests read of an accepted message. */
interface Sent {
  id: string;
  segments: number;
}
/** GET /readyz: each account's state and share. */
interface Readyz {
  accounts: { account: string; up: boolean; reason?: string; bound?: number; routed?: number; share?: number }[];
}

async function twoAccounts(t: Test, routing: Record<string, unknown>, extra: { bPort?: number } = {}) {
  const a = await startSimulator(t, { dlrDelayMs: 5 });
  const b = await startSimulator(t, { dlrDelayMs: 5 });
  const gw = await startTestGateway(t, {
    config: {
      ...ADMIN_CONFIG,
      smpp: {
        accounts: [
          simulatorAccountConfig(portOf(a), { name: 'cm-a', operators: ['cmcc'] }),
          simulatorAccountConfig(extra.bPort ?? portOf(b), { name: 'cm-b', operators: [] }),
        ],
      },
      routing: { health: { unboundMs: 200, failingMs: 2000, retryMs: 5000 }, ...routing },
    },
  });
  await until('both accounts bound', () => (gw.gateway.router?.accounts() ?? []).every((x) => x.bound > 0 || (extra.bPort !== undefined && x.account === 'cm-b')), 10_000);
  return { a, b, gw, admin: adminClient(gw) };
}

function portOf(sim: SmscSimulator): number {
  return sim.port;
}

function seen(sim: SmscSimulator): number {
  return sim.stats().uniqueSegments;
}

t.test('without rules: the derived per-operator table routes as before (cm-a for cmcc, nothing for cucc)', async (t) => {
  const { a, b, gw } = await twoAccounts(t, { rules: [] });
  const r = await gw.send<Sent>({ to: [numberAt(1), numberAt(2, '130')], text: 'derived table' });
  t.equal(r.status, 202);
  const done = await gw.waitComplete(r.json.id);
  t.equal(done.summary.delivered, 1);
  t.equal(done.summary.failed, 1, 'the Unicom number has no account (cm-b has no operators)');
  t.match(done.items.find((i) => i.state === 'failed')!.segments![0]!.error, /no route/);
  t.equal(seen(a), 1);
  t.equal(seen(b), 0);
});

t.test('round-robin shares recipients equally; emergency goes through its dedicated account; readyz and metrics show it', async (t) => {
  const { a, b, gw } = await twoAccounts(t, {
    rules: [
      { name: 'emergency', match: { tiers: ['emergency'] }, accounts: ['cm-b'], policy: 'failover' },
      { name: 'share', match: { operators: ['cmcc'] }, accounts: ['cm-a', 'cm-b'], policy: 'round-robin' },
    ],
  });
  const r = await gw.send<Sent>({ to: Array.from({ length: 200 }, (_, i) => numberAt(i)), text: 'shared load' });
  t.equal((await gw.waitComplete(r.json.id)).summary.delivered, 200);
  t.equal(seen(a), 100, 'half through cm-a');
  t.equal(seen(b), 100, 'half through cm-b');

  const e = await gw.send<Sent>({ to: Array.from({ length: 20 }, (_, i) => numberAt(1000 + i)), text: 'flood warning', tier: 'emergency' });
  t.equal((await gw.waitComplete(e.json.id)).summary.delivered, 20);
  t.equal(seen(a), 100, 'emergency never on cm-a');
  t.equal(seen(b), 120);

  const ready = await gw.request<Readyz>('GET', '/readyz');
  const accounts = ready.json.accounts;
  t.match(accounts.find((x) => x.account === 'cm-a'), { up: true, routed: 100 });
  t.match(accounts.find((x) => x.account === 'cm-b'), { up: true, routed: 120, share: Math.round((120 / 220) * 1000) / 1000 });
  gw.gateway.router?.tick(); // flush the hot-path counts into the metrics now
  const metrics = (await fetch(`${gw.url}/metrics`).then((x) => x.text()));
  t.match(metrics, /smsgw_route_recipients_total\{rule="share",account="cm-a"\} 100/);
  t.match(metrics, /smsgw_route_recipients_total\{rule="emergency",account="cm-b"\} 20/);
  t.match(metrics, /smsgw_route_account_up\{account="cm-a"\} 1/);
});

t.test('a rule change through the admin API applies without a restart, is audited, and is refused when it names an unknown account', async (t) => {
  const { a, b, gw, admin } = await twoAccounts(t, { rules: [] });
  const bad = await admin.call('PUT', '/v1/admin/routing', { rules: [{ name: 'x', match: {}, accounts: ['nope'], policy: 'failover' }] });
  t.equal(bad.status, 422);
  t.match(bad.json, { error: { code: 'VALIDATION' } });
  t.ok(JSON.stringify(bad.json).includes('/rules/0/accounts/0'), 'names the field');

  const put = await admin.must<{ version: number }>('PUT', '/v1/admin/routing', { rules: [{ name: 'all-b', match: { operators: ['cmcc'] }, accounts: ['cm-b', 'cm-a'], policy: 'failover' }] });
  t.equal(put.version, 1);
  await until('router applied version 1', () => gw.gateway.router?.rules().version === 1, 5000);
  const r = await gw.send<Sent>({ to: Array.from({ length: 10 }, (_, i) => numberAt(i)), text: 'after the change' });
  t.equal((await gw.waitComplete(r.json.id)).summary.delivered, 10);
  t.equal(seen(b), 10, 'the new rule sends through cm-b');
  t.equal(seen(a), 0);

  const view = await admin.must<{ accounts: unknown[] }>('GET', '/v1/admin/routing');
  t.match(view, { stored: { version: 1 }, inForce: { version: 1, rules: [{ name: 'all-b' }] } });
  t.ok(view.accounts.length === 2);
  const audit = await admin.must<{ items: unknown[] }>('GET', '/v1/admin/audit?action=routing');
  t.equal(audit.items.length, 1);
  t.match(audit.items[0], { actor: 'root-admin', action: 'routing.update', after: { version: 1 } });

  // null: back to the configuration's rules (none: the derived table → cm-a).
  await admin.must('PUT', '/v1/admin/routing', { rules: null });
  await until('router applied version 2', () => gw.gateway.router?.rules().version === 2, 5000);
  const r2 = await gw.send<Sent>({ to: [numberAt(50)], text: 'back to config' });
  await gw.waitComplete(r2.json.id);
  t.equal(seen(a), 1);
});

t.test('failover: an account whose SMSC is not there goes down and its recipients go to the next account', async (t) => {
  // cm-b points at a port nobody listens on; the rule prefers it.
  const dead = await startSimulator(t, {});
  const deadPort = portOf(dead);
  await dead.stop();
  const { a, gw } = await twoAccounts(t, {
    rules: [{ name: 'prefer-b', match: {}, accounts: ['cm-b', 'cm-a'], policy: 'failover' }],
  }, { bPort: deadPort });
  await until('cm-b down', () => gw.gateway.router?.isAccountUp('cm-b') === false, 5000);
  const r = await gw.send<Sent>({ to: Array.from({ length: 50 }, (_, i) => numberAt(i)), text: 'failover' });
  const done = await gw.waitComplete(r.json.id);
  t.equal(done.summary.delivered, 50, 'every recipient delivered through cm-a');
  t.equal(seen(a), 50);
  const ready = await gw.request<Readyz>('GET', '/readyz');
  t.match(ready.json.accounts.find((x) => x.account === 'cm-b'), { up: false, reason: 'unbound', bound: 0 });
});

t.test('signature position per account: front as signed, moved to the end for an account that wants it, same parts', async (t) => {
  const a = await startSimulator(t, { dlrDelayMs: 5 });
  const b = await startSimulator(t, { dlrDelayMs: 5 });
  const gw = await startTestGateway(t, {
    config: {
      smpp: {
        accounts: [
          simulatorAccountConfig(portOf(a), { name: 'cm-a', operators: [] }),
          simulatorAccountConfig(portOf(b), { name: 'cm-b', operators: [], signaturePosition: 'end' }),
        ],
      },
      routing: { rules: [{ name: 'rr', match: {}, accounts: ['cm-a', 'cm-b'], policy: 'round-robin' }] },
    },
  });
  await until('both bound', () => (gw.gateway.router?.accounts() ?? []).every((x) => x.bound > 0), 10_000);
  const long = '【市防汛办】' + '请各单位做好防汛准备，加强值班，及时上报险情。'.repeat(4);
  const r = await gw.send<Sent>({ to: [numberAt(1), numberAt(2)], text: long });
  t.equal(r.json.segments, 2);
  t.equal((await gw.waitComplete(r.json.id)).summary.delivered, 2);
  const join = (sim: SmscSimulator): string => sim.recentSubmits().map((s) => s.text).join('');
  t.equal(join(a), long, 'cm-a: as signed, in front');
  t.equal(join(b), long.slice('【市防汛办】'.length) + '【市防汛办】', 'cm-b: the signature at the end');
  t.equal(a.recentSubmits().length, 2);
  t.equal(b.recentSubmits().length, 2, 'same number of parts');
});

t.test('an account with its own access code: the source goes out with that code, and a reply to it reaches the same tenant', async (t) => {
  const a = await startSimulator(t, { dlrDelayMs: 5 });
  const b = await startSimulator(t, { dlrDelayMs: 5 });
  const gw = await startTestGateway(t, {
    config: {
      smpp: {
        accounts: [
          simulatorAccountConfig(portOf(a), { name: 'cm-a', operators: ['cmcc'] }),
          simulatorAccountConfig(portOf(b), { name: 'cm-b', operators: [], accessCode: { from: '10690', to: '10655' } }),
        ],
      },
      routing: { rules: [{ name: 'b-first', match: {}, accounts: ['cm-b', 'cm-a'], policy: 'failover' }] },
    },
  });
  await until('both bound', () => (gw.gateway.router?.accounts() ?? []).every((x) => x.bound > 0), 10_000);
  // The dev key's sender is 10690001 (config/default.json).
  const r = await gw.send<Sent>({ to: [numberAt(7)], text: 'via the other code' });
  t.equal((await gw.waitComplete(r.json.id)).summary.delivered, 1);
  t.equal(b.recentSubmits()[0]?.sourceAddr, '10655001', 'cm-b sends its own access code + the extension');
  t.ok(await b.injectMo({ source: `86${numberAt(7)}`, destination: '1065500199', text: 'reply through cm-b' }));
  const mo = await (async () => {
    for (let i = 0; i < 100; i++) {
      const list = await gw.request<{ items?: { text: string }[] }>('GET', '/v1/mo?limit=10');
      const hit = (list.json.items ?? []).find((m) => m.text === 'reply through cm-b');
      if (hit) return hit;
      await new Promise((res) => setTimeout(res, 50));
    }
    return undefined;
  })();
  t.match(mo, { to: '1069000199', text: 'reply through cm-b' }, 'routed as a reply to the dev tenant\'s code');
});
