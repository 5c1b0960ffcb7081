/**
 * The GB18030 encoder (src/core/gb18030.ts) against Node's own decoder, the
 * reference model: encode then TextDecoder('gb18030') decode gives the text
 * back, for random text and for every BMP code point; and the GB18030
 * segment plan (profile cmpp-gb18030): parts ≤ 140 octets, never a split
 * character (each part decodes alone), parts join back to the text.
 */
import t from 'tap';
import fc from 'fast-check';
import { encodeGb18030, gb18030CharBytes, gb18030Length, gb18030TableBuilt } from '../../src/core/gb18030.js';
import { decodeUcs2 } from '../../src/core/gsm7.js';
import { buildSegments, countSegments } from '../../src/core/segment.js';
import { chooseEncoding } from '../../src/core/gsm7.js';

const decoder = new TextDecoder('gb18030', { fatal: true });

t.test('the table is built lazily: ASCII text does not build it', async (t) => {
  t.same([...encodeGb18030('plain ASCII 123')], [...Buffer.from('plain ASCII 123', 'latin1')]);
  t.equal(gb18030TableBuilt(), false, 'no table for ASCII');
  encodeGb18030('中');
  t.equal(gb18030TableBuilt(), true);
});

t.test('known codes: GB2312, the 4-byte BMP area, supplementary planes, the euro', async (t) => {
  const hex = (s: string): string => Buffer.from(encodeGb18030(s)).toString('hex');
  t.equal(hex('中文'), 'd6d0cec4');
  t.equal(hex('€'), 'a2e3');
  t.equal(hex('\u0080'), '81308130', 'first 4-byte code');
  t.equal(hex('\uffff'), '8431a439', 'last BMP 4-byte code');
  t.equal(hex('😀'), '9439fc36', 'U+1F600');
  t.equal(hex('\u{10000}'), '90308130', 'first supplementary code');
  t.equal(hex('\u{10ffff}'), 'e3329a35', 'last code point');
  t.equal(gb18030Length('a中😀'), 1 + 2 + 4);
  t.equal(gb18030CharBytes('😀', 0), 4);
});

t.test('every BMP code point either round-trips through the decoder or is refused; refused ones are never decoded', async (t) => {
  let refused = 0;
  for (let u = 0; u < 0x10000; u++) {
    if (u >= 0xd800 && u <= 0xdfff) continue;
    const c = String.fromCharCode(u);
    if (gb18030Length(c) < 0) {
      refused++;
      t.ok(u >= 0xe000 && u <= 0xf8ff, `U+${u.toString(16)} refused: only private-use code points may be`);
      continue;
    }
    const bytes = encodeGb18030(c);
    if (decoder.decode(bytes) !== c) t.fail(`U+${u.toString(16)} does not round-trip`);
  }
  t.ok(refused < 64, `${refused} private-use code points without a code`);
  t.equal(gb18030Length('a\ud800'), -1, 'lone high surrogate');
  t.equal(gb18030Length('\udc00b'), -1, 'lone low surrogate');
  t.throws(() => encodeGb18030('\ud800'), { code: 'VALIDATION' });
});

const encodable = (s: string): boolean => gb18030Length(s) >= 0;

t.test('encode then decode is the identity on random text (property)', async (t) => {
  const text = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: fc.constantFrom('a', '1', '中', '文', '【', '】', '€', 'é', '😀', '\u0080', '\uffff', '\u00b7'), maxLength: 300 }),
  );
  t.doesNotThrow(() => fc.assert(
    fc.property(text, (s) => {
      const n = gb18030Length(s);
      if (n < 0) {
        // Refused only for a lone surrogate or a private-use code point.
        return [...s].some((c) => {
          const u = c.codePointAt(0) as number;
          return (u >= 0xd800 && u <= 0xdfff) || (u >= 0xe000 && u <= 0xf8ff);
        });
      }
      const bytes = encodeGb18030(s);
      return bytes.length === n && decoder.decode(bytes) === s;
    }),
    { seed: 20261218, numRuns: 3000 },
  ), 'holds');
});

