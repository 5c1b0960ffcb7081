import t from 'tap';
import {
  canonicalOperatorId,
  messageStateToState,
  receiptOperatorId,
  parseDlrDate,
  parseDlrText,
  statToState,
} from '../../src/core/dlr.js';

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
