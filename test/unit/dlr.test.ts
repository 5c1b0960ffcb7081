import t from 'tap';
import fc from 'fast-check';
import {
  canonicalOperatorId,
  messageStateToState,
  receiptOperatorId,
  parseDlrDate,
  parseDlrText,
  statToState,
  DlrScan,
  scanDlrText,
} from '../../src/core/dlr.js';

/**
 * The receipt text parser as it was first written, with regular expressions
 * (one per key): the reference the hand-written scanner must agree with.
 */
function parseDlrTextByRegex(input: string, utcOffsetMinutes = 0): Record<string, unknown> | undefined {
  const ID_RE = /(?:^|\s)id:\s*([^\s:]+)(?=\s|$)/i;
  const SUB_RE = /(?:^|\s)sub:\s*([^\s:]+)(?=\s|$)/i;
  const DLVRD_RE = /(?:^|\s)dlvrd:\s*([^\s:]+)(?=\s|$)/i;
  const SUBMIT_DATE_RE = /(?:^|\s)submit[ _]?date:\s*(\d{10,12})(?!\d)/i;
  const DONE_DATE_RE = /(?:^|\s)done[ _]?date:\s*(\d{10,12})(?!\d)/i;
  const STAT_RE = /(?:^|\s)stat:\s*([A-Za-z_]+)(?=\s|$)/i;
  const ERR_RE = /(?:^|\s)err:\s*([^\s:]+)(?=\s|$)/i;
  const TEXT_RE = /(?:^|\s)text:/i;
  let head = input.length > 2048 ? input.slice(0, 2048) : input;
  let text: string | undefined;
  const m = TEXT_RE.exec(head);
  if (m) {
    text = head.slice(m.index + m[0].length);
    head = head.slice(0, m.index);
  }
  const id = ID_RE.exec(head)?.[1];
  if (id === undefined || id.length === 0) return undefined;
  const out: Record<string, unknown> = { id };
  const sub = SUB_RE.exec(head)?.[1];
  if (sub !== undefined) out['sub'] = sub;
  const dlvrd = DLVRD_RE.exec(head)?.[1];
  if (dlvrd !== undefined) out['dlvrd'] = dlvrd;
  const sd = SUBMIT_DATE_RE.exec(head)?.[1];
  if (sd !== undefined) {
    const ms = parseDlrDate(sd, utcOffsetMinutes);
    if (ms !== undefined) out['submitDate'] = ms;
  }
  const dd = DONE_DATE_RE.exec(head)?.[1];
  if (dd !== undefined) {
    const ms = parseDlrDate(dd, utcOffsetMinutes);
    if (ms !== undefined) out['doneDate'] = ms;
  }
  const stat = STAT_RE.exec(head)?.[1];
  if (stat !== undefined) out['stat'] = stat.toUpperCase();
  const err = ERR_RE.exec(head)?.[1];
  if (err !== undefined) out['err'] = err;
  if (text !== undefined) out['text'] = text;
  return out;
}

/** Receipt-like texts: keys in any case and spelling, values right and wrong, every kind of white space, junk. */
const space = fc.constantFrom(' ', ' ', ' ', '  ', '\t', '\n', '\r\n', '\u00a0', '\u3000', '\u2028', '\ufeff', '\u180e', '\u200b', '');
const key = fc.constantFrom(
  'id:', 'ID:', 'Id:', 'iD:', 'sub:', 'SUB:', 'dlvrd:', 'Dlvrd:', 'submit date:', 'Submit Date:', 'submit_date:', 'submitdate:', 'SUBMIT  date:',
  'done date:', 'Done Date:', 'done_date:', 'donedate:', 'done-date:', 'stat:', 'Stat:', 'STAT:', 'err:', 'Err:', 'text:', 'Text:', 'TEXT:',
  'xid:', 'id', 'idd:', 'sta:', 'stat', 'date:', 'submit', ':', 'ſtat:', 'ıd:', 'K',
  'submit\tdate:', 'submit\u00a0date:', 'done\u3000date:', 'submit__date:', 'done  date:', 'xsubmit date:', 'done date date:', 'submit_Date:',
);
const value = fc.oneof(
  fc.stringMatching(/^[0-9]{8,14}$/),
  fc.stringMatching(/^[0-9a-fA-F]{1,12}$/),
  fc.constantFrom('DELIVRD', 'undeliv', 'Rejectd', 'EXPIRED', 'ACCEPTD', 'UN_KNOWN', 'DEL1VRD', 'x', '0x0b', '000', 'a:b', ':', '', '会议', '2502300000', '2402291200', '251122183059', '25112218300', '2511221830', '\u0131', '_'),
  fc.string({ maxLength: 6 }),
  fc.string({ unit: 'binary', maxLength: 4 }),
);
const receiptLike = fc.array(fc.tuple(space, key, space, value), { maxLength: 12 }).map((parts) => parts.map((p) => p.join('')).join(''));

