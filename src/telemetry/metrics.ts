/**
 * The metrics catalogue: every metric the gateway exports is declared here,
 * with its labels and help, created once per process in one registry and
 * handed to the parts that update them. No part registers a metric of its
 * own (a test checks /metrics exposes exactly these names plus the default
 * process metrics). Names are the contract with the dashboards (README
 * "Operations").
 *
 * Default process metrics are prefixed `smsgw_` (prom-client's own names
 * already start with process_ / nodejs_): smsgw_process_cpu_user_seconds_total,
 * not smsgw_process_process_….
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { memos } from '../core/memo.js';

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
  readonly dispatchHeldForIntake: Gauge;
  readonly dispatchIntakeHoldSeconds: Counter;
  readonly dispatchIntakeBacklog: Gauge;
  readonly dispatchSegments: Counter<'outcome'>;
  readonly routeAccountUp: Gauge<'account'>;
  readonly routeRecipients: Counter<'rule' | 'account'>;
  readonly routeFailovers: Counter<'rule' | 'account'>;
  readonly routeAccountDown: Counter<'account' | 'reason'>;
  readonly routeTableVersion: Gauge;
  readonly reroutes: Counter<'outcome'>;
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
  // cmpp (China Mobile ISMG accounts; the same meanings as the smpp ones, by link and Result)
  readonly cmppLinkUp: Gauge<'account' | 'link'>;
  readonly cmppWindowOccupancy: Gauge<'account' | 'link'>;
  readonly cmppPendingQueue: Gauge<'account'>;
  readonly cmppSubmitLatencySeconds: Histogram<'account'>;
  readonly cmppSubmitResponses: Counter<'account' | 'result'>;
  readonly cmppFlowControl: Counter<'account'>;
  readonly cmppFlowControlBackoffs: Counter<'account'>;
  readonly cmppTimeouts: Counter<'account'>;
  readonly cmppReconnects: Counter<'account'>;
  readonly cmppDelivers: Counter<'account' | 'kind' | 'result'>;
  // receipts
  readonly dlrLatencySeconds: Histogram<'account'>;
  readonly dlrReceived: Counter<'account' | 'state'>;
  readonly dlrUnknown: Counter<'account'>;
  readonly dlrEarly: Counter<'account'>;
  readonly dlrOutcome: Counter<'account' | 'outcome'>;
  readonly dlrEarlyResolved: Counter<'account' | 'outcome'>;
  readonly dlrReusedId: Counter<'account' | 'outcome'>;
  readonly recipientsFinal: Counter<'state'>;
  readonly storeWriteBatch: Histogram;
  readonly receiptMessagesInMemory: Gauge;
  // directory: grants, quotas, content rules, fan-out
  readonly directoryRefusals: Counter<'reason'>;
  readonly heldMessages: Gauge;
  readonly fanoutExpansions: Counter<'outcome'>;
  readonly fanoutRecipients: Counter<'route'>;
  readonly fanoutSeconds: Histogram;
  readonly quotaMinuteWindows: Gauge;
  readonly groupCountCache: Gauge;
  /** Entries of the bounded memos of the hot path (src/core/memo.ts), read when scraped. */
  readonly memoEntries: Gauge<'memo'>;
  // pda channel
  readonly pdaSessions: Gauge<'state'>;
  readonly pdaHandshakes: Counter<'outcome'>;
  readonly pdaSessionsClosed: Counter<'reason'>;
  readonly pdaFramesIn: Counter<'type'>;
  readonly pdaMessagesSent: Counter<'kind'>;
  readonly pdaInflight: Gauge;
  readonly pdaOutboxEntries: Gauge;
  readonly pdaOutboxRefused: Counter<'reason'>;
  readonly pdaCopies: Counter<'outcome'>;
  readonly pdaAppendToAckSeconds: Histogram;
  readonly pdaStatusBacklog: Gauge;
  readonly pdaStatusRelayFailures: Counter;
  readonly pdaWriteBatch: Histogram<'op'>;
  // completion callbacks
  readonly statusCallbacks: Counter<'outcome'>;
  readonly statusCallbacksWaiting: Gauge;
  readonly statusCallbacksDue: Gauge;
  readonly statusCallbacksInflight: Gauge;
  readonly statusCallbacksCounted: Gauge;
  readonly statusCallbacksDueInMemory: Gauge;
  readonly statusEventCallbacks: Counter<'outcome'>;
  readonly statusEventPosts: Counter<'outcome'>;
  readonly statusEventCallbacksWaiting: Gauge;
  readonly statusEventLanesTracked: Gauge;
  readonly statusEventPostsInflight: Gauge;
  // status events and receipt replication (NATS)
  readonly statusEvents: Counter<'outcome'>;
  readonly statusEventsBuffered: Gauge;
  readonly replicationPublished: Counter<'outcome'>;
  readonly replicationOps: Counter<'outcome'>;
  readonly replicationOutbox: Gauge;
  readonly replicationApplyLag: Gauge;
  // mobile office
  readonly workflowEvents: Counter<'status'>;
  readonly scheduledPending: Gauge;
  readonly scheduledFired: Counter<'kind' | 'outcome'>;
  readonly moMessages: Counter<'route'>;
  readonly moOpenParts: Gauge;
  readonly moPendingForwards: Gauge;
  readonly meetingReplies: Counter<'outcome'>;
  readonly caseQueryWindows: Gauge;
  readonly caseQueryRefused: Counter;
  // new-mail alerts
  readonly mailMessages: Counter<'outcome'>;
  readonly mailAlerts: Counter<'kind'>;
  readonly mailPendingDigests: Gauge;
  readonly mailInflight: Gauge;
  // storage (src/storage/health.ts)
  readonly storageFull: Gauge;
  readonly storageWriteFailures: Counter;
  readonly storageFreeBytes: Gauge;
  // pages given back (src/storage/page-release.ts)
  readonly storagePageReleases: Counter<'result'>;
  readonly storagePageReleaseSeconds: Histogram;
  readonly storagePageReleasesOverBudget: Counter;
  // retention (src/storage/retention.ts)
  readonly retentionPurgedRows: Counter<'kind'>;
  readonly retentionSweepSeconds: Histogram;
  readonly retentionSkippedMessages: Counter;
}

