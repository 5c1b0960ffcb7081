import t from 'tap';
import { formatCsv, parseCsv, unguardCell } from '../../src/core/csv.js';

t.test('plain records, CRLF and LF, a BOM, empty lines, no trailing newline', async (t) => {
  const r = parseCsv('\ufeffname,mobile\r\n张三,13800138000\n\nli si,13900139000');
  t.same(r.problems, []);
  t.same(r.records.map((x) => x.fields), [['name', 'mobile'], ['张三', '13800138000'], ['li si', '13900139000']]);
  t.same(r.records.map((x) => x.line), [1, 2, 4], 'line numbers count the empty line');
});

t.test('quoted fields: commas, doubled quotes and line breaks inside', async (t) => {
  const r = parseCsv('a,"王五, 科长","say ""hi""","two\nlines",z\nnext,row\n');
  t.same(r.problems, []);
  t.same(r.records[0]?.fields, ['a', '王五, 科长', 'say "hi"', 'two\nlines', 'z']);
  t.equal(r.records[1]?.line, 3, 'a record after a multi-line field starts on the right line');
  t.same(parseCsv('a,b,').records[0]?.fields, ['a', 'b', ''], 'a trailing comma is an empty field');
  t.same(parseCsv('"",x').records[0]?.fields, ['', 'x']);
});

t.test('malformed records are reported by line and skipped; parsing goes on', async (t) => {
  const r = parseCsv('ok,1\nbad"quote,2\n"closed"junk,3\nok,4\n');
  t.same(r.records.map((x) => x.fields[1]), ['1', '4']);
  t.same(r.problems.map((p) => p.line), [2, 3]);
  t.match(r.problems[0]?.message, /quote in an unquoted field/);
  t.match(r.problems[1]?.message, /after the closing quote/);
});

t.test('an unclosed quote stops the parse with a problem naming its line', async (t) => {
  const r = parseCsv('a,b\n"open,c\nd,e\n');
  t.equal(r.records.length, 1);
  t.same(r.problems, [{ line: 2, message: 'a quoted field is not closed before the end of the file' }]);
});

t.test('bounds: records, field length, fields per record', async (t) => {
  const many = parseCsv('a\nb\nc\nd\n', { maxRecords: 2 });
  t.equal(many.records.length, 2);
  t.ok(many.truncated);
  t.match(parseCsv(`${'x'.repeat(20)},y`, { maxFieldLength: 10 }).problems[0]?.message, /at most 10/);
  t.match(parseCsv('a,b,c', { maxFields: 2 }).problems[0]?.message, /more than 2 fields/);
});

t.test('format → parse round-trips, with the formula guard undone', async (t) => {
  const rows = [['id', 'name', 'note'], ['p1', '王五, 科长', 'say "hi"'], ['p2', '=cmd|calc', ' padded '], ['p3', '+86 138', 'multi\r\nline']];
  const text = formatCsv(rows, { bom: true });
  t.ok(text.startsWith('\ufeff'));
  t.match(text, /'=cmd\|calc/, 'a formula cell is guarded');
  const back = parseCsv(text);
  t.same(back.problems, []);
  t.same(back.records.map((r) => r.fields.map(unguardCell)), rows);
  t.equal(unguardCell("'hello"), "'hello", 'an apostrophe before plain text stays');
});
