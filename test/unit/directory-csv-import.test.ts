import t from 'tap';
import { decodeCsv, parseEncoding, parseGroups, parsePeople } from '../../src/directory/csv-import.js';
import { GatewayError } from '../../src/core/errors.js';

function refusal(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (e) {
    if (e instanceof GatewayError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

t.test('people: columns in any order, roles split, defaults, quoted names', async (t) => {
  const { rows } = parsePeople('Mobile,NAME,unit,roles,channel,id\n13800138000,"王五, 科长",city,chief;duty,both,p1\n+86 139 0013 9000,李四,city,,,\n', false);
  t.equal(rows.length, 2);
  t.same(rows[0], { line: 2, input: { id: 'p1', name: '王五, 科长', mobile: '13800138000', unit: 'city', roles: ['chief', 'duty'], channel: 'both' } });
  t.same(rows[1]?.input, { name: '李四', mobile: '+86 139 0013 9000', unit: 'city', roles: [], channel: 'sms' });
});

t.test('people: every bad row is reported by line and column; nothing is returned', async (t) => {
  const text = [
    'name,mobile,unit,channel',
    'ok,13800138000,city,sms',
    ',13800138001,city,sms', // no name
    'bad number,12345,city,sms',
    'dup,13800138000,city,sms', // duplicate of line 2
    'bad channel,13800138002,city,fax',
    'bad"quote,13800138003,city,sms',
    'short,13800138004',
  ].join('\n');
  const e = refusal(() => parsePeople(text, false));
  t.equal(e.code, 'IMPORT_INVALID');
  t.equal(e.status, 422);
  const fields = (e.details ?? []).map((d) => d.field);
  t.ok(fields.includes('/rows/3/name'), 'missing name');
  t.ok(fields.includes('/rows/4/mobile'), 'bad number');
  t.ok(fields.includes('/rows/6/channel'), 'bad channel');
  t.ok(fields.includes('/rows/7'), 'malformed CSV record');
  t.ok(fields.includes('/rows/8'), 'wrong field count');
  const dup = e.details?.find((d) => d.field === '/rows/5/mobile');
  t.match(dup?.message, /duplicate number: already on line 2/, 'a duplicate names the first line');
});

t.test('people: header problems', async (t) => {
  t.match(refusal(() => parsePeople('name,mobile,unit,colour\nx,13800138000,u,red\n', false)).details?.[0]?.message, /unknown column "colour"/);
  t.match(refusal(() => parsePeople('name,unit\nx,u\n', false)).details?.[0]?.message, /missing column mobile/);
  t.match(refusal(() => parsePeople('', false)).details?.[0]?.message, /empty/);
  t.match(refusal(() => parsePeople('name,mobile,unit\n', false)).details?.[0]?.message, /no rows/);
});

t.test('groups: rows gathered per group; kinds person, group, role@unit; conflicts reported', async (t) => {
  const { groups } = parseGroups('group,name,unit,kind,member\nall,All staff,city,group,duty\nduty,Duty roster,city,person,p1\nduty,,,person,13800138000\nall,,,role,chief@police\nempty,Empty,city,,\n');
  t.same(groups.map((g) => g.input.id), ['all', 'duty', 'empty']);
  t.same(groups[0]?.input, { id: 'all', name: 'All staff', unit: 'city', members: [], groups: ['duty'], roles: [{ role: 'chief', unit: 'police' }] });
  t.same(groups[1]?.input.members, ['p1', '13800138000']);
  const e = refusal(() => parseGroups('group,name,unit,kind,member\ng,A,city,person,p1\ng,B,city,person,p2\nh,H,city,robot,x\n'));
  t.same(e.details?.map((d) => d.field), ['/rows/3/name', '/rows/4/kind']);
});

t.test('encodings: GBK bytes are refused as UTF-8 with a clear report, and read with encoding=gbk', async (t) => {
  // name,mobile,unit \n 张三,13800138000,city — with 张三 in GBK (D5 C5 C8 FD).
  const gbk = Buffer.concat([Buffer.from('name,mobile,unit\n'), Buffer.from([0xd5, 0xc5, 0xc8, 0xfd]), Buffer.from(',13800138000,city\n')]);
  t.equal(new TextDecoder('gbk').decode(gbk.subarray(17, 21)), '张三', 'the fixture really is GBK');
  const e = refusal(() => decodeCsv(gbk, 'utf-8'));
  t.equal(e.code, 'IMPORT_INVALID');
  t.equal(e.details?.[0]?.field, '/rows/2', 'names the line of the first bad byte');
  t.match(e.details?.[0]?.message, /not valid UTF-8 \(byte 17, line 2\).*looks like GBK/);
  t.match(decodeCsv(gbk, 'gbk'), /^name,mobile,unit\n张三,13800138000,city\n$/);
  t.equal(decodeCsv(Buffer.from('\ufeffa,b\n'), 'utf-8'), 'a,b\n', 'a UTF-8 BOM is dropped');
  t.equal(parseEncoding('GB2312'), 'gbk');
  t.equal(parseEncoding(undefined), 'utf-8');
  t.equal(refusal(() => parseEncoding('latin1')).code, 'VALIDATION');
});

t.test('people: email and mailAlerts columns (checked, lower-cased, duplicates named); absent columns are left out of the input', async (t) => {
  const { rows } = parsePeople('name,mobile,unit,Email,MailAlerts\n王五,13800138000,city,Wang.Wu@Mail.gov.cn,是\n李四,13900139000,city,,\n赵六,13700137000,city,zl@mail.gov.cn,false\n', false);
  t.same(rows.map((r) => [r.input.email, r.input.mailAlerts]), [['wang.wu@mail.gov.cn', true], [null, false], ['zl@mail.gov.cn', false]]);
  const without = parsePeople('name,mobile,unit\n王五,13800138000,city\n', false);
  t.notOk('email' in (without.rows[0]?.input ?? {}), 'no email column: nothing said about email');
  t.notOk('mailAlerts' in (without.rows[0]?.input ?? {}));
  const e = refusal(() => parsePeople('name,mobile,unit,email,mailAlerts\na,13800138000,city,a@x.cn,yes\nb,13900139000,city,A@X.CN,no\nc,13700137000,city,not-mail,1\nd,13600136000,city,d@x.cn,maybe\n', false));
  t.equal(e.code, 'IMPORT_INVALID');
  t.match(e.details?.find((d) => d.field === '/rows/3/email')?.message, /duplicate mail address: already on line 2/);
  t.ok(e.details?.some((d) => d.field === '/rows/4/email'), 'not an address');
  t.ok(e.details?.some((d) => d.field === '/rows/5/mailAlerts'), 'not yes or no');
});