/** A counter for fixed label values, for hot paths: see `boundCounter`. */
export interface BoundCounter {
  inc(value?: number): void;
}

interface BoundCounts {
  readonly labels: Record<string, string | number>;
  n: number;
}

/** The bound counts of each counter that has any, handed over when the counter is read. */
const boundCounts = new WeakMap<object, BoundCounts[]>();

/**
 * A counter's child for fixed label values, cheap to increment: prom-client
 * hashes the label object on every `inc` (its `labels()` children too), so
 * here the increments add up in a plain number and reach the counter when it
 * is read (its `collect`, which the registry calls before every exposition).
 * What /metrics shows is the same; only the hashing moves off the hot path.
 */
export function boundCounter<T extends string>(counter: Counter<T>, labels: Partial<Record<T, string | number>>): BoundCounter {
  let list = boundCounts.get(counter);
  if (list === undefined) {
    const own: BoundCounts[] = [];
    list = own;
    boundCounts.set(counter, own);
    const c = counter as unknown as { collect?: (this: unknown) => void | Promise<void> };
    const previous = c.collect;
    c.collect = function (this: unknown) {
      for (const b of own) {
        if (b.n === 0) continue;
        const n = b.n;
        b.n = 0;
        counter.inc(b.labels as Partial<Record<T, string | number>>, n);
      }
      return previous?.call(this);
    };
  }
  const counts: BoundCounts = { labels: { ...labels } as Record<string, string | number>, n: 0 };
  list.push(counts);
  return {
    inc(value = 1) {
      counts.n += value;
    },
  };
}

/** A histogram for fixed label values, for hot paths: see `boundHistogram`. */
export interface BoundHistogram {
  observe(value: number): void;
}

interface BoundObservations {
  readonly labels: Record<string, string | number>;
  /** Observations per bucket of the histogram's upper bounds (the last: above them all). */
  readonly buckets: number[];
  sum: number;
  count: number;
}

