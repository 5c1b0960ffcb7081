/**
 * Every cap is a cap (issue #16 item 4), over HTTP: the recipient cap over a
 * whole batch, the parts cap, the text rules, reserved template parameter
 * names. Each refusal is a catalogued error naming the field, and nothing a
 * refused request carried reaches the SMSC simulator; a control message sent
 * after them arrives, so "nothing arrived" is not "nothing arrived yet".
 */
import t from 'tap';
import { startTestGateway, numberAt } from '../support/gateway.js';
import { receivedTexts, eventually, officeFixture, phone } from '../support/office.js';
import type { ErrorBody } from '../support/api-types.js';

const MAX = 50;

t.test('caps and text rules at the HTTP door', async (t) => {
  const gw = await startTestGateway(t, { config: { server: { maxRecipientsPerRequest: MAX } }, simulator: { recentCapacity: 5_000 } });
  const refusedTo = new Set<string>();
  const nums = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => numberAt(from + i));

  // Batch: 2 × 26 numbers is 52 over the request, though each item is under the cap.
  const over = [nums(0, 26), nums(100, 26)];
  over.flat().forEach((n) => refusedTo.add(`86${n}`));
  const big = await gw.request<ErrorBody>('POST', '/v1/messages/batch', { messages: over.map((to) => ({ to, text: 'batch over' })) });
  t.equal(big.status, 413, JSON.stringify(big.json));
  t.match(big.json.error, { code: 'TOO_MANY_RECIPIENTS', details: [{ field: '/messages', message: /names 52 recipients over 2 items/ }] });
  // Exactly the cap over the batch goes.
  const at = await gw.request<{ accepted: number }>('POST', '/v1/messages/batch', { messages: [{ to: nums(200, 25), text: 'batch at cap' }, { to: nums(300, 25), text: 'batch at cap' }] });
  t.equal(at.status, 207);
  t.equal(at.json.accepted, 2);

  // Text rules. NUL, ESC and a lone surrogate (raw JSON escapes: JSON.parse keeps them) are 422.
  const bad: [string, string, RegExp][] = [
    ['NUL', '{"to":["13800000011"],"text":"a\\u0000b"}', /U\+0000 at index 1/],
    ['ESC', '{"to":["13800000011"],"text":"\\u001b[31mred"}', /U\+001B at index 0/],
    ['lone high surrogate', '{"to":["13800000011"],"text":"x\\ud83dy"}', /lone surrogate U\+D83D at index 1/],
    ['lone low surrogate', '{"to":["13800000011"],"text":"\\ude00"}', /lone surrogate U\+DE00 at index 0/],
  ];
  refusedTo.add('8613800000011');
  for (const [what, raw, message] of bad) {
    const r = await gw.request<ErrorBody>('POST', '/v1/messages', raw);
    t.equal(r.status, 422, what);
    t.match(r.json.error, { code: 'TEXT_INVALID', details: [{ field: '/text', message }] }, what);
  }
  // In a batch: the item is refused, the others go.
  const mixed = await gw.request<{ results: unknown[] }>('POST', '/v1/messages/batch', '{"messages":[{"to":["13800000011"],"text":"\\u0007bell"},{"to":["13800000012"],"text":"fine"}]}');
  t.equal(mixed.status, 207);
  t.match(mixed.json.results, [{ index: 0, httpStatus: 422, error: { code: 'TEXT_INVALID', details: [{ field: '/messages/0/text' }] } }, { index: 1, httpStatus: 202 }]);

  // Bidi overrides and zero-width characters are removed before counting; TAB is a space.
  const hidden = '\u202e请\u200b于\u2066明日\u2069\ufeff到会\u200d\t谢谢\u2060';
  const clean = await gw.send<{ segments: number }>({ to: ['13800000013'], text: hidden });
  t.equal(clean.status, 202, JSON.stringify(clean.json));
  t.equal(clean.json.segments, 1);
  await eventually(() => (receivedTexts(gw.simulator).get('8613800000013') ?? [])[0], 'the cleaned text');
  t.same(receivedTexts(gw.simulator).get('8613800000013'), ['请于明日到会 谢谢'], 'the SMSC got the text without them');

  // Parts: 10 UCS-2 parts (670 characters) go; 671 is 11 parts: 422.
  t.equal((await gw.send({ to: ['13800000014'], text: '中'.repeat(670) })).status, 202);
  const long = await gw.send<ErrorBody>({ to: ['13800000015'], text: '中'.repeat(671) });
  refusedTo.add('8613800000015');
  t.equal(long.status, 422);
  t.match(long.json.error, { code: 'TOO_MANY_PARTS', details: [{ field: '/text', message: /needs 11 parts \(ucs2\); at most 10/ }] });
  // Zero-width characters do not count towards the parts.
  t.equal((await gw.send<{ segments: number }>({ to: ['13800000016'], text: '中'.repeat(670) + '\u200b'.repeat(500) })).json.segments, 10);

  // Reserved template parameter names: at save (declared or used) and at send.
  const put = (name: string, raw: string) => gw.request<ErrorBody>('PUT', `/v1/templates/${name}`, raw);
  const declared = await put('proto', '{"body":"通知 {{x}}","params":{"x":{"type":"string"},"__proto__":{"type":"string"}}}');
  t.equal(declared.status, 422, JSON.stringify(declared.json));
  t.match(declared.json.error, { code: 'TEMPLATE_INVALID', details: [{ field: '/params/__proto__' }] });
  for (const name of ['constructor', 'prototype', 'a.__proto__']) {
    const used = await put('used', JSON.stringify({ body: `通知 {{${name}}}` }));
    t.equal(used.status, 422, `{{${name}}}`);
    t.equal(used.json.error.code, 'TEMPLATE_INVALID', `{{${name}}}`);
  }
  t.equal((await put('ok', JSON.stringify({ body: '通知：{{place}}', params: { place: { type: 'string' } } }))).status, 201);
  const viaProto = await gw.request<ErrorBody>('POST', '/v1/messages', '{"to":["13800000017"],"template":"ok","params":{"place":"三楼","__proto__":{"place":"x"}}}');
  refusedTo.add('8613800000017');
  t.equal(viaProto.status, 422);
  t.match(viaProto.json.error, { code: 'TEMPLATE_PARAMS', details: [{ field: '/params/__proto__' }] });
  const nested = await gw.request<ErrorBody>('POST', '/v1/messages', '{"to":["13800000017"],"template":"ok","params":{"place":"三楼","extra":{"constructor":1}}}');
  t.match(nested.json.error, { code: 'TEMPLATE_PARAMS', details: [{ field: '/params/extra/constructor' }] });
  // The text rules apply to a template as rendered: a control in a parameter is refused.
  const ctl = await gw.request<ErrorBody>('POST', '/v1/messages', '{"to":["13800000017"],"template":"ok","params":{"place":"\\u0000"}}');
  t.equal(ctl.status, 422);
  t.match(ctl.json.error, { code: 'TEXT_INVALID', details: [{ field: '/template' }] });

  // Control: a message sent after all of these arrives; none of the refused ones did.
  t.equal((await gw.send({ to: ['13800000019'], text: 'control' })).status, 202);
  await eventually(() => (receivedTexts(gw.simulator).get('8613800000019') ?? [])[0], 'the control message');
  const got = receivedTexts(gw.simulator);
  t.same([...refusedTo].filter((n) => got.has(n)), [], 'nothing refused reached the SMSC');
});

