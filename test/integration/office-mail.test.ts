/**
 * New-mail alerts end to end: a real SMTP client (nodemailer) delivers to
 * the gateway's SMTP listener; the alerts arrive at the SMSC simulator with
 * exact texts. People are made through the admin API. Covered: alert texts,
 * de-duplication by Message-ID, opt-out, refusals (unknown sender domain,
 * recipient domain not served, bad AUTH, no AUTH from a client that is not allowed,
 * too large), STARTTLS + AUTH, a flood folded into one digest, journaling
 * (recipients from the headers), a pending digest across a restart, and —
 * with an injected clock, on the mail part alone — quiet hours; and no
 * directory oracle: every RCPT of a served domain is accepted alike, and the
 * DATA reply only counts (never names) recipients without an alert.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer, { type SendMailOptions } from 'nodemailer';
import { pino } from 'pino';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { ADMIN_CONFIG, adminClient, mobileAt, ROOT, tempDirectory } from '../support/directory.js';
import { loadConfig } from '../../src/config/load.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startMailAlerts } from '../../src/office/mail/index.js';
import { GatewayError } from '../../src/core/errors.js';
import type { SendItem, SendResult, Sends } from '../../src/send/index.js';

/** What the fake send service saw of one send: its numbers (and where they came from), text, tier and key. */
interface SeenSend { to: readonly string[]; origin: string; text: string; tier: string; idempotencyKey?: string; reference?: string }
function seen(item: SendItem): SeenSend {
  const c = item.command;
  if (c.recipients.kind !== 'numbers' || c.content.kind !== 'text') throw new Error('mail alerts send texts to numbers');
  return { to: c.recipients.numbers, origin: c.recipients.origin, text: c.content.text, tier: c.tier, ...(c.idempotencyKey !== undefined ? { idempotencyKey: c.idempotencyKey } : {}), ...(c.reference !== undefined ? { reference: c.reference } : {}) };
}
const accepted = (id: string): SendResult => ({ ok: true, replayed: false, body: { id, recipients: 1, segments: 1, totalSegments: 1, encoding: 'ucs2', tier: 'routine', status: 'accepted' } });
import { selfSignedCertificate } from '../support/tls.js';

const DOMAIN = 'office.gov.cn';
const RELAY = { user: 'relay', pass: 'relay-secret-1' };

function mailConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...ADMIN_CONFIG,
    office: {
      mail: {
        enabled: true, host: '127.0.0.1', port: 0, tenant: 'dev', domains: [DOMAIN, '*.city.gov.cn'],
        users: [{ username: RELAY.user, password: RELAY.pass }], allowedClients: ['127.0.0.1', '::ffff:127.0.0.1'],
        allowInsecureAuth: true, maxMessageBytes: 64 * 1024, ...extra,
      },
    },
  };
}

type Delivery = { ok: true; response: string } | { ok: false; code: number | undefined; message: string };

async function deliver(port: number, mail: SendMailOptions, opts: Record<string, unknown> = {}): Promise<Delivery> {
  const tr = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, ...opts } as never);
  try {
    const info = await tr.sendMail(mail);
    return { ok: true, response: String(info.response) };
  } catch (e) {
    const err = e as { responseCode?: number; message: string };
    return { ok: false, code: err.responseCode, message: err.message };
  } finally {
    tr.close();
  }
}

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const textsTo = (gw: TestGateway, mobile: string): string[] =>
  gw.simulator.recentSubmits().filter((s) => s.destinationAddr.endsWith(mobile)).map((s) => s.text);

async function counter(gw: TestGateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = gw.gateway.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const got = await m.get();
  return got.values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((a, v) => a + v.value, 0);
}

async function makePeople(gw: TestGateway, people: { id: string; n: number; email?: string; mailAlerts?: boolean }[]): Promise<void> {
  const admin = adminClient(gw);
  await admin.must('POST', '/v1/admin/units', { id: 'office', name: '市政府办公厅' });
  for (const p of people) {
    await admin.must('POST', '/v1/admin/people', {
      id: p.id, name: p.id, mobile: mobileAt(p.n), unit: 'office',
      ...(p.email !== undefined ? { email: p.email } : {}), ...(p.mailAlerts !== undefined ? { mailAlerts: p.mailAlerts } : {}),
    });
  }
}

