/**
 * CMPP Msg_Fmt 15 end to end: a gateway whose CMPP 3.0 account allows
 * GB18030 (`gb18030: true`) sends Chinese mixed with digits, a rare
 * character and an emoji as GB18030 parts (each ≤ 140 octets, none split in
 * a character); the ISMG simulator decodes what arrived and gets the text
 * back intact; the status API shows the parts as sent. An account without
 * the flag sends the same text as UCS-2, in more parts.
 */
import t, { type Test } from 'tap';
import { CmppSimulator } from '../../src/cmpp/simulator.js';
import { countSegments } from '../../src/core/segment.js';
import { TEST_API_KEYS, TEST_KEY } from '../support/gateway.js';
import { startConfiguredGateway } from '../support/configured-gateway.js';

async function gatewayWith(t: Test, gb18030: boolean) {
  const sim = new CmppSimulator({ version: 3, spId: '901234', sharedSecret: 'pw', dlrDelayMs: 5 });
  const { port } = await sim.start();
  const { request, waitComplete: complete } = await startConfiguredGateway(t, {
    key: TEST_KEY,
    prefix: 'smsgw-cmpp-gb-',
    afterStop: () => sim.stop(),
    overrides: {
      auth: { apiKeys: TEST_API_KEYS },
      simulator: { enabled: false },
      smpp: {
        accounts: [{
          name: 'cm', protocol: 'cmpp3', host: '127.0.0.1', port, spId: '901234', sharedSecret: 'pw', serviceId: 'MGOV', accessCode: '1065700',
          links: 2, window: 16, tps: 0, responseTimeoutMs: 5000, reconnectInitialMs: 20, reconnectMaxMs: 500, operators: ['*'], gb18030,
        }],
      },
    },
  });
  return { sim, request, complete };
}

// 100+ characters: Chinese, digits and Latin (1 octet in GB18030), 𠀀 and 😀 (4 octets each).
const TEXT = '【某某市应急管理局】防汛通知：2026年12月7日09:30在3楼301会议室召开防汛工作会议，请各单位负责人准时参加，会议编号FX-2026-0042，联系电话12345。罕见字𠀀，表情😀，结束。'.repeat(2);

t.test('gb18030 account: Msg_Fmt 15 parts, never a split character, the simulator decodes the text intact', async (t) => {
  const { sim, request, complete } = await gatewayWith(t, true);
  const expected = countSegments(TEXT, 'cmpp-gb18030').count;
  t.ok(expected < countSegments(TEXT, 'cmpp').count, `GB18030 needs fewer parts (${expected}) than UCS-2 (${countSegments(TEXT, 'cmpp').count})`);
  const sent = await request<{ id: string }>('POST', '/v1/messages', { to: ['13800138016'], text: TEXT });
  t.equal(sent.status, 202);
  const done = await complete(sent.json.id);
  t.equal(done.summary.delivered, 1);
  t.equal(done.items[0]!.segments!.length, expected, 'the status API shows the GB18030 parts as sent');
  const parts = sim.recentSubmits().filter((p) => p.destTerminalIds[0] === '13800138016');
  t.equal(parts.length, expected);
  const strict = new TextDecoder('gb18030', { fatal: true });
  for (const p of parts) {
    t.equal(p.msgFmt, 15, 'Msg_Fmt 15');
    t.ok(p.msgContent.length <= 140, `part ${p.pkNumber}: ${p.msgContent.length} octets`);
    t.equal(p.tpUdhi, 1);
    t.equal(p.pkTotal, expected);
    t.doesNotThrow(() => strict.decode(p.msgContent.subarray(6)), `part ${p.pkNumber} decodes on its own (no split character)`);
  }
  t.same(sim.receivedTexts('13800138016'), [TEXT], 'the text arrives intact');
});

t.test('without the flag the same account sends UCS-2 (Msg_Fmt 8), and the text also arrives intact', async (t) => {
  const { sim, request, complete } = await gatewayWith(t, false);
  const sent = await request<{ id: string }>('POST', '/v1/messages', { to: ['13800138026'], text: TEXT });
  t.equal(sent.status, 202);
  const done = await complete(sent.json.id);
  t.equal(done.items[0]!.segments!.length, countSegments(TEXT, 'cmpp').count);
  const parts = sim.recentSubmits().filter((p) => p.destTerminalIds[0] === '13800138026');
  t.ok(parts.length > 0 && parts.every((p) => p.msgFmt === 8), 'Msg_Fmt 8');
  t.same(sim.receivedTexts('13800138026'), [TEXT]);
});
