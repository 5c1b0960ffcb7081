import { join } from 'node:path';
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

t.test('every error code is raised somewhere in src (no dead entries in the catalogue)', async (t) => {
  const { readdirSync, statSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  const root = fileURLToPath(new URL('../../src', import.meta.url));
  let text = '';
  const walk = (dir: string): void => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith(join('core', 'errors.ts'))) text += readFileSync(p, 'utf8');
    }
  };
  walk(root);
  for (const code of Object.keys(ERROR_CODES)) {
    // The transport pool names its failures per protocol: `${this.protocol.name}_TIMEOUT` raises SMPP_TIMEOUT and CMPP_TIMEOUT.
    const suffix = /^(SMPP|CMPP)_(.+)$/.exec(code)?.[2];
    const raised = new RegExp(`\\b${code}\\b`).test(text) || (suffix !== undefined && text.includes(`\${this.protocol.name}_${suffix}`));
    t.ok(raised, `${code} is raised somewhere`);
  }
});