t.test('new-mail alerts through the gateway', async (t) => {
  const gw = await startTestGateway(t, { config: mailConfig({ digestSeconds: 8 }) });
  const port = gw.gateway.mail?.port as number;
  t.ok(port > 0, 'the SMTP listener is up');
  await makePeople(gw, [
    { id: 'alice', n: 1, email: `Alice@${DOMAIN}`, mailAlerts: true },
    { id: 'bob', n: 2, email: `bob@${DOMAIN}`, mailAlerts: true },
    { id: 'carol', n: 3, email: `carol@${DOMAIN}`, mailAlerts: false },
    { id: 'dave', n: 4, email: `dave@${DOMAIN}`, mailAlerts: true },
    { id: 'erin', n: 5, email: `erin@${DOMAIN}`, mailAlerts: true },
    { id: 'frank', n: 6, email: `frank@${DOMAIN}`, mailAlerts: true },
  ]);
  const accepted = () => counter(gw, 'smsgw_accepted_messages_total');

  await t.test('one mail to two opted-in people: exact alert texts, one SMS each', async (t) => {
    const r = await deliver(port, {
      from: `"张三" <zhangsan@${DOMAIN}>`, to: [`alice@${DOMAIN}`, `BOB@${DOMAIN}`], subject: '关于召开全市防汛工作会议的通知',
      text: '请于明日9:00参会。', messageId: '<m1@office.gov.cn>',
    });
    t.ok(r.ok, `250: ${JSON.stringify(r)}`);
    const a = await waitFor('alice alert', () => textsTo(gw, mobileAt(1)).length >= 1 && textsTo(gw, mobileAt(1)));
    const b = await waitFor('bob alert', () => textsTo(gw, mobileAt(2)).length >= 1 && textsTo(gw, mobileAt(2)));
    t.same(a, ['新邮件：来自 张三，主题 关于召开全市防汛工作会议的通知']);
    t.same(b, ['新邮件：来自 张三，主题 关于召开全市防汛工作会议的通知']);
  });

  await t.test('the same Message-ID again (another copy of the mail) sends nothing', async (t) => {
    const before = await accepted();
    const dups = await counter(gw, 'smsgw_mail_alerts_total', { kind: 'duplicate' });
    const r = await deliver(port, { from: `zhangsan@${DOMAIN}`, to: `alice@${DOMAIN}`, subject: 'copy', text: 'x', messageId: '<m1@office.gov.cn>' });
    t.ok(r.ok);
    t.match((r as { response: string }).response, /already alerted/);
    // The 250 comes after anything the mail causes is durable: no message was accepted for it.
    t.equal(await accepted(), before, 'no SMS accepted');
    t.equal(await counter(gw, 'smsgw_mail_alerts_total', { kind: 'duplicate' }), dups + 1);
  });

  await t.test('an opted-out person and an address nobody has get nothing (the mail is still accepted)', async (t) => {
    const before = await accepted();
    const r = await deliver(port, { from: `zhangsan@${DOMAIN}`, to: `carol@${DOMAIN}`, cc: 'someone@elsewhere.cn', subject: 'hi', text: 'x', envelope: { from: `zhangsan@${DOMAIN}`, to: [`carol@${DOMAIN}`] } });
    t.ok(r.ok);
    t.match((r as { response: string }).response, /no alert/);
    t.equal(await accepted(), before);
  });

  await t.test('refusals: unknown sender domain, unknown recipient, bad AUTH, no AUTH from another client, too large', async (t) => {
    const before = await accepted();
    const foreign = await deliver(port, { from: 'spam@evil.example', to: `alice@${DOMAIN}`, subject: 's', text: 'x' });
    t.match(foreign, { ok: false, code: 550 }, 'a sender domain not in office.mail.domains');
    const sub = await deliver(port, { from: `x@health.city.gov.cn`, to: `nobody@elsewhere.example`, subject: 's', text: 'x' });
    t.match(sub, { ok: false, code: 550 }, 'envelope mode: a recipient in a domain not served');
    const unknown = await deliver(port, { from: `x@health.city.gov.cn`, to: `nobody@${DOMAIN}`, subject: 's', text: 'x' });
    t.match(unknown, { ok: true, response: /no alert; 1 recipient without an alert/ }, 'envelope mode: a served domain\'s address nobody has is accepted (no per-RCPT oracle)');
    const badAuth = await deliver(port, { from: `zhangsan@${DOMAIN}`, to: `alice@${DOMAIN}`, subject: 's', text: 'x' }, { auth: { user: RELAY.user, pass: 'wrong-password' } });
    t.match(badAuth, { ok: false, code: 535 }, 'wrong password');
    // 127.0.0.2 is loopback too, but not in allowedClients: it must authenticate.
    const noAuth = await deliver(port, { from: `zhangsan@${DOMAIN}`, to: `alice@${DOMAIN}`, subject: 's', text: 'x' }, { localAddress: '127.0.0.2' });
    t.match(noAuth, { ok: false, code: 530 }, 'a client outside allowedClients without AUTH');
    const big = await deliver(port, { from: `zhangsan@${DOMAIN}`, to: `alice@${DOMAIN}`, subject: 'big', text: 'x'.repeat(100 * 1024), messageId: '<big@office.gov.cn>' });
    t.match(big, { ok: false, code: 552 }, 'over maxMessageBytes');
    t.equal(await accepted(), before, 'none of them caused an SMS');
    const withAuth = await deliver(port, { from: `"李四" <lisi@${DOMAIN}>`, to: `erin@${DOMAIN}`, subject: '经认证', text: 'x', messageId: '<auth@office.gov.cn>' }, { localAddress: '127.0.0.2', auth: { user: RELAY.user, pass: RELAY.pass } });
    t.ok(withAuth.ok, 'the same client with the right AUTH is accepted');
    t.same(await waitFor('erin alert', () => textsTo(gw, mobileAt(5)).length >= 1 && textsTo(gw, mobileAt(5))), ['新邮件：来自 李四，主题 经认证']);
    t.ok(await counter(gw, 'smsgw_mail_messages_total', { outcome: 'sender_refused' }) >= 1);
    t.ok(await counter(gw, 'smsgw_mail_messages_total', { outcome: 'too_large' }) >= 1);
  });

  await t.test('a long subject is cut to 40 characters with …; no display name → the address', async (t) => {
    const r = await deliver(port, { from: `wangwu@${DOMAIN}`, to: `frank@${DOMAIN}`, subject: `关于${'防汛'.repeat(30)}的通知`, text: 'x' });
    t.ok(r.ok);
    // 71 characters: two UCS-2 parts at the simulator.
    const parts = await waitFor('frank alert', () => textsTo(gw, mobileAt(6)).length >= 2 && textsTo(gw, mobileAt(6)));
    t.equal(parts.join(''), `新邮件：来自 wangwu@${DOMAIN}，主题 关于${'防汛'.repeat(18)}防…`);
  });

  await t.test('a flood of 20 mails to one person: the first alert, then exactly one digest with the right count', async (t) => {
    const sentBefore = await counter(gw, 'smsgw_mail_alerts_total', { kind: 'digest' });
    for (let i = 1; i <= 20; i++) {
      const r = await deliver(port, { from: `"发件人${i}" <s${i}@${DOMAIN}>`, to: `dave@${DOMAIN}`, subject: `第${i}封`, text: 'x', messageId: `<flood-${i}@office.gov.cn>` });
      t.ok(r.ok, `mail ${i} accepted`);
    }
    const texts = await waitFor('the digest', () => textsTo(gw, mobileAt(4)).length >= 2 && textsTo(gw, mobileAt(4)), 60_000);
    t.same(texts, ['新邮件：来自 发件人1，主题 第1封', '您有19封新邮件，最新：来自 发件人20，主题 第20封']);
    t.equal(await counter(gw, 'smsgw_mail_alerts_total', { kind: 'digest' }), sentBefore + 1, 'one digest');
    t.equal(await counter(gw, 'smsgw_mail_pending_digests'), 0, 'nothing left pending');
  });
});