t.test('quotas count parts beside recipients: dailyPartsQuota refuses what would pass it (403 /quota/dailyParts)', async (t) => {
  const { gw, admin, call } = await officeFixture(t, 2);
  await admin.must('PATCH', '/v1/admin/units/office', { grants: { dailyQuota: 100, dailyPartsQuota: 5 } });
  // The signature 【市政府办公厅】 (7) + 130 CJK characters = 137: 3 UCS-2 parts, × 1 recipient.
  const long = '通'.repeat(130);
  const first = await call('POST', '/v1/messages', { people: ['p0'], text: long });
  t.match(first, { status: 202, json: { segments: 3, totalSegments: 3 } });
  // 2 recipients × 1 part = 2: 3 + 2 = 5 fits exactly.
  t.equal((await call('POST', '/v1/messages', { people: ['p0', 'p1'], text: '短' })).status, 202);
  const over = await call<ErrorBody>('POST', '/v1/messages', { people: ['p1'], text: '再一条' });
  t.equal(over.status, 403, JSON.stringify(over.json));
  t.match(over.json.error, { code: 'QUOTA_EXCEEDED', details: [{ field: '/quota/dailyParts', message: /5 of 5 parts used/ }] });
  t.match((await admin.must<{ usage: unknown }>('GET', '/v1/admin/units/office')).usage, { daily: 3, dailyParts: 5 }, 'usage shows both');
  t.equal((await admin.call('PATCH', '/v1/admin/units/office', { grants: { dailyPartsQuota: -1 } })).status, 422, 'a negative quota is refused');
  await eventually(() => (receivedTexts(gw.simulator).get(phone(1)) ?? []).length > 0 || undefined, 'the granted message');
  await new Promise((r) => setTimeout(r, 300));
  t.notOk((receivedTexts(gw.simulator).get(phone(1)) ?? []).some((x) => x.includes('再一条')), 'the refused one never reached the SMSC');
});
