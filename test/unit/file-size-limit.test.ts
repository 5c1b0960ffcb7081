/**
 * parseFileSizeLimit (src/storage/health.ts): the soft RLIMIT_FSIZE from the
 * text of /proc/<pid>/limits, the other limits and odd text ignored.
 */
import t from 'tap';
import fc from 'fast-check';
import { parseFileSizeLimit } from '../../src/storage/health.js';

const HEADER = 'Limit                     Soft Limit           Hard Limit           Units     \n';
const row = (name: string, soft: string, hard: string, units: string): string => `${name.padEnd(26)}${soft.padEnd(21)}${hard.padEnd(21)}${units.padEnd(10)}\n`;

t.test('the soft limit of "Max file size", in bytes', async (t) => {
  const text = (soft: string): string => HEADER + row('Max cpu time', 'unlimited', 'unlimited', 'seconds') + row('Max file size', soft, 'unlimited', 'bytes') + row('Max core file size', '0', 'unlimited', 'bytes');
  t.equal(parseFileSizeLimit(text('unlimited')), undefined, 'unlimited');
  t.equal(parseFileSizeLimit(text('6291456')), 6_291_456);
  t.equal(parseFileSizeLimit(text('0')), 0, 'a limit of 0 is a limit');
  t.equal(parseFileSizeLimit(HEADER + row('Max core file size', '4096', 'unlimited', 'bytes')), undefined, 'the core file limit is not the file-size limit');
  t.equal(parseFileSizeLimit(''), undefined, 'empty');
  t.equal(parseFileSizeLimit(text('-1')), undefined, 'not a count');
  t.equal(parseFileSizeLimit(text('99999999999999999999')), undefined, 'beyond a safe integer');
});

t.test('any soft limit round-trips; any other text gives a number only from its own row', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.option(fc.maxSafeNat(), { nil: undefined }), fc.array(fc.tuple(fc.constantFrom('Max cpu time', 'Max stack size', 'Max core file size', 'Max open files'), fc.nat().map(String)), { maxLength: 5 }), (soft, others) => {
    const rows = others.map(([name, v]) => row(name, v, 'unlimited', 'bytes'));
    rows.splice(others.length >> 1, 0, row('Max file size', soft === undefined ? 'unlimited' : String(soft), 'unlimited', 'bytes'));
    return parseFileSizeLimit(HEADER + rows.join('')) === soft;
  })), 'the soft limit, whatever rows surround it');
  t.doesNotThrow(() => fc.assert(fc.property(fc.string(), (junk) => {
    const v = parseFileSizeLimit(junk);
    return v === undefined || (Number.isSafeInteger(v) && v >= 0 && junk.includes('Max file size'));
  })), 'random text: nothing, or a count from a "Max file size" row');
});