/** Reference model of a CMPP part: Msg_Fmt 0 Latin-1, 8 UCS-2, 15 GB18030 (strict). */
function partText(p: ReturnType<typeof buildSegments>[number]): string {
  const body = p.esmClass === 0x40 ? p.payload.subarray(6) : p.payload;
  if (p.dataCoding === 15) return decoder.decode(body); // throws on a split character
  return p.dataCoding === 0 ? Buffer.from(body).toString('latin1') : decodeUcs2(body);
}

t.test('cmpp-gb18030 profile: parts ≤ 140 octets, no character split, parts join back, counts agree (property)', async (t) => {
  const text = fc.oneof(
    fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 600 }),
    fc.string({ unit: 'grapheme', maxLength: 400 }),
    fc.string({ unit: fc.constantFrom('a', '9', '中', '【', '😀', '\u0080', '€'), maxLength: 500 }),
    fc.string({ unit: fc.constantFrom('中', '😀', 'a', '\ud800'), maxLength: 300 }),
  );
  t.doesNotThrow(() => fc.assert(
    fc.property(text, fc.integer({ min: 0, max: 255 }), (s, ref) => {
      const parts = buildSegments(s, chooseEncoding(s), ref, 'cmpp-gb18030');
      if (parts.length !== countSegments(s, 'cmpp-gb18030').count) return false;
      if (parts.map(partText).join('') !== s) return false;
      const ascii = [...s].every((c) => c.charCodeAt(0) < 0x80);
      const fmt = ascii ? 0 : encodable(s) ? 15 : 8;
      for (const p of parts) {
        if (p.payload.length > 140 || p.dataCoding !== fmt) return false;
        if (parts.length > 1 && (p.payload[0] !== 5 || p.payload[3] !== ref || p.payload[4] !== parts.length || p.payload[5] !== p.index)) return false;
      }
      // Greedy: a part ends only where the next character would not fit.
      if (fmt === 15 && parts.length > 1) {
        for (let k = 0; k + 1 < parts.length; k++) {
          const next = partText(parts[k + 1] as (typeof parts)[number]);
          const first = gb18030CharBytes(next, 0);
          if ((parts[k] as (typeof parts)[number]).payload.length - 6 + first <= 134) return false;
        }
      }
      return true;
    }),
    { seed: 20261219, numRuns: 2000 },
  ), 'holds');
});

t.test('cmpp-gb18030 boundaries: 70 Chinese characters are one part, 71 two; a 4-octet character is never split', async (t) => {
  t.equal(countSegments('中'.repeat(70), 'cmpp-gb18030').count, 1);
  t.equal(countSegments('中'.repeat(71), 'cmpp-gb18030').count, 2);
  t.equal(countSegments('中'.repeat(134), 'cmpp-gb18030').count, 2, '268 octets: two parts of 134');
  t.equal(countSegments('中'.repeat(135), 'cmpp-gb18030').count, 3);
  // Mixed text is shorter than UCS-2: 100 Chinese + 60 digits = 260 octets = 2 parts; UCS-2 160 units = 3 parts.
  const mixed = '中'.repeat(100) + '1'.repeat(60);
  t.equal(countSegments(mixed, 'cmpp-gb18030').count, 2);
  t.equal(countSegments(mixed, 'cmpp').count, 3);
  // 131 ASCII + 中 = 133 octets, then 😀 (4) does not fit in 134: it starts part 2.
  const edge = 'a'.repeat(131) + '中' + '😀' + '中'.repeat(3);
  const parts = buildSegments(edge, 'ucs2', 7, 'cmpp-gb18030');
  t.equal(parts.length, 2);
  t.equal(parts[0]?.payload.length, 6 + 133, 'first part ends before the emoji');
  t.equal(partText(parts[1]!), '😀中中中');
  t.equal(buildSegments('中\ud800', 'ucs2', 0, 'cmpp-gb18030')[0]?.dataCoding, 8, 'not encodable: UCS-2');
  t.equal(buildSegments('abc', 'gsm7', 0, 'cmpp-gb18030')[0]?.dataCoding, 0, 'ASCII stays Msg_Fmt 0');
});
