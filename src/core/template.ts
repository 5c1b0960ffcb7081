/**
 * Message templates: `{{meeting.title}}`, `{{time|date:"M月d日 HH:mm"}}`,
 * `{{missing|join:"、"}}`, `{{note|default:""}}`. Pure: no I/O, no clock.
 *
 *   compileTemplate(body, params?)  → parsed once, when saved (errors name the place)
 *   renderTemplate(compiled, values) → the text, or problems naming each parameter
 *
 * A placeholder is a dotted path into the params object, followed by any
 * number of filters:
 *
 *   date:"<format>"  a `time` parameter (RFC 3339 string or epoch ms), shown in
 *                    the local time of `utcOffsetMinutes`. Format letters:
 *                    yyyy yy M MM d dd H HH m mm s ss; E → 一…日; anything
 *                    else is literal (so "M月d日 HH:mm" needs no quoting).
 *   join:"<sep>"     a `list` parameter (array of strings/numbers).
 *   default:"<text>" used when the parameter is absent (makes it optional).
 *
 * Parameters are typed: string, number, time, list. With declared params a
 * placeholder must name one of them and its filters must fit its type; with
 * none declared (config texts), the placeholders declare themselves: `date`
 * makes a time, `join` a list, anything else a string.
 */
import { GatewayError, type FieldProblem } from './errors.js';

export type ParamType = 'string' | 'number' | 'time' | 'list';
export const PARAM_TYPES: readonly ParamType[] = ['string', 'number', 'time', 'list'];

export interface ParamSpec {
  readonly type: ParamType;
  /** Default true (a placeholder with a `default` filter may still be left out). */
  readonly required?: boolean;
  /** Longest value (string: characters; list: items). */
  readonly maxLength?: number;
}

export type Filter =
  | { readonly name: 'date'; readonly format: readonly DateToken[] }
  | { readonly name: 'join'; readonly separator: string }
  | { readonly name: 'default'; readonly value: string };

export type DateToken = { readonly field: 'yyyy' | 'yy' | 'M' | 'MM' | 'd' | 'dd' | 'H' | 'HH' | 'm' | 'mm' | 's' | 'ss' | 'E' } | { readonly literal: string };

export type TemplatePart = string | { readonly path: string; readonly filters: readonly Filter[] };

export interface CompiledTemplate {
  readonly source: string;
  readonly parts: readonly TemplatePart[];
  /** Declared (or inferred) parameters by path. */
  readonly params: Readonly<Record<string, ParamSpec>>;
}

export type Compiled = { ok: true; template: CompiledTemplate } | { ok: false; problems: FieldProblem[] };
export type Rendered = { ok: true; text: string } | { ok: false; problems: FieldProblem[] };

const PATH_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}$/;
/**
 * Names no parameter (nor any dotted part of one, nor any key of a send's
 * `params`) may have: they name an object's prototype machinery, so a
 * template using one would look its value up on Object.prototype (or never
 * find it) instead of in the params. Refused when a template is saved
 * (TEMPLATE_INVALID) and when a send carries one (TEMPLATE_PARAMS).
 */
export const RESERVED_PARAM_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
/** Nesting of `params` looked through for reserved keys (deeper than any path: 8 dotted parts). */
const MAX_PARAMS_DEPTH = 16;

/** The first reserved dotted part of a parameter path, or undefined. */
export function reservedPart(path: string): string | undefined {
  return path.split('.').find((p) => RESERVED_PARAM_NAMES.has(p));
}

