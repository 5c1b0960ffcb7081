/**
 * HTTP → queue → SMSC simulator → DLR → status API, with real servers over
 * loopback: uWebSockets.js, LMDB in a temp dir, the simulator on a free port.
 */
import t from 'tap';
import { startTestGateway, numberAt, TEST_KEY } from '../support/gateway.js';
import type { ErrorBody, RecipientView, SegmentView } from '../support/api-types.js';

/** One page of a message's recipients. */
interface Page { readonly items: readonly unknown[]; readonly next?: number }
interface Accepted { readonly id: string; readonly recipients: number; readonly [field: string]: unknown }
/** A recipient read after completion: its segments are listed. */
type Delivered = RecipientView & { readonly segments: readonly [SegmentView, ...SegmentView[]] };
interface Refusal { readonly error: { readonly code: string; readonly details: readonly [{ readonly field: string }, ...{ readonly field: string }[]] } }
/** POST /v1/messages/batch with four items, the first and third valid. */
interface BatchReply { readonly accepted: number; readonly rejected: number; readonly results: readonly [{ readonly id: string }, unknown, { readonly id: string }, unknown] }

const LONG_CHINESE =
  '关于召开全市防汛工作紧急会议的通知：各区、各部门：为切实做好今年汛期防汛抗洪工作，经市政府研究，定于明日上午九时在市政府三号会议室召开全市防汛工作紧急会议。' +
  '请各单位主要负责同志准时参加，并提前十分钟签到。会议期间请将手机调至静音状态。如有特殊情况不能参会，请于今日下午五时前向市政府办公厅书面请假。联系电话：一二三四五六七。';

t.test('a single message reaches delivered, with its operator id in the status API', async (t) => {
  const gw = await startTestGateway(t);
  const r = await gw.send<Accepted>({ to: ['13800138000'], text: 'Meeting at 9:00 in room 3' });
  t.equal(r.status, 202);
  t.match(r.json, { recipients: 1, segments: 1, totalSegments: 1, encoding: 'gsm7', tier: 'routine', status: 'accepted' });
  const done = await gw.waitComplete(r.json.id);
  t.equal(done.summary.delivered, 1);
  const item = done.items[0] as Delivered;
  t.equal(item.to, '8613800138000', 'stored normalised');
  t.equal(item.state, 'delivered');
  t.equal(item.segments.length, 1);
  t.match(item.segments[0], { state: 'delivered', operatorMessageId: /^\d+$/ });
  const seen = gw.simulator.recentSubmits().find((s) => s.destinationAddr === '8613800138000');
  t.ok(seen, 'the simulator saw the submit');
  t.equal(seen?.dataCoding, 0, 'GSM text is sent with data_coding 0');
  t.equal(seen?.esmClass, 0, 'single part: no UDH');
  t.equal(seen?.text, 'Meeting at 9:00 in room 3');
  t.equal(seen?.registeredDelivery, 1);
});

t.test('a long Chinese message goes as UCS-2 parts with a concatenation UDH; delivered only when every part is', async (t) => {
  const gw = await startTestGateway(t);
  t.ok(LONG_CHINESE.length > 134 && LONG_CHINESE.length <= 201, `three parts (${LONG_CHINESE.length} chars)`);
  const r = await gw.send<Accepted>({ to: ['+86 139 0013 9000'], text: LONG_CHINESE });
  t.equal(r.status, 202);
  t.match(r.json, { segments: 3, encoding: 'ucs2' });
  const done = await gw.waitComplete(r.json.id);
  const item = done.items[0] as Delivered;
  t.equal(item.state, 'delivered');
  t.equal(item.segments.length, 3);
  t.ok(item.segments.every((s) => s.state === 'delivered' && s.operatorMessageId), 'each part has its own receipt');
  const parts = gw.simulator.recentSubmits().filter((s) => s.destinationAddr === '8613900139000');
  t.equal(parts.length, 3);
  const refs = new Set<number>();
  parts.forEach((p) => {
    t.equal(p.dataCoding, 8, 'UCS-2');
    t.equal(p.esmClass & 0x40, 0x40, 'UDHI set');
    const udh = [...p.shortMessage.subarray(0, 6)];
    t.same([udh[0], udh[1], udh[2], udh[4]], [5, 0, 3, 3], 'UDH 05 00 03 ref 03 seq');
    refs.add(udh[3] as number);
    t.ok(p.shortMessage.length <= 140, 'each part fits 140 octets');
  });
  t.equal(refs.size, 1, 'one reference for all parts');
  t.equal(parts.map((p) => p.text).sort((a, b) => LONG_CHINESE.indexOf(a) - LONG_CHINESE.indexOf(b)).join(''), LONG_CHINESE, 'parts rejoin to the text');
});

