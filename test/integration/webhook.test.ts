/**
 * The outbound webhook client against a real HTTP server on loopback:
 * targets inside are refused in every spelling, the checked address is the
 * one connected to (one lookup), redirects are not followed, bodies are
 * signed, and the reason a tenant reads is one of four words.
 */
import t, { type Test } from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkCallbackUrl, signBody, Webhooks, type WebhooksOptions } from '../../src/outbound/webhook.js';

interface Sink {
  port: number;
  got: Array<{ headers: IncomingMessage['headers']; body: string; remotePort: number | undefined }>;
}

async function sink(t: Test, answer: (req: IncomingMessage) => { status: number; headers?: Record<string, string> } | 'hang' = () => ({ status: 204 })): Promise<Sink> {
  const got: Sink['got'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ headers: req.headers, body, remotePort: req.socket.remotePort });
      const a = answer(req);
      if (a !== 'hang') res.writeHead(a.status, a.headers).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return { port: (server.address() as AddressInfo).port, got };
}

function client(t: Test, o: Partial<WebhooksOptions> = {}): Webhooks {
  const w = new Webhooks({ allow: [], timeoutMs: 10_000, connectionsPerHost: 4, secrets: { currentSecret: (tenant) => (tenant === 'oa' ? 's3cret-oa' : undefined) }, ...o });
  t.teardown(() => w.close());
  return w;
}

t.test('loopback is refused by default in every spelling, and nothing is sent', async (t) => {
  const s = await sink(t);
  const w = client(t);
  for (const host of ['127.0.0.1', '2130706433', '0x7f.0.0.1', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '[::1]', '127.1', '0.0.0.0']) {
    t.equal(await w.post('oa', `http://${host}:${s.port}/cb`, '{}'), 'refused target', host);
  }
  t.equal(s.got.length, 0, 'the sink saw nothing');
});

t.test('link-local, private and ULA targets are refused without a connection attempt', async (t) => {
  const w = client(t);
  for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://[fe80::1]/x', 'http://10.0.0.1/x', 'http://192.168.1.1/x', 'http://100.64.1.1/x', 'http://[fd00::1]/x', 'https://172.16.0.1/x']) {
    t.equal(await w.post('oa', url, '{}'), 'refused target', url);
  }
});

t.test('callbacks.allow opens loopback; the body is signed with the tenant secret', async (t) => {
  const s = await sink(t);
  let now = 1_765_000_000_123;
  const w = client(t, { allow: ['127.0.0.1/32'], now: () => now });
  const body = JSON.stringify({ id: 'm1', status: 'complete' });
  t.equal(await w.post('oa', `http://127.0.0.1:${s.port}/cb?x=1`, body), undefined);
  t.equal(await w.post('oa', `http://2130706433:${s.port}/cb`, body), undefined, 'the decimal form of an allowed address is allowed');
  t.equal(await w.post('oa', `http://[::ffff:127.0.0.1]:${s.port}/cb`, body), undefined, 'so is its mapped form (connected over IPv4)');
  const first = s.got[0]!;
  t.equal(first.body, body);
  t.equal(first.headers['x-smsgw-timestamp'], '1765000000');
  t.equal(first.headers['x-smsgw-signature'], signBody('s3cret-oa', '1765000000', body));
  t.match(first.headers['x-smsgw-signature'], /^[0-9a-f]{64}$/);
  now += 1000;
  t.equal(await w.post('oa', `http://127.0.0.1:${s.port}/cb`, body), undefined);
  t.equal(s.got[3]!.headers['x-smsgw-timestamp'], '1765000001');
  t.ok(w.canSign('oa'));
  t.notOk(w.canSign('other'));
  t.equal(await w.post('other', `http://127.0.0.1:${s.port}/cb`, body), 'no signing secret', 'nothing leaves unsigned: a tenant without a secret gets no POST');
  t.equal(s.got.length, 4, 'the sink saw no unsigned request');
});

t.test('a host name: resolved once, every address checked, the checked one connected to', async (t) => {
  const s = await sink(t);
  const lookups: string[] = [];
  // The first answer is loopback; a rebinding resolver would answer differently the second time.
  const answers = [['127.0.0.1'], ['8.8.8.8']];
  const w = client(t, { resolve: async (host) => { lookups.push(host); return answers[Math.min(lookups.length - 1, 1)]!; } });
  t.equal(await w.post('oa', `http://Hooks.Example:${s.port}/cb`, '{}'), 'refused target', 'a name resolving to loopback is refused');
  t.same(lookups, ['hooks.example']);

  const lookups2: string[] = [];
  const named = client(t, { allow: ['hooks.example'], resolve: async (host) => { lookups2.push(host); return ['127.0.0.1']; } });
  t.equal(await named.post('oa', `http://hooks.example:${s.port}/cb`, '{}'), undefined, 'an allowed host name may resolve inside');
  t.equal(lookups2.length, 1, 'one lookup: the connection went to the address that was checked');
  t.equal(s.got[0]!.headers.host, `hooks.example:${s.port}`, 'the Host header keeps the name');

  const mixed = client(t, { resolve: async () => ['8.8.8.8', '10.0.0.5'] });
  t.equal(await mixed.post('oa', 'http://mixed.example/cb', '{}'), 'refused target', 'one private address among public ones refuses the name');
});