/** The JSON pointer of the first reserved key in a send's params (objects and lists, bounded depth), or undefined. */
export function reservedKeyIn(values: unknown, field: string, depth = 0): string | undefined {
  if (values === null || typeof values !== 'object' || depth > MAX_PARAMS_DEPTH) return undefined;
  if (Array.isArray(values)) {
    for (let i = 0; i < values.length; i++) {
      const hit = reservedKeyIn(values[i], `${field}/${i}`, depth + 1);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }
  for (const key of Object.keys(values)) {
    if (RESERVED_PARAM_NAMES.has(key)) return `${field}/${key}`;
    const hit = reservedKeyIn((values as Record<string, unknown>)[key], `${field}/${key}`, depth + 1);
    if (hit !== undefined) return hit;
  }
  return undefined;
}
/** Most placeholders in one template. */
export const MAX_PLACEHOLDERS = 64;
/** Longest rendered value of one placeholder (characters). */
export const MAX_VALUE_CHARS = 2000;

/** Parse a template body. `params` declares typed parameters; absent: inferred from the placeholders. */
export function compileTemplate(source: string, params?: Readonly<Record<string, ParamSpec>>, field = '/body'): Compiled {
  const problems: FieldProblem[] = [];
  const parts: TemplatePart[] = [];
  const inferred = new Map<string, ParamSpec>();
  let pos = 0;
  let placeholders = 0;
  while (pos < source.length) {
    const open = source.indexOf('{{', pos);
    if (open < 0) {
      parts.push(source.slice(pos));
      break;
    }
    if (open > pos) parts.push(source.slice(pos, open));
    const close = findClose(source, open + 2);
    if (close < 0) {
      problems.push({ field, message: `"{{" at character ${open + 1} is never closed with "}}"` });
      break;
    }
    const inner = source.slice(open + 2, close);
    const parsed = parsePlaceholder(inner);
    if (typeof parsed === 'string') {
      problems.push({ field, message: `{{${inner}}} at character ${open + 1}: ${parsed}` });
    } else {
      if (++placeholders > MAX_PLACEHOLDERS) {
        problems.push({ field, message: `more than ${MAX_PLACEHOLDERS} placeholders` });
        break;
      }
      const spec = params && Object.hasOwn(params, parsed.path) ? params[parsed.path] : undefined;
      if (params && !spec) {
        problems.push({ field, message: `{{${inner}}} uses parameter ${parsed.path}, which is not declared (declared: ${Object.keys(params).join(', ') || 'none'})` });
      } else {
        const type = spec?.type ?? inferType(parsed.filters);
        const misfit = parsed.filters.find((f) => (f.name === 'date' && type !== 'time') || (f.name === 'join' && type !== 'list'));
        if (misfit) problems.push({ field, message: `{{${inner}}}: filter ${misfit.name} does not fit parameter ${parsed.path} of type ${type}` });
        if (!params) {
          const before = inferred.get(parsed.path);
          if (before && before.type !== type) problems.push({ field, message: `parameter ${parsed.path} is used both as ${before.type} and as ${type}` });
          inferred.set(parsed.path, { type, required: false });
        }
      }
      parts.push(parsed);
    }
    pos = close + 2;
  }
  if (params) {
    for (const [path, spec] of Object.entries(params)) {
      if (!PATH_RE.test(path)) problems.push({ field: `/params/${path}`, message: 'a parameter name is letters, digits and _ in dotted parts, e.g. meeting.title' });
      else if (reservedPart(path) !== undefined) problems.push({ field: `/params/${path}`, message: `${reservedPart(path) ?? ''} is a reserved name (${[...RESERVED_PARAM_NAMES].join(', ')} are refused)` });
      if (!PARAM_TYPES.includes(spec.type)) problems.push({ field: `/params/${path}/type`, message: `one of ${PARAM_TYPES.join(', ')}` });
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, template: { source, parts, params: params ?? Object.fromEntries(inferred) } };
}

/** Render with `values` (the request's `params`). Local times use `utcOffsetMinutes`. */
export function renderTemplate(t: CompiledTemplate, values: Readonly<Record<string, unknown>>, opts: { utcOffsetMinutes: number }, field = '/params'): Rendered {
  const problems: FieldProblem[] = [];
  const reserved = reservedKeyIn(values, field);
  if (reserved !== undefined) return { ok: false, problems: [{ field: reserved, message: `a reserved name (${[...RESERVED_PARAM_NAMES].join(', ')} are refused)` }] };
  // Declared parameters: every required one present and of its type, no unknown ones.
  const declared = t.params;
  for (const [path, spec] of Object.entries(declared)) {
    const v = lookup(values, path);
    if (v === undefined) {
      if (spec.required !== false && !hasDefault(t, path)) problems.push({ field: `${field}/${path.replaceAll('.', '/')}`, message: `required (${spec.type})` });
      continue;
    }
    const bad = typeProblem(v, spec);
    if (bad) problems.push({ field: `${field}/${path.replaceAll('.', '/')}`, message: bad });
  }
  if (problems.length > 0) return { ok: false, problems };
  let out = '';
  for (const part of t.parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    const v = lookup(values, part.path);
    const type = (Object.hasOwn(declared, part.path) ? declared[part.path]?.type : undefined) ?? 'string';
    out += show(v, type, part.filters, opts.utcOffsetMinutes);
  }
  return { ok: true, text: out };
}

/** Parameters a template's placeholders use, by path (for previews and docs). */
export function placeholderPaths(t: CompiledTemplate): string[] {
  const seen = new Set<string>();
  for (const p of t.parts) if (typeof p !== 'string') seen.add(p.path);
  return [...seen];
}

// ------------------------------------------------------------------ parsing

function findClose(s: string, from: number): number {
  let inQuote = false;
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (inQuote && c === '\\') i++;
    else if (c === '"') inQuote = !inQuote;
    else if (!inQuote && c === '}' && s[i + 1] === '}') return i;
    else if (!inQuote && c === '{' && s[i + 1] === '{') return -1;
  }
  return -1;
}

function parsePlaceholder(inner: string): { path: string; filters: Filter[] } | string {
  const pieces = splitPipes(inner);
  const path = (pieces[0] ?? '').trim();
  if (!PATH_RE.test(path)) return `"${path}" is not a parameter name (letters, digits, _ in dotted parts)`;
  const reserved = reservedPart(path);
  if (reserved !== undefined) return `"${path}" uses the reserved name ${reserved} (${[...RESERVED_PARAM_NAMES].join(', ')} are refused)`;
  const filters: Filter[] = [];
  for (const raw of pieces.slice(1)) {
    const m = /^\s*([a-z]+)\s*(?::\s*"((?:[^"\\]|\\.)*)"\s*)?$/.exec(raw);
    if (!m) return `filter "${raw.trim()}" must be name or name:"argument"`;
    const name = m[1] as string;
    const arg = m[2] === undefined ? undefined : m[2].replace(/\\(.)/g, '$1');
    if (name === 'date') {
      if (arg === undefined || arg.length === 0) return 'date needs a format, e.g. date:"M月d日 HH:mm"';
      filters.push({ name: 'date', format: parseDateFormat(arg) });
    } else if (name === 'join') {
      filters.push({ name: 'join', separator: arg ?? '、' });
    } else if (name === 'default') {
      if (arg === undefined) return 'default needs a value, e.g. default:""';
      filters.push({ name: 'default', value: arg });
    } else {
      return `unknown filter ${name} (known: date, join, default)`;
    }
  }
  return { path, filters };
}

