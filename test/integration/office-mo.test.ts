/**
 * Two-way SMS through the simulator: long MO re-assembled, TD opt-out,
 * forwarding to the owning unit's callback URL and live WebSocket, and
 * unmatched MO kept.
 */
import t from 'tap';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import type { ErrorBody } from '../support/api-types.js';
import { TEST_KEY } from '../support/gateway.js';
import { officeFixture, phone, eventually, receivedTexts, OFFICE_SENDER, SIGNATURE } from '../support/office.js';

/** GET /v1/mo: the inbox entries, as read here. */
interface MoList {
  readonly items: readonly { readonly text: string; readonly from: string; readonly parts: number; readonly detail: string; readonly forwardAttempts: number }[];
}
/** PATCH /v1/admin/units/{id}: the secret's state, never the secret. */
interface UnitView {
  readonly callbackSecret: unknown;
}

const LONG = '关于明天上午的防汛会议，我单位由分管副局长带队参加，另有两名科室负责同志随行，请安排座位并告知停车位置。谢谢！'.repeat(2);

t.test('a long MO in parts is re-assembled once, whatever the order and repeats', async (t) => {
  const { gw, call } = await officeFixture(t, 1);
  // Parts out of order, part 2 delivered twice (a redelivery).
  t.ok(await gw.simulator.injectMoParts({ source: phone(0), destination: OFFICE_SENDER, text: LONG, parts: 3, ref: 42, order: [3, 1, 2, 2] }));
  // A second long message from the same phone with another reference, in order.
  t.ok(await gw.simulator.injectMoParts({ source: phone(0), destination: OFFICE_SENDER, text: `第二条：${LONG}`, parts: 4, ref: 43 }));
  const list = await eventually(async () => {
    const r = await call<MoList>('GET', '/v1/mo?state=unmatched');
    return r.json.items.length === 2 ? r.json.items : undefined;
  }, 'two re-assembled MO');
  t.same(list.map((m) => m.text).sort(), [LONG, `第二条：${LONG}`].sort(), 'texts whole and exact');
  t.same(list.map((m) => m.parts).sort(), [3, 4]);
  t.ok(list.every((m) => m.from === phone(0)));
});

t.test('parts whose rest never comes are kept as a fragment after the timeout', async (t) => {
  const { gw, call } = await officeFixture(t, 1, { config: { office: { mo: { partTimeoutMs: 1000 } } } });
  t.ok(await gw.simulator.injectMoParts({ source: phone(0), destination: OFFICE_SENDER, text: LONG, parts: 3, ref: 7, order: [1, 3] }));
  const frag = await eventually(async () => {
    const r = await call<MoList>('GET', '/v1/mo?state=unmatched');
    return r.json.items[0];
  }, 'the fragment', 10_000);
  t.equal(frag.parts, 2);
  t.match(frag.detail, /incomplete long message: parts 1,3 of 3/);
});

t.test('TD by SMS blocks the number for the unit; later sends to it are not delivered', async (t) => {
  const { gw, admin, key, call } = await officeFixture(t, 2);
  t.ok(await gw.simulator.injectMo({ source: phone(1), destination: OFFICE_SENDER, text: 'TD' }));
  const blocks = await admin.must<{ items: unknown[] }>('GET', '/v1/admin/blocks?scope=office');
  t.match(blocks.items, [{ scope: 'office', number: phone(1) }]);
  const handled = await call<MoList>('GET', '/v1/mo?state=handled');
  t.match(handled.json.items, [{ route: 'opt-out', ref: 'office' }]);
  const r = await admin.sendAs<{ id: string }>(key, { to: [phone(0), phone(1)], text: '通知：明日停水。' });
  t.equal(r.status, 202, JSON.stringify(r.json));
  const done = await admin.waitCompleteAs(key, r.json.id);
  t.equal(done.summary.delivered, 1);
  t.match(done.items.find((i) => i.to === phone(1)), { state: 'rejected', error: /opted out/ });
  // The one SMS the opted-out phone got is the confirmation (on the emergency tier, which passes the block).
  const confirmation = await eventually(() => (receivedTexts(gw.simulator).get(phone(1)) ?? [])[0], 'the TD confirmation');
  t.equal(confirmation, `${SIGNATURE}退订成功，您将不再收到本单位的通知短信；紧急预警信息仍会发送。`);
  t.equal(gw.simulator.stats().submitsByDestination.get(phone(1)), 1, 'nothing else reached the opted-out phone');
  t.match((await call<MoList>('GET', '/v1/mo?state=handled')).json.items, [{ route: 'opt-out', detail: /confirmation \w+/ }]);
  // TD stops routine traffic, not warnings: an emergency message reaches the phone.
  const warning = await admin.sendAs<{ id: string }>(key, { to: [phone(1)], text: '暴雨红色预警：请避免外出。', tier: 'emergency' });
  t.equal(warning.status, 202, JSON.stringify(warning.json));
  t.equal((await admin.waitCompleteAs(key, warning.json.id)).summary.delivered, 1, 'the emergency tier ignores the opt-out');
  // "TD123" is not an opt-out (and not a reply): kept as unmatched.
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: OFFICE_SENDER, text: 'TD123' }));
  const un = await call<MoList>('GET', '/v1/mo?state=unmatched');
  t.match(un.json.items, [{ text: 'TD123' }]);
});