t.test('journaling: recipients from To/Cc; STARTTLS and AUTH', async (t) => {
  const { keyFile, certFile } = selfSignedCertificate(t, 'smsgw-mail-tls-');
  const gw = await startTestGateway(t, { config: mailConfig({ recipientsFrom: 'headers', allowedClients: [], allowInsecureAuth: false, tls: { keyFile, certFile } }) });
  const port = gw.gateway.mail?.port as number;
  await makePeople(gw, [
    { id: 'gina', n: 7, email: `gina@${DOMAIN}`, mailAlerts: true },
    { id: 'hank', n: 8, email: `hank@${DOMAIN}`, mailAlerts: true },
  ]);
  const tlsOpts = { requireTLS: true, ignoreTLS: false, tls: { ca: readFileSync(certFile), servername: 'localhost' } };
  const journal = await deliver(port, {
    from: `"赵六" <zhaoliu@${DOMAIN}>`, to: `gina@${DOMAIN}`, cc: `"Hank" <hank@${DOMAIN}>, outsider@elsewhere.cn`, subject: '日志模式', text: 'x',
    envelope: { from: `zhaoliu@${DOMAIN}`, to: ['journal@mail.local'] },
  }, { ...tlsOpts, auth: RELAY });
  t.ok(journal.ok, `journal mailbox accepted over STARTTLS with AUTH: ${JSON.stringify(journal)}`);
  t.same(await waitFor('gina', () => textsTo(gw, mobileAt(7)).length >= 1 && textsTo(gw, mobileAt(7))), ['新邮件：来自 赵六，主题 日志模式']);
  t.same(await waitFor('hank', () => textsTo(gw, mobileAt(8)).length >= 1 && textsTo(gw, mobileAt(8))), ['新邮件：来自 赵六，主题 日志模式']);
  const noAuth = await deliver(port, { from: `zhaoliu@${DOMAIN}`, to: `gina@${DOMAIN}`, subject: 's', text: 'x' }, tlsOpts);
  t.match(noAuth, { ok: false, code: 530 }, 'no allowedClients: AUTH is required');
  const plain = await deliver(port, { from: `zhaoliu@${DOMAIN}`, to: `gina@${DOMAIN}`, subject: 's', text: 'x' }, { auth: RELAY });
  t.equal(plain.ok, false, 'AUTH without STARTTLS is refused (allowInsecureAuth false)');
});

