/**
 * CMPP 3.0 end to end over loopback: the gateway with the built-in ISMG
 * simulator (`simulator.protocol: cmpp3`), and a CmppAccount against a
 * CmppSimulator for the link's own behaviour (CONNECT refused, flow control,
 * DELIVER_RESP after the durable write, ACTIVE_TEST, TERMINATE on close).
 */
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { CmppAccount } from '../../src/cmpp/account.js';
import { CmppSimulator } from '../../src/cmpp/simulator.js';
import type { CmppAccountConfig } from '../../src/config/schema.js';
import type { DeliveryReceipt, MobileOriginated, SubmitOutcome } from '../../src/core/ports.js';
import { buildSegments } from '../../src/core/segment.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { until as waitUntil } from '../support/wait.js';
import { startConfiguredGateway } from '../support/configured-gateway.js';

/** An inbox entry of GET /v1/mo, as read here. */
interface MoItem {
  readonly text: string;
  readonly from: string;
}

/** Bounded wait with a message built when it fails. */
async function until(check: () => boolean | Promise<boolean>, o: { timeoutMs: number; message: () => string }): Promise<void> {
  try {
    await waitUntil('condition', check, o.timeoutMs);
  } catch (e) {
    throw new Error(`${o.message()} (${(e as Error).message})`);
  }
}

const DEV_KEY = 'dev-key-change-me';
const logger = pino({ level: 'silent' });

async function cmppGateway(t: Test, version: 'cmpp2' | 'cmpp3' = 'cmpp3') {
  const { gateway, request, waitComplete } = await startConfiguredGateway(t, {
    key: DEV_KEY,
    prefix: 'smsgw-cmpp-',
    overrides: {
      simulator: { enabled: true, protocol: version, port: 0, dlrDelayMs: 10 },
      smpp: { accounts: [] },
      dispatch: { expirySweepMs: 200 },
    },
  });
  const sim = gateway.cmppSimulator;
  if (sim === undefined) throw new Error('no CMPP simulator started');
  return { gateway, sim, request, waitComplete };
}

t.test('CMPP 3.0 end to end: ASCII and UCS-2 parts as CMPP plans them, receipts into the status API', async (t) => {
  const { sim, request, waitComplete } = await cmppGateway(t);
  const ascii150 = 'A'.repeat(150); // one SMPP part (GSM 160), two CMPP parts (ASCII 140 / 134)
  const chinese = '各位同事：请于明日上午九点到三楼会议室参加防汛工作会议，请准时出席，收到请回复1确认，不能参加请回复2并说明原因。会议材料已发至各部门邮箱，请提前阅读并准备好本部门的汛情报告。谢谢！'; // > 70 units
  const sent = await request<{ id: string }>('POST', '/v1/messages', { to: ['13800138006', '13900139016'], text: ascii150 });
  t.equal(sent.status, 202);
  const done = await waitComplete(sent.json.id);
  t.equal(done.summary.delivered, 2);
  for (const r of done.items) t.equal(r.segments!.length, 2, 'each recipient shows the two CMPP parts as sent');
  t.ok(chinese.length > 70);
  const zh = await request<{ id: string }>('POST', '/v1/messages', { to: ['13800138026'], text: chinese });
  const zhDone = await waitComplete(zh.json.id);
  t.equal(zhDone.summary.delivered, 1);
  t.equal(zhDone.items[0]!.segments!.length, buildSegments(chinese, 'ucs2', 0, 'cmpp').length);

  const submits = sim.recentSubmits();
  const asciiParts = submits.filter((s) => s.destTerminalIds[0] === '13800138006');
  t.equal(asciiParts.length, 2);
  for (const p of asciiParts) {
    t.equal(p.msgFmt, 0, 'ASCII: Msg_Fmt 0');
    t.equal(p.tpUdhi, 1);
    t.equal(p.pkTotal, 2);
    t.equal(p.registeredDelivery, 1, 'receipts asked for');
    t.ok(p.msgContent.length <= 140, 'inside 140 octets');
    t.equal(p.msgContent[0], 5, 'UDH 05 00 03');
    t.equal(p.serviceId, 'MGOV');
    t.match(p.srcId, /^1065700/, 'Src_Id = access code + extension');
    t.match(p.valIdTime, /^\d{12}0\d\d[+-]$/, 'ValId_Time absolute');
    t.equal(p.msgSrc, '901234');
  }
  t.same(asciiParts.map((p) => p.pkNumber).sort(), [1, 2]);
  const zhParts = submits.filter((s) => s.destTerminalIds[0] === '13800138026');
  t.ok(zhParts.length >= 2 && zhParts.every((p) => p.msgFmt === 8 && p.msgContent.length <= 140), 'UCS-2: Msg_Fmt 8, ≤ 140 octets');
});

