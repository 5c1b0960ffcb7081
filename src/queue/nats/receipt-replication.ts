/**
 * Receipt replication between hosts over JetStream (docs/DEPLOY.md,
 * "Several hosts"): each host's receipt store writes its changes to an
 * outbox (src/receipts/change-log.ts) in the transactions that make them;
 * here a relay publishes that outbox, and an applier applies every other
 * host's changes to the local store, in stream order.
 *
 *   stream <queue.nats.stream>_RECEIPTS, subjects <prefix>.receipts.<host>
 *   limits retention (maxAgeMs, maxBytes), file storage, replicas as the work stream
 *
 * Relay: the oldest outbox entries (≤ 256 a round) are published in key order
 * with Nats-Msg-Id `<host>.<key>`, then removed once acknowledged. A failed
 * publish leaves the entry (and everything after it) in the outbox; the
 * next round publishes them again (the server drops repeats within the
 * duplicate window). Bounded: the outbox is on disk; its size is exported.
 *
 * Applier: an ordered consumer from this host's position (kept in LMDB,
 * moved in the same transaction as each applied operation), so a restart
 * resumes exactly where the committed state is. Every process of a host may
 * run one: an operation already applied by another is skipped.
 *
 * Dispatch uses `caughtUp()`: before a redelivered job, or one whose message
 * this host has not seen yet, it waits until every change published so far
 * is applied here, so a segment another host submitted is seen as submitted.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectGateway } from './connection.js';
import {
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { pack, unpack } from 'msgpackr';
import { randomBytes } from 'node:crypto';
import type { Counter, Gauge, Registry } from 'prom-client';
import { outboxKeyId, type ChangeLog, type OutboxEntry, type OutboxKey } from '../../replication/change-log.js';
import type { ReceiptStore } from '../../receipts/store.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { ensureStream, historyStreamConfig } from './stream-setup.js';
import { catalogued } from '../../telemetry/metrics.js';

export interface ReplicationOptions {
  /** Subject prefix (`queue.prefix`): changes go to `<prefix>.receipts.<host>`. */
  readonly prefix: string;
  /** Stream name; the gateway uses `<queue.nats.stream>_RECEIPTS`. */
  readonly stream: string;
  readonly replicas: number;
  /** Changes older than this are removed from the stream: a host away longer must be re-seeded. Default 7 days. */
  readonly maxAgeMs: number;
  /** Bytes kept at most (the oldest go first). Default 8 GiB. */
  readonly maxBytes: number;
  /** Outbox entries published per round. Default 256. */
  readonly publishBatch: number;
  /** Stream messages fetched per pull. Default 256. */
  readonly fetchBatch: number;
  /** Idle relay re-reads the outbox this often even without a commit notice. Default 200 ms. */
  readonly relayIdleMs: number;
  /** One publish waits this long for its PubAck. Default 5,000 ms. */
  readonly publishTimeoutMs: number;
}

export const DEFAULT_REPLICATION_OPTIONS: Omit<ReplicationOptions, 'prefix' | 'stream' | 'replicas'> = {
  maxAgeMs: 7 * 24 * 3_600_000,
  maxBytes: 8 * 1024 ** 3,
  publishBatch: 256,
  fetchBatch: 256,
  relayIdleMs: 200,
  publishTimeoutMs: 5_000,
};

export interface ReceiptReplicationConfig {
  readonly servers: readonly string[];
  readonly store: ReceiptStore;
  readonly log: ChangeLog;
  readonly options: Partial<ReplicationOptions> & Pick<ReplicationOptions, 'prefix' | 'stream' | 'replicas'>;
  readonly metrics?: Metrics;
  readonly logger: Logger;
}

export function replicationStreamConfig(o: Pick<ReplicationOptions, 'prefix' | 'stream' | 'replicas' | 'maxAgeMs' | 'maxBytes'>): Partial<StreamConfig> & { name: string } {
  return historyStreamConfig({
    name: o.stream,
    description: 'smsgw receipt-store changes of every host, applied in order by the others',
    subjects: [`${o.prefix}.receipts.>`],
    replicas: o.replicas,
    maxAgeMs: o.maxAgeMs,
    maxBytes: o.maxBytes,
    maxMsgBytes: 4 * 1024 * 1024,
  });
}

interface ReplicationMetrics {
  readonly published: Counter<'outcome'>;
  readonly applied: Counter<'outcome'>;
  readonly outbox: Gauge;
  readonly lag: Gauge;
}

