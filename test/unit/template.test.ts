import { inspect } from 'node:util';
import t from 'tap';
import fc from 'fast-check';
import {
  MAX_PLACEHOLDERS,
  MAX_VALUE_CHARS,
  PARAM_TYPES,
  compileConfigText,
  compileTemplate,
  formatDate,
  parseDateFormat,
  placeholderPaths,
  renderTemplate,
  renderText,
  timeValue,
  type CompiledTemplate,
  type ParamSpec,
  type Rendered,
} from '../../src/core/template.js';
import { GatewayError, type FieldProblem } from '../../src/core/errors.js';

const SEED = 20261122;
/** China Standard Time, minutes east of UTC. */
const CST = 480;

/** Compile or fail the test with the problems in the message. */
function compiled(source: string, params?: Record<string, ParamSpec>): CompiledTemplate {
  const c = compileTemplate(source, params);
  if (!c.ok) throw new Error(`did not compile: ${JSON.stringify(c.problems)}`);
  return c.template;
}

/** The problems of a template that must not compile. */
function refused(source: string, params?: Record<string, ParamSpec>, field?: string): FieldProblem[] {
  const c = field === undefined ? compileTemplate(source, params) : compileTemplate(source, params, field);
  if (c.ok) throw new Error(`compiled, but should not have: ${source}`);
  return c.problems;
}

function render(source: string, values: Record<string, unknown>, params?: Record<string, ParamSpec>, utcOffsetMinutes = CST): Rendered {
  return renderTemplate(compiled(source, params), values, { utcOffsetMinutes });
}

/** The rendered text, or fail. */
function text(source: string, values: Record<string, unknown>, params?: Record<string, ParamSpec>, utcOffsetMinutes = CST): string {
  const r = render(source, values, params, utcOffsetMinutes);
  if (!r.ok) throw new Error(`did not render: ${JSON.stringify(r.problems)}`);
  return r.text;
}

/** The problems of a render that must fail. */
function renderProblems(source: string, values: Record<string, unknown>, params?: Record<string, ParamSpec>): FieldProblem[] {
  const r = render(source, values, params);
  if (r.ok) throw new Error(`rendered, but should not have: ${r.text}`);
  return r.problems;
}

function fmt(epochMs: number, format: string, offset = CST): string {
  return formatDate(epochMs, parseDateFormat(format), offset);
}

// ------------------------------------------------------------------ compileTemplate

t.test('compile: literal text and placeholders become parts', async (t) => {
  const tpl = compiled('请于{{time|date:"M月d日 HH:mm"}}到{{room}}开会');
  t.equal(tpl.source, '请于{{time|date:"M月d日 HH:mm"}}到{{room}}开会');
  t.equal(tpl.parts.length, 5);
  t.equal(tpl.parts[0], '请于');
  t.match(tpl.parts[1], { path: 'time', filters: [{ name: 'date' }] });
  t.equal(tpl.parts[2], '到');
  t.same(tpl.parts[3], { path: 'room', filters: [] });
  t.equal(tpl.parts[4], '开会');
  t.same(compiled('').parts, [], 'the empty template has no parts');
  t.same(compiled('只有文字').parts, ['只有文字']);
  t.same(compiled('{{a}}{{b}}').parts, [{ path: 'a', filters: [] }, { path: 'b', filters: [] }], 'adjacent placeholders, no empty literals');
  t.same(compiled('{{ a }}').parts, [{ path: 'a', filters: [] }], 'spaces around the path are trimmed');
  t.same(compiled('{{ a | default : "x" }}').parts, [{ path: 'a', filters: [{ name: 'default', value: 'x' }] }], 'spaces around filters');
  t.same(compiled('a { b } c }}').parts, ['a { b } c }}'], 'single braces and a lone }} are literal');
  t.same(compiled('{{x}}}').parts, [{ path: 'x', filters: [] }, '}'], 'a third } is literal');
  t.same(PARAM_TYPES, ['string', 'number', 'time', 'list']);
});

t.test('compile: without declared params the placeholders declare themselves', async (t) => {
  const tpl = compiled('{{name}} {{time|date:"HH:mm"}} {{missing|join:"、"}} {{note|default:""}} {{meeting.title}}');
  t.same(tpl.params, {
    name: { type: 'string', required: false },
    time: { type: 'time', required: false },
    missing: { type: 'list', required: false },
    note: { type: 'string', required: false },
    'meeting.title': { type: 'string', required: false },
  });
  t.same(placeholderPaths(tpl), ['name', 'time', 'missing', 'note', 'meeting.title']);
  t.same(placeholderPaths(compiled('{{a}}{{b}}{{a}}')), ['a', 'b'], 'paths once each, in order of first use');

  t.same(compiled('{{x}}{{x|default:"-"}}').params, { x: { type: 'string', required: false } }, 'the same type twice is fine');
  const both = refused('{{x}} {{x|date:"HH:mm"}}');
  t.equal(both.length, 1);
  t.match(both[0]?.message, /parameter x is used both as string and as time/);
  t.match(refused('{{x|join:","}} {{x|date:"HH"}}')[0]?.message, /used both as list and as time/);
});

t.test('compile: declared params are kept as declared', async (t) => {
  const params: Record<string, ParamSpec> = {
    'meeting.title': { type: 'string', maxLength: 50 },
    time: { type: 'time' },
    names: { type: 'list', required: false },
    count: { type: 'number' },
    unused: { type: 'string' },
  };
  const tpl = compiled('{{meeting.title}} {{time|date:"HH:mm"}} {{names|join:","}} {{count}}', params);
  t.equal(tpl.params, params, 'the declared params object itself');
});

