import t from 'tap';
import { effectiveGrants, effectiveSender, effectiveSignature, flagOffAt, narrowedBy, signText, workflowGrant } from '../../src/directory/grants.js';
import { NO_GRANTS, type Grants, type Unit } from '../../src/directory/types.js';
import { quietUntil } from '../../src/directory/quiet-hours.js';
import { seededRandom } from '../support/seeded-random.js';
import fc from 'fast-check';
import { placeSignature } from '../../src/core/signature.js';

function unit(id: string, grants: Partial<Grants>, extra: Partial<Unit> = {}): Unit {
  return { id, name: id, grants: { ...NO_GRANTS, ...grants }, disabled: false, createdAt: 0, updatedAt: 0, ...extra };
}

const rng = seededRandom;

t.test('effective grants are the intersection along the chain; * defers to the parent', async (t) => {
  const root = unit('city', { tiers: ['emergency', 'routine', 'bulk'], groups: ['*'], direct: true, police: true, dailyQuota: 1000 });
  const bureau = unit('police-bureau', { tiers: ['*'], groups: ['duty', 'chiefs'], direct: true, police: true, perMinuteQuota: 50 }, { parent: 'city' });
  const section = unit('section', { tiers: ['routine', 'leadership'], groups: ['*'], direct: false, police: true }, { parent: 'police-bureau' });
  const g = effectiveGrants([section, bureau, root]);
  t.same([...(g.tiers ?? [])], ['routine'], 'leadership is not granted above, so it is not effective');
  t.same([...(g.groups ?? [])].sort(), ['chiefs', 'duty']);
  t.equal(g.direct, false);
  t.equal(g.police, true);
  t.same(g.quotas, [{ unit: 'police-bureau', daily: null, perMinute: 50, dailyParts: null }, { unit: 'city', daily: 1000, perMinute: null, dailyParts: null }], 'every level with a quota, self first');
  t.equal(effectiveGrants([unit('root', { tiers: ['*'], groups: ['*'] })]).tiers, null, '* at the root: everything');
  t.equal(narrowedBy([section, bureau, root], (x) => x.tiers, 'leadership'), 'city', 'names the unit nearest the root that left it out');
  t.equal(flagOffAt([section, bureau, root], (x) => x.direct), 'section');
  t.equal(effectiveGrants([section, unit('b', {}, { disabled: true }), root]).disabledBy, 'b');
});

t.test('a sub-unit never exceeds its parent, whatever its own grants say (2,000 random trees)', async (t) => {
  const r = rng(7);
  const tiers = ['emergency', 'leadership', 'business', 'routine', 'bulk'];
  const groups = ['g1', 'g2', 'g3', 'g4'];
  const pick = (xs: string[]): string[] => (r() < 0.2 ? ['*'] : xs.filter(() => r() < 0.5));
  const grants = (): Partial<Grants> => ({ tiers: pick(tiers), groups: pick(groups), direct: r() < 0.6, police: r() < 0.4 });
  let violations = 0;
  for (let k = 0; k < 2000; k++) {
    const depth = 1 + Math.floor(r() * 4);
    const chain: Unit[] = [];
    for (let d = 0; d < depth; d++) chain.unshift(unit(`u${d}`, grants()));
    for (let i = 0; i + 1 < chain.length; i++) {
      const child = effectiveGrants(chain.slice(i));
      const parent = effectiveGrants(chain.slice(i + 1));
      const within = (c: ReadonlySet<string> | null, p: ReadonlySet<string> | null): boolean => p === null || (c !== null && [...c].every((x) => p.has(x)));
      if (!within(child.tiers, parent.tiers) || !within(child.groups, parent.groups) || (child.direct && !parent.direct) || (child.police && !parent.police)) violations++;
      if (parent.quotas.some((q) => !child.quotas.includes(q))) violations++;
    }
  }
  t.equal(violations, 0, 'no effective grant of a sub-unit lies outside its parent\'s; every parent quota also binds the child');
});

