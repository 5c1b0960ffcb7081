/**
 * HEAD. No route answers HEAD (it is 405 with Allow, or 404), but the answer
 * to a HEAD must carry no body: the error JSON used to follow the headers, and
 * on a kept-alive connection its bytes were read as the start of the next
 * answer (the client's framing broke). Now: headers only, and the connection
 * goes on answering.
 */
import t from 'tap';
import { startTestGateway } from '../support/gateway.js';
import { rawExchange } from '../support/http.js';


t.test('HEAD answers carry no body, and the connection stays in step', async (t) => {
  const gw = await startTestGateway(t);
  const port = Number(new URL(gw.url).port);
  const head = (path: string): string => `HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const get = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  for (const path of ['/healthz', '/v1/messages', '/v1/messages/abc', '/nope', '/v1/messages/%zz']) {
    const got = await rawExchange(port, head(path) + get, { quietMs: 300 });
    const answers = got.split(/(?=HTTP\/1\.1 )/);
    t.equal(answers.length, 2, `HEAD ${path}, then GET: two answers`);
    t.match(answers[0], /^HTTP\/1\.1 40[45] /, `HEAD ${path}: 404 or 405`);
    t.match(answers[0], /\r\n\r\n$/, `HEAD ${path}: nothing after the headers`);
    t.notMatch(answers[0], /"error"/, `HEAD ${path}: no JSON body`);
    t.match(answers[1], /^HTTP\/1\.1 200 [\s\S]*\{"status":"ok"\}$/, `HEAD ${path}: the next answer is whole`);
  }
});