t.test('redirects are not followed; statuses and failures become one of four reasons', async (t) => {
  const target = await sink(t);
  const redirector = await sink(t, () => ({ status: 302, headers: { location: `http://127.0.0.1:${target.port}/inner` } }));
  const failing = await sink(t, () => ({ status: 500 }));
  const hanging = await sink(t, () => 'hang');
  const w = client(t, { allow: ['127.0.0.1/32'], timeoutMs: 10_000 });
  const quick = client(t, { allow: ['127.0.0.1/32'], timeoutMs: 300 });
  t.equal(await w.post('oa', `http://127.0.0.1:${redirector.port}/r`, '{}'), 'HTTP 302');
  t.equal(target.got.length, 0, 'the redirect target was not called');
  t.equal(await w.post('oa', `http://127.0.0.1:${failing.port}/r`, '{}'), 'HTTP 500');
  t.equal(await quick.post('oa', `http://127.0.0.1:${hanging.port}/r`, '{}'), 'timeout');
  // a port nothing listens on: take a free one and close it
  const gone = createServer();
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  const port = (gone.address() as AddressInfo).port;
  await new Promise<void>((r) => gone.close(() => r()));
  t.equal(await w.post('oa', `http://127.0.0.1:${port}/r`, '{}'), 'connection failed');
  const unresolvable = client(t, { resolve: async () => { throw Object.assign(new Error('getaddrinfo ENOTFOUND nope.invalid'), { code: 'ENOTFOUND' }); } });
  t.equal(await unresolvable.post('oa', 'http://nope.invalid/x', '{}'), 'connection failed');
  t.equal(await w.post('oa', `http://user:pw@127.0.0.1:${target.port}/x`, '{}'), 'refused target', 'user information is refused even past the door');
  t.equal(target.got.length, 0);
});

t.test('keep-alive: many POSTs to one host share a few connections', async (t) => {
  const s = await sink(t);
  const w = client(t, { allow: ['127.0.0.1/32'], connectionsPerHost: 4 });
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => w.post('oa', `http://127.0.0.1:${s.port}/cb`, JSON.stringify({ i }))));
  t.ok(results.every((r) => r === undefined));
  t.equal(s.got.length, 200);
  const ports = new Set(s.got.map((g) => g.remotePort));
  t.ok(ports.size <= 4, `${ports.size} connections for 200 POSTs`);
});

t.test('the door refuses user information and non-http schemes', async (t) => {
  t.equal(checkCallbackUrl('https://hooks.example/cb'), undefined);
  t.match(checkCallbackUrl('https://user:pw@hooks.example/cb'), /user information/);
  t.match(checkCallbackUrl('https://user@hooks.example/cb'), /user information/);
  t.match(checkCallbackUrl('ftp://hooks.example/cb'), /http/);
  t.match(checkCallbackUrl('not a url'), /valid URL/);
});

t.test('the answer decides by its status alone: a large body, or one that stalls after a 2xx, is still delivered; a 5xx stays a failure', async (t) => {
  const big = 'x'.repeat(200 * 1024);
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/big') res.writeHead(200, { 'content-length': String(big.length) }).end(big);
      else if (req.url === '/stall-ok') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('partial'); // and never the rest
      } else if (req.url === '/stall-503') {
        res.writeHead(503, { 'content-length': '100' });
        res.write('partial');
      } else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const port = (server.address() as AddressInfo).port;
  const w = client(t, { allow: ['127.0.0.1/32'], timeoutMs: 300 });
  t.equal(await w.post('oa', `http://127.0.0.1:${port}/big`, '{}'), undefined, 'a 200 with a body over the read limit');
  t.equal(await w.post('oa', `http://127.0.0.1:${port}/stall-ok`, '{}'), undefined, 'a 200 whose body stalls past the deadline');
  t.equal(await w.post('oa', `http://127.0.0.1:${port}/stall-503`, '{}'), 'HTTP 503', 'a 503 whose body stalls');
  // The pool is still usable afterwards.
  const results = await Promise.all(Array.from({ length: 20 }, () => w.post('oa', `http://127.0.0.1:${port}/ok`, '{}')));
  t.ok(results.every((r) => r === undefined), 'twenty more POSTs after those');
});

t.test('a deadline passed while every connection is busy: the queued POST is a timeout and is not sent late', async (t) => {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    req.resume();
    if (req.url === '/slow') setTimeout(() => res.writeHead(204).end(), 600);
    else res.writeHead(204).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const port = (server.address() as AddressInfo).port;
  const w = client(t, { allow: ['127.0.0.1/32'], timeoutMs: 1000, connectionsPerHost: 1 });
  const slow = w.post('oa', `http://127.0.0.1:${port}/slow`, '{}');
  const queued = w.post('oa', `http://127.0.0.1:${port}/queued`, '{}', 200);
  t.equal(await queued, 'timeout', 'the queued POST timed out waiting for the connection');
  t.equal(await slow, undefined);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(hits, 1, 'the timed-out POST never reached the server');
});
