/**
 * A write pipelined with another request behind it. uWS refuses a request
 * that arrives while an earlier answer on the connection is pending: it
 * closes the connection, so the first request's answer is never sent. The
 * send used to be accepted anyway (durable, and sent to the phone) while the
 * client saw only a closed connection, and a retry sent the SMS twice. Now
 * the mount lets uWS finish the bytes in hand before a write's handler runs,
 * and a write whose client is gone does nothing (counted as 499).
 */
import t from 'tap';
import { startTestGateway, TEST_KEY } from '../support/gateway.js';
import { rawExchange } from '../support/http.js';


const accepted = async (url: string): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith('smsgw_accepted_messages_total')).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
};

t.test('a send with a request pipelined behind it is not accepted when its answer cannot be sent', async (t) => {
  const gw = await startTestGateway(t);
  const port = Number(new URL(gw.url).port);
  const body = JSON.stringify({ to: ['13800138000'], text: 'pipelined' });
  const post = `POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const get = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';

  const before = await accepted(gw.url);
  for (let i = 0; i < 5; i++) {
    const got = await rawExchange(port, post + get);
    t.notMatch(got, /HTTP\/1\.1 202/, 'no 202 reaches the client (uWS closed the connection)');
  }
  t.equal(await accepted(gw.url), before, 'nothing accepted: no SMS the client cannot know about');
  const closed = (await (await fetch(`${gw.url}/metrics`)).text()).match(/smsgw_http_requests_total\{route="POST \/v1\/messages",status="499"\} (\d+)/);
  t.equal(Number(closed?.[1]), 5, 'each counted as 499');

  // The same send alone, and a pipelined read behind a read, are answered as always.
  const alone = await gw.send({ to: ['13800138000'], text: 'alone' });
  t.equal(alone.status, 202);
  t.equal(await accepted(gw.url), before + 1);
  const two = await rawExchange(port, get + get.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'));
  t.equal(two.match(/HTTP\/1\.1 200/g)?.length, 2, 'synchronous pipelining still works');
});
