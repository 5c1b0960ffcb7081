import t from 'tap';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, GatewayError } from '../../src/core/errors.js';

t.test('every error code is documented in docs/ERRORS.md', async (t) => {
  const doc = readFileSync(new URL('../../docs/ERRORS.md', import.meta.url), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) t.match(doc, `\`${code}\``, `${code} is documented`);
});

t.test('GatewayError carries code, status, cause and field details', async (t) => {
  const cause = new Error('root');
  const e = new GatewayError('BAD_NUMBER', 'bad', { cause, details: [{ field: '/to/0', message: 'nope' }] });
  t.equal(e.code, 'BAD_NUMBER');
  t.equal(e.status, 422);
  t.equal(e.cause, cause);
  t.same(e.toJSON(), { error: { code: 'BAD_NUMBER', message: 'bad', details: [{ field: '/to/0', message: 'nope' }] } });
  t.same(new GatewayError('NOT_FOUND').toJSON(), { error: { code: 'NOT_FOUND', message: ERROR_CODES.NOT_FOUND.text } });
});