t.test('a pending digest survives a restart and is sent once', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'smsgw-mail-restart-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = { ...mailConfig({ digestSeconds: 3 }), dataDir };
  const gw1 = await startTestGateway(t, { config });
  const port1 = gw1.gateway.mail?.port as number;
  await makePeople(gw1, [{ id: 'ivan', n: 9, email: `ivan@${DOMAIN}`, mailAlerts: true }]);
  t.ok((await deliver(port1, { from: `"甲" <a@${DOMAIN}>`, to: `ivan@${DOMAIN}`, subject: '第一封', text: 'x', messageId: '<r1@office.gov.cn>' })).ok);
  t.ok((await deliver(port1, { from: `"乙" <b@${DOMAIN}>`, to: `ivan@${DOMAIN}`, subject: '第二封', text: 'x', messageId: '<r2@office.gov.cn>' })).ok);
  t.equal(await counter(gw1, 'smsgw_mail_pending_digests'), 1, 'the second mail waits in a digest');
  await gw1.gateway.stop();

  const gw2 = await startTestGateway(t, { config });
  const port2 = gw2.gateway.mail?.port as number;
  const all = () => [...textsTo(gw1, mobileAt(9)), ...textsTo(gw2, mobileAt(9))];
  await waitFor('the digest after the restart', () => all().length >= 2, 60_000);
  // A copy of the second mail after the restart is still a duplicate (the mark is durable).
  const r = await deliver(port2, { from: `b@${DOMAIN}`, to: `ivan@${DOMAIN}`, subject: '第二封', text: 'x', messageId: '<r2@office.gov.cn>' });
  t.match(r, { ok: true, response: /already alerted/ });
  for (let i = 0; i < 200 && (await counter(gw2, 'smsgw_mail_pending_digests')) !== 0; i++) await new Promise((res) => setTimeout(res, 50));
  t.equal(await counter(gw2, 'smsgw_mail_pending_digests'), 0, 'nothing pending: nothing more will be sent');
  t.same(all().sort(), ['新邮件：来自 甲，主题 第一封', '新邮件：来自 乙，主题 第二封'].sort(), 'each once: the alert before, the digest (of one) after');
});