/** prom-client's per-label-set record of a histogram (lib/histogram.js createBaseValues). */
interface HistogramEntry {
  labels: Record<string, string | number>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

const boundObservations = new WeakMap<object, BoundObservations[]>();

function sameLabels(a: Record<string, string | number>, b: Record<string, string | number>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (String(a[k]) !== String(b[k])) return false;
  return true;
}

/**
 * A histogram's child for fixed label values, cheap to observe: prom-client
 * hashes the label object (and allocates a closure and a pair) on every
 * `observe`, children of `labels()` too. Here observations add up in plain
 * per-bucket numbers and are merged into the histogram's record of that
 * label set when it is read (its `collect`, called before every
 * exposition): /metrics shows the same buckets, sum and count.
 */
export function boundHistogram<T extends string>(histogram: Histogram<T>, labels: Partial<Record<T, string | number>>): BoundHistogram {
  const h = histogram as unknown as { upperBounds?: readonly number[]; hashMap?: Record<string, HistogramEntry>; collect?: (this: unknown) => void | Promise<void> };
  const bounds = h.upperBounds;
  if (!Array.isArray(bounds) || typeof h.hashMap !== 'object') {
    // Not the prom-client this was written against: the ordinary path.
    return { observe: (v) => histogram.observe(labels, v) };
  }
  let list = boundObservations.get(histogram);
  if (list === undefined) {
    const own: BoundObservations[] = [];
    list = own;
    boundObservations.set(histogram, own);
    const previous = h.collect;
    h.collect = function (this: unknown) {
      for (const b of own) {
        if (b.count === 0) continue;
        let entry: HistogramEntry | undefined;
        for (const e of Object.values(h.hashMap ?? {})) {
          if (sameLabels(e.labels, b.labels)) {
            entry = e;
            break;
          }
        }
        if (entry === undefined) {
          histogram.zero(b.labels as Partial<Record<T, string | number>>);
          for (const e of Object.values(h.hashMap ?? {})) if (sameLabels(e.labels, b.labels)) entry = e;
        }
        if (entry === undefined) continue;
        entry.sum += b.sum;
        entry.count += b.count;
        for (let i = 0; i < bounds.length; i++) {
          const n = b.buckets[i] as number;
          if (n === 0) continue;
          const key = String(bounds[i]);
          entry.bucketValues[key] = (entry.bucketValues[key] ?? 0) + n;
          b.buckets[i] = 0;
        }
        b.sum = 0;
        b.count = 0;
      }
      return previous?.call(this);
    };
  }
  const obs: BoundObservations = { labels: { ...labels } as Record<string, string | number>, buckets: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
  list.push(obs);
  return {
    observe(value) {
      // As prom-client: a value that is not a finite number is refused.
      if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
      let i = 0;
      while (i < bounds.length && value > (bounds[i] as number)) i++;
      obs.buckets[i] = (obs.buckets[i] as number) + 1;
      obs.sum += value;
      obs.count++;
    },
  };
}

/** The metric of the catalogue named `name` in `registry` (parts that hold only the registry); throws if it is not catalogued. */
export function catalogued<T>(registry: Registry, name: string): T {
  const m = registry.getSingleMetric(name);
  if (m === undefined) throw new Error(`metric ${name} is not in the catalogue (src/telemetry/metrics.ts)`);
  return m as unknown as T;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'smsgw_' });
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
    dispatchHeldForIntake: new Gauge({ name: 'smsgw_dispatch_held_for_intake', help: 'Intake first: 1 while the dispatcher starts no new jobs because accepted work waits for its commit (dispatch.intakeFirstMs)', registers: r }),
    dispatchIntakeBacklog: new Gauge({ name: 'smsgw_dispatch_intake_backlog', help: 'Intake first: recipients accepted by this process and not yet taken by its dispatcher; no hold at dispatch.intakeFirstBacklog or more (set only with dispatch.intakeFirstMs > 0)', registers: r }),
    dispatchIntakeHoldSeconds: new Counter({ name: 'smsgw_dispatch_intake_hold_seconds_total', help: 'Intake first: time the dispatcher held new jobs back for the intake, summed over ended holds', registers: r }),
    dispatchSegments: new Counter({ name: 'smsgw_dispatch_segments_total', help: 'Segments by dispatch outcome', labelNames: ['outcome'], registers: r }),
    routeAccountUp: new Gauge({ name: 'smsgw_route_account_up', help: 'Routing health of an account: 1 up, 0 down (unbound or failing past the bound; docs/ARCHITECTURE.md routing)', labelNames: ['account'], registers: r }),
    routeRecipients: new Counter({ name: 'smsgw_route_recipients_total', help: 'Recipients routed, by rule and first-choice account (the share of each account)', labelNames: ['rule', 'account'], registers: r }),
    routeFailovers: new Counter({ name: 'smsgw_route_failovers_total', help: 'Recipients routed past a down account to this one', labelNames: ['rule', 'account'], registers: r }),
    routeAccountDown: new Counter({ name: 'smsgw_route_account_down_total', help: 'Times an account went down for routing, by reason (unbound, failing)', labelNames: ['account', 'reason'], registers: r }),
    routeTableVersion: new Gauge({ name: 'smsgw_route_table_version', help: 'Version of the routing rules in force (0: configuration only)', registers: r }),
    reroutes: new Counter({ name: 'smsgw_reroutes_total', help: 'Reroutes of failed recipients (docs/ARCHITECTURE.md, reroute), counted on the message\'s own host: started (a receipt UNDELIV/REJECTD, a second attempt queued), no-account (no other carrier\'s account: the first result stands), or the second attempt\'s final state (delivered, undeliverable, expired, rejected, failed)', labelNames: ['outcome'], registers: r }),
    acceptToSubmitSeconds: new Histogram({ name: 'smsgw_accept_to_submit_seconds', help: 'From 202 to submit_sm_resp', buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: r }),
    bindWindowOccupancy: new Gauge({ name: 'smsgw_smpp_window_occupancy', help: 'Outstanding requests per bind', labelNames: ['account', 'bind'], registers: r }),
    bindConnected: new Gauge({ name: 'smsgw_smpp_bind_up', help: '1 when the bind is bound', labelNames: ['account', 'bind'], registers: r }),
    bindPendingQueue: new Gauge({ name: 'smsgw_smpp_pending_segments', help: 'Segments waiting for a window slot', labelNames: ['account'], registers: r }),
    submitLatencySeconds: new Histogram({ name: 'smsgw_smpp_submit_latency_seconds', help: 'submit_sm to submit_sm_resp', labelNames: ['account'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: r }),
    submitResponses: new Counter({ name: 'smsgw_smpp_submit_responses_total', help: 'submit_sm_resp by command status', labelNames: ['account', 'status'], registers: r }),
    throttled: new Counter({ name: 'smsgw_smpp_throttled_total', help: 'Throttling answers (0x58 ESME_RTHROTTLED, 0x14 ESME_RMSGQFUL)', labelNames: ['account', 'status'], registers: r }),
    smppTimeouts: new Counter({ name: 'smsgw_smpp_timeouts_total', help: 'Requests without a response in time', labelNames: ['account'], registers: r }),
    reconnects: new Counter({ name: 'smsgw_smpp_reconnects_total', help: 'Bind reconnect attempts', labelNames: ['account'], registers: r }),
    cmppLinkUp: new Gauge({ name: 'smsgw_cmpp_link_up', help: '1 when the CMPP link (connection to the ISMG) is connected', labelNames: ['account', 'link'], registers: r }),
    cmppWindowOccupancy: new Gauge({ name: 'smsgw_cmpp_window_occupancy', help: 'Outstanding CMPP_SUBMIT per link', labelNames: ['account', 'link'], registers: r }),
    cmppPendingQueue: new Gauge({ name: 'smsgw_cmpp_pending_segments', help: 'Segments waiting for a CMPP window slot', labelNames: ['account'], registers: r }),
    cmppSubmitLatencySeconds: new Histogram({ name: 'smsgw_cmpp_submit_latency_seconds', help: 'CMPP_SUBMIT to SUBMIT_RESP Result 0', labelNames: ['account'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: r }),
    cmppSubmitResponses: new Counter({ name: 'smsgw_cmpp_submit_responses_total', help: 'SUBMIT_RESP by Result (OK, CMPP_FLOW_CONTROL, CMPP_BAD_DEST_TERMINAL_ID, …; Results above 255 as CMPP_RESULT_OTHER)', labelNames: ['account', 'result'], registers: r }),
    cmppFlowControl: new Counter({ name: 'smsgw_cmpp_flow_control_total', help: 'SUBMIT_RESP Result 8 (flow control) answers; each request goes back to the front of its lane', labelNames: ['account'], registers: r }),
    cmppFlowControlBackoffs: new Counter({ name: 'smsgw_cmpp_flow_control_backoffs_total', help: 'Account pauses begun (or doubled) on Result 8; answers to submits sent before the pause do not count again', labelNames: ['account'], registers: r }),
    cmppTimeouts: new Counter({ name: 'smsgw_cmpp_timeouts_total', help: 'CMPP_SUBMIT without SUBMIT_RESP in time', labelNames: ['account'], registers: r }),
    cmppReconnects: new Counter({ name: 'smsgw_cmpp_reconnects_total', help: 'CMPP link reconnect attempts', labelNames: ['account'], registers: r }),
    cmppDelivers: new Counter({ name: 'smsgw_cmpp_deliver_total', help: 'CMPP_DELIVER received, by kind (report, mo, bad: undecodable or unparseable report) and the DELIVER_RESP Result answered (0 durable, 1 bad structure, 8 storage full, 9 other failure)', labelNames: ['account', 'kind', 'result'], registers: r }),
    dlrLatencySeconds: new Histogram({ name: 'smsgw_dlr_latency_seconds', help: 'submit_sm_resp to final DLR', labelNames: ['account'], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 3600], registers: r }),
    dlrReceived: new Counter({ name: 'smsgw_dlr_received_total', help: 'Delivery receipts by state', labelNames: ['account', 'state'], registers: r }),
    dlrUnknown: new Counter({ name: 'smsgw_dlr_unknown_total', help: 'Receipts whose message id matched nothing (after the early-DLR grace)', labelNames: ['account'], registers: r }),
    dlrEarly: new Counter({ name: 'smsgw_dlr_early_total', help: 'Receipts that arrived before their submit_sm_resp was recorded', labelNames: ['account'], registers: r }),
    dlrOutcome: new Counter({ name: 'smsgw_dlr_outcome_total', help: 'Receipts received here, by what became of each on arrival: applied, early (waits for its submit), duplicate (its id already had a final receipt), unknown (can never match), intermediate; they add up to smsgw_dlr_received_total', labelNames: ['account', 'outcome'], registers: r }),
    dlrEarlyResolved: new Counter({ name: 'smsgw_dlr_early_resolved_total', help: 'Early receipts (outcome early) that left waiting, by how: applied (their submit came), duplicate (it came already final), unknown (none came within the TTL); early minus these is what waits', labelNames: ['account', 'outcome'], registers: r }),
    dlrReusedId: new Counter({ name: 'smsgw_dlr_reused_id_total', help: 'Receipts that named a part already final (counted duplicate), kept for a newer submit reusing the id (an SMSC numbering from 1 again after a restart), by outcome: kept, applied (a submit that went out before it arrived took it), resend (the id was reused by a submit sent after it arrived: a re-send of the old receipt, dropped), overflow (dropped for a newer one: at most 4 wait under one id), expired (no submit reused the id within the early-receipt TTL); kept minus the others is what waits', labelNames: ['account', 'outcome'], registers: r }),
    recipientsFinal: new Counter({ name: 'smsgw_recipients_final_total', help: 'Recipients reaching a final state', labelNames: ['state'], registers: r }),
    receiptMessagesInMemory: new Gauge({ name: 'smsgw_receipts_messages_in_memory', help: 'Message rows of messages this process accepted kept in memory for their receipts, submits and completion (bound 16,384, oldest dropped first; a miss reads the row)', registers: r }),
    storeWriteBatch: new Histogram({ name: 'smsgw_receipts_write_batch_size', help: 'Operations per receipt-store transaction', buckets: [1, 10, 100, 500, 1000, 5000, 20000], registers: r }),
    directoryRefusals: new Counter({ name: 'smsgw_directory_refusals_total', help: 'Sends refused by directory rules (tier, group, direct, workflow, police, disabled, quota-daily, quota-minute, content, channel)', labelNames: ['reason'], registers: r }),
    heldMessages: new Gauge({ name: 'smsgw_held_messages', help: 'Messages held for review (sensitive-word filter, onMatch hold)', registers: r }),
    fanoutExpansions: new Counter({ name: 'smsgw_fanout_expansions_total', help: 'Group expansions by outcome (expanded, replayed, rejected-on-review, dead-lettered)', labelNames: ['outcome'], registers: r }),
    fanoutRecipients: new Counter({ name: 'smsgw_fanout_recipients_total', help: 'Expanded group members by route (sms, pda, blocked, refused, no-pda)', labelNames: ['route'], registers: r }),
    fanoutSeconds: new Histogram({ name: 'smsgw_fanout_expansion_seconds', help: 'Expanding one group message and publishing its recipient jobs', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: r }),
    quotaMinuteWindows: new Gauge({ name: 'smsgw_quota_minute_windows', help: 'Units with a per-minute quota window in this process', registers: r }),
    groupCountCache: new Gauge({ name: 'smsgw_directory_count_cache_entries', help: 'Group member counts cached for the 202 (invalidated by any directory change)', registers: r }),
    memoEntries: new Gauge({
      name: 'smsgw_memo_entries',
      help: 'Entries of a bounded memo of the hot path (callback URL checks, callback origins); each is cleared when full',
      labelNames: ['memo'],
      registers: r,
      collect() {
        for (const [name, m] of memos()) this.set({ memo: name }, m.size);
      },
    }),
    pdaSessions: new Gauge({ name: 'smsgw_pda_sessions', help: 'PDA WebSocket sessions by state (handshake, ready)', labelNames: ['state'], registers: r }),
    pdaHandshakes: new Counter({ name: 'smsgw_pda_handshakes_total', help: 'PDA handshakes by outcome (ok, auth-failed, device-revoked, ...)', labelNames: ['outcome'], registers: r }),
    pdaSessionsClosed: new Counter({ name: 'smsgw_pda_sessions_closed_total', help: 'PDA sessions closed, by reason', labelNames: ['reason'], registers: r }),
    pdaFramesIn: new Counter({ name: 'smsgw_pda_frames_in_total', help: 'Frames received from PDAs by type (invalid: failed to decode)', labelNames: ['type'], registers: r }),
    pdaMessagesSent: new Counter({ name: 'smsgw_pda_messages_sent_total', help: 'MESSAGE frames sent (first: first send in a session; redelivery: sent in an earlier session)', labelNames: ['kind'], registers: r }),
    pdaInflight: new Gauge({ name: 'smsgw_pda_inflight_messages', help: 'MESSAGE frames sent and not yet acknowledged, all sessions', registers: r }),
    pdaOutboxEntries: new Gauge({ name: 'smsgw_pda_outbox_entries', help: 'Entries in all PDA outboxes (waiting for a device ack)', registers: r }),
    pdaOutboxRefused: new Counter({ name: 'smsgw_pda_outbox_refused_total', help: 'Device copies refused at append (outbox-full, no-device)', labelNames: ['reason'], registers: r }),
    pdaCopies: new Counter({ name: 'smsgw_pda_copies_total', help: 'Device copies leaving the outbox by outcome (acked, expired, withdrawn)', labelNames: ['outcome'], registers: r }),
    pdaAppendToAckSeconds: new Histogram({ name: 'smsgw_pda_append_to_ack_seconds', help: 'From outbox append to the device ack being committed', buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400], registers: r }),
    pdaStatusBacklog: new Gauge({ name: 'smsgw_pda_status_backlog', help: 'PDA status updates committed and not yet recorded in the receipt store', registers: r }),
    pdaStatusRelayFailures: new Counter({ name: 'smsgw_pda_status_relay_failures_total', help: 'Failed attempts to hand PDA status updates to the receipt store (retried)', registers: r }),
    storageFull: new Gauge({ name: 'smsgw_storage_full', help: '1 while the data directory refuses writes (a commit failed; cleared by a probe write)', registers: r }),
    storageWriteFailures: new Counter({ name: 'smsgw_storage_write_failures_total', help: 'LMDB commits that failed (disk full, map full, I/O error)', registers: r }),
    storageFreeBytes: new Gauge({ name: 'smsgw_storage_free_bytes', help: 'Free bytes on the data directory\'s file system (for an unprivileged process; read every storage.freeSpaceCheckMs)', registers: r }),
    storagePageReleases: new Counter({ name: 'smsgw_storage_page_releases_total', help: 'Times the process gave back the data file\'s mapped pages and the heap\'s free pages (storage.releasePagesMs), by result (ok; failed: the kernel refused; unavailable: no madvise/malloc_trim here, counted once)', labelNames: ['result'], registers: r }),
    storagePageReleasesOverBudget: new Counter({ name: 'smsgw_storage_page_releases_over_budget_total', help: 'Releases of the data file\'s mapped pages started between the timed ones because the process\'s file-backed resident pages grew by storage.releaseAboveMiB since the last (also counted in smsgw_storage_page_releases_total)', registers: r }),
    storagePageReleaseSeconds: new Histogram({ name: 'smsgw_storage_page_release_seconds', help: 'Duration of one giving back of mapped and heap pages', buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1], registers: r }),
    retentionPurgedRows: new Counter({ name: 'smsgw_retention_purged_rows_total', help: 'Rows removed by the retention sweep, by kind (message, recipient, receipt_index, callback, idempotency, audit)', labelNames: ['kind'], registers: r }),
    retentionSweepSeconds: new Histogram({ name: 'smsgw_retention_sweep_seconds', help: 'Duration of one retention sweep (bounded: retention.maxRowsPerSweep)', buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60], registers: r }),
    retentionSkippedMessages: new Counter({ name: 'smsgw_retention_skipped_messages_total', help: 'Messages past retention.messages left in place because a recipient is not final (each time a sweep meets one)', registers: r }),
    pdaWriteBatch: new Histogram({ name: 'smsgw_pda_write_batch_size', help: 'Operations per PDA LMDB transaction by kind', labelNames: ['op'], buckets: [1, 10, 100, 500, 1000, 5000, 20000], registers: r }),
    statusCallbacks: new Counter({ name: 'smsgw_status_callbacks_total', help: 'Completion callback POSTs by outcome (delivered, retry, failed)', labelNames: ['outcome'], registers: r }),
    statusCallbacksWaiting: new Gauge({ name: 'smsgw_status_callbacks_waiting', help: 'Messages with a callbackUrl not yet called back (incomplete, due or retrying)', registers: r }),
    statusCallbacksDue: new Gauge({ name: 'smsgw_status_callbacks_due', help: 'Complete messages whose callback is due, leased or waiting for a retry (receipts.callbacks.due)', registers: r }),
    statusCallbacksInflight: new Gauge({ name: 'smsgw_status_callbacks_inflight', help: 'Completion callback POSTs in flight (bound: callbacks.concurrency)', registers: r }),
    statusCallbacksCounted: new Gauge({ name: 'smsgw_status_callbacks_counted', help: 'Multi-recipient messages whose final recipients are counted in memory (bound 100,000; beyond it the sweep finds them)', registers: r }),
    statusCallbacksDueInMemory: new Gauge({ name: 'smsgw_status_callbacks_due_in_memory', help: 'Due completion callbacks this process made due and remembers with what their POST needs, so it claims them without walking receipts.callbacks.due or reading their message (bound 16 × callbacks.concurrency; beyond it they wait on disk only)', registers: r }),
    statusEventCallbacks: new Counter({ name: 'smsgw_status_event_callbacks_total', help: 'Per-recipient status events (statusCallback) leaving the outbox, by outcome (delivered, failed: given up after callbacks.attempts)', labelNames: ['outcome'], registers: r }),
    statusEventPosts: new Counter({ name: 'smsgw_status_event_posts_total', help: 'Status-event batch POSTs by outcome (delivered, retry, failed)', labelNames: ['outcome'], registers: r }),
    statusEventCallbacksWaiting: new Gauge({ name: 'smsgw_status_event_callbacks_waiting', help: 'Per-recipient status events written and not yet acknowledged or given up (receipts.events)', registers: r }),
    statusEventLanesTracked: new Gauge({ name: 'smsgw_status_event_lanes_tracked', help: 'Status-event lanes known in memory (bound 10,000; beyond it the scan finds them)', registers: r }),
    statusEventPostsInflight: new Gauge({ name: 'smsgw_status_event_posts_inflight', help: 'Status-event batch POSTs in flight (bound: callbacks.concurrency)', registers: r }),
    statusEvents: new Counter({ name: 'smsgw_status_events_total', help: 'Final-state events for the status stream, by outcome', labelNames: ['outcome'], registers: r }),
    statusEventsBuffered: new Gauge({ name: 'smsgw_status_events_buffered', help: 'Status events waiting to be published', registers: r }),
    replicationPublished: new Counter({ name: 'smsgw_replication_published_total', help: 'Outbox entries of this host published to the replication stream, by outcome (published, failed)', labelNames: ['outcome'], registers: r }),
    replicationOps: new Counter({ name: 'smsgw_replication_ops_total', help: "Other hosts' receipt-store operations, by outcome (applied, skipped: already here, missing: a row this host lacks)", labelNames: ['outcome'], registers: r }),
    replicationOutbox: new Gauge({ name: 'smsgw_replication_outbox_entries', help: 'Outbox entries of this host not yet published', registers: r }),
    replicationApplyLag: new Gauge({ name: 'smsgw_replication_apply_lag_messages', help: 'Replication stream messages not yet applied here (at the last check)', registers: r }),
    workflowEvents: new Counter({ name: 'smsgw_workflow_events_total', help: 'Workflow events by what happened to them (applied, buffered, duplicate, stale)', labelNames: ['status'], registers: r }),
    scheduledPending: new Gauge({ name: 'smsgw_scheduled_pending', help: 'Scheduled messages and tasks waiting for their time', registers: r }),
    scheduledFired: new Counter({ name: 'smsgw_scheduled_fired_total', help: 'Scheduled entries run, by kind and outcome', labelNames: ['kind', 'outcome'], registers: r }),
    moMessages: new Counter({ name: 'smsgw_mo_messages_total', help: 'MO messages stored, by route (opt-out, case-query, meeting-reply, callback, websocket, unmatched, part)', labelNames: ['route'], registers: r }),
    moOpenParts: new Gauge({ name: 'smsgw_mo_open_parts', help: 'Parts of long MO messages waiting for the rest', registers: r }),
    moPendingForwards: new Gauge({ name: 'smsgw_mo_pending_forwards', help: 'MO messages waiting to be forwarded to a callback URL', registers: r }),
    meetingReplies: new Counter({ name: 'smsgw_meeting_replies_total', help: 'Meeting replies by outcome (counted, late)', labelNames: ['outcome'], registers: r }),
    caseQueryWindows: new Gauge({ name: 'smsgw_case_query_windows', help: 'Numbers with a CX case-query reply window in memory (bound 10,000; beyond it the oldest is forgotten)', registers: r }),
    caseQueryRefused: new Counter({ name: 'smsgw_case_query_refused_total', help: 'CX case queries not answered: over the per-number rate limit (5 answers per 10 minutes)', registers: r }),
    mailMessages: new Counter({ name: 'smsgw_mail_messages_total', help: 'Mails received over SMTP (and refusals), by outcome', labelNames: ['outcome'], registers: r }),
    mailAlerts: new Counter({ name: 'smsgw_mail_alerts_total', help: 'New-mail alerts per person, by kind (alert, digest, folded, duplicate, failed, dropped, retried)', labelNames: ['kind'], registers: r }),
    mailPendingDigests: new Gauge({ name: 'smsgw_mail_pending_digests', help: 'Digests of new-mail alerts waiting for their time', registers: r }),
    mailInflight: new Gauge({ name: 'smsgw_mail_inflight', help: 'Mails being handled (DATA received, not yet answered)', registers: r }),
  };
}
