/**
 * The ops table: liveness, readiness and metrics. Every listener mounts it —
 * the front door beside the API, and the monitoring listener of a process
 * without the API (`--role dispatch`), which mounts nothing else. The API
 * document is its own one-entry table, mounted only beside the API.
 */
import type { Metrics } from '../telemetry/metrics.js';
import { route, type HttpRoute } from './route.js';

export interface Readiness {
  ready(): { ready: boolean; detail: Record<string, unknown> };
}

export interface OpsDeps {
  readonly metrics: Metrics;
  readonly readiness: Readiness;
  /** False while draining. */
  accepting(): boolean;
}

const TAGS = ['ops'];

export const OPS_ROUTES: readonly HttpRoute<OpsDeps>[] = [
  route<OpsDeps, 'none'>({
    method: 'GET', path: '/healthz', realm: 'none', tags: TAGS, summary: 'Liveness',
    responses: { '200': 'alive: { status: ok }' },
    handle: () => ({ status: 200, body: { status: 'ok' } }),
  }),
  route<OpsDeps, 'none'>({
    method: 'GET', path: '/readyz', realm: 'none', tags: TAGS, summary: 'Readiness: store and queue open, binds up (dispatch), accepting',
    responses: { '200': 'ready: { ready, accepting, ...detail }', '503': 'not ready (starting, draining, storage full — `storage: "full"` and `storageReason` —, or a dependency down)' },
    handle: ({ deps }) => {
      const r = deps.readiness.ready();
      const accepting = deps.accepting();
      const ready = r.ready && accepting;
      return { status: ready ? 200 : 503, body: { ready, accepting, ...r.detail } };
    },
  }),
  route<OpsDeps, 'none'>({
    method: 'GET', path: '/metrics', realm: 'none', tags: TAGS, summary: 'Prometheus metrics (the catalogue: src/telemetry/metrics.ts)',
    responses: { '200': { description: 'text exposition format', contentType: 'text/plain' } },
    handle: async ({ deps }) => ({ status: 200, text: await deps.metrics.registry.metrics(), contentType: deps.metrics.registry.contentType }),
  }),
];

export interface DocDeps {
  /** The API document, serialised once. */
  readonly document: string;
}

export const DOC_ROUTES: readonly HttpRoute<DocDeps>[] = [
  route<DocDeps, 'none'>({
    method: 'GET', path: '/openapi.json', realm: 'none', tags: TAGS, summary: 'This document (docs/openapi.json is the same)',
    responses: { '200': 'OpenAPI 3.1' },
    handle: ({ deps }) => ({ status: 200, text: deps.document, contentType: 'application/json' }),
  }),
];
