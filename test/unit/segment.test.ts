import t from 'tap';
import {
  MAX_SEGMENTS,
  buildSegments,
  countSegments,
  planSegments,
  segmentReference,
  type Segment,
} from '../../src/core/segment.js';
import { chooseEncoding, decodeGsm7, decodeUcs2, encodeUcs2, gsm7Length } from '../../src/core/gsm7.js';
import { GatewayError } from '../../src/core/errors.js';
import type { SmsEncoding } from '../../src/core/message.js';
import { seededRandom } from '../support/seeded-random.js';

/** An integer in [0, n) from the shared seeded generator. */
function prng(seed: number): (n: number) => number {
  const r = seededRandom(seed);
  return (n) => Math.floor(r() * n);
}

const CHINESE = '关于召开全市防汛工作紧急会议的通知请各区县防汛指挥部各成员单位主要负责同志于今日下午三时到市政府第一会议室参加会议';

/** `n` characters of Chinese text, cycling through a real notice. */
function chinese(n: number): string {
  let s = '';
  while (s.length < n) s += CHINESE;
  return s.slice(0, n);
}

function units(part: string, encoding: SmsEncoding): number {
  return encoding === 'gsm7' ? gsm7Length(part) : part.length;
}

function isHigh(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

t.test('part counts at the boundaries', async (t) => {
  const cases: Array<[string, string, SmsEncoding, number]> = [
    ['empty', '', 'gsm7', 1],
    ['gsm7 160', 'a'.repeat(160), 'gsm7', 1],
    ['gsm7 161', 'a'.repeat(161), 'gsm7', 2],
    ['gsm7 306 = 153 × 2', 'a'.repeat(306), 'gsm7', 2],
    ['gsm7 307', 'a'.repeat(307), 'gsm7', 3],
    ['ucs2 70', chinese(70), 'ucs2', 1],
    ['ucs2 71', chinese(71), 'ucs2', 2],
    ['ucs2 134 = 67 × 2', chinese(134), 'ucs2', 2],
    ['ucs2 135', chinese(135), 'ucs2', 3],
    ['ucs2 201 = 67 × 3', chinese(201), 'ucs2', 3],
    ['ucs2 202', chinese(202), 'ucs2', 4],
    // GSM-looking text with one non-GSM character is UCS-2 and counted as such.
    ['gsm + ç, 70 units', 'a'.repeat(69) + 'ç', 'ucs2', 1],
    ['gsm + ç, 71 units', 'a'.repeat(70) + 'ç', 'ucs2', 2],
    ['gsm + ç, 134 units', 'a'.repeat(133) + 'ç', 'ucs2', 2],
    ['gsm + ç, 135 units', 'a'.repeat(134) + 'ç', 'ucs2', 3],
    ['latin 160 with one 中', 'a'.repeat(159) + '中', 'ucs2', 3],
  ];
  for (const [name, text, encoding, count] of cases) {
    const c = countSegments(text);
    t.equal(c.encoding, encoding, `${name}: encoding`);
    t.equal(c.count, count, `${name}: counted parts`);
    t.equal(c.units, units(text, encoding), `${name}: units`);
    const plan = planSegments(text);
    t.equal(plan.encoding, encoding, `${name}: planned encoding`);
    t.equal(plan.count, count, `${name}: planned parts`);
    t.equal(plan.parts.length, count);
    t.equal(plan.parts.join(''), text, `${name}: parts join to the text`);
    t.equal(buildSegments(text, encoding, 7).length, count, `${name}: built parts`);
  }
  t.same(planSegments('').parts, [''], 'the empty text is one empty part');
  t.same(
    planSegments(chinese(135)).parts.map((p) => p.length),
    [67, 67, 1],
  );
  t.same(planSegments('a'.repeat(307)).parts.map((p) => p.length), [153, 153, 1]);
});

t.test('a GSM extension character is never split across parts', async (t) => {
  t.equal(countSegments('a'.repeat(158) + '{').count, 1, '158 + 2 = 160 septets fit one part');
  t.equal(countSegments('a'.repeat(159) + '{').count, 2, '159 + 2 = 161 septets do not');

  // '{' would occupy septets 153 and 154: it moves to part 2, part 1 carries 152.
  const across = planSegments('a'.repeat(152) + '{' + 'b'.repeat(10));
  t.same(across.parts, ['a'.repeat(152), '{' + 'b'.repeat(10)]);
  t.equal(gsm7Length(across.parts[0] as string), 152);

  // '{' at septets 152-153 ends part 1 exactly.
  const exact = planSegments('a'.repeat(151) + '{' + 'b'.repeat(10));
  t.same(exact.parts, ['a'.repeat(151) + '{', 'b'.repeat(10)]);
  t.equal(gsm7Length(exact.parts[0] as string), 153);

  const built = buildSegments('a'.repeat(152) + '€' + 'b'.repeat(10), 'gsm7', 1);
  const first = built[0] as Segment;
  t.equal(first.payload.length, 6 + 152);
  t.not(first.payload[first.payload.length - 1], 0x1b, 'part 1 does not end in ESC');
  t.same([...(built[1] as Segment).payload.subarray(6, 8)], [0x1b, 0x65], 'part 2 starts with ESC €');

  // All extension characters: 76 per part (152 septets), so 306 septets need 3 parts.
  const braces = '{'.repeat(153);
  const c = countSegments(braces);
  t.equal(c.units, 306);
  t.equal(c.count, 3, 'count follows the split, not ceil(units / 153)');
  t.same(planSegments(braces).parts.map((p) => p.length), [76, 76, 1]);
});

t.test('a surrogate pair (emoji) is never split across parts', async (t) => {
  t.equal(countSegments(chinese(68) + '😀').count, 1, 'emoji at units 69-70 fits one part');
  const at70 = planSegments(chinese(69) + '😀');
  t.equal(at70.count, 2, 'emoji at units 70-71 makes two parts');
  t.same(at70.parts.map((p) => p.length), [67, 4]);

  const across = planSegments(chinese(66) + '😀' + chinese(10));
  t.same(across.parts, [chinese(66), '😀' + chinese(10)], 'emoji at units 67-68 moves to part 2');

  const exact = planSegments(chinese(65) + '😀' + chinese(10));
  t.same(exact.parts, [chinese(65) + '😀', chinese(10)], 'emoji at units 66-67 ends part 1');

  const emojis = '😀'.repeat(100);
  t.same(planSegments(emojis).parts.map((p) => p.length), [66, 66, 66, 2]);
  t.equal(countSegments(emojis).count, 4);

  // A lone surrogate is one unit and is cut like any other.
  const lone = chinese(66) + '\ud83d' + chinese(10);
  t.same(planSegments(lone).parts.map((p) => p.length), [67, 10]);
});

t.test('mixed Chinese and emoji', async (t) => {
  const text = '【防汛】🌧️ 暴雨红色预警：请市民减少外出，注意安全 ⚠️🚫🚗 ' + chinese(120) + ' 👍';
  const plan = planSegments(text);
  t.equal(plan.encoding, 'ucs2');
  t.equal(plan.parts.join(''), text);
  for (const p of plan.parts) {
    t.ok(p.length <= 67, 'each part ≤ 67 units');
    t.notOk(isHigh(p.charCodeAt(p.length - 1)), 'no part ends in a high surrogate');
    t.notOk(isLow(p.charCodeAt(0)), 'no part starts with a low surrogate');
  }
  const segs = buildSegments(text, 'ucs2', 9);
  t.equal(segs.map((s) => decodeUcs2(s.payload.subarray(6))).join(''), text);
});

t.test('UDH and SMPP fields are exact', async (t) => {
  const single = buildSegments('Hello', 'gsm7', 0x2a);
  t.same(single, [{ index: 1, count: 1, payload: Uint8Array.of(0x48, 0x65, 0x6c, 0x6c, 0x6f), esmClass: 0, dataCoding: 0 }]);

  const singleUcs = buildSegments('你好', 'ucs2', 0x2a);
  t.same(singleUcs, [{ index: 1, count: 1, payload: Uint8Array.of(0x4f, 0x60, 0x59, 0x7d), esmClass: 0, dataCoding: 8 }]);

  const gsm = buildSegments('a'.repeat(161), 'gsm7', 0x2a);
  t.equal(gsm.length, 2);
  t.same([...(gsm[0] as Segment).payload.subarray(0, 6)], [0x05, 0x00, 0x03, 0x2a, 0x02, 0x01]);
  t.same([...(gsm[1] as Segment).payload], [0x05, 0x00, 0x03, 0x2a, 0x02, 0x02, ...new Array<number>(8).fill(0x61)]);
  t.equal((gsm[0] as Segment).payload.length, 159);
  for (const [k, s] of gsm.entries()) {
    t.equal(s.index, k + 1);
    t.equal(s.count, 2);
    t.equal(s.esmClass, 0x40);
    t.equal(s.dataCoding, 0x00);
  }

  const ucs = buildSegments(chinese(140), 'ucs2', 0xff);
  t.same(ucs.map((s) => s.payload.length), [140, 140, 6 + 12]);
  t.same([...(ucs[2] as Segment).payload.subarray(0, 6)], [0x05, 0x00, 0x03, 0xff, 0x03, 0x03]);
  t.same([...(ucs[2] as Segment).payload.subarray(6)], [...encodeUcs2(chinese(140).slice(134))], 'UTF-16BE after the UDH');
  for (const s of ucs) {
    t.equal(s.esmClass, 0x40);
    t.equal(s.dataCoding, 0x08);
  }

  t.equal((buildSegments('a'.repeat(200), 'gsm7', 0x1ab)[0] as Segment).payload[3], 0xab, 'reference taken modulo 256');
});

t.test('payload bounds: GSM7 unpacked ≤ 160 / 159, UCS-2 ≤ 140, all ≤ 254', async (t) => {
  const check = (name: string, text: string, encoding: SmsEncoding): void => {
    const segs = buildSegments(text, encoding, 1);
    const max = segs.length === 1 ? (encoding === 'gsm7' ? 160 : 140) : encoding === 'gsm7' ? 159 : 140;
    for (const s of segs) {
      t.ok(s.payload.length <= max, `${name}: part ${s.index} ${s.payload.length} ≤ ${max}`);
      t.ok(s.payload.length <= 254, `${name}: within SMPP short_message`);
    }
  };
  check('gsm7 single full', 'a'.repeat(160), 'gsm7');
  check('gsm7 single all extension', '€'.repeat(80), 'gsm7');
  check('gsm7 multipart', 'a'.repeat(1000), 'gsm7');
  check('gsm7 multipart extension', '^'.repeat(400), 'gsm7');
  check('ucs2 single full', chinese(70), 'ucs2');
  check('ucs2 multipart', chinese(1000), 'ucs2');
  check('ucs2 forced on GSM text', 'a'.repeat(300), 'ucs2');
  t.equal((buildSegments('a'.repeat(160), 'gsm7', 1)[0] as Segment).payload.length, 160, 'the single-part bound is reached');
  t.equal((buildSegments(chinese(70), 'ucs2', 1)[0] as Segment).payload.length, 140);
});

t.test('at most 255 parts', async (t) => {
  t.equal(MAX_SEGMENTS, 255);
  const max = 'a'.repeat(153 * 255);
  t.equal(countSegments(max).count, 255);
  const segs = buildSegments(max, 'gsm7', 3);
  t.equal(segs.length, 255);
  t.equal((segs[254] as Segment).payload[5], 255, 'sequence 255 fits its octet');
  t.equal((segs[254] as Segment).payload[4], 255);

  const over = max + 'a';
  t.equal(countSegments(over).count, 256, 'countSegments reports without throwing');
  for (const f of [() => planSegments(over), () => buildSegments(over, 'gsm7', 1), () => planSegments(chinese(67 * 255 + 1))]) {
    const err = t.throws(f) as unknown;
    t.ok(err instanceof GatewayError && err.code === 'VALIDATION', 'too many parts is a VALIDATION error');
  }
});

t.test('forced encodings', async (t) => {
  const plan = planSegments('a'.repeat(71), 'ucs2');
  t.equal(plan.encoding, 'ucs2');
  t.same(plan.parts.map((p) => p.length), [67, 4], 'UCS-2 limits apply to forced UCS-2');
  for (const f of [() => planSegments('abc中', 'gsm7'), () => buildSegments('a'.repeat(200) + '中', 'gsm7', 1)]) {
    const err = t.throws(f) as unknown;
    t.ok(err instanceof GatewayError && err.code === 'VALIDATION', 'gsm7 forced on non-GSM text is refused');
  }
});

t.test('segment references are deterministic FNV-1a folded to a byte', async (t) => {
  const a = segmentReference('01HZX3Q5K0M7N8P9R2S4T6V8W0', 0);
  t.equal(segmentReference('01HZX3Q5K0M7N8P9R2S4T6V8W0', 0), a, 'same input, same reference');
  // Pinned: changing the hash would change references for redelivered jobs after an upgrade.
  t.equal(segmentReference('', 0), 0x7e);
  t.equal(segmentReference('msg-1', 0), 0x8b);
  t.equal(segmentReference('msg-1', 1), 0xe6);
  t.equal(segmentReference('消息', 7), 0xaf);

  const seen = new Set<number>();
  let outOfRange = 0;
  for (let i = 0; i < 2000; i++) {
    const r = segmentReference('01HZX3Q5K0M7N8P9R2S4T6V8W0', i);
    if (!Number.isInteger(r) || r < 0 || r > 255) outOfRange++;
    seen.add(r);
  }
  t.equal(outOfRange, 0, 'every reference is an integer in 0..255');
  t.ok(seen.size > 200, `references spread over the byte (${seen.size} distinct of 256)`);
  const byMessage = new Set<number>();
  for (let i = 0; i < 2000; i++) byMessage.add(segmentReference(`msg-${i}`, 0));
  t.ok(byMessage.size > 200, `references spread across messages (${byMessage.size} distinct)`);
});

t.test('2,000 seeded random texts: lossless, within limits, nothing split', async (t) => {
  const rand = prng(20240601);
  const gsmPool = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?@£$¥èéΔΦΓΛΩΠΨΣΘΞÆæßÉ\n\r';
  const extPool = '{}[]~|^\\€\f';
  const emojiPool = ['😀', '👍', '🌧', '🚗', '⚠', '🇨🇳'];
  const lengths = [0, 1, 70, 71, 134, 135, 152, 153, 154, 160, 161, 306, 307];
  let bad = 0;
  const fail = (msg: string): void => {
    if (bad++ < 5) t.fail(msg);
  };
  for (let n = 0; n < 2000; n++) {
    const kind = rand(5); // 0 GSM, 1 GSM+ext, 2 GSM with one non-GSM, 3 Chinese, 4 Chinese+emoji
    const target = rand(3) === 0 ? (lengths[rand(lengths.length)] as number) + rand(3) - 1 : rand(700);
    let text = '';
    while (text.length < target) {
      const r = rand(10);
      if (kind <= 2 && (kind === 0 || r < 8)) text += gsmPool[rand(gsmPool.length)];
      else if (kind <= 2) text += extPool[rand(extPool.length)];
      else if (kind === 4 && r < 3) text += emojiPool[rand(emojiPool.length)];
      else text += CHINESE[rand(CHINESE.length)];
    }
    if (kind === 2) {
      const at = rand(text.length + 1);
      text = text.slice(0, at) + 'ç' + text.slice(at);
    }

    const plan = planSegments(text);
    const count = countSegments(text);
    if (plan.encoding !== chooseEncoding(text)) fail(`#${n}: encoding`);
    if (count.count !== plan.count || plan.count !== plan.parts.length) fail(`#${n}: counts disagree`);
    if (plan.parts.join('') !== text) fail(`#${n}: parts do not join to the text`);
    const limit = plan.count === 1 ? (plan.encoding === 'gsm7' ? 160 : 70) : plan.encoding === 'gsm7' ? 153 : 67;
    for (const p of plan.parts) {
      if (units(p, plan.encoding) > limit) fail(`#${n}: part over ${limit}`);
      if (p.length > 0 && (isHigh(p.charCodeAt(p.length - 1)) || isLow(p.charCodeAt(0)))) fail(`#${n}: surrogate split`);
    }

    const segs = buildSegments(text, plan.encoding, segmentReference(`m${n}`, 0));
    const decode = plan.encoding === 'gsm7' ? decodeGsm7 : decodeUcs2;
    const bound = plan.count === 1 ? (plan.encoding === 'gsm7' ? 160 : 140) : plan.encoding === 'gsm7' ? 159 : 140;
    let joined = '';
    for (const s of segs) {
      const udh = s.count > 1 ? 6 : 0;
      const data = s.payload.subarray(udh);
      if (s.payload.length > bound) fail(`#${n}: payload ${s.payload.length} over ${bound}`);
      if (plan.encoding === 'gsm7' && data.length > 0 && data[data.length - 1] === 0x1b) fail(`#${n}: escape split`);
      if (udh && (s.payload[4] !== segs.length || s.payload[5] !== s.index || s.esmClass !== 0x40)) fail(`#${n}: UDH`);
      if (!udh && s.esmClass !== 0) fail(`#${n}: esm_class of a single part`);
      joined += decode(data);
    }
    if (joined !== text) fail(`#${n}: built parts do not decode to the text`);
  }
  t.equal(bad, 0, '2,000 random texts hold every property');
});
