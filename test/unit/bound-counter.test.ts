import t from 'tap';
import { boundCounter, createMetrics } from '../../src/telemetry/metrics.js';

t.test('a bound counter\'s increments show in the exposition with its labels, alongside plain inc()', async (t) => {
  const m = createMetrics({ defaultMetrics: false });
  const ok = boundCounter(m.httpRequests, { route: 'POST /v1/messages', status: '202' });
  const unused = boundCounter(m.httpRequests, { route: 'POST /v1/messages', status: '500' });
  ok.inc();
  ok.inc(2);
  m.httpRequests.inc({ route: 'POST /v1/messages', status: '202' });
  let text = await m.registry.metrics();
  t.match(text, /smsgw_http_requests_total\{route="POST \/v1\/messages",status="202"\} 4\n/);
  t.notMatch(text, /status="500"/, 'a bound counter never incremented is no series');
  ok.inc();
  text = await m.registry.metrics();
  t.match(text, /status="202"\} 5\n/, 'counted once: what was handed over is not handed over again');
  unused.inc(0);
  const accepted = boundCounter(m.acceptedRecipients, { tier: 'routine' });
  accepted.inc(3);
  const got = await m.acceptedRecipients.get();
  t.same(got.values.map((v) => [v.labels, v.value]), [[{ tier: 'routine' }, 3]], 'get() reads the bound counts too');
});