function splitPipes(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (inQuote && c === '\\') {
      cur += c + (s[i + 1] ?? '');
      i++;
      continue;
    }
    if (c === '"') inQuote = !inQuote;
    if (c === '|' && !inQuote) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

const DATE_FIELDS = ['yyyy', 'yy', 'MM', 'M', 'dd', 'd', 'HH', 'H', 'mm', 'm', 'ss', 's', 'E'] as const;

export function parseDateFormat(format: string): DateToken[] {
  const tokens: DateToken[] = [];
  let literal = '';
  let i = 0;
  outer: while (i < format.length) {
    for (const f of DATE_FIELDS) {
      if (format.startsWith(f, i)) {
        if (literal) tokens.push({ literal });
        literal = '';
        tokens.push({ field: f });
        i += f.length;
        continue outer;
      }
    }
    literal += format[i];
    i++;
  }
  if (literal) tokens.push({ literal });
  return tokens;
}

function inferType(filters: readonly Filter[]): ParamType {
  if (filters.some((f) => f.name === 'date')) return 'time';
  if (filters.some((f) => f.name === 'join')) return 'list';
  return 'string';
}

function hasDefault(t: CompiledTemplate, path: string): boolean {
  return t.parts.some((p) => typeof p !== 'string' && p.path === path && p.filters.some((f) => f.name === 'default'));
}

// ------------------------------------------------------------------ rendering

function lookup(values: Readonly<Record<string, unknown>>, path: string): unknown {
  let v: unknown = values;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = Object.prototype.hasOwnProperty.call(v, key) ? (v as Record<string, unknown>)[key] : undefined;
  }
  return v === null ? undefined : v;
}