t.test('quiet hours (injected clock): mail inside them is folded into one digest sent when they end', async (t) => {
  const { env, store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'office', name: 'Office' });
  await store.putPerson(ROOT, { id: 'jane', name: 'Jane', mobile: mobileAt(10), unit: 'office', email: `jane@${DOMAIN}`, mailAlerts: true }, 'create');
  await store.putPerson(ROOT, { id: 'kim', name: 'Kim', mobile: mobileAt(11), unit: 'office', email: `kim@${DOMAIN}`, mailAlerts: true }, 'create');
  const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, ...mailConfig({ digestSeconds: 600, quietHours: { start: '22:00', end: '07:00' } }) } });
  // 2026-03-02 23:00 local (UTC+8) = 15:00 UTC.
  let clock = Date.parse('2026-03-02T15:00:00Z');
  const sent: SeenSend[] = [];
  const sends: Sends = {
    principalOf: () => ({ tenant: 'dev', tiers: null, sender: '10690001' }),
    authorize: () => undefined,
    async sendAs(_tenant, items) {
      sent.push(...items.map(seen));
      return items.map((_m, i) => accepted(`x${sent.length}-${i}`));
    },
  };
  const mail = await startMailAlerts({ config, env, directory: store, sends, metrics: createMetrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }), now: () => clock, pollMs: 20 });
  t.teardown(() => mail.stop());
  for (let i = 1; i <= 3; i++) {
    clock += 60_000;
    const r = await deliver(mail.port, { from: `"夜${i}" <n${i}@${DOMAIN}>`, to: [`jane@${DOMAIN}`, ...(i === 2 ? [`kim@${DOMAIN}`] : [])], subject: `夜间${i}`, text: 'x', messageId: `<night-${i}@office.gov.cn>` });
    t.ok(r.ok);
  }
  await new Promise((r) => setTimeout(r, 200));
  t.same(sent, [], 'nothing during quiet hours');
  clock = Date.parse('2026-03-02T22:59:59Z'); // 06:59:59 local
  await new Promise((r) => setTimeout(r, 200));
  t.same(sent, [], 'still quiet a second before the end');
  clock = Date.parse('2026-03-02T23:00:00Z'); // 07:00 local
  await waitFor('the digests', () => sent.length >= 2);
  const byNumber = new Map(sent.map((m) => [m.to[0], m]));
  t.equal(sent.length, 2, 'one SMS per person');
  t.match(byNumber.get(`86${mobileAt(10)}`), { text: '您有3封新邮件，最新：来自 夜3，主题 夜间3', tier: 'routine', origin: 'directory', idempotencyKey: /^mail:d:jane:/ });
  t.match(byNumber.get(`86${mobileAt(11)}`), { text: '新邮件：来自 夜2，主题 夜间2', idempotencyKey: /^mail:d:kim:/ }, 'a digest of one reads as an alert');
  // After the digest the rate window runs from it: the next mail waits for the window.
  clock += 1000;
  t.ok((await deliver(mail.port, { from: `m@${DOMAIN}`, to: `jane@${DOMAIN}`, subject: 'morning', text: 'x' })).ok);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(sent.length, 2, 'inside the window: held');
  clock += 600_000;
  await waitFor('the window digest', () => sent.length >= 3);
  t.match(sent[2], { to: [`86${mobileAt(10)}`], text: `新邮件：来自 m@${DOMAIN}，主题 morning` });
});