t.test('the Appendix B text', async (t) => {
  const r = parseDlrText('id:0123456789 sub:001 dlvrd:001 submit date:2511221830 done date:2511221831 stat:DELIVRD err:000 text:Hello world');
  t.same(r, {
    id: '0123456789',
    sub: '001',
    dlvrd: '001',
    submitDate: Date.UTC(2025, 10, 22, 18, 30),
    doneDate: Date.UTC(2025, 10, 22, 18, 31),
    stat: 'DELIVRD',
    err: '000',
    text: 'Hello world',
  });
});

t.test('variants seen from real SMSCs', async (t) => {
  // Capitalised keys, 12-digit dates, hex id (Kannel-fronted SMSCs, jasmin)
  const a = parseDlrText('ID:7B1F2C sub:001 dlvrd:001 Submit Date:251122183005 Done Date:251122183107 Stat:DELIVRD Err:000 Text:...');
  t.equal(a?.id, '7B1F2C');
  t.equal(a?.submitDate, Date.UTC(2025, 10, 22, 18, 30, 5));
  t.equal(a?.doneDate, Date.UTC(2025, 10, 22, 18, 31, 7));
  t.equal(a?.stat, 'DELIVRD');
  t.equal(a?.text, '...');

  // extra spaces, underscores in the date keys, lower-case stat, hex err
  const b = parseDlrText('  id:42   sub:1  dlvrd:0 submit_date:2501010000  done_date:2501010005 stat:undeliv   err:0x0b ');
  t.equal(b?.id, '42');
  t.equal(b?.sub, '1');
  t.equal(b?.dlvrd, '0');
  t.equal(b?.stat, 'UNDELIV');
  t.equal(b?.err, '0x0b');
  t.equal(b?.doneDate, Date.UTC(2025, 0, 1, 0, 5));
  t.equal(b?.text, undefined);

  // missing fields
  const c = parseDlrText('id:abc stat:EXPIRED');
  t.same(c, { id: 'abc', stat: 'EXPIRED' });

  // text contains things that look like keys; they must not override the real ones
  const d = parseDlrText('id:1 sub:001 dlvrd:001 submit date:2511221830 done date:2511221831 stat:DELIVRD err:000 Text:id:999 stat:REJECTD 会议通知');
  t.equal(d?.id, '1');
  t.equal(d?.stat, 'DELIVRD');
  t.equal(d?.text, 'id:999 stat:REJECTD 会议通知');

  // text first would be odd, but the keys after it belong to the text
  t.equal(parseDlrText('text:id:5 stat:DELIVRD'), undefined, 'an id only inside text: is not an id');

  // invalid date values are dropped, the rest kept
  const e = parseDlrText('id:9 submit date:2513401830 done date:25112218 stat:DELIVRD');
  t.equal(e?.submitDate, undefined, 'month 13 rejected');
  t.equal(e?.doneDate, undefined, '8 digits rejected');
  t.equal(e?.stat, 'DELIVRD');
});

t.test('not a receipt', async (t) => {
  t.equal(parseDlrText(''), undefined);
  t.equal(parseDlrText('hello, are you coming to the meeting?'), undefined);
  t.equal(parseDlrText('xid:12 stat:DELIVRD'), undefined, 'key must stand alone');
  t.equal(parseDlrText('id: sub:001 stat:DELIVRD'), undefined, 'an empty id is no id');
  t.equal(parseDlrText(`id:1 ${'x'.repeat(100_000)}`)?.id, '1', 'long input is cut, not choked on');
});