t.test('compile: a placeholder naming an undeclared parameter', async (t) => {
  const problems = refused('会议：{{title}}，地点：{{room}}', { title: { type: 'string' } });
  t.equal(problems.length, 1);
  t.equal(problems[0]?.field, '/body');
  t.match(problems[0]?.message, /\{\{room\}\} uses parameter room, which is not declared \(declared: title\)/);
  t.match(refused('{{a}}', {})[0]?.message, /declared: none/);
  t.match(refused('{{meeting.room}}', { meeting: { type: 'string' } })[0]?.message, /parameter meeting\.room, which is not declared/, 'a prefix is not the parameter');
  t.equal(refused('{{a}}{{b}}{{c}}', { b: { type: 'string' } }).length, 2, 'every undeclared placeholder is named');
});

t.test('compile: filters that do not fit the parameter type', async (t) => {
  const dateOnString = refused('{{s|date:"HH:mm"}}', { s: { type: 'string' } });
  t.equal(dateOnString.length, 1);
  t.match(dateOnString[0]?.message, /filter date does not fit parameter s of type string/);
  t.match(refused('{{n|date:"HH:mm"}}', { n: { type: 'number' } })[0]?.message, /filter date does not fit parameter n of type number/);
  t.match(refused('{{l|date:"HH:mm"}}', { l: { type: 'list' } })[0]?.message, /filter date does not fit parameter l of type list/);
  t.match(refused('{{n|join:","}}', { n: { type: 'number' } })[0]?.message, /filter join does not fit parameter n of type number/);
  t.match(refused('{{s|join:","}}', { s: { type: 'string' } })[0]?.message, /filter join does not fit parameter s of type string/);
  t.match(refused('{{tm|join:","}}', { tm: { type: 'time' } })[0]?.message, /filter join does not fit parameter tm of type time/);
  // Inferred: date makes a time, so a join on it does not fit.
  t.match(refused('{{x|date:"HH"|join:","}}')[0]?.message, /filter join does not fit parameter x of type time/);
  // default fits every type.
  for (const type of PARAM_TYPES) t.ok(compileTemplate('{{p|default:"-"}}', { p: { type } }).ok, `default fits ${type}`);
  t.ok(compileTemplate('{{tm|date:"HH"}}', { tm: { type: 'time' } }).ok);
  t.ok(compileTemplate('{{l|join:"/"}}', { l: { type: 'list' } }).ok);
});

t.test('compile: bad filters', async (t) => {
  t.match(refused('{{x|upper}}')[0]?.message, /unknown filter upper \(known: date, join, default\)/);
  t.match(refused('{{x|Date:"HH"}}')[0]?.message, /filter "Date:"HH"" must be name or name:"argument"/, 'filter names are lower case');
  t.match(refused('{{x|date}}')[0]?.message, /date needs a format/);
  t.match(refused('{{x|date:""}}')[0]?.message, /date needs a format/);
  t.match(refused('{{x|default}}')[0]?.message, /default needs a value/);
  t.match(refused('{{x|join:unquoted}}')[0]?.message, /must be name or name:"argument"/);
  t.match(refused('{{x|}}')[0]?.message, /filter "" must be name/);
  t.match(refused('{{x|default:"a" extra}}')[0]?.message, /must be name or name:"argument"/);
  // join without an argument uses 、
  t.same(compiled('{{x|join}}').parts, [{ path: 'x', filters: [{ name: 'join', separator: '、' }] }]);
});

t.test('compile: bad parameter names', async (t) => {
  for (const inner of ['', ' ', '1abc', 'a-b', 'a..b', '.a', 'a.', '中文', 'a.b.c.d.e.f.g.h.i']) {
    const problems = refused(`x{{${inner}}}y`);
    t.equal(problems.length, 1, `{{${inner}}}`);
    t.match(problems[0]?.message, /is not a parameter name/, `{{${inner}}}`);
    t.match(problems[0]?.message, /at character 2/, `{{${inner}}} names where it is`);
  }
  t.ok(compileTemplate('{{a.b.c.d.e.f.g.h}}').ok, 'eight dotted parts are allowed');
  t.ok(compileTemplate('{{_a1.B_2}}').ok);

  const declared = refused('', { 'bad-name': { type: 'string' }, ok: { type: 'text' as never } });
  t.same(
    declared.map((p) => p.field),
    ['/params/bad-name', '/params/ok/type'],
    'declared names and types are checked',
  );
  t.match(declared[1]?.message, /one of string, number, time, list/);
});

t.test('compile: an unclosed {{', async (t) => {
  const p = refused('会议{{title');
  t.equal(p.length, 1);
  t.match(p[0]?.message, /"\{\{" at character 3 is never closed with "\}\}"/);
  t.match(refused('{{a}} then {{b')[0]?.message, /at character 12 is never closed/);
  t.match(refused('{{a {{b}}')[0]?.message, /at character 1 is never closed/, 'a {{ inside a placeholder');
  t.match(refused('{{a}')[0]?.message, /never closed/);
  t.match(refused('{{')[0]?.message, /never closed/);
  t.match(refused('{{x|default:"never closed}}')[0]?.message, /never closed/, 'an unterminated quote swallows the }}');
  t.equal(refused('ab{{c', undefined, '/texts/alert')[0]?.field, '/texts/alert', 'the field is the caller’s');
});

