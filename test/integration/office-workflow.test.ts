/**
 * Business-registration progress end to end: workflow events (shuffled,
 * duplicated) → one SMS per stage, in order; CX queries by MO.
 */
import t from 'tap';
import { officeFixture, receivedTexts, eventually, OFFICE_SENDER, CITY_SENDER, SIGNATURE } from '../support/office.js';

const APPLICANT = '13912345676';
const APPLICANT_86 = `86${APPLICANT}`;

/** POST /v1/workflow-events */
interface EventReply { readonly status: string }
/** GET /v1/cases/{system}/{caseId} */
interface CaseView { readonly timeline: ReadonlyArray<{ readonly outcome: string; readonly order: number }> }
/** A refusal with its details. */
interface Refusal { readonly error: { readonly code: string; readonly message: string; readonly details: unknown } }

const stageText = (caseId: string, stage: string): string => SIGNATURE + ({
  received: `您的市场监管业务（受理号${caseId}）已受理。`,
  bring: `您的业务（受理号${caseId}）请携带：营业执照副本、法人身份证，到窗口办理。`,
  missing: `您的业务（受理号${caseId}）尚缺：股东会决议，请尽快补齐。`,
  done: `您的业务（受理号${caseId}）已办结，可领取。`,
} as Record<string, string>)[stage];

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
    const r = await call<EventReply>('POST', '/v1/workflow-events', e);
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
    const view = await call<CaseView>('GET', `/v1/cases/${encodeURIComponent('市场监管')}/${c}`);
    t.equal(view.status, 200, JSON.stringify(view.json));
    t.match(view.json, { stage: 'done', stageName: '已办结', ordering: 'seq' });
    const sent = view.json.timeline.filter((x) => x.outcome === 'sent').map((x) => x.order);
    t.same(sent, [1, 2, 3, 4], `${c}: timeline lists the four sends in order`);
  }
  // A late repeat of an applied event is a duplicate: recorded, not sent.
  const again = await call<EventReply>('POST', '/v1/workflow-events', event('GS2026-0001', 2, 'bring'));
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
  const stale = await call<EventReply>('POST', '/v1/workflow-events', ev(5, 'missing'));
  t.equal(stale.json.status, 'stale');
  await new Promise((r) => setTimeout(r, 700));
  t.equal(receivedTexts(gw.simulator).get(APPLICANT_86)?.length, 3, 'the stale event sent nothing');
  const view = await call<CaseView>('GET', `/v1/cases/${encodeURIComponent('市场监管')}/T-9`);
  t.same(view.json.timeline.map((e) => e.outcome).sort(), ['duplicate', 'sent', 'sent', 'sent', 'stale'].sort());
});

t.test('CX <caseId> by SMS returns the latest stage; a stranger learns nothing', async (t) => {
  const { gw, call } = await officeFixture(t, 0, { config: { office: { workflow: { reorderMs: 0 } } } });
  for (const [k, s] of ['received', 'missing'].entries()) {
    const r = await call<EventReply>('POST', '/v1/workflow-events', event('Q-1', k + 1, s));
    t.equal(r.json.status, 'applied');
  }
  t.ok(await gw.simulator.injectMo({ source: APPLICANT_86, destination: OFFICE_SENDER, text: 'cx Q-1' }));
  const reply = await eventually(() => (receivedTexts(gw.simulator).get(APPLICANT_86) ?? []).find((x) => x.startsWith(`${SIGNATURE}受理号Q-1当前进度`)), 'the CX answer');
  t.match(reply, /^【市政府办公厅】受理号Q-1当前进度：待补件（\d+月\d+日 \d\d:\d\d）。$/);
  const stranger = '8613612345676';
  t.ok(await gw.simulator.injectMo({ source: stranger, destination: OFFICE_SENDER, text: 'CX Q-1' }));
  const no = await eventually(() => (receivedTexts(gw.simulator).get(stranger) ?? [])[0], 'the stranger\'s answer');
  t.equal(no, `${SIGNATURE}未查到受理号Q-1的办理信息，请核对后重试。`);
  const handled = await call<{ items: Array<{ route: string }> }>('GET', '/v1/mo?state=handled');
  t.equal(handled.json.items.filter((m) => m.route === 'case-query').length, 2);
});

