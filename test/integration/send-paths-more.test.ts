/**
 * The rest of "every send path is refused without its grant, and nothing
 * reaches the SMSC" (issue #15 item 5; the others: send-paths-grants.test.ts,
 * workflow events: office-workflow.test.ts): meeting reminders and
 * cancellations to invitees named by number (need `direct` at the time they
 * are sent), auto-replies (CX answers, the TD confirmation: need their tier)
 * and new-mail alerts (need their tier). Each refusal is followed by a
 * granted control send that arrives, so "nothing arrived" is not "nothing
 * arrived yet".
 */
import t from 'tap';
import nodemailer from 'nodemailer';
import { officeFixture, phone, receivedTexts, eventually, ALL_GRANTS } from '../support/office.js';
import { startTestGateway } from '../support/gateway.js';
import { ADMIN_CONFIG, adminClient, mobileAt } from '../support/directory.js';
import type { ErrorBody } from '../support/api-types.js';

const MEETING_AT = '2030-01-15T09:30:00+08:00';
const inHours = (h: number): string => new Date(Date.now() + h * 3_600_000).toISOString();
const NUMBER = '13900000021';
const NUMBER86 = `86${NUMBER}`;
const textsOf = (gw: { simulator: Parameters<typeof receivedTexts>[0] }, n: string): string[] => receivedTexts(gw.simulator).get(n) ?? [];

t.test('meetings: the reminder and the cancellation skip invitees named by number once direct is withdrawn; people still get theirs', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 1);
  const m = await call<{ id: string }>('POST', '/v1/meetings', {
    title: '防汛会', time: MEETING_AT, place: '会议室', attendees: { people: ['p0'], numbers: [NUMBER] },
    replyBy: inHours(2), remindAt: new Date(Date.now() + 2_500).toISOString(),
  });
  t.equal(m.status, 201, JSON.stringify(m.json));
  await eventually(() => textsOf(gw, NUMBER86).some((x) => x.includes('会议通知')) || undefined, 'the notice to the number (granted then)');
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { direct: false } });
  // Reminder (a scheduled task): the person gets it, the number does not.
  await eventually(() => textsOf(gw, phone(0)).some((x) => x.includes('会议提醒')) || undefined, 'the reminder to the person');
  // Cancellation: refused for the number (403 names it), sent to the person.
  const cancelled = await call<ErrorBody>('POST', `/v1/meetings/${m.json.id}/cancel`, {});
  t.equal(cancelled.status, 403, JSON.stringify(cancelled.json));
  t.equal(cancelled.json.error.code, 'FORBIDDEN');
  await eventually(() => textsOf(gw, phone(0)).some((x) => x.includes('会议取消')) || undefined, 'the cancellation to the person');
  // Control after both: a directory send arrives; nothing new reached the number.
  t.equal((await call('POST', '/v1/messages', { people: ['p0'], text: '对照' })).status, 202);
  await eventually(() => textsOf(gw, phone(0)).includes(`【市政府办公厅】对照`) || undefined, 'the control message');
  t.same(textsOf(gw, NUMBER86).filter((x) => x.includes('会议提醒') || x.includes('会议取消')), [], 'no reminder, no cancellation to the number');
});

t.test('auto-replies: CX answers and the TD confirmation need their tier; refused, nothing reaches the SMSC', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 3, { config: { office: { workflow: { reorderMs: 0 } } } });
  // CX answers go at office.workflow.tier (business), TD confirmations at office.mo.optOutReplyTier (emergency).
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { tiers: ['routine'] } });
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: '1069000211', text: 'CX Q-1' }));
  t.ok(await gw.simulator.injectMo({ source: phone(1), destination: '1069000211', text: 'TD' }));
  // Both MOs are in the inbox (each handled or failed), the replies refused.
  await eventually(async () => {
    const mo = await call<{ items: { text: string; detail?: string }[] }>('GET', '/v1/mo?limit=10');
    return mo.json.items.find((x) => x.text === 'CX Q-1' && /not granted/.test(x.detail ?? '')) || undefined;
  }, 'the CX query recorded, its answer refused');
  // The TD is not listed in the inbox (opt-outs are handled, not kept): wait for the number's block instead.
  await eventually(async () => (await admin.call<{ items?: { number: string }[] }>('GET', '/v1/admin/blocks')).json?.items?.some((b) => b.number === phone(1)) || undefined, 'the TD block');
  // Control: a routine send (granted) to a third person arrives after them.
  t.equal((await call('POST', '/v1/messages', { people: ['p2'], text: '对照' })).status, 202);
  await eventually(() => textsOf(gw, phone(2)).length > 0 || undefined, 'the control message');
  await new Promise((r) => setTimeout(r, 500));
  t.same(textsOf(gw, phone(0)), [], 'no CX answer without the tier');
  t.same(textsOf(gw, phone(1)), [], 'no TD confirmation without the tier');
  // The tier back: a new CX is answered (the refusal was the grant, not the path).
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { tiers: ['*'] } });
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: '1069000211', text: 'CX Q-2' }));
  await eventually(() => textsOf(gw, phone(0)).some((x) => x.includes('Q-2')) || undefined, 'the granted CX answer');
  t.notOk(textsOf(gw, phone(0)).some((x) => x.includes('Q-1')), 'the refused answer was never sent later');
});

t.test('mail alerts need their tier: refused, nothing reaches the SMSC; granted again, the next alert arrives', async (t) => {
  const DOMAIN = 'office.gov.cn';
  const gw = await startTestGateway(t, {
    simulator: { recentCapacity: 1000 },
    config: {
      ...ADMIN_CONFIG,
      office: { mail: { enabled: true, host: '127.0.0.1', port: 0, tenant: 'office', tier: 'routine', digestSeconds: 1, domains: [DOMAIN], users: [], allowedClients: ['127.0.0.1', '::ffff:127.0.0.1'] } },
    },
  });
  const admin = adminClient(gw);
  await admin.must('POST', '/v1/admin/units', { id: 'office', name: '办公厅', sender: '10690003', grants: { ...ALL_GRANTS, tiers: ['business'] } });
  await admin.must('POST', '/v1/admin/people', { id: 'alice', name: 'alice', mobile: mobileAt(7), unit: 'office', email: `alice@${DOMAIN}`, mailAlerts: true });
  const port = gw.gateway.mail?.port as number;
  const deliver = async (messageId: string): Promise<string> => {
    const tr = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true } as never);
    try {
      const info = await tr.sendMail({ from: `zhangsan@${DOMAIN}`, to: `alice@${DOMAIN}`, subject: `通知 ${messageId}`, text: 'x', messageId: `<${messageId}@${DOMAIN}>` });
      return String(info.response);
    } catch (e) {
      // A refusal may be answered at DATA; what matters is what reached the SMSC.
      return String(e);
    } finally {
      tr.close();
    }
  };
  const alerts = (): string[] => gw.simulator.recentSubmits().filter((s) => s.destinationAddr.endsWith(mobileAt(7))).map((s) => s.text);
  t.match(await deliver('refused-1'), /0 alerted/, 'the mail is taken, no alert made');
  await new Promise((r) => setTimeout(r, 1500));
  t.same(alerts(), [], 'no alert without the tier');
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { tiers: ['*'] } });
  t.match(await deliver('granted-2'), /1 alerted/, 'alerted now');
  await eventually(() => alerts().some((x) => x.includes('granted-2')) || undefined, 'the granted alert');
  t.notOk(alerts().some((x) => x.includes('refused-1')), 'the refused alert was never sent');
});