t.test('compile: placeholder count is bounded', async (t) => {
  t.equal(MAX_PLACEHOLDERS, 64);
  const at = '{{a}}'.repeat(MAX_PLACEHOLDERS);
  t.ok(compileTemplate(at).ok, `${MAX_PLACEHOLDERS} placeholders are fine`);
  const over = refused(at + '{{a}}');
  t.equal(over.length, 1);
  t.match(over[0]?.message, new RegExp(`more than ${MAX_PLACEHOLDERS} placeholders`));
  t.ok(refused('{{a}}'.repeat(10_000)).length === 1, 'parsing stops at the bound');
});

t.test('compile: quoted arguments may contain | and }}', async (t) => {
  const tpl = compiled('[{{x|default:"a|b}}c"}}]');
  t.same(tpl.parts, ['[', { path: 'x', filters: [{ name: 'default', value: 'a|b}}c' }] }, ']']);
  t.equal(text('[{{x|default:"a|b}}c"}}]', {}), '[a|b}}c]');
  t.equal(text('{{l|join:" | "}}', { l: ['甲', '乙', '丙'] }), '甲 | 乙 | 丙');
  t.equal(text('{{l|join:"}}"}}', { l: ['a', 'b'] }), 'a}}b');
  t.equal(text('{{x|default:"{{y}}"}}', {}), '{{y}}', 'a {{ inside quotes is literal');
  t.equal(text('{{x|default:"say \\"hi\\""}}', {}), 'say "hi"', 'an escaped quote');
  t.equal(text('{{t|date:"HH|mm"}}', { t: '2026-11-22T09:05:00+08:00' }), '09|05');
  t.equal(text('{{x|default:""}}', {}), '', 'an empty default');
});

t.test('compile: dotted paths', async (t) => {
  const tpl = compiled('{{a.b.c}}');
  t.same(tpl.parts, [{ path: 'a.b.c', filters: [] }]);
  t.same(tpl.params, { 'a.b.c': { type: 'string', required: false } });
});

// ------------------------------------------------------------------ renderTemplate

t.test('render: required parameters', async (t) => {
  const params: Record<string, ParamSpec> = { title: { type: 'string' }, room: { type: 'string', required: true }, note: { type: 'string', required: false } };
  const body = '{{title}}@{{room}}{{note}}';
  t.equal(text(body, { title: '防汛会', room: '301', note: '!' }, params), '防汛会@301!');
  t.equal(text(body, { title: '防汛会', room: '301' }, params), '防汛会@301', 'an optional parameter left out renders empty');
  const missing = renderProblems(body, {}, params);
  t.same(missing, [
    { field: '/params/title', message: 'required (string)' },
    { field: '/params/room', message: 'required (string)' },
  ]);
  t.same(renderProblems(body, { title: null, room: '1' }, params), [{ field: '/params/title', message: 'required (string)' }], 'null is absent');
  // A declared parameter the body never uses is still required.
  t.same(renderProblems('hello', {}, { unused: { type: 'number' } }), [{ field: '/params/unused', message: 'required (number)' }]);
  // Extra values nobody declared are ignored.
  t.equal(text('{{a}}', { a: 'x', b: 'y' }, { a: { type: 'string' } }), 'x');
  // The field prefix is the caller's.
  const r = renderTemplate(compiled('{{a.b}}', { 'a.b': { type: 'string' } }), {}, { utcOffsetMinutes: 0 }, '/job/params');
  t.same(r, { ok: false, problems: [{ field: '/job/params/a/b', message: 'required (string)' }] }, 'dotted paths become pointer segments');
});

t.test('render: inferred parameters are optional', async (t) => {
  t.equal(text('[{{a}}|{{b|join:","}}|{{c|date:"HH:mm"}}]', {}), '[||]');
  t.equal(text('{{a.toString}}{{a.valueOf}}', { a: {} }), '', 'inherited properties of a value are not values');
  // constructor / prototype / __proto__ are reserved names (issue #16): refused when saved.
  t.match(compileTemplate('{{a.constructor}}'), { ok: false, problems: [{ message: /reserved name constructor/ }] });
});