t.test('refusals by the intake (fake sender): for now → retried from a durable digest; for good → counted; pending bound → 451', async (t) => {
  const { env, store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'office', name: 'Office' });
  for (const [i, id] of ['lily', 'mike', 'nina', 'omar'].entries()) {
    await store.putPerson(ROOT, { id, name: id, mobile: mobileAt(20 + i), unit: 'office', email: `${id}@${DOMAIN}`, mailAlerts: true }, 'create');
  }
  const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, ...mailConfig({ digestSeconds: 600 }) } });
  let clock = Date.parse('2026-03-02T03:00:00Z');
  const sent: SeenSend[] = [];
  let refuseNext: 'OVERLOADED' | 'FORBIDDEN' | undefined;
  const sends: Sends = {
    principalOf: () => ({ tenant: 'dev', tiers: null, sender: '10690001' }),
    authorize: () => undefined,
    async sendAs(_tenant, items) {
      const refuse = refuseNext;
      refuseNext = undefined;
      if (refuse !== undefined) return items.map(() => ({ ok: false as const, error: new GatewayError(refuse) }));
      sent.push(...items.map(seen));
      return items.map((_m, i) => accepted(`x${sent.length}-${i}`));
    },
  };
  const metrics = createMetrics({ defaultMetrics: false });
  const mail = await startMailAlerts({ config, env, directory: store, sends, metrics, logger: pino({ level: 'silent' }), now: () => clock, pollMs: 20, maxPendingDigests: 1 });
  t.teardown(() => mail.stop());
  const value = async (name: string, labels: Record<string, string>): Promise<number> =>
    ((await metrics.registry.getSingleMetric(name)?.get())?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((a, v) => a + v.value, 0);

  refuseNext = 'OVERLOADED';
  const r1 = await deliver(mail.port, { from: `"甲" <a@${DOMAIN}>`, to: `lily@${DOMAIN}`, subject: '忙时', text: 'x', messageId: '<busy@office.gov.cn>' });
  t.match(r1, { ok: true, response: /0 alerted, 1 in a digest/ }, 'accepted: it waits in a durable digest');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(sent.length, 0, 'not before its time');
  clock += 1000;
  await waitFor('the retry', () => sent.length >= 1);
  t.match(sent[0], { to: [`86${mobileAt(20)}`], text: '新邮件：来自 甲，主题 忙时', idempotencyKey: /^mail:d:lily:/ });
  t.equal(await value('smsgw_mail_alerts_total', { kind: 'retried' }), 1);

  refuseNext = 'FORBIDDEN';
  const r2 = await deliver(mail.port, { from: `b@${DOMAIN}`, to: `mike@${DOMAIN}`, subject: 'no', text: 'x', messageId: '<forbidden@office.gov.cn>' });
  t.ok(r2.ok, 'a refusal for good does not make the mail server retry');
  t.equal(await value('smsgw_mail_alerts_total', { kind: 'failed' }), 1);
  t.equal(sent.length, 1);

  // nina: an alert, then a second mail starts the one digest the bound allows; omar's would be a second.
  t.ok((await deliver(mail.port, { from: `c@${DOMAIN}`, to: [`nina@${DOMAIN}`, `omar@${DOMAIN}`], subject: '1', text: 'x', messageId: '<b1@office.gov.cn>' })).ok);
  t.ok((await deliver(mail.port, { from: `c@${DOMAIN}`, to: `nina@${DOMAIN}`, subject: '2', text: 'x', messageId: '<b2@office.gov.cn>' })).ok);
  const r3 = await deliver(mail.port, { from: `c@${DOMAIN}`, to: [`nina@${DOMAIN}`, `omar@${DOMAIN}`], subject: '3', text: 'x', messageId: '<b3@office.gov.cn>' });
  t.match(r3, { ok: false, code: 451 }, 'omar would start a second digest: try again later');
  t.equal(await value('smsgw_mail_messages_total', { outcome: 'deferred' }), 1);
  const r4 = await deliver(mail.port, { from: `c@${DOMAIN}`, to: [`nina@${DOMAIN}`, `omar@${DOMAIN}`], subject: '3', text: 'x', messageId: '<b3@office.gov.cn>' });
  t.match(r4, { ok: false, code: 451 }, 'the retry: nina is a duplicate now, omar still over the bound');
  t.equal(await value('smsgw_mail_alerts_total', { kind: 'duplicate' }), 1, 'nina was folded once');
});