t.test('CX stays in its tenant: another code\'s cases are not read, the argument is bounded, replies are rate-limited per number', async (t) => {
  const { gw, call } = await officeFixture(t, 0, { config: { office: { workflow: { reorderMs: 0 } } } });
  t.equal((await call<EventReply>('POST', '/v1/workflow-events', event('Q-7', 1, 'received'))).json.status, 'applied');
  // The office's case, asked at the city's code: the city has no such case, and the answer comes from the city's code.
  t.ok(await gw.simulator.injectMo({ source: APPLICANT_86, destination: CITY_SENDER, text: 'CX Q-7' }));
  const other = await eventually(() => gw.simulator.recentSubmits().find((r) => r.destinationAddr === APPLICANT_86 && r.text.includes('未查到受理号Q-7')), 'the answer at the city code', 30_000);
  t.equal(other.sourceAddr, CITY_SENDER, 'replied from the receiving code');
  t.notOk(gw.simulator.recentSubmits().some((r) => r.destinationAddr === APPLICANT_86 && r.text.includes('当前进度')), 'the office\'s case was not answered through the city');
  // A long argument is cut to 32 characters in the answer.
  const asker = '8613612340001';
  t.ok(await gw.simulator.injectMo({ source: asker, destination: OFFICE_SENDER, text: `CX ${'A'.repeat(200)}` }));
  const cut = await eventually(() => (receivedTexts(gw.simulator).get(asker) ?? [])[0], 'the long-argument answer', 30_000);
  t.ok(cut.includes('A'.repeat(32)) && !cut.includes('A'.repeat(33)), 'at most 32 characters echoed');
  // Rate limit: 5 answers per number per window; the rest are recorded, not answered.
  for (let i = 0; i < 6; i++) t.ok(await gw.simulator.injectMo({ source: asker, destination: OFFICE_SENDER, text: `CX X-${i}` }));
  const limited = await eventually(async () => {
    const r = await call<{ items: Array<{ from: string; detail?: string }> }>('GET', '/v1/mo?state=handled&limit=100');
    const items = r.json.items.filter((m) => m.from === asker);
    return items.length === 7 ? items : undefined;
  }, 'seven case queries handled', 30_000);
  t.equal(limited.filter((m) => /rate limit/.test(m.detail ?? '')).length, 2, 'the 6th and 7th are not answered');
  // A query is recorded handled when its answer is accepted; the answer reaches the SMSC after dispatch.
  await eventually(() => ((receivedTexts(gw.simulator).get(asker) ?? []).length >= 5 ? true : undefined), 'five answers at the SMSC', 30_000);
  await new Promise((r) => setTimeout(r, 500));
  t.equal((receivedTexts(gw.simulator).get(asker) ?? []).length, 5, 'five answers, and no more after a while');
  // The window is measured: two numbers asked (the applicant at the city's code, the asker), two queries refused.
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  t.match(metrics, /^smsgw_case_query_windows 2$/m, 'one window per number that asked');
  t.match(metrics, /^smsgw_case_query_refused_total 2$/m, 'the refused queries are counted');
});

t.test('workflow events are checked at the door', async (t) => {
  const { call } = await officeFixture(t, 0);
  const noOrder = await call<Refusal>('POST', '/v1/workflow-events', { system: 's', caseId: 'c', stage: 'received', applicant: { mobile: APPLICANT } });
  t.equal(noOrder.status, 422);
  t.match(noOrder.json.error.details, [{ field: '/seq' }]);
  const badPhone = await call<Refusal>('POST', '/v1/workflow-events', { system: 's', caseId: 'c', stage: 'received', seq: 1, applicant: { mobile: '123' } });
  t.equal(badPhone.status, 422);
  t.match(badPhone.json.error.details, [{ field: '/applicant/mobiles/0' }]);
  const unknownField = await call('POST', '/v1/workflow-events', { system: 's', caseId: 'c', stage: 'received', seq: 1, applicant: { mobile: APPLICANT }, colour: 'red' });
  t.equal(unknownField.status, 422);
  const none = await call('GET', '/v1/cases/s/none');
  t.equal(none.status, 404);
  // A stage without a text is recorded, not sent.
  const quiet = await call<EventReply>('POST', '/v1/workflow-events', { system: 's', caseId: 'c2', stage: 'internal-review', seq: 1, applicant: { mobile: APPLICANT } });
  t.equal(quiet.json.status, 'applied');
  const view = await call<CaseView>('GET', '/v1/cases/s/c2');
  t.match(view.json.timeline, [{ stage: 'internal-review', outcome: 'recorded' }]);
});

/** A key of a new unit under `city` with these grants. */
async function unitKey(admin: { must<T = unknown>(m: string, p: string, b?: unknown): Promise<T> }, id: string, grants: Record<string, unknown>, parent = 'city'): Promise<string> {
  await admin.must('POST', '/v1/admin/units', { id, name: id, parent, grants: { tiers: ['*'], groups: ['*'], police: false, dailyQuota: null, perMinuteQuota: null, ...grants } });
  return (await admin.must<{ key: string }>('POST', `/v1/admin/units/${id}/keys`, { label: id })).key;
}