t.test('unmatched MO is forwarded to the unit\'s callback URL, retried, and pushed to live subscribers', async (t) => {
  const { gw, key, call, admin } = await officeFixture(t, 1, { config: { office: { mo: { callbackAttempts: 3 } }, callbacks: { allow: ['127.0.0.1/32'], backoffMs: 50 } } });
  const received: unknown[] = [];
  const signatures: Array<{ timestamp: string; signature: string; body: string }> = [];
  let failNext = 1;
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (failNext > 0) {
        failNext--;
        res.writeHead(503).end();
        return;
      }
      received.push(JSON.parse(body));
      signatures.push({ timestamp: String(req.headers['x-smsgw-timestamp']), signature: String(req.headers['x-smsgw-signature']), body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mo`;
  const userinfo = await call<ErrorBody>('PUT', '/v1/mo/subscription', { callbackUrl: url.replace('http://', 'http://user:pw@') });
  t.equal(userinfo.status, 422, 'user information in the URL is refused at the door');
  t.match(userinfo.json.error, { code: 'VALIDATION', details: [{ field: '/callbackUrl' }] });
  t.notMatch(JSON.stringify(userinfo.json), /pw/, 'and the password is not echoed');
  // Nothing leaves unsigned: without a secret the subscription is refused.
  const unsigned = await call<ErrorBody>('PUT', '/v1/mo/subscription', { callbackUrl: url });
  t.equal(unsigned.status, 422, 'no signing secret yet: refused');
  t.match(unsigned.json.error, { code: 'CALLBACK_SECRET_REQUIRED', details: [{ field: '/callbackUrl' }] });
  t.equal((await call('GET', '/v1/mo/subscription')).status, 404, 'and nothing was stored');
  // The unit's signing secret, set through the admin API (rotation keeps the old one as previous).
  const secret = 'mo-secret-0123456789abcdef0123456789';
  await admin.must('PATCH', '/v1/admin/units/office', { callbackSecret: 'first-secret-0123456789abcdef012345' });
  const unit = await admin.must<UnitView>('PATCH', '/v1/admin/units/office', { callbackSecret: secret });
  t.match(unit.callbackSecret, { set: true, previous: true, source: 'admin' });
  t.notMatch(JSON.stringify(unit), /secret-0123/, 'secrets are never shown');
  t.match((await admin.must<UnitView>('PATCH', '/v1/admin/units/office', { callbackSecretPrevious: null })).callbackSecret, { set: true, previous: false });
  // Audited: what happened to the secret, never the secret.
  const audit = await admin.must<{ items: { detail: { ops: string[] } }[] }>('GET', '/v1/admin/audit?action=unit.callbackSecret&targetType=unit&targetId=office');
  t.same(audit.items.map((e: { detail: { ops: string[] } }) => e.detail.ops), [['endRotation'], ['rotate'], ['set']], 'set, rotated, rotation ended (newest first)');
  t.match(audit.items[1], { action: 'unit.callbackSecret', before: { set: true, previous: false }, after: { set: true, previous: true } });
  t.notMatch(JSON.stringify(audit), /secret-0123/, 'the audit log never holds the secret');
  t.equal((await call('PUT', '/v1/mo/subscription', { callbackUrl: url })).status, 200);
  t.match((await call('GET', '/v1/mo/subscription')).json, { callbackUrl: url });

  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/mo/stream`, { headers: { authorization: `Bearer ${key}` } });
  const frames: { text: string }[] = [];
  ws.on('message', (d) => frames.push(JSON.parse((d as Buffer).toString('utf8')) as { text: string })); // ws hands text frames over as a Buffer (binaryType nodebuffer)
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  t.teardown(() => ws.close());
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: OFFICE_SENDER, text: '请问停车场在哪里？' }));
  await eventually(() => (received.length === 1 ? true : undefined), 'the callback');
  t.match(received[0], { from: phone(0), to: OFFICE_SENDER, text: '请问停车场在哪里？' });
  const sig = signatures[0]!;
  t.match(sig.timestamp, /^[0-9]{10}$/);
  t.equal(sig.signature, createHmac('sha256', secret).update(`${sig.timestamp}.${sig.body}`).digest('hex'), 'signed with the unit secret');
  const fwd = await eventually(async () => {
    const r = await call<MoList>('GET', '/v1/mo?state=forwarded');
    return r.json.items[0];
  }, 'forwarded state');
  t.equal(fwd.forwardAttempts, 2, 'the first attempt failed (503), the second was taken');
  await eventually(() => (frames.length === 1 ? true : undefined), 'the live frame');
  t.match(frames[0], { text: '请问停车场在哪里？', from: phone(0) });

  // A callback that keeps failing: bounded attempts, then a final, visible state.
  failNext = 100;
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: OFFICE_SENDER, text: '第二个问题' }));
  const failed = await eventually(async () => {
    const r = await call<MoList>('GET', '/v1/mo?state=forward-failed');
    return r.json.items[0];
  }, 'forward-failed', 20_000);
  t.equal(failed.forwardAttempts, 3);
  t.match(failed.detail, /HTTP 503/);
  t.equal((await call('DELETE', '/v1/mo/subscription')).status, 200);
  t.equal((await call('GET', '/v1/mo/subscription')).status, 404);
});

