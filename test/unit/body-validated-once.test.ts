/**
 * Bodies are validated once: the mount checks a JSON body against the schema
 * in its table entry, and no handler checks it again. Walks the table: every
 * JSON route either leaves the check to the mount or says `check: false`
 * (its handler then validates, with its own messages); and no source file
 * that defines routes calls the schema validator itself — only the mount does.
 */
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allRoutes } from '../../src/http/openapi.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

t.test('every JSON route has its schema in the table; the mount validates unless check is false', async (t) => {
  let mounted = 0;
  let own = 0;
  for (const r of allRoutes()) {
    if (r.kind !== 'http' || r.body?.kind !== 'json') continue;
    t.ok(r.body.schema, `${r.method} ${r.path}: a schema`);
    if (r.body.check === false) own++;
    else mounted++;
  }
  t.ok(mounted >= 19, `${mounted} JSON routes validated by the mount (office and admin among them)`);
  t.equal(own, 5, 'check: false only where the handler has its own messages: POST /v1/messages and the 4 PDA admin bodies');
});

t.test('only the mount calls the schema validator on a request body', async (t) => {
  const callers = sources(SRC)
    .filter((p) => /\bvalidated\(/.test(readFileSync(p, 'utf8')))
    .map((p) => p.slice(SRC.length + 1))
    .filter((p) => p !== join('ingest', 'schemas.ts'));
  t.same(callers, [join('http', 'mount.ts')]);
});
