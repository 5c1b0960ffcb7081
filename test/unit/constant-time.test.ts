/**
 * Constant-time secret checks everywhere (issue 17): no source line compares
 * something named like a secret (password, secret, authenticator, API/admin
 * key, bearer token, MAC) with `===`, `!==` or Buffer.equals — such checks go
 * through the key rings (digest lookup) or src/core/constant-time.ts
 * sameSecret. Comparisons with undefined / null / '' / a length, and lines
 * marked `// not a secret check`, are not checks of a presented secret.
 * And sameSecret itself answers right for equal, unequal and unequal-length
 * inputs.
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sameSecret } from '../../src/core/constant-time.js';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const SECRET = /(password|secret|authenticator|apikey|adminkey|bearer|token|\bmac\b)/i;
const HARMLESS = /^\s*(undefined|null|''|""|0|true|false|'[a-z_]*'|\d+)\s*$|\.length\b|typeof\b/;

t.test('no secret is compared with === / !== / Buffer.equals in src', async (t) => {
  const offenders: string[] = [];
  for (const file of files('src')) {
    readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (line.includes('// not a secret check') || /^\s*(\*|\/\/)/.test(line)) return;
      for (const m of line.matchAll(/([\w.$?[\]']+)\s*(===|!==)\s*([\w.$?[\]']+)/g)) {
        const [, left = '', , right = ''] = m;
        if (HARMLESS.test(left) || HARMLESS.test(right)) continue;
        if (SECRET.test(left) || SECRET.test(right)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
      }
      if (/\.equals\(/.test(line) && SECRET.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  t.same(offenders, [], 'compare secrets with sameSecret (src/core/constant-time.ts) or look them up by digest');
});

t.test('sameSecret', async (t) => {
  t.ok(sameSecret('relay-secret-1', 'relay-secret-1'));
  t.notOk(sameSecret('relay-secret-1', 'relay-secret-2'));
  t.notOk(sameSecret('short', 'a much longer secret'), 'unequal lengths: false, no throw');
  t.ok(sameSecret(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])));
  t.notOk(sameSecret(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4])));
  t.notOk(sameSecret('', 'x'));
});