t.test('workflow events send to caller-supplied numbers: refused without the workflow grant, nothing reaches the SMSC', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 0, { config: { office: { workflow: { reorderMs: 0 } } } });
  const as = (key: string) => <T = unknown>(method: string, path: string, body?: unknown) => gw.request<T>(method, path, body, { authorization: `Bearer ${key}` });
  const chosen = ['13900000001', '13900000002', '13900000003', '13900000004', '13900000005'];
  // A unit granted only groups, with its own workflow template carrying any text it likes.
  const groupsOnly = as(await unitKey(admin, 'groups-only', { direct: false }));
  t.equal((await groupsOnly('PUT', '/v1/templates/workflow.received', { body: '任意内容：请点击链接' })).status, 201);
  const direct = await groupsOnly('POST', '/v1/messages', { to: chosen, text: 'x' });
  t.equal(direct.status, 403, 'no direct grant');
  let k = 0;
  for (const mobile of chosen) {
    const r = await groupsOnly<Refusal>('POST', '/v1/workflow-events', { system: 's', caseId: `c${k++}`, seq: 1, stage: 'received', applicant: { mobile } });
    t.equal(r.status, 403, JSON.stringify(r.json));
    t.equal(r.json.error.code, 'FORBIDDEN');
    t.match(r.json.error.details, [{ field: '/applicant', message: /grant workflow/ }]);
  }
  const noCase = await groupsOnly('GET', '/v1/cases/s/c0');
  t.equal(noCase.status, 404, 'a refused event is not recorded');
  // A parent that withholds workflow: its sub-unit's own direct does not give it back.
  await unitKey(admin, 'no-wf', { direct: true, workflow: false });
  const child = as(await unitKey(admin, 'no-wf-child', { direct: true }, 'no-wf'));
  const viaChild = await child<Refusal>('POST', '/v1/workflow-events', { system: 's', caseId: 'c9', seq: 1, stage: 'received', applicant: { mobile: chosen[0] } });
  t.equal(viaChild.status, 403);
  t.match(viaChild.json.error.message, /not granted by parent unit no-wf/);
  // workflow without direct: workflow events go out, POST /v1/messages to numbers does not.
  const wfOnly = as(await unitKey(admin, 'wf-only', { direct: false, workflow: true }));
  t.equal((await wfOnly('POST', '/v1/messages', { to: [APPLICANT], text: 'x' })).status, 403);
  const ok = await wfOnly<EventReply>('POST', '/v1/workflow-events', event('W-1', 1, 'received'));
  t.equal(ok.status, 202, JSON.stringify(ok.json));
  t.equal(ok.json.status, 'applied');
  // The allowed send arrived (control); none of the refused ones did.
  await eventually(() => (receivedTexts(gw.simulator).get(APPLICANT_86) ?? [])[0], 'the granted workflow SMS');
  const got = receivedTexts(gw.simulator);
  t.same(chosen.filter((n) => got.has(`86${n}`)), [], 'no chosen number reached the SMSC');
  t.same([...got.keys()], [APPLICANT_86], 'only the granted send reached the SMSC');
  t.equal((await call('GET', '/v1/cases/s/c0')).status, 404);
});

t.test('a buffered workflow event is admitted again when applied: grant withdrawn meanwhile, nothing is sent', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 0, { config: { office: { workflow: { reorderMs: 300 } } } });
  // seq 2 waits for seq 1 (which never comes); the grant is withdrawn before the wait ends.
  const r = await call<EventReply>('POST', '/v1/workflow-events', event('B-1', 2, 'bring'));
  t.equal(r.json.status, 'buffered');
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: false } });
  const view = await eventually(async () => {
    const v = await call<Partial<CaseView>>('GET', `/v1/cases/${encodeURIComponent('市场监管')}/B-1`);
    return v.json.timeline?.length ? v.json : undefined;
  }, 'the buffered event applied');
  t.match(view.timeline, [{ order: 2, outcome: 'failed', error: /FORBIDDEN.*grant workflow/ }]);
  const later = await call('POST', '/v1/workflow-events', event('B-2', 1, 'received'));
  t.equal(later.status, 403, 'and new events are refused at the door');
  // Control: a send that is granted goes out and arrives; the refused one never did.
  const ctl = await unitKey(admin, 'ctl', { direct: true });
  t.equal((await gw.request('POST', '/v1/messages', { to: ['13700000000'], text: 'control' }, { authorization: `Bearer ${ctl}` })).status, 202);
  await eventually(() => (receivedTexts(gw.simulator).get('8613700000000') ?? [])[0], 'the control message');
  t.same([...receivedTexts(gw.simulator).keys()], ['8613700000000'], 'nothing reached the SMSC for the withdrawn workflow event');
});
