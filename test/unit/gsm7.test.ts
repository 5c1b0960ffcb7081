import t from 'tap';
import {
  chooseEncoding,
  decodeGsm7,
  decodeUcs2,
  encodeGsm7,
  encodeUcs2,
  gsm7Length,
  gsm7Septets,
  isGsm7,
} from '../../src/core/gsm7.js';
import { GatewayError } from '../../src/core/errors.js';

/**
 * The GSM 03.38 basic table written out independently of the source: code
 * points per septet, from 3GPP TS 23.038 §6.2.1. ASCII is identity in
 * 0x20..0x7F except where overridden.
 */
function specBasicTable(): number[] {
  const table: number[] = [];
  for (let i = 0; i < 128; i++) table.push(i);
  const low = [
    0x40, 0xa3, 0x24, 0xa5, 0xe8, 0xe9, 0xf9, 0xec, 0xf2, 0xc7, 0x0a, 0xd8, 0xf8, 0x0d, 0xc5, 0xe5,
    0x394, 0x5f, 0x3a6, 0x393, 0x39b, 0x3a9, 0x3a0, 0x3a8, 0x3a3, 0x398, 0x39e, 0x1b, 0xc6, 0xe6, 0xdf, 0xc9,
  ];
  low.forEach((cp, i) => (table[i] = cp));
  table[0x24] = 0xa4; // ¤ replaces $ (which is at 0x02)
  table[0x40] = 0xa1; // ¡ replaces @ (at 0x00)
  table[0x5b] = 0xc4; // Ä
  table[0x5c] = 0xd6; // Ö
  table[0x5d] = 0xd1; // Ñ
  table[0x5e] = 0xdc; // Ü
  table[0x5f] = 0xa7; // §
  table[0x60] = 0xbf; // ¿
  table[0x7b] = 0xe4; // ä
  table[0x7c] = 0xf6; // ö
  table[0x7d] = 0xf1; // ñ
  table[0x7e] = 0xfc; // ü
  table[0x7f] = 0xe0; // à
  return table;
}

const EXTENSION: Array<[string, number]> = [
  ['\f', 0x0a],
  ['^', 0x14],
  ['{', 0x28],
  ['}', 0x29],
  ['\\', 0x2f],
  ['[', 0x3c],
  ['~', 0x3d],
  [']', 0x3e],
  ['|', 0x40],
  ['€', 0x65],
];

t.test('every basic-table character encodes to its septet and round-trips', async (t) => {
  const table = specBasicTable();
  let checked = 0;
  for (let code = 0; code < 128; code++) {
    if (code === 0x1b) continue; // ESC is not a character
    const ch = String.fromCharCode(table[code] as number);
    const label = `0x${code.toString(16)} ${JSON.stringify(ch)}`;
    t.ok(isGsm7(ch), `${label} is GSM`);
    t.equal(gsm7Length(ch), 1, `${label} is one septet`);
    t.equal(gsm7Septets(ch.charCodeAt(0)), 1);
    t.same([...encodeGsm7(ch)], [code], `${label} encodes`);
    t.equal(decodeGsm7(Uint8Array.of(code)), ch, `${label} decodes`);
    checked++;
  }
  t.equal(checked, 127);
  // The named characters of the brief, by eye.
  const named = '@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ \n\r';
  t.ok(isGsm7(named));
  t.equal(gsm7Length(named), named.length);
  const all = table.filter((_, i) => i !== 0x1b).map((cp) => String.fromCharCode(cp)).join('');
  t.equal(decodeGsm7(encodeGsm7(all)), all, 'the whole table round-trips as one string');
  t.equal(encodeGsm7(all).length, 127);
});

t.test('every extension character costs two septets: ESC + code', async (t) => {
  for (const [ch, code] of EXTENSION) {
    t.ok(isGsm7(ch), `${JSON.stringify(ch)} is GSM`);
    t.equal(gsm7Length(ch), 2, `${JSON.stringify(ch)} counts 2`);
    t.equal(gsm7Septets(ch.charCodeAt(0)), 2);
    t.same([...encodeGsm7(ch)], [0x1b, code]);
    t.equal(decodeGsm7(Uint8Array.of(0x1b, code)), ch);
  }
  const text = 'a{b}€';
  t.equal(gsm7Length(text), 8);
  t.same([...encodeGsm7(text)], [0x61, 0x1b, 0x28, 0x62, 0x1b, 0x29, 0x1b, 0x65]);
});

