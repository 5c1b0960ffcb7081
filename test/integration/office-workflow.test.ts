/**
 * Business-registration progress end to end: workflow events (shuffled,
 * duplicated) → one SMS per stage, in order; CX queries by MO.
 */
import t from 'tap';
import { officeFixture, receivedTexts, eventually, OFFICE_SENDER, SIGNATURE } from '../support/office.js';

const APPLICANT = '13912345676';
const APPLICANT_86 = `86${APPLICANT}`;

const stageText = (caseId: string, stage: string): string => ({
  received: `您的市场监管业务（受理号${caseId}）已受理。`,
  bring: `您的业务（受理号${caseId}）请携带：营业执照副本、法人身份证，到窗口办理。`,
  missing: `您的业务（受理号${caseId}）尚缺：股东会决议，请尽快补齐。`,
  done: `您的业务（受理号${caseId}）已办结，可领取。`,
} as Record<string, string>)[stage] + SIGNATURE;

function event(caseId: string, seq: number, stage: string): Record<string, unknown> {
  return {
    system: '市场监管', caseId, seq, stage,
    stageName: { received: '已受理', bring: '待补件（现场）', missing: '待补件', done: '已办结' }[stage],
    applicant: { name: '某某科技有限公司', mobile: APPLICANT },
    ...(stage === 'bring' ? { missing: ['营业执照副本', '法人身份证'] } : {}),
    ...(stage === 'missing' ? { missing: ['股东会决议'] } : {}),
  };
}

t.test('shuffled and duplicated events: each stage sent exactly once, in order', async (t) => {
  const { gw, call } = await officeFixture(t, 0, { config: { office: { workflow: { reorderMs: 800 } } } });
  const stages = ['received', 'bring', 'missing', 'done'];
  // A seeded shuffle with duplicates, for several cases at once.
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const cases = ['GS2026-0001', 'GS2026-0002', 'GS2026-0003'];
  const all: Record<string, unknown>[] = [];
  for (const c of cases) stages.forEach((s, k) => {
    all.push(event(c, k + 1, s));
    if (rand() < 0.6) all.push(event(c, k + 1, s));
  });
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j] as Record<string, unknown>, all[i] as Record<string, unknown>];
  }
  const statuses = new Map<string, number>();
  for (const e of all) {
    const r = await call('POST', '/v1/workflow-events', e);
    t.equal(r.status, 202, JSON.stringify(r.json));
    statuses.set(r.json.status, (statuses.get(r.json.status) ?? 0) + 1);
  }
  t.equal(statuses.get('duplicate') ?? 0, all.length - cases.length * stages.length, 'every repeat is a duplicate');
  const want = cases.flatMap((c) => stages.map((s) => stageText(c, s)));
  await eventually(() => {
    const got = receivedTexts(gw.simulator).get(APPLICANT_86) ?? [];
    return want.every((w) => got.includes(w)) ? got : undefined;
  }, 'every stage of every case');
  await new Promise((r) => setTimeout(r, 1000));
  const got = receivedTexts(gw.simulator).get(APPLICANT_86) ?? [];
  t.equal(got.length, cases.length * stages.length, 'no stage sent twice');
  for (const c of cases) {
    const mine = got.filter((x) => x.includes(c));
    t.same(mine, stages.map((s) => stageText(c, s)), `${c}: each stage once, in order`);
    const view = await call('GET', `/v1/cases/${encodeURIComponent('市场监管')}/${c}`);
    t.equal(view.status, 200, JSON.stringify(view.json));
    t.match(view.json, { stage: 'done', stageName: '已办结', ordering: 'seq' });
    const sent = (view.json.timeline as { outcome: string; order: number }[]).filter((x) => x.outcome === 'sent').map((x) => x.order);
    t.same(sent, [1, 2, 3, 4], `${c}: timeline lists the four sends in order`);
  }
  // A late repeat of an applied event is a duplicate: recorded, not sent.
  const again = await call('POST', '/v1/workflow-events', event('GS2026-0001', 2, 'bring'));
  t.equal(again.json.status, 'duplicate');
  await new Promise((r) => setTimeout(r, 300));
  t.equal((receivedTexts(gw.simulator).get(APPLICANT_86) ?? []).length, cases.length * stages.length);
});