t.test('CMPP simulator behaviours by suffix end in the right final states', async (t) => {
  const { request, waitComplete } = await cmppGateway(t);
  const cases: [string, string, RegExp | undefined][] = [
    ['13800130003', 'expired', undefined],
    ['13800130005', 'undeliverable', undefined],
    ['13800130006', 'undeliverable', /MK:0005/],
    ['13800130007', 'delivered', undefined],
    ['13800130008', 'delivered', undefined],
    ['13800130011', 'rejected', /CMPP_BAD_DEST_TERMINAL_ID/],
  ];
  const sent = await request<{ id: string }>('POST', '/v1/messages', { to: cases.map((c) => c[0]), text: 'suffix test' });
  t.equal(sent.status, 202);
  const done = await waitComplete(sent.json.id);
  for (const [number, state, error] of cases) {
    const r = done.items.find((x) => x.to === `86${number}`);
    t.equal(r?.state, state, `${number}: ${state}`);
    if (error) t.match(JSON.stringify(r), error);
  }
});

t.test('MO over CMPP: a long UCS-2 MO in UDH parts is re-assembled into the inbox', async (t) => {
  const { sim, request } = await cmppGateway(t);
  const text = '收到，我明天上午准时参加会议。另外请问会议材料是否需要提前打印？如需要请告知份数，我会安排办公室同事提前准备好。会后是否还需要提交书面的汛情报告？谢谢。';
  t.ok(text.length > 70);
  sim.sendMo('13800138000', '1065700106900015', text); // access code + the dev unit's sender + the phone's own digit
  let items: MoItem[] = [];
  await until(async () => {
    const r = await request<{ items?: MoItem[] } | undefined>('GET', '/v1/mo?state=unmatched');
    items = r.json?.items ?? [];
    return items.length > 0;
  }, { timeoutMs: 15_000, message: () => 'no MO in the inbox' });
  t.equal(items.length, 1, 'one message, not two parts');
  t.equal(items[0]!.text, text);
  t.equal(items[0]!.from, '8613800138000');
  await until(() => sim.stats().moAcked === 2, { timeoutMs: 5000, message: () => JSON.stringify(sim.stats()) });
});

function account(port: number, over: Partial<CmppAccountConfig> = {}): CmppAccountConfig {
  return {
    name: 'cm', protocol: 'cmpp3', host: '127.0.0.1', port, spId: '901234', sharedSecret: 'pw', serviceId: 'MGOV', msgSrc: '', accessCode: '1065700',
    feeUserType: 2, feeType: '01', feeCode: '000000', registeredDelivery: true, links: 2, window: 16, tps: 0, responseTimeoutMs: 2000, activeTestMs: 60_000,
    reconnectInitialMs: 20, reconnectMaxMs: 200, throttleBackoffMs: 20, utcOffsetMinutes: 480, operators: ['*'], ...over,
  };
}

function submitOne(a: CmppAccount, to: string, text: string): Promise<SubmitOutcome> {
  const seg = buildSegments(text, 'gsm7', 0, 'cmpp')[0]!;
  return a.submit({ destination: to, source: '01', payload: seg.payload, dataCoding: seg.dataCoding, esmClass: seg.esmClass, registeredDelivery: true, priority: 0, deadline: Date.now() + 20_000 });
}

