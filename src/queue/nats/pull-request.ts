/**
 * JetStream pull requests, spoken directly (JetStream ADR-13) instead of
 * through `consumer.fetch()` of @nats-io/jetstream, because the port needs
 * what that call cannot give:
 *
 * - `fetch(tier, max, 0)` must answer at once with what is there (the
 *   dispatcher polls its tiers with waitMs 0); the client's fetch() refuses
 *   `expires` below 1 s.
 * - no pull request may wait on the server until it expires (see below).
 *
 * Every request is `{ batch, no_wait: true }`, without `expires`. nats-server
 * (2.9 and later, checked on 2.9.10) answers it with what is stored now, then
 * status 408 (fewer than batch) or 404 (nothing); no status when exactly
 * `batch` were sent. A fetch that may wait does its waiting on the client
 * (queue.ts: it pulls again when work is announced, settled, or
 * emptyTierRecheckMs pass).
 *
 * Why no `expires`: nats-server before 2.10.14 (nats-io/nats-server#5305)
 * loses a redelivery it picks while its only waiting requests are expired
 * (not yet swept) or gone with their connection, and rewinds the consumer
 * to deliver the last new message again as new, delivery count 1. A request
 * with `expires` sits on the server until it expires, so a long poll of
 * ours could be that expired request whenever an ackWait ran out at the
 * same moment — and the job came back with its count reset, past
 * maxDeliver (seen in test/integration/queue-nats.test.ts under load). A
 * no-wait request without `expires` is answered at once, or waits while the
 * server has work it may not deliver yet (parked, below); only such a parked
 * request whose connection then goes away can still be the dead request.
 *
 * Every pull of one connection answers to one inbox subscription
 * (`<inbox>.*`, made once), each pull to its own token under it:
 *
 *   PullChannel ── SUB _INBOX.abc.* (once)
 *     pull 17 ── PUB $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>  reply _INBOX.abc.17
 *     pull 18 ── …                                                  reply _INBOX.abc.18
 *     status (404/408/409…)  subject _INBOX.abc.<token>  ─▶ that pull
 *     message                subject = the work subject, reply $JS.ACK.<stream>.<consumer>…
 *                            ─▶ the oldest open pull of that consumer
 *
 * A delivered message carries its own (work) subject, not the inbox's
 * token, so messages are routed by consumer: the server answers one
 * consumer's pull requests in order (its messages, then its status, then
 * the next request's), so the oldest open pull of that consumer is the one
 * being served. Should a message land in a later pull than the one it was
 * sent for (the earlier one gave up locally), it is still a valid delivery
 * of that consumer; past a pull's batch it goes to the next, or back.
 *
 * A subscription per pull (SUB, PUB, UNSUB, a Subscription object and
 * timers each time) cost the gateway ~110 µs of CPU and nats-server ~57 µs
 * per empty pull on the development machine (`bench:e2e` makes one to
 * several per job, most of them empty, since the dispatcher polls every
 * tier from the top); the shared inbox leaves one PUB per pull.
 *
 * The local timer (PULL_GRACE_MS) covers a server that never answers
 * (killed, disconnected) and a request the server parks because it cannot
 * deliver yet (max_ack_pending reached): the server serves it once a slot
 * frees, with no token to tell which request a message was for. A message
 * that arrives for no open pull of its consumer (timed out, cancelled, or
 * past its batch) is handed to `onLate` — for as long as the channel lives,
 * not just for a linger period; the queue holds it for the next fetch of its
 * tier a short while, then naks it.
 */
import { createInbox, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { parseAckSubject } from './delivery.js';

/** Wait for the server's answer to a no-wait pull before giving up locally. */
export const PULL_GRACE_MS = 1_000;

export interface PullOutcome {
  readonly messages: Msg[];
  /** The server's closing status (404/408/409/503...), undefined if none came (batch full or local timeout). */
  readonly status: number | undefined;
  readonly description: string | undefined;
}

export interface PullRequest {
  readonly done: Promise<PullOutcome>;
  /** Settle now with nothing; what was collected so far is returned for the caller to give back. */
  cancel(): Msg[];
}

/** A JetStream message carries its ack subject as reply; status messages have none. */
function isStatus(m: Msg): boolean {
  return !m.reply && (m.headers?.code ?? 0) > 0;
}

interface OpenPull {
  readonly consumer: string;
  readonly batch: number;
  readonly collected: Msg[];
  readonly resolve: (o: PullOutcome) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * The pulls of one connection. Open pulls are bounded by the callers (one
 * per fetch in progress); nothing is kept for a settled pull. The
 * subscription ends with the connection (the queue drains it on close).
 */
export class PullChannel {
  private readonly prefix: string;
  private readonly open = new Map<string, OpenPull>();
  private next = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly onLate: (m: Msg) => void,
  ) {
    this.prefix = `${createInbox()}.`;
    nc.subscribe(`${this.prefix}*`, {
      callback: (err, m) => {
        if (err) {
          // permission error or connection closed: nothing more will come for any pull
          for (const token of [...this.open.keys()]) this.settle(token, undefined, String(err));
          return;
        }
        this.route(m);
      },
    });
  }

  /** A no-wait pull of up to `batch` messages from durable `consumer` of `stream`. */
  start(stream: string, consumer: string, batch: number): PullRequest {
    const token = String(++this.next);
    let resolveDone!: (o: PullOutcome) => void;
    const done = new Promise<PullOutcome>((r) => (resolveDone = r));
    const pull: OpenPull = { consumer, batch, collected: [], resolve: resolveDone, timer: undefined };
    this.open.set(token, pull);
    // never `expires` (file comment)
    const body = { batch, no_wait: true };
    try {
      this.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`, JSON.stringify(body), { reply: this.prefix + token });
    } catch (e) {
      // closed or draining connection
      this.settle(token, undefined, String(e));
      return { done, cancel: () => [] };
    }
    pull.timer = setTimeout(() => this.settle(token, undefined, 'local timeout'), PULL_GRACE_MS);
    return {
      done,
      cancel: () => {
        const given = pull.collected.splice(0);
        this.settle(token, undefined, 'cancelled');
        return given;
      },
    };
  }

  private route(m: Msg): void {
    if (isStatus(m)) {
      const token = m.subject.startsWith(this.prefix) ? m.subject.slice(this.prefix.length) : '';
      const code = m.headers?.code ?? 0;
      // 100: idle heartbeat (not requested, but harmless); a status for a settled pull: nothing to do
      if (code !== 100) this.settle(token, code, m.headers?.description);
      return;
    }
    const consumer = parseAckSubject(m.reply ?? '')?.consumer;
    // Map order is start order: the first open pull of this consumer is the oldest
    for (const [token, pull] of this.open) {
      if (pull.consumer !== consumer) continue;
      pull.collected.push(m);
      // the server considers the request complete and sends no status
      if (pull.collected.length >= pull.batch) this.settle(token, undefined, undefined);
      return;
    }
    this.onLate(m);
  }

  private settle(token: string, status: number | undefined, description: string | undefined): void {
    const pull = this.open.get(token);
    if (!pull) return;
    this.open.delete(token);
    if (pull.timer) clearTimeout(pull.timer);
    pull.resolve({ messages: pull.collected.splice(0), status, description });
  }
}