function replicationMetrics(registry: Registry | undefined): ReplicationMetrics | undefined {
  if (!registry) return undefined;
  // Declared in the catalogue (src/telemetry/metrics.ts); looked up, never registered here (help text lives there).
  const counter = (name: string, _help: string): Counter<'outcome'> => catalogued<Counter<'outcome'>>(registry, name);
  const gauge = (name: string, _help: string): Gauge => catalogued<Gauge>(registry, name);
  return {
    published: counter('smsgw_replication_published_total', 'Outbox entries of this host published to the replication stream, by outcome (published, failed)'),
    applied: counter('smsgw_replication_ops_total', "Other hosts' receipt-store operations, by outcome (applied, skipped: already here, missing: a row this host lacks)"),
    outbox: gauge('smsgw_replication_outbox_entries', 'Outbox entries of this host not yet published'),
    lag: gauge('smsgw_replication_apply_lag_messages', 'Replication stream messages not yet applied here (at the last check)'),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A relay's lease on its host's outbox: renewed every third of it; a dead relay's passes on after this. */
const LEASE_TTL_MS = 3_000;

export class ReceiptReplication {
  private stopped = false;
  private relayWake: (() => void) | undefined;
  private stopListening: (() => void) | undefined;
  private relayLoop: Promise<void> | undefined;
  private applyLoop: Promise<void> | undefined;
  /** This process's relay lease id, and whether it holds the lease (it publishes) or stands by. */
  private readonly leaseOwner = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private leaseHeld = false;
  /** Highest stream sequence this process has applied (or skipped as its own). */
  private appliedSeq = 0;
  private readonly progress = new Set<() => void>();
  private consumer: Consumer | undefined;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    private readonly cfg: ReceiptReplicationConfig,
    private readonly opts: ReplicationOptions,
    private readonly m: ReplicationMetrics | undefined,
    private readonly logger: Logger,
  ) {}

  static async start(cfg: ReceiptReplicationConfig): Promise<ReceiptReplication> {
    const opts: ReplicationOptions = { ...DEFAULT_REPLICATION_OPTIONS, ...cfg.options };
    const logger = cfg.logger.child({ part: 'replication', host: cfg.log.host });
    const nc = await connectGateway('receipt replication', cfg.servers, { name: `smsgw-replication-${cfg.log.host}`, reconnectTimeWaitMs: 500 });
    try {
      const jsm = await jetstreamManager(nc, { timeout: 10_000 });
      await ensureStream(jsm, replicationStreamConfig(opts));
      const js = jetstream(nc, { timeout: opts.publishTimeoutMs });
      const r = new ReceiptReplication(nc, jsm, js, cfg, opts, replicationMetrics(cfg.metrics?.registry), logger);
      r.stopListening = cfg.log.onAppend(() => r.relayWake?.());
      r.relayLoop = r.relay();
      r.applyLoop = r.apply();
      logger.info({ stream: opts.stream }, 'receipt replication started');
      return r;
    } catch (e) {
      await nc.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Resolves true once every change in the stream when called (other hosts'
   * included) is applied here; false after `timeoutMs` (or when the stream
   * cannot be asked).
   */
  async caughtUp(timeoutMs: number): Promise<boolean> {
    let target: number;
    try {
      target = (await this.jsm.streams.info(this.opts.stream)).state.last_seq;
    } catch (e) {
      this.logger.warn({ err: e }, 'replication stream state unavailable');
      return false;
    }
    this.m?.lag.set(Math.max(0, target - this.appliedSeq));
    if (this.appliedSeq >= target) return true;
    const deadline = Date.now() + timeoutMs;
    while (!this.stopped && this.appliedSeq < target) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          this.progress.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.min(left, 250));
        this.progress.add(done);
      });
    }
    return this.appliedSeq >= target;
  }

  /** Whether this process publishes its host's outbox now (holds the relay lease). */
  get relaying(): boolean {
    return this.leaseHeld;
  }

  /** The stream sequence this process has applied through. */
  get applied(): number {
    return this.appliedSeq;
  }

  /** Stop both loops (the relay finishes its round: entries not acknowledged stay in the outbox). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopListening?.();
    this.relayWake?.();
    for (const p of [...this.progress]) p();
    await this.relayLoop;
    if (this.leaseHeld) await this.cfg.log.releaseRelayLease(this.leaseOwner).catch(() => undefined);
    await this.applyLoop;
    await this.nc.close().catch(() => undefined);
  }

  // ------------------------------------------------------------------- relay

  private async relay(): Promise<void> {
    const { log } = this.cfg;
    const subject = `${this.opts.prefix}.receipts.${log.host}`;
    let backoff = 0;
    let failures = 0;
    let leaseCheckAt = 0;
    let countAt = 0;
    while (!this.stopped) {
      if (Date.now() >= leaseCheckAt) {
        try {
          this.leaseHeld = await log.holdRelayLease(this.leaseOwner, LEASE_TTL_MS);
        } catch (e) {
          this.leaseHeld = false;
          this.logger.warn({ err: e }, 'relay lease could not be read or renewed');
        }
        leaseCheckAt = Date.now() + LEASE_TTL_MS / 3;
      }
      if (!this.leaseHeld) {
        // Another process of this host publishes the outbox.
        await this.relayIdle(LEASE_TTL_MS / 3);
        continue;
      }
      const batch = log.oldest(this.opts.publishBatch);
      if (batch.length < this.opts.publishBatch) this.m?.outbox.set(batch.length);
      else if (this.m !== undefined && Date.now() >= countAt) {
        // A backlog: counting the whole outbox is O(entries), so at most once a second.
        this.m.outbox.set(log.waiting);
        countAt = Date.now() + 1_000;
      }
      if (batch.length === 0) {
        await this.relayIdle(this.opts.relayIdleMs);
        continue;
      }
      // Issued in order on one connection: the stream stores them in that order.
      const acks = batch.map(({ key, value }) =>
        this.js.publish(subject, pack(value), { msgID: `${log.host}.${outboxKeyId(key)}`, timeout: this.opts.publishTimeoutMs }));
      const settled = await Promise.allSettled(acks);
      // Only the run before the first failure goes: later ones are published again with it, in order.
      const done: OutboxKey[] = [];
      let failed: unknown;
      for (let i = 0; i < settled.length; i++) {
        const s = settled[i]!;
        if (s.status === 'rejected') {
          failed = s.reason;
          break;
        }
        done.push(batch[i]!.key);
      }
      if (done.length > 0) {
        await log.remove(done);
        this.m?.published.inc({ outcome: 'published' }, done.length);
      }
      if (failed !== undefined) {
        this.m?.published.inc({ outcome: 'failed' }, batch.length - done.length);
        if (failures++ % 50 === 0) this.logger.warn({ err: failed, waiting: batch.length - done.length }, 'publishing receipt changes failed; retrying');
        backoff = Math.min(5_000, backoff === 0 ? 100 : backoff * 2);
        await this.relayIdle(backoff);
      } else {
        backoff = 0;
      }
    }
  }

  private relayIdle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.relayWake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.relayWake = done;
    });
  }

  // ----------------------------------------------------------------- applier

  private async apply(): Promise<void> {
    const { store, log } = this.cfg;
    let errors = 0;
    while (!this.stopped) {
      try {
        if (this.consumer === undefined) {
          const position = store.replicaPosition();
          // Re-read the entry at the position: ops after its index may still be due (the rest are skipped).
          const start = Math.max(1, position?.[0] ?? 1);
          const info = await this.jsm.streams.info(this.opts.stream);
          if (info.state.first_seq > start && position !== undefined) {
            this.logger.error({ position: position[0], firstInStream: info.state.first_seq },
              'replication stream no longer holds changes this host has not applied (away longer than maxAgeMs): this host needs re-seeding from a copy of another host');
          }
          this.appliedSeq = Math.max(this.appliedSeq, start - 1);
          this.consumer = await this.js.consumers.get(this.opts.stream, {
            deliver_policy: DeliverPolicy.StartSequence,
            opt_start_seq: start,
            filter_subjects: `${this.opts.prefix}.receipts.>`,
          });
        }
        const msgs = await this.consumer.fetch({ max_messages: this.opts.fetchBatch, expires: 1_000 });
        const steps: Array<Promise<void>> = [];
        let last = this.appliedSeq;
        for await (const msg of msgs) {
          if (this.stopped) break;
          const seq = msg.seq;
          last = seq;
          let entry: OutboxEntry;
          try {
            entry = unpack(msg.data) as OutboxEntry;
          } catch (e) {
            this.logger.error({ err: e, seq }, 'replication message is not decodable; skipped');
            this.m?.applied.inc({ outcome: 'undecodable' });
            continue;
          }
          if (entry.h === log.host) continue;
          // Enqueued in stream order: the store's group commit applies them in that order.
          steps.push(store.applyReplicated(seq, entry).then((r) => {
            if (r.applied > 0) this.m?.applied.inc({ outcome: 'applied' }, r.applied);
            if (r.skipped > 0) this.m?.applied.inc({ outcome: 'skipped' }, r.skipped);
            if (r.missing > 0) {
              this.m?.applied.inc({ outcome: 'missing' }, r.missing);
              this.logger.warn({ seq, origin: entry.h, missing: r.missing }, 'replicated operations named rows this host does not have; not applied');
            }
          }));
        }
        await Promise.all(steps);
        if (last > this.appliedSeq) {
          this.appliedSeq = last;
          for (const p of [...this.progress]) p();
        }
        errors = 0;
      } catch (e) {
        if (this.stopped) break;
        // Apply failures (storage) and consumer failures alike: start again from the committed position.
        if (errors++ % 20 === 0) this.logger.warn({ err: e }, 'applying replicated receipt changes failed; resuming from the stored position');
        this.consumer = undefined;
        await sleep(Math.min(5_000, 100 * errors));
      }
    }
  }
}