t.test('workflow grant: defaults to the level\'s own direct, inherited, never wider than the parent\'s (2,000 random trees against a reference)', async (t) => {
  // Reference model: each level's own flag is `workflow` when set, else its own `direct`; AND up the chain.
  const own = (g: Grants): boolean => (g.workflow !== undefined ? g.workflow : g.direct);
  const groupsOnly = unit('unit', { tiers: ['*'], groups: ['*'], direct: false });
  t.equal(effectiveGrants([groupsOnly]).workflow, false, 'a unit granted only groups may not send workflow events to chosen numbers');
  t.equal(effectiveGrants([unit('u', { direct: true })]).workflow, true, 'granted where direct is');
  t.equal(effectiveGrants([unit('u', { direct: false, workflow: true })]).workflow, true, 'granted on its own: workflow events, but no direct sends');
  t.equal(effectiveGrants([unit('u', { direct: false, workflow: true })]).direct, false);
  const parentNo = unit('p', { direct: true, workflow: false });
  t.equal(effectiveGrants([unit('c', { direct: true }, { parent: 'p' }), parentNo]).workflow, false, 'the parent withholds it: the child\'s direct does not give it back');
  t.equal(effectiveGrants([unit('c', { direct: true, workflow: true }, { parent: 'p' }), parentNo]).workflow, false, 'nor does the child\'s own workflow: true');
  t.equal(flagOffAt([unit('c', { direct: true }, { parent: 'p' }), parentNo], workflowGrant), 'p', 'the refusal names the parent');
  const r = rng(11);
  const flag = (): boolean | undefined => (r() < 0.3 ? undefined : r() < 0.5);
  let violations = 0;
  for (let k = 0; k < 2000; k++) {
    const depth = 1 + Math.floor(r() * 4);
    const chain: Unit[] = [];
    for (let d = 0; d < depth; d++) {
      const w = flag();
      chain.unshift(unit(`u${d}`, { direct: r() < 0.6, ...(w !== undefined ? { workflow: w } : {}) }));
    }
    for (let i = 0; i < chain.length; i++) {
      const e = effectiveGrants(chain.slice(i));
      if (e.workflow !== chain.slice(i).every((u) => own(u.grants))) violations++;
      if (i + 1 < chain.length && e.workflow && !effectiveGrants(chain.slice(i + 1)).workflow) violations++;
    }
  }
  t.equal(violations, 0, 'matches the reference model; a child never has it when its parent does not');
});

t.test('sender: nearest explicit sender plus the extensions below it; signature: nearest set', async (t) => {
  const root = unit('city', {}, { sender: '10690001', signature: '【市政府】' });
  const bureau = unit('b', {}, { parent: 'city', extension: '12' });
  const section = unit('s', {}, { parent: 'b', extension: '3', signature: '【三科】' });
  t.equal(effectiveSender([section, bureau, root], '106900'), '10690001123');
  t.equal(effectiveSender([bureau, root], '106900'), '1069000112');
  t.equal(effectiveSender([unit('x', {}, { extension: '9' })], '106900'), '1069009', 'falls back to the default source');
  t.equal(effectiveSignature([section, bureau, root]), '【三科】');
  t.equal(effectiveSignature([bureau, root]), '【市政府】');
  t.equal(signText('开会', '【市政府】'), '【市政府】开会', 'in front by default (carriers\' rule)');
  t.equal(signText('开会', '【市政府】', 'end'), '开会【市政府】');
  t.equal(signText('开会【市政府】', '【市政府】'), '开会【市政府】', 'not added twice (at the end already)');
  t.equal(signText('【市政府】开会', '【市政府】'), '【市政府】开会', 'not added twice');
  t.equal(signText('开会', undefined), '开会');
});

t.test('quiet hours: inside, outside, across midnight, empty window', async (t) => {
  const offset = 480; // UTC+8
  const at = (hhmm: string): number => Date.parse(`2026-03-10T${hhmm}:00+08:00`);
  const night = { start: '22:00', end: '07:00' };
  t.equal(quietUntil(night, at('23:30'), offset), Date.parse('2026-03-11T07:00:00+08:00'), 'before midnight: ends tomorrow');
  t.equal(quietUntil(night, at('03:00'), offset), at('07:00'), 'after midnight: ends today');
  t.equal(quietUntil(night, at('12:00'), offset), undefined);
  t.equal(quietUntil(night, at('07:00'), offset), undefined, 'the end minute is not quiet');
  t.equal(quietUntil(night, at('22:00'), offset), Date.parse('2026-03-11T07:00:00+08:00'), 'the start minute is');
  t.equal(quietUntil({ start: '12:00', end: '13:30' }, at('12:45'), offset), at('13:30'));
  t.equal(quietUntil({ start: '08:00', end: '08:00' }, at('08:00'), offset), undefined, 'start = end: never quiet');
  t.equal(quietUntil(undefined, at('03:00'), offset), undefined);
});

t.test('placeSignature moves a 【…】 signature between front and end, keeping every character', async (t) => {
  t.equal(placeSignature('【市政府】开会', 'end'), '开会【市政府】');
  t.equal(placeSignature('开会【市政府】', 'front'), '【市政府】开会');
  t.equal(placeSignature('【市政府】开会', 'front'), '【市政府】开会', 'already there');
  t.equal(placeSignature('【甲】开会【乙】', 'end'), '【甲】开会【乙】', 'one at each end: left alone');
  t.equal(placeSignature('【市政府】', 'end'), '【市政府】', 'only a signature');
  t.equal(placeSignature('开会 [city]', 'end'), '开会 [city]', 'no 【…】: nothing to move');
  const body = fc.string({ maxLength: 40 }).filter((s) => !/^【|】$/.test(s) && !s.includes('【') && !s.includes('】'));
  const sig = fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !/[【】\r\n]/.test(s)).map((s) => `【${s}】`);
  fc.assert(fc.property(body, sig, (b, s) => {
    const front = signText(b, s);
    const end = signText(b, s, 'end');
    if (b.length === 0) return front === s && end === s;
    return front === s + b && placeSignature(front, 'end') === end && placeSignature(end, 'front') === front
      && placeSignature(placeSignature(front, 'end'), 'end') === end
      && [...placeSignature(front, 'end')].sort().join() === [...front].sort().join();
  }), { numRuns: 2000 });
});