t.test('the MO stream refuses a request without a valid key', async (t) => {
  const { gw } = await officeFixture(t, 0);
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/mo/stream`, { headers: { authorization: 'Bearer nope-nope-nope' } });
  const answer = await new Promise<{ status: number; text?: string; auth?: string }>((resolve) => {
    ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0, text: res.statusMessage, auth: res.headers['www-authenticate'] }));
    ws.once('open', () => resolve({ status: 101 }));
    ws.once('error', () => resolve({ status: -1 }));
  });
  t.equal(answer.status, 401);
  t.equal(answer.text, 'Unauthorized');
  t.equal(answer.auth, 'Bearer', 'the 401 names its scheme, as the HTTP routes do');
});

t.test('the MO stream follows its key: revoked, expired, unit disabled or deleted → closed with a documented code', async (t) => {
  const { gw, admin, key } = await officeFixture(t, 0);
  const open = async (k: string): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }> }> => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/mo/stream`, { headers: { authorization: `Bearer ${k}` } });
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    t.teardown(() => ws.terminate());
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return { ws, closed };
  };
  // Bounded wait for the close (no timing assertion: the sweep runs every 250 ms).
  const within = <T>(p: Promise<T>, what: string): Promise<T> => Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not closed in 10 s`)), 10_000).unref())]);

  const revoked = await open(key);
  const keyId = (await admin.must<{ items: { id: string }[] }>('GET', '/v1/admin/units/office/keys')).items[0]!.id;
  await admin.must('DELETE', `/v1/admin/keys/${keyId}`);
  t.same(await within(revoked.closed, 'revoked'), { code: 4401, reason: 'KEY_REVOKED' });

  const second = (await admin.must<{ key: string }>('POST', '/v1/admin/units/office/keys', {})).key;
  const disabled = await open(second);
  await admin.must('PATCH', '/v1/admin/units/city', { disabled: true });
  t.same(await within(disabled.closed, 'parent disabled'), { code: 4403, reason: 'unit disabled' });
  // A disabled unit's key may not open one either.
  const again = await open(second);
  t.same(await within(again.closed, 'opened while disabled'), { code: 4403, reason: 'unit disabled' });
  await admin.must('PATCH', '/v1/admin/units/city', { disabled: false });

  const expiring = (await admin.must<{ key: string }>('POST', '/v1/admin/units/office/keys', { expiresAt: new Date(Date.now() + 3000).toISOString() })).key;
  const expired = await open(expiring);
  t.same(await within(expired.closed, 'expired'), { code: 4401, reason: 'KEY_EXPIRED' });

  // A bootstrap key (config) stays open through all of it.
  const boot = await open(TEST_KEY);
  const live = await open(second);
  t.equal(live.ws.readyState, WebSocket.OPEN);
  boot.ws.close();
  t.equal((await within(boot.closed, 'client close')).code, 1005);
});

t.test('MO forwards follow the callback target rules: loopback refused without callbacks.allow, nothing sent', async (t) => {
  const { gw, call, admin } = await officeFixture(t, 1, { config: { office: { mo: { callbackAttempts: 2 } } } });
  await admin.must('PATCH', '/v1/admin/units/office', { callbackSecret: 'mo-secret-0123456789abcdef0123456789' });
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.writeHead(204).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  t.equal((await call('PUT', '/v1/mo/subscription', { callbackUrl: `http://[::ffff:127.0.0.1]:${port}/mo` })).status, 200);
  t.ok(await gw.simulator.injectMo({ source: phone(0), destination: OFFICE_SENDER, text: '请问几点开会？' }));
  const failed = await eventually(async () => {
    const r = await call<MoList>('GET', '/v1/mo?state=forward-failed');
    return r.json.items[0];
  }, 'forward-failed', 20_000);
  t.match(failed, { forwardAttempts: 2, detail: /^refused target/ });
  t.notMatch(failed.detail, /127|::ffff|port/i, 'nothing about the address');
  t.equal(hits, 0, 'the loopback receiver saw nothing');
});
