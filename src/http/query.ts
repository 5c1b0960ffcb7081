/**
 * Query values checked by the mount against the route's documented query
 * parameters (the same schemas the API document shows): a value of the wrong
 * type, out of range, not in the enum, too long or not matching the pattern
 * is 422 VALIDATION naming the parameter, before the handler runs. Every
 * value of a repeated parameter is checked. Parameters the route does not
 * document are ignored (as before). A handler may check more (cursors).
 * A string parameter without its own maxLength or enum is bounded at
 * MAX_PARAM_CHARS (src/http/route.ts): cursors and ids reach the stores as keys.
 */
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { boundedParamSchema, type ParamDoc } from './route.js';

/** Why `value` does not fit `schema` (the JSON-schema subset the tables use), or undefined. */
export function queryValueProblem(schema: Readonly<Record<string, unknown>>, value: string): string | undefined {
  const type = schema['type'];
  if (type === 'integer' || type === 'number') {
    const n = type === 'integer' ? (/^-?\d{1,16}$/.test(value) ? Number(value) : Number.NaN) : value.trim() === '' ? Number.NaN : Number(value);
    if (!Number.isFinite(n)) return type === 'integer' ? 'must be an integer' : 'must be a number';
    const min = schema['minimum'];
    const max = schema['maximum'];
    if (typeof min === 'number' && n < min) return `must be ≥ ${min}`;
    if (typeof max === 'number' && n > max) return `must be ≤ ${max}`;
  } else if (type === 'boolean') {
    if (value !== 'true' && value !== 'false') return 'must be true or false';
  } else {
    const minLength = schema['minLength'];
    const maxLength = schema['maxLength'];
    const pattern = schema['pattern'];
    if (typeof minLength === 'number' && value.length < minLength) return `at least ${minLength} characters`;
    if (typeof maxLength === 'number' && value.length > maxLength) return `at most ${maxLength} characters`;
    if (typeof pattern === 'string' && !new RegExp(pattern, 'u').test(value)) return `must match ${pattern}`;
  }
  const allowed = schema['enum'];
  if (Array.isArray(allowed) && !allowed.some((a) => String(a) === value)) return `one of ${allowed.map(String).join(', ')}`;
  return undefined;
}

/** Throws 422 VALIDATION (details per parameter) when a documented query value does not fit its schema. */
export function checkQuery(docs: readonly ParamDoc[] | undefined, query: URLSearchParams): void {
  if (docs === undefined || docs.length === 0) return;
  const problems: FieldProblem[] = [];
  for (const d of docs) {
    const values = query.getAll(d.name);
    if (values.length === 0) {
      if (d.required === true) problems.push({ field: d.name, message: 'required' });
      continue;
    }
    for (const v of values) {
      const why = queryValueProblem(boundedParamSchema(d.schema), v);
      if (why !== undefined) {
        problems.push({ field: d.name, message: why });
        break;
      }
    }
  }
  const first = problems[0];
  if (first !== undefined) throw new GatewayError('VALIDATION', `query ${first.field}: ${first.message}`, { details: problems });
}