t.test('characters outside the alphabet', async (t) => {
  // ç is not Ç; backtick, tab and ESC itself are not characters of the table.
  for (const ch of ['ç', 'á', 'ê', '`', '\t', '\x1b', '\u00a0', '\u0301', '中', '，']) {
    t.notOk(isGsm7(ch), `${JSON.stringify(ch)} is not GSM`);
    t.equal(gsm7Length(ch), -1, `${JSON.stringify(ch)} has no septet length`);
    t.equal(gsm7Septets(ch.charCodeAt(0)), 0);
  }
  t.notOk(isGsm7('😀'), 'an emoji is not GSM');
  t.equal(gsm7Length('abc😀'), -1);
  t.notOk(isGsm7('Δ\u0301'), 'a combining mark is not GSM');
  t.equal(gsm7Length(''), 0);
  t.ok(isGsm7(''), 'empty text is GSM');
  t.equal(gsm7Septets(0x10000), 0, 'beyond the table');
  t.equal(gsm7Septets(0xffff), 0);
});

t.test('encodeGsm7 refuses non-GSM text with the index', async (t) => {
  const err = t.throws(() => encodeGsm7('abc中')) as unknown;
  t.ok(err instanceof GatewayError);
  t.equal((err as GatewayError).code, 'VALIDATION');
  t.match((err as GatewayError).message, /index 3/);
});

t.test('chooseEncoding', async (t) => {
  t.equal(chooseEncoding('Hello, world!'), 'gsm7');
  t.equal(chooseEncoding('Price: 5€ [approx] {ok}'), 'gsm7', 'extension characters stay GSM');
  t.equal(chooseEncoding(''), 'gsm7');
  t.equal(chooseEncoding('Hello ç'), 'ucs2', 'one non-GSM character switches the whole text');
  t.equal(chooseEncoding('会议通知'), 'ucs2');
  t.equal(chooseEncoding('ok 👍'), 'ucs2');
});

t.test('decodeGsm7 edge cases', async (t) => {
  t.equal(decodeGsm7(Uint8Array.of(0x1b, 0x41)), 'A', 'ESC + unknown extension shows the basic character');
  t.equal(decodeGsm7(Uint8Array.of(0x41, 0x1b, 0x1b, 0x42)), 'A B', 'ESC ESC shows a space');
  t.equal(decodeGsm7(Uint8Array.of(0x41, 0x1b)), 'A ', 'a trailing ESC shows a space');
  t.equal(decodeGsm7(Uint8Array.of(0x41, 0x80, 0xff)), 'A\ufffd\ufffd', 'octets above 0x7F are not septets');
  t.equal(decodeGsm7(Uint8Array.of(0x1b, 0x90)), '\ufffd');
  t.equal(decodeGsm7(new Uint8Array(0)), '');
  const long = 'x{'.repeat(6000);
  t.equal(decodeGsm7(encodeGsm7(long)), long, 'a long text (chunked decode) round-trips');
});

t.test('UCS-2 is UTF-16BE with surrogate pairs', async (t) => {
  t.same([...encodeUcs2('A中')], [0x00, 0x41, 0x4e, 0x2d]);
  t.same([...encodeUcs2('😀')], [0xd8, 0x3d, 0xde, 0x00], 'U+1F600 as a surrogate pair');
  t.equal(encodeUcs2('').length, 0);
  const text = '关于召开全市防汛工作紧急会议的通知 😀 €{}';
  t.equal(decodeUcs2(encodeUcs2(text)), text);
  t.equal(decodeUcs2(Uint8Array.of(0x00, 0x41, 0x00)), 'A\ufffd', 'an odd trailing octet');
  const long = '中😀'.repeat(3000);
  t.equal(decodeUcs2(encodeUcs2(long)), long, 'a long text round-trips');
});

t.test('seeded random round-trips', async (t) => {
  let seed = 0x2545f491;
  const rand = (n: number): number => {
    // mulberry32: deterministic, no Math.random.
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return (((x ^ (x >>> 14)) >>> 0) % n);
  };
  const alphabet = specBasicTable()
    .filter((_, i) => i !== 0x1b)
    .map((cp) => String.fromCharCode(cp))
    .concat(EXTENSION.map(([ch]) => ch));
  let failures = 0;
  for (let n = 0; n < 500; n++) {
    let gsm = '';
    let ucs = '';
    const len = rand(200);
    for (let i = 0; i < len; i++) {
      gsm += alphabet[rand(alphabet.length)];
      ucs += String.fromCodePoint(rand(4) === 0 ? 0x1f300 + rand(600) : 0x20 + rand(0xd000));
    }
    if (decodeGsm7(encodeGsm7(gsm)) !== gsm) failures++;
    if (encodeGsm7(gsm).length !== gsm7Length(gsm)) failures++;
    if (decodeUcs2(encodeUcs2(ucs)) !== ucs) failures++;
  }
  t.equal(failures, 0, '500 GSM and 500 UCS-2 random texts round-trip');
});