/** Epoch ms of a time value, or undefined. */
export function timeValue(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  const m = typeof v === 'string' ? /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.exec(v) : null;
  if (typeof v === 'string' && m) {
    const [y, mo, d, h] = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
    if (mo < 1 || mo > 12 || d < 1 || d > new Date(Date.UTC(y, mo, 0)).getUTCDate() || h > 23) return undefined;
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

function typeProblem(v: unknown, spec: ParamSpec): string | undefined {
  switch (spec.type) {
    case 'string':
      if (typeof v !== 'string' && typeof v !== 'number') return 'must be a string';
      if (spec.maxLength !== undefined && String(v).length > spec.maxLength) return `at most ${spec.maxLength} characters`;
      if (String(v).length > MAX_VALUE_CHARS) return `at most ${MAX_VALUE_CHARS} characters`;
      return undefined;
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) ? undefined : 'must be a number';
    case 'time':
      return timeValue(v) === undefined ? 'must be an RFC 3339 time with offset (2026-11-22T09:30:00+08:00) or epoch milliseconds' : undefined;
    case 'list':
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' && typeof x !== 'number')) return 'must be a list of strings';
      if (spec.maxLength !== undefined && v.length > spec.maxLength) return `at most ${spec.maxLength} items`;
      return undefined;
  }
}

/** A scalar as text; an object (never a valid parameter value) as its JSON, not "[object Object]". */
function scalarText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? '';
}

function show(v: unknown, type: ParamType, filters: readonly Filter[], utcOffsetMinutes: number): string {
  if (v === undefined) {
    const d = filters.find((f) => f.name === 'default');
    return d && d.name === 'default' ? d.value : '';
  }
  const date = filters.find((f) => f.name === 'date');
  if (date && date.name === 'date') {
    const t = timeValue(v);
    return t === undefined ? '' : formatDate(t, date.format, utcOffsetMinutes);
  }
  if (Array.isArray(v)) {
    const j = filters.find((f) => f.name === 'join');
    const joined = v.map(String).join(j && j.name === 'join' ? j.separator : '、');
    return joined.length > MAX_VALUE_CHARS ? joined.slice(0, MAX_VALUE_CHARS) : joined;
  }
  if (type === 'time') {
    const t = timeValue(v);
    return t === undefined ? scalarText(v) : formatDate(t, parseDateFormat('yyyy-MM-dd HH:mm'), utcOffsetMinutes);
  }
  const s = scalarText(v);
  return s.length > MAX_VALUE_CHARS ? s.slice(0, MAX_VALUE_CHARS) : s;
}

const WEEKDAYS = ['日', '一', '二', '三', '四', '五', '六'];
const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** Format epoch ms in local time (`utcOffsetMinutes` east of UTC). */
export function formatDate(epochMs: number, tokens: readonly DateToken[], utcOffsetMinutes: number): string {
  const d = new Date(epochMs + utcOffsetMinutes * 60_000);
  let out = '';
  for (const t of tokens) {
    if ('literal' in t) {
      out += t.literal;
      continue;
    }
    switch (t.field) {
      case 'yyyy': out += String(d.getUTCFullYear()); break;
      case 'yy': out += pad2(d.getUTCFullYear() % 100); break;
      case 'M': out += String(d.getUTCMonth() + 1); break;
      case 'MM': out += pad2(d.getUTCMonth() + 1); break;
      case 'd': out += String(d.getUTCDate()); break;
      case 'dd': out += pad2(d.getUTCDate()); break;
      case 'H': out += String(d.getUTCHours()); break;
      case 'HH': out += pad2(d.getUTCHours()); break;
      case 'm': out += String(d.getUTCMinutes()); break;
      case 'mm': out += pad2(d.getUTCMinutes()); break;
      case 's': out += String(d.getUTCSeconds()); break;
      case 'ss': out += pad2(d.getUTCSeconds()); break;
      case 'E': out += WEEKDAYS[d.getUTCDay()] ?? ''; break;
    }
  }
  return out;
}

/**
 * Compile a template from config (texts with inferred parameters); throws
 * with the config path in the message, so a bad text stops start-up.
 */
export function compileConfigText(text: string, configPath: string): CompiledTemplate {
  const c = compileTemplate(text, undefined, configPath);
  if (!c.ok) throw new Error(`${configPath}: ${c.problems.map((p) => p.message).join('; ')}`);
  return c.template;
}

/** Render a config text; absent placeholders render empty (or their default). Throws TEMPLATE_PARAMS on a value of the wrong type. */
export function renderText(t: CompiledTemplate, values: Readonly<Record<string, unknown>>, utcOffsetMinutes: number): string {
  const r = renderTemplate(t, values, { utcOffsetMinutes });
  if (!r.ok) throw new GatewayError('TEMPLATE_PARAMS', r.problems[0]?.message, { details: r.problems });
  return r.text;
}
