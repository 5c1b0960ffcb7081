/**
 * One metrics catalogue: /metrics exposes exactly the names declared in
 * src/telemetry/metrics.ts plus prom-client's default process metrics (with
 * the smsgw_ prefix once, never smsgw_process_process_…), and no other file
 * registers a metric.
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startTestGateway } from '../support/gateway.js';

const names = (exposition: string): string[] => [...exposition.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1] as string).sort();

t.test('/metrics exposes exactly the catalogue and the default process metrics', async (t) => {
  const gw = await startTestGateway(t);
  const exposed = names(await (await fetch(`${gw.url}/metrics`)).text());
  const catalogue = createMetrics({ defaultMetrics: false }).registry.getMetricsAsArray().map((m) => m.name);
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults, prefix: 'smsgw_' });
  const defaultNames = defaults.getMetricsAsArray().map((m) => m.name);
  t.same(exposed, [...catalogue, ...defaultNames].sort(), 'exactly these names');
  for (const n of ['smsgw_http_requests_total', 'smsgw_workflow_events_total', 'smsgw_status_callbacks_total', 'smsgw_mail_messages_total', 'smsgw_replication_ops_total', 'smsgw_status_events_total', 'smsgw_mo_messages_total']) t.ok(catalogue.includes(n), `${n} is catalogued`);
  t.ok(exposed.includes('smsgw_process_cpu_user_seconds_total'), 'default process metrics carry one prefix');
  t.same(exposed.filter((n) => n.includes('process_process') || !n.startsWith('smsgw_')), [], 'no doubled prefix, no unprefixed name');
});

t.test('no file outside src/telemetry/metrics.ts registers a metric', async (t) => {
  const root = fileURLToPath(new URL('../../src', import.meta.url));
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith(join('telemetry', 'metrics.ts')) && /new (Counter|Gauge|Histogram|Summary)\(|collectDefaultMetrics\(/.test(readFileSync(p, 'utf8'))) offenders.push(p);
    }
  };
  walk(root);
  t.same(offenders, []);
});