t.test('one message to 10,000 recipients: every recipient delivered, each submitted once', async (t) => {
  const gw = await startTestGateway(t);
  const to = Array.from({ length: 10_000 }, (_, i) => numberAt(i));
  const r = await gw.send<Accepted>({ to, text: 'Flood warning: move to higher ground. Shelter list at the district office.', tier: 'emergency' });
  t.equal(r.status, 202);
  t.equal(r.json.recipients, 10_000);
  const done = await gw.waitComplete(r.json.id, 120_000);
  t.equal(done.summary.delivered, 10_000, 'all delivered');
  const stats = gw.simulator.stats();
  t.equal(stats.uniqueSegments, 10_000, 'the simulator saw each recipient');
  t.equal(stats.duplicates, 0, 'no duplicates on a clean run');
  // Pagination walks every recipient exactly once.
  let cursor: number | undefined = 0;
  let seen = 0;
  for (let pages = 0; cursor !== undefined && pages < 20; pages++) {
    const page: { json: Page } = await gw.request<Page>('GET', `/v1/messages/${r.json.id}?cursor=${cursor}&limit=1000`);
    seen += page.json.items.length;
    cursor = page.json.next;
  }
  t.equal(seen, 10_000, 'pagination covers all recipients');
});

t.test('Idempotency-Key: a repeat returns the first answer and sends nothing again', async (t) => {
  const gw = await startTestGateway(t);
  const body = { to: ['13700137000'], text: 'Idempotent hello' };
  const [a, b] = await Promise.all([gw.send<Accepted>(body, { 'idempotency-key': 'k-1' }), gw.send<Accepted>(body, { 'idempotency-key': 'k-1' })]);
  t.equal(a.status, 202);
  t.equal(b.status, 202);
  t.equal(a.json.id, b.json.id, 'concurrent twins share one message');
  await gw.waitComplete(a.json.id);
  const c = await gw.send<Accepted>(body, { 'idempotency-key': 'k-1' });
  t.equal(c.status, 202);
  t.equal(c.json.id, a.json.id);
  t.equal(c.headers.get('idempotent-replayed'), 'true');
  const conflict = await gw.send<ErrorBody>({ ...body, text: 'Different' }, { 'idempotency-key': 'k-1' });
  t.equal(conflict.status, 409);
  t.equal(conflict.json.error.code, 'IDEMPOTENCY_CONFLICT');
  t.equal(gw.simulator.stats().submitsByDestination.get('8613700137000'), 1, 'sent once');
  const other = await gw.send<Accepted>(body, { 'idempotency-key': 'k-2' });
  t.not(other.json.id, a.json.id, 'another key is another message');
});

