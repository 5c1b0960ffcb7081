/**
 * The grant matrix: units × tiers × targets (groups, direct numbers) × quotas,
 * checked through SendPolicy on a real LMDB directory. Every allowed send
 * passes and every other is refused with the right code and field.
 */
import t, { type Test } from 'tap';
import { GatewayError } from '../../src/core/errors.js';
import { WordFilter } from '../../src/core/word-filter.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { GroupExpander } from '../../src/directory/expansion.js';
import { QuotaLedger } from '../../src/directory/quota.js';
import { SendPolicy } from '../../src/directory/policy.js';
import type { Principal } from '../../src/core/send.js';
import { grants, ROOT, tempDirectory, TIERS } from '../support/directory.js';

const DAY = 86_400_000;

async function setup(t: Test) {
  let clock = Date.parse('2026-05-01T10:00:00+08:00');
  const { env, store } = tempDirectory(t, { now: () => clock });
  const quotas = new QuotaLedger({ env, utcOffsetMinutes: 480, now: () => clock });
  const metrics = createMetrics({ defaultMetrics: false });
  const policy = new SendPolicy({
    store, expander: new GroupExpander(store, { chunk: 1000, maxMembers: 1_000_000 }), quotas, filter: WordFilter.build([]),
    onMatch: 'reject', metrics, pdaEnabled: false, defaultSender: '10690000', countCacheEntries: 0,
  });
  await store.createUnit(ROOT, { id: 'city', name: 'City' });
  await store.createUnit(ROOT, { id: 'solo', name: 'Solo' });
  for (const g of ['all-staff', 'duty', 'chiefs', 'residents']) await store.putGroup(ROOT, { id: g, name: g, unit: 'city' }, 'create');
  await store.setGrants(ROOT, 'city', { tiers: ['emergency', 'leadership', 'routine'], groups: ['all-staff', 'duty', 'chiefs'], direct: true, police: true, dailyQuota: 100 });
  await store.createUnit(ROOT, { id: 'bureau', name: 'Bureau', parent: 'city', grants: grants({ tiers: ['*'], groups: ['duty', 'chiefs', 'residents'], direct: true, police: false, perMinuteQuota: 1000 }) });
  // The city's groups are outside the section's subtree: `*` alone would not reach them, so the section names them.
  await store.createUnit(ROOT, { id: 'section', name: 'Section', parent: 'bureau', grants: grants({ tiers: ['routine', 'bulk'], groups: ['*', 'duty', 'chiefs'], direct: false, police: true }) });
  await store.setGrants(ROOT, 'solo', { tiers: ['bulk'], groups: ['residents'], direct: true });
  const principal = (unit: string): Principal => ({ tenant: unit, unit, tiers: null, sender: '' });
  return { store, policy, metrics, principal, tick: (ms: number) => (clock += ms) };
}

/** Hand-written effective grants: what each unit may do once its parents are taken into account. */
const EXPECTED: Record<string, { tiers: string[]; groups: string[]; direct: boolean; quota: number | null }> = {
  city: { tiers: ['emergency', 'leadership', 'routine'], groups: ['all-staff', 'duty', 'chiefs'], direct: true, quota: 100 },
  bureau: { tiers: ['emergency', 'leadership', 'routine'], groups: ['duty', 'chiefs'], direct: true, quota: 100 },
  section: { tiers: ['routine'], groups: ['duty', 'chiefs'], direct: false, quota: 100 },
  solo: { tiers: ['bulk'], groups: ['residents'], direct: true, quota: null },
};
const TARGETS = ['all-staff', 'duty', 'chiefs', 'residents', 'direct'] as const;
const SIZES = [10, 150] as const; // within the city's daily quota of 100, and over it