t.test('no directory oracle: RCPT of a served domain accepted alike; unknown, opted-out and foreign people counted after DATA, never named', async (t) => {
  const { env, store } = tempDirectory(t);
  await store.createUnit(ROOT, { id: 'office', name: 'Office' });
  await store.createUnit(ROOT, { id: 'office-sub', name: 'Office sub', parent: 'office' });
  await store.createUnit(ROOT, { id: 'elsewhere', name: 'Another bureau' });
  const people: [string, string, boolean][] = [['pia', 'office', true], ['quin', 'office-sub', true], ['rex', 'office', false], ['sam', 'elsewhere', true]];
  for (const [i, [id, unit, on]] of people.entries()) {
    await store.putPerson(ROOT, { id, name: id, mobile: mobileAt(40 + i), unit, email: `${id}@${DOMAIN}`, mailAlerts: on }, 'create');
  }
  // The alerts' tenant is the unit `office`: sam (of another bureau) is outside it.
  const config = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, ...mailConfig({ tenant: 'office', digestSeconds: 600 }) } });
  const sent: SeenSend[] = [];
  const sends: Sends = {
    principalOf: () => ({ tenant: 'office', tiers: null, sender: '10690001' }),
    authorize: () => undefined,
    async sendAs(_tenant, items) {
      sent.push(...items.map(seen));
      return items.map((_m, i) => accepted(`o${sent.length}-${i}`));
    },
  };
  const metrics = createMetrics({ defaultMetrics: false });
  const mail = await startMailAlerts({ config, env, directory: store, sends, metrics, logger: pino({ level: 'silent' }), pollMs: 20 });
  t.teardown(() => mail.stop());

  // One transaction per kind of address, all in the served domain: the SMTP dialogue is the same.
  const kinds = { unknown: `nobody@${DOMAIN}`, optedOut: `rex@${DOMAIN}`, foreign: `sam@${DOMAIN}` };
  const replies: Record<string, string> = {};
  for (const [kind, address] of Object.entries(kinds)) {
    const tr = nodemailer.createTransport({ host: '127.0.0.1', port: mail.port, secure: false, ignoreTLS: true } as never);
    try {
      const info = await tr.sendMail({ from: `a@${DOMAIN}`, to: address, subject: kind, text: 'x', messageId: `<${kind}@office.gov.cn>` });
      t.same(info.rejected, [], `${kind}: RCPT TO accepted`);
      t.same(info.accepted, [address], `${kind}: RCPT TO accepted`);
      replies[kind] = String(info.response);
    } finally {
      tr.close();
    }
  }
  t.same(new Set(Object.values(replies)).size, 1, `the DATA reply is the same for an unknown address, an opted-out person and a person outside the tenant: ${JSON.stringify(replies)}`);
  t.match(replies.unknown, /^250 OK: no alert; 1 recipient without an alert/);
  t.equal(sent.length, 0, 'none of them alerted');

  // Mixed: two alerted (the tenant's subtree), three counted as one number; nobody is named.
  const mixed = await deliver(mail.port, { from: `a@${DOMAIN}`, to: [`pia@${DOMAIN}`, `quin@${DOMAIN}`, ...Object.values(kinds)], subject: 'mixed', text: 'x', messageId: '<mixed@office.gov.cn>' });
  t.match(mixed, { ok: true, response: /2 alerted, 0 in a digest; 3 recipients without an alert/ });
  for (const who of ['nobody', 'rex', 'sam']) t.notMatch((mixed as { response: string }).response, who, `the reply does not name ${who}`);
  t.same(sent.map((s) => s.to).flat().sort(), [`86${mobileAt(40)}`, `86${mobileAt(41)}`].sort(), 'pia and quin (in the subtree) alerted; sam (another bureau) not');
});