t.test('receipt dates', async (t) => {
  t.equal(parseDlrDate('2511221830'), Date.UTC(2025, 10, 22, 18, 30));
  t.equal(parseDlrDate('251122183059'), Date.UTC(2025, 10, 22, 18, 30, 59));
  t.equal(parseDlrDate('2511221830', 480), Date.UTC(2025, 10, 22, 10, 30), 'SMSC local time at UTC+8');
  t.equal(parseDlrDate('2502300000'), undefined, '30 February');
  t.equal(parseDlrDate('2402291200'), Date.UTC(2024, 1, 29, 12, 0), '29 February in a leap year');
  t.equal(parseDlrDate('2502291200'), undefined, '29 February otherwise');
  t.equal(parseDlrDate('2504310000'), undefined, '31 April');
  t.equal(parseDlrDate('2512310000'), Date.UTC(2025, 11, 31), '31 December');
  t.equal(parseDlrDate('25-1221830'), undefined);
  t.equal(parseDlrDate('2511222460'), undefined);
  t.equal(parseDlrDate('25112218300'), undefined, '11 digits');
  t.equal(parseDlrDate('25112218a0'), undefined);
});

t.test('stat words and message_state values', async (t) => {
  const stats: [string, string | undefined][] = [
    ['DELIVRD', 'delivered'], ['UNDELIV', 'undeliverable'], ['EXPIRED', 'expired'], ['REJECTD', 'rejected'],
    ['DELETED', 'failed'], ['UNKNOWN', 'failed'], ['ACCEPTD', 'accepted'], ['ENROUTE', 'enroute'],
    ['delivered', 'delivered'], ['Undeliverable', 'undeliverable'], ['BOGUS', undefined], ['', undefined],
  ];
  for (const [s, want] of stats) t.equal(statToState(s), want, s);
  const states: [number, string | undefined][] = [
    [1, 'enroute'], [2, 'delivered'], [3, 'expired'], [4, 'failed'], [5, 'undeliverable'],
    [6, 'accepted'], [7, 'failed'], [8, 'rejected'], [0, 'enroute'], [9, 'failed'], [10, undefined], [255, undefined],
  ];
  for (const [n, want] of states) t.equal(messageStateToState(n), want, String(n));
});

t.test('operator message ids: canonical form', async (t) => {
  t.equal(canonicalOperatorId('7B1F2C'), '7b1f2c');
  t.equal(canonicalOperatorId(' 0008068908 '), '8068908');
  t.equal(canonicalOperatorId('0000'), '0', 'all zeros keeps one');
  t.equal(canonicalOperatorId('a1b2-C3'), 'a1b2-c3', 'non-numeric ids are only lower-cased');
  t.equal(canonicalOperatorId(''), '');
});

t.test('operator message ids: a receipt in the other base gets its submit\'s one key', async (t) => {
  // The key a submit is indexed under: its resp id normalised.
  const key = canonicalOperatorId;

  // submit_sm_resp hex (e.g. jasmin/Kannel with a hex SMSC), receipt text decimal
  t.equal(receiptOperatorId('8068908', 'decimal', 'hex'), key('7B1F2C'), 'decimal receipt → hex key');
  t.equal(receiptOperatorId('0008068908', 'decimal', 'hex'), key('7B1F2C'), 'zero-padded decimal receipt');
  t.equal(receiptOperatorId(String(0x0a0b0c0d0e0f1011n), 'decimal', 'hex'), key('0A0B0C0D0E0F1011'), '64-bit id');

  // submit_sm_resp decimal, receipt hex
  t.equal(receiptOperatorId('7B1F2C', 'hex', 'decimal'), key('8068908'), 'hex receipt → decimal key');
  t.equal(receiptOperatorId('FFFFFFFFFFFFFFFF', 'hex', 'decimal'), key('18446744073709551615'), 'max uint64');
  t.equal(receiptOperatorId('10', 'hex', 'decimal'), '16', 'an all-digit hex receipt id is read in the base it is written in');
  t.equal(receiptOperatorId('7b', 'same', 'decimal'), '123', 'a letter means hex on a decimal account, whatever is configured');

  // same base: only case, white space and padding
  t.equal(receiptOperatorId('7b1f2c', 'same', 'hex'), key('7B1F2C'));
  t.equal(receiptOperatorId(' 00008068908', 'same', 'decimal'), key('8068908'));
  t.equal(receiptOperatorId('0007B1F2C', 'hex', 'hex'), key('7B1F2C'));

  // the ids that made the former multi-reading lookup pick another submit: one reading each
  t.equal(receiptOperatorId('12345', 'same', 'decimal'), '12345', 'never 3039 (its hex) or 74565 (its hex reading)');
  t.equal(receiptOperatorId('12345', 'same', 'hex'), '12345');
  t.equal(receiptOperatorId('12345', 'same', undefined), '12345');
  t.equal(receiptOperatorId('16', 'same', 'decimal'), '16', 'never 10 (its hex writing) or 22 (its hex reading)');

  // auto (base not known): matched as written, never converted
  t.equal(receiptOperatorId('7B1F2C', 'same', undefined), '7b1f2c');
  t.equal(receiptOperatorId('0010', 'decimal', undefined), '10');

  // not numbers, or too long: only normalised
  t.equal(receiptOperatorId('msg-0001', 'decimal', 'hex'), 'msg-0001');
  // jasmin hands out UUIDs: only case is normalised
  t.equal(receiptOperatorId('4B1DC9C5-8B7A-4A9C-9F3E-0F5C2D1A7E11', 'hex', 'decimal'), '4b1dc9c5-8b7a-4a9c-9f3e-0f5c2d1a7e11');
  t.equal(receiptOperatorId('9'.repeat(40), 'decimal', 'hex'), '9'.repeat(40));
  t.equal(receiptOperatorId('f'.repeat(33), 'hex', 'decimal'), 'f'.repeat(33));
  t.equal(receiptOperatorId('0', 'hex', 'decimal'), '0');
  t.equal(receiptOperatorId('', 'hex', 'decimal'), '');
});

