import t from 'tap';
import {
  formatIsoDuration,
  parseIsoDuration,
  parseSmppDlrDate,
  smppAbsoluteTime,
  smppRelativeValidity,
} from '../../src/core/duration.js';
import { GatewayError } from '../../src/core/errors.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

t.test('parseIsoDuration accepts', async (t) => {
  const ok: Array<[string, number]> = [
    ['P1D', D],
    ['PT1H30M', H + 30 * M],
    ['PT45S', 45 * S],
    ['PT0.5S', 500],
    ['PT0,5S', 500],
    ['PT1H', H],
    ['PT30M', 30 * M],
    ['P2DT12H', 2 * D + 12 * H],
    ['P1DT1H1M1.001S', D + H + M + S + 1],
    ['P1W', 7 * D],
    ['P1W1D', 8 * D],
    ['PT1.5H', 90 * M],
    ['P0.5D', 12 * H],
    ['PT0S', 0],
    ['P0D', 0],
    ['PT36H', 36 * H],
    ['PT0.0004S', 0],
    ['PT0.0006S', 1],
  ];
  for (const [s, ms] of ok) t.equal(parseIsoDuration(s), ms, s);
});

t.test('parseIsoDuration rejects', async (t) => {
  const bad = [
    '',
    'P',
    'PT',
    'P1DT',
    '1D',
    'T1H',
    'P1Y',
    'P1M', // a month has no fixed length
    'P1Y2M3D',
    'PT1S1M', // out of order
    'P1D2D',
    'PT1HT1M',
    'PT1.5H30M', // a fraction only on the last component
    'P1.5DT1H',
    'PT-1S',
    'P-1D',
    'pt1h',
    ' PT1H',
    'PT1H ',
    'PT.5S',
    'PT1.S',
    'PT1',
    'P1H',
    'PT1D',
    'P99999999999999999999D', // beyond safe integers
    `PT${'1'.repeat(70)}S`,
  ];
  for (const s of bad) t.equal(parseIsoDuration(s), undefined, JSON.stringify(s));
});

t.test('formatIsoDuration is canonical and round-trips', async (t) => {
  const cases: Array<[number, string]> = [
    [0, 'PT0S'],
    [1, 'PT0.001S'],
    [500, 'PT0.5S'],
    [1500, 'PT1.5S'],
    [45 * S, 'PT45S'],
    [M, 'PT1M'],
    [H + 30 * M, 'PT1H30M'],
    [D, 'P1D'],
    [D + 500, 'P1DT0.5S'],
    [D + H + M + S + 1, 'P1DT1H1M1.001S'],
    [10 * D + 5 * S, 'P10DT5S'],
    [1.4, 'PT0.001S'],
  ];
  for (const [ms, s] of cases) t.equal(formatIsoDuration(ms), s, `${ms} → ${s}`);
  for (const f of [() => formatIsoDuration(-1), () => formatIsoDuration(Number.NaN), () => formatIsoDuration(Infinity)]) {
    const err = t.throws(f) as unknown;
    t.ok(err instanceof GatewayError && err.code === 'INTERNAL');
  }

  // Seeded round-trip over a wide range (linear congruential: deterministic).
  let x = 12345;
  let bad = 0;
  for (let i = 0; i < 1000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const ms = (x % 1000) * (i % 3 === 0 ? 1 : i % 3 === 1 ? 997 : 9_999_991);
    if (parseIsoDuration(formatIsoDuration(ms)) !== ms) bad++;
  }
  t.equal(bad, 0, 'parse(format(ms)) === ms for 1,000 values');
});

t.test('smppRelativeValidity', async (t) => {
  const cases: Array<[number, string]> = [
    [H, '000000010000000R'],
    [0, '000000000000000R'],
    [S, '000000000001000R'],
    [1999, '000000000001000R'], // rounded down: never outlast the deadline
    [999, '000000000000000R'],
    [D + H + M + S, '000001010101000R'],
    [48 * H, '000002000000000R'],
    [23 * H + 59 * M + 59 * S, '000000235959000R'],
    [99 * D + 23 * H + 59 * M + 59 * S, '000099235959000R'],
    [100 * D, '000099235959000R'], // capped
    [10_000 * D, '000099235959000R'],
    [-5 * S, '000000000000000R'], // deadline already passed: expire now
  ];
  for (const [ms, s] of cases) {
    const v = smppRelativeValidity(ms);
    t.equal(v, s, `${ms} ms → ${s}`);
    t.equal(v.length, 16);
  }
  const err = t.throws(() => smppRelativeValidity(Number.NaN)) as unknown;
  t.ok(err instanceof GatewayError && err.code === 'INTERNAL');
});

t.test('smppAbsoluteTime is UTC YYMMDDhhmmsst00+', async (t) => {
  t.equal(smppAbsoluteTime(Date.UTC(2025, 0, 2, 3, 4, 5, 678)), '250102030405600+');
  t.equal(smppAbsoluteTime(Date.UTC(2000, 0, 1)), '000101000000000+');
  t.equal(smppAbsoluteTime(Date.UTC(2099, 11, 31, 23, 59, 59, 999)), '991231235959900+');
  t.equal(smppAbsoluteTime(Date.UTC(2024, 1, 29, 12, 0, 0, 50)), '240229120000000+');
  for (const f of [() => smppAbsoluteTime(Date.UTC(1999, 11, 31)), () => smppAbsoluteTime(Date.UTC(2100, 0, 1)), () => smppAbsoluteTime(Number.NaN)]) {
    const err = t.throws(f) as unknown;
    t.ok(err instanceof GatewayError && err.code === 'INTERNAL');
  }
});

t.test('parseSmppDlrDate', async (t) => {
  t.equal(parseSmppDlrDate('2501020304'), Date.UTC(2025, 0, 2, 3, 4));
  t.equal(parseSmppDlrDate('250102030405'), Date.UTC(2025, 0, 2, 3, 4, 5));
  t.equal(parseSmppDlrDate('2402290000'), Date.UTC(2024, 1, 29), 'a leap day');
  t.equal(parseSmppDlrDate('9912312359'), Date.UTC(2099, 11, 31, 23, 59));
  t.equal(parseSmppDlrDate('000101000000'), Date.UTC(2000, 0, 1));
  for (const s of [
    '',
    '25010203', // too short
    '25010203040', // 11
    '2501020304050', // 13
    '2513020304', // month 13
    '2500020304', // month 0
    '2501000304', // day 0
    '2501320304', // day 32
    '2502300000', // 30 February
    '2502290000', // not a leap year
    '2504310000', // 31 April
    '2501022404', // hour 24
    '2501020360', // minute 60
    '250102030460', // second 60
    'abcdefghij',
    '25010203046x',
    '2501 20304',
    '-501020304',
  ]) {
    t.equal(parseSmppDlrDate(s), undefined, JSON.stringify(s));
  }
  // Round-trip with the absolute format (seconds precision).
  const at = Date.UTC(2031, 6, 15, 8, 9, 10);
  t.equal(parseSmppDlrDate(smppAbsoluteTime(at).slice(0, 12)), at);
});
