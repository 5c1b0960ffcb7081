/**
 * Invariant 7 end to end: an Idempotency-Key reused after `idempotencyTtl`
 * never writes into, or publishes under, the older message. The bug this
 * reproduces: after the TTL the answer said 202 with 2 recipients, the status
 * showed the old 1-recipient message, one new recipient got nothing and the
 * other got the SMS again and again until the job was dead-lettered. Now the
 * reuse is a new message with a new id, each recipient gets its SMS once, and
 * the older message is untouched. Single sends and batch items alike.
 */
import t from 'tap';
import { startTestGateway } from '../support/gateway.js';
import { officeFixture, phone, receivedTexts } from '../support/office.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageStatus } from '../support/api-types.js';

/** 202 to POST /v1/messages. */
interface Accepted {
  readonly id: string;
  readonly recipients: number;
}
/** POST /v1/messages/batch: one result per item. */
interface BatchAnswer {
  readonly results: readonly { readonly id: string; readonly httpStatus: number; readonly recipients?: number }[];
}
/** POST /v1/meetings. */
interface Meeting {
  readonly id: string;
  readonly notices: readonly string[];
}

const TTL_MS = 1000;

t.test('POST /v1/messages: a key reused after its TTL is a new message; the old one is untouched', async (t) => {
  const gw = await startTestGateway(t, { config: { server: { idempotencyTtl: 'PT1S' } } });
  const first = await gw.send<Accepted>({ to: ['13700137001'], text: 'first use' }, { 'idempotency-key': 'reused' });
  t.equal(first.status, 202);
  t.equal(first.json.recipients, 1);
  await gw.waitComplete(first.json.id);
  // Within the TTL: the first answer.
  const replay = await gw.send<Accepted>({ to: ['13700137001'], text: 'first use' }, { 'idempotency-key': 'reused' });
  t.equal(replay.json.id, first.json.id);
  t.equal(replay.headers.get('idempotent-replayed'), 'true');

  await sleep(TTL_MS + 100);
  const second = await gw.send<Accepted>({ to: ['13700137002', '13700137003'], text: 'second use' }, { 'idempotency-key': 'reused' });
  t.equal(second.status, 202);
  t.equal(second.json.recipients, 2);
  t.not(second.json.id, first.json.id, 'a new message with a new id');
  t.equal(second.headers.get('idempotent-replayed'), null);
  const done = await gw.waitComplete(second.json.id);
  t.equal(done.summary.delivered, 2, 'both new recipients delivered');
  t.same(done.items.map((r: { to: string }) => r.to).sort(), ['8613700137002', '8613700137003']);

  const old = await gw.request<MessageStatus>('GET', `/v1/messages/${first.json.id}`);
  t.equal(old.status, 200);
  t.equal(old.json.recipients, 1, 'the older message keeps its one recipient');
  t.same(old.json.items.map((r: { to: string }) => r.to), ['8613700137001']);
  t.equal(old.json.summary.delivered, 1);

  // The same body again after another TTL: also new (the stored answer is gone), sent once more on purpose.
  await sleep(TTL_MS + 100);
  const third = await gw.send<Accepted>({ to: ['13700137002', '13700137003'], text: 'second use' }, { 'idempotency-key': 'reused' });
  t.not(third.json.id, second.json.id);
  await gw.waitComplete(third.json.id);
  // Give a wrongly published job time to be redelivered before counting.
  await sleep(300);
  const by = gw.simulator.stats().submitsByDestination;
  t.equal(by.get('8613700137001'), 1, 'the first recipient got its SMS once');
  t.equal(by.get('8613700137002'), 2, 'each later recipient got one SMS per message');
  t.equal(by.get('8613700137003'), 2);
});

t.test('POST /v1/messages/batch: item keys follow the same rule', async (t) => {
  const gw = await startTestGateway(t, { config: { server: { idempotencyTtl: 'PT1S' } } });
  const a = await gw.request<BatchAnswer>('POST', '/v1/messages/batch', { messages: [{ to: ['13700137011'], text: 'one', idempotencyKey: 'b-1' }] });
  t.match(a.json.results[0], { httpStatus: 202 });
  const firstId = a.json.results[0]!.id;
  t.ok(firstId);
  await gw.waitComplete(firstId);
  await sleep(TTL_MS + 100);
  const b = await gw.request<BatchAnswer>('POST', '/v1/messages/batch', { messages: [{ to: ['13700137012', '13700137013'], text: 'two', idempotencyKey: 'b-1' }] });
  t.match(b.json.results[0], { httpStatus: 202, recipients: 2 });
  const secondId = b.json.results[0]!.id;
  t.not(secondId, firstId);
  const done = await gw.waitComplete(secondId);
  t.equal(done.summary.delivered, 2);
  const old = await gw.request<MessageStatus>('GET', `/v1/messages/${firstId}`);
  t.equal(old.json.recipients, 1);
  t.equal(old.json.items.length, 1);
  await sleep(300);
  const by = gw.simulator.stats().submitsByDestination;
  t.same([by.get('8613700137011'), by.get('8613700137012'), by.get('8613700137013')], [1, 1, 1], 'each recipient once');
});

t.test('POST /v1/meetings: a repeat after the TTL is the same meeting and sends no notice again', async (t) => {
  const { gw, admin, key, call } = await officeFixture(t, 2, { config: { server: { idempotencyTtl: 'PT1S' } } });
  const body = { title: 'x', time: '2030-01-15T09:30:00+08:00', place: 'x', attendees: { people: ['p0', 'p1'] } };
  const first = await call<Meeting>('POST', '/v1/meetings', body, { 'idempotency-key': 'm-ttl' });
  t.equal(first.status, 201, JSON.stringify(first.json));
  for (const id of first.json.notices) await admin.waitCompleteAs(key, id, 30_000);
  await sleep(TTL_MS + 100);
  const again = await call<Meeting>('POST', '/v1/meetings', body, { 'idempotency-key': 'm-ttl' });
  t.equal(again.status, 200);
  t.equal(again.json.id, first.json.id, 'the same meeting');
  t.same(again.json.notices, first.json.notices, 'the same notices');
  await sleep(300);
  const texts = receivedTexts(gw.simulator);
  t.same([texts.get(phone(0))?.length, texts.get(phone(1))?.length], [1, 1], 'each invitee got the notice once');
});