t.test('operator message ids: one key, the same wherever it is computed', async (t) => {
  // Output is canonical: the store normalises again (replicas, older entries) without changing it.
  const bases = [undefined, 'decimal', 'hex'] as const;
  const written = ['same', 'decimal', 'hex'] as const;
  for (const id of ['1', '0010', '7B', 'ff', '12345', '0', 'abc-1', '999999999999999999999']) {
    for (const a of bases) {
      for (const w of written) {
        const k = receiptOperatorId(id, w, a);
        t.equal(canonicalOperatorId(k), k, `${id} ${w}→${a ?? 'auto'} is canonical`);
        t.equal(receiptOperatorId(id, w, a), k, 'deterministic');
      }
    }
  }
});

t.test('the scanner agrees with the regular expressions it replaced, on generated receipt texts (malformed ones too)', async (t) => {
  const appendixB = fc.record({
    id: fc.stringMatching(/^[0-9a-f]{1,20}$/), d1: fc.stringMatching(/^[0-9]{10,12}$/), d2: fc.stringMatching(/^[0-9]{10,12}$/),
    stat: fc.constantFrom('DELIVRD', 'UNDELIV', 'EXPIRED', 'REJECTD', 'deleted', 'ACCEPTD'), err: fc.stringMatching(/^[0-9]{3}$/), text: fc.string({ maxLength: 20 }),
  }).map((f) => `id:${f.id} sub:001 dlvrd:001 submit date:${f.d1} done date:${f.d2} stat:${f.stat} err:${f.err} text:${f.text}`);
  const input = fc.oneof(receiptLike, appendixB, fc.string({ maxLength: 40 }), fc.tuple(receiptLike, fc.nat({ max: 2100 })).map(([s, n]) => 'x'.repeat(n) + ' ' + s));
  const scratch = new DlrScan();
  t.doesNotThrow(() => fc.assert(fc.property(input, fc.constantFrom(0, 480, -300), (text, offset) => {
    const want = JSON.stringify(parseDlrTextByRegex(text, offset));
    const got = JSON.stringify(parseDlrText(text, offset));
    if (got !== want) throw new Error(`differs on ${JSON.stringify(text)}:\n scanner ${got}\n regex   ${want}`);
    // The reusable scan object gives the same fields, whatever the text scanned before it.
    const found = scanDlrText(text, offset, scratch);
    const parsed = parseDlrText(text, offset);
    if (found !== (parsed !== undefined)) throw new Error('scanDlrText and parseDlrText disagree on being a receipt');
    if (parsed !== undefined && (scratch.id !== parsed.id || scratch.stat !== parsed.stat || scratch.err !== parsed.err || scratch.doneDate !== parsed.doneDate || scratch.submitDate !== parsed.submitDate)) {
      throw new Error(`scan object differs on ${JSON.stringify(text)}`);
    }
  }), { numRuns: 20_000 }));
});