t.test('grant matrix: 4 units × 5 tiers × 5 targets × 2 sizes', async (t) => {
  const { policy, principal, tick } = await setup(t);
  let cases = 0;
  let passed = 0;
  const wrong: string[] = [];
  for (const [unit, exp] of Object.entries(EXPECTED)) {
    for (const tier of TIERS) {
      for (const target of TARGETS) {
        for (const n of SIZES) {
          cases++;
          tick(DAY); // every case on a fresh quota day
          const direct = target === 'direct';
          const shape = { tier, channel: 'auto' as const, ...(direct ? { origin: 'caller' as const } : { group: target }) };
          let want: { code: string; field: string } | undefined;
          if (!exp.tiers.includes(tier)) want = { code: 'FORBIDDEN', field: '/tier' };
          else if (!direct && !exp.groups.includes(target)) want = { code: 'FORBIDDEN', field: '/group' };
          else if (direct && !exp.direct) want = { code: 'FORBIDDEN', field: '/to' };
          else if (exp.quota !== null && n > exp.quota) want = { code: 'QUOTA_EXCEEDED', field: '/quota/daily' };
          let got: { code: string; field: string } | undefined;
          try {
            const admission = policy.admit(principal(unit), shape, '');
            const reservation = await policy.reserve(admission, n);
            await reservation.release();
          } catch (e) {
            if (!(e instanceof GatewayError)) throw e;
            got = { code: e.code, field: e.details?.[0]?.field ?? '' };
          }
          const label = `${unit} ${tier} ${target} ×${n}`;
          if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(`${label}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
          else if (want === undefined) passed++;
        }
      }
    }
  }
  t.equal(cases, 200);
  t.same(wrong, [], 'every case as the table says');
  // city 3 tiers × 4 targets, bureau 3 × 3, section 1 × 2 (each within quota only); solo 1 × 2 × both sizes.
  t.equal(passed, 3 * 4 + 3 * 3 + 1 * 2 + 1 * 2 * 2, 'the allowed sends all passed');
});

t.test('refusals name the unit that narrowed the grant', async (t) => {
  const { policy, principal } = await setup(t);
  const refusal = (unit: string, shape: Parameters<SendPolicy['admit']>[1]): GatewayError => {
    try {
      policy.admit(principal(unit), shape, '');
    } catch (e) {
      return e as GatewayError;
    }
    throw new Error('not refused');
  };
  t.match(refusal('section', { tier: 'bulk', group: 'duty', channel: 'auto' }).message, /tier bulk is not granted to unit section \(not granted by parent unit city\)/);
  t.match(refusal('bureau', { tier: 'routine', group: 'residents', channel: 'auto' }).message, /group residents .*parent unit city/);
  t.match(refusal('section', { tier: 'routine', origin: 'caller', channel: 'auto' }).message, /only to groups/);
  const police = refusal('section', { tier: 'routine', group: 'duty', classification: 'police', channel: 'auto' });
  t.equal(police.code, 'FORBIDDEN');
  t.equal(police.details?.[0]?.field, '/classification');
  t.match(police.message, /parent unit bureau/, 'the section grants police itself; its parent does not');
  t.equal(refusal('city', { tier: 'routine', group: 'duty', classification: 'police', channel: 'sms' }).code, 'CHANNEL_REFUSED', 'police is never forced onto SMS');
});

t.test('narrowing or disabling a parent takes effect on the sub-unit at once', async (t) => {
  const { store, policy, principal } = await setup(t);
  const shape = { tier: 'routine', group: 'duty', channel: 'auto' as const };
  t.doesNotThrow(() => policy.admit(principal('section'), shape, ''));
  await store.updateUnit(ROOT, 'city', { grants: { tiers: ['emergency'] } });
  t.throws(() => policy.admit(principal('section'), shape, ''), { code: 'FORBIDDEN' }, 'city no longer grants routine');
  await store.updateUnit(ROOT, 'city', { grants: { tiers: ['emergency', 'routine'] } });
  t.doesNotThrow(() => policy.admit(principal('section'), shape, ''), 'widening the parent gives back only what the child itself asked for');
  t.throws(() => policy.admit(principal('section'), { ...shape, tier: 'emergency' }, ''), { code: 'FORBIDDEN' }, 'the section never granted itself emergency');
  await store.updateUnit(ROOT, 'bureau', { disabled: true });
  t.throws(() => policy.admit(principal('section'), shape, ''), { code: 'FORBIDDEN', message: /under disabled unit bureau/ });
});

t.test('quotas: a parent\'s daily quota caps its subtree; per-minute windows; a release gives back', async (t) => {
  const { store, policy, principal, tick } = await setup(t);
  const section = policy.admit(principal('section'), { tier: 'routine', group: 'duty', channel: 'auto' }, '');
  const bureau = policy.admit(principal('bureau'), { tier: 'routine', origin: 'caller', channel: 'auto' }, '');
  await policy.reserve(section, 60);
  await t.rejects(policy.reserve(bureau, 60), { code: 'QUOTA_EXCEEDED', details: [{ field: '/quota/daily', message: /unit city: 60 of 100 used/ }] }, 'the city\'s 100 a day are shared by its sub-units');
  const r = await policy.reserve(bureau, 40);
  await t.rejects(policy.reserve(section, 1), { code: 'QUOTA_EXCEEDED' });
  await r.release();
  await r.release(); // idempotent
  await policy.reserve(section, 40);
  tick(DAY);
  await t.resolves(policy.reserve(section, 100), 'a new day starts with the whole quota');

  await store.updateUnit(ROOT, 'bureau', { grants: { perMinuteQuota: 30 } });
  tick(DAY);
  const b = policy.admit(principal('bureau'), { tier: 'routine', origin: 'caller', channel: 'auto' }, '');
  await policy.reserve(b, 20);
  await t.rejects(policy.reserve(b, 20), { code: 'QUOTA_EXCEEDED', details: [{ field: '/quota/perMinute' }] });
  tick(60_000);
  await t.resolves(policy.reserve(b, 20), 'the next minute has room again');
});
