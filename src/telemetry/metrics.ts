/**
 * Every metric the gateway exports, created once per process in one registry
 * and handed to the parts that update them. Names are the contract with the
 * dashboards (README "Operations").
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  // ingest
  readonly httpRequests: Counter<'route' | 'status'>;
  readonly acceptedMessages: Counter<'tier'>;
  readonly acceptedRecipients: Counter<'tier'>;
  readonly ingestInflight: Gauge;
  readonly idempotencyCacheSize: Gauge;
  readonly ingestCoalescePending: Gauge;
  readonly coalescedJobSize: Histogram;
  // queue
  readonly queueDepth: Gauge<'tier'>;
  readonly queueDeadLetters: Counter<'tier'>;
  // dispatch
  readonly dispatchJobsInflight: Gauge;
  readonly dispatchSegments: Counter<'outcome'>;
  readonly acceptToSubmitSeconds: Histogram;
  // smpp
  readonly bindWindowOccupancy: Gauge<'account' | 'bind'>;
  readonly bindConnected: Gauge<'account' | 'bind'>;
  readonly bindPendingQueue: Gauge<'account'>;
  readonly submitLatencySeconds: Histogram<'account'>;
  readonly submitResponses: Counter<'account' | 'status'>;
  readonly throttled: Counter<'account' | 'status'>;
  readonly smppTimeouts: Counter<'account'>;
  readonly reconnects: Counter<'account'>;
  // receipts
  readonly dlrLatencySeconds: Histogram<'account'>;
  readonly dlrReceived: Counter<'account' | 'state'>;
  readonly dlrUnknown: Counter<'account'>;
  readonly dlrEarly: Counter<'account'>;
  readonly recipientsFinal: Counter<'state'>;
  readonly storeWriteBatch: Histogram;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'smsgw_process_' });
  const r = [registry];
  return {
    registry,
    httpRequests: new Counter({ name: 'smsgw_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers: r }),
    acceptedMessages: new Counter({ name: 'smsgw_accepted_messages_total', help: 'Messages accepted (202)', labelNames: ['tier'], registers: r }),
    acceptedRecipients: new Counter({ name: 'smsgw_accepted_recipients_total', help: 'Recipients accepted', labelNames: ['tier'], registers: r }),
    ingestInflight: new Gauge({ name: 'smsgw_ingest_inflight_requests', help: 'Requests waiting for durability before their 202', registers: r }),
    ingestCoalescePending: new Gauge({ name: 'smsgw_ingest_coalesce_pending_recipients', help: 'Recipients waiting in open coalesced jobs', registers: r }),
    coalescedJobSize: new Histogram({ name: 'smsgw_ingest_job_recipients', help: 'Recipients per coalesced job at publish', buckets: [1, 2, 5, 10, 50, 100, 250, 500, 1000], registers: r }),
    idempotencyCacheSize: new Gauge({ name: 'smsgw_idempotency_inflight_keys', help: 'Idempotency keys with a request in flight', registers: r }),
    queueDepth: new Gauge({ name: 'smsgw_queue_depth', help: 'Queue entries stored and not acked, by tier', labelNames: ['tier'], registers: r }),
    queueDeadLetters: new Counter({ name: 'smsgw_queue_dead_letters_total', help: 'Queue entries dead-lettered', labelNames: ['tier'], registers: r }),
    dispatchJobsInflight: new Gauge({ name: 'smsgw_dispatch_jobs_inflight', help: 'Jobs taken from the queue and not yet acked', registers: r }),
    dispatchSegments: new Counter({ name: 'smsgw_dispatch_segments_total', help: 'Segments by dispatch outcome', labelNames: ['outcome'], registers: r }),
    acceptToSubmitSeconds: new Histogram({ name: 'smsgw_accept_to_submit_seconds', help: 'From 202 to submit_sm_resp', buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: r }),
    bindWindowOccupancy: new Gauge({ name: 'smsgw_smpp_window_occupancy', help: 'Outstanding requests per bind', labelNames: ['account', 'bind'], registers: r }),
    bindConnected: new Gauge({ name: 'smsgw_smpp_bind_up', help: '1 when the bind is bound', labelNames: ['account', 'bind'], registers: r }),
    bindPendingQueue: new Gauge({ name: 'smsgw_smpp_pending_segments', help: 'Segments waiting for a window slot', labelNames: ['account'], registers: r }),
    submitLatencySeconds: new Histogram({ name: 'smsgw_smpp_submit_latency_seconds', help: 'submit_sm to submit_sm_resp', labelNames: ['account'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: r }),
    submitResponses: new Counter({ name: 'smsgw_smpp_submit_responses_total', help: 'submit_sm_resp by command status', labelNames: ['account', 'status'], registers: r }),
    throttled: new Counter({ name: 'smsgw_smpp_throttled_total', help: 'Throttling answers (0x58 ESME_RTHROTTLED, 0x14 ESME_RMSGQFUL)', labelNames: ['account', 'status'], registers: r }),
    smppTimeouts: new Counter({ name: 'smsgw_smpp_timeouts_total', help: 'Requests without a response in time', labelNames: ['account'], registers: r }),
    reconnects: new Counter({ name: 'smsgw_smpp_reconnects_total', help: 'Bind reconnect attempts', labelNames: ['account'], registers: r }),
    dlrLatencySeconds: new Histogram({ name: 'smsgw_dlr_latency_seconds', help: 'submit_sm_resp to final DLR', labelNames: ['account'], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 3600], registers: r }),
    dlrReceived: new Counter({ name: 'smsgw_dlr_received_total', help: 'Delivery receipts by state', labelNames: ['account', 'state'], registers: r }),
    dlrUnknown: new Counter({ name: 'smsgw_dlr_unknown_total', help: 'Receipts whose message id matched nothing (after the early-DLR grace)', labelNames: ['account'], registers: r }),
    dlrEarly: new Counter({ name: 'smsgw_dlr_early_total', help: 'Receipts that arrived before their submit_sm_resp was recorded', labelNames: ['account'], registers: r }),
    recipientsFinal: new Counter({ name: 'smsgw_recipients_final_total', help: 'Recipients reaching a final state', labelNames: ['state'], registers: r }),
    storeWriteBatch: new Histogram({ name: 'smsgw_receipts_write_batch_size', help: 'Operations per receipt-store transaction', buckets: [1, 10, 100, 500, 1000, 5000, 20000], registers: r }),
  };
}