t.test('events ordered by time wait out the re-ordering window', async (t) => {
  const { gw, call } = await officeFixture(t, 0, { config: { office: { workflow: { reorderMs: 500 } } } });
  const base = Date.parse('2026-11-20T09:00:00+08:00');
  const ev = (min: number, stage: string): Record<string, unknown> => {
    const { seq: _seq, ...rest } = event('T-9', 1, stage);
    return { ...rest, occurredAt: new Date(base + min * 60_000).toISOString() };
  };
  for (const e of [ev(30, 'done'), ev(10, 'bring'), ev(0, 'received'), ev(10, 'bring')]) {
    const r = await call('POST', '/v1/workflow-events', e);
    t.equal(r.status, 202, JSON.stringify(r.json));
  }
  const want = ['received', 'bring', 'done'].map((s) => stageText('T-9', s));
  const got = await eventually(() => {
    const g = receivedTexts(gw.simulator).get(APPLICANT_86) ?? [];
    return g.length >= 3 ? g : undefined;
  }, 'three stages');
  await new Promise((r) => setTimeout(r, 700));
  t.same(receivedTexts(gw.simulator).get(APPLICANT_86), want, 'in time order, once each');
  t.same(got.slice(0, 3), want);
  // An event older than the applied ones, never seen before, is stale: recorded, not sent.
  const stale = await call('POST', '/v1/workflow-events', ev(5, 'missing'));
  t.equal(stale.json.status, 'stale');
  await new Promise((r) => setTimeout(r, 700));
  t.equal(receivedTexts(gw.simulator).get(APPLICANT_86)?.length, 3, 'the stale event sent nothing');
  const view = await call('GET', `/v1/cases/${encodeURIComponent('市场监管')}/T-9`);
  t.same((view.json.timeline as { outcome: string }[]).map((e) => e.outcome).sort(), ['duplicate', 'sent', 'sent', 'sent', 'stale'].sort());
});

t.test('CX <caseId> by SMS returns the latest stage; a stranger learns nothing', async (t) => {
  const { gw, call } = await officeFixture(t, 0, { config: { office: { workflow: { reorderMs: 0 } } } });
  for (const [k, s] of ['received', 'missing'].entries()) {
    const r = await call('POST', '/v1/workflow-events', event('Q-1', k + 1, s));
    t.equal(r.json.status, 'applied');
  }
  t.ok(await gw.simulator.injectMo({ source: APPLICANT_86, destination: OFFICE_SENDER, text: 'cx Q-1' }));
  const reply = await eventually(() => (receivedTexts(gw.simulator).get(APPLICANT_86) ?? []).find((x) => x.startsWith('受理号Q-1当前进度')), 'the CX answer');
  t.match(reply, /^受理号Q-1当前进度：待补件（\d+月\d+日 \d\d:\d\d）。【市政府办公厅】$/);
  const stranger = '8613612345676';
  t.ok(await gw.simulator.injectMo({ source: stranger, destination: OFFICE_SENDER, text: 'CX Q-1' }));
  const no = await eventually(() => (receivedTexts(gw.simulator).get(stranger) ?? [])[0], 'the stranger\'s answer');
  t.equal(no, `未查到受理号Q-1的办理信息，请核对后重试。${SIGNATURE}`);
  const handled = await call('GET', '/v1/mo?state=handled');
  t.equal((handled.json.items as { route: string }[]).filter((m) => m.route === 'case-query').length, 2);
});

t.test('workflow events are checked at the door', async (t) => {
  const { call } = await officeFixture(t, 0);
  const noOrder = await call('POST', '/v1/workflow-events', { system: 's', caseId: 'c', stage: 'received', applicant: { mobile: APPLICANT } });
  t.equal(noOrder.status, 422);
  t.match(noOrder.json.error.details, [{ field: '/seq' }]);
  const badPhone = await call('POST', '/v1/workflow-events', { system: 's', caseId: 'c', stage: 'received', seq: 1, applicant: { mobile: '123' } });
  t.equal(badPhone.status, 422);
  t.match(badPhone.json.error.details, [{ field: '/applicant/mobiles/0' }]);
  const unknownField = await call('POST', '/v1/workflow-events', { system: 's', caseId: 'c', stage: 'received', seq: 1, applicant: { mobile: APPLICANT }, colour: 'red' });
  t.equal(unknownField.status, 422);
  const none = await call('GET', '/v1/cases/s/none');
  t.equal(none.status, 404);
  // A stage without a text is recorded, not sent.
  const quiet = await call('POST', '/v1/workflow-events', { system: 's', caseId: 'c2', stage: 'internal-review', seq: 1, applicant: { mobile: APPLICANT } });
  t.equal(quiet.json.status, 'applied');
  const view = await call('GET', '/v1/cases/s/c2');
  t.match(view.json.timeline, [{ stage: 'internal-review', outcome: 'recorded' }]);
});
