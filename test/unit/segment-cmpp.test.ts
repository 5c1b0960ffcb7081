import t from 'tap';
import fc from 'fast-check';
import { decodeUcs2 } from '../../src/core/gsm7.js';
import { buildSegments, countSegments } from '../../src/core/segment.js';
import { chooseEncoding } from '../../src/core/gsm7.js';

/** Reference model: the text back from CMPP parts (UDH stripped; Msg_Fmt 0 ASCII, 8 UCS-2). */
function joined(parts: ReturnType<typeof buildSegments>): string {
  return parts.map((p) => {
    const body = p.esmClass === 0x40 ? p.payload.subarray(6) : p.payload;
    return p.dataCoding === 0 ? Buffer.from(body).toString('latin1') : decodeUcs2(body);
  }).join('');
}

t.test('cmpp profile: every part fits 140 octets, parts join back to the text, counts agree (property)', async (t) => {
  const text = fc.oneof(
    fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 1000 }),
    fc.string({ unit: 'grapheme', maxLength: 400 }),
    fc.string({ unit: fc.constantFrom('a', '€', 'é', '中', '@', '{', '😀'), maxLength: 400 }),
  );
  t.doesNotThrow(() => fc.assert(
    fc.property(text, fc.integer({ min: 0, max: 255 }), (s, ref) => {
      const parts = buildSegments(s, chooseEncoding(s), ref, 'cmpp');
      const count = countSegments(s, 'cmpp');
      if (parts.length !== count.count) return false;
      if (joined(parts) !== s) return false;
      for (const p of parts) {
        if (p.payload.length > 140) return false;
        if (p.dataCoding !== 0 && p.dataCoding !== 8) return false;
        if (parts.length > 1 && (p.payload[3] !== ref || p.payload[4] !== parts.length || p.payload[5] !== p.index)) return false;
      }
      // ASCII goes as Msg_Fmt 0 exactly when every character is below 0x80, whatever encoding ingest chose.
      const ascii = [...s].every((c) => c.charCodeAt(0) < 0x80);
      return parts.every((p) => p.dataCoding === (ascii ? 0 : 8));
    }),
    { seed: 20261206, numRuns: 1500 },
  ), 'holds');
});

t.test('the same text is 1 SMPP part and 2 CMPP parts; GSM-only characters make CMPP UCS-2', async (t) => {
  const a150 = 'x'.repeat(150);
  t.equal(countSegments(a150).count, 1);
  t.equal(countSegments(a150, 'cmpp').count, 2);
  t.equal(countSegments('x'.repeat(140), 'cmpp').count, 1);
  t.equal(countSegments('x'.repeat(141), 'cmpp').count, 2);
  t.equal(countSegments('x'.repeat(268), 'cmpp').count, 2);
  t.equal(countSegments('x'.repeat(269), 'cmpp').count, 3);
  const euro = '€'.repeat(10);
  t.equal(countSegments(euro).encoding, 'gsm7');
  t.equal(countSegments(euro, 'cmpp').encoding, 'ucs2');
  t.equal(buildSegments(euro, 'gsm7', 0, 'cmpp')[0]?.dataCoding, 8);
  t.equal(countSegments('a`b').encoding, 'ucs2', 'backtick is not GSM 03.38');
  t.equal(buildSegments('a`b', 'ucs2', 0, 'cmpp')[0]?.dataCoding, 0, 'but it is ASCII: Msg_Fmt 0 on CMPP');
});