t.test('render: wrong types', async (t) => {
  const s: Record<string, ParamSpec> = { v: { type: 'string' } };
  for (const v of [true, {}, [], ['a'], { a: 1 }]) {
    t.same(renderProblems('{{v}}', { v }, s), [{ field: '/params/v', message: 'must be a string' }], `string ← ${JSON.stringify(v)}`);
  }
  t.equal(text('{{v}}', { v: 42 }, s), '42', 'a number is accepted for a string');
  t.equal(text('{{v}}', { v: '' }, s), '', 'the empty string is a value');

  const n: Record<string, ParamSpec> = { v: { type: 'number' } };
  for (const v of ['5', true, [], {}, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.same(renderProblems('{{v}}', { v }, n), [{ field: '/params/v', message: 'must be a number' }], `number ← ${inspect(v)}`);
  }
  t.equal(text('{{v}}人', { v: 12 }, n), '12人');
  t.equal(text('{{v}}', { v: -1.5 }, n), '-1.5');
  t.equal(text('{{v}}', { v: 0 }, n), '0', 'zero is a value');

  const tm: Record<string, ParamSpec> = { v: { type: 'time' } };
  for (const v of [
    '2026-11-22 09:30:00',
    '2026-11-22T09:30:00', // no offset
    '2026-11-22T09:30:00+0800',
    '2026-11-22',
    '1795311000000',
    'tomorrow',
    '2026-13-01T00:00:00Z',
    '2026-11-22T23:60:00Z',
    true,
    [],
    Number.NaN,
    Number.POSITIVE_INFINITY,
  ]) {
    const p = renderProblems('{{v|date:"HH:mm"}}', { v }, tm);
    t.equal(p.length, 1, `time ← ${JSON.stringify(v)}`);
    t.equal(p[0]?.field, '/params/v');
    t.match(p[0]?.message, /must be an RFC 3339 time with offset/);
  }

  const l: Record<string, ParamSpec> = { v: { type: 'list' } };
  for (const v of ['a,b', 3, {}, [{}], ['a', null], [['a']], [true]]) {
    t.same(renderProblems('{{v}}', { v }, l), [{ field: '/params/v', message: 'must be a list of strings' }], `list ← ${JSON.stringify(v)}`);
  }
  t.equal(text('{{v}}', { v: [] }, l), '', 'the empty list renders empty');
  t.equal(text('{{v}}', { v: ['甲', 2] }, l), '甲、2', 'numbers in a list; 、 by default');

  // All problems at once, each naming its parameter.
  const all = renderProblems('{{a}}{{b}}{{c.d}}', { a: [], b: 'x', c: { d: 'y' } }, { a: { type: 'string' }, b: { type: 'number' }, 'c.d': { type: 'time' } });
  t.same(all.map((p) => p.field), ['/params/a', '/params/b', '/params/c/d']);
});

t.test('render: maxLength', async (t) => {
  const s: Record<string, ParamSpec> = { v: { type: 'string', maxLength: 4 } };
  t.equal(text('{{v}}', { v: '防汛会议' }, s), '防汛会议', 'exactly maxLength characters');
  t.same(renderProblems('{{v}}', { v: '防汛工作会议' }, s), [{ field: '/params/v', message: 'at most 4 characters' }]);
  t.same(renderProblems('{{v}}', { v: 12345 }, s), [{ field: '/params/v', message: 'at most 4 characters' }], 'a number counts its digits');

  const l: Record<string, ParamSpec> = { v: { type: 'list', maxLength: 2 } };
  t.equal(text('{{v}}', { v: ['a', 'b'] }, l), 'a、b');
  t.same(renderProblems('{{v}}', { v: ['a', 'b', 'c'] }, l), [{ field: '/params/v', message: 'at most 2 items' }]);

  // Without maxLength a string is still bounded.
  t.equal(MAX_VALUE_CHARS, 2000);
  t.equal(text('{{v}}', { v: 'x'.repeat(MAX_VALUE_CHARS) }, { v: { type: 'string' } }).length, MAX_VALUE_CHARS);
  t.same(renderProblems('{{v}}', { v: 'x'.repeat(MAX_VALUE_CHARS + 1) }, { v: { type: 'string' } }), [
    { field: '/params/v', message: `at most ${MAX_VALUE_CHARS} characters` },
  ]);
  t.same(renderProblems('{{v}}', { v: 'x'.repeat(MAX_VALUE_CHARS + 1) }), [{ field: '/params/v', message: `at most ${MAX_VALUE_CHARS} characters` }], 'inferred strings too');
  // A declared maxLength above the global bound does not lift it.
  t.same(renderProblems('{{v}}', { v: 'x'.repeat(MAX_VALUE_CHARS + 1) }, { v: { type: 'string', maxLength: 10_000 } }), [
    { field: '/params/v', message: `at most ${MAX_VALUE_CHARS} characters` },
  ]);
});

t.test('render: a default filter makes a declared parameter optional', async (t) => {
  const params: Record<string, ParamSpec> = { note: { type: 'string' }, who: { type: 'list' }, at: { type: 'time' } };
  t.equal(text('备注：{{note|default:"无"}}', {}, { note: { type: 'string' } }), '备注：无');
  t.equal(text('备注：{{note|default:"无"}}', { note: '带笔记本' }, { note: { type: 'string' } }), '备注：带笔记本');
  t.equal(text('{{who|default:"全体"|join:"、"}}', {}, { who: { type: 'list' } }), '全体');
  t.equal(text('{{at|default:"待定"|date:"HH:mm"}}', {}, { at: { type: 'time' } }), '待定');
  t.equal(text('{{at|date:"HH:mm"|default:"待定"}}', {}, { at: { type: 'time' } }), '待定', 'filter order does not matter');
  // One placeholder with a default is enough, even when the same parameter is used without one too.
  t.equal(text('[{{note}}][{{note|default:"-"}}]', {}, { note: { type: 'string' } }), '[][-]');
  // A default does not excuse a wrong type.
  t.same(renderProblems('{{note|default:"无"}}', { note: {} }, { note: { type: 'string' } }), [{ field: '/params/note', message: 'must be a string' }]);
  // Without a default, the others are still required.
  t.same(
    renderProblems('{{note|default:"-"}}{{who}}{{at|date:"HH"}}', {}, params).map((p) => p.field),
    ['/params/who', '/params/at'],
  );
});

t.test('render: nested objects', async (t) => {
  const params: Record<string, ParamSpec> = { 'meeting.title': { type: 'string' }, 'meeting.room.name': { type: 'string' }, 'meeting.time': { type: 'time' } };
  const body = '{{meeting.title}}，{{meeting.time|date:"M月d日 HH:mm"}}，{{meeting.room.name}}';
  const values = { meeting: { title: '防汛会', time: '2026-11-22T09:30:00+08:00', room: { name: '第一会议室' } } };
  t.equal(text(body, values, params), '防汛会，11月22日 09:30，第一会议室');
  t.same(renderProblems(body, { meeting: { title: '防汛会', time: '2026-11-22T09:30:00+08:00' } }, params), [
    { field: '/params/meeting/room/name', message: 'required (string)' },
  ]);
  t.same(
    renderProblems(body, { 'meeting.title': 'x', 'meeting.time': '2026-11-22T09:30:00+08:00', 'meeting.room.name': 'y' }, params).length,
    3,
    'a flat key with dots is not a nested path',
  );
  t.equal(renderProblems(body, { meeting: 'text' }, params).length, 3, 'a string where an object should be');
  t.equal(renderProblems(body, { meeting: [{ title: 'x' }] }, params).length, 3, 'a list where an object should be');
  t.equal(renderProblems(body, { meeting: null }, params).length, 3, 'null where an object should be');
  t.same(renderProblems('{{a.b}}', { a: { b: { c: 1 } } }), [{ field: '/params/a/b', message: 'must be a string' }], 'an object is not a string');
});

t.test('render: times — RFC 3339 with offsets, and epoch milliseconds', async (t) => {
  const tm: Record<string, ParamSpec> = { t: { type: 'time' } };
  const at = (v: unknown, format = 'yyyy-MM-dd HH:mm:ss', offset = CST): string => text(`{{t|date:"${format}"}}`, { t: v }, tm, offset);
  // The same instant, written five ways.
  const instant = Date.UTC(2026, 10, 22, 1, 30, 0);
  for (const v of ['2026-11-22T09:30:00+08:00', '2026-11-22T01:30:00Z', '2026-11-21T20:30:00-05:00', '2026-11-22T07:00:00+05:30', instant]) {
    t.equal(at(v), '2026-11-22 09:30:00', `${String(v)} in UTC+8`);
  }
  t.equal(at('2026-11-22T09:30+08:00'), '2026-11-22 09:30:00', 'seconds may be left out');
  t.equal(at('2026-11-22T09:30:59.999+08:00'), '2026-11-22 09:30:59', 'fractions are dropped, not rounded');
  t.equal(at(0, 'yyyy-MM-dd HH:mm', 0), '1970-01-01 00:00', 'epoch 0 is a time');
  t.equal(at(-1000, 'yyyy-MM-dd HH:mm:ss', 0), '1969-12-31 23:59:59', 'negative epoch ms');
  t.equal(at('2026-11-22T09:30:00+08:00', 'HH:mm', 0), '01:30', 'shown in the offset asked for');
  t.equal(at('2026-11-22T09:30:00+08:00', 'HH:mm', -300), '20:30');
  t.equal(at('2026-11-22T09:30:00+08:00', 'M月d日', -300), '11月21日');

  // A time without a date filter: yyyy-MM-dd HH:mm.
  t.equal(text('{{t}}', { t: '2026-11-22T01:30:00Z' }, tm), '2026-11-22 09:30');
  t.equal(text('{{t}}', { t: instant }, tm), '2026-11-22 09:30');

  t.equal(timeValue('2026-11-22T01:30:00Z'), instant);
  t.equal(timeValue(instant), instant);
  t.equal(timeValue('2026-11-22T01:30:00z'), undefined, 'the Z is upper case');
  t.equal(timeValue(undefined), undefined);
  t.equal(timeValue(null), undefined);
});

t.test('render: date formats in UTC+8 across a day boundary', async (t) => {
  // 2026-11-22 is a Sunday. 16:00Z is midnight in Beijing, the start of Monday the 23rd.
  const before = Date.parse('2026-11-22T15:59:58Z'); // Sun 23:59:58 +08
  const after = Date.parse('2026-11-22T16:00:00Z'); // Mon 00:00:00 +08
  const late = Date.parse('2026-11-22T16:07:05Z'); // Mon 00:07:05 +08
  const cases: Array<[string, number, string]> = [
    ['yyyy', before, '2026'],
    ['yy', before, '26'],
    ['M', before, '11'],
    ['MM', before, '11'],
    ['d', before, '22'],
    ['dd', before, '22'],
    ['H', before, '23'],
    ['HH', before, '23'],
    ['m', before, '59'],
    ['mm', before, '59'],
    ['s', before, '58'],
    ['ss', before, '58'],
    ['E', before, '日'],
    ['d', after, '23'],
    ['E', after, '一'],
    ['H', after, '0'],
    ['HH', after, '00'],
    ['m', late, '7'],
    ['mm', late, '07'],
    ['s', late, '5'],
    ['ss', late, '05'],
    ['yyyy年M月d日（周E）H时m分s秒', before, '2026年11月22日（周日）23时59分58秒'],
    ['yyyy年M月d日（周E）H时m分s秒', late, '2026年11月23日（周一）0时7分5秒'],
    ['M月d日 HH:mm', after, '11月23日 00:00'],
  ];
  for (const [format, ms, want] of cases) {
    t.equal(text(`{{t|date:"${format}"}}`, { t: ms }), want, `${format} at ${new Date(ms).toISOString()}`);
    t.equal(text(`{{t|date:"${format}"}}`, { t: new Date(ms).toISOString() }), want, `${format} from the RFC 3339 string`);
  }
  // The same instants in UTC are still Sunday the 22nd.
  t.equal(text('{{t|date:"d E HH"}}', { t: after }, undefined, 0), '22 日 16');

  // New year in Beijing while still the old year in UTC.
  const ny = Date.parse('2026-12-31T16:30:00Z');
  t.equal(text('{{t|date:"yyyy-MM-dd E"}}', { t: ny }), '2027-01-01 五');
  t.equal(text('{{t|date:"yyyy-MM-dd E"}}', { t: ny }, undefined, 0), '2026-12-31 四');
  // Single-digit month and day, with and without padding.
  const jan = Date.parse('2027-01-05T01:02:03+08:00');
  t.equal(text('{{t|date:"M/d MM/dd yy"}}', { t: jan }), '1/5 01/05 27');
});

t.test('render: join separators', async (t) => {
  const names = ['张三', '李四', '王五'];
  t.equal(text('{{n|join:"、"}}', { n: names }), '张三、李四、王五');
  t.equal(text('{{n|join}}', { n: names }), '张三、李四、王五', 'join without argument: 、');
  t.equal(text('{{n|join:","}}', { n: names }), '张三,李四,王五');
  t.equal(text('{{n|join:""}}', { n: names }), '张三李四王五', 'the empty separator');
  t.equal(text('{{n|join:"\\n"}}', { n: ['a', 'b'] }), 'anb', 'a backslash escapes the next character (no \\n)');
  t.equal(text('{{n|join:" 和 "}}', { n: ['a', 'b'] }), 'a 和 b');
  t.equal(text('{{n|join:"、"}}', { n: ['只有一人'] }), '只有一人', 'one item, no separator');
  t.equal(text('{{n|join:"、"}}', { n: [] }), '');
  t.equal(text('{{n|join:"、"}}', { n: [1, 2.5, '三'] }), '1、2.5、三');
  t.equal(text('{{n}}', { n: ['a', 'b'] }, { n: { type: 'list' } }), 'a、b', 'a declared list without join');
});

// ------------------------------------------------------------------ formatDate

t.test('formatDate and parseDateFormat', async (t) => {
  t.same(parseDateFormat('M月d日 HH:mm'), [
    { field: 'M' },
    { literal: '月' },
    { field: 'd' },
    { literal: '日 ' },
    { field: 'HH' },
    { literal: ':' },
    { field: 'mm' },
  ]);
  t.same(parseDateFormat('yyyyy'), [{ field: 'yyyy' }, { literal: 'y' }], 'longest field first, leftover y literal');
  t.same(parseDateFormat('MMM'), [{ field: 'MM' }, { field: 'M' }]);
  t.same(parseDateFormat('at'), [{ literal: 'at' }], 'letters that are not fields are literal');
  t.same(parseDateFormat(''), []);

  const ms = Date.parse('2026-03-08T06:04:09Z');
  t.equal(fmt(ms, 'yyyy-MM-dd HH:mm:ss', 0), '2026-03-08 06:04:09');
  t.equal(fmt(ms, 'yy/M/d H:m:s', 0), '26/3/8 6:4:9');
  t.equal(fmt(ms, 'yyyy-MM-dd HH:mm:ss', CST), '2026-03-08 14:04:09');
  t.equal(fmt(ms, 'yyyy-MM-dd HH:mm', -420), '2026-03-07 23:04', 'negative offset crosses back a day');
  t.equal(fmt(ms, 'HH:mm', 345), '11:49', 'offsets need not be whole hours');
  t.equal(fmt(Date.parse('2005-01-01T00:00:00Z'), 'yy', 0), '05', 'yy is two digits');
  t.equal(fmt(Date.parse('2000-01-01T00:00:00Z'), 'yy', 0), '00');
  t.equal(formatDate(ms, [], 0), '');
  t.equal(formatDate(ms, [{ literal: '星期' }, { field: 'E' }], 0), '星期日', '2026-03-08 is a Sunday');

  // E over a whole week: 2026-11-22 (Sunday) … 2026-11-28 (Saturday).
  const week = ['日', '一', '二', '三', '四', '五', '六'];
  for (let i = 0; i < 7; i++) {
    t.equal(fmt(Date.UTC(2026, 10, 22 + i, 12), 'E', 0), week[i], `day ${22 + i}`);
  }
  // Leap day.
  t.equal(fmt(Date.parse('2028-02-29T12:00:00Z'), 'M月d日 E', CST), '2月29日 二');
});

// ------------------------------------------------------------------ config texts

t.test('compileConfigText throws with the config path', async (t) => {
  const tpl = compileConfigText('【{{unit}}】{{time|date:"HH:mm"}}', 'office.texts.reminder');
  t.same(tpl.params, { unit: { type: 'string', required: false }, time: { type: 'time', required: false } });

  t.throws(() => compileConfigText('{{unit', 'office.texts.reminder'), {
    message: /^office\.texts\.reminder: "\{\{" at character 1 is never closed/,
  });
  t.throws(() => compileConfigText('{{a|nope}}{{b|date}}', 'office.texts.x'), {
    message: /^office\.texts\.x: .*unknown filter nope.*; .*date needs a format/,
  });
  t.throws(() => compileConfigText('{{x}}{{x|join:","}}', 'cfg.y'), { message: /^cfg\.y: parameter x is used both as string and as list/ });
});

t.test('renderText throws TEMPLATE_PARAMS on a wrong value', async (t) => {
  const tpl = compileConfigText('{{unit}}：{{time|date:"M月d日 HH:mm"}}，{{names|join:"、"}}{{note|default:"。"}}', 'office.texts.notice');
  t.equal(
    renderText(tpl, { unit: '市政府办', time: '2026-11-22T09:30:00+08:00', names: ['张三', '李四'] }, CST),
    '市政府办：11月22日 09:30，张三、李四。',
  );
  t.equal(renderText(tpl, {}, CST), '：，。', 'absent placeholders render empty (or their default)');

  let caught: unknown;
  try {
    renderText(tpl, { unit: '市政府办', time: 'next tuesday' }, CST);
  } catch (e) {
    caught = e;
  }
  t.ok(caught instanceof GatewayError, 'a GatewayError');
  const err = caught as GatewayError;
  t.equal(err.code, 'TEMPLATE_PARAMS');
  t.equal(err.status, 422);
  t.match(err.message, /must be an RFC 3339 time/);
  t.same(err.details?.map((d) => d.field), ['/params/time']);

  t.throws(() => renderText(tpl, { names: 'not a list', unit: {} }, CST), { code: 'TEMPLATE_PARAMS' });
  try {
    renderText(tpl, { names: 'not a list', unit: {} }, CST);
  } catch (e) {
    t.equal((e as GatewayError).details?.length, 2, 'every problem is in details');
  }
});

// ------------------------------------------------------------------ properties

t.test('property: literal text without {{ renders exactly the text', async (t) => {
  const literal = fc.string({ unit: 'binary', maxLength: 300 }).filter((s) => !s.includes('{{'));
  const chunks = fc.array(fc.oneof(literal, fc.constantFrom('{', '}', '}}', '"', '|', ' ', '月', '\\')), { maxLength: 12 }).map((a) => a.join('')).filter((s) => !s.includes('{{'));
  t.doesNotThrow(() => fc.assert(
    fc.property(fc.oneof(literal, chunks), fc.integer({ min: -720, max: 840 }), (s, offset) => {
      const c = compileTemplate(s);
      if (!c.ok) return false;
      const r = renderTemplate(c.template, {}, { utcOffsetMinutes: offset });
      return r.ok && r.text === s;
    }),
    { seed: SEED, numRuns: 2000 },
  ), '2000 literal texts');
});

t.test('property: any string value substituted for {{x}} appears verbatim', async (t) => {
  // A literal ending in { would make {{{x}} (the placeholder would start one character early).
  const literal = fc.string({ maxLength: 40 }).filter((s) => !s.includes('{{') && !s.endsWith('{'));
  // 'binary' units are code points, up to two UTF-16 characters each: stay within MAX_VALUE_CHARS.
  const value = fc.string({ unit: 'binary', maxLength: MAX_VALUE_CHARS / 2 });
  fc.assert(
    fc.property(literal, value, literal, (before, v, after) => {
      const tpl = compiled(`${before}{{x}}${after}`);
      const declared = compiled(`${before}{{x}}${after}`, { x: { type: 'string' } });
      const r1 = renderTemplate(tpl, { x: v }, { utcOffsetMinutes: CST });
      const r2 = renderTemplate(declared, { x: v }, { utcOffsetMinutes: 0 });
      const want = before + v + after;
      return r1.ok && r1.text === want && r2.ok && r2.text === want;
    }),
    { seed: SEED, numRuns: 2000 },
  );
  // Values that look like template syntax are not re-parsed.
  for (const v of ['{{x}}', '{{y|date:"HH"}}', '"}}', '{{', '|', '\\"']) {
    t.equal(text('<{{x}}>', { x: v }), `<${v}>`, JSON.stringify(v));
  }
});

t.test('property: a time rendered with the full format parses back to the same second', async (t) => {
  t.doesNotThrow(() => fc.assert(
    fc.property(
      fc.integer({ min: Date.UTC(1971, 0, 1), max: Date.UTC(2199, 11, 31) }),
      fc.integer({ min: -720, max: 840 }),
      (ms, offset) => {
        const local = fmt(ms, 'yyyy-MM-ddTHH:mm:ss', offset);
        const sign = offset < 0 ? '-' : '+';
        const abs = Math.abs(offset);
        const back = Date.parse(`${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`);
        return back === Math.floor(ms / 1000) * 1000;
      },
    ),
    { seed: SEED, numRuns: 2000 },
  ), '2000 instants and offsets');
});

// ------------------------------------------------------------------ regressions (found by these tests, fixed)
// These blocks describe the correct behaviour. They fail against the module as
// it was when written; see /tmp/handoff/office-unit.md. The lead fixes the module.

t.test('impossible calendar dates are not RFC 3339 times', async (t) => {
  // V8's Date.parse rolls 2026-02-30 over to 2026-03-02 and 24:00 over to the next day,
  // so a meeting notice for a date that does not exist renders as a different, real date.
  const tm: Record<string, ParamSpec> = { t: { type: 'time' } };
  for (const v of ['2026-02-30T09:00:00+08:00', '2026-04-31T09:00:00+08:00', '2026-02-29T09:00:00+08:00', '2026-11-22T24:00:00+08:00']) {
    t.equal(timeValue(v), undefined, `timeValue(${v})`);
    const r = render('{{t|date:"M月d日 HH:mm"}}', { t: v }, tm);
    t.notOk(r.ok, `${v} is refused, not rendered as ${r.ok ? r.text : ''}`);
  }
  t.equal(timeValue('2028-02-29T09:00:00+08:00'), Date.parse('2028-02-29T01:00:00Z'), 'a real leap day is still fine');
});

t.test('a quoted argument may end with an escaped backslash', async (t) => {
  // The filter grammar reads "a\\" as the string a\ , but findClose/splitPipes treat the
  // quote after a backslash as escaped, so the placeholder is reported as never closed.
  const c = compileTemplate('{{x|default:"C:\\\\"}}');
  t.ok(c.ok, 'compiles');
  if (c.ok) t.same(renderTemplate(c.template, {}, { utcOffsetMinutes: 0 }), { ok: true, text: 'C:\\' });
});

t.test('a list placeholder is bounded like a string one', async (t) => {
  // MAX_VALUE_CHARS is "the longest rendered value of one placeholder"; a list without a
  // declared maxLength renders unbounded (here 3000 × 10 characters). Either refusing or
  // truncating is fine; rendering it all is not.
  const big = Array.from({ length: 3000 }, () => '0123456789');
  for (const [name, params] of [['inferred', undefined], ['declared', { l: { type: 'list' } }]] as const) {
    const r = render('{{l|join:""}}', { l: big }, params);
    t.ok(!r.ok || r.text.length <= MAX_VALUE_CHARS, `${name}: ${r.ok ? `rendered ${r.text.length} characters` : 'refused'}`);
  }
});

t.test('names of Object.prototype members are parameters like any other', async (t) => {
  // compileTemplate looks names up with params[path] / inferred[path], which finds inherited
  // members: with declared params, {{toString}} passes as "declared" and renders empty; without,
  // {{toString}} is refused as "used both as undefined and as string", and {{__proto__}} replaces
  // the prototype of the inferred params object. Either fix is fine: treat them as ordinary names,
  // or refuse them as names; but never as declared, and never with "undefined" in the message.
  for (const body of ['{{toString}}', '{{constructor}}', '{{hasOwnProperty|date:"HH"}}', '{{__proto__}}', '{{valueOf}}']) {
    const c = compileTemplate(body, { a: { type: 'string' } });
    t.notOk(c.ok, `${body} with declared params {a} is refused`);
    if (!c.ok) t.match(c.problems[0]?.message, /not declared|not a parameter name|reserved name/, body);
  }
  const body = '{{toString}}{{constructor}}{{__proto__}}{{type}}';
  const c = compileTemplate(body);
  if (c.ok) {
    t.same(Object.keys(c.template.params).sort(), ['__proto__', 'constructor', 'toString', 'type'], 'all four inferred');
    const values = JSON.parse('{"toString":"a","constructor":"b","__proto__":"c","type":"d"}') as Record<string, unknown>;
    t.same(renderTemplate(c.template, values, { utcOffsetMinutes: 0 }), { ok: true, text: 'abcd' });
    t.same(renderTemplate(c.template, {}, { utcOffsetMinutes: 0 }), { ok: true, text: '' });
  } else {
    t.notOk(c.problems.some((p) => /undefined/.test(p.message)), `refused for a reason: ${JSON.stringify(c.problems)}`);
  }
});

t.test('reserved names (__proto__, constructor, prototype) are refused in any dotted position, declared or used, and in params at any depth', async () => {
  const reserved = fc.constantFrom('__proto__', 'constructor', 'prototype');
  const plain = fc.constantFrom('a', 'meeting', 'x_1', 'title');
  // A path of 1..4 parts with a reserved one somewhere.
  const path = fc.tuple(fc.array(plain, { maxLength: 3 }), reserved, fc.array(plain, { maxLength: 3 }))
    .filter(([a, , b]) => a.length + b.length < 8)
    .map(([a, r, b]) => [...a, r, ...b].join('.'));
  fc.assert(fc.property(path, (p) => {
    const used = compileTemplate(`x {{${p}}}`);
    const declared = compileTemplate('x', JSON.parse(`{${JSON.stringify(p)}:{"type":"string"}}`) as Record<string, ParamSpec>);
    return !used.ok && !declared.ok
      && used.problems.some((q) => /reserved name/.test(q.message))
      && declared.problems.some((q) => q.field === `/params/${p}` && /reserved name/.test(q.message));
  }), { numRuns: 300, seed: 16 });
  const ok = compileTemplate('{{place}}', { place: { type: 'string' } });
  if (!ok.ok) throw new Error('did not compile');
  // Params as JSON.parse makes them (own __proto__ keys), nested in objects and lists.
  const nest = fc.letrec<{ node: string }>((tie) => ({
    node: fc.oneof({ depthSize: 'small' },
      fc.constant('"v"'),
      fc.tuple(fc.constantFrom('"k"', '"__proto__"', '"constructor"', '"prototype"'), tie('node')).map(([k, v]) => `{${k}:${v}}`),
      tie('node').map((v) => `[${v}]`)),
  })).node;
  fc.assert(fc.property(nest, (json) => {
    const values = JSON.parse(`{"place":"三楼","extra":${json}}`) as Record<string, unknown>;
    const r = renderTemplate(ok.template, values, { utcOffsetMinutes: 0 });
    const hasReserved = /"(__proto__|constructor|prototype)"/.test(json);
    return hasReserved ? !r.ok && /reserved name/.test(r.problems[0]?.message ?? '') && (r.problems[0]?.field ?? '').startsWith('/params/extra') : r.ok && r.text === '三楼';
  }), { numRuns: 500, seed: 61 });
});
