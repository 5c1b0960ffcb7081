import t from 'tap';
import { readFileSync } from 'node:fs';
import { buildOpenApi } from '../../src/ingest/openapi.js';
import { ERROR_CODES } from '../../src/core/errors.js';

t.test('docs/openapi.json is the document the server serves (run `npm run openapi` after API changes)', async (t) => {
  const committed = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
  t.same(committed, buildOpenApi());
});

t.test('the document describes every v1 route and the error codes', async (t) => {
  const doc = buildOpenApi() as { paths: Record<string, unknown>; info: { description: string } };
  for (const p of ['/v1/messages', '/v1/messages/batch', '/v1/messages/{id}', '/healthz', '/readyz', '/metrics', '/openapi.json']) {
    t.ok(doc.paths[p], `${p} is described`);
  }
  for (const code of Object.keys(ERROR_CODES)) t.match(doc.info.description, code);
});