t.test('auth: missing, malformed and unknown keys get 401; an ungranted tier gets 403', async (t) => {
  const gw = await startTestGateway(t, {
    config: { auth: { apiKeys: [{ key: TEST_KEY, tenant: 'dev', tiers: ['*'] }, { key: 'routine-only-key', tenant: 'bureau', tiers: ['routine'] }] } },
  });
  const body = { to: ['13800138000'], text: 'x' };
  const none = await fetch(`${gw.url}/v1/messages`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  t.equal(none.status, 401);
  t.equal(((await none.json()) as ErrorBody).error.code, 'UNAUTHORIZED');
  t.equal((await gw.send(body, { authorization: 'Basic abc' })).status, 401);
  t.equal((await gw.send(body, { authorization: 'Bearer nope-nope-nope' })).status, 401);
  const forbidden = await gw.send<Refusal>({ ...body, tier: 'emergency' }, { authorization: 'Bearer routine-only-key' });
  t.equal(forbidden.status, 403);
  t.equal(forbidden.json.error.details[0].field, '/tier');
  t.equal((await gw.send({ ...body, tier: 'routine' }, { authorization: 'Bearer routine-only-key' })).status, 202);
  // Tenants see only their own messages.
  const mine = await gw.send<Accepted>(body);
  const theirs = await gw.request('GET', `/v1/messages/${mine.json.id}`, undefined, { authorization: 'Bearer routine-only-key' });
  t.equal(theirs.status, 404);
});

t.test('every bad-input class gets its status and a JSON error naming the field; the server keeps serving', async (t) => {
  const gw = await startTestGateway(t, { config: { server: { maxBodyBytes: 4096, maxRecipientsPerRequest: 50 } } });
  const cases: { name: string; body: unknown; headers?: Record<string, string>; status: number; code: string; field?: string }[] = [
    { name: 'not JSON', body: '{"to": [', status: 400, code: 'BAD_JSON' },
    { name: 'empty body', body: '', status: 400, code: 'BAD_JSON' },
    { name: 'too large', body: { to: ['13800138000'], text: 'x'.repeat(5000) }, status: 413, code: 'BODY_TOO_LARGE' },
    { name: 'too many recipients', body: { to: Array.from({ length: 51 }, (_, i) => numberAt(i)), text: 'x' }, status: 413, code: 'TOO_MANY_RECIPIENTS', field: '/to' },
    { name: 'bad number', body: { to: ['13800138000', '12345'], text: 'x' }, status: 422, code: 'BAD_NUMBER', field: '/to/1' },
    { name: 'unknown field', body: { to: ['13800138000'], text: 'x', colour: 'red' }, status: 422, code: 'VALIDATION', field: '/colour' },
    { name: 'wrong type', body: { to: '13800138000', text: 'x' }, status: 422, code: 'VALIDATION', field: '/to' },
    { name: 'no text', body: { to: ['13800138000'] }, status: 422, code: 'VALIDATION', field: '/text' },
    { name: 'unknown tier', body: { to: ['13800138000'], text: 'x', tier: 'royal' }, status: 422, code: 'VALIDATION', field: '/tier' },
    { name: 'bad validity', body: { to: ['13800138000'], text: 'x', validity: 'one hour' }, status: 422, code: 'VALIDATION', field: '/validity' },
    { name: 'validity too long', body: { to: ['13800138000'], text: 'x', validity: 'P30D' }, status: 422, code: 'VALIDATION', field: '/validity' },
    { name: 'PDA channel not enabled', body: { to: ['13800138000'], text: 'x', channel: 'pda' }, status: 422, code: 'VALIDATION', field: '/channel' },
    { name: 'array body', body: [1, 2], status: 422, code: 'VALIDATION' },
    { name: 'wrong content type', body: 'to=1', headers: { 'content-type': 'text/plain' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  ];
  for (const c of cases) {
    const r = await gw.send<{ error: { code: string; details?: readonly { field: string }[] } }>(c.body, c.headers);
    t.equal(r.status, c.status, `${c.name}: status`);
    t.equal(r.json?.error?.code, c.code, `${c.name}: code`);
    if (c.field) t.ok(r.json.error.details?.some((d) => d.field === c.field), `${c.name}: names ${c.field}`);
    const ok = await gw.send({ to: ['13800138000'], text: `still serving after ${c.name}` });
    t.equal(ok.status, 202, `still serving after ${c.name}`);
  }
  t.equal((await gw.request('GET', '/nowhere')).status, 404);
  t.equal((await gw.request('DELETE', '/v1/messages')).status, 405);
  t.equal((await gw.request('GET', '/v1/messages/unknown-id')).status, 404);
  t.equal((await gw.request('GET', '/v1/messages/x?limit=0')).status, 422);
});

t.test('batch: per-item results, valid items accepted beside invalid ones', async (t) => {
  const gw = await startTestGateway(t);
  const r = await gw.request<BatchReply>('POST', '/v1/messages/batch', {
    messages: [
      { to: ['13800138001'], text: 'first' },
      { to: ['not-a-number'], text: 'second' },
      { to: ['13800138003'], text: 'third', idempotencyKey: 'b-3' },
      { nonsense: true },
    ],
  });
  t.equal(r.status, 207);
  t.equal(r.json.accepted, 2);
  t.equal(r.json.rejected, 2);
  t.match(r.json.results[0], { index: 0, httpStatus: 202, status: 'accepted' });
  t.match(r.json.results[1], { index: 1, httpStatus: 422, error: { code: 'BAD_NUMBER', details: [{ field: '/messages/1/to/0' }] } });
  t.match(r.json.results[2], { index: 2, httpStatus: 202 });
  t.match(r.json.results[3], { index: 3, httpStatus: 422, error: { code: 'VALIDATION' } });
  await gw.waitComplete(r.json.results[0].id);
  await gw.waitComplete(r.json.results[2].id);
  const tooMany = await gw.request('POST', '/v1/messages/batch', { messages: Array.from({ length: 1001 }, () => ({ to: ['13800138000'], text: 'x' })) });
  t.equal(tooMany.status, 413);
});

t.test('receipt outcomes: undeliverable, expired, rejected, and a DLR that arrives before its submit_sm_resp', async (t) => {
  const gw = await startTestGateway(t);
  const r = await gw.send<Accepted>({ to: ['13800000005', '13800000003', '13800000011', '13800000007', '13800000058', '13800000014'], text: 'outcomes' });
  t.equal(r.status, 202);
  const done = await gw.waitComplete(r.json.id);
  const byNumber = new Map<string, Delivered>(done.items.map((i) => [i.to, i as Delivered]));
  t.equal(byNumber.get('8613800000005')!.state, 'undeliverable');
  t.equal(byNumber.get('8613800000003')!.state, 'expired');
  t.equal(byNumber.get('8613800000011')!.state, 'rejected');
  t.match(byNumber.get('8613800000011')!.segments[0].error, /RINVDSTADR/);
  t.equal(byNumber.get('8613800000007')!.state, 'delivered', 'early DLR matched');
  t.equal(byNumber.get('8613800000058')!.state, 'delivered', 'throttled then retried');
  t.equal(byNumber.get('8613800000014')!.state, 'delivered', 'queue-full then retried');
});

t.test('a throttling SMSC (0x58 above its TPS): everything still delivered, throttles counted', async (t) => {
  const gw = await startTestGateway(t, { simulator: { tps: 300 } });
  const to = Array.from({ length: 1500 }, (_, i) => numberAt(i, '139'));
  const r = await gw.send<Accepted>({ to, text: 'throttled burst' });
  const done = await gw.waitComplete(r.json.id, 60_000);
  t.equal(done.summary.delivered, 1500);
  t.ok(gw.simulator.stats().throttled > 0, `the SMSC throttled (${gw.simulator.stats().throttled})`);
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  t.match(metrics, /smsgw_smpp_throttled_total\{account="sim",status="[^"]+"\} [1-9]/);
});

t.test('the SMSC drops the connection mid-window: everything delivered, duplicates bounded by the window', async (t) => {
  const window = 16;
  const binds = 2;
  const gw = await startTestGateway(t, { simulator: { disconnectEvery: 700 }, account: { window, binds } });
  const to = Array.from({ length: 4000 }, (_, i) => numberAt(i, '137'));
  const r = await gw.send<Accepted>({ to, text: 'drop test' });
  const done = await gw.waitComplete(r.json.id, 90_000);
  t.equal(done.summary.delivered, 4000, 'all delivered');
  const s = gw.simulator.stats();
  const drops = Math.floor(s.submits / 700);
  t.ok(drops >= 4, `the simulator dropped sessions (${drops})`);
  t.ok(s.duplicates <= drops * window, `duplicates ${s.duplicates} ≤ drops ${drops} × window ${window}`);
  t.equal(s.uniqueSegments, 4000);
});

t.test('operational endpoints: health, readiness, metrics, OpenAPI', async (t) => {
  const gw = await startTestGateway(t);
  t.equal((await fetch(`${gw.url}/healthz`)).status, 200);
  const ready = await fetch(`${gw.url}/readyz`);
  t.equal(ready.status, 200);
  t.match(await ready.json(), { ready: true, queue: 'embedded' });
  const m = await (await fetch(`${gw.url}/metrics`)).text();
  // Names compared exactly (a substring match would pass for smsgw_queue_depth_anything).
  const exported = new Set([...m.matchAll(/^# HELP (\S+) /gm)].map((x) => x[1]));
  for (const name of ['smsgw_smpp_window_occupancy', 'smsgw_smpp_submit_latency_seconds', 'smsgw_smpp_throttled_total', 'smsgw_dlr_latency_seconds', 'smsgw_queue_depth']) {
    t.ok(exported.has(name), `${name} exported`);
  }
  const api = (await (await fetch(`${gw.url}/openapi.json`)).json()) as { openapi: string };
  t.equal(api.openapi, '3.1.0');
});
