import t from 'tap';
import { maskNumber, normalizeNumber } from '../../src/core/phone.js';

const CHINA_ONLY = { allowInternational: false };
const WORLD = { allowInternational: true };

t.test('accepted Chinese mobile forms', async (t) => {
  const forms: Array<[string, string]> = [
    ['13800138000', '8613800138000'],
    ['+8613800138000', '8613800138000'],
    ['8613800138000', '8613800138000'],
    ['008613800138000', '8613800138000'],
    ['+86 138 0013 8000', '8613800138000'],
    ['138-0013-8000', '8613800138000'],
    ['138.0013.8000', '8613800138000'],
    ['(+86)13800138000', '8613800138000'],
    ['(86) 138 0013 8000', '8613800138000'],
    ['+86-138-0013-8000', '8613800138000'],
    [' 13800138000 ', '8613800138000'],
    ['\t13800138000', '8613800138000'],
    ['１３８００１３８０００', '8613800138000'], // full-width digits
    ['＋８６ １３８ ００１３ ８０００', '8613800138000'], // full-width plus and digits
    ['（＋８６）１３８００１３８０００', '8613800138000'], // full-width brackets
    ['138－0013－8000', '8613800138000'], // full-width hyphen
    ['138\u30000013\u30008000', '8613800138000'], // ideographic space
    ['138\u00a00013\u00a08000', '8613800138000'], // no-break space
    ['0086 138 0013 8000', '8613800138000'],
  ];
  for (const [raw, number] of forms) {
    t.same(normalizeNumber(raw, CHINA_ONLY), { ok: true, number }, JSON.stringify(raw));
    t.same(normalizeNumber(raw, WORLD), { ok: true, number }, `${JSON.stringify(raw)} (international allowed)`);
  }
  // Every second digit 3..9 is a mobile segment.
  for (let d = 3; d <= 9; d++) {
    t.same(normalizeNumber(`1${d}912345678`, CHINA_ONLY), { ok: true, number: `861${d}912345678` });
  }
});

t.test('rejected forms, with a reason', async (t) => {
  const rejects: Array<[string, RegExp]> = [
    ['', /empty/],
    ['   ', /empty/],
    ['()-', /empty/],
    ['1380013800', /11 digits, not 10/],
    ['138001380001', /11 digits, not 12/],
    ['+86138001380', /11 digits, not 9/],
    ['86138001380001', /11 digits/],
    ['12800138000', /13 to 19/],
    ['10800138000', /13 to 19/],
    ['11800138000', /13 to 19/],
    ['23800138000', /13 to 19/],
    ['+8612800138000', /13 to 19/],
    ['+861012345678', /11 digits, not 10/], // a Beijing landline (010)
    ['+8601012345678', /13 to 19/],
    ['1380013800a', /only digits/],
    ['abc', /only digits/],
    ['138 0013 8000 ext 1', /only digits/],
    ['138/0013/8000', /only digits/],
    ['138*0013*8000', /only digits/],
    ['13800138000+', /plus sign/],
    ['++8613800138000', /plus sign/],
    ['86+13800138000', /plus sign/],
    ['1'.repeat(41), /too long/],
    ['00', /no digits follow/],
    ['+', /empty/],
  ];
  for (const [raw, reason] of rejects) {
    for (const opts of [CHINA_ONLY, WORLD]) {
      const r = normalizeNumber(raw, opts);
      t.equal(r.ok, false, `${JSON.stringify(raw)} is rejected`);
      if (!r.ok) t.match(r.reason, reason, `${JSON.stringify(raw)}: ${r.reason}`);
    }
  }
});

t.test('international numbers only when allowed', async (t) => {
  const intl: Array<[string, string]> = [
    ['+447911123456', '447911123456'],
    ['00447911123456', '447911123456'],
    ['+1 (415) 555-2671', '14155552671'],
    ['+852 9123 4567', '85291234567'],
    ['+1234567', '1234567'], // 7 digits, the shortest
    ['+123456789012345', '123456789012345'], // 15 digits, the longest
  ];
  for (const [raw, number] of intl) {
    t.same(normalizeNumber(raw, WORLD), { ok: true, number }, `${raw} allowed`);
    const r = normalizeNumber(raw, CHINA_ONLY);
    t.equal(r.ok, false, `${raw} refused by default`);
    if (!r.ok) t.match(r.reason, /international numbers are not allowed/);
  }
  const bad: Array<[string, RegExp]> = [
    ['+123456', /7 to 15 digits/],
    ['+1234567890123456', /7 to 15 digits/],
    ['+0441234567', /does not start with 0/],
    ['0000441234567', /does not start with 0/],
  ];
  for (const [raw, reason] of bad) {
    const r = normalizeNumber(raw, WORLD);
    t.equal(r.ok, false, `${raw} rejected`);
    if (!r.ok) t.match(r.reason, reason);
  }
  // Bare digits are always read as Chinese: an 11-digit NANP number needs its plus.
  const bare = normalizeNumber('14155552671', WORLD);
  t.same(bare, { ok: true, number: '8614155552671' }, 'bare 1415… is a Chinese 141 number');
  const bareShort = normalizeNumber('447911123456', WORLD);
  t.equal(bareShort.ok, false, 'bare non-Chinese digits are not guessed as international');
});

t.test('maskNumber never returns the clear number', async (t) => {
  const cases: Array<[string, string]> = [
    ['8613800138000', '138****8000'],
    ['8618612345678', '186****5678'],
    ['13800138000', '138****8000'],
    ['447911123456', '447****3456'],
    ['14155552671', '141****2671'],
    ['123456789012345', '123****2345'],
    ['852912345', '852****345'],
    ['1234567', '123****67'],
    ['12345678', '123****78'],
    ['123456', '****'],
    ['1', '****'],
    ['', '****'],
  ];
  for (const [number, masked] of cases) {
    const m = maskNumber(number);
    t.equal(m, masked, `${number} → ${masked}`);
    t.not(m, number, 'not the clear number');
    t.ok(m.includes('****'));
  }
  // Every hidden digit stays hidden: no masked output contains the middle digits.
  t.notOk(maskNumber('8613800138000').includes('0013'), 'the middle four digits are gone');
});