for (const version of [2, 3] as const) {
  t.test(`CmppAccount ${version}.0: connect, submit, receipt after the handler, TERMINATE on close`, async (t) => {
    const sim = new CmppSimulator({ version, spId: '901234', sharedSecret: 'pw', dlrDelayMs: 5 });
    const { port } = await sim.start();
    t.teardown(() => sim.stop());
    const a = new CmppAccount(account(port, { protocol: version === 2 ? 'cmpp2' : 'cmpp3' }), { metrics: createMetrics(), logger });
    const receipts: DeliveryReceipt[] = [];
    let release: (() => void) | undefined;
    const gate = new Promise<void>((r) => (release = r));
    a.onReceipt(async (r) => {
      await gate; // the "durable write" is slow: the ISMG must not get Result 0 before it
      receipts.push(r);
    });
    a.onMobileOriginated(async () => undefined);
    a.start();
    t.ok(await a.waitBound(2, 5000), 'both links connected');
    const out = await submitOne(a, '8613800138016', 'hello');
    t.equal(out.kind, 'accepted');
    const opId = out.kind === 'accepted' ? out.messageId : '';
    t.match(opId, /^[1-9][0-9]*$/, 'Msg_Id in canonical decimal');
    await until(() => sim.stats().reportsSent >= 1, { timeoutMs: 5000, message: () => 'no report sent' });
    await new Promise((r) => setTimeout(r, 100));
    t.equal(sim.stats().reportsAcked, 0, 'no DELIVER_RESP before the write is durable');
    release?.();
    await until(() => sim.stats().reportsAcked === 1, { timeoutMs: 5000, message: () => JSON.stringify(sim.stats()) });
    t.equal(receipts[0]?.messageId, opId, 'report Msg_Id matches the SUBMIT_RESP Msg_Id exactly');
    t.equal(receipts[0]?.state, 'delivered');
    t.equal(sim.recentSubmits()[0]?.destTerminalIds[0], '13800138016', 'Dest_terminal_Id without 86');
    await a.close();
    t.equal(sim.stats().terminates, 2, 'TERMINATE on each link at close');
  });
}

t.test('CmppAccount: wrong secret is refused and named; a failing handler makes the ISMG re-send', async (t) => {
  const sim = new CmppSimulator({ version: 3, spId: '901234', sharedSecret: 'pw', dlrDelayMs: 0, dlrRetryMs: 50 });
  const { port } = await sim.start();
  t.teardown(() => sim.stop());
  const bad = new CmppAccount(account(port, { sharedSecret: 'wrong', links: 1 }), { metrics: createMetrics(), logger });
  bad.start();
  await until(() => bad.bindStates()[0]?.lastError === 'CMPP_CONNECT_AUTH_FAILED', { timeoutMs: 5000, message: () => String(bad.bindStates()[0]?.lastError) });
  t.equal(bad.boundCount, 0);
  await bad.close();

  const a = new CmppAccount(account(port, { links: 1 }), { metrics: createMetrics(), logger });
  let failures = 0;
  const got: DeliveryReceipt[] = [];
  a.onReceipt(async (r) => {
    if (failures++ < 2) throw new Error('storage busy');
    got.push(r);
  });
  a.start();
  t.ok(await a.waitBound(1, 5000));
  const out = await submitOne(a, '8613800138026', 'retry me');
  t.equal(out.kind, 'accepted');
  await until(() => got.length === 1, { timeoutMs: 10_000, message: () => JSON.stringify(sim.stats()) });
  t.ok(sim.stats().deliverRetries >= 2, 'the ISMG re-sent after a non-zero DELIVER_RESP');
  t.equal(sim.deliverResults().get(9), 2, 'a handler failure that is not storage answers Result 9 (other error)');
  t.equal(sim.deliverResults().get(8), undefined, 'not the storage-full Result 8');
  await a.close();
});

t.test('CmppAccount: Result 8 backs off and retries; ACTIVE_TEST sent after silence; MO decoded', async (t) => {
  const sim = new CmppSimulator({ version: 3, spId: '901234', sharedSecret: 'pw' });
  const { port } = await sim.start();
  t.teardown(() => sim.stop());
  const a = new CmppAccount(account(port, { links: 1, activeTestMs: 150 }), { metrics: createMetrics(), logger, link: { sweepMs: 20 } });
  const mos: MobileOriginated[] = [];
  a.onReceipt(async () => undefined);
  a.onMobileOriginated(async (mo) => {
    mos.push(mo);
  });
  a.start();
  t.ok(await a.waitBound(1, 5000));
  const out = await submitOne(a, '8613800130008', 'flow control');
  t.equal(out.kind, 'accepted', 'accepted after three flow-control answers');
  t.equal(sim.stats().flowControlled, 3, JSON.stringify(sim.stats()));
  t.equal(a.stats().throttled, 3, JSON.stringify(a.stats()));
  await until(() => sim.stats().activeTests > 0, { timeoutMs: 5000, message: () => 'no ACTIVE_TEST' });
  t.equal(a.boundCount, 1, 'still connected after ACTIVE_TEST');
  sim.sendMo('13900139000', '106570012', 'CX 2026-0001');
  await until(() => mos.length === 1, { timeoutMs: 5000, message: () => 'no MO' });
  t.match(mos[0], { source: '8613900139000', destination: '12', onAir: '106570012', text: 'CX 2026-0001' }, 'destination without the access code, and as it arrived');
  await a.close();
});
