/**
 * Scheduled sending and templates through the HTTP API: held durably, sent
 * at time, cancellable until then; templates validated when saved.
 */
import t from 'tap';
import { startTestGateway, numberAt } from '../support/gateway.js';
import type { ErrorBody } from '../support/api-types.js';

/** POST /v1/messages: what these tests read of an accepted message. */
interface Accepted {
  id: string;
  status: string;
  scheduledAt?: string;
}
/** A refusal with the details naming each field. */
interface Refusal {
  error: { code: string; message: string; details: { field: string; message: string }[] };
}

t.test('scheduleAt: accepted now, shown as scheduled, sent at its time', async (t) => {
  const gw = await startTestGateway(t, { config: { office: { schedule: { pollMs: 50 } } } });
  const at = new Date(Date.now() + 1200).toISOString();
  const r = await gw.send<Accepted>({ to: [numberAt(1), numberAt(2)], text: 'scheduled hello', scheduleAt: at });
  t.equal(r.status, 202, JSON.stringify(r.json));
  t.match(r.json, { status: 'scheduled', scheduledAt: at });
  const before = await gw.request('GET', `/v1/messages/${r.json.id}`);
  t.match(before.json, { status: 'scheduled', summary: { accepted: 2 } });
  t.equal(gw.simulator.recentSubmits().length, 0, 'nothing sent before its time');
  const done = await gw.waitComplete(r.json.id, 20_000);
  t.equal(done.summary.delivered, 2);
  const sentAt = Math.min(...(done.items as readonly { segments: readonly { submittedAt?: string }[] }[]).map((i) => Date.parse(i.segments[0]?.submittedAt ?? '')));
  t.ok(sentAt >= Date.parse(at), 'submitted at or after scheduleAt');
  t.equal(gw.simulator.recentSubmits().length, 2, 'each recipient once');
  // Released: too late to cancel.
  const late = await gw.request<ErrorBody>('DELETE', `/v1/messages/${r.json.id}`);
  t.equal(late.status, 409);
  t.equal(late.json.error.code, 'NOT_CANCELLABLE');
});

t.test('a scheduled message cancelled before its time: every recipient rejected, nothing sent', async (t) => {
  const gw = await startTestGateway(t);
  const r = await gw.send<Accepted>({ to: [numberAt(3), numberAt(4), numberAt(5)], text: 'never', scheduleAt: new Date(Date.now() + 3_600_000).toISOString() });
  t.equal(r.status, 202);
  const c = await gw.request('DELETE', `/v1/messages/${r.json.id}`);
  t.same(c.json, { id: r.json.id, status: 'cancelled', recipients: 3 });
  const done = await gw.waitComplete(r.json.id);
  t.equal(done.summary.rejected, 3);
  t.match(done.items[0]!.error, /cancelled/);
  t.equal((await gw.request('DELETE', `/v1/messages/${r.json.id}`)).status, 409, 'twice: not cancellable');
  t.equal((await gw.request('DELETE', '/v1/messages/nope')).status, 404);
  await new Promise((res) => setTimeout(res, 200));
  t.equal(gw.simulator.recentSubmits().length, 0);
});

t.test('scheduleAt is checked at the door', async (t) => {
  const gw = await startTestGateway(t);
  const bad = await gw.send<Refusal>({ to: [numberAt(1)], text: 'x', scheduleAt: 'tomorrow morning' });
  t.equal(bad.status, 422);
  t.match(bad.json.error.details, [{ field: '/scheduleAt' }]);
  const far = await gw.send<Refusal>({ to: [numberAt(1)], text: 'x', scheduleAt: new Date(Date.now() + 40 * 86_400_000).toISOString() });
  t.equal(far.status, 422);
  t.match(far.json.error.details[0]!.message, /30 days/);
  // A time already past is sent at once.
  const past = await gw.send<Accepted>({ to: [numberAt(1)], text: 'now', scheduleAt: new Date(Date.now() - 60_000).toISOString() });
  t.equal(past.json.status, 'accepted');
  t.equal((await gw.waitComplete(past.json.id)).summary.delivered, 1);
});

t.test('templates: validated when saved, previewed, sent with params', async (t) => {
  const gw = await startTestGateway(t);
  const bad = await gw.request<Refusal>('PUT', '/v1/templates/t1', { body: '{{meeting.title}} {{when|date:"HH:mm"}}', params: { 'meeting.title': { type: 'string' }, when: { type: 'string' } } });
  t.equal(bad.status, 422);
  t.equal(bad.json.error.code, 'TEMPLATE_INVALID');
  t.match(bad.json.error.message, /date does not fit parameter when of type string/);
  const unclosed = await gw.request<Refusal>('PUT', '/v1/templates/t1', { body: 'Hello {{name' });
  t.equal(unclosed.json.error.code, 'TEMPLATE_INVALID');
  const body = '通知：{{meeting.title}}定于{{when|date:"M月d日 HH:mm"}}在{{place|default:"机关会议室"}}召开，请{{who|join:"、"}}参加。';
  const ok = await gw.request<{ params: unknown }>('PUT', '/v1/templates/meeting', { body, params: { 'meeting.title': { type: 'string', maxLength: 30 }, when: { type: 'time' }, place: { type: 'string', required: false }, who: { type: 'list' } }, description: '会议通知' });
  t.equal(ok.status, 201, JSON.stringify(ok.json));
  t.equal((await gw.request('PUT', '/v1/templates/meeting', { body, params: ok.json.params })).status, 200, 'an update');
  const params = { meeting: { title: '安全生产例会' }, when: '2026-12-01T06:00:00Z', who: ['各科室负责人', '办公室主任'] };
  const pv = await gw.request<{ text: string }>('POST', '/v1/templates/meeting/preview', { params });
  const expected = '通知：安全生产例会定于12月1日 14:00在机关会议室召开，请各科室负责人、办公室主任参加。';
  t.same(pv.json, { text: expected, encoding: 'ucs2', segments: 1, characters: Array.from(expected).length });
  const wrong = await gw.request<Refusal>('POST', '/v1/templates/meeting/preview', { params: { meeting: { title: 5 }, when: 'soon' } });
  t.equal(wrong.status, 422);
  t.equal(wrong.json.error.code, 'TEMPLATE_PARAMS');
  t.same(wrong.json.error.details.map((d: { field: string }) => d.field).sort(), ['/params/when', '/params/who'].sort());
  const sent = await gw.send<Accepted>({ to: [numberAt(9)], template: 'meeting', params });
  t.equal(sent.status, 202, JSON.stringify(sent.json));
  await gw.waitComplete(sent.json.id);
  t.equal(gw.simulator.recentSubmits()[0]?.text, pv.json.text, 'the phone gets the previewed text');
  const missing = await gw.send({ to: [numberAt(9)], template: 'nope', params: {} });
  t.equal(missing.status, 404);
  const both = await gw.send({ to: [numberAt(9)], template: 'meeting', text: 'x' });
  t.equal(both.status, 422);
  const list = await gw.request<{ items: { name: string }[] }>('GET', '/v1/templates');
  t.same(list.json.items.map((x: { name: string }) => x.name), ['meeting']);
  t.equal((await gw.request('DELETE', '/v1/templates/meeting')).status, 200);
  t.equal((await gw.request('GET', '/v1/templates/meeting')).status, 404);
});
